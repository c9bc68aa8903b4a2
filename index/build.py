"""build_index: doc vectors -> impact postings on disk, written atomically.

Why atomic: everything goes into a hidden sibling folder that is fsynced and then renamed into
place, so a crash or an exception leaves either the old index or the new one, never half of
one. manifest.json is written last, so even a torn folder would not open as an index.

Why the build reorders documents: block-max pruning only skips blocks whose documents are
alike (index/reorder.py). The order lives in doc_order/doc_slot; internal ids stay the input
positions, so companions written in input order (dense rows, doc ids) need no remapping.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sparseretr.index.docstore import DocStore
from sparseretr.index.errors import IndexExistsError, UserInputError
from sparseretr.index.format import (
    BLOCK_PTR,
    BLOCK_ROWS,
    DOC_IDS,
    DOC_IDS_ORDER,
    DOC_ORDER,
    DOC_SLOT,
    DOCSTORE,
    ENCODER_DIR,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    POST_DOCS,
    POST_IMPACTS,
    TERM_KTH,
    TERM_PTR,
    file_entry,
    fsync_dir,
    fsync_file,
    save_array,
)
from sparseretr.index.postings import (
    KTH_LEVELS,
    check_block_size,
    encode_postings,
    postings_by_slot,
    term_kth_impacts,
    top_terms_mask,
)
from sparseretr.index.quantize import quantize
from sparseretr.index.reorder import reorder_docs
from sparseretr.index.vectors import SparseVectors

_RESERVED = {MANIFEST, DOCSTORE}
DEFAULT_BLOCK_SIZE = 16


def build_index(
    out_dir: str | Path,
    doc_ids: Sequence[str],
    vectors: SparseVectors,
    *,
    encoder_config: dict,
    extras: Mapping[str, Callable[[Path], None]] | None = None,
    docs: Iterable[dict] | None = None,
    build_info: dict | None = None,
    overwrite: bool = False,
    block_size: int = DEFAULT_BLOCK_SIZE,
    reorder: bool = True,
    seed: int = 0,
    doc_max_terms: int | None = None,
    scale: float | None = None,
) -> Path:
    """Write an index for `vectors` (row i is doc_ids[i]) to out_dir and return its path.

    extras[name](folder) writes <index>/<name>/ inside the same atomic build: "encoder" holds
    the query encoder's files (idf.json, a vocabulary), "dense" a dense index in the same doc
    order. docs (dicts with id, title, text, optional metadata) fill the SQLite doc store;
    build_info (timings, host) is recorded in the manifest as "build".

    block_size: documents per pruning block (1..255). reorder=False keeps the input order
    (for ablations); seed fixes the clustering. doc_max_terms (approximate, off by default)
    keeps only each document's heaviest terms: static pruning, recorded in the manifest.
    scale fixes the quantization step (see index.quantize); None derives it from the weights.
    """
    target = Path(out_dir).absolute()
    refuse_existing(target, overwrite)
    ids = _encode_ids(doc_ids, len(vectors))
    _check_vectors(vectors)
    check_block_size(block_size)
    if doc_max_terms is not None and (isinstance(doc_max_terms, bool) or doc_max_terms < 1):
        raise ValueError(f"doc_max_terms must be an integer >= 1 or None, got {doc_max_terms!r}")
    layout = {
        "block_size": int(block_size),
        "reorder": "bisection-2means-tfidf" if reorder else "none",
        "seed": int(seed),
        "doc_max_terms": None if doc_max_terms is None else int(doc_max_terms),
        "kth_levels": list(KTH_LEVELS),
        "fixed_scale": None if scale is None else float(scale),
    }
    json.dumps([encoder_config, build_info])  # fail before any work if they can't be recorded
    extras = dict(extras or {})
    bad = [n for n in extras if not n or "/" in n or n.startswith(".") or n in _RESERVED]
    if bad:
        raise ValueError(f"invalid extra folder name(s) {bad}")

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        manifest = _write_contents(tmp, ids, vectors, encoder_config, extras, docs, layout)
        manifest["build"] = build_info or {}
        manifest_path = tmp / MANIFEST
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
        fsync_file(manifest_path)
        fsync_dir(tmp)
        swap_into_place(tmp, target, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def side_writer(
    doc_ids: Sequence[str],
    vectors: SparseVectors,
    encoder_config: dict,
    encoder_state: Callable[[Path], None],
    **build_options: Any,
) -> Callable[[Path], None]:
    """An extras writer for a companion index over the same documents (the bm25/ side): the
    one way a side is written, at the first build and in every later segment."""

    def write(folder: Path) -> None:
        build_index(
            folder, doc_ids, vectors, encoder_config=encoder_config,
            extras={ENCODER_DIR: encoder_state}, overwrite=True, **build_options,
        )  # fmt: skip

    return write


def refuse_existing(target: Path, overwrite: bool) -> None:
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise IndexExistsError(
            f"{target} already exists; pass overwrite=True (CLI: --overwrite) to replace it"
        )


def _encode_ids(doc_ids: Sequence[str], n: int) -> np.ndarray:
    """External ids as fixed-width UTF-8 bytes; rejects wrong count, non-str, NUL, duplicates."""
    ids = list(doc_ids)
    if len(ids) != n:
        raise ValueError(f"{len(ids)} doc ids for {n} vectors; they must match one to one")
    for i in ids:
        if not isinstance(i, str):
            raise ValueError(f"doc ids must be str, got {type(i).__name__}: {i!r}")
        if "\x00" in i:
            raise UserInputError(f"doc id {i!r} contains a NUL character")
    encoded = [i.encode("utf-8") for i in ids]
    width = max((len(b) for b in encoded), default=1) or 1
    arr = np.array(encoded, dtype=f"S{width}") if encoded else np.zeros(0, dtype="S1")
    if arr.size > 1:
        order = np.argsort(arr, kind="stable")
        s = arr[order]
        dup = np.flatnonzero(s[1:] == s[:-1])
        if dup.size:
            first = s[dup[0]].decode("utf-8")
            raise UserInputError(f"doc ids must be unique; duplicate id {first!r}")
    return arr


def _check_vectors(vectors: SparseVectors) -> None:
    if vectors.vocab_size <= 0:
        raise ValueError("vocab_size must be > 0")
    if len(vectors) >= np.iinfo(np.int32).max:
        raise ValueError("too many documents for int32 doc ids")
    if vectors.nnz:
        if vectors.indices.min() < 0 or vectors.indices.max() >= vectors.vocab_size:
            raise ValueError(f"term ids must lie in [0, {vectors.vocab_size})")
        if not np.all(np.isfinite(vectors.data)) or vectors.data.min() <= 0:
            raise ValueError("document weights must be finite and > 0")


def _static_prune(vectors: SparseVectors, n: int | None) -> SparseVectors:
    if n is None or not vectors.nnz or vectors.nnz_per_row().max() <= n:
        return vectors
    keep = top_terms_mask(vectors.indptr, vectors.data, n)
    kept_before = np.zeros(keep.size + 1, dtype=np.int64)
    np.cumsum(keep, out=kept_before[1:])
    indptr = kept_before[vectors.indptr]
    return SparseVectors(indptr, vectors.indices[keep], vectors.data[keep], vectors.vocab_size)


def _postings(vectors: SparseVectors, layout: dict[str, Any]) -> tuple[dict[str, Any], float, int]:
    """Quantize, order the documents, and encode the block postings: the v2 arrays."""
    impacts, scale = quantize(vectors.data, layout.get("fixed_scale"))
    bsize = layout["block_size"]
    n = len(vectors)
    if layout["reorder"] != "none":
        order = reorder_docs(vectors, bsize, seed=layout["seed"])
    else:
        order = np.arange(n, dtype=np.int32)
    slot_of = np.empty(n, dtype=np.int32)
    slot_of[order] = np.arange(n, dtype=np.int32)
    term_ptr, slots, post_impacts = postings_by_slot(
        vectors.indptr, vectors.indices, impacts, order, vectors.vocab_size
    )
    del impacts
    block_ptr, block_rows, post_docs, n_rows = encode_postings(term_ptr, slots, post_impacts, bsize)
    del slots
    arrays = {
        TERM_PTR: term_ptr,
        POST_DOCS: post_docs,
        POST_IMPACTS: post_impacts,
        BLOCK_PTR: block_ptr,
        BLOCK_ROWS: block_rows,
        TERM_KTH: term_kth_impacts(term_ptr, post_impacts),
        DOC_ORDER: order.astype(np.int32),
        DOC_SLOT: slot_of,
    }
    return arrays, scale, n_rows


def _write_contents(
    tmp: Path,
    ids: np.ndarray,
    vectors: SparseVectors,
    encoder_config: dict,
    extras: dict[str, Callable[[Path], None]],
    docs: Iterable[dict] | None,
    layout: dict[str, Any],
) -> dict[str, Any]:
    t0 = time.perf_counter()
    vectors = _static_prune(vectors, layout["doc_max_terms"])
    arrays, scale, n_rows = _postings(vectors, layout)
    arrays[DOC_IDS] = ids
    arrays[DOC_IDS_ORDER] = np.argsort(ids, kind="stable").astype(np.int64)
    layout = {
        **layout,
        "n_blocks": -(-len(vectors) // layout["block_size"]),
        "n_block_rows": n_rows,
        "block_rows_bytes": int(arrays[BLOCK_ROWS].size),
        "postings_s": round(time.perf_counter() - t0, 3),
    }
    files: dict[str, dict[str, Any]] = {}
    for name, arr in arrays.items():
        save_array(tmp, name, arr)
        files[name] = file_entry(tmp / name, arr)

    for name in sorted({ENCODER_DIR, *extras}):
        folder = tmp / name
        folder.mkdir()
        if name in extras:
            extras[name](folder)
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                fsync_file(p)
                files[p.relative_to(tmp).as_posix()] = file_entry(p)
        fsync_dir(folder)

    n_stored = None
    if docs is not None:
        with DocStore(tmp / DOCSTORE) as store:
            n_stored = store.put_many(docs)
        fsync_file(tmp / DOCSTORE)
        files[DOCSTORE] = file_entry(tmp / DOCSTORE)

    nnz = vectors.nnz_per_row()
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "encoder_config": encoder_config,
        "vocab_size": int(vectors.vocab_size),
        "n_docs": len(vectors),
        "n_postings": int(arrays[POST_DOCS].size),
        "quantization": {"dtype": "uint8", "scale": float(scale)},
        "layout": layout,
        "docstore": DOCSTORE if docs is not None else None,
        "files": files,
        "stats": {
            "avg_nnz_per_doc": float(nnz.mean()) if nnz.size else 0.0,
            "max_nnz_per_doc": int(nnz.max()) if nnz.size else 0,
            "n_empty_docs": int((nnz == 0).sum()),
            "n_stored_docs": n_stored,
        },
    }


def swap_into_place(tmp: Path, target: Path, overwrite: bool) -> None:
    """Rename tmp to target; an existing target is moved aside first, then deleted."""
    aside = None
    if target.exists() or target.is_symlink():
        if not overwrite:  # it appeared while we were building
            raise IndexExistsError(f"{target} appeared during the build; pass overwrite=True")
        aside = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
        os.replace(target, aside)
    try:
        os.replace(tmp, target)
    except BaseException:
        if aside is not None:
            os.replace(aside, target)  # put the old index back
        raise
    fsync_dir(target.parent)
    if aside is not None:
        if aside.is_dir() and not aside.is_symlink():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            aside.unlink(missing_ok=True)
