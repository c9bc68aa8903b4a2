"""Writing one new segment: from acknowledged writes (a refresh) or from live documents of
older segments (a merge). Either way it is built like the first segment: the same encoders,
quantization scales, block size and companions (bm25/, dense/)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sparseretr.index.build import build_index, side_writer
from sparseretr.index.dense import DenseIndex
from sparseretr.index.errors import UserInputError
from sparseretr.index.format import BM25_DIR, ENCODER_DIR, tree_writer
from sparseretr.index.segments import SEGMENTS_DIR, Segment, Snapshot, open_segment
from sparseretr.index.vectors import SparseVectors


def build_segment(
    snap: Snapshot,
    name: str,
    ids: list[str],
    docs: list[dict[str, Any]],
    sparse: SparseVectors,
    bm25: SparseVectors | None,
    dense: np.ndarray | None,
    *,
    open_dense: bool = True,
) -> Segment:
    """Write segments/<name> under snap's root like snap's first segment, and open it."""
    first = snap.first
    scales = snap.commit["scales"] if snap.commit else {}
    extras: dict[str, Any] = {ENCODER_DIR: tree_writer(first.sparse.encoder_dir)}
    if bm25 is not None and first.bm25 is not None:
        b = first.bm25
        extras[BM25_DIR] = side_writer(
            ids, bm25, b.encoder_config, tree_writer(b.encoder_dir), scale=scales.get("bm25"),
            block_size=b.block_size,
        )  # fmt: skip
    if dense is not None and first.dense is not None:
        extras["dense"] = DenseIndex.writer(
            dense, first.dense.encoder_config, kind=first.dense.kind
        )
    folder = snap.root / SEGMENTS_DIR / name
    build_index(
        folder, ids, sparse, encoder_config=first.sparse.encoder_config, extras=extras,
        docs=docs, scale=scales.get("sparse"), block_size=first.sparse.block_size,
        build_info={"segment": name},
    )  # fmt: skip
    return open_segment(folder, name, dense=open_dense)


def build_merged(snap: Snapshot, name: str, picks: list[Segment], *, open_dense: bool) -> Segment:
    """One segment from the live docs of picks, in their order, impacts unchanged (the scales
    are fixed), each side over the snapshot's whole vocabulary."""
    (seg,) = build_split(snap, [name], picks, open_dense=open_dense)
    return seg


def build_split(
    snap: Snapshot, names: list[str], picks: list[Segment], *, open_dense: bool
) -> list[Segment]:
    """The live docs of picks, in their order, cut into len(names) segments of near-equal
    size (contiguous runs): a merge is one part, a split for sharded serving several. Impacts
    are unchanged (the scales are fixed), so every document scores what it scored before."""
    ids: list[str] = []
    docs: list[dict[str, Any]] = []
    sparse, bm25, dense = [], [], []
    for seg in picks:
        live = np.flatnonzero(seg.dead == 0)
        seg_ids = [str(i) for i in seg.sparse.doc_ids(live)]
        ids += seg_ids
        store = seg.sparse.docstore
        got = store.get_many(seg_ids) if store is not None else [None] * len(seg_ids)
        docs += [d if d is not None else {"id": i} for i, d in zip(seg_ids, got, strict=True)]
        sparse.append(seg.sparse.doc_vectors(live))
        if seg.bm25 is not None:
            bm25.append(seg.bm25.doc_vectors(live))
        if seg.dense is not None:
            dense.append(np.asarray(seg.dense.vectors[live]))
    if len(names) > max(len(ids), 1):
        raise UserInputError(f"cannot cut {len(ids)} documents into {len(names)} segments")
    first = snap.first
    all_sparse = SparseVectors.concat(sparse).widened(snap.vocab("sparse").size)
    all_bm25 = None
    if first.bm25 is not None:
        all_bm25 = SparseVectors.concat(bm25).widened(snap.vocab("bm25").size)
    all_dense = np.concatenate(dense) if first.dense is not None and open_dense else None
    bounds = np.linspace(0, len(ids), len(names) + 1).round().astype(int)

    def part(v: SparseVectors, a: int, b: int) -> SparseVectors:
        return v if (a, b) == (0, len(ids)) else v.slice(np.arange(a, b))  # a merge: no copy

    return [
        build_segment(
            snap,
            name,
            ids[a:b],
            docs[a:b],
            part(all_sparse, a, b),
            None if all_bm25 is None else part(all_bm25, a, b),
            None if all_dense is None else all_dense[a:b],
            open_dense=open_dense,
        )
        for name, a, b in zip(names, bounds[:-1], bounds[1:], strict=True)
    ]


def stack_rows(rows: list[tuple[SparseVectors, int]], vocab_size: int) -> SparseVectors:
    """Row j of each (vectors, j), in order, over vocab_size terms."""
    return SparseVectors.from_rows([v.row(j) for v, j in rows], vocab_size)
