"""The lexical part of an inference-free document: BM25's term-frequency saturation over the
model's own word pieces, added to the learned weights.

Why: an inference-free query is its tokens weighted by IDF, so the score is
sum_t idf(t) * d_t, and a document whose d_t holds BM25's saturated term frequency scores
exactly BM25 over word pieces. Adding that to the learned weights makes one sparse vector
that ranks like BM25 on exact matches and like the model on expansions and term importance:
the fusion of the two is done once per document at indexing, not per query, so the index
stays one index and queries stay a tokenizer call. Training (sparseretr train / adapt) then
learns the model's weights as a residual on top of it. The prior reads the whole document
(no max_length), so the tail of a long document still matches, where the transformer stops.

Only `avgdl` depends on the corpus; it is fitted with the IDF and saved beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from sparseretr.index.errors import UserInputError
from sparseretr.index.vectors import SparseVectors


@dataclass
class LexicalPrior:
    """weight * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avgdl)) per word piece.

    k1 and b are Anserini's BEIR defaults; `weight` scales the prior against the model's
    weights (log1p(ReLU) values of a few units)."""

    weight: float = 2.0
    k1: float = 0.9
    b: float = 0.4
    avgdl: float | None = None

    def __post_init__(self) -> None:
        if self.weight < 0 or self.k1 < 0 or not 0 <= self.b <= 1:
            raise UserInputError(
                f"lexical prior needs weight >= 0, k1 >= 0 and 0 <= b <= 1, got {self}"
            )

    def fit(self, token_lists: Sequence[Sequence[int]]) -> None:
        lengths = [len(t) for t in token_lists]
        self.avgdl = float(np.mean(lengths)) if lengths else 1.0
        self.avgdl = max(self.avgdl, 1.0)

    def vectors(self, token_lists: Sequence[Sequence[int]], vocab_size: int) -> SparseVectors:
        """The prior of each document, from its word-piece ids (no special tokens)."""
        if self.avgdl is None:
            raise RuntimeError("lexical prior has no avgdl: fit it on the corpus first")
        n = len(token_lists)
        lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=n)
        rows = np.repeat(np.arange(n), lengths)
        cols = np.fromiter((t for ids in token_lists for t in ids), dtype=np.int64)
        counts = sp.csr_matrix(  # from (row, col) pairs: repeated pieces are summed
            (np.ones(cols.size, dtype=np.float32), (rows, cols)), shape=(n, vocab_size)
        )
        tf = counts.data
        norm = self.k1 * (1 - self.b + self.b * lengths / self.avgdl)
        row_of = np.repeat(np.arange(n), np.diff(counts.indptr))
        counts.data = (self.weight * tf * (self.k1 + 1) / (tf + norm[row_of])).astype(np.float32)
        return SparseVectors.from_scipy(counts, vocab_size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> LexicalPrior | None:
        if not d:
            return None
        try:
            return cls(**{k: d[k] for k in ("weight", "k1", "b", "avgdl") if k in d})
        except TypeError as e:
            raise UserInputError(f"bad lexical prior settings {d}: {e}") from e


def add(a: SparseVectors, b: SparseVectors) -> SparseVectors:
    """Row-wise sum of two vector sets over the same vocabulary."""
    return SparseVectors.from_scipy((a.to_scipy() + b.to_scipy()).tocsr(), a.vocab_size)
