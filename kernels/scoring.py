"""Exact and block-max pruned top-k over compact block-local impact postings.

Layout (index/format.py): documents sit in *slots*, slot s in block s // B (B <= 128); per
term, postings hold (s % B, impact) in slot order, and a byte stream holds one *row* per block
the term occurs in: a header byte (gap code in the high 8 - cb bits, count - 1 in the low cb
bits, cb = bits for B - 1), escape bytes when the block-id gap exceeds the gap code's range
(zeros add 255 each, then the rest), and the block-max impact only when count > 1 (a single
posting's impact *is* the block max, so it is read from the postings instead). Block ids start
at -1 and add the gaps; posting offsets are the running sum of counts, never stored.
doc_order[s] is the internal doc id at slot s. Results always come back as internal ids.
dead: uint8 by internal id, nonzero = deleted (a segment's deletions): such docs are scored
but never enter the top-k, so results are the exact top-k of the live docs; an empty array
means none are deleted.
This module also holds the layout's encoder, decoder and validator, so the format has exactly
one reader (_next_row).

Order, everywhere and in every method: score descending; among equal scores, the smaller
*internal* doc id first (internal id = position in build_index's input, not the slot). The
slot order is an implementation detail of the layout, so ties never depend on how the build
happened to cluster documents, and the pruned and exhaustive paths agree bit for bit.

Scores are float32 sums of ``q_weight * impact`` in query-term order (the caller dequantizes).
Query terms with weight <= 0 or an id outside [0, vocab) are skipped.

exhaustive: term-at-a-time into a slot-indexed accumulator with a touched list, so the top-k
pass and the reset cost O(postings read), never O(n_docs).

pruned (Block-Max Pruning, Mallia, Suel & Tonellotto, SIGIR 2024, on a sparse block-max):
1. one sequential scan of each query term's block rows adds ``w * block_max`` into a per-block
   upper bound and appends (block, posting offset) to a per-query row list, written strictly
   front to back; a small per-(term, chunk of 16 blocks) directory, stamped with a generation
   number so it is never cleared, points at the term's last row in each chunk. Scattering
   the offsets into a dense (term, block) table instead cost a third of the query: at 1M docs
   it spans megabytes, so nearly every write missed the cache. Terms found in most blocks
   come decoded ahead (dense_terms: block max and count per block, an offset per chunk), so
   they cost one vectorized add per block instead of a variable-length row decode;
2. blocks are visited best bound first (bucket lists over 1024 bound ranges) and scored
   exactly (block-local accumulator, terms in query order: the same float32 operations as
   the exhaustive path);
3. it stops once the best bound left is below the current k-th score. Float32 sums of
   non-negative terms are monotone, so bound >= every score in the block holds bit for bit;
   stopping only on a strict "<" keeps documents that tie the k-th score and might win on id.
   When the bounds are loose for a query (large k, flat weights: still going once the range
   lookups have cost about what walking every row once would), the blocks still above the
   k-th score are scored term at a time instead, each term's rows and postings read front to
   back into a slot accumulator, in query-term order like every other path.
The k-th largest impact of each term (term_kth) gives a valid threshold before any block is
scored: at least k documents score >= w * kth.
Approximate knobs (off by default): alpha < 1 skips blocks once alpha * bound < k-th score;
term_fraction < 1 keeps only the heaviest ceil(fraction * terms) query terms.

Arguments come in named groups (bm25s' call style), each a namedtuple Numba compiles as one
struct: Queries (the CSR query rows), Postings (one index's arrays, as SparseIndex.kernel_postings
builds them) and Workspace (one thread's scratch). A call reads `search_pruned(queries, postings,
dead, k, alpha, term_fraction, workspace)`, not 22 positional arrays in an order to get right.

Why one module: Numba's on-disk cache (cache=True) is invalidated only by edits to the file that
defines a function, not to the files of the jitted functions it calls. Keeping every compiled
search function here means an edit can never leave a stale cached kernel behind.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

Queries = namedtuple("Queries", ["indptr", "terms", "weights"])
Queries.__doc__ = """CSR query rows: indptr int64[nq + 1], terms int32, weights float32."""

Postings = namedtuple(
    "Postings",
    ["term_ptr", "block_ptr", "block_rows", "post_docs", "post_impacts", "doc_order",
     "term_kth", "dense_slot", "dense_max", "dense_count", "dense_offset",
     "dense_chunk_slot", "dense_pos", "bsize"],
)  # fmt: skip
Postings.__doc__ = """One index as the kernels read it (the layout in the module notes):
term_ptr int64[vocab + 1], block_ptr int64[vocab + 1], block_rows uint8, post_docs uint8 (slot
within its block), post_impacts uint8, doc_order int32[n_docs] (internal id at each slot),
term_kth uint8[vocab, 3] (k-th largest impact at k = 10, 100, 1000), dense_* (the six
arrays of dense_terms, in its order; only the pruned search reads them and term_kth), bsize
(documents per block). Flat, no nested tuple: Numba's parallel loops cannot take one."""

Workspace = namedtuple("Workspace", ["ub", "tab", "gen", "cand", "acc", "touched"])
Workspace.__doc__ = """One search thread's scratch, reused across calls so that a query
allocates nothing: ub float32[n_blocks] (zero in/out), tab int64[pruned_table_size(n_terms,
n_blocks)], gen int64[1] (tab's generation stamp), cand int32[n_blocks], acc float32[n_docs]
(zero in/out), touched int32[n_docs]. The *_parallel kernels take one row per worker of each
(a 2-D array per field)."""

# Pruning table: a directory of nv * n_chunks entries, generation (bits 48..62) | position
# (0..39) of the term's last row in the chunk, then (block, posting offset) pairs, one per row,
# each term's rows led by a (-1, _) pair and followed by an (n_blocks, end offset) pair.
_GEN_SHIFT = 48
_OFF_MASK = (1 << 40) - 1
_CHUNK_SHIFT = 4  # 16 blocks per directory chunk
_GEN_LIMIT = 1 << 15
_ESCAPE_STEP = 255  # a zero escape byte adds this much to the block id
_STATS = 3  # per query: candidate blocks, blocks scored, block rows read (dense term: n_blocks)
# Best-first phase length before finishing term at a time: max(MIN, rows read / (ROWS_PER_LOOKUP
# * terms)). A block's range lookups cost about ROWS_PER_LOOKUP row steps per term (cache
# misses), and the finish walks every row once, so this switches once the lookups have cost
# about as much as the finish would: never more than twice the better of the two.
_BEST_FIRST_MIN = 64
_ROWS_PER_LOOKUP = 32
_BUCKETS = 1024  # bound buckets of the candidate ordering
_SCAN_ALL_SHARE = 4  # scan every slot once a query's postings reach 1/4 of the documents
_GIVE_UP_SHARE = 20  # exact pruned search of a flat query turns exhaustive at 1/20 blocks live
_GIVE_UP_CHECK = 64  # ... checked once after this many blocks scored best first, then at the sweep
_EXHAUSTIVE_AT = 30.0  # _exhaustive_wins: postings per doc x sqrt(k) from which to skip pruning
_HIST_MIN_K = 64  # from this k, a full scan finds the k-th score's bucket first (_offer_all)
_HIST_SHIFT = 19  # bucket = float32 bits >> 19: exponent and 4 mantissa bits
_SCAN_CHUNK = 64  # slots per maximum in _offer_all's pass


# ---------------------------------------------------------------------------------- layout
@intrinsic
def _claim(typingctx: Any, counter: Any) -> Any:
    """counter[0] += 1 atomically, returning the old value: the next query for a batch worker.

    Numba has no CPU atomics, so this is LLVM's atomicrmw. Dealing queries round-robin
    instead capped a 150-query siamese batch at 1.87x on two threads (the slowest queries
    take 8x the median), below the 1.95x measured with this. Monotonic ordering is enough:
    only the count is shared, and the parallel loop's join orders the results.
    """
    if not (
        isinstance(counter, types.Array) and counter.dtype == types.int64 and counter.ndim == 1
    ):
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        aryty = sig.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        zero = context.get_constant(types.intp, 0)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [zero])
        one = context.get_constant(types.int64, 1)
        return builder.atomic_rmw("add", ptr, one, "monotonic")

    return types.int64(counter), codegen


@njit(cache=True, nogil=True)
def _count_bits(bsize: int) -> int:
    """Bits of a row header that hold count - 1 (count <= bsize)."""
    cb = 0
    while (1 << cb) < bsize:
        cb += 1
    return cb


@njit(cache=True, nogil=True, inline="always")
def _next_row_lean(rows: np.ndarray, r: int, blk: int, cb: int) -> tuple[int, int, int]:
    """Decode the row at byte r of a term whose block id so far is blk: (byte after the row,
    its block, its posting count), without the block max, for passes that add every
    posting and never compare bounds.

    Indexes with unsigned copies of r: Numba then skips its negative-index wraparound test
    on every load, a quarter of the work of this loop (r >= 0 always).
    """
    u = np.uint64(r)
    h = np.int64(rows[u])
    u += np.uint64(1)
    g = h >> cb
    c = (h & ((1 << cb) - 1)) + 1
    if g == 0:
        x = np.int64(rows[u])
        u += np.uint64(1)
        while x == 0:
            blk += _ESCAPE_STEP
            x = np.int64(rows[u])
            u += np.uint64(1)
        blk += x
    else:
        blk += g
    return np.int64(u) + np.int64(c > 1), blk, c


@njit(cache=True, nogil=True)
def _next_row(
    rows: np.ndarray, r: int, blk: int, p: int, post_impacts: np.ndarray, cb: int
) -> tuple[int, int, int, int]:
    """Decode the row at byte r of a term whose block id so far is blk and whose postings
    continue at p: returns (byte after the row, its block, its posting count, its max)."""
    r, blk, c = _next_row_lean(rows, r, blk, cb)
    multi = c > 1
    # Both loads, then a select: a branch on c > 1 mispredicts on most terms' rows.
    m_row = np.int64(rows[min(np.uint64(r - np.int64(multi)), np.uint64(rows.shape[0] - 1))])
    m_post = np.int64(post_impacts[np.uint64(p)])
    return r, blk, c, (m_row if multi else m_post)


@njit(cache=True, nogil=True)
def _row_bytes(gap: int, count: int, cb: int) -> int:
    n = 1 if count == 1 else 2
    if gap >= (1 << (8 - cb)):
        n += 1 + (gap - 1) // _ESCAPE_STEP
    return n


@njit(cache=True)
def encode_rows(
    term_ptr: np.ndarray,
    slots: np.ndarray,
    impacts: np.ndarray,
    bsize: int,
    block_ptr: np.ndarray,
    rows: np.ndarray,
    local: np.ndarray,
    measure: bool,
) -> int:
    """Write each term's block rows (measure=True: only sum their bytes into block_ptr[1:]).

    slots ascend within each term; local receives s % bsize for every posting.
    Returns the number of rows.
    """
    cb = _count_bits(bsize)
    gmax = (1 << (8 - cb)) - 1
    n_rows = 0
    for t in range(term_ptr.shape[0] - 1):
        a, b = term_ptr[t], term_ptr[t + 1]
        r = block_ptr[t]
        size = 0
        prev = -1
        p = a
        while p < b:
            blk = slots[p] // bsize
            q = p
            mx = 0
            while q < b and slots[q] // bsize == blk:
                mx = max(mx, impacts[q])
                q += 1
            c = q - p
            gap = blk - prev
            n_rows += 1
            if measure:
                size += _row_bytes(gap, c, cb)
            else:
                base = blk * bsize
                for i in range(p, q):
                    local[i] = slots[i] - base
                rows[r] = ((gap if gap <= gmax else 0) << cb) | (c - 1)
                r += 1
                if gap > gmax:
                    while gap > _ESCAPE_STEP:
                        rows[r] = 0
                        r += 1
                        gap -= _ESCAPE_STEP
                    rows[r] = gap
                    r += 1
                if c > 1:
                    rows[r] = mx
                    r += 1
            prev = blk
            p = q
        if measure:
            block_ptr[t + 1] = block_ptr[t] + size
    return n_rows


@njit(cache=True)
def decode_slots(
    term_ptr: np.ndarray,
    block_ptr: np.ndarray,
    block_rows: np.ndarray,
    post_docs: np.ndarray,
    post_impacts: np.ndarray,
    bsize: int,
    out: np.ndarray,
) -> None:
    """out[p] = slot of posting p: the inverse of encode_rows (for references and tools)."""
    cb = _count_bits(bsize)
    for t in range(term_ptr.shape[0] - 1):
        p = term_ptr[t]
        blk = -1
        r, r1 = block_ptr[t], block_ptr[t + 1]
        while r < r1:
            r, blk, c, _ = _next_row(block_rows, r, blk, p, post_impacts, cb)
            base = blk * bsize
            for q in range(p, p + c):
                out[q] = base + post_docs[q]
            p += c


@njit(cache=True)
def layout_ok(
    term_ptr: np.ndarray,
    block_ptr: np.ndarray,
    block_rows: np.ndarray,
    post_docs: np.ndarray,
    post_impacts: np.ndarray,
    bsize: int,
    n_docs: int,
) -> bool:
    """Every invariant the unchecked readers rely on (bounds, order, maxima, counts).

    Checks each row's bytes are inside the term's range before _next_row reads them.
    """
    cb = _count_bits(bsize)
    vocab = term_ptr.shape[0] - 1
    n_bytes = block_rows.shape[0]
    if term_ptr[0] != 0 or block_ptr[0] != 0 or block_ptr[vocab] != n_bytes:
        return False
    for t in range(vocab):
        a, b = term_ptr[t], term_ptr[t + 1]
        r, r1 = block_ptr[t], block_ptr[t + 1]
        if b < a or r1 < r or r1 > n_bytes or b > post_docs.shape[0]:
            return False
        p = a
        blk = -1
        last = -1
        while r < r1:
            # Bytes this row needs, given its header and escape bytes, must lie before r1.
            h = np.int64(block_rows[r])
            need = r + 1
            if (h >> cb) == 0:
                while need < r1 and block_rows[need] == 0:
                    need += 1
                need += 1
            if ((h & ((1 << cb) - 1)) + 1) > 1:
                need += 1
            if need > r1:
                return False
            c = (h & ((1 << cb) - 1)) + 1
            if c > bsize or p + c > b:
                return False
            r, blk, c, mx = _next_row(block_rows, r, blk, p, post_impacts, cb)
            top = 0
            for q in range(p, p + c):
                s = blk * bsize + post_docs[q]
                if post_docs[q] >= bsize or s <= last or s >= n_docs or post_impacts[q] < 1:
                    return False
                top = max(top, np.int64(post_impacts[q]))
                last = s
            if top != mx:
                return False
            p += c
        if p != b:
            return False
    return True


@njit(cache=True)
def lookup_impacts(
    term_ptr: np.ndarray,
    block_ptr: np.ndarray,
    block_rows: np.ndarray,
    post_docs: np.ndarray,
    post_impacts: np.ndarray,
    bsize: int,
    slot: int,
    terms: np.ndarray,
    out: np.ndarray,
) -> None:
    """out[j] = impact of terms[j] in the doc at slot (unchanged where absent)."""
    cb = _count_bits(bsize)
    want_blk = slot // bsize
    want_loc = slot - want_blk * bsize
    for j in range(terms.shape[0]):
        t = terms[j]
        p = term_ptr[t]
        blk = -1
        r, r1 = block_ptr[t], block_ptr[t + 1]
        while r < r1:
            r, blk, c, _ = _next_row(block_rows, r, blk, p, post_impacts, cb)
            if blk >= want_blk:
                if blk == want_blk:
                    for q in range(p, p + c):
                        if post_docs[q] == want_loc:
                            out[j] = post_impacts[q]
                break
            p += c


# ------------------------------------------------------------------------------ top-k heap
@njit(cache=True, nogil=True)
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
def _push(hs: np.ndarray, hd: np.ndarray, size: int, s: float, d: int) -> None:
    """Append (s, d) at index size and sift it up (the heap is not full)."""
    i = size
    while i > 0:
        par = (i - 1) // 2
        if not _worse(s, d, hs[par], hd[par]):
            break
        hs[i] = hs[par]
        hd[i] = hd[par]
        i = par
    hs[i] = s
    hd[i] = d


@njit(cache=True, nogil=True)
def _offer(hs: np.ndarray, hd: np.ndarray, size: int, k: int, s: float, d: int) -> int:
    """Insert (s, d) into a heap of capacity k; returns the new size."""
    if size < k:
        _push(hs, hd, size, s, d)
        return size + 1
    if _worse(hs[0], hd[0], s, d):
        hs[0] = s
        hd[0] = d
        _sift_down(hs, hd, 0, size)
    return size


@njit(cache=True, nogil=True)
def _heapsort(hs: np.ndarray, hd: np.ndarray, m: int) -> None:
    """Sort a heap of m entries in place, best first."""
    for end in range(m - 1, 0, -1):
        s, d = hs[0], hd[0]
        hs[0] = hs[end]
        hd[0] = hd[end]
        hs[end] = s
        hd[end] = d
        _sift_down(hs, hd, 0, end)


@njit(cache=True, nogil=True, inline="always")  # a call per row costs large k (benchmarks/README)
def _add_postings(
    acc: np.ndarray,
    touched: np.ndarray,
    n: int,
    base: int,
    p: int,
    end: int,
    w: float,
    post_docs: np.ndarray,
    post_impacts: np.ndarray,
) -> int:
    """acc[base + local id] += w * impact for postings [p, end), recording first touches in
    touched[n:]; returns the new n. w > 0 and impacts >= 1, so every contribution is > 0 and
    zero means untouched. Unsigned indexes: see _next_row."""
    for q in range(np.uint64(p), np.uint64(end)):
        s = np.uint64(base + post_docs[q])
        if acc[s] == 0:
            touched[n] = s
            n += 1
        acc[s] += w * np.float32(post_impacts[q])
    return n


@njit(cache=True, nogil=True, inline="always")
def _add_plain(
    acc: np.ndarray,
    base: int,
    p: int,
    end: int,
    w: float,
    post_docs: np.ndarray,
    post_impacts: np.ndarray,
) -> None:
    """acc[base + local id] += w * impact for postings [p, end), without recording touches:
    the caller then scans every slot (_offer_all)."""
    for q in range(np.uint64(p), np.uint64(end)):
        acc[np.uint64(base + post_docs[q])] += w * np.float32(post_impacts[q])


@njit(cache=True, nogil=True)
def _offer_all(
    acc: np.ndarray,
    doc_order: np.ndarray,
    dead: np.ndarray,
    k: int,
    hs: np.ndarray,
    hd: np.ndarray,
    size: int,
    floor: float,
) -> int:
    """Offer every live doc whose slot has a non-zero sum of at least floor (a score the k-th
    best reaches, _kth_floor) to the heap, zeroing acc: a sequential pass over all slots,
    for queries that touch a large share of them.

    Sums are >= 0, so their float32 bit patterns, read as int32, order like the floats: the
    pass compares integers. It reads _SCAN_CHUNK slots at a time and looks at one slot by
    one only in chunks whose largest sum can enter the heap. A test per slot ("touched? can
    it enter?") mispredicts wherever a query touches some slots and not others, and took
    most of an exhaustive search's time on such queries (benchmarks/README.md); a chunk's
    maximum is a vectorized reduction.

    Large k: a first pass counts the sums by their top bits and raises floor to the lowest
    bucket the k-th best can be in, so the heap sees about k documents instead of a stream
    of replacements."""
    n = doc_order.shape[0]
    bits = acc[:n].view(np.int32)
    one = np.empty(1, dtype=np.float32)  # a float read back as its bits (floor, heap root)
    one_bits = one.view(np.int32)
    one[0] = floor
    lo = max(one_bits[0], 1)  # zero: untouched slots
    if k >= _HIST_MIN_K and dead.shape[0] == 0:
        nh = 1 << (31 - _HIST_SHIFT)
        hist = np.zeros((4, nh), dtype=np.int32)  # 4 interleaved: no store-to-load chains
        for s in range(n):
            x = bits[s]
            if x >= lo:
                hist[s & 3, x >> _HIST_SHIFT] += 1
        seen = 0
        for h in range(nh - 1, -1, -1):
            seen += hist[0, h] + hist[1, h] + hist[2, h] + hist[3, h]
            if seen >= k:
                lo = max(lo, np.int32(h << _HIST_SHIFT))
                break
    thr = np.int32(0x7FFFFFFF)  # k = 0: above every finite float's bits, nothing enters
    if size < k:
        thr = lo
    elif k > 0:
        one[0] = hs[0]
        thr = max(lo, one_bits[0])
    for c0 in range(0, n, _SCAN_CHUNK):
        c1 = min(c0 + _SCAN_CHUNK, n)
        top = np.int32(0)
        for s in range(c0, c1):
            top = max(top, bits[s])
        if top >= thr:
            for s in range(c0, c1):
                if bits[s] >= thr:
                    d = doc_order[s]
                    if dead.shape[0] == 0 or dead[d] == 0:
                        size = _offer(hs, hd, size, k, acc[s], d)
                        if size == k:
                            one[0] = hs[0]
                            thr = max(lo, one_bits[0])
        for s in range(c0, c1):
            bits[s] = 0
    return size


@njit(cache=True, nogil=True)
def _add_dense_term(acc: np.ndarray, s: int, p0: int, p1: int, w: float, p: Postings) -> None:
    """acc[slot] += w * impact for every posting [p0, p1) of dense term row s: one flat loop
    per 16-block chunk (dense_chunk_slot), not one short loop per block."""
    doff, cslot, imp = p.dense_offset, p.dense_chunk_slot, p.post_impacts
    nch = (p.dense_count.shape[1] + (1 << _CHUNK_SHIFT) - 1) >> _CHUNK_SHIFT  # with blocks
    shift = np.uint64(p.dense_pos[s] - p0)  # chunk_slot index of posting q: q + shift
    span = p.bsize << _CHUNK_SHIFT
    for ch in range(nch):
        a = doff[s, ch]
        b = doff[s, ch + 1] if ch + 1 < nch else p1
        base = ch * span
        for q in range(np.uint64(a), np.uint64(b)):
            acc[np.uint64(base + cslot[q + shift])] += w * np.float32(imp[q])


@njit(cache=True, nogil=True)
def _exhaustive_wins(n_post: int, n_docs: int, k: int) -> bool:
    """The cost model of the exact search: pruning pays while few blocks can hold the top-k.
    With many postings per document (flat, long queries) and a large k, most blocks stay
    candidates, and walking every posting once in slot order (_exhaustive_row) costs less
    than bounding, ordering and then scoring nearly every block. The boundary, postings per
    document x sqrt(k) >= _EXHAUSTIVE_AT, was fitted on synthetic collections (see
    benchmarks/README.md); both sides are exact, so it only moves time. (Small collections
    are the caller's choice: SparseIndex.search walks them exhaustively.)"""
    return n_post * np.sqrt(np.float64(k)) >= _EXHAUSTIVE_AT * n_docs


@njit(cache=True, nogil=True)
def _kth_floor(
    terms: np.ndarray,
    weights: np.ndarray,
    a: int,
    b: int,
    term_kth: np.ndarray,
    k: int,
    dead: np.ndarray,
) -> np.float32:
    """A score the k-th best document reaches before any is scored: >= k docs score at least
    w * (k'-th largest impact of term t), k' >= k, for each query term (terms[a:b], valid
    ones). Nothing below it can enter the top-k, so it never needs the heap. 0 with
    deletions (the k'-th impact may belong to a deleted doc) or k > 1000."""
    col = 0 if k <= 10 else (1 if k <= 100 else (2 if k <= 1000 else -1))
    theta = np.float32(0)
    if dead.shape[0] > 0 or col < 0:
        return theta
    vocab = term_kth.shape[0]
    for j in range(a, b):
        t = terms[j]
        if 0 <= t < vocab:
            v = np.float32(weights[j]) * np.float32(term_kth[t, col])
            if v > theta:
                theta = v
    return theta


@njit(cache=True, nogil=True)
def _scan_all(p: Postings, n_postings: int) -> bool:
    """Accumulate without a touched list and scan every slot once the postings to add reach
    1/_SCAN_ALL_SHARE of the documents: the scan is sequential and branch-light, while the
    touched list costs a test and a store per posting."""
    return n_postings * _SCAN_ALL_SHARE >= p.doc_order.shape[0]


@njit(cache=True, nogil=True)
def _offer_touched(
    acc: np.ndarray,
    touched: np.ndarray,
    n: int,
    doc_order: np.ndarray,
    dead: np.ndarray,
    k: int,
    hs: np.ndarray,
    hd: np.ndarray,
    size: int,
) -> int:
    """Offer the live docs at slots touched[:n] with scores acc[slot] to a heap of size
    entries, zeroing acc there; returns the new size."""
    for j in range(n):
        s = touched[j]
        v = acc[s]
        acc[s] = 0
        if size < k or (k > 0 and v >= hs[0]):  # only then can it enter: skip the id lookup
            d = doc_order[s]
            if dead.shape[0] == 0 or dead[d] == 0:
                size = _offer(hs, hd, size, k, v, d)
    return size


# ------------------------------------------------------------------------------ exhaustive
@njit(cache=True, nogil=True)
def _exhaustive_row(
    q: Queries,
    qi: int,
    p: Postings,
    dead: np.ndarray,
    k: int,
    acc: np.ndarray,
    touched: np.ndarray,
    out_ids: np.ndarray,
    out_scores: np.ndarray,
) -> int:
    """Score query row qi over every posting; top-k into out_*[qi]. acc: zero in/out.

    Terms in query order (the float32 sums of every path). Many postings: no touched list,
    one scan of all slots (_scan_all), and terms decoded ahead walk their per-block counts
    instead of decoding rows; few postings: a touched list, so the cost stays O(postings).
    """
    term_ptr, block_ptr, block_rows = p.term_ptr, p.block_ptr, p.block_rows
    post_docs, post_impacts, bsize = p.post_docs, p.post_impacts, p.bsize
    dense_of = p.dense_slot
    vocab = term_ptr.shape[0] - 1
    cb = _count_bits(bsize)
    qa, qb = q.indptr[qi], q.indptr[qi + 1]
    n_post = 0
    for j in range(qa, qb):
        t = q.terms[j]
        if 0 <= t < vocab and q.weights[j] > 0:
            n_post += term_ptr[t + 1] - term_ptr[t]
    plain = _scan_all(p, n_post)
    n_touched = 0
    for j in range(qa, qb):
        t = q.terms[j]
        w = np.float32(q.weights[j])
        if t < 0 or t >= vocab or not w > 0:
            continue
        pp = term_ptr[t]
        s = dense_of[t]
        if plain and s >= 0:
            _add_dense_term(acc, s, pp, term_ptr[t + 1], w, p)
            continue
        blk = -1
        r, r1 = block_ptr[t], block_ptr[t + 1]
        while r < r1:
            r, blk, c = _next_row_lean(block_rows, r, blk, cb)
            if plain:
                _add_plain(acc, blk * bsize, pp, pp + c, w, post_docs, post_impacts)
            else:
                n_touched = _add_postings(
                    acc, touched, n_touched, blk * bsize, pp, pp + c, w, post_docs, post_impacts
                )
            pp += c
    hs, hd = out_scores[qi], out_ids[qi]
    if plain:
        floor = _kth_floor(q.terms, q.weights, qa, qb, p.term_kth, k, dead)
        m = _offer_all(acc, p.doc_order, dead, k, hs, hd, 0, floor)
    else:
        m = _offer_touched(acc, touched, n_touched, p.doc_order, dead, k, hs, hd, 0)
    _heapsort(hs, hd, m)
    return m


@njit(cache=True, nogil=True)
def search_exhaustive(
    q: Queries, p: Postings, dead: np.ndarray, k: int, acc: np.ndarray, touched: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of every query row on this thread, reusing the caller's workspace.

    dead: uint8 by internal id (nonzero = deleted), or empty. acc float32[n_docs] must be
    zero (it is zero again on return), touched int32[n_docs].
    Returns ids int32[nq, k] (-1 padded), scores float32[nq, k] (0 padded).
    """
    nq = q.indptr.shape[0] - 1
    kk = max(k, 0)
    out_ids = np.full((nq, kk), -1, dtype=np.int32)
    out_scores = np.zeros((nq, kk), dtype=np.float32)
    for qi in range(nq):
        _exhaustive_row(q, qi, p, dead, kk, acc, touched, out_ids, out_scores)
    return out_ids, out_scores


@njit(parallel=True, cache=True, nogil=True)
def search_exhaustive_parallel(
    q: Queries, p: Postings, dead: np.ndarray, k: int, acc: np.ndarray, touched: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """search_exhaustive across acc.shape[0] workers, each claiming the next query when done.

    Worker w uses row w of the caller's workspace, acc float32[W, n_docs] (zero in/out) and
    touched int32[W, n_docs]: kept between batches, so a batch faults in no fresh pages (see
    search_pruned_parallel). Pass one row per Numba thread (numba.get_num_threads()).
    """
    nq = q.indptr.shape[0] - 1
    n_docs = p.doc_order.shape[0]
    if acc.shape[0] < 1 or touched.shape[0] != acc.shape[0]:
        raise ValueError("workspace rows: acc and touched need one row per worker, at least one")
    if acc.shape[1] < n_docs or touched.shape[1] < n_docs:
        raise ValueError("workspace: acc and touched need n_docs columns")
    kk = max(k, 0)
    out_ids = np.full((nq, kk), -1, dtype=np.int32)
    out_scores = np.zeros((nq, kk), dtype=np.float32)
    nxt = np.zeros(1, dtype=np.int64)  # the next unclaimed query (_claim)
    for c in prange(min(nq, acc.shape[0])):
        qi = _claim(nxt)
        while qi < nq:
            _exhaustive_row(q, qi, p, dead, kk, acc[c], touched[c], out_ids, out_scores)
            qi = _claim(nxt)
    return out_ids, out_scores


# ---------------------------------------------------------------------------------- pruned
@njit(cache=True, nogil=True)
def _select_terms(
    q_terms: np.ndarray,
    q_weights: np.ndarray,
    qa: int,
    qb: int,
    vocab: int,
    term_fraction: float,
    ts: np.ndarray,
    ws: np.ndarray,
) -> int:
    """Valid terms of the row into ts/ws in query order; with term_fraction < 1 only the
    heaviest ceil(fraction * n) (ties: the earlier term). Returns how many."""
    nv = 0
    for j in range(qa, qb):
        t = q_terms[j]
        w = np.float32(q_weights[j])
        if t < 0 or t >= vocab or not w > 0:
            continue
        ts[nv] = t
        ws[nv] = w
        nv += 1
    if term_fraction >= 1.0 or nv == 0:
        return nv
    keep = max(1, int(np.ceil(term_fraction * nv)))
    if keep >= nv:
        return nv
    # The top-k heap already ranks (weight desc, position asc): reuse it, no sort to compile.
    hs = np.empty(keep, dtype=np.float32)
    hd = np.empty(keep, dtype=np.int32)
    size = 0
    for i in range(nv):
        size = _offer(hs, hd, size, keep, ws[i], i)
    mask = np.zeros(nv, dtype=np.bool_)
    for i in range(keep):
        mask[hd[i]] = True
    m = 0
    for i in range(nv):
        if mask[i]:
            ts[m] = ts[i]
            ws[m] = ws[i]
            m += 1
    return m


@njit(cache=True, nogil=True)
def _bucket(u: float, theta0: float, scale: float) -> int:
    """Bucket of bound u, 0 = highest bounds; non-increasing in u (float ops are monotone)."""
    key = int((u - theta0) * scale)
    return _BUCKETS - 1 - min(max(key, 0), _BUCKETS - 1)


@njit(cache=True, nogil=True)
def _hopeless(u: float, theta0: float, alpha: float, hs: np.ndarray, size: int, k: int) -> bool:
    """True when a block with bound u cannot (or, with alpha < 1, is deemed not to) improve
    the top-k. alpha scales the bound against the running k-th score only, never against the
    kth-impact floor, so approximate searches still fill all k results when k docs match."""
    return u < theta0 or (size == k and alpha * u < hs[0])


@njit(cache=True, nogil=True)
def _live_blocks(
    ub: np.ndarray, theta0: float, alpha: float, hs: np.ndarray, size: int, k: int, drop: bool
) -> int:
    """How many unscored candidate blocks (ub != 0) are not hopeless yet; with drop, the
    hopeless ones are zeroed on the way, so what is left is the set to finish."""
    live = 0
    for b in range(ub.shape[0]):
        if ub[b] != 0:
            if _hopeless(ub[b], theta0, alpha, hs, size, k):
                if drop:
                    ub[b] = 0
            else:
                live += 1
    return live


@njit(cache=True, nogil=True)
def _find_spans(
    b: int,
    nv: int,
    nch: int,
    g: int,
    tab: np.ndarray,
    span: np.ndarray,
    sl: np.ndarray,
    dcnt: np.ndarray,
    doff: np.ndarray,
) -> None:
    """span[2j:2j+2] = term j's posting range in block b (empty when absent), found through
    the directory, or for a dense term its chunk offset plus the counts before b: for blocks
    visited out of order. The lookups are independent of each other, so done apart from the
    postings their cache misses overlap."""
    ch = b >> _CHUNK_SHIFT
    two = np.uint64(2)
    for j in range(nv):
        s = sl[j]
        if s >= 0:
            p = doff[s, ch]
            for x in range(ch << _CHUNK_SHIFT, b):
                p += dcnt[s, x]
            span[2 * j] = p
            span[2 * j + 1] = p + dcnt[s, b]
            continue
        v = tab[np.uint64(j * nch + ch)]
        p = end = 0
        if (v >> _GEN_SHIFT) == g:  # else the term has no rows in this chunk
            e = np.uint64(v & _OFF_MASK)  # its last row in the chunk; earlier ones just before
            while tab[e] > b:
                e -= two
            if tab[e] == b:
                p = tab[e + np.uint64(1)]
                end = tab[e + np.uint64(3)]  # the next row's offset, or the end sentinel's
        span[2 * j] = p
        span[2 * j + 1] = end


@njit(cache=True, nogil=True)
def _finish_term_at_a_time(
    nv: int,
    ws: np.ndarray,
    first: np.ndarray,
    sl: np.ndarray,
    p: Postings,
    dead: np.ndarray,
    k: int,
    work: Workspace,
    hs: np.ndarray,
    hd: np.ndarray,
    size: int,
) -> int:
    """Exact scores of every document in the blocks with ub != 0, offered to the heap;
    acc (zero in/out) and touched are the caller's, n_docs long.

    Each term's rows are walked front to back (from first[j] to the (n_blocks, _) pair; a
    dense term's counts block by block), its postings in live blocks added into a slot
    accumulator: terms in query order, so the same float32 sums as the other paths. The
    heap's order is total, so offering in slot order gives the same top-k.
    """
    ub, tab, acc, touched = work.ub, work.tab, work.acc, work.touched
    post_docs, post_impacts, bsize = p.post_docs, p.post_impacts, p.bsize
    dcnt, doff = p.dense_count, p.dense_offset
    nb = ub.shape[0]
    nt = 0
    two = np.uint64(2)
    for j in range(nv):
        w = ws[j]
        s = sl[j]
        if s >= 0:
            pp = doff[s, 0]
            for b in range(nb):
                c = np.int64(dcnt[s, b])
                if c != 0 and ub[b] != 0:
                    nt = _add_postings(
                        acc, touched, nt, b * bsize, pp, pp + c, w, post_docs, post_impacts
                    )
                pp += c
            continue
        e = np.uint64(first[j])
        blk = tab[e]
        while blk != nb:
            if ub[np.uint64(blk)] != 0:
                nt = _add_postings(
                    acc, touched, nt, blk * bsize, tab[e + np.uint64(1)], tab[e + np.uint64(3)],
                    w, post_docs, post_impacts,
                )  # fmt: skip
            e += two
            blk = tab[e]
    return _offer_touched(acc, touched, nt, p.doc_order, dead, k, hs, hd, size)


@njit(cache=True, nogil=True)
def _score_block(
    b: int,
    nv: int,
    ws: np.ndarray,
    p: Postings,
    dead: np.ndarray,
    k: int,
    bacc: np.ndarray,
    btouched: np.ndarray,
    span: np.ndarray,
    hs: np.ndarray,
    hd: np.ndarray,
    size: int,
) -> int:
    """Exact scores of block b's documents offered to the heap: terms in query order, each
    over its posting range span[2j:2j+2] (from _find_spans)."""
    post_docs, post_impacts, doc_order = p.post_docs, p.post_impacts, p.doc_order
    nt = 0
    for j in range(nv):
        nt = _add_postings(
            bacc, btouched, nt, 0, span[2 * j], span[2 * j + 1], ws[j], post_docs, post_impacts
        )
    base = b * p.bsize
    for i in range(nt):
        loc = btouched[i]
        s = bacc[loc]
        bacc[loc] = 0
        if size < k or s >= hs[0]:  # only then can it enter: skip the id lookup otherwise
            d = doc_order[np.uint64(base + loc)]
            if dead.shape[0] == 0 or dead[d] == 0:
                size = _offer(hs, hd, size, k, s, d)
    return size


@njit(cache=True)
def dense_terms(
    term_ptr: np.ndarray,
    block_ptr: np.ndarray,
    block_rows: np.ndarray,
    post_docs: np.ndarray,
    post_impacts: np.ndarray,
    bsize: int,
    n_blocks: int,
    min_row_bytes: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Block rows of the terms with >= min_row_bytes of them, decoded into dense arrays.

    Returns (slot int32[vocab]: -1, or the term's row in the others; max uint8[n, n_blocks]:
    block max, 0 where absent; count uint8[n, n_blocks]: postings in the block; offset
    int64[n, n_blocks // 16 + 1]: first posting of each 16-block chunk; chunk_slot
    uint16[their postings]: each posting's slot within its 16-block chunk, see narrow_slots;
    pos int64[n + 1]: where term row i's postings start in chunk_slot). A term found in
    many blocks then costs step 1 of the pruned search one vectorized add per block instead
    of a variable-length row decode each (at 1M docs such terms hold half of a long query's
    rows), and a pass that adds all its postings one flat loop per chunk instead of one
    short loop per block. Derived from the stored rows, so the index format does not change.
    """
    vocab = term_ptr.shape[0] - 1
    slot = np.full(vocab, -1, dtype=np.int32)
    n = 0
    for t in range(vocab):
        if block_ptr[t + 1] - block_ptr[t] >= max(min_row_bytes, 1):
            slot[t] = n
            n += 1
    dmax = np.zeros((n, n_blocks), dtype=np.uint8)
    dcnt = np.zeros((n, n_blocks), dtype=np.uint8)
    doff = np.zeros((n, (n_blocks >> _CHUNK_SHIFT) + 1), dtype=np.int64)
    pos = np.zeros(n + 1, dtype=np.int64)
    for t in range(vocab):
        if slot[t] >= 0:
            pos[slot[t] + 1] = term_ptr[t + 1] - term_ptr[t]
    for i in range(n):
        pos[i + 1] += pos[i]
    cslot = np.zeros(pos[n], dtype=np.uint16)  # < 16 * bsize <= 2048
    cb = _count_bits(bsize)
    mask = (1 << _CHUNK_SHIFT) - 1
    for t in range(vocab):
        s = slot[t]
        if s < 0:
            continue
        p = term_ptr[t]
        blk = -1
        r, r1 = block_ptr[t], block_ptr[t + 1]
        while r < r1:
            r, blk, c, mx = _next_row(block_rows, r, blk, p, post_impacts, cb)
            dmax[s, blk] = mx
            dcnt[s, blk] = c
            for q in range(p, p + c):
                cslot[pos[s] + q - term_ptr[t]] = (blk & mask) * bsize + post_docs[q]
            p += c
        p = term_ptr[t]
        for b in range(n_blocks):
            if (b & mask) == 0:
                doff[s, b >> _CHUNK_SHIFT] = p
            p += dcnt[s, b]
    return slot, dmax, dcnt, doff, cslot, pos


def narrow_slots(dense: tuple[np.ndarray, ...], bsize: int) -> tuple[np.ndarray, ...]:
    """dense_terms' arrays with chunk slots in a byte where a 16-block chunk has at most
    256 slots (16 docs per block or fewer): half the memory of the largest array."""
    if bsize << _CHUNK_SHIFT > 256:
        return dense
    return (*dense[:4], dense[4].astype(np.uint8), *dense[5:])


@njit(cache=True, nogil=True)
def _add_dense_bounds(ub: np.ndarray, m: np.ndarray, w: float) -> None:
    """ub += w * m over every block (the same float32 operations as a row's update; a
    block without the term adds exactly 0): a loop the compiler vectorizes."""
    w32 = np.float32(w)
    for b in range(ub.shape[0]):
        ub[b] = ub[b] + w32 * np.float32(m[b])


@njit(cache=True, nogil=True)
def pruned_table_size(n_terms: int, n_blocks: int) -> int:
    """Length of a pruning table that fits any query of up to n_terms terms."""
    return n_terms * ((n_blocks >> _CHUNK_SHIFT) + 1) + 2 * n_terms * (n_blocks + 2)


@njit(cache=True, nogil=True)
def _table_need(
    q_terms: np.ndarray, qa: int, qb: int, term_ptr: np.ndarray, vocab: int, nb: int
) -> int:
    """Table length query terms [qa, qb) can need: a term has at most min(nb, postings) rows."""
    nv = 0
    rows = 0
    for j in range(qa, qb):
        t = q_terms[j]
        if 0 <= t < vocab:
            nv += 1
            rows += min(nb, term_ptr[t + 1] - term_ptr[t])
    return nv * ((nb >> _CHUNK_SHIFT) + 1) + 2 * (rows + 2 * nv)


@njit(cache=True, nogil=True)
def _pruned_row(
    q: Queries,
    qi: int,
    p: Postings,
    dead: np.ndarray,
    k: int,
    alpha: float,
    term_fraction: float,
    work: Workspace,
    out_ids: np.ndarray,
    out_scores: np.ndarray,
    stats: np.ndarray,
) -> int:
    """Block-max pruned top-k of query row qi into out_*[qi]; see the module notes.

    work: ub float32[n_blocks] (zero in/out), tab int64[pruned_table_size(n_terms,
    n_blocks)] (any content from earlier calls with the same gen array; a smaller one makes
    the call allocate its own), gen int64[1], cand int32[n_blocks] (scratch: the bucket
    lists' links), acc float32[n_docs] (zero in/out) and touched int32[n_docs] for the
    term-at-a-time finish: the exhaustive search's workspace, so a query never allocates and
    zeroes 8 MB (at 1M docs) for it; shorter ones make the call allocate its own.
    p.dense_*: dense_terms' arrays (no term dense: a slot of all -1).
    """
    term_ptr, block_ptr, block_rows = p.term_ptr, p.block_ptr, p.block_rows
    post_impacts, term_kth, bsize = p.post_impacts, p.term_kth, p.bsize
    dense_of, dmax, dcnt, doff = p.dense_slot, p.dense_max, p.dense_count, p.dense_offset
    ub, tab, gen, cand, acc, touched = work
    qa, qb = q.indptr[qi], q.indptr[qi + 1]
    vocab = term_ptr.shape[0] - 1
    nb = ub.shape[0]
    if (
        dense_of.shape[0] != vocab
        or dmax.shape[1] != nb
        or doff.shape[1] != (nb >> _CHUNK_SHIFT) + 1
    ):
        raise ValueError("dense term arrays do not match this index (vocab or block count)")
    cb = _count_bits(bsize)
    ts = np.empty(qb - qa, dtype=np.int64)
    ws = np.empty(qb - qa, dtype=np.float32)
    nv = _select_terms(q.terms, q.weights, qa, qb, vocab, term_fraction, ts, ws)
    if nv == 0 or k <= 0:
        return 0
    n_post = 0
    if alpha >= 1.0 and term_fraction >= 1.0:
        for j in range(nv):
            n_post += term_ptr[ts[j] + 1] - term_ptr[ts[j]]
        n_docs = p.doc_order.shape[0]
        if _exhaustive_wins(n_post, n_docs, k):
            if acc.shape[0] < n_docs or touched.shape[0] < n_docs:
                acc = np.zeros(n_docs, dtype=np.float32)
                touched = np.empty(n_docs, dtype=np.int32)
            stats[qi, 0] = stats[qi, 1] = nb  # every block a candidate, every one scored
            return _exhaustive_row(q, qi, p, dead, k, acc, touched, out_ids, out_scores)
    nch = (nb >> _CHUNK_SHIFT) + 1
    base = nv * nch
    need = _table_need(ts, 0, nv, term_ptr, vocab, nb)
    if need > tab.shape[0]:
        tab = np.zeros(need, dtype=np.int64)  # too small: a private table, fresh stamps
        g = np.int64(1)
    else:
        g = gen[0] + 1
        if g >= _GEN_LIMIT:
            tab[:] = 0
            g = 1
        gen[0] = g
    stamp = g << _GEN_SHIFT

    theta0 = _kth_floor(ts, ws, 0, nv, term_kth, k, dead)

    # 1. Upper bounds per block, and each term's rows as (block, posting offset) pairs written
    # front to back, with the directory pointing into them: one sequential scan per term.
    umax = np.float32(0)
    e = base
    first = np.empty(nv, dtype=np.int64)
    sl = np.empty(nv, dtype=np.int64)
    rows_read = 0
    any_dense = False
    for j in range(nv):
        sl[j] = dense_of[ts[j]]
        if sl[j] >= 0:  # a dense term: one vectorized pass, its offsets come from dense
            _add_dense_bounds(ub, dmax[sl[j]], ws[j])
            rows_read += nb
            first[j] = -1
            any_dense = True
            continue
        tab[e] = -1  # leads the term's rows: stops _find_spans' backward walk
        e += 2
        first[j] = e
        t = ts[j]
        w = ws[j]
        pp = term_ptr[t]
        blk = -1
        jd = j * nch
        r, r1 = block_ptr[t], block_ptr[t + 1]
        while r < r1:
            r, blk, c, mx = _next_row(block_rows, r, blk, pp, post_impacts, cb)
            ib = np.uint64(blk)  # unsigned indexes: no wraparound tests (see _next_row)
            u = ub[ib] + w * np.float32(mx)
            ub[ib] = u
            umax = max(umax, u)
            tab[np.uint64(jd + (blk >> _CHUNK_SHIFT))] = stamp | e
            ie = np.uint64(e)
            tab[ie] = blk
            tab[ie + np.uint64(1)] = pp
            e += 2
            pp += c
        rows_read += (e - first[j]) // 2
        tab[e] = nb  # ends the rows: its offset ends the last row, its block stops a walk
        tab[e + 1] = pp
        e += 2
    if any_dense:  # their updates skipped the running max: bounds only grow, so take it now
        for b in range(nb):
            umax = max(umax, ub[b])

    # 2. Candidate blocks (bound >= theta0) in descending order of bound, approximately: one
    # scan threads them into _BUCKETS bucket lists by bound (cand[b] = next block of b's
    # bucket), where a heap or a sort of tens of thousands of candidates would cost more
    # than the few blocks most queries end up scoring.
    alpha32 = np.float32(alpha)
    head = np.full(_BUCKETS, -1, dtype=np.int64)
    bmax = np.zeros(_BUCKETS, dtype=np.float32)
    width = umax - theta0
    scale = np.float32((_BUCKETS - 1) / width) if width > 0 else np.float32(0)
    n_cand = 0
    for b in range(nb):
        u = ub[b]
        if u > 0 and u >= theta0:
            d = _bucket(u, theta0, scale)
            cand[b] = head[d]
            head[d] = b
            if u > bmax[d]:
                bmax[d] = u
            n_cand += 1

    # 3. Score blocks best bucket first. The bucket of a bound is monotone in the bound, so
    # once a bucket's largest bound is hopeless every later block is too: stop. Inside a
    # bucket each block is still tested on its own bound, so the result stays exact.
    hs, hd = out_scores[qi], out_ids[qi]
    size = 0
    bacc = np.zeros(bsize, dtype=np.float32)
    btouched = np.empty(bsize, dtype=np.int64)
    span = np.empty(2 * nv, dtype=np.int64)
    scored = 0
    best_first = max(_BEST_FIRST_MIN, rows_read // (_ROWS_PER_LOOKUP * nv))
    # Exact mode (n_post > 0) on a query whose postings the exhaustive kernel takes in one
    # plain pass: if the bounds lose, starting over there is the cheaper exact path.
    may_give_up = n_post > 0 and _scan_all(p, n_post)
    sweep = False
    give_up = False
    for d in range(_BUCKETS if n_cand > 0 else 0):
        if head[d] < 0:
            continue
        if _hopeless(bmax[d], theta0, alpha32, hs, size, k):
            break
        b = head[d]
        while b >= 0:
            nxt = cand[b]
            if _hopeless(ub[b], theta0, alpha32, hs, size, k):
                b = nxt
                continue
            ub[b] = 0  # scored: the sweep below must skip it
            _find_spans(b, nv, nch, g, tab, span, sl, dcnt, doff)
            size = _score_block(b, nv, ws, p, dead, k, bacc, btouched, span, hs, hd, size)
            scored += 1
            if scored == _GIVE_UP_CHECK and may_give_up and size == k:
                # Flat queries keep most blocks live however many are scored: say so now,
                # before the rest of the best-first phase costs a range lookup per term
                # in each of up to thousands of blocks.
                live = _live_blocks(ub, theta0, alpha32, hs, size, k, False)
                give_up = live * _GIVE_UP_SHARE >= nb
            if give_up or scored >= best_first:
                sweep = True
                break
            b = nxt
        if sweep:
            break
    # 4. Still going: the bounds are loose for this query (large k, or flat weights) and many
    # blocks remain. Block at a time, each costs a range lookup per term, which at k=1000 made
    # this slower than the exhaustive kernel; instead drop the blocks that are hopeless now
    # and score the rest term at a time, as the exhaustive kernel does.
    if sweep and not give_up:
        live = _live_blocks(ub, theta0, alpha32, hs, size, k, True)
        scored += live
        give_up = may_give_up and live * _GIVE_UP_SHARE >= nb
    if sweep:
        n_docs = p.doc_order.shape[0]
        if acc.shape[0] < n_docs or touched.shape[0] < n_docs:
            acc = np.zeros(n_docs, dtype=np.float32)
            touched = np.empty(n_docs, dtype=np.int32)
    if give_up:
        # The bounds have lost: so many blocks stay live only for a flat query, and the
        # finish below walks every term's rows, block by block, through a touched list,
        # where the exhaustive kernel takes the postings in one plain pass (_scan_all).
        # Start over there; both are exact, so only the time moves. The share and the
        # check point were measured, at every k: benchmarks/README.md.
        ub[:] = 0
        hs[:] = 0
        hd[:] = -1
        stats[qi, 0] = stats[qi, 1] = nb  # as _exhaustive_wins: every block scored
        stats[qi, 2] = rows_read
        return _exhaustive_row(q, qi, p, dead, k, acc, touched, out_ids, out_scores)
    if sweep:
        size = _finish_term_at_a_time(
            nv, ws, first, sl, p, dead, k, Workspace(ub, tab, gen, cand, acc, touched), hs, hd,
            size,
        )  # fmt: skip
    ub[:] = 0
    _heapsort(hs, hd, size)
    stats[qi, 0] = n_cand
    stats[qi, 1] = scored
    stats[qi, 2] = rows_read
    return size


@njit(cache=True, nogil=True)
def search_pruned(
    q: Queries,
    p: Postings,
    dead: np.ndarray,
    k: int,
    alpha: float,
    term_fraction: float,
    work: Workspace,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Block-max pruned top-k of every query row on this thread, reusing a workspace.

    Safe (equal to search_exhaustive, ids and scores) with alpha=1 and term_fraction=1.
    Returns ids int32[nq, k], scores float32[nq, k], stats int64[nq, 3] (candidate blocks,
    blocks scored, block rows read). See _pruned_row for the workspace contract.
    """
    nq = q.indptr.shape[0] - 1
    kk = max(k, 0)
    out_ids = np.full((nq, kk), -1, dtype=np.int32)
    out_scores = np.zeros((nq, kk), dtype=np.float32)
    stats = np.zeros((nq, _STATS), dtype=np.int64)
    for qi in range(nq):
        _pruned_row(q, qi, p, dead, kk, alpha, term_fraction, work, out_ids, out_scores, stats)
    return out_ids, out_scores, stats


@njit(parallel=True, cache=True, nogil=True)
def search_pruned_parallel(
    q: Queries,
    p: Postings,
    dead: np.ndarray,
    k: int,
    alpha: float,
    term_fraction: float,
    work: Workspace,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """search_pruned across work.ub.shape[0] workers, each claiming the next query when done.

    Worker w uses row w of each workspace array (ub[W, n_blocks], tab[W, L], gen[W, 1],
    cand[W, n_blocks], acc[W, n_docs], touched[W, n_docs]; per row, _pruned_row's contract).
    The caller keeps them between batches: fresh ones cost a 1M-doc batch thousands of page
    faults per worker, more on two threads, where the workers fault into one address space.
    Pass one row per Numba thread (numba.get_num_threads()).
    """
    nq = q.indptr.shape[0] - 1
    n_docs = p.doc_order.shape[0]
    nb = (n_docs + p.bsize - 1) // p.bsize
    ub, tab, gen, cand, acc, touched = work
    w = ub.shape[0]
    if w < 1 or not (
        tab.shape[0] == w
        and gen.shape[0] == w
        and cand.shape[0] == w
        and acc.shape[0] == w
        and touched.shape[0] == w
    ):
        raise ValueError("workspace rows: every array needs one row per worker, at least one")
    if ub.shape[1] != nb or cand.shape[1] < nb or gen.shape[1] < 1:
        raise ValueError("workspace: ub and cand need n_blocks columns, gen one")
    kk = max(k, 0)
    out_ids = np.full((nq, kk), -1, dtype=np.int32)
    out_scores = np.zeros((nq, kk), dtype=np.float32)
    stats = np.zeros((nq, _STATS), dtype=np.int64)
    nxt = np.zeros(1, dtype=np.int64)  # the next unclaimed query (_claim)
    for c in prange(min(nq, w)):
        row = Workspace(ub[c], tab[c], gen[c], cand[c], acc[c], touched[c])
        qi = _claim(nxt)
        while qi < nq:
            _pruned_row(q, qi, p, dead, kk, alpha, term_fraction, row, out_ids, out_scores, stats)
            qi = _claim(nxt)
    return out_ids, out_scores, stats
