"""Start a sharded deployment on Ray: one actor per shard, the router in this process.

An index is sharded by its segments: `sparseretr index split INDEX --segments N` (or
`index build --segments N`) cuts the documents into N segments with the index's fixed
quantization scales, so every document scores what it scored before. Each shard actor opens
its share of the segments from the index folder (on a cluster: a path every node sees), and
the router (ShardedSnapshot under an ordinary Engine) encodes queries and merges exact
per-shard top-k.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from sparseretr.batch.ray_runner import require_ray
from sparseretr.cluster.shard import ShardSearcher
from sparseretr.cluster.snapshot import Gather, ShardedSnapshot, open_first
from sparseretr.engine import Engine
from sparseretr.index.errors import UnavailableError, UserInputError
from sparseretr.index.segments import is_segmented, read_commit

log = logging.getLogger(__name__)
# The longest a router waits for its shards: startup (actors placed, segments opened) and
# each search. A k=1000 search of a 1M-document shard takes milliseconds, so only a dead,
# hung or unplaceable shard gets near it.
SHARD_TIMEOUT_S = 120.0


def plan_shards(n_live: list[int], shards: int) -> list[list[int]]:
    """Segment positions per shard: contiguous runs with near-equal live documents, every
    shard at least one segment."""
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise UserInputError(f"shards must be an integer >= 1, got {shards!r}")
    if shards > len(n_live):
        raise UserInputError(
            f"the index has {len(n_live)} segment(s), fewer than {shards} shards: split it "
            f"first with `sparseretr index split INDEX --segments {shards}`"
        )
    total = sum(n_live)
    plan: list[list[int]] = [[] for _ in range(shards)]
    done = 0
    shard = 0
    for pos, n in enumerate(n_live):
        left_segments = len(n_live) - pos
        left_shards = shards - shard
        # Move on once this shard holds its share, or when the rest need a segment each.
        more = done >= total * (shard + 1) / shards or left_segments < left_shards
        if shard < shards - 1 and plan[shard] and more:
            shard += 1
        plan[shard].append(pos)
        done += n
    return plan


def open_sharded(
    index_path: str | Path,
    shards: int,
    *,
    ray_address: str | None = None,
    dense: bool = True,
    bm25: bool = True,
    device: str | None = None,
    torch_threads: int | None = 1,
    num_cpus: float = 1.0,
) -> Engine:
    """An Engine whose searches run on `shards` Ray actors over the index's segments.

    ray_address: None starts (or reuses) a local runtime; "auto", host:port or ray://...
    joins a cluster. num_cpus: what each shard actor reserves. Read-only (see snapshot.py).
    torch_threads: as Engine.open (query encoding runs in this process).
    """
    if torch_threads is not None:
        import torch

        torch.set_num_threads(torch_threads)
    snap = start_shards(index_path, shards, ray_address=ray_address, dense=dense, num_cpus=num_cpus)
    try:
        return Engine.over(snap, dense=dense, bm25=bm25, device=device)
    except BaseException:
        snap.close()
        raise


def start_shards(
    index_path: str | Path,
    shards: int,
    *,
    ray_address: str | None = None,
    dense: bool = True,
    num_cpus: float = 1.0,
) -> ShardedSnapshot:
    """The shard actors and the router's view of them (open_sharded adds the encoders)."""
    root = Path(index_path).absolute()
    if not is_segmented(root):
        raise UserInputError(
            f"{root} is not a segmented index; sharded serving needs one "
            "(`sparseretr index build` writes one)"
        )
    commit = read_commit(root)
    entries = commit["segments"]
    plan = plan_shards([int(e["n_docs"]) - int(e["n_deleted"]) for e in entries], shards)
    ray = require_ray("sharded serving runs on Ray", data=False)
    if not ray.is_initialized():
        # A local runtime reserves each shard its CPUs even on a small machine (shards then
        # share cores, as they would share them in one process).
        local = {"num_cpus": max(os.cpu_count() or 1, int(shards * num_cpus))}
        ray.init(
            address=ray_address or "local",
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
            **({} if ray_address else local),
        )
    elif ray_address:
        log.warning("Ray is already running in this process: ray_address %s ignored", ray_address)
    actor = ray.remote(ShardSearcher).options(num_cpus=num_cpus)
    gen = int(commit["generation"])
    names = [[entries[p]["name"] for p in plan_i] for plan_i in plan]
    handles = [
        actor.remote(str(root), n, p, gen, dense=dense) for n, p in zip(names, plan, strict=True)
    ]
    owners = {p: s for s, plan_i in enumerate(plan) for p in plan_i}

    def stop() -> None:
        for h in handles:
            ray.kill(h)

    first = None
    try:
        first = open_first(root, commit, dense=dense)
        return ShardedSnapshot(
            root, commit, first, handles, owners, ray_gather(ray, root), release=stop
        )
    except BaseException:
        stop()
        if first is not None:
            first.sparse.close()
            if first.bm25 is not None:
                first.bm25.close()
        raise


def ray_gather(ray: Any, root: Path, timeout_s: float = SHARD_TIMEOUT_S) -> Gather:
    """ray.get for the router, with errors a user can read: a shard's own error (bad input, a
    damaged segment) is raised as itself, without Ray's remote traceback; a dead or silent
    shard (lost node, out of memory, no CPUs left to place it) is an UnavailableError, which
    the service answers with 503."""

    def gather(refs: list[Any]) -> list[Any]:
        try:
            return ray.get(refs, timeout=timeout_s)
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            raise UnavailableError(f"a shard of {root} failed: {e}") from e
        except ray.exceptions.RayActorError as e:
            if getattr(e, "actor_init_failed", False):  # Ray keeps only the text of its error
                lines = [x for x in str(e).splitlines() if x.strip()]
                why = lines[-1].split(": ", 1)[-1] if lines else str(e)
                raise UnavailableError(f"a shard of {root} could not start: {why}") from e
            raise UnavailableError(
                f"a shard of {root} is down ({type(e).__name__}); restart the deployment"
            ) from e
        except ray.exceptions.GetTimeoutError as e:
            for ref in refs:
                ray.cancel(ref, force=False)
            raise UnavailableError(
                f"a shard of {root} did not answer within {timeout_s:.0f} s (hung, or no "
                "resources to place it); restart the deployment"
            ) from e

    return gather
