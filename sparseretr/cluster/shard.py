"""One shard server: some segments of an index, searched where they lie.

A shard answers for its segments only: exact top-k per query over its live documents, its
document frequencies, stored fields and stored weights. The router (snapshot.py) encodes each
query once, asks every shard, and merges. Hits carry the segment's position in the whole
commit, so the router orders ties exactly as one process holding every segment would.

A plain class: Ray wraps it in an actor (deploy.py); nothing here imports Ray.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sparseretr.index.errors import UserInputError
from sparseretr.index.segments import SIDES, Run, Snapshot


class ShardSearcher:
    """The segments `names` of the index at `root`, as of commit `generation`."""

    def __init__(
        self, root: str, names: Sequence[str], positions: Sequence[int], generation: int,
        *, dense: bool = True,
    ) -> None:  # fmt: skip
        if len(names) != len(positions) or not names:
            raise UserInputError("a shard needs one commit position per segment, and a segment")
        self.snap = Snapshot.open(Path(root), dense=dense, segments=list(names))
        if self.snap.generation != generation:
            gen = self.snap.generation
            self.snap.close()
            raise UserInputError(
                f"{root} is at commit generation {gen}, the router planned {generation}: the "
                "index changed while the deployment started; start it again"
            )
        order = {n: p for n, p in zip(names, positions, strict=True)}
        # Local segment i (commit order) -> its position in the whole commit.
        self.positions = np.array([order[s.name] for s in self.snap.segments], dtype=np.int64)

    def info(self) -> dict[str, Any]:
        """What the router plans with: sizes, sides, vocabulary sizes, counts."""
        snap = self.snap
        return {
            "n_docs": snap.n_docs,
            "n_postings": snap.n_postings,
            "sides": [s for s in (*SIDES, "dense") if snap.has_side(s)],
            "vocab_sizes": {
                side: max(seg.side(side).vocab_size for seg in snap.segments)
                for side in SIDES
                if snap.has_side(side)
            },
            "summary": snap.summary(),
        }

    def doc_freqs(self, side: str) -> tuple[np.ndarray, int]:
        return self.snap.doc_freqs(side)

    def runs(
        self, side: str, queries: Any, k: int, brute_force: bool, knobs: dict[str, Any]
    ) -> list[Run]:
        """Each of its segments' top-k per query (Snapshot.runs), numbered by commit position:
        arrays, not hit objects, so the reply pickles as a few buffers."""
        out = self.snap.runs(side, queries, k, brute_force=brute_force, **knobs)
        for r in out:
            r.segment = int(self.positions[r.segment])
        return out

    def term_weights(
        self, side: str, position: int, internal: int, terms: np.ndarray
    ) -> np.ndarray:
        local = int(np.flatnonzero(self.positions == position)[0])
        return self.snap.term_weights(side, local, internal, terms)

    def get_documents(self, ids: Sequence[str]) -> list[tuple[int, dict | None]]:
        """Per id: (commit position of the segment holding its live copy, stored fields), or
        (-1, None) where this shard does not hold it."""
        found = self.snap.located_documents(ids)
        return [(int(self.positions[si]) if si >= 0 else -1, doc) for si, doc in found]

    def close(self) -> None:
        self.snap.close()
