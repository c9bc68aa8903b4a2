"""Write-ahead log: acknowledged writes that no commit point holds yet.

Why: a commit builds a segment, too costly per request, while a write must be durable before
it is acknowledged. Each write is one record file `wal/<seq>.npz` (already encoded vectors and
stored fields, so replay needs no model), written to a temp name, fsynced and renamed: a
record is there whole or not at all, so a crash never leaves a torn one. A commit point names
the last sequence number it holds (wal_seq); records up to it are deleted after the commit,
and on open the records after it are replayed in order.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sparseretr.index.errors import CorruptIndexError
from sparseretr.index.format import fsync_dir
from sparseretr.index.vectors import SparseVectors

_RECORD_RE = re.compile(r"^(\d{16})\.npz$")
SPARSE_SIDES = ("sparse", "bm25")


@dataclass
class Record:
    """One acknowledged write: an upsert of encoded documents or a delete of ids.

    upsert: ids[i] has stored fields docs[i] and row i of each side's vectors (sparse, and
    bm25 and dense when the index has them).
    """

    seq: int
    op: str  # "upsert" | "delete"
    ids: list[str]
    docs: list[dict[str, Any]] | None = None
    sparse: SparseVectors | None = None
    bm25: SparseVectors | None = None
    dense: np.ndarray | None = None
    new_terms: dict[str, list[str]] | None = None  # per side, words used first (ids follow on)


def _bytes(obj: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode("utf-8"), dtype=np.uint8)


def write_record(folder: Path, rec: Record) -> Path:
    """Durably add a record (returns once it is fsynced and renamed into place)."""
    arrays: dict[str, np.ndarray] = {
        "meta": _bytes(
            {"op": rec.op, "ids": rec.ids, "docs": rec.docs, "new_terms": rec.new_terms}
        ),
    }
    for side in SPARSE_SIDES:
        v = getattr(rec, side)
        if v is not None:
            arrays[f"{side}_indptr"] = np.asarray(v.indptr, dtype=np.int64)
            arrays[f"{side}_indices"] = np.asarray(v.indices, dtype=np.int32)
            arrays[f"{side}_data"] = np.asarray(v.data, dtype=np.float32)
            arrays[f"{side}_vocab"] = np.array([v.vocab_size], dtype=np.int64)
    if rec.dense is not None:
        arrays["dense"] = np.asarray(rec.dense, dtype=np.float32)
    path = folder / f"{rec.seq:016d}.npz"
    tmp = folder / f".{path.name}.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(folder)
    return path


def read_record(path: Path) -> Record:
    m = _RECORD_RE.match(path.name)
    if not m:
        raise CorruptIndexError(f"{path} is not a write-ahead log record")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode("utf-8"))
            sides: dict[str, SparseVectors] = {}
            for side in SPARSE_SIDES:
                if f"{side}_indptr" in z:
                    sides[side] = SparseVectors(
                        z[f"{side}_indptr"], z[f"{side}_indices"], z[f"{side}_data"],
                        int(z[f"{side}_vocab"][0]),
                    )  # fmt: skip
            dense = z.get("dense")
    except (OSError, ValueError, KeyError, EOFError, json.JSONDecodeError) as e:
        raise CorruptIndexError(
            f"{path}: unreadable write-ahead log record ({e}); writes it held are lost"
        ) from e
    return Record(
        int(m.group(1)), meta["op"], list(meta["ids"]), meta.get("docs"),
        sides.get("sparse"), sides.get("bm25"), dense, meta.get("new_terms"),
    )  # fmt: skip


def record_seqs(folder: Path) -> list[int]:
    """Sequence numbers of the complete records, ascending (temp files are not records)."""
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _RECORD_RE.match(p.name)))


def truncate(folder: Path, upto: int) -> None:
    """Delete records <= upto (a commit holds them) and stray temp files."""
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        m = _RECORD_RE.match(p.name)
        if (m and int(m.group(1)) <= upto) or p.name.endswith(".tmp"):
            p.unlink(missing_ok=True)
    fsync_dir(folder)
