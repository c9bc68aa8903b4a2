"""Give a built index a dense side computed elsewhere, for the same documents in the same order.

Why: encoding a corpus with the dense model is the costly part of a build (minutes for a few
thousand documents on CPU). `sparseretr adapt` has those vectors already (its dense teacher),
and experiments that evaluate several sparse models in hybrid share one dense side; rows are
addressed by the index's internal doc order, so the document ids are checked, not assumed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sparseretr.index.dense import DENSE_DIR, DenseIndex, Kind
from sparseretr.index.errors import UserInputError
from sparseretr.index.segments import Snapshot


def attach_dense(
    target: str | Path,
    embeddings: np.ndarray,
    encoder_config: Mapping[str, Any],
    doc_ids: Sequence[str],
    *,
    kind: Kind = "flat",
) -> Path:
    """Write `embeddings` (row i = doc_ids[i]) as the dense side of a single-segment index."""
    snap = Snapshot.open(target, dense=False)
    if len(snap.segments) != 1:
        raise UserInputError(f"{target}: only a single-segment batch build takes a dense side")
    seg = snap.first
    ids = [str(d) for d in seg.sparse.doc_ids(np.arange(seg.n_docs))]
    if len(doc_ids) != len(ids) or any(a != str(b) for a, b in zip(ids, doc_ids, strict=True)):
        raise UserInputError(f"{target} does not hold the same documents in the same order")
    out = seg.sparse.path / DENSE_DIR
    if out.exists():
        raise FileExistsError(f"{out} already exists")
    write = DenseIndex.writer(embeddings, encoder_config, kind=kind)  # validates before writing
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    os.replace(tmp, out)
    DenseIndex.open(out, n_docs=seg.n_docs)  # opens cleanly where the engine will look
    return out


def copy_dense(target: str | Path, source: str | Path) -> Path:
    """Copy another index's dense side (same documents, same order) into `target`."""
    src = Snapshot.open(source)
    if len(src.segments) != 1:
        raise UserInputError(f"{source}: only a single-segment batch build can lend its dense side")
    a = src.first
    if a.dense is None:
        raise UserInputError(f"{source} has no dense side (build it with --dense)")
    ids = [str(d) for d in a.sparse.doc_ids(np.arange(a.n_docs))]
    return attach_dense(target, a.dense.vectors, a.dense.encoder_config, ids, kind=a.dense.kind)
