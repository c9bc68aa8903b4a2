"""Encoding shards on Ray Data: the same shards, the same writer, actors instead of processes.

One dataset row is one pending shard (its index, doc ids and texts), and map_batches runs with
batch_size=1, so a batch is exactly a shard and the shard boundaries (and floats) are the ones
of the single-machine build. Each actor loads the encoder once (num_gpus=1 per actor when the
cluster has GPUs) and writes its shards into the work folder itself: on a cluster that folder
must be on a filesystem every node sees (NFS, a mounted bucket). The driver then merges the
shards with the same final step as every other build.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from sparseretr.batch.encode import EncoderSpec, ShardDone, ShardEncoder
from sparseretr.index.errors import UnavailableError

INSTALL_HINT = "pip install 'sparseretr[ray]'  (Ray Data: ray[data])"


def require_ray(what: str = "--ray needs Ray Data", *, data: bool = True) -> Any:
    """Import Ray (and Ray Data, the extra's other half: pyarrow, pandas), or fail with one
    line that says how to get it."""
    try:
        import ray

        if data:
            import ray.data  # noqa: F401
    except ImportError as e:
        raise UnavailableError(f"{what}, which is not installed: {INSTALL_HINT}") from e
    return ray


class RayShardEncoder:
    """map_batches callable class: one actor, one loaded encoder; each call encodes one shard."""

    def __init__(self, spec: EncoderSpec, root: str) -> None:
        self.worker = ShardEncoder(spec)
        self.root = root

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        done: list[ShardDone] = []
        for index, ids, texts in zip(batch["shard"], batch["ids"], batch["texts"], strict=True):
            ids_, texts_ = [str(x) for x in ids], [str(x) for x in texts]
            done.append(self.worker.encode_and_write(self.root, int(index), ids_, texts_))
        return {
            "shard": np.array([d.index for d in done], dtype=np.int64),
            "n_docs": np.array([d.n_docs for d in done], dtype=np.int64),
            "nnz": np.array([d.nnz for d in done], dtype=np.int64),
        }


def encode_ray(
    root: Path,
    shards: Iterator[tuple[int, list[str], list[str]]],
    spec: EncoderSpec,
    *,
    address: str | None,
    workers: int | None,
    on_done: Callable[[ShardDone], None],
    show_progress: bool = False,
) -> int:
    """Encode the pending shards on Ray; returns the number of actors used.

    address None starts a local runtime on this machine ("local"); "auto" or host:port (or
    ray://...) joins a running cluster.
    """
    ray = require_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(
            address=address or "local",
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=show_progress,
            runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}},
        )
    try:
        rows = [{"shard": i, "ids": ids, "texts": texts} for i, ids, texts in shards]
        if not rows:
            return 0
        resources = ray.cluster_resources()
        cpus, gpus = int(resources.get("CPU", 1)), int(resources.get("GPU", 0))
        use_gpu = gpus > 0 and spec.device != "cpu"
        n = max(1, min(workers or (gpus if use_gpu else cpus), len(rows)))
        # Under Ray each GPU actor sees only its own device (CUDA_VISIBLE_DEVICES), as cuda:0.
        # GPU path untested on hardware here (no GPU on the dev machine).
        threads = 1 if use_gpu else max(1, cpus // n)
        spec = replace(spec, threads=threads, device="cuda" if use_gpu else "cpu")
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # no per-dataset INFO lines
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the driver's tqdm counts documents instead
        ctx.print_on_execution_start = False
        ds = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            RayShardEncoder,
            fn_constructor_kwargs={"spec": spec, "root": str(root)},
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=n),
            num_cpus=1 if use_gpu else threads,
            num_gpus=1 if use_gpu else 0,
        )
        del rows
        for row in ds.iter_rows():
            on_done(ShardDone(int(row["shard"]), int(row["n_docs"]), int(row["nnz"])))
        return n
    finally:
        if started:
            ray.shutdown()
