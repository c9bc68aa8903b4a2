"""Segmented index: commit points, deletes, the write-ahead log, refresh and merges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sparseretr.index import build_index
from sparseretr.index.errors import CorruptIndexError
from sparseretr.index.segments import Snapshot, build_segmented, is_segmented, list_commits
from sparseretr.index.vectors import SparseVectors
from sparseretr.index.writer import IndexLockedError, IndexWriter

VOCAB = 40


def random_vectors(rng: np.random.Generator, n: int, nnz: int = 6) -> SparseVectors:
    rows = []
    for _ in range(n):
        t = np.sort(rng.choice(VOCAB, size=int(rng.integers(1, nnz + 1)), replace=False))
        rows.append((t, rng.random(t.size).astype(np.float32) * 3 + 0.05))
    return SparseVectors.from_rows(rows, VOCAB)


def docs_for(ids: list[str], tag: str = "v1") -> list[dict]:
    return [
        {"id": i, "title": f"{tag} {i}", "text": f"text of {i} ({tag})", "metadata": {}}
        for i in ids
    ]


@pytest.fixture
def seg_index(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    ids = [f"d{i}" for i in range(60)]
    return build_segmented(
        tmp_path / "idx", ids, random_vectors(rng, 60), encoder_config={"kind": "test"},
        docs=docs_for(ids), block_size=4,
    )  # fmt: skip


def queries(rng: np.random.Generator, n: int = 25) -> SparseVectors:
    return random_vectors(rng, n, nnz=5)


def assert_exact(snap: Snapshot, q: SparseVectors, k: int) -> list[list[str]]:
    got = snap.search("sparse", q, k)
    ref = snap.brute_force("sparse", q, k)
    for a, b in zip(got, ref, strict=True):
        assert [h.id for h in a] == [h.id for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], rtol=1e-5)
    return [[h.id for h in run] for run in got]


def test_build_segmented_is_one_commit(seg_index: Path) -> None:
    assert is_segmented(seg_index)
    assert list_commits(seg_index) == [1]
    snap = Snapshot.open(seg_index)
    assert snap.n_docs == 60 and len(snap.segments) == 1 and snap.writable


def test_plain_index_opens_read_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    path = build_index(
        tmp_path / "plain", ["a", "b", "c"], random_vectors(rng, 3), encoder_config={}
    )
    snap = Snapshot.open(path)
    assert not snap.writable and snap.n_docs == 3


def test_upsert_delete_refresh_and_exactness(seg_index: Path) -> None:
    rng = np.random.default_rng(2)
    w = IndexWriter(seg_index, background_merges=False)
    q = queries(rng)
    new_ids = ["d1", "d2", "n1", "n2"]  # two replacements, two new
    w.upsert(new_ids, docs_for(new_ids, "v2"), random_vectors(rng, 4))
    seq, found = w.delete(["d3", "n1", "missing"])
    assert found == [True, True, False] and seq == 2
    assert w.snapshot.n_docs == 60  # not visible before refresh
    assert w.get_pending("d1") == (True, docs_for(["d1"], "v2")[0])
    snap = w.refresh()
    assert snap.n_docs == 60 - 1 + 1  # d3 gone, n2 added (n1 added then deleted)
    assert len(snap.segments) == 2 and snap.generation == 2
    for run in assert_exact(snap, q, 10):
        assert "d3" not in run and "n1" not in run
    assert snap.get_documents(["d1", "d3", "n2"]) == [
        docs_for(["d1"], "v2")[0],
        None,
        docs_for(["n2"], "v2")[0],
    ]
    # Every live id exactly once across segments.
    live = [i for s in snap.segments for i in s.sparse.doc_ids(np.flatnonzero(s.dead == 0))]
    assert len(live) == len(set(live)) == snap.n_docs
    w.close()


def test_deleting_only_unknown_ids_logs_nothing(seg_index: Path) -> None:
    w = IndexWriter(seg_index, background_merges=False)
    before = sorted(p.name for p in w.wal_dir.glob("*")) if w.wal_dir.exists() else []
    seq, found = w.delete(["missing", "also-missing"])
    assert found == [False, False] and seq == 0
    after = sorted(p.name for p in w.wal_dir.glob("*")) if w.wal_dir.exists() else []
    assert after == before  # no record written, nothing fsynced
    seq, found = w.delete(["missing", "d5"])
    assert found == [False, True] and seq == 1
    assert len(list(w.wal_dir.glob("*"))) > len(before)
    w.close()


def test_merge_keeps_results_and_drops_deletes(seg_index: Path) -> None:
    rng = np.random.default_rng(3)
    w = IndexWriter(seg_index, background_merges=False, max_segments=2, merge_factor=3)
    for b in range(4):
        ids = [f"m{b}-{i}" for i in range(5)] + [f"d{b}"]
        w.upsert(ids, docs_for(ids), random_vectors(rng, len(ids)))
        w.delete([f"d{10 + b}"])
        w.refresh()
    q = queries(rng)
    before = w.snapshot
    ref = assert_exact(before, q, 15)
    scores = [[h.score for h in r] for r in before.search("sparse", q, 15)]
    assert len(before.segments) == 5
    while w.merge():
        pass
    after = w.snapshot
    assert len(after.segments) <= 2 and after.n_docs == before.n_docs
    assert assert_exact(after, q, 15) == ref
    after_scores = [[h.score for h in r] for r in after.search("sparse", q, 15)]
    assert after_scores == scores  # fixed quantization scale: merging changes no score
    assert sum(s.n_deleted for s in after.segments) < sum(s.n_deleted for s in before.segments)
    names = {p.name for p in (seg_index / "segments").iterdir()}
    assert names == {s.name for s in after.segments}  # merged-away folders are gone
    w.close()


def test_abandoned_writer_log_is_replayed_on_open(seg_index: Path) -> None:
    rng = np.random.default_rng(4)
    w = IndexWriter(seg_index, background_merges=False)
    w.upsert(["x1", "x2"], docs_for(["x1", "x2"]), random_vectors(rng, 2))
    w.delete(["d0"])
    w._lockfile.close()  # abandoned without refresh or close (a real kill -9: test_live.py)
    (seg_index / "wal" / ".0000000000000003.npz.tmp").write_bytes(b"torn")  # never renamed
    w2 = IndexWriter(seg_index, background_merges=False)
    snap = w2.snapshot
    assert snap.get_documents(["x1", "x2", "d0"])[:2] == docs_for(["x1", "x2"])
    assert snap.locate("d0") is None and snap.n_docs == 61
    assert not any((seg_index / "wal").iterdir())  # committed, log truncated
    w2.close()


def test_one_writer_at_a_time(seg_index: Path) -> None:
    w = IndexWriter(seg_index, background_merges=False)
    with pytest.raises(IndexLockedError, match="one writer at a time"):
        IndexWriter(seg_index)
    w.close()
    IndexWriter(seg_index).close()


def test_orphans_from_a_crash_are_swept(seg_index: Path) -> None:
    (seg_index / "segments" / "seg-000009").mkdir()
    (seg_index / "deletes").mkdir(exist_ok=True)
    (seg_index / "deletes" / "seg-000000.00000007.npy").write_bytes(b"x")
    IndexWriter(seg_index).close()
    assert not (seg_index / "segments" / "seg-000009").exists()
    assert not (seg_index / "deletes" / "seg-000000.00000007.npy").exists()


def test_bad_commit_is_a_clear_error(seg_index: Path) -> None:
    (seg_index / "commit-00000001.json").write_text("{not json")
    with pytest.raises(CorruptIndexError, match="commit point"):
        Snapshot.open(seg_index)


def test_upsert_rejects_bad_input(seg_index: Path) -> None:
    rng = np.random.default_rng(5)
    w = IndexWriter(seg_index, background_merges=False)
    with pytest.raises(ValueError, match="must match"):
        w.upsert(["a", "b"], docs_for(["a"]), random_vectors(rng, 2))
    with pytest.raises(ValueError, match="another encoder"):
        w.upsert(["a"], docs_for(["a"]), SparseVectors.from_rows([([1], [1.0])], VOCAB + 1))
    assert w.n_pending == 0 and not list((seg_index / "wal").glob("*.npz"))
    w.close()
