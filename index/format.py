"""On-disk format: file names, manifest schema, checksums and durable writes.

Layout of an index folder (format_version 2; version 1 files are refused with a rebuild hint):

    manifest.json          written last; its presence means "complete index"
    term_ptr.npy           int64 [vocab + 1]   postings of term t are [term_ptr[t], term_ptr[t+1])
    post_docs.npy          uint8 [n_postings]  block-local slot (slot % block_size), slot order
    post_impacts.npy       uint8 [n_postings]  quantized weights; weight = impact * scale
    block_ptr.npy          int64 [vocab + 1]   block rows of term t are [block_ptr[t], ...[t+1])
    block_rows.npy         uint8 [n_bytes]     per (term, block): gap, count, block max (packed)
    term_kth.npy           uint8 [vocab, 3]    10th/100th/1000th largest impact (0 if fewer)
    doc_order.npy          int32 [n_docs]      slot -> internal doc id (build-time clustering)
    doc_slot.npy           int32 [n_docs]      internal doc id -> slot
    doc_ids.npy            S<w>  [n_docs]      external ids by internal id, UTF-8, fixed width
    doc_ids_order.npy      int64 [n_docs]      argsort of doc_ids: external -> internal lookup
    docstore.sqlite        optional            title/text/metadata by external id
    encoder/               encoder state written by the caller (idf.json, vocab, ...)

Internal doc ids are positions in build_index's input (dense rows and doc ids use them);
slots are the clustered order the postings are laid out in, private to the postings. The
manifest's "layout" records block_size and how the order was made. index/postings.py
documents the row encoding (delta-coded block ids, bit-packed counts).

Why .npy: loadable with np.load(mmap_mode="r"), so opening costs nothing and the OS pages in
only the postings queries touch; dtype and shape live in the header and are checked on open.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sparseretr.index.errors import (
    REBUILD_HINT,
    ChecksumMismatchError,
    CorruptIndexError,
    IndexNotFoundError,
    IndexVersionError,
    ManifestError,
)
from sparseretr.index.versioned_json import VersionedJson

FORMAT_NAME = "sparseretr-index"
FORMAT_VERSION = 2

MANIFEST = "manifest.json"
TERM_PTR = "term_ptr.npy"
POST_DOCS = "post_docs.npy"
POST_IMPACTS = "post_impacts.npy"
BLOCK_PTR = "block_ptr.npy"
BLOCK_ROWS = "block_rows.npy"
TERM_KTH = "term_kth.npy"
DOC_ORDER = "doc_order.npy"
DOC_SLOT = "doc_slot.npy"
DOC_IDS = "doc_ids.npy"
DOC_IDS_ORDER = "doc_ids_order.npy"
DOCSTORE = "docstore.sqlite"
ENCODER_DIR = "encoder"
BM25_DIR = "bm25"  # a BM25 index over the same docs, beside the learned one

ARRAY_FILES = (
    TERM_PTR,
    POST_DOCS,
    POST_IMPACTS,
    BLOCK_PTR,
    BLOCK_ROWS,
    TERM_KTH,
    DOC_ORDER,
    DOC_SLOT,
    DOC_IDS,
    DOC_IDS_ORDER,
)
_REQUIRED_KEYS = (
    "format",
    "format_version",
    "encoder_config",
    "vocab_size",
    "n_docs",
    "n_postings",
    "quantization",
    "layout",
    "files",
)
_HASH_BLOCK = 1 << 20


def sha256_file(path: Path) -> str:
    """Streamed sha256 (never mmaps or loads the whole file)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    """Make a rename or file creation in `path` durable (no-op where dirs can't be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def link_tree(src: Path, dst: Path) -> None:
    """Copy a folder of immutable files as hard links where the filesystem allows (a model
    or encoder state shared by many segments then costs its bytes once), else as copies."""

    def link_or_copy(a: str, b: str) -> None:
        if os.path.lexists(b):  # a folder written before (a re-run into the same output)
            if os.path.samefile(a, b):
                return
            os.unlink(b)
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link_or_copy, dirs_exist_ok=True)


def tree_writer(src: Path) -> Callable[[Path], None]:
    """An extras writer for build_index that reproduces the folder src (via link_tree)."""

    def write(folder: Path) -> None:
        link_tree(src, folder)

    return write


def save_array(folder: Path, name: str, arr: np.ndarray) -> None:
    path = folder / name
    np.save(path, arr, allow_pickle=False)
    fsync_file(path)


def file_entry(path: Path, arr: np.ndarray | None = None) -> dict[str, Any]:
    """Manifest record for one file; dtype/shape only for arrays."""
    return {
        "size": path.stat().st_size,
        "sha256": sha256_file(path),
        "dtype": arr.dtype.str if arr is not None else None,
        "shape": list(arr.shape) if arr is not None else None,
    }


def _version_fix(found: int, path: Path) -> str:
    if found < FORMAT_VERSION:
        return (
            "an older sparseretr wrote it (version 2 added compact block postings); convert it "
            f"without re-encoding: `sparseretr index upgrade {path.parent}`, or {REBUILD_HINT}"
        )
    return f"a newer sparseretr wrote it: install the matching sparseretr, or {REBUILD_HINT}"


_MANIFEST_JSON = VersionedJson(
    FORMAT_NAME, FORMAT_VERSION, "sparseretr index", invalid=ManifestError,
    foreign=IndexVersionError, outdated=IndexVersionError, hint=REBUILD_HINT,
    version_fix=_version_fix,
)  # fmt: skip


def read_manifest(root: Path) -> dict[str, Any]:
    """Load and validate manifest.json; raises the specific error for each way it can fail."""
    if not root.exists():
        raise IndexNotFoundError(f"no index at {root}: build one with `sparseretr index build`")
    if not root.is_dir():
        raise IndexNotFoundError(f"{root} is a file, not an index folder")
    path = root / MANIFEST
    if not path.is_file():
        raise IndexNotFoundError(
            f"{path} is missing: {root} is not a sparseretr index (or its build was "
            f"interrupted); {REBUILD_HINT}"
        )
    manifest = _MANIFEST_JSON.read(path)
    missing = [k for k in _REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ManifestError(f"{path} lacks required fields {missing}; {REBUILD_HINT}")
    files = manifest["files"]
    if not isinstance(files, dict) or any(f not in files for f in ARRAY_FILES):
        raise ManifestError(f"{path}: 'files' must list {list(ARRAY_FILES)}; {REBUILD_HINT}")
    try:
        float(manifest["quantization"]["scale"])
        int(manifest["n_docs"]), int(manifest["vocab_size"]), int(manifest["n_postings"])
        int(manifest["layout"]["block_size"])
    except (KeyError, TypeError, ValueError) as e:
        raise ManifestError(
            f"{path}: malformed counts, quantization or layout ({e}); {REBUILD_HINT}"
        ) from e
    return manifest


def check_files(root: Path, manifest: dict[str, Any], *, verify: bool) -> None:
    """Every listed file exists with its recorded size; with verify, its sha256 too."""
    for name, entry in manifest["files"].items():
        path = root / name
        if not path.is_file():
            raise CorruptIndexError(f"{path} is missing from the index; {REBUILD_HINT}")
        try:
            size = int(entry["size"])
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(f"{root / MANIFEST}: bad entry for {name!r}") from e
        actual = path.stat().st_size
        if actual != size:
            raise CorruptIndexError(
                f"{path} is {actual} bytes, manifest says {size} (truncated or replaced?); "
                f"{REBUILD_HINT}"
            )
        if verify and sha256_file(path) != entry.get("sha256"):
            raise ChecksumMismatchError(
                f"{path} fails its sha256 check (contents changed since build); {REBUILD_HINT}"
            )


def load_array(root: Path, name: str, entry: dict[str, Any], *, mmap: bool) -> np.ndarray:
    """np.load one array read-only and check dtype/shape against the manifest."""
    path = root / name
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise CorruptIndexError(f"{path} is not a readable .npy file ({e}); {REBUILD_HINT}") from e
    if not mmap:
        arr.setflags(write=False)  # same read-only contract (and Numba signature) as mmap
    if arr.dtype.str != entry.get("dtype") or list(arr.shape) != entry.get("shape"):
        raise CorruptIndexError(
            f"{path} holds {arr.dtype.str}{list(arr.shape)}, manifest says "
            f"{entry.get('dtype')}{entry.get('shape')}; {REBUILD_HINT}"
        )
    return arr
