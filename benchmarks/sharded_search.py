"""Sharded search on Ray against one process over the same documents, at 1, 2 and 3 shards.

    .venv/bin/python -m benchmarks.sharded_search --synthetic 1000000   # 1M synthetic docs
    .venv/bin/python -m benchmarks.sharded_search --index indexes/scifact-run \\
        --data ../shared/data/beir/scifact                             # SciFact, every mode

The anchor is the unsplit index searched in this process (Snapshot.search, the call the
Engine makes after encoding). Each sharded row is the same queries through the router
(sparseretr.cluster: one Ray actor per shard, exact per-shard top-k merged here) over a copy of
the index split into 3 segments (`sparseretr index split`). Queries are encoded once, before
timing, so the rows differ only in where the postings are searched. Every row checks that its
top-k (ids and scores) equals the anchor's on every query; with --index it also checks every
mode through the full Engine path (open_sharded) on the BEIR split's queries.

Measured: sequential single queries (p50, p99), 8 client threads sending single queries (QPS)
and batches of 32 queries (QPS), at k=10 and k=1000. On one machine shards share its cores:
the rows show what Ray's hop costs and what parallel shards buy per query; on a cluster each
shard has a machine of its own. Writes benchmarks/results/sharded_search-*.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from sparseretr.index.segments import Snapshot, build_segmented
from sparseretr.index.vectors import SparseVectors

from benchmarks._common import RESULTS_DIR, machine_info, markdown, versions, write_json

SPLIT = 3


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--index", type=Path, help="a built (unsplit) index; queries from --data")
    src.add_argument("--synthetic", type=int, metavar="DOCS", help="synthetic SPLADE-like docs")
    p.add_argument("--data", type=Path, help="BEIR folder whose --split queries are searched")
    p.add_argument("--split", default="test")
    p.add_argument("--queries", type=int, default=1000, help="synthetic queries")
    p.add_argument("--shards", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("-k", type=int, nargs="+", default=[10, 1000])
    p.add_argument("--clients", type=int, default=8, help="threads sending single queries")
    p.add_argument("--batch", type=int, default=32, help="queries per batch call")
    p.add_argument("--cache", type=Path, default=RESULTS_DIR / "cache")
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


# ------------------------------------------------------------------------------ setup
def synthetic_index(cache: Path, n_docs: int, n_queries: int) -> tuple[Path, SparseVectors]:
    """A segmented index over the pruning benchmark's synthetic collection (built once) and
    inference-free queries over the same topics."""
    from benchmarks.pruning import synthetic
    from benchmarks.pruning.run import collection

    docs = collection(cache, n_docs, 0)
    path = cache / f"sharded-synth-{n_docs}"
    if not path.is_dir():
        build_segmented(path, [str(i) for i in range(len(docs))], docs, encoder_config={})
    df = np.bincount(np.asarray(docs.indices), minlength=synthetic.VOCAB)
    return path, synthetic.queries(n_docs, n_queries, "inference-free", doc_df=df, seed=0)


def beir_queries(index: Path, data: Path, split: str) -> tuple[list[str], SparseVectors]:
    from sparseretr.beir import load_beir
    from sparseretr.encoders import load_encoder

    beir = load_beir(data, split=split)
    texts = [beir.queries[q] for q in beir.queries]
    snap = Snapshot.open(index, dense=False)
    sparse = snap.first.sparse
    encoder = load_encoder(sparse.encoder_config, sparse.encoder_dir)
    snap.close()
    return texts, encoder.encode_queries(texts)


def split_copy(index: Path, cache: Path) -> Path:
    """index copied and split into SPLIT segments, once per index commit."""
    from sparseretr.index.segments import read_commit
    from sparseretr.index.writer import IndexWriter

    commit = read_commit(index)
    out = cache / f"{index.name}.split{SPLIT}-g{commit['generation']}"
    if not out.is_dir():
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(index, tmp, ignore=shutil.ignore_patterns("write.lock"))
        w = IndexWriter(tmp, background_merges=False)
        w.split(SPLIT)
        w.close()
        tmp.rename(out)
    return out


# ----------------------------------------------------------------------------- timing
def run_row(snap: Any, q: SparseVectors, k: int, clients: int, batch: int) -> dict[str, Any]:
    """Latency of sequential single queries, then QPS of concurrent singles and of batches;
    returns the timings and every query's hits (from the sequential pass)."""
    singles = [q.slice([i]) for i in range(len(q))]
    for s in singles[:5]:
        snap.search("sparse", s, k)  # warm-up: JIT (single and batch kernels), page cache
    snap.search("sparse", q.slice(np.arange(min(batch, len(q)))), k)
    lat, hits = [], []
    for s in singles:
        t0 = time.perf_counter()
        hits.append(snap.search("sparse", s, k)[0])
        lat.append(time.perf_counter() - t0)
    with ThreadPoolExecutor(clients) as pool:
        t0 = time.perf_counter()
        list(pool.map(lambda s: snap.search("sparse", s, k), singles))
        concurrent_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for a in range(0, len(q), batch):
        snap.search("sparse", q.slice(np.arange(a, min(a + batch, len(q)))), k)
    batch_s = time.perf_counter() - t0
    ms = np.array(lat) * 1e3
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "qps_clients": len(q) / concurrent_s,
        "qps_batch": len(q) / batch_s,
        "_hits": [[(h.id, h.score) for h in r] for r in hits],
    }


def engine_modes_check(index: Path, split: Path, shards: int, texts: list[str]) -> dict:
    """Every mode through the full Engine path: sharded (Ray) against the unsplit index."""
    from sparseretr.cluster.deploy import open_sharded
    from sparseretr.engine import Engine

    one = Engine.open(index)
    many = open_sharded(split, shards)
    out = {}
    try:
        for mode in one.modes:
            for k in (10, 100):
                a = one.search(texts, k=k, mode=mode)
                b = many.search(texts, k=k, mode=mode)
                same = sum(
                    [(h.id, h.score) for h in x.hits] == [(h.id, h.score) for h in y.hits]
                    for x, y in zip(a, b, strict=True)
                )
                out[f"{mode}@{k}"] = f"{same}/{len(texts)}"
    finally:
        one.close()
        many.close()
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import ray

    from sparseretr.cluster.deploy import start_shards

    a = parse(argv)
    a.cache.mkdir(parents=True, exist_ok=True)
    texts: list[str] | None = None
    if a.synthetic:
        index, q = synthetic_index(a.cache, a.synthetic, a.queries)
    else:
        if a.data is None:
            raise SystemExit("--index needs --data (the BEIR folder whose queries to search)")
        index = a.index.absolute()
        texts, q = beir_queries(index, a.data, a.split)
    split = split_copy(index, a.cache)
    anchor = Snapshot.open(index, dense=False)
    n_docs = anchor.n_docs
    ray.init(num_cpus=max(3, max(a.shards)), include_dashboard=False, log_to_driver=False)
    rows: list[dict[str, Any]] = []
    try:
        for k in a.k:
            ref = run_row(anchor, q, k, a.clients, a.batch)
            rows.append({"engine": "one process, unsplit (anchor)", "shards": 0, "k": k, **ref})
            local = Snapshot.open(split, dense=False)
            rows.append({"engine": f"one process, {SPLIT} segments", "shards": 0, "k": k,
                         **run_row(local, q, k, a.clients, a.batch)})  # fmt: skip
            local.close()
            for s in a.shards:
                sharded = start_shards(split, s, dense=False)
                try:
                    row = run_row(sharded, q, k, a.clients, a.batch)
                finally:
                    sharded.close()
                rows.append({"engine": "Ray shards", "shards": s, "k": k, **row})
            for r in rows[-(2 + len(a.shards)) :]:
                pairs = list(zip(r["_hits"], ref["_hits"], strict=True))
                r["identical"] = sum(x == y for x, y in pairs)
                # Ties at the k-th score may keep other documents: the scores still agree.
                r["same_scores"] = sum([s for _, s in x] == [s for _, s in y] for x, y in pairs)
                r["vs_anchor_p50"] = r["p50_ms"] / ref["p50_ms"]
                r["vs_anchor_qps_clients"] = r["qps_clients"] / ref["qps_clients"]
                r["vs_anchor_qps_batch"] = r["qps_batch"] / ref["qps_batch"]
        modes = engine_modes_check(index, split, SPLIT, texts) if texts else None
    finally:
        anchor.close()
        ray.shutdown()
    for r in rows:
        r.pop("_hits")
    table = markdown(
        ["engine", "shards", "k", "p50 ms", "p99 ms", "QPS 8 clients", "QPS batch",
         "p50 / anchor", "QPS clients / anchor", "QPS batch / anchor", "identical",
         "same scores"],
        [[r["engine"], r["shards"] or "–", r["k"], r["p50_ms"], r["p99_ms"], r["qps_clients"],
          r["qps_batch"], r["vs_anchor_p50"], r["vs_anchor_qps_clients"],
          r["vs_anchor_qps_batch"], f"{r['identical']}/{len(q)}",
          f"{r['same_scores']}/{len(q)}"] for r in rows],
    )  # fmt: skip
    record = {
        "source": f"synthetic {a.synthetic}" if a.synthetic else str(a.index),
        "n_docs": n_docs,
        "queries": len(q),
        "settings": {"clients": a.clients, "batch": a.batch, "split_segments": SPLIT},
        "rows": rows,
        "engine_modes_identical": modes,
        "machine": machine_info(),
        "versions": versions(),
    }
    path = write_json(record, "sharded_search", a.out)
    print(table)
    if modes:
        print("every mode, Engine path, sharded vs unsplit:", json.dumps(modes))
    print(f"wrote {path}")
    return record


if __name__ == "__main__":
    main()
