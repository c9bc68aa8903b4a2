"""Document store: external id -> {id, title, text, metadata} in one SQLite file.

Why SQLite: stdlib, one file that travels with the index, O(log n) lookups without loading the
corpus into RAM. Writers use WAL so reads are not blocked by a long bulk load. A built index is
never written again, so readers open it `immutable` (no -wal/-shm files, no locks): that works
on read-only mounts and costs nothing per query.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL DEFAULT '',
    metadata TEXT
) WITHOUT ROWID
"""
_BATCH = 1000  # rows per executemany / ids per IN (...) query; below SQLite's variable limit


class DocStore:
    """SQLite-backed map from external doc id to its fields; safe to share across threads."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.Lock()
        if readonly:
            if not self.path.is_file():
                raise FileNotFoundError(f"doc store not found: {self.path}")
            uri = f"file:{quote(str(self.path.resolve()))}?mode=ro&immutable=1"
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        else:
            self._conn = sqlite3.connect(str(self.path), check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(_SCHEMA)
            self._conn.commit()

    def put_many(self, docs: Iterable[Mapping[str, object]]) -> int:
        """Insert or replace docs (keys: id, title, text, optional metadata); returns the count."""
        if self.readonly:
            raise PermissionError(f"doc store opened read-only: {self.path}")
        n = 0
        it: Iterator[Mapping[str, object]] = iter(docs)
        with self._lock:
            while batch := list(itertools.islice(it, _BATCH)):
                self._conn.executemany(
                    "INSERT OR REPLACE INTO docs (id, title, text, metadata) VALUES (?, ?, ?, ?)",
                    [_to_row(d) for d in batch],
                )
                n += len(batch)
            self._conn.commit()
        return n

    def get(self, doc_id: str) -> dict | None:
        """The stored doc, or None when the id is unknown."""
        with self._lock:
            row = self._conn.execute(
                "SELECT id, title, text, metadata FROM docs WHERE id = ?", (doc_id,)
            ).fetchone()
        return _from_row(row) if row is not None else None

    def get_many(self, doc_ids: Sequence[str]) -> list[dict | None]:
        """Docs in the order asked for; None for unknown ids."""
        found: dict[str, dict] = {}
        ids = list(doc_ids)
        with self._lock:
            for i in range(0, len(ids), _BATCH):
                chunk = ids[i : i + _BATCH]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT id, title, text, metadata FROM docs WHERE id IN ({marks})", chunk
                ).fetchall()
                for row in rows:
                    found[row[0]] = _from_row(row)
        return [found.get(i) for i in ids]

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0])

    def close(self) -> None:
        """Close the connection; the last writer's close folds the WAL back into the file."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> DocStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _to_row(doc: Mapping[str, object]) -> tuple[str, str, str, str | None]:
    if "id" not in doc:
        raise ValueError(f"doc without an 'id': {dict(doc)!r:.200}")
    meta = doc.get("metadata")
    return (
        str(doc["id"]),
        str(doc.get("title") or ""),
        str(doc.get("text") or ""),
        json.dumps(meta, ensure_ascii=False) if meta else None,
    )


def _from_row(row: tuple[str, str, str, str | None]) -> dict:
    return {
        "id": row[0],
        "title": row[1],
        "text": row[2],
        "metadata": json.loads(row[3]) if row[3] else {},
    }
