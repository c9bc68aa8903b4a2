"""Give an index the dense side of another index built from the same corpus, for hybrid evals.

Why: every trained sparse model of an experiment is evaluated in hybrid with the same dense
model over the same documents; encoding SciFact with MiniLM again for each (minutes of CPU)
would only reproduce identical rows. This copies `dense/` across after checking that both
indexes hold the same documents in the same order (dense rows are addressed by that order).

    python -m sparseretr.eval.attach_dense TARGET_INDEX SOURCE_INDEX
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
from sparseretr.index.dense import DENSE_DIR, DenseIndex
from sparseretr.index.segments import Snapshot


def attach_dense(target: str | Path, source: str | Path) -> Path:
    """Copy source's dense side into target's (single) segment; returns the folder written."""
    src, dst = Snapshot.open(source), Snapshot.open(target, dense=False)
    if len(src.segments) != 1 or len(dst.segments) != 1:
        raise ValueError("both indexes must be single-segment batch builds")
    a, b = src.first, dst.first
    if a.dense is None:
        raise ValueError(f"{source} has no dense side (build it with --dense)")
    ids_a = np.asarray(a.sparse.doc_ids(np.arange(a.n_docs)))
    ids_b = np.asarray(b.sparse.doc_ids(np.arange(b.n_docs)))
    if ids_a.shape != ids_b.shape or not np.array_equal(ids_a, ids_b):
        raise ValueError(f"{target} and {source} do not hold the same documents in the same order")
    out = b.sparse.path / DENSE_DIR
    if out.exists():
        raise FileExistsError(f"{out} already exists")
    shutil.copytree(a.dense.path, out)
    DenseIndex.open(out, n_docs=b.n_docs)  # opens cleanly where the engine will look
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("target")
    p.add_argument("source")
    a = p.parse_args(argv)
    try:
        print(f"attached: {attach_dense(a.target, a.source)}")
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
