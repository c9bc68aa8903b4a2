"""Our engine against splade-index (PyPI), what a Python user would pick, on SciFact.

Both search the same splade-tiny vectors: the documents of one of our SciFact indexes (our
stored impacts, dequantized, so both rank the same weights) and the test queries encoded once
by that index's encoder; query encoding is left out of both. splade-index runs its numba
backend (its fastest CPU setting, `SPLADE(backend="numba")`) through the function its own
`retrieve()` calls after encoding; ours runs SparseIndex.search (exact, pruned). One query per
call (latency, one thread) and the whole query set per call (QPS, every thread), at k = 10
and 1000; engines alternate query by query so load drifts hit both alike.

    .venv/bin/pip install splade-index --no-deps
    .venv/bin/python -m benchmarks.splade_index_scifact --index indexes/scifact
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numba
import numpy as np

from benchmarks._common import DEFAULT_DATA, RESULTS_DIR, machine_info, versions


def load(index_path: Path, data: Path, split: str) -> tuple[Any, Any, Any]:
    from sparseretr.index.segments import Snapshot

    from sparseretr.beir import load_beir
    from sparseretr.encoders import load_encoder

    snap = Snapshot.open(index_path, dense=False)
    if len(snap.segments) != 1:
        raise SystemExit(f"{index_path}: one segment expected (a fresh build)")
    index = snap.first.sparse
    enc = load_encoder(index.encoder_config, index.encoder_dir)
    beir = load_beir(data, split)
    queries = enc.encode_queries([beir.queries[q] for q in sorted(beir.queries)])
    docs = index.doc_vectors(np.arange(index.n_docs))
    return index, queries, docs


def splade_index_engine(docs: Any) -> Any:
    """splade-index's numba retrieval over the same documents, term-major CSC as it stores."""
    from splade_index.numba.retrieve_utils import _retrieve_numba_functional

    csc = docs.to_scipy().tocsc()
    scores = {
        "data": csc.data.astype(np.float32),
        "indices": csc.indices.astype(np.int32),
        "indptr": csc.indptr.astype(np.int32),
        "num_docs": csc.shape[0],
    }

    def run(ids: list[np.ndarray], weights: list[np.ndarray], k: int, threads: int) -> np.ndarray:
        out, _ = _retrieve_numba_functional(
            ids, weights, scores, k=k, sorted=True, return_as="tuple", show_progress=False,
            n_threads=threads,
        )  # fmt: skip
        return out

    return run


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--index", type=Path, default=Path("indexes/scifact"))
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--split", default="test")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    index, queries, docs = load(args.index, args.data, args.split)
    theirs = splade_index_engine(docs)
    rows = [queries.row(i) for i in range(len(queries))]
    q_ids = [np.ascontiguousarray(t, dtype=np.int32) for t, _ in rows]
    q_w = [np.ascontiguousarray(w, dtype=np.float32) for _, w in rows]
    singles = [queries.slice([i]) for i in range(len(queries))]
    threads = numba.get_num_threads()
    out: dict[str, Any] = {
        "benchmark": "splade_index_scifact", "machine": machine_info(), "versions": versions(),
        "queries": len(queries), "n_docs": index.n_docs, "threads_batch": threads, "rows": [],
    }  # fmt: skip
    for k in (10, 1000):
        theirs(q_ids[:1], q_w[:1], k, 1)  # compile
        index.search(singles[0], k)
        lat = {"ours": [], "splade-index": []}
        overlap = []
        for rep in range(args.repeat):
            for i in range(len(queries)):
                numba.set_num_threads(1)
                order = ("ours", "splade-index") if (i + rep) % 2 else ("splade-index", "ours")
                for name in order:
                    t0 = time.perf_counter()
                    if name == "ours":
                        got = index.search(singles[i], k)[0][0]
                    else:
                        ref = theirs(q_ids[i : i + 1], q_w[i : i + 1], k, 1)[0]
                    lat[name].append(time.perf_counter() - t0)
                if rep == 0:
                    g = got[got >= 0].tolist()
                    overlap.append(len(set(g) & set(ref[: len(g)].tolist())) / max(len(g), 1))
        numba.set_num_threads(threads)
        batch = {}
        for name in ("ours", "splade-index"):
            best = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                if name == "ours":
                    index.search(queries, k)
                else:
                    theirs(q_ids, q_w, k, threads)
                best.append(time.perf_counter() - t0)
            batch[name] = len(queries) / min(best)
        for name in ("ours", "splade-index"):
            s = np.asarray(lat[name])
            out["rows"].append({
                "engine": name, "k": k, "mean_ms": float(s.mean() * 1e3),
                "p50_ms": float(np.median(s) * 1e3), "p99_ms": float(np.percentile(s, 99) * 1e3),
                "qps_one_thread": float(1 / s.mean()), f"qps_batch_{threads}_threads": batch[name],
            })  # fmt: skip
        out[f"k{k}_same_top_k_share"] = float(np.mean(overlap))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "splade-index-scifact.json"
    path.write_text(json.dumps(out, indent=2))
    for r in out["rows"]:
        print(json.dumps(r))
    print({k: v for k, v in out.items() if k.endswith("share")}, "->", path)
    return out


if __name__ == "__main__":
    main()
