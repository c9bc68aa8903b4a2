"""Inverse document frequencies over a tokenizer's vocabulary, stored OpenSearch `idf.json` style.

Inference-free queries are weighted by IDF alone, so these weights are the whole query model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from sparseretr.index.errors import UserInputError

IDF_FILE = "idf.json"


def document_frequencies(
    token_lists: Iterable[Sequence[int]], vocab_size: int
) -> tuple[np.ndarray, int]:
    """Number of documents containing each token id, and the number of documents."""
    df = np.zeros(vocab_size, dtype=np.int64)
    n = 0
    for ids in token_lists:
        df[np.unique(np.asarray(ids, dtype=np.int64))] += 1
        n += 1
    return df, n


def bm25_idf(df: np.ndarray, n_docs: int) -> np.ndarray:
    """Lucene's BM25 IDF, log(1 + (N - df + 0.5) / (df + 0.5)): positive even for common terms."""
    df = np.asarray(df, dtype=np.float64)
    return np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)


def save_idf_json(path: Path, idf: np.ndarray, vocab: Sequence[str]) -> None:
    """Write {token: weight} for every token with a positive weight."""
    table = {tok: round(float(w), 6) for tok, w in zip(vocab, idf, strict=True) if w > 0}
    Path(path).write_text(json.dumps(table, ensure_ascii=False))


def load_idf_json(path: Path, token_to_id: dict[str, int], vocab_size: int) -> np.ndarray:
    """Read an idf.json into a dense weight vector; tokens missing from the file weigh 0."""
    try:
        table = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserInputError(f"cannot read IDF table {path}: {e}") from e
    if not isinstance(table, dict):
        raise UserInputError(f"{path} must hold a JSON object of token -> weight")
    idf = np.zeros(vocab_size, dtype=np.float32)
    for tok, w in table.items():
        tid = token_to_id.get(tok)
        if tid is not None and tid < vocab_size:
            idf[tid] = float(w)
    return idf
