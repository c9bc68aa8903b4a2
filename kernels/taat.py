"""Exact term-at-a-time (TAAT) scoring over uint8 impact postings.

Why TAAT with a dense accumulator: learned-sparse queries are short, so walking each query term's
posting list and adding into an array indexed by doc id is the cheapest exact method. A list of
touched docs keeps both the top-k pass and the accumulator reset proportional to the postings
actually read, never to the collection size, so one accumulator can be reused across queries.

Scores are float32 sums of ``q_weight * impact`` in query-term order (the caller dequantizes).
Query terms with weight <= 0 or an id outside [0, vocab) are skipped: they cannot raise a score,
and skipping keeps a bad id from reading out of bounds (the API layer rejects bad ids loudly).

Top-k uses a size-k binary min-heap over the touched docs, built in the output buffers, then
heapsorts just those k: O(touched * log k), no sort of the collection, no extra allocation.
Order (which every reference in this project must reproduce): score descending; among equal
scores, the smaller doc id first.

Why one module: Numba's on-disk cache (cache=True) is invalidated only by edits to the file that
defines a function, not to the files of the jitted functions it calls. Keeping every compiled
function here means an edit can never leave a stale cached kernel behind.
"""

from __future__ import annotations

import numpy as np
from numba import config, njit, prange

# Default chunk count for search_batch. Read once from config (the process-wide thread ceiling)
# because calling numba.get_num_threads() inside a kernel makes it uncacheable.
_DEFAULT_CHUNKS = max(1, int(config.NUMBA_NUM_THREADS))


@njit(cache=True, nogil=True, inline="always")
def _worse(s_a: float, d_a: int, s_b: float, d_b: int) -> bool:
    """True when (s_a, d_a) ranks below (s_b, d_b): lower score, or same score and larger id."""
    return s_a < s_b or (s_a == s_b and d_a > d_b)


@njit(cache=True, nogil=True)
def _sift_down(hs: np.ndarray, hd: np.ndarray, i: int, size: int) -> None:
    """Restore the heap below i; the worst-ranked entry sits at the root."""
    s, d = hs[i], hd[i]
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        r = c + 1
        if r < size and _worse(hs[r], hd[r], hs[c], hd[c]):
            c = r
        if not _worse(hs[c], hd[c], s, d):
            break
        hs[i] = hs[c]
        hd[i] = hd[c]
        i = c
    hs[i] = s
    hd[i] = d


@njit(cache=True, nogil=True)
def topk_touched(
    acc: np.ndarray, touched: np.ndarray, n_touched: int, k: int, hs: np.ndarray, hd: np.ndarray
) -> int:
    """Write the best min(k, n_touched) of acc[touched[:n_touched]] into hs/hd, best first.

    Returns how many were written. hs/hd must hold at least k entries.
    """
    m = min(k, n_touched)
    if m <= 0:
        return 0
    # Fill with the first m docs, then heapify bottom-up (O(m)).
    for j in range(m):
        d = touched[j]
        hs[j] = acc[d]
        hd[j] = d
    for j in range(m // 2 - 1, -1, -1):
        _sift_down(hs, hd, j, m)
    # Each remaining doc replaces the root only when it ranks strictly above it.
    for j in range(m, n_touched):
        d = touched[j]
        s = acc[d]
        if _worse(hs[0], hd[0], s, d):
            hs[0] = s
            hd[0] = d
            _sift_down(hs, hd, 0, m)
    # Heapsort in place: repeatedly move the worst to the end, leaving the best at index 0.
    for end in range(m - 1, 0, -1):
        s, d = hs[0], hd[0]
        hs[0] = hs[end]
        hd[0] = hd[end]
        hs[end] = s
        hd[end] = d
        _sift_down(hs, hd, 0, end)
    return m


@njit(cache=True, nogil=True)
def _score_topk(
    q_terms: np.ndarray,
    q_weights: np.ndarray,
    qa: int,
    qb: int,
    term_ptr: np.ndarray,
    post_docs: np.ndarray,
    post_impacts: np.ndarray,
    k: int,
    acc: np.ndarray,
    touched: np.ndarray,
    out_ids: np.ndarray,
    out_scores: np.ndarray,
    row: int,
) -> int:
    """Score query terms [qa, qb) and write its top-k into out_*[row]; the one shared core.

    acc must be all zero on entry and is all zero again on return. Returns the result count.
    """
    vocab = term_ptr.shape[0] - 1
    n_touched = 0
    for j in range(qa, qb):
        t = q_terms[j]
        w = np.float32(q_weights[j])
        if t < 0 or t >= vocab or not w > 0:
            continue
        for p in range(term_ptr[t], term_ptr[t + 1]):
            d = post_docs[p]
            # w > 0 and impact >= 1, so every contribution is > 0: zero means "not touched yet".
            if acc[d] == 0:
                touched[n_touched] = d
                n_touched += 1
            acc[d] += w * np.float32(post_impacts[p])
    m = topk_touched(acc, touched, n_touched, k, out_scores[row], out_ids[row])
    for j in range(n_touched):
        acc[touched[j]] = 0
    return m


@njit(cache=True, nogil=True)
def search_one(
    q_terms: np.ndarray,
    q_weights: np.ndarray,
    term_ptr: np.ndarray,
    post_docs: np.ndarray,
    post_impacts: np.ndarray,
    n_docs: int,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of one query: (doc ids int32[m], scores float32[m]), m = min(k, docs scoring > 0).

    Order: score descending, ties by smaller doc id first.
    """
    kk = max(k, 0)
    acc = np.zeros(n_docs, dtype=np.float32)
    touched = np.empty(n_docs, dtype=np.int32)
    out_ids = np.full((1, kk), -1, dtype=np.int32)
    out_scores = np.zeros((1, kk), dtype=np.float32)
    m = _score_topk(
        q_terms, q_weights, 0, q_terms.shape[0], term_ptr, post_docs, post_impacts,
        kk, acc, touched, out_ids, out_scores, 0,
    )  # fmt: skip
    return out_ids[0, :m].copy(), out_scores[0, :m].copy()


@njit(parallel=True, cache=True, nogil=True)
def search_batch(
    q_indptr: np.ndarray,
    q_terms: np.ndarray,
    q_weights: np.ndarray,
    term_ptr: np.ndarray,
    post_docs: np.ndarray,
    post_impacts: np.ndarray,
    n_docs: int,
    k: int,
    n_chunks: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of every CSR query row: ids int32[nq, k] (-1 padded), scores float32[nq, k] (0 padded).

    One accumulator per chunk, not per query: the accumulator is the only O(n_docs) allocation,
    so memory is n_chunks * n_docs * 8 bytes. n_chunks <= 0 means one chunk per Numba thread
    (pass numba.get_num_threads() to follow set_num_threads). Queries are dealt to chunks
    round-robin so long and short queries spread evenly.
    """
    nq = q_indptr.shape[0] - 1
    kk = max(k, 0)
    out_ids = np.full((nq, kk), -1, dtype=np.int32)
    out_scores = np.zeros((nq, kk), dtype=np.float32)
    chunks = n_chunks if n_chunks > 0 else _DEFAULT_CHUNKS
    chunks = min(nq, chunks)
    for c in prange(chunks):
        acc = np.zeros(n_docs, dtype=np.float32)
        touched = np.empty(n_docs, dtype=np.int32)
        for qi in range(c, nq, chunks):
            _score_topk(
                q_terms, q_weights, q_indptr[qi], q_indptr[qi + 1], term_ptr, post_docs,
                post_impacts, kk, acc, touched, out_ids, out_scores, qi,
            )  # fmt: skip
    return out_ids, out_scores
