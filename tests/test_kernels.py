"""Kernel top-k must equal a brute-force scipy product, ties broken by smaller internal doc id.

Collections are encoded in the v2 block layout with a random slot order, so every test also
checks that results come back as internal ids and that ties ignore the slot order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit, prange
from sparseretr.index.postings import encode_postings, postings_by_slot, term_kth_impacts
from sparseretr.kernels import (
    dense_terms,
    pruned_table_size,
    scoring,
    search_exhaustive,
    search_exhaustive_parallel,
    search_pruned,
    search_pruned_parallel,
)

SETTINGS = settings(max_examples=60, deadline=None)
NO_DENSE = 1 << 62  # no term has that many bytes of block rows


@dataclass
class Layout:
    """A collection in the v2 layout, plus the plain doc x term impacts it came from."""

    term_ptr: np.ndarray
    block_ptr: np.ndarray
    block_rows: np.ndarray
    post_docs: np.ndarray
    post_impacts: np.ndarray
    doc_order: np.ndarray
    term_kth: np.ndarray
    bsize: int
    docs: sp.csr_matrix  # [n_docs, vocab] uint8 impacts by internal id
    dead: np.ndarray = field(default_factory=lambda: _readonly(np.zeros(0, np.uint8)))
    dense: tuple[np.ndarray, ...] = ()  # kernels.dense_terms: terms decoded ahead

    @property
    def n_docs(self) -> int:
        return self.docs.shape[0]

    @property
    def arrays(self) -> tuple[np.ndarray, ...]:
        return (
            self.term_ptr, self.block_ptr, self.block_rows, self.post_docs, self.post_impacts,
            self.doc_order, self.dead,
        )  # fmt: skip

    def workspace(self, n_terms: int) -> tuple[np.ndarray, ...]:
        nb = -(-self.n_docs // self.bsize)
        return (
            np.zeros(nb, np.float32),
            np.zeros(pruned_table_size(max(n_terms, 1), nb), np.int64),
            np.zeros(1, np.int64),
            np.empty(nb, np.int32),
            np.zeros(self.n_docs, np.float32),
            np.empty(self.n_docs, np.int32),
        )

    def batch_workspace(self, workers: int, n_terms: int) -> tuple[np.ndarray, ...]:
        """The parallel kernels' workspace: one row of each array per worker."""
        return tuple(np.stack([a] * workers) for a in self.workspace(n_terms))


def make_layout(
    docs: sp.csr_matrix, bsize: int, order: np.ndarray, dense_bytes: int = NO_DENSE
) -> Layout:
    """Encode doc x term impacts (CSR by internal id) with slot -> internal id `order`; the
    terms with >= dense_bytes of block rows are decoded ahead (1: every term that occurs)."""
    docs = sp.csr_matrix(docs, dtype=np.uint8)
    docs.sort_indices()
    vocab = docs.shape[1]
    term_ptr, slots, impacts = postings_by_slot(
        docs.indptr.astype(np.int64), docs.indices.astype(np.int32), docs.data, order, vocab
    )
    block_ptr, rows, local, _ = encode_postings(term_ptr, slots, impacts, bsize)
    arrays = [term_ptr, block_ptr, rows, local, impacts, order.astype(np.int32)]
    arrays.append(term_kth_impacts(term_ptr, impacts))
    for a in arrays:  # read-only like a mapped index: one Numba specialization, not two
        a.setflags(write=False)
    lay = Layout(*arrays, bsize, docs)
    nb = -(-lay.n_docs // bsize)
    lay.dense = tuple(
        _readonly(a)
        for a in dense_terms(term_ptr, block_ptr, rows, impacts, bsize, nb, dense_bytes)
    )
    return lay


@dataclass
class Case:
    layout: Layout
    q_indptr: np.ndarray
    q_terms: np.ndarray
    q_weights: np.ndarray
    k: int
    exact: bool  # dyadic weights: float32 sums are exact, so ids must match bit for bit

    @property
    def nq(self) -> int:
        return self.q_indptr.size - 1

    def query(self, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a, b = self.q_indptr[r], self.q_indptr[r + 1]
        return np.array([0, b - a], np.int64), self.q_terms[a:b], self.q_weights[a:b]


def random_queries(
    rng: np.random.Generator, vocab: int, nq: int, exact: bool, max_terms: int = 20
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ptr, terms, weights = [0], [], []
    for _ in range(nq):
        nt = int(rng.integers(0, min(max_terms, vocab) + 1))
        t = np.sort(rng.choice(vocab, size=nt, replace=False))
        # Dyadic weights (k/8) make float32 products and sums exact.
        w = rng.integers(1, 17, size=nt) / 8.0 if exact else rng.random(nt) * 3 + 1e-3
        if nt and rng.random() < 0.3:
            w[:] = w[0]  # equal weights: ties between docs with equal impacts
        terms.append(t)
        weights.append(w)
        ptr.append(ptr[-1] + nt)
    return (
        np.asarray(ptr, dtype=np.int64),
        np.concatenate(terms).astype(np.int32),
        np.concatenate(weights).astype(np.float32),
    )


@st.composite
def cases(draw: st.DrawFn) -> Case:
    seed = draw(st.integers(0, 2**32 - 1))
    n_docs = draw(st.integers(0, 300))
    vocab = draw(st.integers(1, 200))
    density = draw(st.sampled_from([0.0, 0.005, 0.02, 0.1, 0.4]))
    max_impact = draw(st.sampled_from([1, 3, 255]))  # small ranges make many ties
    bsize = draw(st.sampled_from([1, 2, 3, 8, 32, 128]))
    k = draw(st.integers(1, 400))
    nq = draw(st.integers(1, 8))
    exact = draw(st.booleans())
    rng = np.random.default_rng(seed)
    mask = rng.random((n_docs, vocab)) < density
    impacts = rng.integers(1, max_impact + 1, size=(n_docs, vocab))
    docs = sp.csr_matrix(np.where(mask, impacts, 0).astype(np.uint8))
    order = rng.permutation(n_docs).astype(np.int32)
    q_ptr, q_terms, q_weights = random_queries(rng, vocab, nq, exact)
    # Dense terms: none, every term, or the ones with the longest rows (a mix in one query).
    layout = make_layout(docs, bsize, order, draw(st.sampled_from([NO_DENSE, 1, 2, 4])))
    dead_share = draw(st.sampled_from([None, 0.0, 0.1, 0.5, 1.0]))  # segment deletions
    if dead_share is not None:
        layout.dead = _readonly((rng.random(n_docs) < dead_share).astype(np.uint8))
    return Case(layout, q_ptr, q_terms, q_weights, k, exact)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def reference(case: Case) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Dense float64 scores [nq, n_docs]; per query (ids, float32 scores), score desc, id asc."""
    docs = case.layout.docs.astype(np.float64)
    vocab = docs.shape[1]
    q = sp.csr_matrix(
        (case.q_weights.astype(np.float64), case.q_terms, case.q_indptr), shape=(case.nq, vocab)
    )
    dense = np.asarray((q @ docs.T).toarray(), dtype=np.float64).reshape(case.nq, -1)
    if case.layout.dead.size:
        dense[:, case.layout.dead.astype(bool)] = 0  # deleted docs never come back
    out = []
    for r in range(case.nq):
        vals = dense[r].astype(np.float32)
        ids = np.flatnonzero(vals > 0).astype(np.int32)
        order = np.lexsort((ids, -vals[ids]))[: case.k]
        out.append((ids[order], vals[ids][order]))
    return dense, out


def check_against_reference(
    case: Case, dense_row: np.ndarray, ref: tuple[np.ndarray, np.ndarray], ids, scores
) -> None:
    ref_ids, ref_scores = ref
    m = ref_ids.size
    assert ids.dtype == np.int32 and scores.dtype == np.float32
    assert m == min(case.k, int((dense_row > 0).sum()))
    assert np.all(ids[m:] == -1) and np.all(scores[m:] == 0)
    ids, scores = ids[:m], scores[:m]
    assert np.all(scores > 0), "zero-score docs must never be returned"
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5)
    if case.exact:
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_array_equal(scores, ref_scores)
    else:
        # Near-ties may swap between float32 and float64 sums; everything else must hold.
        assert np.unique(ids).size == ids.size
        np.testing.assert_allclose(dense_row[ids], scores, rtol=1e-5)
        assert_ranked(ids, scores)


def assert_ranked(ids: np.ndarray, scores: np.ndarray) -> None:
    """Score non-increasing; within equal scores, ids strictly increasing."""
    for j in range(1, ids.size):
        assert scores[j] < scores[j - 1] or (scores[j] == scores[j - 1] and ids[j] > ids[j - 1])


def exhaustive(case: Case, q: tuple[np.ndarray, ...], k: int) -> tuple[np.ndarray, np.ndarray]:
    lay = case.layout
    acc = np.zeros(lay.n_docs, np.float32)
    touched = np.empty(lay.n_docs, np.int32)
    return search_exhaustive(*q, *lay.arrays, lay.bsize, k, acc, touched)


def pruned(case: Case, q: tuple[np.ndarray, ...], k: int, alpha: float = 1.0, frac: float = 1.0):
    lay = case.layout
    ws = lay.workspace(int(q[1].size))
    return search_pruned(*q, *lay.arrays, lay.term_kth, lay.dense, lay.bsize, k, alpha, frac, *ws)


@SETTINGS
@given(cases())
def test_exhaustive_and_pruned_equal_brute_force(case: Case) -> None:
    dense, refs = reference(case)
    for r in range(case.nq):
        q = case.query(r)
        ids, scores = exhaustive(case, q, case.k)
        check_against_reference(case, dense[r], refs[r], ids[0], scores[0])
        p_ids, p_scores, _ = pruned(case, q, case.k)
        np.testing.assert_array_equal(p_ids, ids)  # bit for bit, not just close
        np.testing.assert_array_equal(p_scores, scores)


@SETTINGS
@given(cases(), st.integers(1, 4), st.booleans())
def test_parallel_equals_sequential(case: Case, workers: int, reuse: bool) -> None:
    """Any worker count; reuse=True runs the batch twice on the same rows (kept workspace),
    after a first pass with tables too short for the queries (private ones)."""
    lay = case.layout
    args = (case.q_indptr, case.q_terms, case.q_weights, *lay.arrays)
    ws = lay.batch_workspace(workers, int(np.diff(case.q_indptr).max(initial=0)))
    if reuse:
        short = (ws[0], np.ascontiguousarray(ws[1][:, :1]), *ws[2:])
        search_pruned_parallel(*args, lay.term_kth, lay.dense, lay.bsize, case.k, 1.0, 1.0, *short)
        search_pruned_parallel(*args, lay.term_kth, lay.dense, lay.bsize, case.k, 1.0, 1.0, *ws)
    ids, scores = search_exhaustive_parallel(*args, lay.bsize, case.k, *ws[4:])
    p_ids, p_scores, stats = search_pruned_parallel(
        *args, lay.term_kth, lay.dense, lay.bsize, case.k, 1.0, 1.0, *ws
    )
    assert not ws[0].any() and not ws[4].any()  # zero in, zero out
    assert ids.shape == scores.shape == p_ids.shape == (case.nq, case.k)
    assert stats.shape == (case.nq, 3)
    np.testing.assert_array_equal(p_ids, ids)
    np.testing.assert_array_equal(p_scores, scores)
    for r in range(case.nq):
        one_ids, one_scores = exhaustive(case, case.query(r), case.k)
        np.testing.assert_array_equal(ids[r], one_ids[0])
        np.testing.assert_array_equal(scores[r], one_scores[0])


def _tiny(order: list[int] | None = None, bsize: int = 2) -> Case:
    # term 0 -> docs 1, 2, 3 (impact 2 each); term 1 -> docs 1, 2 (impact 1); term 2 -> none
    dense = np.zeros((5, 3), np.uint8)
    dense[[1, 2, 3], 0] = 2
    dense[[1, 2], 1] = 1
    o = np.asarray(order if order is not None else [4, 3, 2, 1, 0], np.int32)
    lay = make_layout(sp.csr_matrix(dense), bsize, o)
    z = np.zeros(0, np.int32)
    return Case(lay, np.zeros(1, np.int64), z, z.astype(np.float32), 10, True)


@pytest.mark.parametrize("order", [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [3, 0, 4, 1, 2]])
def test_ties_break_by_smaller_internal_id(order: list[int]) -> None:
    """Whatever the slot order, equal scores come back by ascending internal id."""
    case = _tiny(order)
    q = (np.array([0, 1], np.int64), np.array([0], np.int32), np.ones(1, np.float32))
    for fn in (exhaustive, pruned):
        ids, scores = fn(case, q, 10)[:2]
        assert ids[0].tolist()[:3] == [1, 2, 3] and ids[0, 3] == -1  # docs 0, 4 never (score 0)
        assert scores[0].tolist()[:3] == [2.0, 2.0, 2.0]
        ids = fn(case, q, 2)[0]
        assert ids[0].tolist() == [1, 2]  # the heap keeps the smaller ids when cutting at k


def test_empty_query_unknown_and_nonpositive_terms() -> None:
    case = _tiny()
    for terms, weights in (([], []), ([2], [1.0]), ([0], [0.0]), ([7, -1], [1.0, 1.0])):
        q = (
            np.array([0, len(terms)], np.int64),
            np.array(terms, np.int32),
            np.array(weights, np.float32),
        )
        for fn in (exhaustive, pruned):
            ids, scores = fn(case, q, 3)[:2]
            assert np.all(ids == -1) and np.all(scores == 0)


def test_batch_default_chunks_and_padding() -> None:
    lay = _tiny().layout
    args = (
        np.array([0, 2, 2, 3], np.int64),
        np.array([0, 1, 1], np.int32),
        np.array([1.0, 1.0, 0.5], np.float32),
        *lay.arrays,
    )
    expect_ids = [[1, 2, 3, -1], [-1, -1, -1, -1], [1, 2, -1, -1]]
    expect_scores = [[3, 3, 2, 0], [0, 0, 0, 0], [0.5, 0.5, 0, 0]]
    ws = lay.batch_workspace(2, 2)
    ids, scores = search_exhaustive_parallel(*args, lay.bsize, 4, *ws[4:])
    assert ids.tolist() == expect_ids and scores.tolist() == expect_scores
    ids, scores, _ = search_pruned_parallel(
        *args, lay.term_kth, lay.dense, lay.bsize, 4, 1.0, 1.0, *ws
    )
    assert ids.tolist() == expect_ids and scores.tolist() == expect_scores


def test_batch_workspace_shapes_are_checked() -> None:
    """A workspace that does not fit the index or the workers is refused, not overrun."""
    lay = _tiny().layout
    args = (np.array([0, 1], np.int64), np.array([0], np.int32), np.ones(1, np.float32))
    args = (*args, *lay.arrays)
    ws = lay.batch_workspace(2, 1)
    c = np.ascontiguousarray
    bad = (
        (ws[0][:1], *ws[1:]),  # a worker short of rows
        (c(ws[0][:, :-1]), *ws[1:]),  # one block short
        (*ws[:2], c(ws[2][:, :0]), *ws[3:]),  # no generation slot
    )
    for w in bad:
        with pytest.raises(ValueError, match="workspace"):
            search_pruned_parallel(*args, lay.term_kth, lay.dense, lay.bsize, 3, 1.0, 1.0, *w)
    for acc, touched in (
        (ws[4][:1], ws[5]),
        (c(ws[4][:, :-1]), c(ws[5][:, :-1])),
        (ws[4][:0], ws[5][:0]),
    ):
        with pytest.raises(ValueError, match="workspace"):
            search_exhaustive_parallel(*args, lay.bsize, 3, acc, touched)


@njit(parallel=True)
def _claim_all(n: int, workers: int) -> np.ndarray:
    """The batch kernels' dealing loop, counting how often each index is handed out."""
    seen = np.zeros(n, dtype=np.int64)
    nxt = np.zeros(1, dtype=np.int64)
    for _ in prange(workers):
        i = scoring._claim(nxt)
        while i < n:
            seen[i] += 1
            i = scoring._claim(nxt)
    return seen


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two threads to race")
def test_claim_hands_out_each_query_once() -> None:
    """Two threads claiming 2M indexes: with a plain load-add-store, both threads would take
    some index twice, and two workers would write one query's results at once."""
    n, workers = 2_000_000, max(2, numba.get_num_threads())
    seen = _claim_all(n, workers)
    assert seen.min() == 1 and seen.max() == 1


@pytest.mark.parametrize("k", [0, -3])
def test_nonpositive_k_returns_nothing(k: int) -> None:
    case = _tiny()
    q = (np.array([0, 1], np.int64), np.array([0], np.int32), np.ones(1, np.float32))
    for fn in (exhaustive, pruned):
        ids, scores = fn(case, q, k)[:2]
        assert ids.size == scores.size == 0
