"""Serving an index past one process or machine: shard servers on Ray and a merging router.

deploy.open_sharded(INDEX, shards=N) (also `sparseretr.open_sharded`) gives an Engine (the
same search API, HTTP service and eval as a local index) whose postings are searched by N Ray
actors (shard.ShardSearcher), each holding contiguous segments of the index; the router's view
(snapshot.ShardedSnapshot) merges them so results equal one process over the same segments.

Nothing is imported here: a shard actor imports sparseretr.cluster.shard, which needs only the
storage layer, and must not pull in the encoders (torch) through this package.
"""
