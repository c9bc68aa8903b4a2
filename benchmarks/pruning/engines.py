"""The engines under comparison, each as "load once, then search(query i, k) -> internal ids".

All of them index the same quantized impacts (uint8, our build's scale) and the same document
order (our clustered slot order: bmp and Lucene get documents in that order, so each engine
enjoys the same locality and only the algorithms differ). Query weights stay float for us and
scipy; bmp quantizes queries itself (to integers <= 32), Lucene takes 8-bit integer weights.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sparseretr.index import SparseIndex
from sparseretr.index.vectors import SparseVectors

SearchFn = Callable[[int, int], np.ndarray]
DONE = ".complete"


def ours(index: SparseIndex, queries: SparseVectors, **knobs: Any) -> SearchFn:
    """SparseIndex.search on a prebuilt one-row query: what the service pays per query."""
    singles = [queries.slice([i]) for i in range(len(queries))]

    def run(i: int, k: int) -> np.ndarray:
        ids, _ = index.search(singles[i], k, **knobs)
        return ids[0]

    return run


def naive_engine(index: SparseIndex, queries: SparseVectors) -> SearchFn:
    """The floor (naive.py): dense int32 accumulator, one heap over all docs; integer query
    weights (the benchmark's queries are quantized to integers, see run.integer_queries)."""
    from benchmarks.pruning.naive import naive_topk

    term_ptr, post_docs, post_impacts = index.postings
    acc = np.zeros(index.n_docs, np.int32)
    rows = [
        (np.ascontiguousarray(t), np.ascontiguousarray(w.astype(np.int32)))
        for t, w in (queries.row(i) for i in range(len(queries)))
    ]

    def run(i: int, k: int) -> np.ndarray:
        ids, _ = naive_topk(term_ptr, post_docs, post_impacts, *rows[i], k, acc)
        return ids.astype(np.int64)

    return run


def docs_by_term(index: SparseIndex) -> sp.csr_matrix:
    """[vocab, n_docs] float32 impacts, the matrix the scipy engine multiplies with."""
    tp, pd, pi = index.postings
    return sp.csr_matrix(
        (pi.astype(np.float32), pd, tp), shape=(index.vocab_size, index.n_docs), copy=False
    )


def scipy_engine(matrix: sp.csr_matrix, queries: SparseVectors) -> SearchFn:
    """Sparse row times sparse matrix, then argpartition + lexsort (score desc, id asc)."""
    rows = [queries.to_scipy()[i].astype(np.float32) for i in range(len(queries))]

    def run(i: int, k: int) -> np.ndarray:
        prod = rows[i] @ matrix
        cols, vals = prod.indices, prod.data
        if vals.size > k:
            part = np.argpartition(-vals, k - 1)[:k]
            cols, vals = cols[part], vals[part]
        return cols[np.lexsort((cols, -vals))].astype(np.int64)

    return run


# -------------------------------------------------------------------------------------- bmp
def doc_matrix(index: SparseIndex) -> sp.csr_matrix:
    """[n_docs, vocab] int impacts by internal id (rows sorted), decoded from our index."""
    tp, pd, pi = index.postings
    m = sp.csc_matrix((pi, pd, tp), shape=(index.n_docs, index.vocab_size)).tocsr()
    m.sort_indices()
    return m


def build_bmp(index: SparseIndex, out: Path, block_size: int) -> dict[str, Any]:
    """bmp.Indexer fed our documents in our slot order; returns build seconds and bytes."""
    import bmp

    path = out / "index.bmp"
    if not (out / DONE).is_file():
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        docs = doc_matrix(index)
        order = np.asarray(index.kernel_postings.doc_order)
        keys = [str(t) for t in range(index.vocab_size)]
        t0 = time.perf_counter()
        ix = bmp.Indexer(str(path), block_size, False)
        for d in order.tolist():
            a, b = docs.indptr[d], docs.indptr[d + 1]
            terms = [keys[t] for t in docs.indices[a:b].tolist()]
            ix.add_document(str(d), dict(zip(terms, docs.data[a:b].tolist(), strict=True)))
        ix.finish()
        build_s = time.perf_counter() - t0
        (out / DONE).write_text(json.dumps({"build_s": build_s}))
    meta = json.loads((out / DONE).read_text())
    return {"path": path, "build_s": meta["build_s"], "bytes": path.stat().st_size}


def bmp_engine(path: Path, queries: SparseVectors, alpha: float, beta: float) -> SearchFn:
    """bmp.Searcher.search with float weights (bmp scales them to integers <= 32 itself)."""
    searcher = _bmp_searcher(path)
    qs = [
        {str(t): float(w) for t, w in zip(*queries.row(i), strict=True)}
        for i in range(len(queries))
    ]

    def run(i: int, k: int) -> np.ndarray:
        ids, _ = searcher.search(qs[i], k=k, alpha=alpha, beta=beta)
        return np.array([int(x) for x in ids], dtype=np.int64)

    return run


_BMP: dict[str, Any] = {}


def _bmp_searcher(path: Path) -> Any:
    """One loaded bmp index per process (it lives in RAM; loading twice doubles that)."""
    import bmp

    key = str(path)
    if key not in _BMP:
        _BMP[key] = bmp.Searcher(key)
    return _BMP[key]


# ----------------------------------------------------------------------------------- Lucene
def lucene_unavailable() -> str | None:
    if shutil.which("java") is None:
        return "no java on PATH"
    try:
        import pyserini  # noqa: F401
    except ImportError as e:
        return f"pyserini not importable: {e}"
    return None


def build_lucene(index: SparseIndex, out: Path) -> dict[str, Any]:
    """JsonVectorCollection of our impacts in slot order, indexed with -impact -pretokenized."""
    if not (out / DONE).is_file():
        shutil.rmtree(out, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        docs = doc_matrix(index)
        order = np.asarray(index.kernel_postings.doc_order)
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=".lucene-") as tmp:
            coll = Path(tmp) / "collection"
            coll.mkdir()
            with (coll / "docs.jsonl").open("w") as f:
                for d in order.tolist():
                    a, b = docs.indptr[d], docs.indptr[d + 1]
                    terms = map(str, docs.indices[a:b].tolist())
                    vec = dict(zip(terms, docs.data[a:b].tolist(), strict=True))
                    f.write(json.dumps({"id": str(d), "contents": "", "vector": vec}) + "\n")
            staging = Path(tmp) / "index"
            cmd = [
                sys.executable, "-m", "pyserini.index.lucene", "-collection",
                "JsonVectorCollection", "-input", str(coll), "-index", str(staging),
                "-generator", "DefaultLuceneDocumentGenerator", "-impact", "-pretokenized",
                "-threads", "1",
            ]  # fmt: skip
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            build_s = time.perf_counter() - t0
            if proc.returncode != 0:
                raise RuntimeError(f"Lucene indexing failed:\n{proc.stderr[-2000:]}")
            (staging / DONE).write_text(json.dumps({"build_s": build_s}))
            staging.rename(out)
    meta = json.loads((out / DONE).read_text())
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"path": out, "build_s": meta["build_s"], "bytes": size}


def lucene_engine(path: Path, queries: SparseVectors) -> SearchFn:
    """The Java ImpactSearcher.search(map, k) call, query maps built ahead (8-bit weights)."""
    from pyserini.pyclass import JHashMap, JInt, autoclass

    searcher = autoclass("io.anserini.search.SimpleImpactSearcher")(str(path))
    jqs = []
    for i in range(len(queries)):
        terms, w = queries.row(i)
        q = JHashMap()
        if w.size:
            iw = np.maximum(1, np.rint(w / w.max() * 255)).astype(int)
            for t, x in zip(terms.tolist(), iw.tolist(), strict=True):
                q.put(str(t), JInt(x))
        jqs.append(q)

    def run(i: int, k: int) -> np.ndarray:
        hits = searcher.search(jqs[i], k)
        return np.array([int(h.docid) for h in hits], dtype=np.int64)

    return run


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
