"""Compact block-local postings (format v2): build-side helpers around the layout's codec.

Layout (file names in index/format.py). Documents live in *slots*: the build reorders them so
that similar documents sit next to each other, and slot s belongs to block s // B. For each
term t, its postings are sorted by slot and cut at block boundaries:

    term_ptr[t] .. term_ptr[t+1]     postings of t: post_docs (s % B, uint8), post_impacts (uint8)
    block_ptr[t] .. block_ptr[t+1]   bytes of block_rows: one variable-length row per block
                                     holding t, in block order

A row is a header byte (block-id gap in the high bits, count - 1 in the low ceil(log2 B) bits),
escape bytes when the gap does not fit, and the block-max impact only when count > 1. Block ids
are delta-coded from -1; posting offsets are the running sum of counts. Why this shape: a
posting costs 2 bytes, a (term, block) pair mostly 1-2 (two thirds hold a single posting, whose
impact is the block max already), the scan is purely sequential, and the block maxima the
pruned kernel needs come with the offsets.

The codec itself (encode, decode, validate, lookup) lives in kernels/scoring.py next to the
search loops, so the layout has one reader; this module wraps it and holds the build-only
passes (counting sort by term, k-th impacts, static pruning).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from sparseretr.kernels import scoring

MAX_BLOCK_SIZE = 128  # count - 1 and a gap code of >= 1 bit must share the header byte
KTH_LEVELS = (10, 100, 1000)  # columns of term_kth
MAX_POSTINGS = 1 << 40  # offsets are packed into 40 bits by the pruned kernel


def encode_postings(
    term_ptr: np.ndarray, slots: np.ndarray, impacts: np.ndarray, block_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Slot-sorted postings per term -> (block_ptr int64, block_rows uint8, post_docs uint8,
    number of rows). slots must ascend within each term; impacts are stored as they are."""
    check_block_size(block_size)
    if slots.size >= MAX_POSTINGS:
        raise ValueError(f"at most {MAX_POSTINGS} postings per index")
    block_ptr = np.zeros(term_ptr.size, dtype=np.int64)
    empty = np.zeros(0, dtype=np.uint8)
    scoring.encode_rows(term_ptr, slots, impacts, block_size, block_ptr, empty, empty, True)
    rows = np.empty(int(block_ptr[-1]), dtype=np.uint8)
    local = np.empty(slots.size, dtype=np.uint8)
    n_rows = scoring.encode_rows(
        term_ptr, slots, impacts, block_size, block_ptr, rows, local, False
    )
    return block_ptr, rows, local, int(n_rows)


def decode_slots(
    term_ptr: np.ndarray,
    block_ptr: np.ndarray,
    block_rows: np.ndarray,
    post_docs: np.ndarray,
    post_impacts: np.ndarray,
    block_size: int,
) -> np.ndarray:
    """Inverse of encode_postings for the doc side: the slot of every posting (int32)."""
    out = np.empty(post_docs.shape[0], dtype=np.int32)
    scoring.decode_slots(term_ptr, block_ptr, block_rows, post_docs, post_impacts, block_size, out)
    return out


def layout_ok(
    term_ptr: np.ndarray,
    block_ptr: np.ndarray,
    block_rows: np.ndarray,
    post_docs: np.ndarray,
    post_impacts: np.ndarray,
    block_size: int,
    n_docs: int,
) -> bool:
    """Full scan of the postings (SparseIndex.open(verify=True)); O(n_postings)."""
    return bool(
        scoring.layout_ok(
            term_ptr, block_ptr, block_rows, post_docs, post_impacts, block_size, n_docs
        )
    )


def lookup_impacts(
    term_ptr: np.ndarray,
    block_ptr: np.ndarray,
    block_rows: np.ndarray,
    post_docs: np.ndarray,
    post_impacts: np.ndarray,
    block_size: int,
    slot: int,
    terms: np.ndarray,
) -> np.ndarray:
    """Impacts (0 where absent) of `terms` in the doc at `slot`: a scan of each term's rows."""
    out = np.zeros(terms.size, dtype=np.uint8)
    scoring.lookup_impacts(
        term_ptr, block_ptr, block_rows, post_docs, post_impacts, block_size, int(slot),
        np.ascontiguousarray(terms, dtype=np.int64), out,
    )  # fmt: skip
    return out


@njit(cache=True)
def _kth(term_ptr: np.ndarray, impacts: np.ndarray, levels: np.ndarray, out: np.ndarray) -> None:
    """out[t, i] = levels[i]-th largest impact of term t (0 when it has fewer postings)."""
    hist = np.zeros(256, dtype=np.int64)
    for t in range(term_ptr.shape[0] - 1):
        a, b = term_ptr[t], term_ptr[t + 1]
        if b - a < levels[0]:
            continue
        hist[:] = 0
        for p in range(a, b):
            hist[impacts[p]] += 1
        seen = 0
        i = 0
        for v in range(255, 0, -1):
            seen += hist[v]
            while i < levels.shape[0] and seen >= levels[i]:
                out[t, i] = v
                i += 1
            if i == levels.shape[0]:
                break


def term_kth_impacts(term_ptr: np.ndarray, impacts: np.ndarray) -> np.ndarray:
    """uint8 [vocab, len(KTH_LEVELS)]: a safe starting threshold for top-k (BMP's trick).

    At least k documents contain term t with impact >= kth, and every contribution is >= 0,
    so w * kth bounds the k-th best score from below before a single block is scored.
    """
    out = np.zeros((term_ptr.size - 1, len(KTH_LEVELS)), dtype=np.uint8)
    _kth(term_ptr, impacts, np.asarray(KTH_LEVELS, dtype=np.int64), out)
    return out


@njit(cache=True)
def _by_term(
    indptr: np.ndarray,
    indices: np.ndarray,
    impacts: np.ndarray,
    order: np.ndarray,
    cursor: np.ndarray,
    slots: np.ndarray,
    out_imp: np.ndarray,
) -> None:
    for s in range(order.shape[0]):
        d = order[s]
        for p in range(indptr[d], indptr[d + 1]):
            t = indices[p]
            c = cursor[t]
            slots[c] = s
            out_imp[c] = impacts[p]
            cursor[t] = c + 1


def postings_by_slot(
    indptr: np.ndarray, indices: np.ndarray, impacts: np.ndarray, order: np.ndarray, vocab: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Doc-major CSR -> term-major (term_ptr, slots int32, impacts), slots ascending per term.

    A counting sort: walking the docs in slot order appends to each term's list in slot order,
    so no comparison sort of the postings is ever needed (O(n_postings), 1M docs in seconds).
    """
    counts = np.bincount(indices, minlength=vocab).astype(np.int64)
    term_ptr = np.zeros(vocab + 1, dtype=np.int64)
    np.cumsum(counts, out=term_ptr[1:])
    slots = np.empty(indices.size, dtype=np.int32)
    out_imp = np.empty(indices.size, dtype=np.uint8)
    _by_term(indptr, indices, impacts, order, term_ptr[:-1].copy(), slots, out_imp)
    return term_ptr, slots, out_imp


@njit(cache=True)
def _top_terms(indptr: np.ndarray, data: np.ndarray, n: int, keep: np.ndarray) -> None:
    for d in range(indptr.shape[0] - 1):
        a, b = indptr[d], indptr[d + 1]
        if b - a <= n:
            keep[a:b] = True
            continue
        order = np.argsort(-data[a:b], kind="mergesort")
        for i in range(n):
            keep[a + order[i]] = True


def top_terms_mask(indptr: np.ndarray, data: np.ndarray, n: int) -> np.ndarray:
    """Static pruning: mask of each document's n largest weights (ties: the earlier term)."""
    keep = np.zeros(data.size, dtype=np.bool_)
    _top_terms(indptr, data, int(n), keep)
    return keep


def check_block_size(block_size: int) -> int:
    if isinstance(block_size, bool) or not 1 <= int(block_size) <= MAX_BLOCK_SIZE:
        raise ValueError(f"block_size must lie in [1, {MAX_BLOCK_SIZE}], got {block_size!r}")
    return int(block_size)
