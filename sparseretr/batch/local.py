"""Encoding shards on this machine: in-process, or one worker process per core group or GPU.

Why processes, not threads: tokenization and the Python around the model hold the GIL, and one
torch with N threads scales worse on small batches than N workers with cores/N threads each.
Workers are spawned (not forked: torch's thread pools do not survive a fork) and each loads
the encoder once.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import Any

from sparseretr.batch.encode import EncoderSpec, ShardDone, ShardEncoder, encode_shard, init_worker

PendingShard = tuple[int, list[str], list[str]]  # index, doc ids, texts


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def gpu_devices(device: str | None) -> list[str]:
    """The CUDA devices to use: every visible GPU unless --device names one (or says cpu)."""
    if device not in (None, "auto", "cuda"):
        return [device] if str(device).startswith("cuda") else []
    import torch

    if not torch.cuda.is_available():
        return []
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def plan_workers(requested: int | None, pending: int, gpus: list[str]) -> tuple[int, int]:
    """(workers, torch threads per worker): one per GPU, else cores split evenly."""
    cores = available_cores()
    if gpus:
        return max(1, min(requested or len(gpus), len(gpus), max(pending, 1))), 1
    workers = max(1, min(requested or cores, max(pending, 1)))
    return workers, max(1, cores // workers)


def encode_local(
    root: Path,
    shards: Iterator[PendingShard],
    spec: EncoderSpec,
    *,
    workers: int,
    gpus: list[str],
    on_done: Callable[[ShardDone], None],
    encoder: Any | None = None,
) -> None:
    """Encode every shard `shards` yields and write it to root; on_done after each one.

    One CPU worker (or the one GPU) runs in this process with the already loaded `encoder`;
    more run in spawned processes, fed at most 2 shards ahead each so memory stays bounded.
    """
    if workers == 1:
        _encode_in_process(root, shards, spec, gpus, on_done, encoder)
        return
    # GPU path (untested on hardware here; no GPU on the dev machine): each worker process
    # takes one device name from the queue in init_worker, so worker k owns cuda:k.
    ctx = mp.get_context("spawn")
    devices = None
    if gpus:
        devices = ctx.Queue()
        for d in gpus[:workers]:
            devices.put(d)
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=init_worker, initargs=(spec, devices)
    ) as pool:
        running: set[Future[ShardDone]] = set()
        try:
            for index, ids, texts in shards:
                if len(running) >= 2 * workers:
                    running = _collect(running, on_done)
                running.add(pool.submit(encode_shard, str(root), index, ids, texts))
            while running:
                running = _collect(running, on_done)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _collect(
    running: set[Future[ShardDone]], on_done: Callable[[ShardDone], None]
) -> set[Future[ShardDone]]:
    done, rest = wait(running, return_when=FIRST_COMPLETED)
    for f in done:
        on_done(f.result())  # a worker's exception surfaces here
    return rest


def _encode_in_process(
    root: Path,
    shards: Iterator[PendingShard],
    spec: EncoderSpec,
    gpus: list[str],
    on_done: Callable[[ShardDone], None],
    encoder: Any | None,
) -> None:
    import torch

    threads = torch.get_num_threads()
    if gpus and encoder is None:
        spec = replace(spec, device=gpus[0])
    try:
        worker = ShardEncoder(spec, encoder=encoder)
        for index, ids, texts in shards:
            on_done(worker.encode_and_write(root, index, ids, texts))
    finally:
        torch.set_num_threads(threads)
