"""Segmented index: immutable segments plus deletion masks, named by one commit point.

Layout of a segmented index folder:

    commit-<gen>.json          commit points; the highest generation is the index
    segments/<name>/           one immutable v2 index each (index/build.py): postings, ids,
                               doc store, encoder/, and the optional dense/ and bm25/ sides
    deletes/<name>.<gen>.npy   uint8 [n_docs] deletion mask of a segment, as of commit <gen>
    wal/                       acknowledged writes not yet in a commit (index/wal.py)
    write.lock                 held by the one process that writes (index/writer.py)

Why segments: a write never rewrites what is already on disk. New documents become a new
small segment, a delete only flips a bit in a mask, and a merge writes a new segment from
old ones. The commit point is written to a temporary file, fsynced and renamed, so a reader
sees one whole commit or the previous one, and a crash at any moment leaves a valid index;
files no commit names (a half-built segment) are swept when a writer opens it.

Ranking across segments: each segment's exact top-k of its live documents (the kernels skip
deleted ones), merged by score, ties by segment order then internal id, so the result is the
exact top-k of the live collection (brute_force checks it).

A plain v2 index folder (manifest.json at its root, as `build_index` writes) opens as a
read-only snapshot of one segment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sparseretr.index.build import build_index, refuse_existing, swap_into_place
from sparseretr.index.dense import DENSE_DIR, DenseIndex
from sparseretr.index.errors import (
    CorruptIndexError,
    IndexNotFoundError,
    IndexVersionError,
    UserInputError,
)
from sparseretr.index.format import BM25_DIR, MANIFEST, fsync_dir, fsync_file
from sparseretr.index.sparse_index import SparseIndex
from sparseretr.index.vectors import SparseVectors
from sparseretr.index.versioned_json import VersionedJson

SEGMENTS_FORMAT = "sparseretr-segments"
SEGMENTS_VERSION = 1
SEGMENTS_DIR = "segments"
DELETES_DIR = "deletes"
WAL_DIR = "wal"
LOCK_FILE = "write.lock"
_COMMIT_RE = re.compile(r"^commit-(\d{8})\.json$")
SIDES = ("sparse", "bm25")


_COMMIT_JSON = VersionedJson(
    SEGMENTS_FORMAT, SEGMENTS_VERSION, "commit point", invalid=CorruptIndexError,
    foreign=CorruptIndexError, outdated=IndexVersionError,
)  # fmt: skip


def commit_name(gen: int) -> str:
    return f"commit-{gen:08d}.json"


def is_segmented(root: str | Path) -> bool:
    """True when `root` holds commit points (a writable, segmented index)."""
    root = Path(root)
    return root.is_dir() and any(_COMMIT_RE.match(p.name) for p in root.iterdir())


def list_commits(root: Path) -> list[int]:
    """Generations of the commit files in root, highest first."""
    gens = [int(m.group(1)) for p in root.iterdir() if (m := _COMMIT_RE.match(p.name))]
    return sorted(gens, reverse=True)


def read_commit(root: Path) -> dict[str, Any]:
    """The current (highest) commit point, validated; clear errors for each way it can fail."""
    if not root.is_dir():
        raise IndexNotFoundError(f"no index at {root}: build one with `sparseretr index build`")
    gens = list_commits(root)
    if not gens:
        raise IndexNotFoundError(f"{root} holds no commit point (commit-*.json)")
    path = root / commit_name(gens[0])
    commit = _COMMIT_JSON.read(path)
    try:
        segs = commit["segments"]
        for s in segs:
            str(s["name"]), int(s["n_docs"]), int(s["n_deleted"])
        int(commit["generation"]), int(commit["next_segment"]), int(commit["wal_seq"])
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptIndexError(f"{path}: malformed commit point ({e})") from e
    return commit


def write_commit(root: Path, commit: dict[str, Any]) -> Path:
    """Durably publish a commit point: temp file, fsync, rename, fsync the folder."""
    gen = int(commit["generation"])
    path = root / commit_name(gen)
    tmp = root / f".{path.name}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(commit, indent=2, sort_keys=True), encoding="utf-8")
    fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(root)
    return path


def new_commit(gen: int, segments: list[dict[str, Any]], next_segment: int, wal_seq: int,
               scales: dict[str, float | None],
               vocab: dict[str, Vocab] | None = None) -> dict[str, Any]:  # fmt: skip
    """vocab: per side whose vocabulary live writes grow (BM25's), the first build's size and
    the words appended since, in id order (see IndexWriter.upsert)."""
    return {
        "format": SEGMENTS_FORMAT,
        "format_version": SEGMENTS_VERSION,
        "generation": gen,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "segments": segments,
        "next_segment": next_segment,
        "wal_seq": wal_seq,
        "scales": scales,
        "vocab": {k: {"base": v.base, "added": list(v.added)} for k, v in (vocab or {}).items()},
    }


@dataclass(frozen=True)
class Vocab:
    """A side's term ids: [0, base) from the first build's encoder, then `added` in order."""

    base: int
    added: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return self.base + len(self.added)

    def grown(self, words: Sequence[str]) -> Vocab:
        return Vocab(self.base, (*self.added, *words))


@dataclass(frozen=True)
class Segment:
    """One immutable segment and its deletion mask as of a commit."""

    name: str
    sparse: SparseIndex
    bm25: SparseIndex | None
    dense: DenseIndex | None
    dead: np.ndarray  # uint8 [n_docs], read-only; 1 = deleted
    n_deleted: int
    deletes_file: str | None

    @property
    def n_docs(self) -> int:
        return self.sparse.n_docs

    @property
    def n_live(self) -> int:
        return self.n_docs - self.n_deleted

    def side(self, side: str) -> SparseIndex:
        index = self.sparse if side == "sparse" else self.bm25
        if index is None:
            raise ValueError(f"segment {self.name} has no {side} side")
        return index

    def live_internal(self, ext_id: str) -> int | None:
        i = self.sparse.internal_id(ext_id)
        return None if i is None or self.dead[i] else i

    def with_dead(self, dead: np.ndarray, deletes_file: str | None) -> Segment:
        dead = np.ascontiguousarray(dead, dtype=np.uint8)
        dead.setflags(write=False)
        return Segment(
            self.name, self.sparse, self.bm25, self.dense, dead, int(dead.sum()), deletes_file
        )

    def record(self) -> dict[str, Any]:
        """This segment's entry in a commit point."""
        return {
            "name": self.name,
            "n_docs": self.n_docs,
            "n_deleted": self.n_deleted,
            "deletes": self.deletes_file,
        }


def open_segment(folder: Path, name: str, *, dense: bool = True) -> Segment:
    """Open one segment folder (v2 index + optional companions), nothing deleted yet."""
    sparse = SparseIndex.open(folder)
    try:
        bm25 = SparseIndex.open(folder / BM25_DIR) if (folder / BM25_DIR).is_dir() else None
        if bm25 is not None and bm25.n_docs != sparse.n_docs:
            raise CorruptIndexError(f"{folder}: {BM25_DIR}/ holds another number of docs")
        dn = None
        if dense and (folder / DENSE_DIR).is_dir():
            dn = DenseIndex.open(folder / DENSE_DIR, n_docs=sparse.n_docs)
    except BaseException:
        sparse.close()
        raise
    dead = np.zeros(sparse.n_docs, dtype=np.uint8)
    dead.setflags(write=False)
    return Segment(name, sparse, bm25, dn, dead, 0, None)


def load_deletes(root: Path, entry: dict[str, Any], n_docs: int) -> np.ndarray:
    rel = entry.get("deletes")
    if not rel:
        return np.zeros(n_docs, dtype=np.uint8)
    path = root / rel
    try:
        dead = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise CorruptIndexError(f"{path}: unreadable deletion mask ({e})") from e
    if dead.dtype != np.uint8 or dead.shape != (n_docs,) or int(dead.sum()) != entry["n_deleted"]:
        raise CorruptIndexError(f"{path}: deletion mask does not match its commit entry")
    return dead


def save_deletes(root: Path, name: str, gen: int, dead: np.ndarray) -> str:
    rel = f"{DELETES_DIR}/{name}.{gen:08d}.npy"
    path = root / rel
    path.parent.mkdir(exist_ok=True)
    np.save(path, np.ascontiguousarray(dead, dtype=np.uint8), allow_pickle=False)
    fsync_file(path)
    return rel


@dataclass
class SegHit:
    id: str
    score: float
    segment: int
    internal: int


@dataclass
class Run:
    """One segment's top-k per query as its kernel returned it (unmerged)."""

    segment: int  # position in the commit
    internal: np.ndarray  # int [nq, k]; -1 where there is no hit
    scores: np.ndarray  # float [nq, k]
    ids: np.ndarray  # external ids, utf-8 bytes [nq, k] (meaningless where internal is -1)


def merge_runs(runs: Sequence[Run], nq: int, k: int) -> list[list[SegHit]]:
    """The top-k per query over several segments' runs, ordered by score (descending), then
    segment position, then internal id: the same order wherever the runs were computed (one
    process, or shard servers), so a sharded search returns exactly this."""
    # Rows go through tolist() (one call per row) and never through numpy scalars, which cost
    # microseconds each: at k=1000 indexing them one by one took far longer than the search.
    if len(runs) == 1:  # one segment: the kernel's order already (ties by internal id)
        r = runs[0]
        seg = r.segment
        return [
            [
                SegHit(d.decode("utf-8"), s, seg, i)
                for d, s, i in zip(
                    r.ids[q].tolist(), r.scores[q].tolist(), r.internal[q].tolist(), strict=True
                )
                if i >= 0
            ][:k]
            for q in range(nq)
        ]
    out: list[list[SegHit]] = [[] for _ in range(nq)]
    if not runs or nq == 0:
        return out
    internal = np.concatenate([np.asarray(r.internal, dtype=np.int64) for r in runs], axis=1)
    scores = np.concatenate([np.asarray(r.scores, dtype=np.float32) for r in runs], axis=1)
    pos = np.concatenate([np.full(np.shape(r.internal), r.segment, np.int64) for r in runs], 1)
    ids = np.concatenate([r.ids for r in runs], axis=1)
    key = np.where(internal >= 0, -scores.astype(np.float64), np.inf)  # no hit: last
    order = np.lexsort((internal, pos, key), axis=-1)[:, :k]
    for q in range(nq):
        o = order[q]
        rows = zip(ids[q, o].tolist(), scores[q, o].tolist(), pos[q, o].tolist(),
                   internal[q, o].tolist(), strict=True)  # fmt: skip
        hits = out[q]
        for d, s, p, i in rows:
            if i < 0:
                break
            hits.append(SegHit(d.decode("utf-8"), s, p, i))
    return out


class Snapshot:
    """What a reader sees: the segments of one commit with their deletion masks. Immutable;
    a writer publishes a new Snapshot after each commit and readers keep theirs until done."""

    def __init__(self, root: Path, segments: Sequence[Segment], commit: dict[str, Any] | None):
        self.root = root
        self.segments = tuple(segments)
        self.commit = commit
        self.generation = int(commit["generation"]) if commit else 0
        self._cache: dict[str, Any] = {}  # derived, per snapshot (immutable, so never stale)

    @classmethod
    def open(
        cls, path: str | Path, *, dense: bool = True, segments: Sequence[str] | None = None
    ) -> Snapshot:
        """Open the current commit of a segmented index, or a plain v2 index read-only.

        segments: only these (by name, kept in commit order), the share of one shard server;
        its statistics (doc_freqs) then cover those segments only."""
        root = Path(path)
        if (root / MANIFEST).is_file() and not is_segmented(root):
            if segments is not None and list(segments) != ["."]:
                raise UserInputError(f"{root} is a plain index folder: it has no segments")
            return cls(root, [open_segment(root, ".", dense=dense)], None)
        commit = read_commit(root)
        if segments is not None:
            names = {e["name"] for e in commit["segments"]}
            missing = sorted(set(segments) - names)
            if missing:
                raise UserInputError(
                    f"{root}: its current commit (generation {commit['generation']}) has no "
                    f"segment {missing[0]}; it holds {sorted(names)}"
                )
            keep = set(segments)
            commit = {**commit, "segments": [e for e in commit["segments"] if e["name"] in keep]}
        return cls(root, open_segments(root, commit, dense=dense), commit)

    @property
    def writable(self) -> bool:
        return self.commit is not None

    @property
    def first(self) -> Segment:
        if not self.segments:
            raise IndexNotFoundError(f"{self.root}: the index holds no segment")
        return self.segments[0]

    @property
    def n_docs(self) -> int:
        """Live documents."""
        return sum(s.n_live for s in self.segments)

    @property
    def n_postings(self) -> int:
        return sum(s.sparse.n_postings for s in self.segments)

    def has_side(self, side: str) -> bool:
        if side == "dense":
            return bool(self.segments) and all(s.dense is not None for s in self.segments)
        if side == "bm25":
            return bool(self.segments) and all(s.bm25 is not None for s in self.segments)
        return True

    def vocab(self, side: str) -> Vocab:
        """A side's vocabulary as of this commit: the first build's size and the words live
        writes appended since (their ids follow on); the side's encoder extends itself with
        them at open. Commits from before vocabularies grew: the segments' own size."""
        entry = ((self.commit or {}).get("vocab") or {}).get(side)
        if entry is not None:
            return Vocab(int(entry["base"]), tuple(entry["added"]))
        sizes = [seg.side(side).vocab_size for seg in self.segments]
        return Vocab(max(sizes, default=0), ())

    def doc_freqs(self, side: str) -> tuple[np.ndarray, int]:
        """(documents holding each term id, documents) over every segment, deleted documents
        included until a merge drops them, as Lucene counts: the statistics a side whose
        weights depend on the collection (BM25's IDF) reads at query time."""
        key = f"df:{side}"
        got = self._cache.get(key)
        if got is None:
            idx = [seg.side(side) for seg in self.segments]
            df = np.zeros(max((i.vocab_size for i in idx), default=0), dtype=np.int64)
            for i in idx:
                df[: i.vocab_size] += i.doc_freqs()
            got = self._cache[key] = (df, sum(i.n_docs for i in idx))
        return got

    def summary(self) -> dict[str, int]:
        """Counts the service reports: segments, deleted documents, dense rows."""
        return {
            "segments": len(self.segments),
            "deleted_docs": sum(s.n_deleted for s in self.segments),
            "dense_docs": sum(s.dense.n for s in self.segments if s.dense is not None),
        }

    def term_weights(self, side: str, segment: int, internal: int, terms: np.ndarray) -> np.ndarray:
        """A hit's stored weights for these term ids (0 where it has none; ids past the
        segment's vocabulary, words added after it was written, read as 0)."""
        index = self.segments[segment].side(side)
        terms = np.asarray(terms)
        out = np.zeros(terms.size, dtype=np.float32)
        known = terms < index.vocab_size
        out[known] = index.term_weights(internal, terms[known])
        return out

    # ---------------------------------------------------------------- search
    def search(self, side: str, queries: SparseVectors, k: int, **knobs: Any) -> list[list[SegHit]]:
        """Exact top-k of the live documents per query (side "sparse" or "bm25"). Segments
        written before a live write grew the vocabulary skip the words they cannot hold."""
        return merge_runs(self.runs(side, queries, k, **knobs), len(queries), k)

    def brute_force(self, side: str, queries: SparseVectors, k: int) -> list[list[SegHit]]:
        """The same result as search() from scipy products: the reference it is checked on."""
        return merge_runs(self.runs(side, queries, k, brute_force=True), len(queries), k)

    def search_dense(self, queries: np.ndarray, k: int) -> list[list[SegHit]]:
        """Top-k by inner product over every segment's dense side, deleted docs left out."""
        return merge_runs(self.runs("dense", queries, k), len(queries), k)

    def runs(
        self, side: str, queries: Any, k: int, *, brute_force: bool = False, **knobs: Any
    ) -> list[Run]:
        """Each segment's own top-k per query, unmerged (merge_runs merges them): side
        "sparse" or "bm25" (SparseVectors; the kernel, or scipy with brute_force) or "dense"
        (rows). A shard server sends these to its router."""
        out = []
        for si, seg in enumerate(self.segments):
            dead = seg.dead if seg.n_deleted else None
            if side == "dense":
                assert seg.dense is not None
                ids, scores = seg.dense.search(queries, k + seg.n_deleted)
                if seg.n_deleted:
                    gone = (ids >= 0) & (seg.dead[np.maximum(ids, 0)] == 1)
                    ids = np.where(gone, -1, ids)
            else:
                index = seg.side(side)
                q = queries.below(index.vocab_size)
                if brute_force:
                    ids, scores = index.brute_force(q, k, dead=dead)
                else:
                    ids, scores = index.search(q, k, dead=dead, **knobs)
            out.append(Run(si, ids, scores, seg.sparse.raw_doc_ids(ids)))
        return out

    # ------------------------------------------------------------- documents
    def locate(self, ext_id: str) -> tuple[int, int] | None:
        """(segment position, internal id) of the live copy of a document, or None."""
        for si in range(len(self.segments) - 1, -1, -1):
            i = self.segments[si].live_internal(ext_id)
            if i is not None:
                return si, i
        return None

    def get_documents(self, ids: Sequence[str]) -> list[dict | None]:
        """Stored fields of live documents (None where absent, deleted or not stored)."""
        return [doc for _, doc in self.located_documents(ids)]

    def located_documents(self, ids: Sequence[str]) -> list[tuple[int, dict | None]]:
        """Per id: (segment position of its live copy, stored fields), or (-1, None)."""
        out: list[tuple[int, dict | None]] = []
        for ext in ids:
            loc = self.locate(ext)
            store = self.segments[loc[0]].sparse.docstore if loc else None
            doc = store.get(ext) if store is not None else None
            out.append((loc[0] if loc else -1, doc))
        return out

    def close(self) -> None:
        for s in self.segments:
            s.sparse.close()
            if s.bm25 is not None:
                s.bm25.close()


def open_segments(
    root: Path,
    commit: dict[str, Any],
    *,
    dense: bool = True,
    reuse: dict[str, Segment] | None = None,
) -> list[Segment]:
    """The commit's segments, reusing already open ones by name (only the masks change)."""
    out = []
    for entry in commit["segments"]:
        name = entry["name"]
        seg = (reuse or {}).get(name) or open_segment(root / SEGMENTS_DIR / name, name, dense=dense)
        if seg.n_docs != int(entry["n_docs"]):
            raise CorruptIndexError(f"{root}: segment {name} does not match its commit entry")
        dead = load_deletes(root, entry, seg.n_docs)
        out.append(seg.with_dead(dead, entry.get("deletes")))
    return out


FIRST_SEGMENT = "seg-000000"


def write_first_commit(root: Path) -> None:
    """Commit generation 1 naming root/segments/seg-000000, whose quantization scales become
    the index's: every later segment and merge reuses them."""
    seg = open_segment(root / SEGMENTS_DIR / FIRST_SEGMENT, FIRST_SEGMENT, dense=False)
    scales = {"sparse": seg.sparse.scale, "bm25": seg.bm25.scale if seg.bm25 else None}
    seg.sparse.close()
    if seg.bm25 is not None:
        seg.bm25.close()
    write_commit(root, new_commit(1, [seg.record()], 1, 0, scales))


def build_segmented(
    out_dir: str | Path,
    doc_ids: Sequence[str],
    vectors: SparseVectors,
    *,
    overwrite: bool = False,
    **build_options: Any,
) -> Path:
    """A new segmented index whose first segment is build_index(doc_ids, vectors, ...).

    The whole folder (segment + first commit point) is built beside the target and renamed
    into place, so an interrupted build leaves no half index.
    """
    target = Path(out_dir).absolute()
    refuse_existing(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        build_index(tmp / SEGMENTS_DIR / FIRST_SEGMENT, doc_ids, vectors, **build_options)
        write_first_commit(tmp)
        swap_into_place(tmp, target, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
