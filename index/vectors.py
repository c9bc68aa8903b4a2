"""CSR sparse vectors: the one currency between encoders, index and kernels.

Arrays, not dicts, so that millions of documents stay cheap to hold and to hand to Numba.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class SparseVectors:
    """Rows of (term id, weight) pairs in CSR layout; weights are strictly positive."""

    indptr: np.ndarray  # int64, shape (n + 1,)
    indices: np.ndarray  # int32 term ids, sorted within each row
    data: np.ndarray  # float32 weights
    vocab_size: int

    def __post_init__(self) -> None:
        if self.indptr.ndim != 1 or self.indptr.size == 0 or self.indptr[0] != 0:
            raise ValueError("indptr must be 1-D and start at 0")
        if self.indices.shape != self.data.shape or self.indptr[-1] != self.indices.size:
            raise ValueError("indices/data length must equal indptr[-1]")

    def __len__(self) -> int:
        return int(self.indptr.size - 1)

    @property
    def nnz(self) -> int:
        return int(self.indices.size)

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = int(self.indptr[i]), int(self.indptr[i + 1])
        return self.indices[a:b], self.data[a:b]

    def nnz_per_row(self) -> np.ndarray:
        return np.diff(self.indptr)

    def to_scipy(self) -> sp.csr_matrix:
        return sp.csr_matrix(
            (self.data, self.indices, self.indptr), shape=(len(self), self.vocab_size)
        )

    def to_dicts(self) -> list[dict[int, float]]:
        """Small, human-facing view (explain output, tests); never on a hot path."""
        return [
            {int(t): float(w) for t, w in zip(*self.row(i), strict=True)} for i in range(len(self))
        ]

    def below(self, vocab_size: int) -> SparseVectors:
        """These rows without term ids >= vocab_size, over that vocabulary (a segment written
        before its side's vocabulary grew holds none of the newer words)."""
        if vocab_size >= self.vocab_size:
            return self
        keep = self.indices < vocab_size
        indptr = np.concatenate([[0], np.cumsum(keep)])[self.indptr]
        return SparseVectors(
            indptr.astype(np.int64), self.indices[keep], self.data[keep], vocab_size
        )

    def widened(self, vocab_size: int) -> SparseVectors:
        """The same rows over a larger vocabulary (one that grew: older ids keep their place)."""
        if vocab_size < self.vocab_size:
            raise ValueError(f"cannot widen a {self.vocab_size}-term vocabulary to {vocab_size}")
        return SparseVectors(self.indptr, self.indices, self.data, vocab_size)

    def slice(self, rows: Sequence[int] | np.ndarray) -> SparseVectors:
        return SparseVectors.from_scipy(self.to_scipy()[np.asarray(rows)], self.vocab_size)

    @classmethod
    def from_scipy(cls, m: sp.spmatrix, vocab_size: int | None = None) -> SparseVectors:
        m = sp.csr_matrix(m, dtype=np.float32)
        m.eliminate_zeros()
        m.sort_indices()
        return cls(
            indptr=m.indptr.astype(np.int64),
            indices=m.indices.astype(np.int32),
            data=m.data.astype(np.float32),
            vocab_size=int(vocab_size if vocab_size is not None else m.shape[1]),
        )

    @classmethod
    def from_rows(
        cls, rows: Iterable[tuple[np.ndarray, np.ndarray]], vocab_size: int
    ) -> SparseVectors:
        """Build from per-row (term ids, weights); duplicate ids in a row are summed."""
        ind, dat, ptr = [], [], [0]
        for ids, w in rows:
            ind.append(np.asarray(ids, dtype=np.int32))
            dat.append(np.asarray(w, dtype=np.float32))
            ptr.append(ptr[-1] + len(ind[-1]))
        indices = np.concatenate(ind) if ind else np.zeros(0, np.int32)
        data = np.concatenate(dat) if dat else np.zeros(0, np.float32)
        m = sp.csr_matrix(
            (data, indices, np.asarray(ptr, np.int64)), shape=(len(ptr) - 1, vocab_size)
        )
        m.sum_duplicates()
        return cls.from_scipy(m, vocab_size)

    @classmethod
    def concat(cls, parts: Sequence[SparseVectors]) -> SparseVectors:
        """Rows of every part in order, over the largest part's vocabulary (a vocabulary
        that grew keeps its older ids, so smaller ones are a prefix of it)."""
        if not parts:
            raise ValueError("nothing to concatenate")
        offsets = np.cumsum([0] + [p.nnz for p in parts[:-1]])
        indptr = np.concatenate(
            [[0]] + [p.indptr[1:].astype(np.int64) + o for p, o in zip(parts, offsets, strict=True)]
        )
        return cls(
            indptr.astype(np.int64),
            np.concatenate([p.indices for p in parts]).astype(np.int32, copy=False),
            np.concatenate([p.data for p in parts]).astype(np.float32, copy=False),
            max(p.vocab_size for p in parts),
        )
