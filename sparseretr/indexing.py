"""Batch indexing: corpus -> encoder (fit, encode) -> one index folder, written atomically.

Optional companions go in the same atomic build, in the same document order: a dense index
(`dense/`) for hybrid search and a BM25 index (`bm25/`) for lexical search.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparseretr.encoders import BM25Encoder, SparseEncoder
from sparseretr.index.build import side_writer
from sparseretr.index.errors import UserInputError
from sparseretr.index.segments import build_segmented
from sparseretr.index.vectors import SparseVectors


@dataclass
class BuildSummary:
    """What a build printed at the end: enough to size the next one (rates, bytes, phases)."""

    path: Path
    n_docs: int
    n_postings: int
    nnz_per_doc: float
    encode_s: float
    total_s: float
    bytes_on_disk: int = 0
    phases_s: dict[str, float] = field(default_factory=dict)
    shards: dict[str, Any] | None = None  # batch builds: total, reused, shard_size, workers
    docs_encoded: int | None = None  # encoded by this run (a resumed build reuses the rest)

    @classmethod
    def of(
        cls,
        path: Path,
        n_docs: int,
        nnz: int,
        *,
        encode_s: float,
        t_start: float,
        phases_s: dict[str, float],
        shards: dict[str, Any] | None = None,
        docs_encoded: int | None = None,
    ) -> BuildSummary:
        """The summary of a build that started at perf_counter() t_start and just finished."""
        return cls(
            path=path,
            n_docs=n_docs,
            n_postings=nnz,
            nnz_per_doc=nnz / n_docs,
            encode_s=encode_s,
            total_s=time.perf_counter() - t_start,
            bytes_on_disk=folder_bytes(path),
            phases_s=phases_s,
            shards=shards,
            docs_encoded=n_docs if docs_encoded is None else docs_encoded,
        )

    def as_dict(self) -> dict[str, Any]:
        d = {**self.__dict__, "path": str(self.path)}
        # The rate of this run's encoding: documents encoded now, not the reused shards'.
        encoded = self.n_docs if self.docs_encoded is None else self.docs_encoded
        d["docs_per_s"] = round(encoded / self.encode_s, 1) if self.encode_s > 0 else None
        d["phases_s"] = {k: round(v, 3) for k, v in self.phases_s.items()}
        return {k: v for k, v in d.items() if v is not None}


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _bm25_extra(ids: list[str], texts: list[str]) -> Callable[[Path], None]:
    """The bm25/ side: BM25 fitted on these texts (its vocabulary and avgdl)."""
    enc = BM25Encoder()
    enc.fit(texts)
    return side_writer(ids, enc.encode_documents(texts), enc.config(), enc.save_state)


def write_index(
    out: Path,
    ids: Sequence[str],
    vectors: SparseVectors,
    encoder: SparseEncoder,
    *,
    docs: Iterable[dict[str, Any]] | None,
    texts: Sequence[str] | None = None,
    dense: Callable[[Path], None] | None = None,
    with_bm25: bool = False,
    build_info: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """The one final step of every build path: vectors + companions -> an atomic index folder.

    texts (doc_text of each doc, in ids order) are needed only for the BM25 companion.
    """
    extras: dict[str, Callable[[Path], None]] = {"encoder": encoder.save_state}
    if dense is not None:
        extras["dense"] = dense
    if with_bm25:
        if texts is None:
            raise ValueError("the BM25 companion needs the document texts")
        extras["bm25"] = _bm25_extra(list(ids), list(texts))
    return build_segmented(  # segmented: the service can take writes on it
        out,
        ids,
        vectors,
        encoder_config=encoder.config(),
        extras=extras,
        docs=docs,
        build_info=build_info,
        overwrite=overwrite,
    )


def split_index(index: str | Path, segments: int) -> list[dict[str, Any]]:
    """Rewrite a segmented index as `segments` equal segments (IndexWriter.split: scores
    unchanged), the units `serve --shards` spreads over shard actors; returns their records."""
    from sparseretr.index.segments import is_segmented
    from sparseretr.index.writer import IndexWriter

    if not is_segmented(index):
        raise UserInputError(f"{index} is not a segmented index (index build writes one)")
    writer = IndexWriter(index, background_merges=False)  # dense on: the parts keep dense/
    try:
        return [s.record() for s in writer.split(segments).segments]
    finally:
        writer.close()
