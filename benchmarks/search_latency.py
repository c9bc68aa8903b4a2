"""Single-thread query latency of our Numba index vs scipy and Lucene on the same vectors.

Why: the kernels are only worth owning if they beat the obvious alternatives on real learned-
sparse queries. All engines score the SAME quantized document impacts with the SAME encoded
queries, one thread each, interleaved query by query (so a noisy, shared machine slows all of
them alike); results are reported as ratios to our engine measured in the same run.

    .venv/bin/python -m benchmarks.search_latency [--index indexes/scifact] [--no-lucene]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import inspect
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from benchmarks._common import (
    DEFAULT_DATA,
    RESULTS_DIR,
    machine_info,
    markdown,
    pinned_threads,
    versions,
    write_json,
)

SearchFn = Callable[[int, int], Any]  # (query number, k) -> engine-native result
DONE_MARKER = ".bench-complete"


# ----------------------------------------------------------------------------- setup
def open_or_build_index(path: Path, data: Path, encoder: str) -> Any:
    """Open the index at path, building it from the corpus first when it does not exist."""
    from sparseretr.index.segments import Snapshot, is_segmented

    if not (path / "manifest.json").is_file() and not is_segmented(path):
        from sparseretr.batch import build_from_corpus
        from sparseretr.encoders import create_encoder

        print(f"[search_latency] no index at {path}: building it with encoder {encoder!r} ...")
        summary = build_from_corpus(data, path, create_encoder(encoder), show_progress=True)
        print(f"[search_latency] built {summary.n_docs} docs in {summary.total_s:.0f}s")
    snap = Snapshot.open(path, dense=False)
    if len(snap.segments) != 1:
        raise SystemExit(f"{path} has {len(snap.segments)} segments; benchmark a batch build")
    return snap.first.sparse


def encode_queries(index: Any, data: Path, split: str, limit: int | None) -> tuple[list[str], Any]:
    """The split's judged queries, encoded once with the index's own encoder (not timed)."""
    from sparseretr.beir import load_beir
    from sparseretr.encoders import load_encoder

    beir = load_beir(data, split=split)
    qids = list(beir.queries)[:limit] if limit else list(beir.queries)
    encoder = load_encoder(index.encoder_config, index.encoder_dir)
    return qids, encoder.encode_queries([beir.queries[q] for q in qids])


def index_checksum(index: Any) -> str:
    """Content key of the index (its manifest's file sha256s and scale), for the Lucene cache."""
    h = hashlib.sha256()
    for name, entry in sorted(index.manifest["files"].items()):
        h.update(f"{name}:{entry.get('sha256')}\n".encode())
    h.update(repr(index.scale).encode())
    return h.hexdigest()[:16]


def impacts_checksum(impacts: sp.csr_matrix) -> str:
    """Content key of the impacts themselves: the Lucene cache survives layout-only changes."""
    h = hashlib.sha256()
    for a in (impacts.indptr.astype(np.int64), impacts.indices.astype(np.int32), impacts.data):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(repr(impacts.shape).encode())
    return h.hexdigest()[:16]


def term_impacts(index: Any) -> sp.csr_matrix:
    """The quantized impacts as an int32 [vocab, n_docs] CSR matrix (columns = internal ids),
    rebuilt through the public search API alone, so the benchmark keeps working when the
    on-disk layout changes (see _impacts_via_search)."""
    return _impacts_via_search(index)


def _impacts_via_search(index: Any, budget: int = 1 << 22) -> sp.csr_matrix:
    """One single-term query of weight 1 per term with k = n_docs: scores are impact * scale.

    Seconds on SciFact; `budget` bounds the [terms, n_docs] result block held at once.
    """
    from sparseretr.index.vectors import SparseVectors

    vocab, n = index.vocab_size, index.n_docs
    chunk = max(1, budget // max(1, n))
    # Exhaustive where the index offers a choice: pruning cannot help when k = n_docs.
    kw = {"method": "exhaustive"} if "method" in inspect.signature(index.search).parameters else {}
    rows, cols, vals = [], [], []
    for a in range(0, vocab, chunk):
        terms = np.arange(a, min(vocab, a + chunk), dtype=np.int32)
        q = SparseVectors(
            np.arange(terms.size + 1, dtype=np.int64), terms, np.ones(terms.size, np.float32), vocab
        )
        ids, scores = index.search(q, n, **kw)
        r, c = np.nonzero(ids >= 0)
        rows.append(terms[r])
        cols.append(ids[r, c])
        vals.append(np.rint(scores[r, c] / np.float32(index.scale)).astype(np.int32))
    m = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(vocab, n)
    )
    m.sort_indices()
    return m


def dequantized(impacts: sp.csr_matrix, scale: float) -> sp.csr_matrix:
    """impacts * scale in float32, as the engines without integer scoring see the weights."""
    out = impacts.astype(np.float32)
    out.data *= np.float32(scale)
    return out


def quantize_queries(queries: Any, factor: float) -> list[dict[str, int]]:
    """Per query {term id as str: round(w * factor)}, zero weights dropped (Lucene needs ints)."""
    out = []
    for i in range(len(queries)):
        terms, weights = queries.row(i)
        q = {
            str(int(t)): int(round(float(w) * factor)) for t, w in zip(terms, weights, strict=True)
        }
        out.append({t: w for t, w in q.items() if w > 0})
    return out


# ----------------------------------------------------------------------------- engines
def ours_engines(index: Any, queries: Any) -> dict[str, SearchFn]:
    """(a) SparseIndex.search on single-query SparseVectors ("ours", the anchor).

    When search() takes a `method` (e.g. exhaustive vs pruned), each method gets its own row
    "ours[<method>]" as well; "ours" stays the default call.
    """
    from sparseretr.index.vectors import SparseVectors

    singles = []
    for i in range(len(queries)):
        t, w = queries.row(i)
        indptr = np.array([0, t.size], dtype=np.int64)
        singles.append(SparseVectors(indptr, t.copy(), w.copy(), queries.vocab_size))

    def make(**kw: Any) -> SearchFn:
        def search(i: int, k: int) -> np.ndarray:
            return index.search(singles[i], k, **kw)[0][0]

        return search

    engines = {"ours": make()}
    param = inspect.signature(index.search).parameters.get("method")
    if param is not None:
        for m in getattr(sys.modules[type(index).__module__], "METHODS", ()):
            if m != param.default:
                engines[f"ours[{m}]"] = make(method=m)
    return engines


def _default_method(index: Any) -> str | None:
    param = inspect.signature(index.search).parameters.get("method")
    return None if param is None else str(param.default)


def _topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Ids of the best k of a dense score vector (> 0 only), score desc then id asc."""
    if scores.size > k:
        cand = np.argpartition(-scores, k - 1)[:k]
        cand = cand[scores[cand] > 0]
    else:
        cand = np.flatnonzero(scores > 0)
    return cand[np.lexsort((cand, -scores[cand]))]


def scipy_engine(w: sp.csr_matrix, queries: Any) -> SearchFn:
    """(b) W[q_terms].T @ q_weights (sparse matrix x dense vector), then argpartition top-k.

    W is the dequantized [vocab, docs] CSR matrix, so the row slice reads only the query terms'
    postings (like TAAT) and the product sums them into a dense score vector; top-k partitions
    it, then sorts the k by (score desc, doc id asc) as our kernel does.
    """
    rows = [
        (np.asarray(t, np.int64), np.asarray(v, np.float32))
        for t, v in (queries.row(i) for i in range(len(queries)))
    ]

    def search(i: int, k: int) -> np.ndarray:
        t, v = rows[i]
        return _topk(w[t].T @ v, k)

    return search


def scipy_spgemm_engine(w: sp.csr_matrix, queries: Any) -> SearchFn:
    """(b') q (1 x vocab CSR) @ W (sparse x sparse), top-k on the product's nonzeros only.

    Both scipy forms are timed because neither wins everywhere (the dense top-k of (b) costs
    O(n_docs)); read the faster one as the scipy anchor.
    """
    q = queries.to_scipy().astype(np.float32)
    rows = [q[i] for i in range(len(queries))]

    def search(i: int, k: int) -> np.ndarray:
        prod = rows[i] @ w
        vals, cols = prod.data, prod.indices
        if vals.size > k:
            part = np.argpartition(-vals, k - 1)[:k]
            vals, cols = vals[part], cols[part]
        return cols[np.lexsort((cols, -vals))]

    return search


def lucene_unavailable() -> str | None:
    """Why Lucene cannot run here, or None when pyserini and a JVM are present."""
    try:
        from sparseretr.eval.bm25_pyserini import PyseriniUnavailableError, require_pyserini

        require_pyserini()
    except PyseriniUnavailableError as e:
        return str(e)
    except ImportError as e:
        return f"pyserini not importable: {e}"
    return None


def build_lucene_index(impacts: sp.csr_matrix, cache_root: Path) -> Path:
    """Write our impacts as a JsonVectorCollection and index it (--impact --pretokenized).

    Tokens are term ids as strings (no tokenizer ambiguity); Lucene docs are written in our
    internal order with one indexing thread so Lucene's docids equal ours (same tie order).
    Cached under cache_root/lucene-<impacts checksum>/ and reused while the impacts are the
    same, whatever the index layout or the doc store.
    """
    out = cache_root / f"lucene-{impacts_checksum(impacts)}"
    if (out / DONE_MARKER).is_file():
        return out
    cache_root.mkdir(parents=True, exist_ok=True)
    docs = impacts.T.tocsr()
    docs.sort_indices()
    with tempfile.TemporaryDirectory(dir=cache_root, prefix=".build-") as tmp:
        coll = Path(tmp) / "collection"
        coll.mkdir()
        with (coll / "docs.jsonl").open("w") as f:
            for d in range(docs.shape[0]):
                a, b = docs.indptr[d], docs.indptr[d + 1]
                vec = {
                    str(t): int(v) for t, v in zip(docs.indices[a:b], docs.data[a:b], strict=True)
                }
                f.write(json.dumps({"id": str(d), "contents": "", "vector": vec}) + "\n")
        staging = Path(tmp) / "index"
        cmd = [
            sys.executable, "-m", "pyserini.index.lucene",
            "-collection", "JsonVectorCollection", "-input", str(coll), "-index", str(staging),
            "-generator", "DefaultLuceneDocumentGenerator", "-impact", "-pretokenized",
            "-threads", "1",
        ]  # fmt: skip
        print(f"[search_latency] building Lucene impact index: {' '.join(cmd)}")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not staging.is_dir():
            raise RuntimeError(
                f"Lucene indexing failed ({proc.returncode}):\n{proc.stderr[-2000:]}"
            )
        (staging / DONE_MARKER).write_text(f"{docs.shape[0]}\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    return out


def lucene_engines(lucene_dir: Path, qdicts: list[dict[str, int]]) -> dict[str, SearchFn]:
    """(c) pyserini's LuceneImpactSearcher over the same impacts with int query weights.

    "lucene": the Java SimpleImpactSearcher.search(map, k) call with the query map built ahead
    (engine cost + JNI hit wrapping), the counterpart of (a) receiving a ready SparseVectors.
    "lucene-pyapi": LuceneImpactSearcher.search(), i.e. what a pyserini user pays, including the
    Python dict -> Java map conversion per query. min_idf=-1 so no query term is filtered.
    """
    from pyserini.encode import QueryEncoder
    from pyserini.pyclass import JHashMap, JInt
    from pyserini.search.lucene import LuceneImpactSearcher

    class PreEncoded(QueryEncoder):
        def encode(self, text: str, **kwargs: Any) -> dict[str, int]:
            return qdicts[int(text)]

    searcher = LuceneImpactSearcher(str(lucene_dir), PreEncoded(), min_idf=-1)
    jqueries = []
    for q in qdicts:
        jq = JHashMap()
        for t, w in q.items():
            jq.put(t, JInt(w))
        jqueries.append(jq)
    keys = [str(i) for i in range(len(qdicts))]

    def java(i: int, k: int) -> Any:
        return searcher.object.search(jqueries[i], k)

    def pyapi(i: int, k: int) -> Any:
        return searcher.search(keys[i], k)

    return {"lucene": java, "lucene-pyapi": pyapi}


def lucene_ids(hits: Any) -> np.ndarray:
    return np.array([int(h.docid) for h in hits], dtype=np.int64)


# ----------------------------------------------------------------------------- timing
def time_interleaved(
    engines: dict[str, SearchFn], nq: int, k: int, repeat: int, warmup: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """Per-call seconds for every engine; each query runs on every engine back to back.

    The query order is shuffled per pass and the engine order per query (a fixed rotation would
    keep each engine behind the same predecessor, e.g. always right after a JVM call that left
    the caches cold), so load drift and cache effects spread evenly. GC is off while timing.
    """
    names = list(engines)
    fns = [engines[n] for n in names]
    for _ in range(warmup):
        for i in range(nq):
            for fn in fns:
                fn(i, k)
    rng = np.random.default_rng(seed)
    out = [[] for _ in names]
    clock = time.perf_counter_ns
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeat):
            for i in rng.permutation(nq).tolist():
                for e in rng.permutation(len(fns)).tolist():
                    t0 = clock()
                    fns[e](i, k)
                    out[e].append(clock() - t0)
    finally:
        gc.enable()
    return {n: np.asarray(v, dtype=np.float64) / 1e9 for n, v in zip(names, out, strict=True)}


def timed_rows(
    engines: dict[str, SearchFn], nq: int, k: int, repeat: int, warmup: int
) -> dict[str, dict[str, float]]:
    """latency_summary per engine, plus its mean and p50 ratios to "ours" from the same run."""
    from sparseretr.metrics import latency_summary

    secs = time_interleaved(engines, nq, k, repeat, warmup)
    base = latency_summary(secs["ours"])
    rows = {}
    for name, v in secs.items():
        row: dict[str, float] = latency_summary(v)
        row["ratio_mean_vs_ours"] = row["mean_ms"] / base["mean_ms"]
        row["ratio_p50_vs_ours"] = row["p50_ms"] / base["p50_ms"]
        rows[name] = row
    return rows


def overlap(a: Sequence[np.ndarray], b: Sequence[np.ndarray], k: int) -> float:
    """Mean |top-k(a) & top-k(b)| / k (k capped by the longer list, for tiny corpora)."""
    vals = []
    for x, y in zip(a, b, strict=True):
        sx, sy = set(x[:k].tolist()), set(y[:k].tolist())
        vals.append(len(sx & sy) / max(1, min(k, max(len(sx), len(sy)))))
    return float(np.mean(vals)) if vals else float("nan")


# ----------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.search_latency",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--index", type=Path, default=Path("indexes/scifact"), help="index folder")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BEIR dataset folder")
    p.add_argument("--split", default="test", help="qrels split whose queries are timed")
    p.add_argument(
        "--encoder",
        default="splade",
        choices=["splade", "inference-free", "bm25"],
        help="encoder used only when --index does not exist and must be built",
    )
    p.add_argument("-k", type=int, nargs="+", default=[10, 1000], help="cut-offs to time")
    p.add_argument("--repeat", type=int, default=3, help="timed passes over all queries")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes before timing")
    p.add_argument("--max-queries", type=int, default=None, help="time only the first N")
    p.add_argument("--query-quant", type=float, default=100.0, help="Lucene int weight factor")
    p.add_argument("--no-lucene", action="store_true", help="skip the pyserini/Lucene engine")
    p.add_argument("--cache", type=Path, default=RESULTS_DIR / "cache", help="Lucene cache")
    p.add_argument("--out", type=Path, default=None, help=f"JSON folder (default {RESULTS_DIR})")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    with pinned_threads(1) as threads:
        return _run(args, threads)


def _run(args: argparse.Namespace, threads: dict[str, Any]) -> dict[str, Any]:
    index = open_or_build_index(args.index, args.data, args.encoder)
    qids, queries = encode_queries(index, args.data, args.split, args.max_queries)
    nq = len(qids)
    t0 = time.perf_counter()
    impacts = term_impacts(index)
    impacts_s = time.perf_counter() - t0
    tp = impacts.indptr
    postings_read = [int(np.sum(tp[t + 1] - tp[t])) for t in (queries.row(i)[0] for i in range(nq))]

    engines = ours_engines(index, queries)
    w = dequantized(impacts, index.scale)
    engines["scipy"] = scipy_engine(w, queries)
    engines["scipy-spgemm"] = scipy_spgemm_engine(w, queries)
    # Phase 1: the in-process engines, before any JVM exists. Phase 2: Lucene, interleaved with
    # "ours" again as that phase's anchor. Why two phases: once the JVM runs, its JIT and GC
    # threads and cache pollution after each call slowed every Python engine ~2x on a 2-core
    # box, which would distort the ratios between the Python engines.
    results: dict[str, dict[str, Any]] = {
        str(k): timed_rows(engines, nq, k, args.repeat, args.warmup) for k in args.k
    }
    lucene: dict[str, Any] = {"enabled": False}
    qdicts = quantize_queries(queries, args.query_quant)
    if args.no_lucene:
        lucene["skipped"] = "--no-lucene"
    elif (why := lucene_unavailable()) is not None:
        lucene["skipped"] = why
        print(f"[search_latency] Lucene skipped: {why}")
    else:
        t0 = time.perf_counter()
        lucene_dir = build_lucene_index(impacts, args.cache)
        lucene.update(enabled=True, index=str(lucene_dir), build_s=time.perf_counter() - t0)
        phase2 = {"ours": engines["ours"], **lucene_engines(lucene_dir, qdicts)}
        for k in args.k:
            rows = timed_rows(phase2, nq, k, args.repeat, args.warmup)
            anchor = results[str(k)]["ours"]
            for name, row in rows.items():
                row["ratio_mean_vs_ours_phase1"] = row["mean_ms"] / anchor["mean_ms"]
                results[str(k)][f"{name}@jvm" if name == "ours" else name] = row
        engines.update(phase2)

    # Correctness, untimed: same queries through each engine at k=10.
    k10 = 10
    ours = [engines["ours"](i, k10) for i in range(nq)]
    ours = [r[r >= 0] for r in ours]
    agreement: dict[str, Any] = {"k": k10}
    for name in [n for n in engines if n != "ours" and not n.startswith("lucene")]:
        other = [np.asarray(engines[name](i, k10)) for i in range(nq)]
        other = [r[r >= 0] for r in other]
        pairs = list(zip(ours, other, strict=True))
        agreement[f"{name}_same_ids_in_order"] = float(
            np.mean([np.array_equal(a, b) for a, b in pairs]) if pairs else np.nan
        )
        agreement[f"{name}_same_id_set"] = float(
            np.mean([set(a.tolist()) == set(b.tolist()) for a, b in pairs]) if pairs else np.nan
        )
    if lucene["enabled"]:
        hits = [engines["lucene"](i, k10) for i in range(nq)]
        luc = [lucene_ids(h) for h in hits]
        lucene["docids_equal_internal"] = all(
            int(h.docid) == int(h.lucene_docid) for hs in hits for h in hs
        )
        # Our kernel fed the very integer weights Lucene got: isolates engine differences from
        # query-quantization differences (should be ~1.0, up to float ties).
        from sparseretr.index.vectors import SparseVectors

        intq = SparseVectors.from_rows(
            [
                (np.array([int(t) for t in q], np.int32), np.array(list(q.values()), np.float32))
                for q in qdicts
            ],
            index.vocab_size,
        )
        ours_int, _ = index.search(intq, k10)
        agreement["lucene_overlap@10_vs_ours"] = overlap(luc, ours, k10)
        agreement["lucene_overlap@10_vs_ours_int_queries"] = overlap(
            luc, [r[r >= 0] for r in ours_int], k10
        )

    record: dict[str, Any] = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "index": {
            "path": str(index.path),
            "n_docs": index.n_docs,
            "n_postings": index.n_postings,
            "vocab_size": index.vocab_size,
            "encoder": index.encoder_config.get("kind"),
            "checksum": index_checksum(index),
            "impacts_checksum": impacts_checksum(impacts),
            "default_method": _default_method(index),
            "format_version": index.manifest.get("format_version"),
            "impacts_read_s": impacts_s,
        },
        "queries": {
            "n": nq,
            "split": args.split,
            "mean_terms": float(np.mean(np.diff(queries.indptr))) if nq else 0.0,
            "mean_postings_read": float(np.mean(postings_read)) if nq else 0.0,
        },
        "threads": threads,
        "lucene": lucene,
        "results": results,
        "agreement": agreement,
        "machine": machine_info(),
        "versions": versions(),
    }
    path = write_json(record, "search_latency", args.out)
    print(render(record))
    print(f"\nJSON: {path}")
    return record


def render(record: dict[str, Any]) -> str:
    rows = []
    for k, engines in record["results"].items():
        for name, r in engines.items():
            rows.append(
                [
                    k, "2 (JVM)" if "ratio_mean_vs_ours_phase1" in r else "1", name,
                    r["mean_ms"], r["p50_ms"], r["p99_ms"], r["qps"],
                    r["ratio_mean_vs_ours"], r["ratio_p50_vs_ours"],
                ]
            )  # fmt: skip
    headers = [
        "k",
        "phase",
        "engine",
        "mean ms",
        "p50 ms",
        "p99 ms",
        "QPS",
        "× ours (mean)",
        "× ours (p50)",
    ]
    q, ix, ag = record["queries"], record["index"], record["agreement"]
    notes = [
        f"{ix['n_docs']} docs, {ix['n_postings']:,} postings ({ix['encoder']}); {q['n']} queries, "
        f"{q['mean_terms']:.1f} terms and {q['mean_postings_read']:,.0f} postings read per query; "
        f"1 thread per engine; load avg {record['machine']['loadavg']}.",
        f"top-{ag['k']} vs ours, same ids in order / same set: "
        + ", ".join(
            f"{n} {ag[n + '_same_ids_in_order']:.3f} / {ag[n + '_same_id_set']:.3f}"
            for n in [key[: -len("_same_ids_in_order")] for key in ag if key.endswith("_in_order")]
        )
        + ".",
    ]
    if "lucene_overlap@10_vs_ours" in ag:
        notes.append(
            "× ours compares with the same phase's ours (phase 2 re-times ours as ours@jvm); "
            "Lucene vs the JVM-free phase-1 ours, mean: "
            + ", ".join(
                f"k={k} {e[n]['ratio_mean_vs_ours_phase1']:.1f}x ({n})"
                for k, e in record["results"].items()
                for n in e
                if n.startswith("lucene")
            )
            + "."
        )
        notes.append(
            f"Lucene overlap@10 vs ours: {ag['lucene_overlap@10_vs_ours']:.3f} "
            f"(vs ours fed the same int query weights: "
            f"{ag['lucene_overlap@10_vs_ours_int_queries']:.3f})."
        )
    elif record["lucene"].get("skipped"):
        notes.append(f"Lucene skipped: {record['lucene']['skipped']}")
    return markdown(headers, rows) + "\n\n" + "\n".join(notes)


if __name__ == "__main__":
    main()
