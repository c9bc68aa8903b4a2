"""Sparse vectors in and out, token-keyed: Anserini JsonVectorCollection and OpenSearch bulk.

`export_index` writes an index's live documents (`sparseretr export`); `read_vectors` reads
either format back (`sparseretr index build --vectors`), and `to_sparse` maps the tokens
onto an encoder's vocabulary.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sparseretr.index.errors import UserInputError
from sparseretr.vector_files import anserini, opensearch
from sparseretr.vector_files.rows import VectorRow, to_sparse

FORMATS = ("anserini", "opensearch")
CHUNK = 10_000  # documents decoded at a time


def detect(path: Path) -> str:
    """anserini for a folder or a file whose lines carry "vector"; opensearch for bulk NDJSON."""
    if path.is_dir():
        return "anserini"
    if not path.is_file():
        raise FileNotFoundError(f"vector file {path} does not exist")
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserInputError(f"{path}: first line is not valid JSON ({e.msg})") from e
                if (
                    isinstance(rec, dict)
                    and len(rec) == 1
                    and next(iter(rec)) in opensearch.ACTIONS
                ):
                    return "opensearch"
                if isinstance(rec, dict) and "vector" in rec:
                    return "anserini"
                break
    raise UserInputError(
        f'{path}: neither a JsonVectorCollection (lines with "vector") nor an OpenSearch bulk '
        "file (action lines)"
    )


def read_vectors(path: str | Path) -> Iterator[VectorRow]:
    path = Path(path)
    fmt = detect(path)
    return anserini.read(path) if fmt == "anserini" else opensearch.read(path)


def _rows(snapshot: Any, tokens: Any, integer: bool) -> Iterator[VectorRow]:
    for seg in snapshot.segments:
        live = np.flatnonzero(np.asarray(seg.dead) == 0)
        scale = float(seg.sparse.scale)
        for start in range(0, live.size, CHUNK):
            rows = live[start : start + CHUNK]
            vecs = seg.sparse.doc_vectors(rows)
            ids = [str(i) for i in seg.sparse.doc_ids(rows)]
            docs = snapshot.get_documents(ids)
            for j, (doc_id, doc) in enumerate(zip(ids, docs, strict=True)):
                terms, w = vecs.row(j)
                weights = np.rint(w / scale).astype(int).tolist() if integer else w.tolist()
                doc = doc or {}
                yield VectorRow(
                    id=doc_id, vector=dict(zip(tokens(terms), weights, strict=True)),
                    title=str(doc.get("title") or ""), text=str(doc.get("text") or ""),
                    metadata=doc.get("metadata") or {},
                )  # fmt: skip


def export_index(
    index: str | Path, out: str | Path, fmt: str, *, index_name: str | None = None
) -> dict[str, Any]:
    """Write the index's live documents as `fmt` into the folder `out`.

    anserini: the stored integer impacts (weight = impact x scale), so Lucene's impact search
    ranks exactly as ours; opensearch: the float weights, with the mapping and an example query.
    """
    from sparseretr.encoders import load_encoder
    from sparseretr.index.segments import Snapshot

    if fmt not in FORMATS:
        raise UserInputError(f"--format must be one of {FORMATS}, got {fmt!r}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty")
    snap = Snapshot.open(index, dense=False)
    try:
        first = snap.first
        encoder = load_encoder(first.sparse.encoder_config, first.sparse.encoder_dir)
        rows = _rows(snap, encoder.tokens, integer=fmt == "anserini")
        if fmt == "anserini":
            files = anserini.write(rows, out)
        else:
            name = index_name or Path(index).name
            first_doc = next(iter(_rows(snap, encoder.tokens, False)), None)
            example = None
            if first_doc is not None:
                q = encoder.encode_queries([first_doc.title or first_doc.text[:200]])
                terms, w = q.row(0)
                example = dict(zip(encoder.tokens(terms), w.tolist(), strict=True))
            files = opensearch.write(rows, out, name, example)
        meta = {
            "format": fmt, "index": str(index), "n_docs": snap.n_docs,
            "encoder": first.sparse.encoder_config, "scale": float(first.sparse.scale),
            "files": [str(p) for p in files],
        }  # fmt: skip
    finally:
        snap.close()
    # Not *.json: Anserini indexes every .json/.jsonl file of the folder it is given.
    (out / "export-info.txt").write_text(json.dumps(meta, indent=2))
    return meta


__all__ = ["FORMATS", "VectorRow", "detect", "export_index", "read_vectors", "to_sparse"]


def build_from_vectors(
    vectors: str | Path,
    out: str | Path,
    encoder: Any,
    *,
    dense_model: str | None = None,
    with_bm25: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """An index of precomputed vectors: `sparseretr index build --vectors FILE`.

    The encoder's vocabulary gives the term ids and encodes queries (it must be the model whose
    tokenizer wrote the vectors); an inference-free encoder without idf.json takes the corpus
    IDF of the documents' texts. Titles and texts, when the file has them, fill the doc store
    and the BM25 and dense sides."""
    import time

    from sparseretr.index.dense import DenseIndex
    from sparseretr.indexing import BuildSummary, write_index

    t0 = time.perf_counter()
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    rows = list(read_vectors(vectors))
    if not rows:
        raise UserInputError(f"{vectors} holds no documents")
    ids = [r.id for r in rows]
    if len(set(ids)) != len(ids):
        raise UserInputError(f"{vectors} repeats document ids")
    texts = [f"{r.title} {r.text}".strip() for r in rows]
    if (with_bm25 or dense_model) and not any(texts):
        raise UserInputError(f"{vectors} has no document texts for --with-bm25 / --dense")
    if getattr(encoder, "idf", 0) is None and not any(texts):
        raise UserInputError(
            f"{vectors} has no document texts to fit the query IDF on, and the model ships no "
            "idf.json"
        )
    encoder.fit(texts)  # corpus statistics (IDF, BM25's vocabulary) where the encoder has them
    vocab = encoder.tokenizer.get_vocab() if hasattr(encoder, "tokenizer") else encoder.vocab
    vecs = to_sparse(rows, vocab, encoder.vocab_size, str(vectors))
    dense = None
    if dense_model:
        from sparseretr.dense import DenseEncoder

        denc = DenseEncoder(dense_model)
        dense = DenseIndex.writer(denc.encode(texts), denc.config())
    docs = ({"id": r.id, "title": r.title, "text": r.text, "metadata": r.metadata} for r in rows)
    path = write_index(
        out, ids, vecs, encoder, docs=docs, texts=texts, dense=dense, with_bm25=with_bm25,
        build_info={"vectors": str(vectors)}, overwrite=overwrite,
    )  # fmt: skip
    summary = BuildSummary.of(path, len(ids), vecs.nnz, encode_s=0.0, t_start=t0, phases_s={})
    return summary.as_dict()
