"""Document reordering at build time: similar documents share blocks, so block maxima are tight.

Why: block-max pruning skips a block only when the sum of its per-term maxima cannot beat the
current k-th score. In input order every block holds a bit of every topic and its maxima are
high for most queries; clustered, a query's topic lives in a few blocks and the rest have low
bounds. Fewer (term, block) pairs also make the postings smaller.

How: recursive balanced bisection by spherical 2-means on the documents' heaviest tf-idf terms
(a sparse sketch, so a split costs O(sketch postings), not O(n * vocab)). Each segment is cut
into two halves of whole blocks along c_left - c_right, then each half is cut again until a
segment is one block. Recursive graph bisection (BP) optimizes the same locality more
directly but costs far more per split; 2-means gets most of the benefit at a fraction of it.

Deterministic: every random choice derives from `seed`.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from sparseretr.index.vectors import SparseVectors

SKETCH_TERMS = 48  # heaviest tf-idf terms kept per document for clustering


@njit(cache=True)
def _sketch(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, idf: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each doc's m largest w * idf terms, L2-normalized: the clustering representation."""
    n = indptr.shape[0] - 1
    ptr = np.zeros(n + 1, dtype=np.int64)
    for d in range(n):
        ptr[d + 1] = ptr[d] + min(m, indptr[d + 1] - indptr[d])
    ind = np.empty(ptr[n], dtype=np.int32)
    val = np.empty(ptr[n], dtype=np.float32)
    for d in range(n):
        a, b = indptr[d], indptr[d + 1]
        s = np.empty(b - a, dtype=np.float32)
        for p in range(a, b):
            s[p - a] = data[p] * idf[indices[p]]
        top = np.argsort(-s, kind="mergesort")[: ptr[d + 1] - ptr[d]]
        norm = np.float32(0)
        for i in range(top.shape[0]):
            norm += s[top[i]] * s[top[i]]
        norm = np.float32(np.sqrt(norm)) if norm > 0 else np.float32(1)
        for i in range(top.shape[0]):
            ind[ptr[d] + i] = indices[a + top[i]]
            val[ptr[d] + i] = s[top[i]] / norm
    return ptr, ind, val


@njit(cache=True)
def _dot(ptr: np.ndarray, ind: np.ndarray, val: np.ndarray, d: int, c: np.ndarray) -> float:
    s = np.float32(0)
    for p in range(ptr[d], ptr[d + 1]):
        s += val[p] * c[ind[p]]
    return s


@njit(cache=True)
def _bisect(
    ptr: np.ndarray,
    ind: np.ndarray,
    val: np.ndarray,
    vocab: int,
    bsize: int,
    iters: int,
    seed: int,
) -> np.ndarray:
    """Slot order: split segments into halves of whole blocks until each is one block."""
    n = ptr.shape[0] - 1
    order = np.arange(n).astype(np.int32)
    np.random.seed(seed)
    stack = np.empty((128, 2), dtype=np.int64)
    stack[0, 0] = 0
    stack[0, 1] = n
    top = 1
    c1 = np.zeros(vocab, dtype=np.float32)
    key = np.empty(n, dtype=np.float32)
    while top > 0:
        top -= 1
        lo, hi = stack[top, 0], stack[top, 1]
        size = hi - lo
        if size <= bsize:
            continue
        n_blocks = (size + bsize - 1) // bsize
        n_left = (n_blocks // 2) * bsize  # the ragged last block always ends up rightmost
        seg = order[lo:hi]
        # Seeds: a random document and the least similar of a sample (a cheap 2-means++).
        a = seg[np.random.randint(0, size)]
        for p in range(ptr[a], ptr[a + 1]):
            c1[ind[p]] = val[p]
        best, far = np.float32(np.inf), a
        for _ in range(min(size, 64)):
            d = seg[np.random.randint(0, size)]
            s = _dot(ptr, ind, val, d, c1)
            if s < best:
                best, far = s, d
        for p in range(ptr[far], ptr[far + 1]):
            c1[ind[p]] -= val[p]  # c1 = a - far: the first direction
        for it in range(iters + 1):
            # Project on c1 (= c_left - c_right); the n_left largest go left: balanced split.
            for i in range(size):
                key[i] = -_dot(ptr, ind, val, seg[i], c1)
            perm = np.argsort(key[:size], kind="mergesort")
            seg[:] = seg[perm]
            # Reset c1 (only the touched terms), then c1 = mean(left) - mean(right).
            for i in range(size):
                d = seg[i]
                for p in range(ptr[d], ptr[d + 1]):
                    c1[ind[p]] = 0
            if it == iters:
                break
            wl = np.float32(1.0 / max(n_left, 1))
            wr = np.float32(1.0 / max(size - n_left, 1))
            for i in range(size):
                d = seg[i]
                wgt = wl if i < n_left else -wr
                for p in range(ptr[d], ptr[d + 1]):
                    c1[ind[p]] += wgt * val[p]
        stack[top, 0] = lo + n_left
        stack[top, 1] = hi
        top += 1
        stack[top, 0] = lo
        stack[top, 1] = lo + n_left
        top += 1
    return order


def reorder_docs(
    vectors: SparseVectors,
    block_size: int,
    *,
    seed: int = 0,
    iters: int = 4,
    sketch_terms: int = SKETCH_TERMS,
) -> np.ndarray:
    """int32 [n]: slot -> internal doc id. Blocks are slots [b * block_size, (b+1) * block_size)."""
    n, vocab = len(vectors), vectors.vocab_size
    if n <= block_size:
        return np.arange(n, dtype=np.int32)
    df = np.bincount(vectors.indices, minlength=vocab).astype(np.float64)
    idf = np.log((n + 1.0) / (df + 1.0)).astype(np.float32)
    ptr, ind, val = _sketch(vectors.indptr, vectors.indices, vectors.data, idf, sketch_terms)
    return _bisect(ptr, ind, val, vocab, int(block_size), int(iters), int(seed))
