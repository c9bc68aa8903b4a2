"""The reference top-k every kernel is checked against: a scipy product, no pruning, no
blocks. Slow and simple on purpose; tests and `eval --check-exact` call it, never search."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sparseretr.index.vectors import SparseVectors


def brute_force(
    postings: tuple[np.ndarray, np.ndarray, np.ndarray],
    n_docs: int,
    scale: float,
    queries: SparseVectors,
    k: int,
    live: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k for each query via Q @ impacts.T over postings (term_ptr, doc ids, impacts: the
    plain CSC view, SparseIndex.postings); same shapes and order as SparseIndex.search().

    The scale is factored out (then * scale, like the kernel) and ranking uses the float32
    pre-scale score, so exact ties fall exactly as in search(). The float64 sum can differ
    from the kernel's float32 sum in the last bits for non-dyadic query weights. live: bool
    by internal id (None: every document).
    """
    nq = len(queries)
    ids = np.full((nq, k), -1, dtype=np.int32)
    scores = np.zeros((nq, k), dtype=np.float32)
    if nq == 0 or n_docs == 0:
        return ids, scores
    term_ptr, post_docs, post_impacts = postings
    docs_by_term = sp.csr_matrix(
        (post_impacts.astype(np.float64), post_docs, term_ptr),
        shape=(term_ptr.size - 1, n_docs),
    )
    q = queries.to_scipy().astype(np.float64)
    q.data[q.data <= 0] = 0  # the kernel ignores non-positive query weights
    prod = sp.csr_matrix(q @ docs_by_term)
    for r in range(nq):
        a, b = prod.indptr[r], prod.indptr[r + 1]
        cols = prod.indices[a:b].astype(np.int32)
        vals = prod.data[a:b].astype(np.float32)
        keep = vals > 0
        if live is not None and live.size:
            keep &= live[cols]
        cols, vals = cols[keep], vals[keep]
        order = np.lexsort((cols, -vals))[:k]
        ids[r, : order.size] = cols[order]
        scores[r, : order.size] = vals[order] * np.float32(scale)
    return ids, scores
