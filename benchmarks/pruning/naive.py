"""The floor every exact engine is held to: naive term-at-a-time in Numba.

About 40 lines anyone would write first: a dense int32 accumulator over all documents, one pass
over each query term's postings (plain doc ids and uint8 impacts, term-major), then one heap
over every document. No blocks, no pruning, no touched list. Integer query weights (the
benchmark quantizes them), so its top-k is exact and must equal ours on every query.
Benchmark code, not the product: it is the anchor ratios are printed against.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _worse(sa: int, da: int, sb: int, db: int) -> bool:
    """(score a, doc a) ranks below (score b, doc b): lower score, or equal and larger id."""
    return sa < sb or (sa == sb and da > db)


@njit(cache=True, nogil=True)
def naive_topk(
    term_ptr: np.ndarray,
    post_docs: np.ndarray,
    post_impacts: np.ndarray,
    q_terms: np.ndarray,
    q_weights: np.ndarray,
    k: int,
    acc: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k (score desc, doc id asc) of one query; acc int32[n_docs] zero in and out."""
    for j in range(q_terms.shape[0]):
        t = q_terms[j]
        w = np.int32(q_weights[j])
        for p in range(term_ptr[t], term_ptr[t + 1]):
            acc[post_docs[p]] += w * np.int32(post_impacts[p])
    hs = np.zeros(k, dtype=np.int64)  # min-heap on (score, -doc)
    hd = np.full(k, -1, dtype=np.int64)
    size = 0
    for d in range(acc.shape[0]):
        s = acc[d]
        if s == 0:
            continue
        acc[d] = 0
        if size < k:
            i = size
            size += 1
            while i > 0 and _worse(s, d, hs[(i - 1) // 2], hd[(i - 1) // 2]):
                hs[i], hd[i] = hs[(i - 1) // 2], hd[(i - 1) // 2]
                i = (i - 1) // 2
            hs[i], hd[i] = s, d
        elif _worse(hs[0], hd[0], s, d):
            i = 0
            while True:
                c = 2 * i + 1
                if c >= size:
                    break
                if c + 1 < size and _worse(hs[c + 1], hd[c + 1], hs[c], hd[c]):
                    c += 1
                if not _worse(hs[c], hd[c], s, d):
                    break
                hs[i], hd[i] = hs[c], hd[c]
                i = c
            hs[i], hd[i] = s, d
    order = np.argsort(-(hs[:size] * (1 << 31)) + hd[:size])  # score desc, id asc
    return hd[:size][order].astype(np.int32), hs[:size][order]
