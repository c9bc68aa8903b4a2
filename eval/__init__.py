"""Evaluation harness: BEIR data loading, metrics, timed retrieval runs and reports."""

from .bm25_pyserini import PyseriniBM25, PyseriniUnavailableError
from .data import (
    BEIR_DATASETS,
    BeirData,
    DatasetNotFoundError,
    SplitNotFoundError,
    default_dataset_path,
    doc_text,
    load_beir,
)
from .metrics import DEFAULT_K_VALUES, evaluate, latency_summary
from .report import SystemResult, markdown_table, write_report
from .runner import RunResult, Searcher, run_retrieval

__all__ = [
    "BEIR_DATASETS",
    "DEFAULT_K_VALUES",
    "BeirData",
    "DatasetNotFoundError",
    "PyseriniBM25",
    "PyseriniUnavailableError",
    "RunResult",
    "Searcher",
    "SplitNotFoundError",
    "SystemResult",
    "default_dataset_path",
    "doc_text",
    "evaluate",
    "latency_summary",
    "load_beir",
    "markdown_table",
    "run_retrieval",
    "write_report",
]
