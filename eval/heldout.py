"""Evaluate an index on a training run's held-out queries: model selection on train only.

Why: choosing between trained models (a FLOPS weight, an ablation) by test nDCG would tune on
test. The held-out queries are the ones `sparseretr train` split off the *train* split with the
config's seed and never trained on; searching them over the full corpus (through the Engine,
as the service does) is the honest yardstick.

    python -m sparseretr.eval.heldout --config configs/scifact-inference-free.yaml --index INDEX
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sparseretr.eval.cost import sparse_cost
from sparseretr.eval.runner import run_retrieval

from sparseretr.metrics import evaluate


def heldout_metrics(config: str | Path, index: str | Path, mode: str = "sparse") -> dict[str, Any]:
    from sparseretr.eval.searcher import ModeSearcher

    from sparseretr.engine import Engine
    from sparseretr.training.config import load_config
    from sparseretr.training.data import load_training_data

    cfg = load_config(config)
    data = load_training_data(cfg.data, cfg.optim.seed)
    rows = [int(q) for q in data.heldout]
    queries = {data.query_ids[q]: data.query_texts[q] for q in rows}
    engine = Engine.open(index, dense=mode in ("dense", "hybrid"), bm25=mode in ("bm25", "hybrid"))
    try:
        run = run_retrieval(ModeSearcher(engine, mode), queries, k=100, warmup=0)
        cost = {}
        if mode == "sparse":
            cost = sparse_cost(engine, engine.encode("sparse", list(queries.values())))
    finally:
        engine.close()
    m = evaluate(data.qrels(rows), run.results, k_values=(10, 100))
    return {"queries": len(rows), "ndcg@10": m["NDCG@10"], "recall@100": m["Recall@100"], **cost}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="the training config (split, seed, held-out)")
    p.add_argument("--index", required=True)
    p.add_argument("--mode", default="sparse")
    a = p.parse_args(argv)
    print(json.dumps({"index": a.index, **heldout_metrics(a.config, a.index, a.mode)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
