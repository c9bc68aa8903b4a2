"""Index build throughput from already-encoded vectors, and live write throughput.

Why: encoding dominates a build, but the postings step (quantize, cluster the documents into
blocks, encode block postings) must not become the bottleneck at millions of documents, and a
live index must take writes faster than users send them. Anchors from the same run: inverting
the same vectors into a term-major scipy CSC matrix (the least any inverted index must do), and,
for live writes, one batch build of the same documents.

    .venv/bin/python -m benchmarks.build_throughput [--docs 1000000] [--index indexes/scifact]
        [--writes 20000]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sparseretr.index import build_index
from sparseretr.index.segments import Snapshot, build_segmented
from sparseretr.index.vectors import SparseVectors
from sparseretr.index.writer import IndexWriter

from benchmarks._common import (
    RESULTS_DIR,
    machine_info,
    markdown,
    pinned_threads,
    versions,
    write_json,
)


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def postings_rates(name: str, vectors: SparseVectors, tmp: Path) -> dict[str, Any]:
    """docs/s of build_index (with and without clustering) against scipy's CSR -> CSC."""
    n = len(vectors)
    ids = [str(i) for i in range(n)]
    anchor = _timed(lambda: vectors.to_scipy().tocsc())
    full = _timed(lambda: build_index(tmp / f"{name}-full", ids, vectors, encoder_config={}))
    plain = _timed(
        lambda: build_index(tmp / f"{name}-plain", ids, vectors, encoder_config={}, reorder=False)
    )
    size = sum(p.stat().st_size for p in (tmp / f"{name}-full").rglob("*") if p.is_file())
    for d in (f"{name}-full", f"{name}-plain"):
        shutil.rmtree(tmp / d, ignore_errors=True)
    return {
        "collection": name,
        "docs": n,
        "postings": vectors.nnz,
        "scipy_csc_s": anchor,
        "build_s": full,
        "build_no_reorder_s": plain,
        "docs_per_s": n / full,
        "docs_per_s_no_reorder": n / plain,
        "vs_scipy": full / anchor,
        "index_bytes": size,
    }


def live_writes(vectors: SparseVectors, n_writes: int, tmp: Path, batch: int = 100) -> dict:
    """Durable upserts/s through IndexWriter (refresh every 10 batches, merges on) against one
    batch build of the same documents."""
    base = min(len(vectors) - n_writes, 10_000)
    ids = [f"b{i}" for i in range(base)]
    root = build_segmented(tmp / "live", ids, vectors.slice(np.arange(base)), encoder_config={})
    w = IndexWriter(root, max_segments=8)
    new = vectors.slice(np.arange(base, base + n_writes))
    t0 = time.perf_counter()
    refresh_s = 0.0
    for j, a in enumerate(range(0, n_writes, batch)):
        rows = np.arange(a, min(a + batch, n_writes))
        w.upsert([f"n{i}" for i in rows], [{"id": f"n{i}"} for i in rows], new.slice(rows))
        if j % 10 == 9:
            refresh_s += _timed(w.refresh)
    refresh_s += _timed(w.refresh)
    w.wait_for_merges()
    total = time.perf_counter() - t0
    snap: Snapshot = w.snapshot
    segments = len(snap.segments)
    w.close()
    anchor = _timed(
        lambda: build_index(tmp / "batch", [f"n{i}" for i in range(n_writes)], new,
                            encoder_config={}, docs=[{"id": f"n{i}"} for i in range(n_writes)])
    )  # fmt: skip
    return {
        "writes": n_writes,
        "batch": batch,
        "upserts_per_s": n_writes / total,
        "refresh_s_total": refresh_s,
        "segments_after": segments,
        "batch_build_docs_per_s": n_writes / anchor,
        "live_vs_batch": (n_writes / total) / (n_writes / anchor),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=100_000, help="synthetic collection size")
    p.add_argument("--index", type=Path, default=None, help="also rebuild this index's vectors")
    p.add_argument("--writes", type=int, default=20_000, help="live upserts (0: skip)")
    p.add_argument("--cache", type=Path, default=RESULTS_DIR / "cache")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    from benchmarks.pruning.run import collection

    rows = []
    with pinned_threads(1) as threads, tempfile.TemporaryDirectory(dir=a.cache.parent) as t:
        tmp = Path(t)
        synth = collection(a.cache, a.docs, 0)
        rows.append(postings_rates(f"synthetic-{a.docs}", synth, tmp))
        if a.index is not None:
            snap = Snapshot.open(a.index, dense=False)
            seg = snap.first.sparse
            rows.append(postings_rates(a.index.name, seg.doc_vectors(np.arange(seg.n_docs)), tmp))
        live = live_writes(synth, a.writes, tmp) if a.writes else None
    record = {"machine": machine_info(), "versions": versions(), "threads": threads,
              "postings": rows, "live": live}  # fmt: skip
    path = write_json(record, "build_throughput", a.out)
    print(markdown(
        ["collection", "docs", "postings", "build s", "docs/s", "docs/s no reorder",
         "scipy CSC s (anchor)", "build / anchor"],
        [[r["collection"], r["docs"], r["postings"], r["build_s"], r["docs_per_s"],
          r["docs_per_s_no_reorder"], r["scipy_csc_s"], r["vs_scipy"]] for r in rows],
    ))  # fmt: skip
    if live:
        print(markdown(
            ["live writes", "upserts/s (durable)", "batch build docs/s (anchor)", "live / batch",
             "segments after"],
            [[live["writes"], live["upserts_per_s"], live["batch_build_docs_per_s"],
              live["live_vs_batch"], live["segments_after"]]],
        ))  # fmt: skip
    print(f"results: {path}")
    return record


if __name__ == "__main__":
    main()
