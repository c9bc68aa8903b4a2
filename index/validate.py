"""Checks that keep the unchecked kernels in bounds, run when an index is opened.

Why they split the way they do: shapes and counts come from headers and the manifest, so they
run on every open and catch truncation or a swapped file for free; the full scans of the
postings (and hashing, in format.check_files) read every byte, so only verify=True runs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sparseretr.index.errors import REBUILD_HINT, CorruptIndexError
from sparseretr.index.format import (
    BLOCK_PTR,
    BLOCK_ROWS,
    DOC_IDS,
    DOC_IDS_ORDER,
    DOC_ORDER,
    DOC_SLOT,
    POST_DOCS,
    POST_IMPACTS,
    TERM_KTH,
    TERM_PTR,
)
from sparseretr.index.postings import KTH_LEVELS, layout_ok


def check_arrays(
    root: Path, arrays: dict[str, np.ndarray], manifest: dict[str, Any], bsize: int, *,
    verify: bool,
) -> None:  # fmt: skip
    """Shapes against the manifest's counts always; the postings' values with verify."""
    n_docs, vocab = int(manifest["n_docs"]), int(manifest["vocab_size"])
    n_post = int(manifest["n_postings"])
    tp, bp = arrays[TERM_PTR], arrays[BLOCK_PTR]
    shapes_ok = (
        tp.shape == (vocab + 1,)
        and bp.shape == (vocab + 1,)
        and tp[0] == 0
        and tp[-1] == n_post
        and bp[0] == 0
        and bp[-1] == arrays[BLOCK_ROWS].shape[0]
        and arrays[POST_DOCS].shape == (n_post,)
        and arrays[POST_IMPACTS].shape == (n_post,)
        and arrays[TERM_KTH].shape == (vocab, len(KTH_LEVELS))
        and all(arrays[f].shape == (n_docs,) for f in (DOC_ORDER, DOC_SLOT, DOC_IDS))
        and arrays[DOC_IDS_ORDER].shape == (n_docs,)
    )
    if not shapes_ok:
        raise CorruptIndexError(
            f"{root}: array shapes disagree with the manifest counts; {REBUILD_HINT}"
        )
    if verify:
        _verify_postings(root, arrays, bsize, n_docs)


def _verify_postings(root: Path, arrays: dict[str, np.ndarray], bsize: int, n: int) -> None:
    """Full scans that keep the unchecked kernels in bounds; only worth it with verify=True."""
    order, slot = np.asarray(arrays[DOC_ORDER]), np.asarray(arrays[DOC_SLOT])
    ok = bool(n == 0 or (order.min() >= 0 and order.max() < n))
    ok = ok and bool(np.array_equal(slot[order], np.arange(n))) if ok else False
    ok = ok and layout_ok(
        arrays[TERM_PTR], arrays[BLOCK_PTR], arrays[BLOCK_ROWS], arrays[POST_DOCS],
        arrays[POST_IMPACTS], bsize, n,
    )  # fmt: skip
    if not ok:
        raise CorruptIndexError(f"{root}: postings hold out-of-range values; {REBUILD_HINT}")
