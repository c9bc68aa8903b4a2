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

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sparseretr.index.errors import UserInputError
from sparseretr.index.housekeeping import (
    IndexLockedError,
    acquire_lock,
    drop_empty,
    retire,
    sweep_orphans,
)
from sparseretr.index.merge_policy import pick_merge
from sparseretr.index.segment_builder import build_merged, build_segment, build_split, stack_rows
from sparseretr.index.segments import (
    SIDES,
    WAL_DIR,
    Segment,
    Snapshot,
    Vocab,
    new_commit,
    open_segments,
    read_commit,
    save_deletes,
    write_commit,
)
from sparseretr.index.vectors import SparseVectors
from sparseretr.index.wal import Record, read_record, record_seqs, truncate, write_record

log = logging.getLogger(__name__)

__all__ = ["IndexLockedError", "IndexWriter"]


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
        self._lockfile = acquire_lock(self.root)
        try:
            commit = read_commit(self.root)
            sweep_orphans(self.root, commit)
            segs = open_segments(self.root, commit, dense=dense)
            self._snapshot = Snapshot(self.root, segs, commit)
            # Vocabularies (a lexical encoder's grow with writes): as the last commit holds
            # them, and with the pending writes.
            self._committed_vocab = {
                side: self._snapshot.vocab(side) for side in SIDES if self._snapshot.has_side(side)
            }
            self._vocab = dict(self._committed_vocab)
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

    def vocab(self, side: str) -> Vocab:
        """A side's vocabulary with every acknowledged write, committed or pending."""
        return self._vocab[side]

    # ---------------------------------------------------------------- writes
    def upsert(
        self,
        ids: Sequence[str],
        docs: Sequence[dict[str, Any]],
        sparse: SparseVectors,
        *,
        bm25: SparseVectors | None = None,
        dense: np.ndarray | None = None,
        new_terms: Mapping[str, Sequence[str]] | None = None,
    ) -> int:
        """Add or replace documents (already encoded); returns once durable. The write is
        searchable after the next refresh. Returns its sequence number.

        new_terms: per side ("sparse", "bm25"), the words this write's vectors use for the
        first time, in the order of the ids they took (from vocab(side).size on: a lexical
        encoder's new words); logged with the write, so a crash never leaves an id without
        its word. Vectors of every side must span exactly the grown vocabulary."""
        ids = [str(i) for i in ids]
        self._check_upsert(ids, docs, sparse, bm25, dense)
        added = {side: list(w) for side, w in (new_terms or {}).items() if w}
        with self._lock:
            for side, v in (("sparse", sparse), ("bm25", bm25)):
                if v is None:
                    if side in added:
                        raise ValueError(f"new {side} terms without {side} vectors")
                    continue
                have = self._vocab[side].size
                if v.vocab_size != have + len(added.get(side, ())):
                    raise ValueError(
                        f"{side} vectors span {v.vocab_size} terms; the index holds {have} and "
                        f"this write adds {len(added.get(side, ()))}: another encoder?"
                    )
            rec = Record(
                self._seq + 1, "upsert", ids, list(docs), sparse, bm25, dense, added or None
            )
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
            seg = build_merged(snap, name, picks, open_dense=self._dense)
            with self._lock:
                self._swap_merged(seg, picks)
        return True

    def split(self, n_segments: int) -> Snapshot:
        """Rewrite the live documents as n_segments segments of near-equal size, in document
        order, scores unchanged (the scales are fixed): the units a sharded deployment spreads
        over its shard servers (sparseretr.cluster). Pending writes are committed first;
        writes wait while it runs."""
        if isinstance(n_segments, bool) or not 1 <= n_segments <= self.max_segments:
            raise UserInputError(
                f"segments must be 1..{self.max_segments} (more would be merged back by the "
                f"merge policy), got {n_segments!r}"
            )
        with self._merge_lock, self._lock:
            if self._pending:
                self._commit_pending()
            snap = self._snapshot
            names = [self._new_name() for _ in range(n_segments)]
            parts = build_split(snap, names, list(snap.segments), open_dense=self._dense)
            self._publish(drop_empty(parts), snap.generation + 1, int(snap.commit["wal_seq"]))
            return self._snapshot

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
        if (bm25 is None) != (first.bm25 is None):
            raise ValueError("bm25 vectors are required exactly when the index has a bm25 side")
        if bm25 is not None and len(bm25) != n:
            raise ValueError("bm25 vectors do not match the documents")
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
        for side, words in (rec.new_terms or {}).items():
            self._vocab[side] = self._vocab[side].grown(words)
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
            bm25 = None
            if r0.bm25 is not None:
                bm25 = stack_rows([(r.bm25, j) for r, j in recs], self._vocab["bm25"].size)
            segs.append(
                build_segment(
                    snap,
                    self._new_name(),
                    ids,
                    [r.docs[j] if r.docs else {"id": i} for i, (r, j) in zip(ids, recs)],  # noqa: B905
                    stack_rows([(r.sparse, j) for r, j in recs], self._vocab["sparse"].size),
                    bm25,
                    np.stack([r.dense[j] for r, j in recs]) if r0.dense is not None else None,
                    open_dense=self._dense,
                )
            )
        segs = drop_empty(segs)
        self._committed_vocab = dict(self._vocab)  # every pending write is in this commit
        self._publish(segs, gen, self._seq)
        self._pending.clear()
        self._committed_seq = self._seq
        truncate(self.wal_dir, self._committed_seq)

    def _publish(self, segs: list[Segment], gen: int, wal_seq: int) -> None:
        """Write the commit point for segs and make it the snapshot; retire what it dropped."""
        old = self._snapshot
        commit = new_commit(
            gen, [s.record() for s in segs], self._next_segment, wal_seq, old.commit["scales"],
            self._committed_vocab,
        )  # fmt: skip
        write_commit(self.root, commit)
        self._snapshot = Snapshot(self.root, segs, commit)
        retire(self.root, old, self._snapshot)

    def _policy(self, snap: Snapshot) -> list[Segment]:
        return pick_merge(
            snap.segments, max_segments=self.max_segments, merge_factor=self.merge_factor,
            expunge_ratio=self.expunge_ratio,
        )  # fmt: skip

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
        self._publish(drop_empty(segs), gen, int(cur.commit["wal_seq"]))
