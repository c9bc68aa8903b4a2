"""The files around a writer's commits: its lock, and removing what no commit names.

Why apart from the writer: none of this decides what a commit holds, only which files may
go once one is published (or after a crash left some behind).
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import Any, TextIO

from sparseretr.index.errors import SparseIndexError
from sparseretr.index.format import fsync_dir
from sparseretr.index.segments import (
    DELETES_DIR,
    LOCK_FILE,
    SEGMENTS_DIR,
    Segment,
    Snapshot,
    commit_name,
    list_commits,
    read_commit,
)


class IndexLockedError(SparseIndexError):
    """Another process (or writer) holds the index's write lock."""


def acquire_lock(root: Path) -> TextIO:
    """flock root/write.lock for the caller's life (one writer per index); the open file is
    the lock: closing it releases."""
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


def sweep_orphans(root: Path, commit: dict[str, Any]) -> None:
    """At open: remove what the current commit does not name (a crash mid-refresh or
    mid-merge left a half-built segment, a mask or an older commit point)."""
    names = {s["name"] for s in commit["segments"]}
    dels = {s["deletes"] for s in commit["segments"] if s.get("deletes")}
    seg_dir = root / SEGMENTS_DIR
    for p in seg_dir.iterdir() if seg_dir.is_dir() else []:
        if p.name not in names:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    del_dir = root / DELETES_DIR
    for p in del_dir.iterdir() if del_dir.is_dir() else []:
        if f"{DELETES_DIR}/{p.name}" not in dels:
            p.unlink(missing_ok=True)
    for g in list_commits(root)[1:]:
        (root / commit_name(g)).unlink(missing_ok=True)
    for p in root.iterdir():
        if p.name.startswith(".commit-"):
            p.unlink(missing_ok=True)
    fsync_dir(root)


def retire(root: Path, old: Snapshot, new: Snapshot) -> None:
    """Delete what the new commit no longer names. Readers holding the old snapshot keep
    working: its files stay mapped (and its SQLite handles open) until they let go."""
    keep = {s.name for s in new.segments}
    for s in old.segments:
        if s.name not in keep:
            shutil.rmtree(root / SEGMENTS_DIR / s.name, ignore_errors=True)
    keep_del = {s.deletes_file for s in new.segments}
    for s in old.segments:
        if s.deletes_file and s.deletes_file not in keep_del:
            (root / s.deletes_file).unlink(missing_ok=True)
    for g in list_commits(root):
        if g < new.generation:
            (root / commit_name(g)).unlink(missing_ok=True)


def drop_empty(segs: list[Segment]) -> list[Segment]:
    """Segments with no live document are dropped, except the last one left (it carries the
    encoder state and scales new segments are built from)."""
    kept = [s for s in segs if s.n_live > 0]
    return kept or segs[-1:]
