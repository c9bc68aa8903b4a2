"""Run any searcher over a query set and time it.

Per-query timing (one query per call) gives the latency percentiles a served system sees;
batch timing only gives throughput but is much faster for large query sets.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from sparseretr.index.errors import UserInputError

from sparseretr.metrics import latency_summary

Timing = Literal["query", "batch"]


@runtime_checkable
class Searcher(Protocol):
    """Anything that maps query texts to ranked ``(doc_id, score)`` lists, best first.

    An implementation may also expose ``last_timing: Mapping[str, float]`` (e.g. seconds spent
    encoding vs. scoring in the last call); the runner sums it when present.
    """

    def search(self, texts: list[str], k: int) -> list[list[tuple[str, float]]]: ...


@dataclass
class RunResult:
    """Ranked results per query plus the timings needed for the report."""

    results: dict[str, dict[str, float]]
    latencies: list[float]
    total_seconds: float
    timing: Timing = "query"
    breakdown: dict[str, float] = field(default_factory=dict)

    def latency(self) -> dict[str, float]:
        """Latency percentiles (per-query timing) or throughput only (batch timing)."""
        n = len(self.results)
        if self.timing == "query" and self.latencies:
            return latency_summary(self.latencies)
        qps = n / self.total_seconds if self.total_seconds > 0 else float("inf")
        return {"n": n, "qps": qps, "total_s": self.total_seconds}


def run_retrieval(
    searcher: Searcher,
    queries: Mapping[str, str],
    k: int = 1000,
    batch_size: int = 64,
    timing: Timing = "query",
    warmup: int = 1,
) -> RunResult:
    """Search every query and collect ``{qid: {doc_id: score}}`` with timings.

    ``warmup`` queries are searched once, untimed and discarded, so one-off costs (JIT
    compilation, lazy loading, cache population) do not land in p99.
    """
    if k < 1:
        raise UserInputError(f"k must be >= 1, got {k}")
    if timing not in ("query", "batch"):
        raise UserInputError(f"timing must be 'query' or 'batch', got {timing!r}")
    if batch_size < 1:
        raise UserInputError(f"batch_size must be >= 1, got {batch_size}")

    qids = list(queries)
    texts = [queries[q] for q in qids]
    for text in texts[: max(warmup, 0)]:
        searcher.search([text], k)

    step = 1 if timing == "query" else batch_size
    results: dict[str, dict[str, float]] = {}
    latencies: list[float] = []
    breakdown: dict[str, float] = {}
    total = 0.0
    for start in range(0, len(qids), step):
        batch_texts = texts[start : start + step]
        t0 = time.perf_counter()
        hits = searcher.search(batch_texts, k)
        elapsed = time.perf_counter() - t0
        total += elapsed
        if timing == "query":
            latencies.append(elapsed)
        if len(hits) != len(batch_texts):
            raise UserInputError(
                f"searcher returned {len(hits)} result lists for {len(batch_texts)} queries"
            )
        for qid, ranked in zip(qids[start : start + step], hits, strict=True):
            results[qid] = _to_run(ranked, k)
        _accumulate(breakdown, getattr(searcher, "last_timing", None))

    return RunResult(results, latencies, total, timing, breakdown)


def _to_run(ranked: list[tuple[str, float]], k: int) -> dict[str, float]:
    """Keep the first (best) score of a repeated doc id and at most ``k`` docs."""
    run: dict[str, float] = {}
    for doc_id, score in ranked:
        if len(run) >= k:
            break
        run.setdefault(str(doc_id), float(score))
    return run


def _accumulate(total: dict[str, float], timing: object) -> None:
    if not isinstance(timing, Mapping):
        return
    for key, value in timing.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            total[str(key)] = total.get(str(key), 0.0) + float(value)
