"""The router's view of a sharded index: Snapshot's read methods, answered by shard servers.

The Engine runs on it unchanged (encoders, modes, fusion, explain): queries are encoded once
here, every shard returns each of its segments' exact top-k, and index.segments.merge_runs,
the merge one process uses over the same segments, orders them (score desc, segment position,
internal id).
So a sharded deployment returns what one process over the same segments returns, ties
included. BM25's IDF is read from the sum of every shard's document frequencies, as one
index counts them.

Read-only: writes go to the index with `sparseretr index build` (or a writable single-process
service) and a restarted deployment picks up the new commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sparseretr.index.segments import (
    SEGMENTS_DIR,
    SegHit,
    Segment,
    Vocab,
    merge_runs,
    open_segment,
)
from sparseretr.index.vectors import SparseVectors

# calls -> results, in order: ray.get on a list of ObjectRefs, or a plain list in-process.
Gather = Callable[[list[Any]], list[Any]]


class ShardedSnapshot:
    """Snapshot's read interface over shard servers (see the module notes).

    shards: handles whose methods are called as `getattr(h, name).remote(*args)` (Ray actors
    of ShardSearcher); gather resolves a list of those calls. owners: commit position of each
    segment -> the shard that holds it. release: run once the shards are closed (stops them).
    """

    writable = False

    def __init__(
        self,
        root: Path,
        commit: dict[str, Any],
        first: Segment,
        shards: Sequence[Any],
        owners: dict[int, int],
        gather: Gather,
        release: Callable[[], None] | None = None,
    ) -> None:
        self.root = root
        self.commit = commit
        self.generation = int(commit["generation"])
        self.first = first
        self.shards = list(shards)
        self.owners = owners
        self._gather = gather
        self._release = release
        self.infos: list[dict[str, Any]] = self._all("info")
        self._cache: dict[str, Any] = {}

    # ------------------------------------------------------------- statistics
    @property
    def n_docs(self) -> int:
        return sum(i["n_docs"] for i in self.infos)

    @property
    def n_postings(self) -> int:
        return sum(i["n_postings"] for i in self.infos)

    def has_side(self, side: str) -> bool:
        return side == "sparse" or all(side in i["sides"] for i in self.infos)

    def vocab(self, side: str) -> Vocab:
        entry = (self.commit.get("vocab") or {}).get(side)
        if entry is not None:
            return Vocab(int(entry["base"]), tuple(entry["added"]))
        return Vocab(max(i["vocab_sizes"][side] for i in self.infos), ())

    def doc_freqs(self, side: str) -> tuple[np.ndarray, int]:
        """Summed over the shards: every segment's counts, as Snapshot.doc_freqs sums them."""
        key = f"df:{side}"
        got = self._cache.get(key)
        if got is None:
            parts = self._all("doc_freqs", side)
            df = np.zeros(max(len(d) for d, _ in parts), dtype=np.int64)
            for d, _ in parts:
                df[: len(d)] += d
            got = self._cache[key] = (df, sum(n for _, n in parts))
        return got

    def summary(self) -> dict[str, int]:
        return {
            key: sum(i["summary"][key] for i in self.infos)
            for key in ("segments", "deleted_docs", "dense_docs")
        }

    # ------------------------------------------------------------------ search
    def search(self, side: str, queries: SparseVectors, k: int, **knobs: Any) -> list[list[SegHit]]:
        return self._merged(side, queries, k, False, knobs)

    def brute_force(self, side: str, queries: SparseVectors, k: int) -> list[list[SegHit]]:
        return self._merged(side, queries, k, True, {})

    def search_dense(self, queries: np.ndarray, k: int) -> list[list[SegHit]]:
        return self._merged("dense", queries, k, False, {})

    def term_weights(self, side: str, segment: int, internal: int, terms: np.ndarray) -> np.ndarray:
        shard = self.shards[self.owners[segment]]
        (got,) = self._gather([shard.term_weights.remote(side, segment, internal, terms)])
        return got

    def get_documents(self, ids: Sequence[str]) -> list[dict | None]:
        """The live copy of each id: the shard whose segment comes last in the commit wins,
        as Snapshot.locate picks it."""
        answers = self._all("get_documents", list(ids))
        out = []
        for i in range(len(ids)):
            pos, doc = max((a[i] for a in answers), key=lambda pd: pd[0])
            out.append(doc if pos >= 0 else None)
        return out

    def close(self) -> None:
        try:
            self._all("close")
        finally:
            self.first.sparse.close()
            if self.first.bm25 is not None:
                self.first.bm25.close()
            if self._release is not None:
                self._release()

    def _merged(
        self, side: str, queries: Any, k: int, brute_force: bool, knobs: dict[str, Any]
    ) -> list[list[SegHit]]:
        per_shard = self._all("runs", side, queries, k, brute_force, knobs)
        return merge_runs([r for runs in per_shard for r in runs], len(queries), k)

    def _all(self, method: str, *args: Any) -> list[Any]:
        return self._gather([getattr(s, method).remote(*args) for s in self.shards])


def open_first(root: Path, commit: dict[str, Any], *, dense: bool) -> Segment:
    """The commit's first segment, opened by the router for its encoders and configs only
    (memory-mapped; its postings are searched by the shard that holds it)."""
    name = commit["segments"][0]["name"]
    return open_segment(root / SEGMENTS_DIR / name, name, dense=dense)
