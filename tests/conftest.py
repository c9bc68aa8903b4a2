"""Shared fixtures: a tiny BEIR-format corpus, the default SPLADE encoder loaded once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sparseretr  # noqa: F401  first, before any test imports transformers: sparseretr/_checkout.py

SCIFACT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "beir" / "scifact"

TINY_DOCS = [
    {
        "_id": "d1",
        "title": "Vitamin D and cancer",
        "text": "Vitamin D deficiency raises cancer risk in adults.",
    },
    {
        "_id": "d2",
        "title": "Protein folding",
        "text": "Chaperones help proteins fold inside the cell.",
    },
    {"_id": "d3", "title": "Sleep", "text": "Sleep deprivation impairs memory consolidation."},
    {
        "_id": "d4",
        "title": "Cancer screening",
        "text": "Screening programs reduce cancer mortality.",
    },
    {
        "_id": "d5",
        "title": "Exercise",
        "text": "Regular exercise lowers blood pressure and heart disease risk.",
    },
    {"_id": "d6", "title": "", "text": ""},
]
TINY_QUERIES = [
    {"_id": "q1", "text": "vitamin D deficiency cancer"},
    {"_id": "q2", "text": "how do proteins fold"},
    {"_id": "q3", "text": "exercise and blood pressure"},
]
TINY_QRELS = [("q1", "d1", 1), ("q1", "d4", 1), ("q2", "d2", 1), ("q3", "d5", 1)]


@pytest.fixture(scope="session")
def tiny_beir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny_beir")
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in TINY_DOCS) + "\n")
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in TINY_QUERIES) + "\n")
    (root / "qrels").mkdir()
    rows = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in TINY_QRELS]
    (root / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="session")
def splade():
    from sparseretr.encoders import SpladeEncoder

    return SpladeEncoder(batch_size=4)


@pytest.fixture(scope="session")
def scifact() -> Path:
    if not (SCIFACT / "corpus.jsonl").is_file():
        pytest.skip(f"SciFact not found at {SCIFACT}")
    return SCIFACT.resolve()
