"""Kernel top-k must equal a brute-force scipy product, ties broken by smaller internal doc id.

Collections are encoded in the v2 block layout with a random slot order, so every test also
checks that results come back as internal ids and that ties ignore the slot order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_layouts import (
    NO_DENSE,
    Layout,
    make_layout,
    one_query,
    query_row,
    random_queries,
    readonly,
)
from numba import njit, prange
from sparseretr.kernels import (
    Queries,
    scoring,
    search_exhaustive,
    search_exhaustive_parallel,
    search_pruned,
    search_pruned_parallel,
)

SETTINGS = settings(max_examples=60, deadline=None)


@dataclass
class Case:
    layout: Layout
    q: Queries
    k: int
    exact: bool  # dyadic weights: float32 sums are exact, so ids must match bit for bit

    @property
    def nq(self) -> int:
        return self.q.indptr.size - 1

    def query(self, r: int) -> Queries:
        return query_row(self.q, r)


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
    q = random_queries(rng, vocab, nq, exact)
    # Dense terms: none, every term, or the ones with the longest rows (a mix in one query).
    layout = make_layout(docs, bsize, order, draw(st.sampled_from([NO_DENSE, 1, 2, 4])))
    dead_share = draw(st.sampled_from([None, 0.0, 0.1, 0.5, 1.0]))  # segment deletions
    if dead_share is not None:
        layout.dead = readonly((rng.random(n_docs) < dead_share).astype(np.uint8))
    return Case(layout, q, k, exact)


def reference(case: Case) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Dense float64 scores [nq, n_docs]; per query (ids, float32 scores), score desc, id asc."""
    docs = case.layout.docs.astype(np.float64)
    vocab = docs.shape[1]
    q = sp.csr_matrix(
        (case.q.weights.astype(np.float64), case.q.terms, case.q.indptr), shape=(case.nq, vocab)
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


def exhaustive(case: Case, q: Queries, k: int) -> tuple[np.ndarray, np.ndarray]:
    lay = case.layout
    acc = np.zeros(lay.n_docs, np.float32)
    touched = np.empty(lay.n_docs, np.int32)
    return search_exhaustive(q, lay.postings, lay.dead, k, acc, touched)


def pruned(case: Case, q: Queries, k: int, alpha: float = 1.0, frac: float = 1.0):
    lay = case.layout
    ws = lay.workspace(int(q.terms.size))
    return search_pruned(q, lay.postings, lay.dead, k, alpha, frac, ws)


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
    args = (case.q, lay.postings, lay.dead)
    ws = lay.batch_workspace(workers, int(np.diff(case.q.indptr).max(initial=0)))
    if reuse:
        short = ws._replace(tab=np.ascontiguousarray(ws.tab[:, :1]))
        search_pruned_parallel(*args, case.k, 1.0, 1.0, short)
        search_pruned_parallel(*args, case.k, 1.0, 1.0, ws)
    ids, scores = search_exhaustive_parallel(*args, case.k, ws.acc, ws.touched)
    p_ids, p_scores, stats = search_pruned_parallel(*args, case.k, 1.0, 1.0, ws)
    assert not ws.ub.any() and not ws.acc.any()  # zero in, zero out
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
    return Case(lay, Queries(np.zeros(1, np.int64), *one_query([], [])[1:]), 10, True)


@pytest.mark.parametrize("bsize", [1, 2, 16, 128])
@pytest.mark.parametrize("chunks", [1, 3])
@pytest.mark.parametrize("density", [0.01, 0.6])
def test_full_chunks_of_terms_decoded_ahead(bsize: int, chunks: int, density: float) -> None:
    """Block counts that fill whole 16-block chunks, every term decoded ahead, and queries
    dense enough to add every posting without a touched list (0.6) or sparse enough to keep
    one (0.01): each way of walking postings equals brute force."""
    rng = np.random.default_rng(bsize * 10 + chunks)
    n_docs, vocab = 16 * chunks * bsize, 40
    mask = rng.random((n_docs, vocab)) < density
    docs = sp.csr_matrix(np.where(mask, rng.integers(1, 9, (n_docs, vocab)), 0).astype(np.uint8))
    layout = make_layout(docs, bsize, rng.permutation(n_docs).astype(np.int32), dense_bytes=1)
    case = Case(layout, random_queries(rng, vocab, 12, exact=True), 7, True)
    dense, refs = reference(case)
    for r in range(case.nq):
        ids, scores = exhaustive(case, case.query(r), case.k)
        check_against_reference(case, dense[r], refs[r], ids[0], scores[0])
        p_ids, p_scores, _ = pruned(case, case.query(r), case.k)
        np.testing.assert_array_equal(p_ids, ids)


@pytest.mark.parametrize("order", [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [3, 0, 4, 1, 2]])
def test_ties_break_by_smaller_internal_id(order: list[int]) -> None:
    """Whatever the slot order, equal scores come back by ascending internal id."""
    case = _tiny(order)
    q = one_query([0], [1.0])
    for fn in (exhaustive, pruned):
        ids, scores = fn(case, q, 10)[:2]
        assert ids[0].tolist()[:3] == [1, 2, 3] and ids[0, 3] == -1  # docs 0, 4 never (score 0)
        assert scores[0].tolist()[:3] == [2.0, 2.0, 2.0]
        ids = fn(case, q, 2)[0]
        assert ids[0].tolist() == [1, 2]  # the heap keeps the smaller ids when cutting at k


def test_empty_query_unknown_and_nonpositive_terms() -> None:
    case = _tiny()
    for terms, weights in (([], []), ([2], [1.0]), ([0], [0.0]), ([7, -1], [1.0, 1.0])):
        q = one_query(terms, weights)
        for fn in (exhaustive, pruned):
            ids, scores = fn(case, q, 3)[:2]
            assert np.all(ids == -1) and np.all(scores == 0)


def test_batch_default_chunks_and_padding() -> None:
    lay = _tiny().layout
    q = Queries(
        np.array([0, 2, 2, 3], np.int64),
        np.array([0, 1, 1], np.int32),
        np.array([1.0, 1.0, 0.5], np.float32),
    )
    expect_ids = [[1, 2, 3, -1], [-1, -1, -1, -1], [1, 2, -1, -1]]
    expect_scores = [[3, 3, 2, 0], [0, 0, 0, 0], [0.5, 0.5, 0, 0]]
    ws = lay.batch_workspace(2, 2)
    ids, scores = search_exhaustive_parallel(q, lay.postings, lay.dead, 4, ws.acc, ws.touched)
    assert ids.tolist() == expect_ids and scores.tolist() == expect_scores
    ids, scores, _ = search_pruned_parallel(q, lay.postings, lay.dead, 4, 1.0, 1.0, ws)
    assert ids.tolist() == expect_ids and scores.tolist() == expect_scores


def test_batch_workspace_shapes_are_checked() -> None:
    """A workspace that does not fit the index or the workers is refused, not overrun."""
    lay = _tiny().layout
    args = (one_query([0], [1.0]), lay.postings, lay.dead)
    ws = lay.batch_workspace(2, 1)
    c = np.ascontiguousarray
    bad = (
        ws._replace(ub=ws.ub[:1]),  # a worker short of rows
        ws._replace(ub=c(ws.ub[:, :-1])),  # one block short
        ws._replace(gen=c(ws.gen[:, :0])),  # no generation slot
    )
    for w in bad:
        with pytest.raises(ValueError, match="workspace"):
            search_pruned_parallel(*args, 3, 1.0, 1.0, w)
    for acc, touched in (
        (ws.acc[:1], ws.touched),
        (c(ws.acc[:, :-1]), c(ws.touched[:, :-1])),
        (ws.acc[:0], ws.touched[:0]),
    ):
        with pytest.raises(ValueError, match="workspace"):
            search_exhaustive_parallel(*args, 3, acc, touched)


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
    q = one_query([0], [1.0])
    for fn in (exhaustive, pruned):
        ids, scores = fn(case, q, k)[:2]
        assert ids.size == scores.size == 0
