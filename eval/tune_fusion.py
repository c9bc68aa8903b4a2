"""Choose hybrid fusion settings on a TRAIN split, so test numbers stay honest.

Each side's top-N runs are computed once through the Engine, then every grid point is fused
with the same `sparseretr.fusion` functions the service calls, and scored by nDCG@10.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sparseretr.index.errors import UserInputError

from sparseretr.beir import load_beir
from sparseretr.metrics import evaluate

RRF_KS = (5, 10, 20, 30, 60, 100)
ALPHAS = tuple(round(0.1 * i, 1) for i in range(1, 10))
NORMALIZATIONS = ("minmax", "zscore")
# The BM25 side's share (sparseretr.fusion.hybrid_weights); 1/3 weighs the three sides equally.
BM25_WEIGHTS = (0.0, 0.1, 0.2, 0.25, 0.3, round(1 / 3, 4), 0.4, 0.5)


def tune_fusion(
    dataset: str,
    index: str,
    *,
    split: str = "train",
    candidates: int = 100,
    sparse_mode: str = "sparse",
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Grid over fusion, rrf_k / alpha and normalization, and the BM25 share where the index
    has a BM25 side (sparse_mode "bm25" puts BM25 in the sparse slot instead: two-way only)."""
    from sparseretr.engine import Engine
    from sparseretr.fusion import make_fuser

    if split == "test":
        raise UserInputError("tune on a train/dev split; the test split is for reporting only")
    data = load_beir(dataset, split=split)
    engine = Engine.open(index, dense=True, bm25=True)
    qids = list(data.queries)
    texts = [data.queries[q] for q in qids]
    three_way = sparse_mode == "sparse" and "bm25" in engine.modes
    sides = {}
    try:
        for side in (sparse_mode, "dense", *(("bm25",) if three_way else ())):
            results = engine.search(texts, k=candidates, mode=side)
            sides[side] = [[(h.id, h.score) for h in r.hits] for r in results]
    finally:
        engine.close()
    names = {sparse_mode: "sparse", "dense": "dense", "bm25": "bm25"} if three_way else {
        sparse_mode: "sparse", "dense": "dense"}  # fmt: skip

    def score(point: dict[str, Any]) -> float:
        fuse = make_fuser(
            point["fusion"], point.get("rrf_k", 60), point.get("alpha", 0.5),
            point.get("normalization", "zscore"), point["bm25_weight"],
        )  # fmt: skip
        run = {}
        for i, q in enumerate(qids):
            runs = {name: sides[side][i] for side, name in names.items()}
            if not point["bm25_weight"]:
                runs.pop("bm25", None)
            run[q] = {h.id: h.score for h in fuse(runs)[:10]}
        return evaluate(data.qrels, run, k_values=(10,))["NDCG@10"]

    shares = BM25_WEIGHTS if three_way else (0.0,)
    grid: list[dict[str, Any]] = [
        {"fusion": "rrf", "rrf_k": k, "bm25_weight": b} for b in shares for k in RRF_KS
    ]
    grid += [
        {"fusion": "convex", "alpha": a, "normalization": n, "bm25_weight": b}
        for b in shares
        for n in NORMALIZATIONS
        for a in ALPHAS
    ]
    for point in grid:
        point["ndcg@10"] = score(point)
    best = {
        f: max((g for g in grid if g["fusion"] == f), key=lambda g: g["ndcg@10"])
        for f in ("rrf", "convex")
    }
    report = {
        "dataset": data.name,
        "split": split,
        "n_queries": len(qids),
        "candidates": candidates,
        "sparse": sparse_mode,
        "bm25_side": three_way,
        "best": best,
        "grid": grid,
    }
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2))
    return report
