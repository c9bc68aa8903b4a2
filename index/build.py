"""build_index: doc vectors -> impact postings on disk, written atomically.

Why atomic: everything goes into a hidden sibling folder that is fsynced and then renamed into
place, so a crash or an exception leaves either the old index or the new one, never half of
one. manifest.json is written last, so even a torn folder would not open as an index.
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
import scipy.sparse as sp

from index.docstore import DocStore
from index.errors import IndexExistsError
from index.format import (
    DOC_IDS,
    DOC_IDS_ORDER,
    DOCSTORE,
    ENCODER_DIR,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    POST_DOCS,
    POST_IMPACTS,
    TERM_PTR,
    file_entry,
    fsync_dir,
    fsync_file,
    save_array,
)
from index.quantize import quantize
from sparseretr.sparse import SparseVectors

_RESERVED = {MANIFEST, DOCSTORE}


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
) -> Path:
    """Write an index for `vectors` (row i is doc_ids[i]) to out_dir and return its path.

    extras[name](folder) writes <index>/<name>/ inside the same atomic build: "encoder" holds
    the query encoder's files (idf.json, a vocabulary), "dense" a dense index in the same doc
    order. docs (dicts with id, title, text, optional metadata) fill the SQLite doc store;
    build_info (timings, host) is recorded in the manifest as "build".
    """
    target = Path(out_dir).absolute()
    _refuse_existing(target, overwrite)
    ids = _encode_ids(doc_ids, len(vectors))
    _check_vectors(vectors)
    json.dumps([encoder_config, build_info])  # fail before any work if they can't be recorded
    extras = dict(extras or {})
    bad = [n for n in extras if not n or "/" in n or n.startswith(".") or n in _RESERVED]
    if bad:
        raise ValueError(f"invalid extra folder name(s) {bad}")

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        manifest = _write_contents(tmp, ids, vectors, encoder_config, extras, docs)
        manifest["build"] = build_info or {}
        manifest_path = tmp / MANIFEST
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
        fsync_file(manifest_path)
        fsync_dir(tmp)
        _swap_into_place(tmp, target, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _refuse_existing(target: Path, overwrite: bool) -> None:
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
            raise ValueError(f"doc id {i!r} contains a NUL character")
    encoded = [i.encode("utf-8") for i in ids]
    width = max((len(b) for b in encoded), default=1) or 1
    arr = np.array(encoded, dtype=f"S{width}") if encoded else np.zeros(0, dtype="S1")
    if arr.size > 1:
        order = np.argsort(arr, kind="stable")
        s = arr[order]
        dup = np.flatnonzero(s[1:] == s[:-1])
        if dup.size:
            first = s[dup[0]].decode("utf-8")
            raise ValueError(f"doc ids must be unique; duplicate id {first!r}")
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


def _postings(vectors: SparseVectors, impacts: np.ndarray) -> tuple[np.ndarray, ...]:
    """CSC transpose of the doc-term CSR: per-term doc lists, doc ids ascending."""
    m = sp.csr_matrix(
        (impacts, vectors.indices, vectors.indptr), shape=(len(vectors), vectors.vocab_size)
    )
    c = m.tocsc()
    c.sort_indices()
    return (
        c.indptr.astype(np.int64),
        c.indices.astype(np.int32),
        c.data.astype(np.uint8),
    )


def _write_contents(
    tmp: Path,
    ids: np.ndarray,
    vectors: SparseVectors,
    encoder_config: dict,
    extras: dict[str, Callable[[Path], None]],
    docs: Iterable[dict] | None,
) -> dict[str, Any]:
    impacts, scale = quantize(vectors.data)
    term_ptr, post_docs, post_impacts = _postings(vectors, impacts)
    arrays = {
        TERM_PTR: term_ptr,
        POST_DOCS: post_docs,
        POST_IMPACTS: post_impacts,
        DOC_IDS: ids,
        DOC_IDS_ORDER: np.argsort(ids, kind="stable").astype(np.int64),
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
        "n_postings": int(post_docs.size),
        "quantization": {"dtype": "uint8", "scale": float(scale)},
        "docstore": DOCSTORE if docs is not None else None,
        "files": files,
        "stats": {
            "avg_nnz_per_doc": float(nnz.mean()) if nnz.size else 0.0,
            "max_nnz_per_doc": int(nnz.max()) if nnz.size else 0,
            "n_empty_docs": int((nnz == 0).sum()),
            "n_stored_docs": n_stored,
        },
    }


def _swap_into_place(tmp: Path, target: Path, overwrite: bool) -> None:
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
