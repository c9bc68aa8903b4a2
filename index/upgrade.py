"""Upgrade an index written by an older format version without re-encoding its documents.

Encoding is the expensive part of a build (minutes to hours); the postings already hold every
document's quantized weights, so an older index is turned back into document vectors and
rebuilt in the current format, with its encoder state, dense side, BM25 side and documents.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sparseretr.index.build import build_index, refuse_existing, swap_into_place
from sparseretr.index.docstore import DocStore
from sparseretr.index.errors import CorruptIndexError, IndexNotFoundError, IndexVersionError
from sparseretr.index.format import (
    DOCSTORE,
    ENCODER_DIR,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    tree_writer,
)
from sparseretr.index.segments import FIRST_SEGMENT, SEGMENTS_DIR, is_segmented, write_first_commit
from sparseretr.index.vectors import SparseVectors

# Format version -> files holding (term_ptr, post_docs, post_impacts, doc_ids) as plain .npy.
_PLAIN_POSTINGS = {1: ("term_ptr.npy", "post_docs.npy", "post_impacts.npy", "doc_ids.npy")}


def _manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise IndexNotFoundError(f"no index at {path}") from e
    except (OSError, json.JSONDecodeError) as e:
        raise CorruptIndexError(f"{path / MANIFEST} is unreadable: {e}") from e
    if manifest.get("format") != FORMAT_NAME:
        raise IndexVersionError(f"{path} is not a sparseretr index")
    return manifest


def _vectors(path: Path, manifest: dict[str, Any]) -> tuple[list[str], SparseVectors]:
    version = manifest.get("format_version")
    if version not in _PLAIN_POSTINGS:
        raise IndexVersionError(
            f"{path}: cannot upgrade format_version {version}; rebuild it with "
            "`sparseretr index build`"
        )
    ptr_f, docs_f, imp_f, ids_f = _PLAIN_POSTINGS[version]
    term_ptr, post_docs, impacts, ids = (np.load(path / f) for f in (ptr_f, docs_f, imp_f, ids_f))
    n_docs, vocab = int(manifest["n_docs"]), int(manifest["vocab_size"])
    scale = np.float32(manifest["quantization"]["scale"])
    weights = impacts.astype(np.float32) * scale
    matrix = sp.csc_matrix((weights, post_docs, term_ptr), shape=(n_docs, vocab)).tocsr()
    return [i.decode("utf-8") for i in ids.tolist()], SparseVectors.from_scipy(matrix, vocab)


def _upgrade_into(src: Path) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        upgrade_index(src, folder, overwrite=True)

    return write


def upgrade_index(
    src: str | Path, dst: str | Path | None = None, *, overwrite: bool = False
) -> Path:
    """Rewrite the index at src in the current format at dst (default: in place, atomically)."""
    src = Path(src)
    manifest = _manifest(src)
    if manifest.get("format_version") == FORMAT_VERSION and dst is None:
        return src
    ids, vectors = _vectors(src, manifest)
    extras: dict[str, Callable[[Path], None]] = {}
    for sub in sorted(p for p in src.iterdir() if p.is_dir()):
        nested = (sub / MANIFEST).is_file()
        extras[sub.name] = _upgrade_into(sub) if nested else tree_writer(sub)
    extras.setdefault(ENCODER_DIR, tree_writer(src / ENCODER_DIR))
    docs = None
    if manifest.get("docstore"):
        with DocStore(src / DOCSTORE, readonly=True) as store:
            docs = [d for d in store.get_many(ids) if d is not None]
    build = {**manifest.get("build", {}), "upgraded_from_format": manifest.get("format_version")}
    return build_index(
        dst if dst is not None else src,
        ids,
        vectors,
        encoder_config=manifest["encoder_config"],
        extras=extras,
        docs=docs,
        build_info=build,
        overwrite=overwrite or dst is None,
    )


def upgrade(src: str | Path, dst: str | Path | None = None) -> Path:
    """Bring an index of any older layout to the current one: a segmented index whose segments
    are in the current format (a plain folder becomes its first segment, unchanged when
    already current). In place by default, atomically; returns the upgraded index."""
    src = Path(src)
    if is_segmented(src):
        if dst is not None:
            raise ValueError(f"{src} is already current; copy it instead")
        return src
    manifest = _manifest(src)
    target = Path(dst if dst is not None else src).absolute()
    if dst is not None:
        refuse_existing(target, overwrite=False)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
    seg_dir = tmp / SEGMENTS_DIR / FIRST_SEGMENT
    try:
        if manifest.get("format_version") == FORMAT_VERSION:
            seg_dir.parent.mkdir(parents=True)
            shutil.copytree(src, seg_dir)  # a copy: a crash leaves src as it was
        else:
            upgrade_index(src, seg_dir)
        write_first_commit(tmp)
        swap_into_place(tmp, target, overwrite=dst is None)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
