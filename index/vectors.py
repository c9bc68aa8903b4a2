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
        if not parts:
            raise ValueError("nothing to concatenate")
        return cls.from_scipy(sp.vstack([p.to_scipy() for p in parts]), parts[0].vocab_size)
