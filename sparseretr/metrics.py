"""Retrieval metrics via BEIR/pytrec_eval, plus latency percentiles.

Reusing BEIR's evaluation (not re-implementing nDCG & co.) keeps our numbers directly comparable
with BEIR/pyserini leaderboards.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from sparseretr.index.errors import UserInputError

logger = logging.getLogger(__name__)

DEFAULT_K_VALUES: tuple[int, ...] = (1, 3, 5, 10, 100, 1000)

Qrels = Mapping[str, Mapping[str, int]]
Results = Mapping[str, Mapping[str, float]]


def prepare_results(
    qrels: Qrels, results: Results, ignore_identical_ids: bool = True
) -> dict[str, dict[str, float]]:
    """Align ``results`` with ``qrels`` so every metric averages over the same query set.

    - every judged query gets an entry (missing ones score 0 instead of being silently dropped
      by pytrec_eval, which would inflate the average);
    - results for unjudged queries are dropped (BEIR's MRR would raise on them);
    - scores become Python floats (pytrec_eval rejects numpy scalars);
    - doc id == query id hits are removed when ``ignore_identical_ids`` (BEIR's default, which
      matters for ArguAna/Quora where a query is also a corpus document). Done here, once, so
      MRR gets the same treatment as the pytrec_eval metrics.
    """
    extra = set(results) - set(qrels)
    if extra:
        logger.warning("ignoring results for %d queries without qrels", len(extra))
    prepared: dict[str, dict[str, float]] = {}
    for qid in qrels:
        hits = results.get(qid, {})
        prepared[qid] = {
            str(did): float(score)
            for did, score in hits.items()
            if not (ignore_identical_ids and did == qid)
        }
    return prepared


def evaluate(
    qrels: Qrels,
    results: Results,
    k_values: Iterable[int] = DEFAULT_K_VALUES,
    ignore_identical_ids: bool = True,
) -> dict[str, float]:
    """nDCG, MAP, Recall, P and MRR at each k as flat keys ("NDCG@10", "MRR@10", ...).

    Averages over all queries in ``qrels``; inputs are not modified (BEIR's evaluate mutates).
    """
    from beir.retrieval.evaluation import EvaluateRetrieval

    if not qrels:
        raise UserInputError("qrels is empty: nothing to evaluate")
    ks = sorted({int(k) for k in k_values})
    if not ks or ks[0] < 1:
        raise UserInputError(f"k_values must be positive integers, got {list(k_values)}")

    judged = {str(q): {str(d): int(s) for d, s in rels.items()} for q, rels in qrels.items()}
    run = prepare_results(judged, results, ignore_identical_ids)
    ndcg, _map, recall, precision = EvaluateRetrieval.evaluate(
        judged, run, ks, ignore_identical_ids=False
    )
    mrr = EvaluateRetrieval.evaluate_custom(judged, run, ks, metric="mrr")

    flat: dict[str, float] = {}
    for part in (ndcg, _map, recall, precision, mrr):
        flat.update({key: float(value) for key, value in part.items()})
    return flat


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/mean in milliseconds and QPS (queries per second of sequential service).

    Percentiles use linear interpolation between order statistics (numpy's default).
    """
    values = np.asarray(seconds, dtype=np.float64)
    if values.size == 0:
        raise UserInputError("latency_summary needs at least one measurement")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise UserInputError("latencies must be finite and non-negative")
    p50, p90, p99 = np.percentile(values, [50, 90, 99]) * 1000.0
    total = float(values.sum())
    return {
        "n": int(values.size),
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "mean_ms": float(values.mean() * 1000.0),
        "qps": float(values.size / total) if total > 0 else math.inf,
    }
