"""Serving an index past one process or machine: shard servers on Ray and a merging router.

deploy.open_sharded(INDEX, shards=N) gives an Engine (the same search API, HTTP service and
eval as a local index) whose postings are searched by N Ray actors, each holding contiguous
segments of the index; results equal one process over the same segments (snapshot.py).
"""

from sparseretr.cluster.deploy import open_sharded, plan_shards, start_shards
from sparseretr.cluster.shard import ShardSearcher
from sparseretr.cluster.snapshot import ShardedSnapshot

__all__ = [
    "ShardSearcher",
    "ShardedSnapshot",
    "merge_runs",
    "open_sharded",
    "plan_shards",
    "start_shards",
]
