"""Reading documents: BEIR-style JSONL (optionally gzip) or a BEIR folder, streamed."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sparseretr.index.errors import UserInputError


class CorpusError(UserInputError):
    """The corpus cannot be read: wrong path, malformed line, missing id."""


def doc_text(doc: dict[str, Any]) -> str:
    """The one place a document becomes the text encoders see: title, then body."""
    return f"{doc.get('title') or ''} {doc.get('text') or ''}".strip()


def corpus_file(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        for name in ("corpus.jsonl", "corpus.jsonl.gz"):
            if (p / name).is_file():
                return p / name
        raise CorpusError(f"{p} is a folder without corpus.jsonl (expected a BEIR dataset folder)")
    if not p.is_file():
        raise CorpusError(f"corpus {p} does not exist")
    return p


def _open_text(p: Path):
    opener = gzip.open if p.suffix == ".gz" else open
    return opener(p, "rt", encoding="utf-8")


def count_documents(path: str | Path) -> int:
    """How many documents iter_corpus will yield (non-blank lines), without parsing JSON.

    Reads lines exactly as iter_corpus does (text mode, same newline rules), so the count and
    the stream agree; a malformed line still fails later, in iter_corpus, with its line number.
    """
    with _open_text(corpus_file(path)) as f:
        return sum(1 for line in f if line.strip())


def json_lines(p: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON-lines file (.gz too); a line
    that is not a JSON object is an error naming the file and the line."""
    with _open_text(p) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise CorpusError(f"{p}:{n}: not valid JSON ({e.msg})") from e
            if not isinstance(rec, dict):
                raise CorpusError(f"{p}:{n}: each line must be a JSON object")
            yield n, rec


def iter_corpus(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield {"id", "title", "text", "metadata"} per line; `_id` (BEIR) or `id` names the doc."""
    p = corpus_file(path)
    for n, rec in json_lines(p):
        doc_id = rec.get("_id", rec.get("id"))
        if doc_id is None or str(doc_id) == "":
            raise CorpusError(f"{p}:{n}: document has no '_id' or 'id'")
        yield {
            "id": str(doc_id),
            "title": str(rec.get("title") or ""),
            "text": str(rec.get("text") or ""),
            "metadata": rec.get("metadata") or {},
        }
