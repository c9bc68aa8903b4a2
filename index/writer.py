"""IndexWriter: durable upserts and deletes, refresh into new segments, background merges.

The life of a write: `upsert`/`delete` appends a write-ahead log record (index/wal.py) and
returns once it is fsynced: that is the acknowledgement. The write waits in memory until
`refresh`, which turns everything pending into one new segment plus updated deletion masks
and publishes them in one commit point (index/segments.py), then drops the log records the
commit holds. A crash loses nothing acknowledged: opening the writer replays the log.

Readers never wait for a write: they take `writer.snapshot`, an immutable view of one commit,
and the writer swaps in a new one after each commit. Merges build their segment outside the
lock from a snapshot and swap it in under the lock, carrying over deletes that happened
meanwhile. One writer per index: `write.lock` is held with flock for the writer's life.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from sparseretr.index.build import build_index
from sparseretr.index.dense import DenseIndex
from sparseretr.index.errors import SparseIndexError, UserInputError
from sparseretr.index.format import BM25_DIR, ENCODER_DIR, fsync_dir, tree_writer
from sparseretr.index.segments import (
    DELETES_DIR,
    LOCK_FILE,
    SEGMENTS_DIR,
    WAL_DIR,
    Segment,
    Snapshot,
    commit_name,
    list_commits,
    new_commit,
    open_segment,
    open_segments,
    read_commit,
    save_deletes,
    write_commit,
)
from sparseretr.index.vectors import SparseVectors
from sparseretr.index.wal import Record, read_record, record_seqs, truncate, write_record

log = logging.getLogger(__name__)


class IndexLockedError(SparseIndexError):
    """Another process (or writer) holds the index's write lock."""


class IndexWriter:
    """The single writer of a segmented index (see the module notes)."""

    def __init__(
        self,
        root: str | Path,
        *,
        dense: bool = True,
        max_segments: int = 8,
        merge_factor: int = 4,
        expunge_ratio: float = 0.3,
        background_merges: bool = True,
    ) -> None:
        if merge_factor < 2 or max_segments < 1 or not 0 < expunge_ratio <= 1:
            raise ValueError("need merge_factor >= 2, max_segments >= 1, 0 < expunge_ratio <= 1")
        self.root = Path(root)
        self.max_segments = max_segments
        self.merge_factor = merge_factor
        self.expunge_ratio = expunge_ratio
        self.background_merges = background_merges
        self._dense = dense
        self._lock = threading.RLock()
        self._merge_lock = threading.Lock()
        self._merge_thread: threading.Thread | None = None
        self._lockfile = _acquire(self.root)
        try:
            commit = read_commit(self.root)
            self._sweep(commit)
            segs = open_segments(self.root, commit, dense=dense)
            self._snapshot = Snapshot(self.root, segs, commit)
            self._next_segment = int(commit["next_segment"])
            self._committed_seq = int(commit["wal_seq"])
            self._seq = self._committed_seq
            # id -> (record, row) to add, or None to delete; last write wins.
            self._pending: dict[str, tuple[Record, int] | None] = {}
            self._replay()
        except BaseException:
            self._lockfile.close()
            raise

    # ------------------------------------------------------------ properties
    @property
    def snapshot(self) -> Snapshot:
        """The last committed view: what searches see."""
        return self._snapshot

    @property
    def n_pending(self) -> int:
        return len(self._pending)

    @property
    def wal_dir(self) -> Path:
        return self.root / WAL_DIR

    # ---------------------------------------------------------------- writes
    def upsert(
        self,
        ids: Sequence[str],
        docs: Sequence[dict[str, Any]],
        sparse: SparseVectors,
        *,
        bm25: SparseVectors | None = None,
        dense: np.ndarray | None = None,
    ) -> int:
        """Add or replace documents (already encoded); returns once durable. The write is
        searchable after the next refresh. Returns its sequence number."""
        ids = [str(i) for i in ids]
        self._check_upsert(ids, docs, sparse, bm25, dense)
        with self._lock:
            rec = Record(self._seq + 1, "upsert", ids, list(docs), sparse, bm25, dense)
            self._log(rec)
        return rec.seq

    def delete(self, ids: Sequence[str]) -> tuple[int, list[bool]]:
        """Delete documents by id; returns (sequence number, whether each one existed)."""
        ids = [str(i) for i in ids]
        with self._lock:
            found = [self._exists(i) for i in ids]
            present = [i for i, f in zip(ids, found, strict=True) if f]
            if not present:  # nothing to delete: nothing to make durable (answered 404)
                return self._seq, found
            rec = Record(self._seq + 1, "delete", present)
            self._log(rec)
        return rec.seq, found

    def get_pending(self, ext_id: str) -> tuple[bool, dict | None]:
        """(True, doc or None if deleted) when a write to ext_id awaits refresh, else
        (False, None): lets a GET see its own write before the refresh."""
        with self._lock:
            if ext_id not in self._pending:
                return False, None
            v = self._pending[ext_id]
            return True, None if v is None or v[0].docs is None else v[0].docs[v[1]]

    def refresh(self) -> Snapshot:
        """Commit everything pending: one new segment + deletion masks, then a new snapshot."""
        with self._lock:
            if self._pending:
                self._commit_pending()
            snap = self._snapshot
        self._maybe_merge()
        return snap

    def merge(self, names: Sequence[str] | None = None) -> bool:
        """Merge the given segments (default: what the merge policy picks) into one, dropping
        deleted documents; returns False when there was nothing to do."""
        with self._merge_lock:
            with self._lock:
                snap = self._snapshot
                picks = (
                    [s for s in snap.segments if s.name in set(names)]  # in segment order
                    if names is not None
                    else self._policy(snap)
                )
                if not picks:
                    return False
                name = self._new_name()
            seg = self._build_merged(name, picks)
            with self._lock:
                self._swap_merged(seg, picks)
        return True

    def wait_for_merges(self) -> None:
        t = self._merge_thread
        if t is not None:
            t.join()

    def close(self) -> None:
        """Commit what is pending, finish a running merge, release the lock."""
        try:
            self.refresh()
            self.wait_for_merges()
        finally:
            self._lockfile.close()

    # ------------------------------------------------------------- internals
    def _check_upsert(
        self,
        ids: list[str],
        docs: Sequence[dict[str, Any]],
        sparse: SparseVectors,
        bm25: SparseVectors | None,
        dense: np.ndarray | None,
    ) -> None:
        first = self._snapshot.first
        n = len(ids)
        if not n:
            raise UserInputError("no documents to upsert")
        if len(docs) != n or len(sparse) != n:
            raise ValueError(f"{n} ids, {len(docs)} docs and {len(sparse)} vectors must match")
        for i in ids:
            if not i or "\x00" in i:
                raise UserInputError(f"document ids must be non-empty and without NUL, got {i!r}")
        if sparse.vocab_size != first.sparse.vocab_size:
            raise ValueError("sparse vectors come from another encoder (vocabulary size differs)")
        if (bm25 is None) != (first.bm25 is None):
            raise ValueError("bm25 vectors are required exactly when the index has a bm25 side")
        if bm25 is not None and (len(bm25) != n or bm25.vocab_size != first.bm25.vocab_size):
            raise ValueError("bm25 vectors do not match the documents or the index")
        if (dense is None) != (first.dense is None) and self._dense:
            raise ValueError("dense vectors are required exactly when the index has a dense side")
        if dense is not None and first.dense is not None and dense.shape != (n, first.dense.dim):
            raise ValueError(f"dense vectors must be [{n}, {first.dense.dim}]")
        for v in (sparse, bm25):
            if v is not None and v.nnz and (not np.all(np.isfinite(v.data)) or v.data.min() <= 0):
                raise ValueError("document weights must be finite and > 0")

    def _log(self, rec: Record) -> None:
        """Durable first, then visible to the next refresh (caller holds the lock)."""
        self.wal_dir.mkdir(exist_ok=True)
        write_record(self.wal_dir, rec)
        self._seq = rec.seq
        self._apply(rec)

    def _apply(self, rec: Record) -> None:
        for row, i in enumerate(rec.ids):
            self._pending.pop(i, None)  # re-insert: pending keeps the latest write's order
            self._pending[i] = (rec, row) if rec.op == "upsert" else None

    def _exists(self, ext_id: str) -> bool:
        if ext_id in self._pending:
            return self._pending[ext_id] is not None
        return self._snapshot.locate(ext_id) is not None

    def _replay(self) -> None:
        """Re-apply logged writes no commit holds (after a crash), then commit them."""
        seqs = [s for s in record_seqs(self.wal_dir) if s > self._committed_seq]
        for s in seqs:
            rec = read_record(self.wal_dir / f"{s:016d}.npz")
            self._apply(rec)
            self._seq = rec.seq
        if seqs:
            log.info("replayed %d write-ahead log records into %s", len(seqs), self.root)
            self.refresh()

    def _new_name(self) -> str:
        name = f"seg-{self._next_segment:06d}"
        self._next_segment += 1
        return name

    def _commit_pending(self) -> None:
        snap = self._snapshot
        gen = snap.generation + 1
        segs = list(snap.segments)
        touched = list(self._pending)
        for si, seg in enumerate(segs):
            hits = [j for i in touched if (j := seg.live_internal(i)) is not None]
            if hits:
                dead = seg.dead.copy()
                dead[hits] = 1
                segs[si] = seg.with_dead(dead, save_deletes(self.root, seg.name, gen, dead))
        adds = [(i, v) for i, v in self._pending.items() if v is not None]
        if adds:
            ids = [i for i, _ in adds]
            recs = [v for _, v in adds]
            r0 = recs[0][0]
            segs.append(
                self._build_segment(
                    self._new_name(),
                    ids,
                    [r.docs[j] if r.docs else {"id": i} for i, (r, j) in zip(ids, recs)],  # noqa: B905
                    _stack_sparse([(r.sparse, j) for r, j in recs]),
                    _stack_sparse([(r.bm25, j) for r, j in recs]) if r0.bm25 else None,
                    np.stack([r.dense[j] for r, j in recs]) if r0.dense is not None else None,
                )
            )
        segs = _drop_empty(segs)
        self._publish(segs, gen, self._seq)
        self._pending.clear()
        self._committed_seq = self._seq
        truncate(self.wal_dir, self._committed_seq)

    def _publish(self, segs: list[Segment], gen: int, wal_seq: int) -> None:
        """Write the commit point for segs and make it the snapshot; retire what it dropped."""
        old = self._snapshot
        commit = new_commit(
            gen, [s.record() for s in segs], self._next_segment, wal_seq, old.commit["scales"]
        )
        write_commit(self.root, commit)
        self._snapshot = Snapshot(self.root, segs, commit)
        self._retire(old, self._snapshot)

    def _build_segment(
        self,
        name: str,
        ids: list[str],
        docs: list[dict[str, Any]],
        sparse: SparseVectors,
        bm25: SparseVectors | None,
        dense: np.ndarray | None,
    ) -> Segment:
        """Write a segment like the first one: same encoders, quantization scales, companions."""
        first = self._snapshot.first
        scales = self._snapshot.commit["scales"]
        extras: dict[str, Any] = {ENCODER_DIR: tree_writer(first.sparse.encoder_dir)}
        if bm25 is not None and first.bm25 is not None:
            b = first.bm25

            def write_bm25(folder: Path) -> None:
                build_index(
                    folder, ids, bm25, encoder_config=b.encoder_config,
                    extras={ENCODER_DIR: tree_writer(b.encoder_dir)}, overwrite=True,
                    scale=scales.get("bm25"), block_size=b.block_size,
                )  # fmt: skip

            extras[BM25_DIR] = write_bm25
        if dense is not None and first.dense is not None:
            extras["dense"] = DenseIndex.writer(
                dense, first.dense.encoder_config, kind=first.dense.kind
            )
        folder = self.root / SEGMENTS_DIR / name
        build_index(
            folder, ids, sparse, encoder_config=first.sparse.encoder_config, extras=extras,
            docs=docs, scale=scales.get("sparse"), block_size=first.sparse.block_size,
            build_info={"segment": name},
        )  # fmt: skip
        return open_segment(folder, name, dense=self._dense)

    def _policy(self, snap: Snapshot) -> list[Segment]:
        """Past max_segments, merge the merge_factor adjacent segments with the fewest live
        docs (adjacent, as in Lucene's log merge policy: documents keep their order, so even
        ties rank the same after a merge); otherwise rewrite the segment with the largest
        share of deleted docs once it passes expunge_ratio, so deletes stop costing search
        time and disk."""
        segs = list(snap.segments)
        if len(segs) > self.max_segments:
            f = min(self.merge_factor, len(segs))
            start = min(
                range(len(segs) - f + 1), key=lambda a: sum(s.n_live for s in segs[a : a + f])
            )
            return segs[start : start + f]
        worst = max(segs, key=lambda s: s.n_deleted / max(s.n_docs, 1), default=None)
        if worst is not None and worst.n_deleted >= self.expunge_ratio * max(worst.n_docs, 1):
            return [worst]
        return []

    def _maybe_merge(self) -> None:
        if not self.background_merges:
            return
        with self._lock:
            running = self._merge_thread is not None and self._merge_thread.is_alive()
            if running or not self._policy(self._snapshot):
                return
            self._merge_thread = threading.Thread(
                target=self._merge_in_background, name="sparseretr-merge", daemon=True
            )
            self._merge_thread.start()

    def _merge_in_background(self) -> None:
        try:
            while self.merge():
                pass
        except Exception:  # a failed merge loses nothing: the segments it read stay live
            log.exception("background merge of %s failed", self.root)

    def _build_merged(self, name: str, picks: list[Segment]) -> Segment:
        """One segment from the live docs of picks, impacts unchanged (fixed scales)."""
        ids: list[str] = []
        docs: list[dict[str, Any]] = []
        sparse, bm25, dense = [], [], []
        for seg in picks:
            live = np.flatnonzero(seg.dead == 0)
            seg_ids = [str(i) for i in seg.sparse.doc_ids(live)]
            ids += seg_ids
            store = seg.sparse.docstore
            got = store.get_many(seg_ids) if store is not None else [None] * len(seg_ids)
            docs += [d if d is not None else {"id": i} for i, d in zip(seg_ids, got, strict=True)]
            sparse.append(seg.sparse.doc_vectors(live))
            if seg.bm25 is not None:
                bm25.append(seg.bm25.doc_vectors(live))
            if seg.dense is not None:
                dense.append(np.asarray(seg.dense.vectors[live]))
        first = self._snapshot.first
        return self._build_segment(
            name,
            ids,
            docs,
            SparseVectors.concat(sparse),
            SparseVectors.concat(bm25) if first.bm25 is not None else None,
            np.concatenate(dense) if first.dense is not None and self._dense else None,
        )

    def _swap_merged(self, seg: Segment, picks: list[Segment]) -> None:
        """Replace picks by seg in the current commit, with deletes made during the merge."""
        cur = self._snapshot
        by_name = {s.name: s for s in cur.segments}
        dead = np.zeros(seg.n_docs, dtype=np.uint8)
        pos = 0
        for p in picks:
            live = np.flatnonzero(p.dead == 0)
            now = by_name.get(p.name)
            dead[pos : pos + live.size] = 1 if now is None else now.dead[live]
            pos += live.size
        gen = cur.generation + 1
        rel = save_deletes(self.root, seg.name, gen, dead) if dead.any() else None
        picked = {p.name for p in picks}
        segs, placed = [], False
        for s in cur.segments:
            if s.name in picked:
                if not placed:
                    segs.append(seg.with_dead(dead, rel))
                    placed = True
                continue
            segs.append(s)
        if not placed:
            segs.append(seg.with_dead(dead, rel))
        self._publish(_drop_empty(segs), gen, int(cur.commit["wal_seq"]))

    def _retire(self, old: Snapshot, new: Snapshot) -> None:
        """Delete what the new commit no longer names. Readers holding the old snapshot keep
        working: its files stay mapped (and its SQLite handles open) until they let go."""
        keep = {s.name for s in new.segments}
        for s in old.segments:
            if s.name not in keep:
                shutil.rmtree(self.root / SEGMENTS_DIR / s.name, ignore_errors=True)
        keep_del = {s.deletes_file for s in new.segments}
        for s in old.segments:
            if s.deletes_file and s.deletes_file not in keep_del:
                (self.root / s.deletes_file).unlink(missing_ok=True)
        for g in list_commits(self.root):
            if g < new.generation:
                (self.root / commit_name(g)).unlink(missing_ok=True)

    def _sweep(self, commit: dict[str, Any]) -> None:
        """At open: remove what no commit names (a crash mid-refresh or mid-merge)."""
        names = {s["name"] for s in commit["segments"]}
        dels = {s["deletes"] for s in commit["segments"] if s.get("deletes")}
        seg_dir = self.root / SEGMENTS_DIR
        for p in seg_dir.iterdir() if seg_dir.is_dir() else []:
            if p.name not in names:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        del_dir = self.root / DELETES_DIR
        for p in del_dir.iterdir() if del_dir.is_dir() else []:
            if f"{DELETES_DIR}/{p.name}" not in dels:
                p.unlink(missing_ok=True)
        for g in list_commits(self.root)[1:]:
            (self.root / commit_name(g)).unlink(missing_ok=True)
        for p in self.root.iterdir():
            if p.name.startswith(".commit-"):
                p.unlink(missing_ok=True)
        fsync_dir(self.root)


def _acquire(root: Path) -> TextIO:
    if not root.is_dir():
        read_commit(root)  # the clear "no index here" error
    f = open(root / LOCK_FILE, "a+")  # noqa: SIM115 - held for the writer's life
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
        f.close()
        raise IndexLockedError(
            f"{root} is open for writing elsewhere (write.lock is held); one writer at a time"
        ) from e
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def _stack_sparse(rows: list[tuple[SparseVectors | None, int]]) -> SparseVectors:
    first = rows[0][0]
    assert first is not None
    return SparseVectors.from_rows([v.row(j) for v, j in rows if v is not None], first.vocab_size)


def _drop_empty(segs: list[Segment]) -> list[Segment]:
    """Segments with no live document are dropped, except the last one left (it carries the
    encoder state and scales new segments are built from)."""
    kept = [s for s in segs if s.n_live > 0]
    return kept or segs[-1:]
