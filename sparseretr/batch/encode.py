"""Encoding one shard: the unit of work of every batch runner (in-process, processes, Ray).

A worker rebuilds the job's encoder once from a small picklable spec (the fitted config and the
state folder in the work folder), then encodes whole shards and writes them itself, so that only
counts travel back to the driver. Within a shard the batches are fixed (the encoder sorts the
shard's texts by length and cuts batches of batch_size), so encoding a shard again after a
kill gives the same floats.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sparseretr.batch.workdir import Shard, write_shard


@dataclass(frozen=True)
class EncoderSpec:
    """What a worker needs to rebuild the job's encoders; small and picklable."""

    config: dict[str, Any]  # the fitted encoder's config()
    state_dir: str  # the work folder's copy of the fitted state (BM25 vocabulary, IDF)
    batch_size: int | None = None
    device: str | None = None
    dtype: str | None = None
    dense_model: str | None = None
    threads: int | None = None  # torch intra-op threads of this worker


@dataclass(frozen=True)
class ShardDone:
    index: int
    n_docs: int
    nnz: int


class ShardEncoder:
    """Loads the sparse (and dense) encoder once; encodes and writes whole shards."""

    def __init__(self, spec: EncoderSpec, encoder: Any | None = None) -> None:
        import torch

        from sparseretr.encoders import load_encoder

        if spec.threads:
            torch.set_num_threads(spec.threads)
        self.spec = spec
        if encoder is None:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # one "Loading weights" bar per worker is noise
            overrides = {"batch_size": spec.batch_size, "device": spec.device, "dtype": spec.dtype}
            overrides = {k: v for k, v in overrides.items() if v is not None}
            encoder = load_encoder(spec.config, Path(spec.state_dir), **overrides)
        self.encoder = encoder
        self.dense = None
        if spec.dense_model:
            from sparseretr.dense import DenseEncoder

            self.dense = DenseEncoder(spec.dense_model, device=spec.device, dtype=spec.dtype)

    def encode(self, index: int, ids: Sequence[str], texts: Sequence[str]) -> Shard:
        vectors = self.encoder.encode_documents(list(texts), batch_size=self.spec.batch_size)
        shard = Shard(index, list(ids), vectors)
        if self.dense is not None:
            shard.dense = self.dense.encode(list(texts))
            shard.dense_config = self.dense.config()
        return shard

    def encode_and_write(
        self, root: str | Path, index: int, ids: Sequence[str], texts: Sequence[str]
    ) -> ShardDone:
        shard = self.encode(index, ids, texts)
        write_shard(root, shard)
        return ShardDone(index, len(ids), shard.vectors.nnz)


# ------------------------------------------------------------- process-pool worker
_WORKER: ShardEncoder | None = None


def init_worker(spec: EncoderSpec, devices: Any | None) -> None:
    """ProcessPoolExecutor initializer: pick this worker's device, load the encoders once."""
    global _WORKER
    _exit_with_parent()
    if devices is not None:  # one worker per GPU: each takes one device name off the queue
        spec = replace(spec, device=devices.get())
    _WORKER = ShardEncoder(spec)


def encode_shard(root: str, index: int, ids: list[str], texts: list[str]) -> ShardDone:
    if _WORKER is None:
        raise RuntimeError("encode_shard runs in a worker started with init_worker")
    return _WORKER.encode_and_write(root, index, ids, texts)


def _exit_with_parent() -> None:
    """A killed driver (kill -9) must not leave workers behind encoding for nobody."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            threading.Event().wait(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
