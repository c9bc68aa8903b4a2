"""Block-max pruning: safe mode is the exhaustive top-k exactly, approximate knobs degrade
gracefully, and the compact postings round-trip.

The collections are clustered (documents from a few topics, reordered by the index build) and
the blocks are small, so pruning really skips blocks; a test asserts that it did, so these
tests fail if pruning silently never runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_layouts import NO_DENSE, Layout, make_layout, one_query, query_row, random_queries
from sparseretr.index import IndexVersionError, SparseIndex, build_index
from sparseretr.index.postings import (
    MAX_BLOCK_SIZE,
    decode_slots,
    encode_postings,
    layout_ok,
    lookup_impacts,
)
from sparseretr.index.reorder import reorder_docs
from sparseretr.index.vectors import SparseVectors
from sparseretr.kernels import (
    Queries,
    scoring,
    search_exhaustive,
    search_pruned,
)

SETTINGS = settings(max_examples=40, deadline=None)


def topical_docs(rng: np.random.Generator, n: int, vocab: int, topics: int) -> sp.csr_matrix:
    """Docs drawing most terms from one of a few topics: what makes blocks prunable."""
    words = [rng.choice(vocab, size=max(2, vocab // topics), replace=False) for _ in range(topics)]
    rows, cols, vals = [], [], []
    for d in range(n):
        own = words[int(rng.integers(topics))]
        terms = np.unique(
            np.concatenate([rng.choice(own, size=min(8, own.size)), rng.choice(vocab, size=3)])
        )
        rows += [d] * terms.size
        cols += terms.tolist()
        vals += rng.integers(1, 256, size=terms.size).tolist()
    return sp.csr_matrix(
        (np.asarray(vals, np.uint8), (rows, cols)), shape=(n, vocab), dtype=np.uint8
    )


@st.composite
def clustered(draw: st.DrawFn):
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(1, 400))
    vocab = draw(st.integers(8, 120))
    topics = draw(st.integers(1, 6))
    bsize = draw(st.sampled_from([1, 2, 4, 8, 16]))
    k = draw(st.sampled_from([1, 3, 10, 50]))
    rng = np.random.default_rng(seed)
    docs = topical_docs(rng, n, vocab, topics)
    vecs = SparseVectors.from_scipy(docs.astype(np.float32), vocab)
    order = reorder_docs(vecs, bsize, seed=seed % 1000)
    q = random_queries(rng, vocab, 6, exact=draw(st.booleans()), max_terms=10, equal_weights=0)
    dense_bytes = draw(st.sampled_from([NO_DENSE, 1, 3, 8]))
    return make_layout(docs, bsize, order, dense_bytes), q, k


def exhaustive(lay: Layout, q: Queries, k: int) -> tuple[np.ndarray, np.ndarray]:
    ws = lay.workspace(0)
    return search_exhaustive(q, lay.postings, lay.dead, k, ws.acc, ws.touched)


def pruned(lay: Layout, q: Queries, k: int, alpha: float = 1.0, frac: float = 1.0) -> tuple:
    ws = lay.workspace(int(q.terms.size))
    return search_pruned(q, lay.postings, lay.dead, k, alpha, frac, ws)


# ----------------------------------------------------------------------------- safe mode
@SETTINGS
@given(clustered())
def test_safe_pruning_equals_exhaustive(arg) -> None:
    layout, q, k = arg
    for r in range(q.indptr.size - 1):
        qr = query_row(q, r)
        ids, scores = exhaustive(layout, qr, k)
        p_ids, p_scores, stats = pruned(layout, qr, k)
        np.testing.assert_array_equal(p_ids, ids)
        np.testing.assert_array_equal(p_scores, scores)
        assert stats[0, 1] <= stats[0, 0]  # scored <= candidates


def test_thousands_of_queries_and_pruning_really_skips() -> None:
    """Seeded sweep: exact equality on every query, and a good share of blocks skipped."""
    rng = np.random.default_rng(1234)
    candidates = scored = n_queries = 0
    for trial in range(12):
        n, vocab, bsize = int(rng.integers(200, 1200)), int(rng.integers(40, 300)), 8
        docs = topical_docs(rng, n, vocab, topics=int(rng.integers(2, 10)))
        vecs = SparseVectors.from_scipy(docs.astype(np.float32), vocab)
        # Every third collection decodes its longest-row terms ahead (about half its terms).
        dense_bytes = NO_DENSE if trial % 3 else int(np.ceil(-(-n // bsize) * 0.3))
        layout = make_layout(docs, bsize, reorder_docs(vecs, bsize, seed=trial), dense_bytes)
        if dense_bytes != NO_DENSE:  # queries then mix dense and row-decoded terms
            has_rows = np.diff(layout.postings.block_ptr) > 0
            assert 0 < int((layout.postings.dense_slot >= 0).sum()) < int(has_rows.sum())
        q = random_queries(rng, vocab, 200, exact=bool(trial % 2), max_terms=10, equal_weights=0)
        for k in (1, 10):
            for r in range(200):
                qr = query_row(q, r)
                ids, scores = exhaustive(layout, qr, k)
                p_ids, p_scores, stats = pruned(layout, qr, k)
                assert np.array_equal(p_ids, ids) and np.array_equal(p_scores, scores)
                candidates += int(stats[0, 0])
                scored += int(stats[0, 1])
                n_queries += 1
    assert n_queries >= 4000
    assert scored < 0.8 * candidates, (scored, candidates)  # pruning did skip blocks


def test_a_flat_query_gives_up_pruning_and_stays_exact() -> None:
    """Documents of one topic, every impact equal, and a query over the topic's common terms:
    every block's bound ties with the k-th score, so once its first blocks are scored the
    pruned search at k=10 finds every block still live and starts over exhaustively (the
    give-up path of _pruned_row). Its top-k must still be the exhaustive one exactly."""
    rng = np.random.default_rng(7)
    n, vocab, bsize = 3000, 40, 2
    docs = topical_docs(rng, n, vocab, topics=1)
    docs.data[:] = 100
    vecs = SparseVectors.from_scipy(docs.astype(np.float32), vocab)
    layout = make_layout(docs, bsize, reorder_docs(vecs, bsize, seed=0))
    common = np.argsort(-np.bincount(docs.indices, minlength=vocab))[:12]
    q = one_query(sorted(common.tolist()), [1.0] * common.size)
    ids, scores = exhaustive(layout, q, 10)
    p_ids, p_scores, stats = pruned(layout, q, 10)
    np.testing.assert_array_equal(p_ids, ids)
    np.testing.assert_array_equal(p_scores, scores)
    n_blocks = -(-n // bsize)
    # every block scored after reading the rows (not the up-front exhaustive choice: rows 0)
    assert stats[0, 0] == stats[0, 1] == n_blocks and stats[0, 2] > 0, stats


def test_one_workspace_reused_across_queries_and_generation_wrap() -> None:
    """The service reuses one pruning table per thread: entries left by earlier queries (other
    term counts, so another directory layout) must never be read as this query's, also when
    the generation stamp wraps; a table too small for a query makes the kernel use its own."""
    rng = np.random.default_rng(99)
    n, vocab, bsize = 900, 120, 8
    docs = topical_docs(rng, n, vocab, topics=6)
    vecs = SparseVectors.from_scipy(docs.astype(np.float32), vocab)
    nb = -(-n // bsize)
    layout = make_layout(docs, bsize, reorder_docs(vecs, bsize, seed=3), dense_bytes=nb // 4)
    q = random_queries(rng, vocab, 300, exact=False, max_terms=10, equal_weights=0)
    shared = layout.workspace(10)
    shared.gen[0] = scoring._GEN_LIMIT - 100  # wraps a third of the way in
    # too small a table and accumulator: the kernel allocates its own
    tiny = shared._replace(
        tab=np.zeros(1, np.int64), acc=np.zeros(0, np.float32), touched=np.empty(0, np.int32)
    )
    gens = set()
    for r in range(300):
        qr = query_row(q, r)
        ids, scores = exhaustive(layout, qr, 10)
        ws = tiny if r % 7 == 3 else shared
        p_ids, p_scores, _ = search_pruned(qr, layout.postings, layout.dead, 10, 1.0, 1.0, ws)
        np.testing.assert_array_equal(p_ids, ids)
        np.testing.assert_array_equal(p_scores, scores)
        assert not shared.ub.any() and not shared.acc.any()  # handed back zeroed
        gens.add(int(shared.gen[0]))
    assert min(gens) < 100 < scoring._GEN_LIMIT - 50 < max(gens)  # it did wrap


# ------------------------------------------------------------------------- approximate
@SETTINGS
@given(clustered(), st.sampled_from([0.3, 0.6, 0.9]), st.sampled_from([0.3, 0.7, 1.0]))
def test_approximate_knobs_degrade_gracefully(arg, alpha: float, frac: float) -> None:
    layout, q, k = arg
    by_term = layout.docs.astype(np.float64).T.tocsr()
    for r in range(q.indptr.size - 1):
        qr = query_row(q, r)
        ids, _ = exhaustive(layout, qr, k)
        a_ids, a_scores, _ = pruned(layout, qr, k, alpha, frac)
        exact = ids[0][ids[0] >= 0]
        got = a_ids[0][a_ids[0] >= 0]
        assert got.size <= k and np.unique(got).size == got.size
        assert np.all((a_ids[0] == -1) == (a_scores[0] == 0))
        w = np.zeros(by_term.shape[0])
        np.add.at(w, qr[1], qr[2])
        true = np.asarray(by_term.T @ w).ravel().astype(np.float32)
        # Returned best first; a dropped term can only lower a score (weights are >= 0).
        assert np.all(np.diff(a_scores[0][: got.size]) <= 0)
        assert np.all(a_scores[0][: got.size] <= true[got] * (1 + 1e-5) + 1e-6)
        if frac == 1.0:
            # All terms kept: alpha only skips blocks, so every document returned is scored
            # exactly, and all k slots fill whenever k documents match.
            np.testing.assert_allclose(a_scores[0][: got.size], true[got], rtol=1e-5)
            assert got.size == exact.size


def test_alpha_and_fraction_through_sparse_index(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    docs = topical_docs(rng, 600, 150, topics=6)
    vecs = SparseVectors.from_scipy(docs.astype(np.float32) / 16, 150)
    idx = SparseIndex.open(
        build_index(
            tmp_path / "i", [f"d{i}" for i in range(600)], vecs, encoder_config={}, block_size=8
        )  # fmt: skip
    )
    q = SparseVectors.from_rows(
        [(np.sort(rng.choice(150, 6, replace=False)), rng.random(6) + 0.1) for _ in range(30)], 150
    )
    exact, _ = idx.search(q, 10, method="exhaustive")
    recalls = []
    for alpha, frac in ((1.0, 1.0), (0.8, 1.0), (0.5, 1.0), (1.0, 0.5), (0.5, 0.5)):
        ids, scores = idx.search(q, 10, alpha=alpha, term_fraction=frac)
        assert ids.shape == (30, 10) and np.all((ids == -1) == (scores == 0))
        recalls.append(
            np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact, strict=True)])
        )
        stats = idx.pruning_stats(q, 10, alpha=alpha, term_fraction=frac)
        assert stats.shape == (30, 3) and np.all(stats[:, 1] <= stats[:, 0])
    assert recalls[0] == 1.0 and recalls[1] >= recalls[2] - 0.05
    for bad in (dict(alpha=0.0), dict(alpha=1.5), dict(term_fraction=0.0)):
        with pytest.raises(ValueError):
            idx.search(q, 10, **bad)
    with pytest.raises(ValueError, match="'pruned' only"):
        idx.search(q, 10, method="exhaustive", alpha=0.5)
    with pytest.raises(ValueError, match="method"):
        idx.search(q, 10, method="wand")


def test_static_pruning_keeps_top_terms(tmp_path: Path) -> None:
    vecs = SparseVectors.from_rows(
        [([0, 1, 2, 3], [0.1, 4.0, 2.0, 3.0]), ([1, 2], [1.0, 1.0]), ([], [])], 5
    )
    idx = SparseIndex.open(
        build_index(tmp_path / "s", ["a", "b", "c"], vecs, encoder_config={}, doc_max_terms=2)
    )
    assert idx.manifest["layout"]["doc_max_terms"] == 2 and idx.n_postings == 4
    w = idx.term_weights(0, np.arange(5))
    assert (w > 0).tolist() == [False, True, False, True, False]  # the two heaviest survive
    with pytest.raises(ValueError, match="doc_max_terms"):
        build_index(tmp_path / "t", ["a", "b", "c"], vecs, encoder_config={}, doc_max_terms=0)


def test_index_search_reuses_its_workspace_across_singles_and_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SparseIndex keeps one workspace per thread and a single query's view of its first row:
    singles and batches in any order, including a batch whose longer queries grow every
    row's table in place (its stamps restart), each equal brute force."""
    from sparseretr.index import sparse_index

    monkeypatch.setattr(sparse_index, "PRUNE_MIN_DOCS", 0)  # prune even this small index
    rng = np.random.default_rng(21)
    vocab = 120
    docs = topical_docs(rng, 1500, vocab, topics=6).astype(np.float32)
    vecs = SparseVectors.from_scipy(docs / 16, vocab)
    idx = SparseIndex.open(build_index(tmp_path / "w", [str(i) for i in range(1500)], vecs,
                                       encoder_config={}, block_size=8))  # fmt: skip

    def queries(n: int, terms: int) -> SparseVectors:
        rows = [
            (rng.choice(vocab, terms, replace=False), rng.random(terms) + 0.1) for _ in range(n)
        ]
        return SparseVectors.from_rows(rows, vocab)

    def check(q: SparseVectors, batch: bool) -> None:
        if batch:
            np.testing.assert_array_equal(idx.search(q, 10)[0], idx.brute_force(q, 10)[0])
            return
        for i in range(len(q)):
            one = q.slice([i])
            np.testing.assert_array_equal(idx.search(one, 10)[0], idx.brute_force(one, 10)[0])

    # A batch first (two worker rows), singles on row 0, then a batch of longer queries that
    # grows the table of every row in place, then singles again.
    for terms, batch in ((3, True), (3, False), (60, True), (3, False), (4, False), (40, False)):
        check(queries(8, terms), batch)
    assert idx.pruning_stats(queries(3, 5), 10)[:, 1].min() >= 0


# ---------------------------------------------------------------------- ids and ties
def test_reordered_index_keeps_ids_and_tie_rule(tmp_path: Path) -> None:
    """Identical documents scattered over many blocks: equal scores, ranked by internal id."""
    rng = np.random.default_rng(3)
    base = topical_docs(rng, 300, 60, topics=4).astype(np.float32)
    dup = sp.csr_matrix(np.tile(base[7].toarray(), (40, 1)))
    vecs = SparseVectors.from_scipy(sp.vstack([base, dup]).tocsr() / 32, 60)
    ids_ext = [f"doc-{i}" for i in range(len(vecs))]
    idx = SparseIndex.open(
        build_index(tmp_path / "i", ids_ext, vecs, encoder_config={}, block_size=4), verify=True
    )
    order = np.asarray(idx.kernel_postings.doc_order)
    assert not np.array_equal(order, np.arange(len(vecs)))  # it did reorder
    assert sorted(order.tolist()) == list(range(len(vecs)))
    for i in (0, 7, 150, len(vecs) - 1):
        assert idx.doc_id(i) == ids_ext[i] and idx.internal_id(ids_ext[i]) == i
        terms, weights = vecs.row(i)
        np.testing.assert_allclose(idx.term_weights(i, terms), weights, atol=idx.scale / 2 + 1e-6)
    q = SparseVectors.from_rows([vecs.row(7)], 60)
    for method in ("pruned", "exhaustive"):
        ids, scores = idx.search(q, 20, method=method)
        ties = ids[0][scores[0] == scores[0, 0]]
        assert ties.size >= 20 or ties.size == 41
        assert ties.tolist() == sorted(ties.tolist())  # ascending internal id among ties
        assert ties[0] == 7  # the original beats its later copies
    b_ids, _ = idx.brute_force(q, 20)
    np.testing.assert_array_equal(b_ids, idx.search(q, 20)[0])


def test_reorder_is_a_deterministic_whole_block_permutation() -> None:
    rng = np.random.default_rng(9)
    vecs = SparseVectors.from_scipy(topical_docs(rng, 203, 80, 5).astype(np.float32), 80)
    a = reorder_docs(vecs, 16, seed=4)
    assert sorted(a.tolist()) == list(range(203)) and a.dtype == np.int32
    np.testing.assert_array_equal(a, reorder_docs(vecs, 16, seed=4))


# ---------------------------------------------------------------------- compact postings
@st.composite
def term_postings(draw: st.DrawFn):
    bsize = draw(st.integers(1, MAX_BLOCK_SIZE))
    n_docs = draw(st.integers(1, 70_000))
    vocab = draw(st.integers(1, 6))
    ptr, slots, imps = [0], [], []
    for _ in range(vocab):
        df = draw(st.integers(0, min(n_docs, 60)))
        s = np.sort(
            np.asarray(
                draw(st.lists(st.integers(0, n_docs - 1), min_size=df, max_size=df, unique=True)),
                dtype=np.int32,
            )
        )
        slots.append(s)
        imps.append(draw(st.lists(st.integers(1, 255), min_size=df, max_size=df)))
        ptr.append(ptr[-1] + df)
    return (
        bsize, n_docs, np.asarray(ptr, np.int64),
        np.concatenate(slots).astype(np.int32), np.asarray(sum(imps, []), np.uint8),
    )  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(term_postings())
def test_compact_postings_round_trip(arg) -> None:
    bsize, n_docs, term_ptr, slots, impacts = arg
    block_ptr, rows, local, n_rows = encode_postings(term_ptr, slots, impacts, bsize)
    assert rows.dtype == local.dtype == np.uint8 and n_rows <= slots.size
    for a in (term_ptr, block_ptr, rows, local, impacts):
        a.setflags(write=False)  # as SparseIndex passes them: shares its compiled readers
    np.testing.assert_array_equal(
        decode_slots(term_ptr, block_ptr, rows, local, impacts, bsize), slots
    )
    assert layout_ok(term_ptr, block_ptr, rows, local, impacts, bsize, n_docs)
    for t in range(term_ptr.size - 1):
        for p in range(term_ptr[t], min(term_ptr[t + 1], term_ptr[t] + 3)):
            got = lookup_impacts(term_ptr, block_ptr, rows, local, impacts, bsize, slots[p],
                                 np.array([t]))  # fmt: skip
            assert got.tolist() == [impacts[p]]
    if rows.size:  # any single corrupted byte of the rows is caught (or decodes the same)
        bad = rows.copy()
        bad[rows.size // 2] ^= 0x5A
        bad.setflags(write=False)
        if layout_ok(term_ptr, block_ptr, bad, local, impacts, bsize, n_docs):
            got = decode_slots(term_ptr, block_ptr, bad, local, impacts, bsize)
            assert np.array_equal(got, slots) or np.all(got < n_docs)


def test_block_size_bounds() -> None:
    one = np.array([0, 1], np.int64)
    for bad in (0, MAX_BLOCK_SIZE + 1, True):
        with pytest.raises(ValueError, match="block_size"):
            encode_postings(one, np.zeros(1, np.int32), np.ones(1, np.uint8), bad)


# ----------------------------------------------------------------------------- versions
def test_version_1_index_is_refused_with_rebuild_hint(tmp_path: Path) -> None:
    vecs = SparseVectors.from_rows([([0, 2], [0.5, 1.0])], 3)
    path = build_index(tmp_path / "old", ["a"], vecs, encoder_config={})
    m = json.loads((path / "manifest.json").read_text())
    m["format_version"] = 1
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(IndexVersionError, match=r"format_version 1.*older.*sparseretr index build"):
        SparseIndex.open(path)


def test_verify_catches_out_of_range_postings(tmp_path: Path) -> None:
    """Checksums re-recorded, so only the full postings scan (verify=True) can notice."""
    from sparseretr.index import CorruptIndexError
    from sparseretr.index.format import file_entry

    rng = np.random.default_rng(2)
    vecs = SparseVectors.from_scipy(topical_docs(rng, 50, 30, 3).astype(np.float32), 30)
    path = build_index(tmp_path / "v", [str(i) for i in range(50)], vecs, encoder_config={},
                       block_size=4)  # fmt: skip
    docs = np.load(path / "post_docs.npy")
    docs[len(docs) // 2] = 9  # a block-local id outside a block of 4
    np.save(path / "post_docs.npy", docs)
    m = json.loads((path / "manifest.json").read_text())
    m["files"]["post_docs.npy"] = file_entry(path / "post_docs.npy", docs)
    (path / "manifest.json").write_text(json.dumps(m))
    SparseIndex.open(path)  # cheap checks pass
    with pytest.raises(CorruptIndexError, match="out-of-range"):
        SparseIndex.open(path, verify=True)
