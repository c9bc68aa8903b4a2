"""Upgrading a version-1 index keeps every posting, document and companion, without encoding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sparseretr.index import IndexVersionError, SparseIndex
from sparseretr.index.docstore import DocStore
from sparseretr.index.upgrade import upgrade_index
from sparseretr.index.vectors import SparseVectors


def write_v1(path: Path, vectors: SparseVectors, ids: list[str]) -> float:
    """A version-1 folder as sparseretr 0.1 wrote it: plain CSC postings of uint8 impacts."""
    path.mkdir()
    scale = float(vectors.data.max() / 255)
    impacts = np.clip(np.rint(vectors.data / scale), 1, 255).astype(np.uint8)
    csc = sp.csr_matrix(
        (impacts, vectors.indices, vectors.indptr), shape=(len(vectors), vectors.vocab_size)
    ).tocsc()
    csc.sort_indices()
    np.save(path / "term_ptr.npy", csc.indptr.astype(np.int64))
    np.save(path / "post_docs.npy", csc.indices.astype(np.int32))
    np.save(path / "post_impacts.npy", csc.data.astype(np.uint8))
    np.save(path / "doc_ids.npy", np.array([i.encode() for i in ids], dtype="S8"))
    (path / "encoder").mkdir()
    (path / "encoder" / "state.json").write_text('{"ok": 1}')
    (path / "dense").mkdir()
    (path / "dense" / "x.bin").write_bytes(b"dense")
    with DocStore(path / "docstore.sqlite") as store:
        store.put_many({"id": i, "title": f"t{i}", "text": "x"} for i in ids)
    manifest = {
        "format": "sparseretr-index",
        "format_version": 1,
        "n_docs": len(ids),
        "vocab_size": vectors.vocab_size,
        "quantization": {"scale": scale},
        "encoder_config": {"kind": "bm25"},
        "docstore": "docstore.sqlite",
        "build": {},
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    return scale


def test_upgrade_v1_keeps_postings_docs_and_companions(tmp_path: Path):
    rng = np.random.default_rng(0)
    dense = (rng.random((40, 30)) < 0.2) * rng.random((40, 30)) * 3
    vectors = SparseVectors.from_scipy(sp.csr_matrix(dense), 30)
    ids = [f"d{i}" for i in range(40)]
    scale = write_v1(tmp_path / "old", vectors, ids)
    with pytest.raises(IndexVersionError, match="index upgrade|rebuild"):
        SparseIndex.open(tmp_path / "old")

    upgrade_index(tmp_path / "old")
    idx = SparseIndex.open(tmp_path / "old", verify=True)
    assert idx.manifest["build"]["upgraded_from_format"] == 1
    assert idx.scale == pytest.approx(scale)
    assert (idx.encoder_dir / "state.json").read_text() == '{"ok": 1}'
    assert (tmp_path / "old" / "dense" / "x.bin").read_bytes() == b"dense"
    assert idx.docstore is not None and idx.docstore.get("d7")["title"] == "td7"
    queries = SparseVectors.from_scipy(
        sp.csr_matrix(rng.random((5, 30)) * (rng.random((5, 30)) < 0.3)), 30
    )
    got_ids, got = idx.search(queries, 10)
    ref_ids, ref = idx.brute_force(queries, 10)
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    # Every document's weights survive (within quantization of the original floats).
    for d in range(40):
        terms = np.flatnonzero(dense[d])
        np.testing.assert_allclose(
            idx.term_weights(d, terms), dense[d, terms], atol=scale / 2 + 1e-6
        )


def test_upgrade_makes_a_plain_index_segmented_and_writable(tmp_path: Path):
    from sparseretr.index import build_index
    from sparseretr.index.segments import Snapshot, is_segmented
    from sparseretr.index.upgrade import upgrade
    from sparseretr.index.writer import IndexWriter

    rng = np.random.default_rng(1)
    dense = (rng.random((30, 20)) < 0.3) * rng.random((30, 20)) * 2
    vectors = SparseVectors.from_scipy(sp.csr_matrix(dense), 20)
    plain = build_index(tmp_path / "plain", [f"d{i}" for i in range(30)], vectors,
                        encoder_config={"kind": "test"})  # fmt: skip
    queries = SparseVectors.from_scipy(sp.csr_matrix(rng.random((4, 20))), 20)
    before = SparseIndex.open(plain).search(queries, 5)
    assert not Snapshot.open(plain).writable
    assert upgrade(plain) == plain.absolute() and is_segmented(plain)
    snap = Snapshot.open(plain)
    assert snap.writable and snap.n_docs == 30
    got = snap.search("sparse", queries, 5)
    assert [[h.internal for h in run] for run in got] == before[0].tolist()
    assert upgrade(plain) == plain  # already current: nothing to do
    IndexWriter(plain).close()  # takes writes now

    scale = write_v1(tmp_path / "v1", vectors, [f"d{i}" for i in range(30)])
    out = upgrade(tmp_path / "v1", tmp_path / "v1-new")
    seg = Snapshot.open(out, dense=False).first.sparse  # the v1 fixture's dense/ is a stub
    assert seg.scale == pytest.approx(scale) and (tmp_path / "v1" / "manifest.json").is_file()
