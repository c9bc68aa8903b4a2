"""Sparsity cost of a sparse index for a query set: read quality against cost, always.

FLOPS = sum_t p_q(t) * p_d(t), with p(t) the share of queries / documents holding token t:
the expected multiply-adds per query-document pair (Paria et al. 2020), as the trainer reports
it, here measured on the built (quantized) index rather than on training batches.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def sparse_cost(engine: Any, q: Any) -> dict[str, float]:
    """Non-zeros per document (every stored posting, deleted docs included) and per query, and
    FLOPS of these queries (SparseVectors from engine.encode) against the whole index."""
    df, n_docs = engine.snapshot.doc_freqs("sparse")
    n_docs = max(1, n_docs)
    p_q = np.bincount(q.indices, minlength=df.size)[: df.size] / max(1, len(q))
    return {
        "nnz_per_doc": float(df.sum() / n_docs),
        "nnz_per_query": q.nnz / max(1, len(q)),
        "flops": float(p_q @ (df / n_docs)),
    }
