"""Collections in the kernels' block layout, and random queries: shared by the kernel and
pruning tests, so both exercise the kernels through the same named argument groups."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from sparseretr.index.postings import encode_postings, postings_by_slot, term_kth_impacts
from sparseretr.kernels import Postings, Queries, Workspace, pruned_table_size

from sparseretr import kernels as K

NO_DENSE = 1 << 62  # no term has that many bytes of block rows


def readonly(a: np.ndarray) -> np.ndarray:
    """Read-only like a mapped index: one Numba specialization, not two."""
    a.setflags(write=False)
    return a


@dataclass
class Layout:
    """A collection as the kernels take it, plus the plain doc x term impacts it came from."""

    postings: Postings
    docs: sp.csr_matrix  # [n_docs, vocab] uint8 impacts by internal id
    dead: np.ndarray = field(default_factory=lambda: readonly(np.zeros(0, np.uint8)))

    @property
    def n_docs(self) -> int:
        return self.docs.shape[0]

    @property
    def bsize(self) -> int:
        return int(self.postings.bsize)

    @property
    def n_blocks(self) -> int:
        return -(-self.n_docs // self.bsize)

    def workspace(self, n_terms: int) -> Workspace:
        nb = self.n_blocks
        return Workspace(
            np.zeros(nb, np.float32),
            np.zeros(pruned_table_size(max(n_terms, 1), nb), np.int64),
            np.zeros(1, np.int64),
            np.empty(nb, np.int32),
            np.zeros(self.n_docs, np.float32),
            np.empty(self.n_docs, np.int32),
        )

    def batch_workspace(self, workers: int, n_terms: int) -> Workspace:
        """The parallel kernels' workspace: one row of each array per worker."""
        return Workspace(*(np.stack([a] * workers) for a in self.workspace(n_terms)))


def make_layout(
    docs: sp.csr_matrix, bsize: int, order: np.ndarray, dense_bytes: int = NO_DENSE
) -> Layout:
    """Encode doc x term impacts (CSR by internal id) with slot -> internal id `order`; the
    terms with >= dense_bytes of block rows are decoded ahead (1: every term that occurs)."""
    docs = sp.csr_matrix(docs, dtype=np.uint8)
    docs.sort_indices()
    term_ptr, slots, impacts = postings_by_slot(
        docs.indptr.astype(np.int64), docs.indices.astype(np.int32), docs.data, order,
        docs.shape[1],
    )  # fmt: skip
    block_ptr, rows, local, _ = encode_postings(term_ptr, slots, impacts, bsize)
    kth = term_kth_impacts(term_ptr, impacts)
    nb = -(-docs.shape[0] // bsize)
    dense = K.dense_terms(term_ptr, block_ptr, rows, local, impacts, bsize, nb, dense_bytes)
    dense = tuple(readonly(a) for a in K.narrow_slots(dense, bsize))  # as SparseIndex holds them
    arrays = (term_ptr, block_ptr, rows, local, impacts, order.astype(np.int32), kth)
    return Layout(Postings(*(readonly(a) for a in arrays), *dense, bsize), docs)


def random_queries(
    rng: np.random.Generator, vocab: int, nq: int, exact: bool, max_terms: int = 20,
    equal_weights: float = 0.3,
) -> Queries:  # fmt: skip
    """CSR queries of up to max_terms distinct terms. exact: dyadic weights (k/8), so float32
    products and sums are exact; equal_weights: share of queries whose terms all weigh the
    same (ties between docs with equal impacts)."""
    ptr, terms, weights = [0], [], []
    for _ in range(nq):
        nt = int(rng.integers(0, min(max_terms, vocab) + 1))
        t = np.sort(rng.choice(vocab, size=nt, replace=False))
        w = rng.integers(1, 17, size=nt) / 8.0 if exact else rng.random(nt) * 3 + 1e-3
        if nt and equal_weights and rng.random() < equal_weights:
            w[:] = w[0]
        terms.append(t)
        weights.append(w)
        ptr.append(ptr[-1] + nt)
    return Queries(
        np.asarray(ptr, dtype=np.int64),
        np.concatenate(terms).astype(np.int32),
        np.concatenate(weights).astype(np.float32),
    )


def query_row(q: Queries, r: int) -> Queries:
    """Row r of q as a one-query batch."""
    a, b = q.indptr[r], q.indptr[r + 1]
    return Queries(np.array([0, b - a], np.int64), q.terms[a:b], q.weights[a:b])


def one_query(terms: list[int], weights: list[float]) -> Queries:
    return Queries(
        np.array([0, len(terms)], np.int64),
        np.array(terms, np.int32),
        np.array(weights, np.float32),
    )
