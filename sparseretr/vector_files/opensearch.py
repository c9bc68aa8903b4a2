"""OpenSearch: a `_bulk` NDJSON file whose documents carry a `rank_features` field of
token -> weight, the index mapping for it, and an example `neural_sparse` query.

Load with `curl -H 'Content-Type: application/x-ndjson' -X POST $OS/_bulk --data-binary
@bulk.ndjson` after `curl -X PUT $OS/NAME -H 'Content-Type: application/json' -d @mapping.json`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from sparseretr.corpus import json_lines
from sparseretr.index.errors import UserInputError
from sparseretr.vector_files.rows import VectorRow

FIELD = "sparse_embedding"
ACTIONS = ("index", "create")


def mapping() -> dict:
    return {
        "settings": {"index": {"number_of_shards": 1, "number_of_replicas": 0}},
        "mappings": {
            "properties": {
                "title": {"type": "text"},
                "text": {"type": "text"},
                FIELD: {"type": "rank_features"},
            }
        },
    }


def neural_sparse_query(query_tokens: dict[str, float], k: int = 10) -> dict:
    """Search with the query's own token weights (no model in OpenSearch needed)."""
    return {"size": k, "query": {"neural_sparse": {FIELD: {"query_tokens": query_tokens}}}}


def write(
    rows: Iterable[VectorRow], out: Path, index_name: str, example: dict[str, float] | None
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    bulk = out / "bulk.ndjson"
    with bulk.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({"index": {"_index": index_name, "_id": row.id}}) + "\n")
            doc = {"title": row.title, "text": row.text, FIELD: row.vector}
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
    paths = [bulk, out / "mapping.json"]
    paths[1].write_text(json.dumps(mapping(), indent=2))
    if example is not None:
        paths.append(out / "query_example.json")
        paths[2].write_text(json.dumps(neural_sparse_query(example), indent=2, ensure_ascii=False))
    return paths


def read(path: Path, field: str = FIELD) -> Iterator[VectorRow]:
    """Documents of a bulk NDJSON file (action line, then source line); `_id` names each."""
    action: dict | None = None
    for n, rec in json_lines(path):
        if action is None and len(rec) == 1 and next(iter(rec)) in ACTIONS:
            action = rec[next(iter(rec))] or {}
            continue
        if action is None:
            kinds = " or ".join(ACTIONS)
            raise UserInputError(f"{path}:{n}: expected a bulk action line ({kinds})")
        doc_id = action.get("_id", rec.get("id"))
        vector = rec.get(field)
        if doc_id is None or not isinstance(vector, dict):
            raise UserInputError(f"{path}:{n}: document needs an _id and a {field!r} object")
        yield VectorRow(
            id=str(doc_id), vector=vector, title=str(rec.get("title") or ""),
            text=str(rec.get("text") or ""),
        )  # fmt: skip
        action = None
