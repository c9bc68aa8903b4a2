"""The engine as evaluation sees it: one mode with fixed options behind the runner's Searcher
interface, and the check that the kernels' top-k equals brute force."""

from __future__ import annotations

from typing import Any

import numpy as np
from sparseretr.index.vectors import SparseVectors

from sparseretr.engine import Engine


class ModeSearcher:
    """One engine mode with fixed options: the Searcher eval.runner times."""

    def __init__(self, engine: Engine, mode: str | None = None, **options: Any) -> None:
        self.engine = engine
        self.mode = engine.check_mode(mode)
        self.options = options
        self.name = self.mode
        self.last_timing: dict[str, float] = {}

    def search(self, texts: list[str], k: int) -> list[list[tuple[str, float]]]:
        results = self.engine.search(texts, k=k, mode=self.mode, **self.options)
        # Seconds, summed over the batch (the runner adds them up over the run).
        self.last_timing = {
            key.replace("_ms", "_s"): sum(r.timing[key] for r in results) / 1e3
            for key in ("encode_ms", "search_ms", "fuse_ms")
        }
        return [[(h.id, h.score) for h in r.hits] for r in results]


def exact_agreement(engine: Engine, queries: SparseVectors, k: int = 10) -> dict[str, float]:
    """Share of queries whose kernel top-k (sparse side, every live document) equals brute
    force, and the largest score difference."""
    snap = engine.snapshot
    got, ref = snap.search("sparse", queries, k), snap.brute_force("sparse", queries, k)
    pairs = list(zip(got, ref, strict=True))
    same_ids = [[h.id for h in x] == [h.id for h in y] for x, y in pairs]
    close, diffs = [], [0.0]
    for x, y in pairs:
        sx, sy = np.array([h.score for h in x]), np.array([h.score for h in y])
        same_shape = sx.shape == sy.shape
        close.append(same_shape and np.allclose(sx, sy, rtol=1e-5, atol=1e-6))
        if same_shape and sx.size:
            diffs.append(float(np.abs(sx - sy).max()))
    return {
        "queries": float(len(queries)),
        "same_ids": float(np.mean(same_ids)) if same_ids else 1.0,
        "same_scores": float(np.mean(close)) if close else 1.0,
        "max_abs_score_diff": max(diffs),
    }
