"""Kernel top-k must equal a brute-force scipy product, ties broken by smaller doc id."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import search_batch, search_one

SETTINGS = settings(max_examples=60, deadline=None)


@dataclass
class Case:
    term_ptr: np.ndarray
    post_docs: np.ndarray
    post_impacts: np.ndarray
    n_docs: int
    q_indptr: np.ndarray
    q_terms: np.ndarray
    q_weights: np.ndarray
    k: int
    exact: bool  # dyadic weights: float32 sums are exact, so ids must match bit for bit

    @property
    def nq(self) -> int:
        return self.q_indptr.size - 1

    def query(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.q_indptr[r], self.q_indptr[r + 1]
        return self.q_terms[a:b], self.q_weights[a:b]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    seed = draw(st.integers(0, 2**32 - 1))
    n_docs = draw(st.integers(0, 300))
    vocab = draw(st.integers(1, 200))
    density = draw(st.sampled_from([0.0, 0.005, 0.02, 0.1, 0.4]))
    max_impact = draw(st.sampled_from([1, 3, 255]))  # small ranges make many ties
    k = draw(st.integers(1, 400))
    nq = draw(st.integers(1, 8))
    exact = draw(st.booleans())
    rng = np.random.default_rng(seed)

    mask = rng.random((n_docs, vocab)) < density
    impacts = rng.integers(1, max_impact + 1, size=(n_docs, vocab))
    csc = sp.csc_matrix(np.where(mask, impacts, 0).astype(np.uint8))
    csc.sort_indices()

    ptr, terms, weights = [0], [], []
    for _ in range(nq):
        nt = int(rng.integers(0, min(20, vocab) + 1))
        t = np.sort(rng.choice(vocab, size=nt, replace=False))
        # Dyadic weights (k/8) make float32 products and sums exact.
        w = rng.integers(1, 17, size=nt) / 8.0 if exact else rng.random(nt) * 3 + 1e-3
        if nt and rng.random() < 0.3:
            w[:] = w[0]  # equal weights: ties between docs with equal impacts
        terms.append(t)
        weights.append(w)
        ptr.append(ptr[-1] + nt)
    return Case(
        term_ptr=csc.indptr.astype(np.int64),
        post_docs=csc.indices.astype(np.int32),
        post_impacts=csc.data.astype(np.uint8),
        n_docs=n_docs,
        q_indptr=np.asarray(ptr, dtype=np.int64),
        q_terms=np.concatenate(terms).astype(np.int32),
        q_weights=np.concatenate(weights).astype(np.float32),
        k=k,
        exact=exact,
    )


def reference(case: Case) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Dense float64 scores [nq, n_docs]; per query (ids, float32 scores), score desc, id asc."""
    vocab = case.term_ptr.size - 1
    docs = sp.csc_matrix(
        (case.post_impacts.astype(np.float64), case.post_docs, case.term_ptr),
        shape=(case.n_docs, vocab),
    )
    q = sp.csr_matrix(
        (case.q_weights.astype(np.float64), case.q_terms, case.q_indptr), shape=(case.nq, vocab)
    )
    dense = np.asarray((q @ docs.T).toarray(), dtype=np.float64).reshape(case.nq, case.n_docs)
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
    assert ids.dtype == np.int32 and scores.dtype == np.float32
    assert ids.size == ref_ids.size == min(case.k, int((dense_row > 0).sum()))
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


@SETTINGS
@given(cases())
def test_search_one_equals_brute_force(case: Case) -> None:
    dense, refs = reference(case)
    for r in range(case.nq):
        qt, qw = case.query(r)
        ids, scores = search_one(
            qt, qw, case.term_ptr, case.post_docs, case.post_impacts, case.n_docs, case.k
        )
        check_against_reference(case, dense[r], refs[r], ids, scores)
        assert_ranked(ids, scores)


@SETTINGS
@given(cases(), st.integers(1, 4))
def test_batch_equals_single_row_by_row(case: Case, n_chunks: int) -> None:
    ids, scores = search_batch(
        case.q_indptr,
        case.q_terms,
        case.q_weights,
        case.term_ptr,
        case.post_docs,
        case.post_impacts,
        case.n_docs,
        case.k,
        n_chunks,
    )
    assert ids.shape == scores.shape == (case.nq, case.k)
    for r in range(case.nq):
        qt, qw = case.query(r)
        one_ids, one_scores = search_one(
            qt, qw, case.term_ptr, case.post_docs, case.post_impacts, case.n_docs, case.k
        )
        m = one_ids.size
        np.testing.assert_array_equal(ids[r, :m], one_ids)
        np.testing.assert_array_equal(scores[r, :m], one_scores)
        assert np.all(ids[r, m:] == -1) and np.all(scores[r, m:] == 0)


def _tiny() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # term 0 -> docs 1, 2, 3 (impact 2 each); term 1 -> docs 1, 2 (impact 1); term 2 -> none
    term_ptr = np.array([0, 3, 5, 5], dtype=np.int64)
    post_docs = np.array([1, 2, 3, 1, 2], dtype=np.int32)
    post_impacts = np.array([2, 2, 2, 1, 1], dtype=np.uint8)
    return term_ptr, post_docs, post_impacts


def test_ties_break_by_smaller_doc_id() -> None:
    tp, pd, pi = _tiny()
    ids, scores = search_one(np.array([0], np.int32), np.ones(1, np.float32), tp, pd, pi, 5, 10)
    assert ids.tolist() == [1, 2, 3]  # equal scores: ascending doc id; docs 0, 4 never (score 0)
    assert scores.tolist() == [2.0, 2.0, 2.0]
    ids, _ = search_one(np.array([0], np.int32), np.ones(1, np.float32), tp, pd, pi, 5, 2)
    assert ids.tolist() == [1, 2]  # the heap keeps the smaller ids when cutting at k


def test_empty_query_unknown_and_nonpositive_terms() -> None:
    tp, pd, pi = _tiny()
    for terms, weights in (([], []), ([2], [1.0]), ([0], [0.0]), ([7, -1], [1.0, 1.0])):
        ids, scores = search_one(
            np.array(terms, np.int32), np.array(weights, np.float32), tp, pd, pi, 5, 3
        )
        assert ids.size == scores.size == 0


def test_batch_default_chunks_and_padding() -> None:
    tp, pd, pi = _tiny()
    ids, scores = search_batch(
        np.array([0, 2, 2, 3], np.int64),
        np.array([0, 1, 1], np.int32),
        np.array([1.0, 1.0, 0.5], np.float32),
        tp,
        pd,
        pi,
        5,
        4,
    )
    assert ids.tolist() == [[1, 2, 3, -1], [-1, -1, -1, -1], [1, 2, -1, -1]]
    assert scores.tolist() == [[3, 3, 2, 0], [0, 0, 0, 0], [0.5, 0.5, 0, 0]]


@pytest.mark.parametrize("k", [0, -3])
def test_nonpositive_k_returns_nothing(k: int) -> None:
    tp, pd, pi = _tiny()
    ids, scores = search_one(np.array([0], np.int32), np.ones(1, np.float32), tp, pd, pi, 5, k)
    assert ids.size == scores.size == 0
