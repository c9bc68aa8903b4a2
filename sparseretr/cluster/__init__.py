"""Serving an index past one process or machine: shard servers on Ray and a merging router.

deploy.open_sharded(INDEX, shards=N) gives an Engine (the same search API, HTTP service and
eval as a local index) whose postings are searched by N Ray actors, each holding contiguous
segments of the index; results equal one process over the same segments (snapshot.py).

Names load on first use: a shard actor imports sparseretr.cluster.shard, which needs only the
storage layer, and must not pull in the encoders (torch) through this package.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "ShardSearcher": "sparseretr.cluster.shard",
    "ShardedSnapshot": "sparseretr.cluster.snapshot",
    "open_sharded": "sparseretr.cluster.deploy",
    "plan_shards": "sparseretr.cluster.deploy",
    "start_shards": "sparseretr.cluster.deploy",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'sparseretr.cluster' has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name]), name)
