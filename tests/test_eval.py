"""Tests for the eval package: metrics against hand-computed values, data loading, reports."""

from __future__ import annotations

import json
import math
import random
import stat
import sys
from pathlib import Path

import pytest
from sparseretr.eval import (
    PyseriniBM25,
    PyseriniUnavailableError,
    Searcher,
    SystemResult,
    bm25_pyserini,
    markdown_table,
    run_retrieval,
    write_report,
)

from sparseretr.beir import (
    BeirData,
    DatasetNotFoundError,
    SplitNotFoundError,
    default_dataset_path,
    load_beir,
)
from sparseretr.corpus import doc_text
from sparseretr.metrics import evaluate, latency_summary

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "beir" / "scifact"


def log2(x: float) -> float:
    return math.log(x, 2)


# --------------------------------------------------------------------------- metrics


def toy_run() -> tuple[dict, dict]:
    """One query, 3 relevant docs (a, c, x); a at rank 2, c at rank 4, x never retrieved."""
    qrels = {"q1": {"a": 1, "c": 1, "x": 1}}
    results = {"q1": {"b": 0.9, "a": 0.8, "d": 0.7, "c": 0.6, "e": 0.5}}
    return qrels, results


def test_metrics_match_hand_computed_values() -> None:
    qrels, results = toy_run()
    m = evaluate(qrels, results, k_values=(1, 3, 5, 10))

    idcg3 = 1 / log2(2) + 1 / log2(3) + 1 / log2(4)  # 3 relevant docs, ideal ranks 1..3
    assert m["NDCG@1"] == pytest.approx(0.0, abs=1e-5)
    assert m["NDCG@3"] == pytest.approx((1 / log2(3)) / idcg3, abs=1e-5)
    assert m["NDCG@5"] == pytest.approx((1 / log2(3) + 1 / log2(5)) / idcg3, abs=1e-5)
    assert m["Recall@1"] == pytest.approx(0.0, abs=1e-5)
    assert m["Recall@3"] == pytest.approx(1 / 3, abs=1e-5)
    assert m["Recall@5"] == pytest.approx(2 / 3, abs=1e-5)
    assert m["P@5"] == pytest.approx(2 / 5, abs=1e-5)
    assert m["MRR@1"] == pytest.approx(0.0, abs=1e-5)
    assert m["MRR@10"] == pytest.approx(1 / 2, abs=1e-5)
    # AP divides by all relevant docs (3), including the never-retrieved one.
    assert m["MAP@3"] == pytest.approx((1 / 2) / 3, abs=1e-5)
    assert m["MAP@10"] == pytest.approx((1 / 2 + 2 / 4) / 3, abs=1e-5)


def test_graded_ndcg_uses_linear_gain() -> None:
    qrels = {"q": {"a": 2, "b": 1}}
    results = {"q": {"b": 2.0, "a": 1.0}}
    dcg = 1 / log2(2) + 2 / log2(3)
    idcg = 2 / log2(2) + 1 / log2(3)
    assert evaluate(qrels, results, k_values=(10,))["NDCG@10"] == pytest.approx(dcg / idcg, 1e-4)


def test_missing_and_unjudged_queries() -> None:
    qrels, results = toy_run()
    qrels = {**qrels, "q2": {"z": 1}}  # q2 has no results at all -> counts as 0
    results = {**results, "unjudged": {"a": 1.0}}
    m = evaluate(qrels, results, k_values=(10,))
    assert m["MRR@10"] == pytest.approx((1 / 2 + 0) / 2, abs=1e-5)
    assert m["Recall@10"] == pytest.approx((2 / 3 + 0) / 2, abs=1e-5)
    assert set(m) == {"NDCG@10", "MAP@10", "Recall@10", "P@10", "MRR@10"}


def test_default_k_values_keys() -> None:
    qrels, results = toy_run()
    m = evaluate(qrels, results)
    for k in (1, 3, 5, 10, 100, 1000):
        for name in ("NDCG", "MAP", "Recall", "P", "MRR"):
            assert f"{name}@{k}" in m


def test_ignore_identical_ids() -> None:
    qrels = {"q1": {"a": 1}}
    results = {"q1": {"q1": 0.99, "a": 0.5}}  # the query's own document ranks first
    ignored = evaluate(qrels, results, k_values=(10,))
    assert ignored["MRR@10"] == pytest.approx(1.0, abs=1e-5)
    assert ignored["NDCG@10"] == pytest.approx(1.0, abs=1e-5)

    kept = evaluate(qrels, results, k_values=(10,), ignore_identical_ids=False)
    assert kept["MRR@10"] == pytest.approx(1 / 2, abs=1e-5)
    assert kept["NDCG@10"] == pytest.approx(1 / log2(3), abs=1e-5)
    assert results == {"q1": {"q1": 0.99, "a": 0.5}}  # input not mutated (BEIR pops in place)


def test_evaluate_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        evaluate({}, {})
    with pytest.raises(ValueError, match="positive"):
        evaluate({"q": {"a": 1}}, {}, k_values=(0,))


def test_latency_summary_percentiles() -> None:
    seconds = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    random.Random(0).shuffle(seconds)
    s = latency_summary(seconds)
    # Linear interpolation: position p/100 * (n - 1) in the sorted list (0-based).
    assert s["p50_ms"] == pytest.approx(50 + 0.5 * 1)  # pos 49.5 between 50 and 51 ms
    assert s["p90_ms"] == pytest.approx(90 + 0.1 * 1)  # pos 89.1
    assert s["p99_ms"] == pytest.approx(99 + 0.01 * 1)  # pos 98.01
    assert s["mean_ms"] == pytest.approx(50.5)
    assert s["qps"] == pytest.approx(100 / 5.05)
    assert s["n"] == 100
    with pytest.raises(ValueError):
        latency_summary([])


# --------------------------------------------------------------------------- data


def write_beir(folder: Path, splits: tuple[str, ...] = ("test",)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    docs = [
        {"_id": "d1", "title": "Alpha", "text": "first doc"},
        {"_id": "d2", "title": "", "text": "second doc"},
        {"_id": "d3", "text": "no title field"},
    ]
    queries = [
        {"_id": "q1", "text": "alpha?"},
        {"_id": "q2", "text": "second?"},
        {"_id": "q3", "text": "unjudged"},
    ]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels").mkdir(exist_ok=True)
    for split in splits:
        rows = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq2\td3\t0\n"
        (folder / "qrels" / f"{split}.tsv").write_text(rows)
    return folder


def test_load_beir_local_folder(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "tiny")
    data = load_beir(str(folder))
    assert isinstance(data, BeirData)
    assert (data.name, data.split) == ("tiny", "test")
    assert set(data.corpus) == {"d1", "d2", "d3"}
    assert data.corpus["d3"] == {"title": "", "text": "no title field"}
    assert data.queries == {"q1": "alpha?", "q2": "second?"}  # q3 has no qrels: dropped
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 0}}
    assert doc_text(data.corpus["d1"]) == "Alpha first doc"
    assert doc_text(data.corpus["d2"]) == "second doc"
    assert doc_text({"title": None, "text": " x "}) == "x"


def test_missing_folder_and_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as err:
        load_beir(str(tmp_path / "nope"), data_root=tmp_path)
    assert "nope" in str(err.value) and "known BEIR dataset" in str(err.value)

    not_beir = tmp_path / "empty"
    not_beir.mkdir()
    with pytest.raises(DatasetNotFoundError, match="missing corpus.jsonl"):
        load_beir(str(not_beir))


def test_known_name_offline_gives_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import beir.util

    def offline(url: str, out_dir: str, chunk_size: int = 1024) -> str:
        Path(out_dir, "scifact.zip").write_bytes(b"partial")  # as a dropped connection would
        raise ConnectionError("Failed to resolve host")

    monkeypatch.setattr(beir.util, "download_and_unzip", offline)
    with pytest.raises(DatasetNotFoundError) as err:
        load_beir("scifact", data_root=tmp_path)
    msg = str(err.value)
    assert "could not be downloaded" in msg and "local BEIR folder" in msg
    assert "scifact.zip" in msg  # names the URL it tried
    assert not (tmp_path / "scifact.zip").exists()  # partial zip removed for the next try


def test_known_name_download_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import beir.util

    calls: list[str] = []

    def fake_download(url: str, out_dir: str, chunk_size: int = 1024) -> str:
        calls.append(url)
        return str(write_beir(Path(out_dir) / "nfcorpus"))

    monkeypatch.setattr(beir.util, "download_and_unzip", fake_download)
    data = load_beir("NFCorpus", data_root=tmp_path)
    assert data.name == "nfcorpus" and len(data.queries) == 2
    assert calls == [
        "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/nfcorpus.zip"
    ]
    load_beir("nfcorpus", data_root=tmp_path)  # cached: no second download
    assert len(calls) == 1


def test_missing_split_names_available(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "tiny", splits=("test", "train"))
    with pytest.raises(SplitNotFoundError) as err:
        load_beir(str(folder), split="dev")
    assert "dev" in str(err.value) and "test, train" in str(err.value)
    assert isinstance(err.value, DatasetNotFoundError)


def test_default_dataset_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "main"
    work.mkdir()
    monkeypatch.chdir(work)
    assert default_dataset_path() is None
    expected = write_beir(tmp_path / "shared" / "data" / "beir" / "scifact")
    assert default_dataset_path() == expected.resolve()


@pytest.mark.skipif(not SCIFACT.is_dir(), reason="embedded SciFact data not present")
def test_real_scifact_test_split() -> None:
    data = load_beir(str(SCIFACT))
    assert (data.name, len(data.queries), len(data.corpus)) == ("scifact", 300, 5183)
    assert set(data.queries) == set(data.qrels)


# --------------------------------------------------------------------------- runner


class FakeSearcher:
    """Ranks 4 fixed docs; the doc named after the query's first word always wins."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.last_timing: dict[str, float] = {}

    def search(self, texts: list[str], k: int) -> list[list[tuple[str, float]]]:
        self.calls.append(list(texts))
        self.last_timing = {"encode_s": 0.5, "search_s": 0.25}
        out = []
        for text in texts:
            top = text.split()[0]
            out.append([(top, 9.0), (top, 1.0), ("d1", 3.0), ("d2", 2.0), ("d3", 1.0)][: k + 1])
        return out


def test_run_retrieval_per_query_timing() -> None:
    searcher = FakeSearcher()
    assert isinstance(searcher, Searcher)
    queries = {"q1": "dA x", "q2": "dB y", "q3": "dC z"}
    run = run_retrieval(searcher, queries, k=3, warmup=1)
    assert searcher.calls == [["dA x"], ["dA x"], ["dB y"], ["dC z"]]  # warm-up + one each
    assert run.results["q1"] == {"dA": 9.0, "d1": 3.0, "d2": 2.0}  # dup kept first, k=3
    assert len(run.latencies) == 3 and run.total_seconds >= sum(run.latencies) * 0.999
    assert run.breakdown == {"encode_s": 1.5, "search_s": 0.75}  # warm-up not counted
    lat = run.latency()
    assert {"p50_ms", "p99_ms", "qps"} <= set(lat) and lat["n"] == 3


def test_run_retrieval_batch_timing() -> None:
    searcher = FakeSearcher()
    queries = {f"q{i}": f"d{i} text" for i in range(5)}
    run = run_retrieval(searcher, queries, k=10, batch_size=2, timing="batch", warmup=0)
    assert [len(c) for c in searcher.calls] == [2, 2, 1]
    assert run.latencies == [] and set(run.results) == set(queries)
    lat = run.latency()
    assert lat["n"] == 5 and "p50_ms" not in lat and lat["qps"] > 0


def test_run_retrieval_checks_searcher_output() -> None:
    class Broken:
        def search(self, texts: list[str], k: int) -> list[list[tuple[str, float]]]:
            return []

    with pytest.raises(ValueError, match="0 result lists for 1"):
        run_retrieval(Broken(), {"q": "x"}, warmup=0)
    with pytest.raises(ValueError):
        run_retrieval(FakeSearcher(), {"q": "x"}, timing="nope")  # type: ignore[arg-type]


def test_runner_output_feeds_evaluate() -> None:
    run = run_retrieval(FakeSearcher(), {"q1": "dA", "q2": "dB"}, k=10, warmup=0)
    m = evaluate({"q1": {"dA": 1}, "q2": {"d2": 1}}, run.results, k_values=(10,))
    assert m["MRR@10"] == pytest.approx((1 + 1 / 3) / 2, abs=1e-5)


# --------------------------------------------------------------------------- report


def test_write_report(tmp_path: Path) -> None:
    rows = [
        SystemResult(
            "BM25 | flat",
            {"NDCG@10": 0.67891, "Recall@100": 0.92533, "MRR@10": 0.6457, "MAP@100": float("nan")},
            {"p50_ms": 20.861, "p99_ms": 51.5, "qps": 47.7},
            encode_seconds=13.37,
            extra={"k1": 0.9, "nnz_per_doc": 81.96, "nnz_per_query": 12.04, "flops": 0.8237},
        ),
        SystemResult("no-timing", {"NDCG@10": 0.5}),
    ]
    meta = {"dataset": "scifact", "split": "test", "n_queries": 300, "config": {"k": 1000}}
    json_path, md_path = write_report(tmp_path / "out", rows, meta)

    report = json.loads(json_path.read_text())
    assert report["meta"]["dataset"] == "scifact" and report["meta"]["n_queries"] == 300
    assert report["meta"]["date"] and "sparseretr" in report["meta"]["versions"]
    assert {"torch", "numba"} <= set(report["meta"]["versions"])
    first = report["systems"][0]
    assert first["name"] == "BM25 | flat" and first["encode_seconds"] == 13.37
    assert first["metrics"]["MAP@100"] is None  # NaN is not valid JSON

    md = md_path.read_text()
    assert "scifact (test, 300 queries)" in md
    header = (
        "| System | nDCG@10 | R@100 | MRR@10 | MAP@100 | p50 ms | p99 ms"
        " | doc nnz | query nnz | FLOPS | encode s |"
    )
    assert header in md
    row = "| BM25 \\| flat | 0.6789 | 0.9253 | 0.6457 | – | 20.86 | 51.50 | 82.0 | 12.0 | 0.824 |"
    row += " 13.4 |"
    assert row in md
    assert "| no-timing | 0.5000 | – | – | – | – | – | – | – | – | – |" in md
    assert markdown_table(rows) in md


# --------------------------------------------------------------------------- pyserini


def test_pyserini_missing_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyserini", None)  # makes `import pyserini` fail
    with pytest.raises(PyseriniUnavailableError, match=r"pip install 'sparseretr\[bm25\]'"):
        PyseriniBM25("/nonexistent-index")
    with pytest.raises(PyseriniUnavailableError, match="not installed"):
        PyseriniBM25.from_corpus({"d": {"title": "", "text": "x"}})


def test_java_missing_or_invalid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(bm25_pyserini.shutil, "which", lambda name: None)
    with pytest.raises(PyseriniUnavailableError, match=r"Java 11\+ runtime.*openjdk-17"):
        bm25_pyserini.check_java()

    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    with pytest.raises(PyseriniUnavailableError, match="JAVA_HOME=.*no-jdk"):
        bm25_pyserini.check_java()


def test_java_too_old(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java = tmp_path / "jdk8" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\necho 'openjdk version \"1.8.0_292\"' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk8"))
    with pytest.raises(PyseriniUnavailableError, match="is Java 8"):
        bm25_pyserini.check_java()


def _pyserini_ready() -> bool:
    try:
        bm25_pyserini.require_pyserini()
    except PyseriniUnavailableError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(
    not (SCIFACT.is_dir() and _pyserini_ready()), reason="needs SciFact data, pyserini and Java"
)
@pytest.mark.parametrize(
    "multifield, ndcg, recall", [(False, 0.6789, 0.9253), (True, 0.6647, 0.9076)]
)
def test_pyserini_bm25_matches_published_scifact(
    tmp_path: Path, multifield: bool, ndcg: float, recall: float
) -> None:
    """pyserini's BEIR regressions for SciFact: BM25 flat nDCG@10 0.6789, R@100 0.9253;
    multifield (title and text apart) 0.6647 / 0.9076."""
    data = load_beir(str(SCIFACT))
    searcher = PyseriniBM25.from_beir(data, cache_dir=tmp_path, multifield=multifield)
    run = run_retrieval(searcher, data.queries, k=100, timing="batch", warmup=0)
    m = evaluate(data.qrels, run.results, k_values=(10, 100))
    assert m["NDCG@10"] == pytest.approx(ndcg, abs=5e-4)
    assert m["Recall@100"] == pytest.approx(recall, abs=5e-4)


def test_copy_dense_checks_documents(tmp_path: Path) -> None:
    import numpy as np
    from sparseretr.index import build_index
    from sparseretr.index.attach import copy_dense
    from sparseretr.index.dense import DenseIndex
    from sparseretr.index.segments import Snapshot
    from sparseretr.index.vectors import SparseVectors

    vecs = SparseVectors.from_rows([([1, 2], [1.0, 2.0])] * 4, 8)
    ids = ["a", "b", "c", "d"]
    emb = np.eye(4, 6, dtype=np.float32)
    dense = {"dense": DenseIndex.writer(emb, {"model": "m"})}
    src = build_index(tmp_path / "src", ids, vecs, encoder_config={}, extras=dense)
    dst = build_index(tmp_path / "dst", ids, vecs, encoder_config={})
    other = build_index(tmp_path / "other", ["a", "b", "d", "c"], vecs, encoder_config={})
    with pytest.raises(ValueError, match="same order"):
        copy_dense(other, src)
    copy_dense(dst, src)
    snap = Snapshot.open(dst)
    assert snap.has_side("dense") and np.array_equal(snap.first.dense.vectors, emb)
    with pytest.raises(FileExistsError):
        copy_dense(dst, src)


@pytest.mark.parametrize(
    "arg, label, path, modes",
    [
        ("indexes/x", None, "indexes/x", None),
        ("ours=indexes/{dataset}-splade:bm25", "ours", "indexes/{dataset}-splade", ("bm25",)),
        ("a=runs/a/index:sparse,hybrid", "a", "runs/a/index", ("sparse", "hybrid")),
        ("runs/odd:name", None, "runs/odd:name", None),  # not modes: part of the path
        ("x=a=b", "x", "a=b", None),
    ],
)
def test_parse_index_argument(arg, label, path, modes) -> None:
    from sparseretr.eval.beir_eval import parse_index

    got = parse_index(arg)
    assert (got.label, got.path, got.modes) == (label, path, modes)
