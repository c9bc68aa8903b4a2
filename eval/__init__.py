"""Evaluation harness: timed retrieval runs, BEIR evaluation, reports, the pyserini baselines.

Reading BEIR folders (sparseretr.beir) and the metrics (sparseretr.metrics) live one layer
down, because training and adaptation score held-out queries with them too.
"""

from .bm25_pyserini import PyseriniBM25, PyseriniUnavailableError
from .report import SystemResult, markdown_table, write_report
from .runner import RunResult, Searcher, run_retrieval

__all__ = [
    "PyseriniBM25",
    "PyseriniUnavailableError",
    "RunResult",
    "Searcher",
    "SystemResult",
    "markdown_table",
    "run_retrieval",
    "write_report",
]
