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


def tune_fusion(
    dataset: str,
    index: str,
    *,
    split: str = "train",
    candidates: int = 100,
    sparse_mode: str = "sparse",
    out: str | Path | None = None,
) -> dict[str, Any]:
    from sparseretr.engine import Engine
    from sparseretr.fusion import convex, rrf

    if split == "test":
        raise UserInputError("tune on a train/dev split; the test split is for reporting only")
    data = load_beir(dataset, split=split)
    engine = Engine.open(index, dense=True, bm25=sparse_mode == "bm25")
    qids = list(data.queries)
    texts = [data.queries[q] for q in qids]
    sides = {}
    for side in (sparse_mode, "dense"):
        results = engine.search(texts, k=candidates, mode=side)
        sides[side] = [[(h.id, h.score) for h in r.hits] for r in results]

    def score(fuse) -> float:
        run = {}
        for i, q in enumerate(qids):
            fused = fuse({"sparse": sides[sparse_mode][i], "dense": sides["dense"][i]})[:10]
            run[q] = {h.id: h.score for h in fused}
        return evaluate(data.qrels, run, k_values=(10,))["NDCG@10"]

    grid = [
        {"fusion": "rrf", "rrf_k": k, "ndcg@10": score(lambda r, k=k: rrf(r, k=k))} for k in RRF_KS
    ]
    grid += [
        {
            "fusion": "convex",
            "alpha": a,
            "normalization": n,
            "ndcg@10": score(lambda r, a=a, n=n: convex(r, alpha=a, normalization=n)),
        }
        for n in NORMALIZATIONS
        for a in ALPHAS
    ]
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
        "best": best,
        "grid": grid,
    }
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2))
    return report
