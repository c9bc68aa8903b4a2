"""Rank fusion: the ONE implementation the service and `eval` share, so offline numbers and
served results cannot drift apart.

Inputs are per-system ranked lists of (doc id, score), best first, for ONE query; normalization
is therefore per query. Pure Python/numpy, no I/O. Output order is deterministic: fused score
descending, then doc id ascending.

Conventions shared by both methods:
- a doc id repeated within one run keeps its first (best-ranked) entry;
- a system with weight 0 contributes neither score nor candidates, so alpha=1 (or 0) gives
  exactly the other system's candidate set and order;
- every system appears in each hit's `components`, with score/rank None where it missed the doc.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import numpy as np

from sparseretr.index.errors import UserInputError

Run = Sequence[tuple[str, float]]
Normalization = Literal["minmax", "zscore"]
NORMALIZATIONS: tuple[str, ...] = ("minmax", "zscore")

# Hybrid defaults, chosen with `sparseretr eval tune-fusion` on train/dev splits only, never
# on test (figures: README "Results"): convex, zscore, alpha 0.5 on SciFact train (splade-tiny
# + all-MiniLM-L6-v2). The BM25 side, where the index has one, weighs as much as each other
# side (bm25_weight 1/3): no share was clearly better across SciFact train and NFCorpus dev,
# with either splade-tiny or a zero-label adapted model, and equal weights carry no tuning
# that a new collection could undo.
DEFAULTS: dict[str, Any] = {
    "fusion": "convex",
    "alpha": 0.5,
    "rrf_k": 5,
    "normalization": "zscore",
    "candidates": 100,
    "bm25_weight": 1 / 3,
}


@dataclass
class FusedHit:
    """One fused result; `components[system]` = {"score": raw score, "rank": 1-based} or Nones."""

    id: str
    score: float
    components: dict[str, dict[str, float | int | None]] = field(default_factory=dict)


def single(system: str, run: Run) -> list[FusedHit]:
    """One system's run as fused hits (raw scores), so every mode returns the same shape."""
    tables = _tables({system: run})
    return _ranked({d: s for d, (_, s) in tables[system].items()}, tables)


def rrf(
    runs: Mapping[str, Run],
    k: int = DEFAULTS["rrf_k"],
    weights: Mapping[str, float] | None = None,
) -> list[FusedHit]:
    """Reciprocal rank fusion: score(d) = sum_s w_s / (k + rank_s(d)) over systems that found d.

    Ranks only, so it needs no score calibration between systems; k damps the top ranks.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
        raise UserInputError(f"rrf k must be an integer >= 0, got {k!r}")
    w = _weights(runs, weights)
    tables = _tables(runs)
    scores: dict[str, float] = {}
    for system, table in tables.items():
        if w[system] == 0:
            continue
        for doc, (rank, _) in table.items():
            scores[doc] = scores.get(doc, 0.0) + w[system] / (k + rank)
    return _ranked(scores, tables)


def convex(
    runs: Mapping[str, Run],
    alpha: float | None = None,
    normalization: Normalization = "minmax",
    weights: Mapping[str, float] | None = None,
) -> list[FusedHit]:
    """Convex combination of per-query normalized scores over the union of candidates.

    With `alpha` (default 0.5) there must be exactly two runs: the first (by mapping order; the
    engine passes sparse first) gets alpha, the second 1 - alpha. `weights` instead names a
    weight per system (unnamed systems get 1.0); pass one or the other.

    A doc missing from a run gets that run's lowest normalized score (0 for minmax, the minimum
    z-score for zscore). Why: the system ranked it below its cut-off, so its true score is at
    most the lowest one returned; the lowest is the tightest bound we know. Imputing the mean
    (z = 0) would instead lift unretrieved docs above half of the retrieved ones.
    """
    if normalization not in NORMALIZATIONS:
        raise UserInputError(
            f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}"
        )
    if alpha is not None and weights is not None:
        raise UserInputError("pass either alpha (two runs) or weights (any number), not both")
    if weights is None:
        if len(runs) != 2:
            raise UserInputError(
                f"alpha needs exactly two runs, got {len(runs)} ({list(runs)}); pass weights"
            )
        a = 0.5 if alpha is None else float(alpha)
        if not 0.0 <= a <= 1.0:
            raise UserInputError(f"alpha must lie in [0, 1], got {alpha!r}")
        first, second = runs
        weights = {first: a, second: 1.0 - a}
    w = _weights(runs, weights)
    tables = _tables(runs)
    norm = {s: _normalize(t, normalization) for s, t in tables.items()}
    candidates = {doc for s, t in tables.items() if w[s] != 0 for doc in t}
    scores = {
        doc: math.fsum(w[s] * norm[s][0].get(doc, norm[s][1]) for s in tables if w[s] != 0)
        for doc in candidates
    }
    return _ranked(scores, tables)


def _weights(runs: Mapping[str, Run], weights: Mapping[str, float] | None) -> dict[str, float]:
    weights = weights or {}
    unknown = sorted(set(weights) - set(runs))
    if unknown:
        raise UserInputError(f"weights name systems without a run: {unknown}; runs: {list(runs)}")
    out = {s: float(weights.get(s, 1.0)) for s in runs}
    bad = {s: v for s, v in out.items() if not math.isfinite(v) or v < 0}
    if bad:
        raise UserInputError(f"weights must be finite and >= 0, got {bad}")
    return out


def _tables(runs: Mapping[str, Run]) -> dict[str, dict[str, tuple[int, float]]]:
    """Per system: doc id -> (1-based rank, raw score); first occurrence wins."""
    tables: dict[str, dict[str, tuple[int, float]]] = {}
    for system, run in runs.items():
        table: dict[str, tuple[int, float]] = {}
        for rank, (doc, score) in enumerate(run, 1):
            s = float(score)
            if not math.isfinite(s):
                raise UserInputError(f"run {system!r}: score of {doc!r} is not finite ({score!r})")
            table.setdefault(str(doc), (rank, s))
        tables[system] = table
    return tables


def _normalize(
    table: Mapping[str, tuple[int, float]], method: str
) -> tuple[dict[str, float], float]:
    """(doc -> normalized score, value imputed for docs the run lacks).

    Degenerate runs (one doc, or all scores equal) carry no spread: minmax maps them to 1 (each
    is the run's best, so still above missing docs at 0); zscore maps them to 0, like missing.
    """
    if not table:
        return {}, 0.0
    docs = list(table)
    x = np.array([table[d][1] for d in docs], dtype=np.float64)
    if method == "minmax":
        lo, span = float(x.min()), float(x.max() - x.min())
        y = (x - lo) / span if span > 0 else np.ones_like(x)
        missing = 0.0
    else:
        sd = float(x.std())
        y = (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)
        missing = float(y.min())
    return dict(zip(docs, y.tolist(), strict=True)), missing


def _ranked(
    scores: Mapping[str, float], tables: Mapping[str, Mapping[str, tuple[int, float]]]
) -> list[FusedHit]:
    order = sorted(scores, key=lambda d: (-scores[d], d))
    return [
        FusedHit(
            id=d,
            score=float(scores[d]),
            components={
                s: {"score": t[d][1], "rank": t[d][0]} if d in t else {"score": None, "rank": None}
                for s, t in tables.items()
            },
        )
        for d in order
    ]


FUSIONS: tuple[str, ...] = ("rrf", "convex")


def hybrid_weights(fusion: str, alpha: float, bm25_weight: float) -> dict[str, float]:
    """Each side's weight in the hybrid: BM25 takes a share bm25_weight of the whole, sparse
    and dense split the rest by alpha (convex; RRF has no alpha and splits it evenly).

    bm25_weight 0 gives exactly the two-way hybrid (same weights, same scores, and BM25 adds
    no candidates). For RRF the weights are scaled so that sparse and dense keep weight 1 at
    bm25_weight 0: 1/3 weighs all three sides equally under either fusion.
    """
    for name, v in (("alpha", alpha), ("bm25_weight", bm25_weight)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= v <= 1.0:
            raise UserInputError(f"{name} must lie in [0, 1], got {v!r}")
    b = float(bm25_weight)
    if fusion == "rrf":
        return {"sparse": 1.0 - b, "dense": 1.0 - b, "bm25": 2.0 * b}
    a = float(alpha)
    return {"sparse": (1.0 - b) * a, "dense": (1.0 - b) * (1.0 - a), "bm25": b}


def make_fuser(
    fusion: str,
    rrf_k: int,
    alpha: float,
    normalization: Normalization,
    bm25_weight: float = 0.0,
) -> Callable[[Mapping[str, Run]], list[FusedHit]]:
    """The hybrid fusion as a function of the runs (sparse, dense, and bm25 when bm25_weight >
    0), tried once on empty runs so that bad parameters fail before any encoding, with
    fusion's own messages."""
    if fusion not in FUSIONS:
        raise UserInputError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    weights = hybrid_weights(fusion, alpha, bm25_weight)
    if fusion == "rrf":
        fn = partial(_weighted, partial(rrf, k=rrf_k), weights)
    else:
        fn = partial(_weighted, partial(convex, normalization=normalization), weights)
    fn({"sparse": [], "dense": [], **({"bm25": []} if bm25_weight > 0 else {})})
    return fn


def _weighted(
    fuse: Callable[..., list[FusedHit]], weights: Mapping[str, float], runs: Mapping[str, Run]
) -> list[FusedHit]:
    """fuse(runs) with the weights of the sides present (a two-way hybrid has no bm25 run)."""
    return fuse(runs, weights={s: w for s, w in weights.items() if s in runs})
