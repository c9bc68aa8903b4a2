"""Index build/open round trip, quantization, search faithfulness, atomicity, corruption errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sparseretr.index import (
    FORMAT_VERSION,
    ChecksumMismatchError,
    CorruptIndexError,
    DocStore,
    IndexExistsError,
    IndexNotFoundError,
    IndexVersionError,
    ManifestError,
    SparseIndex,
    SparseIndexError,
    build_index,
    dequantize,
    quantize,
)
from sparseretr.index.vectors import SparseVectors

VOCAB = 120


def random_vectors(
    rng: np.random.Generator, n: int, vocab: int = VOCAB, density: float = 0.05
) -> SparseVectors:
    m = sp.random(n, vocab, density=density, format="csr", random_state=rng, dtype=np.float64)
    m.data = (rng.lognormal(0.0, 1.0, m.data.size) + 1e-3).astype(np.float32)
    return SparseVectors.from_scipy(m, vocab)


def make_ids(n: int) -> list[str]:
    return [f"dóc-{i}" if i % 7 == 0 else f"doc-{i}" for i in range(n)]


def make_docs(ids: list[str]) -> list[dict]:
    return [
        {"id": d, "title": f"T {d}", "text": f"text of {d}", "metadata": {"n": i}}
        if i % 2
        else {"id": d, "title": f"T {d}", "text": f"text of {d}"}
        for i, d in enumerate(ids)
    ]


def write_state(folder: Path) -> None:
    (folder / "idf.json").write_text(json.dumps({"a": 1.5}))
    (folder / "vocab").mkdir()
    (folder / "vocab" / "terms.txt").write_text("a\nb\n")


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, list[str], SparseVectors]:
    rng = np.random.default_rng(7)
    vecs = random_vectors(rng, 150)
    ids = make_ids(len(vecs))
    path = build_index(
        tmp_path / "idx",
        ids,
        vecs,
        encoder_config={"kind": "splade", "model": "tiny"},
        extras={"encoder": write_state},
        docs=make_docs(ids),
    )
    return path, ids, vecs


def m_layout(idx: SparseIndex) -> dict:
    return idx.manifest["layout"]


def dyadic_queries(rng: np.random.Generator, nq: int, vocab: int = VOCAB) -> SparseVectors:
    """Query weights k/8: kernel float32 sums are exact, so ids must match brute force exactly."""
    rows = []
    for _ in range(nq):
        t = np.sort(rng.choice(vocab, size=int(rng.integers(0, 15)), replace=False))
        rows.append((t, rng.integers(1, 17, size=t.size) / 8.0))
    return SparseVectors.from_rows(rows, vocab)


# ----------------------------------------------------------------------------- round trip
def test_round_trip(built: tuple[Path, list[str], SparseVectors]) -> None:
    path, ids, vecs = built
    idx = SparseIndex.open(path, mmap=True)
    assert idx.n_docs == len(vecs) and idx.vocab_size == VOCAB and idx.n_postings == vecs.nnz
    assert idx.encoder_config == {"kind": "splade", "model": "tiny"}

    impacts, scale = quantize(vecs.data)
    assert idx.scale == pytest.approx(scale)
    expected = sp.csr_matrix((impacts, vecs.indices, vecs.indptr), shape=(len(vecs), VOCAB))
    expected = expected.tocsc()
    expected.sort_indices()
    # The compact arrays are memory-mapped and read-only; `postings` decodes them back to the
    # plain CSC view (internal ids ascending per term) exactly.
    raw = idx.kernel_postings
    for name in ("term_ptr", "block_ptr", "block_rows", "post_docs", "post_impacts"):
        arr = getattr(raw, name)
        assert isinstance(arr, np.memmap) and not arr.flags.writeable, name
    assert raw.post_docs.dtype == raw.post_impacts.dtype == np.uint8
    assert raw.bsize == idx.block_size == m_layout(idx)["block_size"]
    term_ptr, post_docs, post_impacts = idx.postings
    assert term_ptr.dtype == np.int64 and post_docs.dtype == np.int32
    assert post_impacts.dtype == np.uint8 and not post_docs.flags.writeable
    np.testing.assert_array_equal(term_ptr, expected.indptr)
    np.testing.assert_array_equal(post_docs, expected.indices)
    np.testing.assert_array_equal(post_impacts, expected.data)
    order = np.asarray(raw.doc_order)
    assert sorted(order.tolist()) == list(range(len(vecs)))

    for i, ext in enumerate(ids):
        assert idx.doc_id(i) == ext
        assert idx.internal_id(ext) == i
    assert idx.internal_id("missing") is None
    assert idx.internal_id("x" * 500) is None

    store = idx.docstore
    assert isinstance(store, DocStore) and len(store) == len(ids)
    docs = make_docs(ids)
    assert store.get(ids[1]) == docs[1]
    assert store.get(ids[0]) == {**docs[0], "metadata": {}}
    assert store.get("missing") is None
    got = store.get_many([ids[3], "missing", ids[2]])
    assert got[0] == docs[3] and got[1] is None and got[2]["id"] == ids[2]

    assert json.loads((idx.encoder_dir / "idf.json").read_text()) == {"a": 1.5}
    assert (idx.encoder_dir / "vocab" / "terms.txt").read_text() == "a\nb\n"

    m = idx.manifest
    assert m["format"] == "sparseretr-index" and m["format_version"] == FORMAT_VERSION == 2
    assert m["quantization"]["dtype"] == "uint8" and m["n_docs"] == len(vecs)
    assert m["stats"]["avg_nnz_per_doc"] == pytest.approx(vecs.nnz / len(vecs))
    for name in ("term_ptr.npy", "post_docs.npy", "block_rows.npy", "encoder/idf.json"):
        assert {"size", "sha256", "dtype", "shape"} <= set(m["files"][name])
    assert m["files"]["post_docs.npy"]["shape"] == [vecs.nnz]
    SparseIndex.open(path, verify=True)  # a healthy index passes the full check

    eager = SparseIndex.open(path, mmap=False)
    assert not isinstance(eager.kernel_postings.post_docs, np.memmap)
    np.testing.assert_array_equal(eager.postings[1], post_docs)
    assert eager.docstore is not None
    idx.close()
    eager.close()


def test_index_without_docs_or_encoder_state(tmp_path: Path) -> None:
    vecs = SparseVectors.from_rows([([0, 2], [0.5, 1.0]), ([], []), ([2], [2.0])], 3)
    path = build_index(tmp_path / "i", ["a", "b", "c"], vecs, encoder_config={})
    idx = SparseIndex.open(path)
    assert idx.docstore is None and idx.encoder_dir.is_dir()
    ids, scores = idx.search(SparseVectors.from_rows([([2], [1.0])], 3), k=5)
    assert ids.tolist() == [[2, 0, -1, -1, -1]]
    np.testing.assert_allclose(scores[0, :2], [2.0, 1.0], atol=idx.scale / 2)


# ---------------------------------------------------------------------------- quantization
def test_quantization_error_bound() -> None:
    rng = np.random.default_rng(3)
    w = np.concatenate([rng.lognormal(0, 2, 5000), [1e-9, 3.0]]).astype(np.float32)
    impacts, scale = quantize(w)
    assert scale == pytest.approx(float(w.max()) / 255)
    assert impacts.dtype == np.uint8 and impacts.min() >= 1 and impacts.max() == 255
    deq = dequantize(impacts, scale).astype(np.float64)
    big = w >= scale / 2
    err = np.abs(deq[big] - w[big].astype(np.float64))
    assert np.all(err <= scale / 2 * (1 + 1e-5))
    assert np.all(deq[~big] == np.float32(scale))  # tiny weights keep their posting (impact 1)


def test_term_weights_are_dequantized(built: tuple[Path, list[str], SparseVectors]) -> None:
    path, _, vecs = built
    idx = SparseIndex.open(path)
    for d in (0, 5, len(vecs) - 1):
        terms, weights = vecs.row(d)
        absent = np.setdiff1d(np.arange(VOCAB), terms)[:3]
        got = idx.term_weights(d, np.concatenate([terms, absent]))
        assert np.all(np.abs(got[: terms.size] - weights) <= idx.scale / 2 * 1.001 + 1e-6)
        assert np.all(got[terms.size :] == 0)
    with pytest.raises(ValueError):
        idx.term_weights(0, [VOCAB])


# --------------------------------------------------------------------------------- search
@pytest.mark.parametrize("mmap", [True, False])
def test_search_equals_brute_force(
    built: tuple[Path, list[str], SparseVectors], mmap: bool
) -> None:
    path, _, vecs = built
    idx = SparseIndex.open(path, mmap=mmap)
    rng = np.random.default_rng(11)
    queries = dyadic_queries(rng, 40)
    for k in (1, 3, 10, len(vecs) + 25):
        ids, scores = idx.search(queries, k=k)
        ref_ids, ref_scores = idx.brute_force(queries, k=k)
        ex_ids, ex_scores = idx.search(queries, k=k, method="exhaustive")
        np.testing.assert_array_equal(ex_ids, ids)  # pruned (default) == exhaustive, exactly
        np.testing.assert_array_equal(ex_scores, scores)
        assert ids.shape == scores.shape == (len(queries), k) and ids.dtype == np.int32
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-6)
        assert np.all((ids == -1) == (scores == 0))
        for r in (0, 7):  # the single-query paths agree with the batch paths
            for method in ("pruned", "exhaustive"):
                one_ids, one_scores = idx.search(queries.slice([r]), k=k, method=method)
                np.testing.assert_array_equal(one_ids[0], ids[r])
                np.testing.assert_array_equal(one_scores[0], scores[r])


def test_search_scores_track_float_weights(built: tuple[Path, list[str], SparseVectors]) -> None:
    """Dequantized scores stay close to the unquantized dot products."""
    path, _, vecs = built
    idx = SparseIndex.open(path)
    q = SparseVectors.from_scipy(random_vectors(np.random.default_rng(5), 5).to_scipy(), VOCAB)
    ids, scores = idx.search(q, k=5)
    exact = (q.to_scipy() @ vecs.to_scipy().T).toarray()
    for r in range(len(q)):
        for j in np.flatnonzero(ids[r] >= 0):
            qsum = float(q.to_scipy()[r].sum())
            assert abs(scores[r, j] - exact[r, ids[r, j]]) <= idx.scale / 2 * qsum + 1e-4


def test_query_validation(built: tuple[Path, list[str], SparseVectors]) -> None:
    idx = SparseIndex.open(built[0])
    bad = SparseVectors.from_rows([([1, VOCAB + 5], [1.0, 1.0])], VOCAB + 10)
    with pytest.raises(ValueError, match=str(VOCAB + 5)):
        idx.search(bad)
    with pytest.raises(ValueError, match="vocabulary"):
        idx.brute_force(bad)
    ok = SparseVectors.from_rows([([1], [1.0])], VOCAB)
    for k in (0, -1):
        with pytest.raises(ValueError, match="k must be"):
            idx.search(ok, k=k)
    ids, scores = idx.search(SparseVectors.from_rows([], VOCAB), k=4)
    assert ids.shape == scores.shape == (0, 4)


# ------------------------------------------------------------------------- build behaviour
def test_overwrite_requires_flag(built: tuple[Path, list[str], SparseVectors]) -> None:
    path, ids, vecs = built
    small = vecs.slice([0, 1, 2])
    with pytest.raises(IndexExistsError, match="overwrite=True"):
        build_index(path, ids[:3], small, encoder_config={})
    assert SparseIndex.open(path).n_docs == len(vecs)
    build_index(path, ids[:3], small, encoder_config={"v": 2}, overwrite=True)
    idx = SparseIndex.open(path, verify=True)
    assert idx.n_docs == 3 and idx.encoder_config == {"v": 2} and idx.docstore is None
    assert sorted(p.name for p in path.parent.iterdir()) == ["idx"]


def test_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    vecs = random_vectors(np.random.default_rng(1), 20)

    def boom(folder: Path) -> None:
        (folder / "partial.bin").write_bytes(b"x" * 10)
        raise RuntimeError("encoder save failed")

    target = tmp_path / "idx"
    with pytest.raises(RuntimeError, match="encoder save failed"):
        build_index(target, make_ids(20), vecs, encoder_config={}, extras={"encoder": boom})
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []

    # A failed rebuild over an existing index keeps the old index intact.
    build_index(target, make_ids(20), vecs, encoder_config={"old": True})
    with pytest.raises(RuntimeError):
        build_index(
            target,
            make_ids(20),
            vecs,
            encoder_config={},
            extras={"encoder": boom},
            overwrite=True,
        )
    assert SparseIndex.open(target, verify=True).encoder_config == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]


def test_duplicate_ids_rejected(tmp_path: Path) -> None:
    vecs = random_vectors(np.random.default_rng(2), 6)
    ids = ["a", "b", "doc-3", "c", "doc-3", "d"]
    with pytest.raises(ValueError, match="duplicate id 'doc-3'"):
        build_index(tmp_path / "idx", ids, vecs, encoder_config={})
    with pytest.raises(ValueError, match="match one to one"):
        build_index(tmp_path / "idx", ids[:5], vecs, encoder_config={})
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ corruption
def _rewrite_manifest(path: Path, **changes: object) -> None:
    m = json.loads((path / "manifest.json").read_text())
    m.update(changes)
    (path / "manifest.json").write_text(json.dumps(m))


def test_missing_folder_and_manifest(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="no index at"):
        SparseIndex.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexNotFoundError, match="manifest.json is missing"):
        SparseIndex.open(tmp_path / "empty")


@pytest.fixture
def fresh(built: tuple[Path, list[str], SparseVectors], tmp_path: Path):
    """A factory of pristine copies of the built index, one per corruption scenario."""
    counter = iter(range(100))

    def make() -> Path:
        dst = tmp_path / f"copy{next(counter)}"
        shutil.copytree(built[0], dst)
        return dst

    return make


def test_garbage_manifest(fresh) -> None:
    path = fresh()
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON.*sparseretr index build"):
        SparseIndex.open(path)
    (path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ManifestError, match="JSON object"):
        SparseIndex.open(path)


def test_wrong_format_or_version(fresh) -> None:
    path = fresh()
    _rewrite_manifest(path, format_version=99)
    with pytest.raises(IndexVersionError, match="format_version 99.*reads version 2.*newer"):
        SparseIndex.open(path)
    _rewrite_manifest(path, format="something-else", format_version=2)
    with pytest.raises(IndexVersionError, match="not a sparseretr index"):
        SparseIndex.open(path)
    path = fresh()
    _rewrite_manifest(path, n_docs=None)
    with pytest.raises(ManifestError, match="malformed counts"):
        SparseIndex.open(path)


def test_missing_files(fresh) -> None:
    path = fresh()
    (path / "term_ptr.npy").unlink()
    with pytest.raises(CorruptIndexError, match="term_ptr.npy is missing.*rebuild"):
        SparseIndex.open(path)
    path = fresh()
    (path / "encoder" / "idf.json").unlink()
    with pytest.raises(CorruptIndexError, match="idf.json is missing"):
        SparseIndex.open(path)


def test_truncated_and_retyped_arrays(fresh) -> None:
    path = fresh()
    size = (path / "post_impacts.npy").stat().st_size
    with open(path / "post_impacts.npy", "r+b") as f:
        f.truncate(size - 10)
    with pytest.raises(CorruptIndexError, match=rf"post_impacts.npy is {size - 10} bytes"):
        SparseIndex.open(path)

    # Same byte size, different dtype: caught by the always-on header check.
    path = fresh()
    ptr = np.load(path / "term_ptr.npy")
    np.save(path / "term_ptr.npy", ptr.view(np.float64))
    with pytest.raises(CorruptIndexError, match="term_ptr.npy holds <f8"):
        SparseIndex.open(path)


def test_checksum_mismatch_only_with_verify(fresh) -> None:
    path = fresh()
    raw = bytearray((path / "post_impacts.npy").read_bytes())
    raw[-1] ^= 0x02  # size and header unchanged: only the checksum can notice
    (path / "post_impacts.npy").write_bytes(bytes(raw))
    SparseIndex.open(path)
    with pytest.raises(ChecksumMismatchError, match="post_impacts.npy fails its sha256"):
        SparseIndex.open(path, verify=True)


def test_exception_hierarchy() -> None:
    for exc in (IndexNotFoundError, CorruptIndexError, IndexVersionError, IndexExistsError):
        assert issubclass(exc, SparseIndexError)
    assert issubclass(ManifestError, CorruptIndexError)
    assert issubclass(ChecksumMismatchError, CorruptIndexError)
    assert issubclass(IndexNotFoundError, FileNotFoundError)


def test_link_tree_into_a_folder_written_before(tmp_path: Path) -> None:
    """A re-run exporting into the same output (training with --no-resume) links the same
    model files again: files already linked are kept, changed ones replaced."""
    from sparseretr.index.format import link_tree

    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.json").write_text("1")
    (src / "sub" / "b.bin").write_bytes(b"x")
    link_tree(src, tmp_path / "dst")
    (tmp_path / "dst" / "sub" / "b.bin").unlink()
    (tmp_path / "dst" / "sub" / "b.bin").write_bytes(b"stale")
    link_tree(src, tmp_path / "dst")  # used to fail: "are the same file"
    assert (tmp_path / "dst" / "a.json").read_text() == "1"
    assert (tmp_path / "dst" / "sub" / "b.bin").read_bytes() == b"x"
