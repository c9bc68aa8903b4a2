"""Batch indexing: corpus -> encoder (fit, encode) -> one index folder, written atomically.

Optional companions go in the same atomic build, in the same document order: a dense index
(`dense/`) for hybrid search and a BM25 index (`bm25/`) for lexical search.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from index import build_index
from sparseretr.corpus import doc_text, iter_corpus
from sparseretr.encoders import BM25Encoder, SparseEncoder


@dataclass
class BuildSummary:
    path: Path
    n_docs: int
    n_postings: int
    nnz_per_doc: float
    encode_s: float
    total_s: float

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "path": str(self.path)}


def _bm25_extra(ids: list[str], texts: list[str]) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        enc = BM25Encoder()
        enc.fit(texts)
        build_index(
            folder,
            ids,
            enc.encode_documents(texts),
            encoder_config=enc.config(),
            extras={"encoder": enc.save_state},
            overwrite=True,
        )

    return write


def build_from_corpus(
    corpus: str | Path,
    out: str | Path,
    encoder: SparseEncoder,
    *,
    dense_model: str | None = None,
    with_bm25: bool = False,
    limit: int | None = None,
    batch_size: int | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
) -> BuildSummary:
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    t_start = time.perf_counter()
    docs = []
    for doc in iter_corpus(corpus):
        if limit is not None and len(docs) >= limit:
            break
        docs.append(doc)
    if not docs:
        raise ValueError(f"corpus {corpus} holds no documents")
    ids = [d["id"] for d in docs]
    texts = [doc_text(d) for d in docs]
    t0 = time.perf_counter()
    encoder.fit(texts)
    vectors = encoder.encode_documents(texts, batch_size=batch_size, show_progress=show_progress)
    encode_s = time.perf_counter() - t0
    extras: dict[str, Callable[[Path], None]] = {"encoder": encoder.save_state}
    if dense_model:
        from sparseretr.engine import build_dense_extra

        extras["dense"] = build_dense_extra(texts, model=dense_model)
    if with_bm25 and encoder.kind != "bm25":
        extras["bm25"] = _bm25_extra(ids, texts)
    path = build_index(
        out,
        ids,
        vectors,
        encoder_config=encoder.config(),
        extras=extras,
        docs=docs,
        build_info={
            "encode_s": round(encode_s, 3),
            "device": str(getattr(encoder, "device", "cpu")),
        },
        overwrite=overwrite,
    )
    return BuildSummary(
        path=path,
        n_docs=len(docs),
        n_postings=vectors.nnz,
        nnz_per_doc=vectors.nnz / len(docs),
        encode_s=encode_s,
        total_s=time.perf_counter() - t_start,
    )
