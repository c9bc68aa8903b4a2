"""The work folder beside the output: a manifest, the fitted encoder state, and encoded shards.

Why a folder of shards: a batch job can be killed at any point (kill -9, a lost node) and must
resume with no document lost or encoded twice. Shard i always holds the documents at stream
positions [i*S, (i+1)*S), so a shard file either exists whole (written to a temp name, fsynced,
renamed) or is encoded again, with identical floats, by the resumed job. The manifest pins
everything that decides a shard's content; a resume with other settings is refused instead of
mixing two kinds of vectors in one index.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparseretr.index.errors import UserInputError
from sparseretr.index.format import fsync_dir
from sparseretr.index.vectors import SparseVectors
from sparseretr.index.versioned_json import VersionedJson

WORK_FORMAT = "sparseretr-work"
WORK_VERSION = 1
MANIFEST = "work.json"
ENCODER_STATE = "encoder"
_SHARD = re.compile(r"^shard-(\d{6,})\.npz$")
_LOCK = ".lock"


class WorkDirError(UserInputError):
    """The work folder belongs to another build (settings or corpus changed) or is damaged."""


def work_dir_for(out: str | Path) -> Path:
    """`<out>.work`: beside the output, so it lives on the same disk and is easy to find."""
    out = Path(out).absolute()
    return out.with_name(out.name + ".work")


def corpus_fingerprint(corpus_path: Path) -> dict[str, Any]:
    """Path, size and mtime: a changed corpus must not be resumed with another's shards."""
    st = corpus_path.stat()
    return {"path": str(corpus_path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


@dataclass
class Shard:
    """Encoded documents at stream positions [index*S, index*S + len(ids))."""

    index: int
    ids: list[str]
    vectors: SparseVectors
    dense: np.ndarray | None = None
    dense_config: dict[str, Any] | None = None


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


class WorkDir:
    """One build's work folder, locked against a second job writing the same shards."""

    def __init__(self, root: Path, manifest: dict[str, Any], lock_fd: int | None) -> None:
        self.root = root
        self.manifest = manifest
        self._lock_fd = lock_fd

    # ------------------------------------------------------------------ open
    @classmethod
    def open(cls, root: str | Path, key: dict[str, Any], *, overwrite: bool = False) -> WorkDir:
        """Resume the work folder when its key matches, else start one (or refuse).

        key: everything that decides shard content (corpus fingerprint, encoder config, shard
        size, batch size, dense model ...). A mismatch is refused unless overwrite, which
        discards the old shards.
        """
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        lock_fd = _lock(root)
        try:
            manifest = _read_manifest(root)
            if manifest is not None and manifest.get("key") != json.loads(json.dumps(key)):
                if not overwrite:
                    raise WorkDirError(
                        f"{root} holds shards of a build with other settings "
                        f"({_diff(manifest.get('key'), key)}); pass --overwrite to discard them, "
                        f"or delete {root}"
                    )
                _clear(root)
                manifest = None
            if manifest is None:
                manifest = {
                    "format": WORK_FORMAT,
                    "format_version": WORK_VERSION,
                    "work_id": uuid.uuid4().hex,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "key": key,
                }
                _atomic_write_text(root / MANIFEST, json.dumps(manifest, indent=2))
            work = cls(root, manifest, lock_fd)
            work.remove_temp_files()
            return work
        except BaseException:
            os.close(lock_fd)
            raise

    def update(self, **fields: Any) -> None:
        """Record facts learned on the first run (document count, encoder state hash)."""
        self.manifest.update(fields)
        _atomic_write_text(self.root / MANIFEST, json.dumps(self.manifest, indent=2))

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def remove(self) -> None:
        self.close()
        discard(self.root)

    def remove_temp_files(self) -> None:
        """Temp files of a killed writer never count as shards; drop them."""
        for p in self.root.glob(".*.tmp-*"):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    # ---------------------------------------------------------------- shards
    @property
    def encoder_state(self) -> Path:
        return self.root / ENCODER_STATE

    def shard_path(self, index: int) -> Path:
        return self.root / f"shard-{index:06d}.npz"

    def done_shards(self) -> set[int]:
        return {int(m.group(1)) for p in self.root.iterdir() if (m := _SHARD.match(p.name))}

    def read_shard(self, index: int) -> Shard:
        return read_shard(self.shard_path(index), index)


def discard(root: Path) -> None:
    """Delete a work folder all at once: renamed away first, so a kill during the deletion
    never leaves a folder without its manifest (that would block finishing the build)."""
    if not root.exists():
        return
    trash = root.with_name(f".{root.name}.tmp-{uuid.uuid4().hex[:8]}")
    os.replace(root, trash)
    fsync_dir(root.parent)
    shutil.rmtree(trash, ignore_errors=True)


def write_shard(root: str | Path, shard: Shard) -> Path:
    """Write a shard whole or not at all: temp name, fsync, rename, fsync the folder."""
    root = Path(root)
    final = root / f"shard-{shard.index:06d}.npz"
    tmp = root / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    v = shard.vectors
    arrays: dict[str, np.ndarray] = {
        "index": np.int64(shard.index),
        "ids": np.array(shard.ids, dtype=str),
        "indptr": v.indptr.astype(np.int64),
        "indices": v.indices.astype(np.int32),
        "data": v.data.astype(np.float32),
        "vocab_size": np.int64(v.vocab_size),
    }
    if shard.dense is not None:
        arrays["dense"] = np.ascontiguousarray(shard.dense, dtype=np.float32)
        arrays["dense_config"] = np.array(json.dumps(shard.dense_config or {}))
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(root)
    return final


def read_shard(path: Path, index: int) -> Shard:
    """Load and check a shard; WorkDirError names the file when it is damaged."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["index"]) != index:
                raise ValueError(f"holds shard {int(z['index'])}")
            ids = [str(x) for x in z["ids"]]
            vectors = SparseVectors(z["indptr"], z["indices"], z["data"], int(z["vocab_size"]))
            if len(vectors) != len(ids):
                raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
            dense = z["dense"] if "dense" in z.files else None
            cfg = json.loads(str(z["dense_config"])) if "dense_config" in z.files else None
    except WorkDirError:
        raise
    except Exception as e:  # any unreadable shard gets the same clear error
        raise WorkDirError(f"shard {path} is damaged ({e}); delete it and run again") from e
    if dense is not None and dense.shape[0] != len(ids):
        raise WorkDirError(f"shard {path}: {dense.shape[0]} dense rows for {len(ids)} ids")
    return Shard(index, ids, vectors, dense, cfg)


def _lock(root: Path) -> int:
    fd = os.open(root / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise WorkDirError(f"another build is running in {root}; wait for it or stop it") from None
    return fd


def _read_manifest(root: Path) -> dict[str, Any] | None:
    path = root / MANIFEST
    if not path.is_file():
        return None
    m = VersionedJson(
        WORK_FORMAT, None, "sparseretr work folder", invalid=WorkDirError, foreign=WorkDirError,
        outdated=WorkDirError, hint=f"move {root} away or delete it, then run again",
    ).read(path)  # fmt: skip
    if m["format_version"] != WORK_VERSION:
        return {**m, "key": {"format_version": m.get("format_version")}}  # refused as a mismatch
    return m


def _clear(root: Path) -> None:
    for p in root.iterdir():
        if p.name == _LOCK:
            continue
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


def _diff(old: Any, new: dict[str, Any]) -> str:
    if not isinstance(old, dict):
        return "an older work-folder format"
    keys = sorted(k for k in {*old, *new} if old.get(k) != json.loads(json.dumps(new.get(k))))
    return "changed: " + ", ".join(keys)
