"""Anserini / pyserini JsonVectorCollection: one JSON object per line,
`{"id": ..., "contents": ..., "vector": {token: weight}}`, what `pyserini.index.lucene
-collection JsonVectorCollection -impact -pretokenized` indexes (integer weights)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from sparseretr.corpus import json_lines
from sparseretr.index.errors import UserInputError
from sparseretr.vector_files.rows import VectorRow

SHARD_DOCS = 100_000  # documents per docs-NNNNN.jsonl file


def write(rows: Iterable[VectorRow], out: Path) -> list[Path]:
    """docs-00000.jsonl, docs-00001.jsonl, ... in `out`; weights written as given."""
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    f = None
    try:
        for n, row in enumerate(rows):
            if n % SHARD_DOCS == 0:
                if f is not None:
                    f.close()
                paths.append(out / f"docs-{n // SHARD_DOCS:05d}.jsonl")
                f = paths[-1].open("w", encoding="utf-8")
            text = f"{row.title} {row.text}".strip()
            record = {"id": row.id, "contents": text, "vector": row.vector}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        if f is not None:
            f.close()
    return paths


def read(path: Path) -> Iterator[VectorRow]:
    """Rows of one .jsonl file, or of every *.jsonl file of a folder (sorted by name)."""
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    if not files:
        raise UserInputError(f"{path} holds no .jsonl files")
    for file in files:
        for n, rec in json_lines(file):
            if "id" not in rec or not isinstance(rec.get("vector"), dict):
                raise UserInputError(
                    f'{file}:{n}: expected {{"id", "contents", "vector": {{token: weight}}}}'
                )
            text = str(rec.get("contents") or "")
            yield VectorRow(id=str(rec["id"]), vector=rec["vector"], text=text)
