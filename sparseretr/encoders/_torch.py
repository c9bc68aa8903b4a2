"""Device and precision choices in one place: GPU when present, CPU threads otherwise."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator

import torch

from sparseretr.index.errors import UserInputError

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def pick_device(device: str | None = None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 in hardware (AVX512-BF16 or AMX). Elsewhere torch
    emulates it, and autocast to bf16 is several times *slower* than fp32 (measured here on
    an AMD EPYC without it: 27 s vs 5.8 s per training step)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(
    device: torch.device, dtype: str | None, *, cpu_bf16: bool = False
) -> torch.dtype | None:
    """Autocast dtype: bf16/fp16 on CUDA by default; fp32 (no autocast) on CPU unless asked,
    or, with cpu_bf16 (training), bf16 where the CPU has it natively."""
    if dtype in (None, "auto"):
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_bf16 and cpu_has_native_bf16() else None
    if dtype not in _DTYPES:
        raise UserInputError(f"dtype must be one of {sorted(_DTYPES)} or 'auto', got {dtype!r}")
    if dtype == "bfloat16" and device.type == "cpu" and not cpu_has_native_bf16():
        logger.warning(
            "bfloat16 on a CPU without AVX512-BF16/AMX is emulated and slower than float32; "
            "use dtype auto or float32"
        )
    return None if dtype == "float32" else _DTYPES[dtype]


def document_dtype(device: str | None, dtype: str | None) -> str | None:
    """The dtype a corpus is encoded in, made explicit so that the index can record it.

    "auto" (or None) means the reduced precision the hardware computes natively: bf16 (or
    fp16) on a GPU, as the encoders already do there, and bf16 on a CPU with AVX512-BF16 or
    AMX; None (fp32) on other CPUs, where bf16 is emulated and slower. Why only documents: a
    corpus is encoded once and is the whole cost of an index build, while a query is one short
    forward pass, so queries keep fp32 on a CPU. bf16 documents keep SciFact and NFCorpus test
    nDCG@10 within the 0.002 the project allows a lossy default (benchmarks/README.md). An
    explicit dtype, "float32" included, is kept as given.
    """
    if dtype not in (None, "auto"):
        return dtype
    dev = pick_device(device)
    if dev.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if dev.type == "cpu" and cpu_has_native_bf16():
        return "bfloat16"
    return None


@contextlib.contextmanager
def inference(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    with torch.inference_mode():
        if dtype is None:
            yield
        else:
            with torch.autocast(device_type=device.type, dtype=dtype):
                yield
