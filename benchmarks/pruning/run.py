"""Dynamic pruning benchmark: our exhaustive and block-max pruned kernels vs scipy, bmp, Lucene.

Run on demand (never in CI timing):

    .venv/bin/python -m benchmarks.pruning.run --docs 100000
    .venv/bin/python -m benchmarks.pruning.run --docs 1000000 --no-lucene

Collections, indexes and the bmp/Lucene builds are cached under benchmarks/results/cache/
(generate and build once). One thread everywhere (Numba, BLAS); every engine answers the same
queries in an interleaved, shuffled order so that load drifts on a shared machine hit all
engines alike: read the ratios, not the absolute milliseconds. Writes
benchmarks/results/pruning-<docs>.{json,md,png}.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from sparseretr.index import SparseIndex, build_index
from sparseretr.index.vectors import SparseVectors

from benchmarks.pruning import engines as E
from benchmarks.pruning import synthetic

RESULTS = Path(__file__).resolve().parents[1] / "results"
ALPHAS = (0.9, 0.8, 0.7, 0.5)
FRACTIONS = (0.7, 0.5)
BMP_ALPHAS = (0.9, 0.8, 0.7, 0.5)
BMP_BETAS = (0.7, 0.5)


# ------------------------------------------------------------------------------ data + builds
def collection(cache: Path, n_docs: int, seed: int) -> SparseVectors:
    """The synthetic documents, generated once and memory-mapped afterwards."""
    folder = cache / f"synth-{n_docs}-s{seed}"
    if not (folder / E.DONE).is_file():
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        docs = synthetic.documents(n_docs, seed=seed)
        for name in ("indptr", "indices", "data"):
            np.save(folder / f"{name}.npy", getattr(docs, name))
        (folder / E.DONE).write_text(json.dumps({"generate_s": time.perf_counter() - t0}))
        del docs
        gc.collect()
    arrays = {n: np.load(folder / f"{n}.npy", mmap_mode="r") for n in ("indptr", "indices", "data")}
    return SparseVectors(vocab_size=synthetic.VOCAB, **arrays)


def our_index(cache: Path, docs: SparseVectors, tag: str, **build: Any) -> tuple[Path, float]:
    """Build (once) and return (path, build seconds) of one of our indexes."""
    path = cache / tag
    if not (path / "manifest.json").is_file():
        t0 = time.perf_counter()
        build_index(
            path, [str(i) for i in range(len(docs))], docs, encoder_config={}, overwrite=True,
            **build,
        )  # fmt: skip
        (cache / f"{tag}.build.json").write_text(json.dumps({"build_s": time.perf_counter() - t0}))
    return path, json.loads((cache / f"{tag}.build.json").read_text())["build_s"]


# ------------------------------------------------------------------------------------ timing
def time_interleaved(
    fns: dict[str, E.SearchFn], nq: int, k: int, repeat: int, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, list[np.ndarray]]]:
    """Per-call seconds for every engine, plus each engine's first-pass results."""
    names = list(fns)
    results: dict[str, list[np.ndarray]] = {n: [None] * nq for n in names}  # type: ignore[list-item]
    for n in names:  # warm-up (JIT, JVM, page cache) on a few queries
        for i in range(min(nq, 10)):
            fns[n](i, k)
    rng = np.random.default_rng(seed)
    per: dict[str, list[float]] = {n: [] for n in names}
    gc.collect()
    gc.disable()
    try:
        for rep in range(repeat):
            for pos, i in enumerate(rng.permutation(nq).tolist()):
                shift = (pos + rep) % len(names)
                for n in names[shift:] + names[:shift]:
                    t0 = time.perf_counter_ns()
                    out = fns[n](i, k)
                    per[n].append((time.perf_counter_ns() - t0) * 1e-9)
                    if rep == 0:
                        results[n][i] = out
    finally:
        gc.enable()
    return {n: np.asarray(v) for n, v in per.items()}, results


def recall_at_10(got: list[np.ndarray], exact: np.ndarray) -> float:
    vals = []
    for g, e in zip(got, exact, strict=True):
        e = e[:10]
        e = e[e >= 0]
        if e.size:
            vals.append(len(set(np.asarray(g)[:10].tolist()) & set(e.tolist())) / e.size)
    return float(np.mean(vals)) if vals else 1.0


def batch_scaling(
    index: SparseIndex, queries: SparseVectors, k: int, rounds: int = 9
) -> dict[str, Any]:
    """Throughput of one batch search (SparseIndex.search, pruned) on 1 thread vs every thread."""
    import numba

    n_max = numba.config.NUMBA_NUM_THREADS
    counts = sorted({1, n_max})
    secs: dict[int, list[float]] = {t: [] for t in counts}
    # Rounds alternate 1 thread and all threads, so load drift on a shared VM hits both alike;
    # at 1M docs a round takes ~1 s, and the ratio of single rounds ranged 1.3-2.0 here.
    for r in range(1 + rounds):
        for threads in counts:
            numba.set_num_threads(threads)
            t0 = time.perf_counter()
            index.search(queries, k)
            if r:  # round 0 warms up (compiles, faults the pages and the workspaces in)
                secs[threads].append(time.perf_counter() - t0)
    numba.set_num_threads(1)
    out: dict[str, Any] = {
        f"qps_{t}_threads": len(queries) / float(np.median(v)) for t, v in secs.items()
    }
    ratios = [a / b for a, b in zip(secs[1], secs[n_max], strict=True)]
    out["speedup"] = out[f"qps_{n_max}_threads"] / out["qps_1_threads"]
    out["speedup_rounds_min_max"] = [float(min(ratios)), float(max(ratios))]
    out["rounds"] = rounds
    out["threads"] = n_max
    return out


# ---------------------------------------------------------------------------------------- RSS
def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def probe(kind: str, path: str, queries_npz: str) -> dict[str, int]:
    """In a fresh process: RSS growth from loading an index, from running the queries one at a
    time on one thread, and (ours) from then running them as one batch on every thread, which
    adds the batch workers' kept workspaces."""
    z = np.load(queries_npz)
    q = SparseVectors(z["indptr"], z["indices"], z["data"], int(z["vocab"]))
    import numba

    numba.set_num_threads(1)
    if kind == "ours":  # compile before the baseline so JIT memory is not counted as index
        tiny = Path(path).parent / "_tiny_probe"
        if not (tiny / "manifest.json").is_file():
            build_index(tiny, ["a"], q.slice([0]), encoder_config={}, overwrite=True)
        SparseIndex.open(tiny).search(q.slice([0]), 10)
    base = _rss()
    if kind == "ours":
        index = SparseIndex.open(path)
        loaded = _rss()
        fn = E.ours(index, q)
    else:
        E._bmp_searcher(Path(path))
        loaded = _rss()
        fn = E.bmp_engine(Path(path), q, 1.0, 1.0)
    for i in range(len(q)):
        fn(i, 10)
    out = {"after_load": loaded - base, "after_queries": _rss() - base}
    if kind == "ours":
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        index.search(q, 10)
        out["after_batch"] = _rss() - base
    return out


def measure_rss(kind: str, path: Path, queries: SparseVectors, cache: Path) -> dict[str, int]:
    qfile = cache / "probe_queries.npz"
    np.savez(
        qfile, indptr=queries.indptr, indices=queries.indices, data=queries.data,
        vocab=queries.vocab_size,
    )  # fmt: skip
    cmd = [sys.executable, "-m", "benchmarks.pruning.run", "--probe", kind, str(path), str(qfile)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr[-500:]}  # type: ignore[dict-item]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bmp_build_child(index_path: str, out: str, block_size: str) -> dict[str, Any]:
    """In a fresh process: build one bmp index from ours; report its build and peak RSS."""
    import resource

    done = Path(out) / E.DONE
    cached = done.is_file()
    info = E.build_bmp(SparseIndex.open(index_path), Path(out), int(block_size))
    meta = json.loads(done.read_text())
    if not cached:  # the peak of this process is the build's only when it built
        meta["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        done.write_text(json.dumps(meta))
    return {"build_s": info["build_s"], "bytes": info["bytes"], "peak_rss": meta.get("peak_rss")}


def build_bmp(index_path: Path, out: Path, block_size: int) -> dict[str, Any]:
    """bmp's build in its own process. Why: bmp holds its whole forward index, its inverted
    index and then its block forward index in RAM at once (at block 8 and 1M documents that
    outgrows 24 GB), so the build must not also carry this process's memory, and a build killed
    for memory must cost the run only bmp's rows, with the reason recorded."""
    cmd = [sys.executable, "-m", "benchmarks.pruning.run", "--bmp-build",
           str(index_path), str(out), str(block_size)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        why = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        oom = proc.returncode == -9
        hint = " (killed: out of memory? see benchmarks/README.md on swap)" if oom else ""
        return {"error": f"bmp block {block_size} build failed, {why}{hint}: "
                f"{proc.stderr[-300:]}"}  # fmt: skip
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**info, "path": out / "index.bmp"}


def swap_pages() -> dict[str, int]:
    """Pages swapped in and out since boot (/proc/vmstat): a timing run that swapped measured
    the disk, not the engine, so the record carries the counts from before and after it."""
    out = {}
    try:
        with open("/proc/vmstat") as f:
            for line in f:
                name, _, value = line.partition(" ")
                if name in ("pswpin", "pswpout"):
                    out[name] = int(value)
    except OSError:
        pass
    return out


# ------------------------------------------------------------------------------------- main
def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--docs", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=200, help="per query set")
    p.add_argument("--k", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--static-top", type=int, default=200, help="doc_max_terms of the static run")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lucene", action=argparse.BooleanOptionalAction, default=None,
                   help="default: only up to 200k docs (1M is too slow to index here)")  # fmt: skip
    p.add_argument("--bmp", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--scipy", action=argparse.BooleanOptionalAction, default=True,
                   help="the scipy engine (its matrix takes ~8 bytes per posting in RAM)")
    p.add_argument("--bmp-blocks", type=int, nargs="+", default=[8, 32],
                   help="bmp block sizes: 8 is its fastest here, 32 its default")  # fmt: skip
    p.add_argument("--ablation", action=argparse.BooleanOptionalAction, default=None,
                   help="also an unordered index (default: only up to 200k docs)")  # fmt: skip
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--cache", type=Path, default=RESULTS / "cache")
    p.add_argument("--build-only", action="store_true", help="generate and build, then stop")
    p.add_argument("--probe", nargs=3, help=argparse.SUPPRESS)
    p.add_argument("--bmp-build", nargs=3, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    if args.probe:
        print(json.dumps(probe(*args.probe)))
        return {}
    if args.bmp_build:
        print(json.dumps(bmp_build_child(*args.bmp_build)))
        return {}
    import numba

    numba.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
    n = args.docs
    cache = args.cache
    cache.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    lucene = args.lucene if args.lucene is not None else n <= 200_000
    ablation = args.ablation if args.ablation is not None else n <= 200_000
    log = _logger()

    docs = collection(cache, n, args.seed)
    df = np.bincount(np.asarray(docs.indices), minlength=synthetic.VOCAB)
    qsets = {
        "siamese": integer_queries(synthetic.queries(n, args.queries, "siamese", seed=args.seed)),
        "inference-free": integer_queries(
            synthetic.queries(n, args.queries, "inference-free", doc_df=df, seed=args.seed)
        ),
    }
    calib = synthetic.describe(docs, qsets)
    log(f"collection: {json.dumps(calib)}")
    bs = args.block_size
    tag = f"synth-{n}-s{args.seed}"
    main_path, main_build = our_index(cache, docs, f"ours-{tag}-b{bs}", block_size=bs)
    index = SparseIndex.open(main_path)
    builds: dict[str, dict[str, Any]] = {
        "ours": _our_build_info(index, main_build),
    }
    static_path, static_build = our_index(
        cache, docs, f"ours-{tag}-b{bs}-top{args.static_top}", block_size=bs,
        doc_max_terms=args.static_top,
    )  # fmt: skip
    static = SparseIndex.open(static_path)
    builds[f"ours-static{args.static_top}"] = _our_build_info(static, static_build)
    unordered = None
    if ablation:
        un_path, un_build = our_index(
            cache, docs, f"ours-{tag}-b{bs}-unordered", block_size=bs, reorder=False
        )
        unordered = SparseIndex.open(un_path)
        builds["ours-unordered"] = _our_build_info(unordered, un_build)
    del docs
    log(f"our builds: {json.dumps(builds)}")

    bmp_info: dict[int, dict[str, Any]] = {}
    lucene_info = None
    for b in args.bmp_blocks if args.bmp else []:
        info = build_bmp(main_path, cache / f"bmp-{tag}-b{b}", b)
        if "error" in info:
            log(info["error"])
            builds[f"bmp-b{b}"] = {"error": info["error"]}
            continue
        bmp_info[b] = info
        builds[f"bmp-b{b}"] = {
            "build_s": info["build_s"], "bytes": info["bytes"],
            "bytes_per_posting": info["bytes"] / index.n_postings,
            "build_peak_rss": info["peak_rss"],
            "note": "excludes our reordering (bmp gets our clustered order)",
        }  # fmt: skip
    if lucene:
        why = E.lucene_unavailable()
        if why:
            log(f"Lucene skipped: {why}")
        else:
            lucene_info = E.build_lucene(index, cache / f"lucene-{tag}")
            builds["lucene"] = {
                "build_s": lucene_info["build_s"], "bytes": lucene_info["bytes"],
                "bytes_per_posting": lucene_info["bytes"] / index.n_postings,
            }  # fmt: skip
    log(f"builds: {json.dumps(builds, default=str)}")
    if args.build_only:
        return {"builds": builds}
    # RSS probes and batch scaling first, while this process holds nothing big: at 1M docs
    # bmp alone takes ~8 GB in RAM and its probe loads it again in a fresh process.
    rss = {"ours": measure_rss("ours", main_path, qsets["siamese"], cache)}
    for b, info in bmp_info.items():
        rss[f"bmp-b{b}"] = measure_rss("bmp", info["path"], qsets["siamese"], cache)
    log(f"rss: {rss}")
    batch = {qn: batch_scaling(index, q, 10) for qn, q in qsets.items()}
    log(f"batch scaling: {batch}")
    matrix = E.docs_by_term(index) if args.scipy else None

    rows: list[dict[str, Any]] = []
    swap_before = swap_pages()
    checks: dict[str, Any] = {}
    for qname, q in qsets.items():
        for k in args.k:
            exact_ids, exact_scores = index.search(q, max(k, 10), method="exhaustive")
            pruned_ids, pruned_scores = index.search(q, max(k, 10))
            checks[f"{qname}/k{k}/pruned_equals_exhaustive"] = bool(
                np.array_equal(exact_ids, pruned_ids)
                and np.array_equal(exact_scores, pruned_scores)
            )
            naive = E.naive_engine(index, q)
            same = [
                np.array_equal(naive(i, max(k, 10)), exact_ids[i][exact_ids[i] >= 0])
                for i in range(len(q))
            ]
            checks[f"{qname}/k{k}/exact_equals_naive_queries"] = [int(sum(same)), len(same)]
            stats = index.pruning_stats(q, k)
            checks[f"{qname}/k{k}/blocks_scored_fraction"] = float(
                stats[:, 1].sum() / max(stats[:, 0].sum(), 1)
            )
            fns, meta = _engines(
                index, static, unordered, matrix, bmp_info, lucene_info, q, k, args
            )
            log(f"timing {qname} k={k}: {len(fns)} engines x {len(q)} queries x {args.repeat}")
            per, results = time_interleaved(fns, len(q), k, args.repeat, args.seed)
            for name, secs in per.items():
                rows.append({
                    "engine": name, "queries": qname, "k": k, **meta[name],
                    "mean_ms": float(secs.mean() * 1e3),
                    "p50_ms": float(np.median(secs) * 1e3),
                    "p99_ms": float(np.percentile(secs, 99) * 1e3),
                    "qps": float(1.0 / secs.mean()),
                    "recall_at_10": recall_at_10(results[name], exact_ids),
                })  # fmt: skip
                r = rows[-1]
                log(f"  {name:28s} {r['mean_ms']:8.3f} ms  R@10 {r['recall_at_10']:.4f}")

    record = {
        "benchmark": "pruning",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_start_end": [list(_LOAD0), list(os.getloadavg())],
            "caveat": "2 shared cores: absolute ms drift with other users' load; compare "
            "engines within this run (interleaved timing)",
        },  # fmt: skip
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "collection": calib,
        "builds": builds,
        "rss_bytes": rss,
        "swap_pages_before_after_timing": [swap_before, swap_pages()],
        "batch_scaling": batch,
        "checks": checks,
        "rows": rows,
    }
    record["targets"] = targets(record)
    stem = args.out / f"pruning-{n}"
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2, default=str))
    stem.with_suffix(".md").write_text(markdown(record))
    plot(record, stem.with_suffix(".png"))
    log(f"wrote {stem}.json/.md/.png")
    return record


_LOAD0 = os.getloadavg()


def _logger() -> Any:
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[pruning {time.perf_counter() - t0:7.1f}s] {msg}", flush=True)

    return log


def _our_build_info(index: SparseIndex, build_s: float) -> dict[str, Any]:
    size = E.dir_bytes(index.path)
    return {
        "build_s": build_s,
        "bytes": size,
        "bytes_per_posting": size / max(index.n_postings, 1),
        "n_postings": index.n_postings,
        "layout": index.manifest["layout"],
    }


def _engines(
    index: SparseIndex,
    static: SparseIndex,
    unordered: SparseIndex | None,
    matrix: Any,
    bmp_info: dict[int, dict[str, Any]],
    lucene_info: dict | None,
    q: SparseVectors,
    k: int,
    args: argparse.Namespace,
) -> tuple[dict[str, E.SearchFn], dict[str, dict[str, Any]]]:
    """name -> search fn and name -> {family, mode, knobs}; approximate knobs only at k=10."""
    fns: dict[str, E.SearchFn] = {}
    meta: dict[str, dict[str, Any]] = {}

    def add(name: str, fn: E.SearchFn, family: str, mode: str, **knobs: Any) -> None:
        fns[name] = fn
        meta[name] = {"family": family, "mode": mode, "knobs": knobs}

    add("naive-taat", E.naive_engine(index, q), "naive", "exact")
    add("ours-exhaustive", E.ours(index, q, method="exhaustive"), "ours", "exact")
    add("ours-pruned", E.ours(index, q), "ours", "exact")
    if matrix is not None:
        add("scipy", E.scipy_engine(matrix, q), "scipy", "exact")
    for b, info in bmp_info.items():
        add(f"bmp-b{b}", E.bmp_engine(info["path"], q, 1.0, 1.0), "bmp", "exact*", block=b)
    if lucene_info:
        add("lucene", E.lucene_engine(lucene_info["path"], q), "lucene", "exact*")
    if k != 10:
        return fns, meta
    if unordered is not None:
        add("ours-pruned-unordered", E.ours(unordered, q), "ours", "exact")
    for a in ALPHAS:
        add(f"ours-alpha{a}", E.ours(index, q, alpha=a), "ours", "approx", alpha=a)
    for f in FRACTIONS:
        add(f"ours-terms{f}", E.ours(index, q, term_fraction=f), "ours", "approx", term_fraction=f)
    add("ours-alpha0.8-terms0.7", E.ours(index, q, alpha=0.8, term_fraction=0.7), "ours",
        "approx", alpha=0.8, term_fraction=0.7)  # fmt: skip
    add(f"ours-static{args.static_top}", E.ours(static, q), "ours", "approx",
        doc_max_terms=args.static_top)  # fmt: skip
    if bmp_info:  # approximate settings on its fastest block size
        b0 = min(bmp_info)
        path = bmp_info[b0]["path"]
        for a in BMP_ALPHAS:
            add(f"bmp-b{b0}-alpha{a}", E.bmp_engine(path, q, a, 1.0), "bmp", "approx", alpha=a,
                block=b0)  # fmt: skip
        for b in BMP_BETAS:
            add(f"bmp-b{b0}-beta{b}", E.bmp_engine(path, q, 1.0, b), "bmp", "approx", beta=b,
                block=b0)  # fmt: skip
    return fns, meta


# ----------------------------------------------------------------------------------- report
def integer_queries(q: SparseVectors) -> SparseVectors:
    """Query weights scaled per query so the largest is 255, rounded (at least 1): every
    engine then sums integers, so float32 sums are exact (255 x 255 x terms < 2^24) and the
    naive kernel, ours and scipy must return the same ids; Lucene takes the same 8-bit
    weights, bmp requantizes them to its own 32 levels."""
    data = q.data.astype(np.float64)
    rowmax = np.maximum.reduceat(data, q.indptr[:-1]) if q.nnz else data
    rowmax = np.repeat(rowmax, np.diff(q.indptr)) if q.nnz else data
    w = np.maximum(1, np.rint(data / rowmax * 255)).astype(np.float32)
    return SparseVectors(q.indptr, q.indices, w, q.vocab_size)


def _row(rows: list[dict], engine: str, qname: str, k: int) -> dict | None:
    return next(
        (r for r in rows if (r["engine"], r["queries"], r["k"]) == (engine, qname, k)), None
    )


def targets(rec: dict[str, Any]) -> dict[str, Any]:
    """The speed targets, evaluated on this run (one thread, mean ms per query): exhaustive
    and pruned at large k no slower than the naive kernel, pruned k=10 at most 0.8x bmp's
    best block size, and the exact top-k equal to the naive kernel's on every query."""
    rows, out = rec["rows"], {}
    for qname in sorted({r["queries"] for r in rows}):
        t: dict[str, Any] = {}
        for k in sorted({r["k"] for r in rows if r["queries"] == qname}):
            nv = _row(rows, "naive-taat", qname, k)
            ex, pr = _row(rows, "ours-exhaustive", qname, k), _row(rows, "ours-pruned", qname, k)
            if nv and ex and pr:
                t[f"k{k}/exhaustive_over_naive"] = ex["mean_ms"] / nv["mean_ms"]
                t[f"k{k}/pruned_over_naive"] = pr["mean_ms"] / nv["mean_ms"]
                t[f"k{k}/exhaustive_le_naive"] = ex["mean_ms"] <= nv["mean_ms"]
                if k >= 100:
                    t[f"k{k}/pruned_le_naive"] = pr["mean_ms"] <= nv["mean_ms"]
            bmps = [
                r for r in rows
                if r["queries"] == qname and r["k"] == k and r["engine"].startswith("bmp-b")
                and r["mode"] == "exact*"
            ]  # fmt: skip
            if pr and bmps:
                best = min(bmps, key=lambda r: r["mean_ms"])
                t[f"k{k}/bmp_best"] = [best["engine"], best["mean_ms"]]
                t[f"k{k}/pruned_over_bmp_best"] = pr["mean_ms"] / best["mean_ms"]
                if k == 10:
                    t["k10/pruned_le_0.8x_bmp_best"] = pr["mean_ms"] <= 0.8 * best["mean_ms"]
            same = rec["checks"].get(f"{qname}/k{k}/exact_equals_naive_queries")
            if same:
                t[f"k{k}/exact_equals_naive_on_every_query"] = same[0] == same[1]
        out[qname] = t
    return out


def markdown(rec: dict[str, Any]) -> str:
    c = rec["collection"]
    lines = [
        f"# Pruning benchmark: {c['n_docs']:,} synthetic docs, {c['n_postings']:,} postings",
        "",
        f"One thread, interleaved timing. {rec['machine']['caveat']}. Load average at start/end: "
        f"{rec['machine']['load_avg_start_end']}.",
        f"Docs: {c['doc_nnz_mean']:.0f} nnz mean; queries: siamese "
        f"{c['siamese_nnz_mean']:.0f} terms, inference-free {c['inference-free_nnz_mean']:.0f}.",
        "Query weights are integers (1-255 per query), so exact engines agree to the id; "
        "exact* = bmp requantizes them to its own 32 levels, so its recall is below 1 by "
        "construction.",
        "",
        "| engine | queries | k | mode | mean ms | p50 ms | p99 ms | QPS | recall@10 |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rec["rows"]:
        lines.append(
            f"| {r['engine']} | {r['queries']} | {r['k']} | {r['mode']} | {r['mean_ms']:.3f} | "
            f"{r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['qps']:.0f} | {r['recall_at_10']:.4f} |"
        )
    lines += ["", "| build | seconds | bytes | bytes/posting |", "|---|---:|---:|---:|"]
    for name, b in rec["builds"].items():
        if "error" in b:
            lines.append(f"| {name} | {b['error'][:120]} | | |")
            continue
        lines.append(
            f"| {name} | {b['build_s']:.1f} | {b['bytes']:,} | {b['bytes_per_posting']:.2f} |"
        )
    lines += ["", "RSS growth (bytes): " + json.dumps(rec["rss_bytes"])]
    lines += ["", "Swap pages in/out before and after the timing: "
              + json.dumps(rec["swap_pages_before_after_timing"])]  # fmt: skip
    lines += ["", "Batch scaling (pruned, k=10): " + json.dumps(rec["batch_scaling"])]
    lines += ["", "Checks: " + json.dumps(rec["checks"])]
    lines += ["", "## Targets", "", "```", json.dumps(rec["targets"], indent=2), "```", ""]
    return "\n".join(lines)


def plot(rec: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    qnames = sorted({r["queries"] for r in rec["rows"]})
    fig, axes = plt.subplots(1, len(qnames), figsize=(6.5 * len(qnames), 5), squeeze=False)
    colors = {"ours": "tab:blue", "bmp": "tab:orange", "scipy": "tab:green", "lucene": "tab:red"}
    for ax, qn in zip(axes[0], qnames, strict=True):
        for r in rec["rows"]:
            if r["queries"] != qn or r["k"] != 10:
                continue
            ax.scatter(r["mean_ms"], r["recall_at_10"], color=colors.get(r["family"], "gray"),
                       marker="o" if r["mode"].startswith("exact") else "x")  # fmt: skip
            ax.annotate(r["engine"], (r["mean_ms"], r["recall_at_10"]), fontsize=6)
        ax.set_xscale("log")
        ax.set_xlabel("mean ms / query (one thread, log)")
        ax.set_ylabel("recall@10 vs exact")
        ax.set_title(f"{qn} queries, k=10, {rec['collection']['n_docs']:,} docs")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


if __name__ == "__main__":
    main(sys.argv[1:])
