"""Smoke tests for the on-demand benchmarks: they run end to end on a tiny corpus.

They only keep the scripts from rotting (imports, arguments, JSON schema); no timing is
asserted, since CI machines are too noisy for that.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import build_throughput, encode_throughput, search_latency

LATENCY_KEYS = {"mean_ms", "p50_ms", "p99_ms", "qps", "ratio_mean_vs_ours", "ratio_p50_vs_ours"}


def _read_json(folder: Path, name: str) -> dict:
    files = sorted(folder.glob(f"{name}-2*.json"))
    assert len(files) == 1, files
    assert (folder / f"{name}-latest.json").is_file()
    return json.loads(files[0].read_text())


def _latency_args(tiny_beir: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--data", str(tiny_beir), "--index", str(tmp_path / "idx"), "--encoder", "bm25",
        "--repeat", "1", "--warmup", "1", "-k", "10", "1000",
        "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), *extra,
    ]  # fmt: skip


def test_search_latency_smoke(tiny_beir: Path, tmp_path: Path) -> None:
    record = search_latency.main(_latency_args(tiny_beir, tmp_path, "--no-lucene"))
    data = _read_json(tmp_path / "out", "search_latency")
    assert data["results"] == json.loads(json.dumps(record["results"]))
    assert set(data["results"]) == {"10", "1000"}
    for engines in data["results"].values():
        assert set(engines) >= {"ours", "scipy", "scipy-spgemm"}
        for row in engines.values():
            assert set(row) >= LATENCY_KEYS
            assert row["n"] == 3  # 3 judged queries x 1 pass
    for name in set(data["results"]["10"]) - {"ours"}:
        assert data["agreement"][f"{name}_same_ids_in_order"] == 1.0
    assert data["lucene"] == {"enabled": False, "skipped": "--no-lucene"}
    assert data["index"]["n_docs"] == 6 and data["queries"]["n"] == 3
    assert {"machine", "versions", "threads", "config"} <= set(data)
    assert data["threads"]["numba"] == 1


@pytest.mark.slow
def test_search_latency_lucene_smoke(tiny_beir: Path, tmp_path: Path) -> None:
    """The Lucene engine end to end (starts a JVM and builds an index: ~10-30 s)."""
    why = search_latency.lucene_unavailable()
    if why is not None:
        pytest.skip(why)
    search_latency.main(_latency_args(tiny_beir, tmp_path, "-k", "10"))
    data = _read_json(tmp_path / "out", "search_latency")
    assert data["lucene"]["enabled"] and data["lucene"]["docids_equal_internal"]
    assert set(data["results"]["10"]) >= {"ours", "scipy", "ours@jvm", "lucene", "lucene-pyapi"}
    # BM25 query weights are term counts, so Lucene's int weights are exact: same top-k.
    assert data["agreement"]["lucene_overlap@10_vs_ours"] == 1.0
    assert data["agreement"]["lucene_overlap@10_vs_ours_int_queries"] == 1.0
    assert list((tmp_path / "cache").glob("lucene-*/.bench-complete"))


def test_encode_throughput_smoke(tiny_beir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    encode_throughput.main(
        ["--data", str(tiny_beir), "--n", "8", "--threads", "1", "--repeat", "1", "--out", str(out),
         "--dense", "all-MiniLM-L6-v2"]
    )  # fmt: skip
    data = _read_json(out, "encode_throughput")
    dense = data["dense"]
    assert dense["float32_docs_per_s"] > 0 and dense["bfloat16_docs_per_s"] > 0
    assert 0.99 < dense["bfloat16_min_cosine_vs_float32"] <= 1.0 + 1e-6
    assert set(data["results"]) == {"naive-hf", "ours-fp32", "ours-bf16"}
    for row in data["results"].values():
        assert {"docs_per_s", "ratio_vs_naive", "max_abs_diff_vs_naive", "seconds"} <= set(row)
    assert data["results"]["ours-fp32"]["max_abs_diff_vs_naive"] < 1e-3
    assert data["docs"]["n"] == 6  # the tiny corpus has 6 documents, fewer than --n
    shares = [data["breakdown_fp32"][f"{p}_share"] for p in ("body", "projection", "pool", "other")]
    assert sum(shares) == pytest.approx(1.0)
    assert data["threads"]["torch"] == 1


def test_build_throughput_smoke(tmp_path: Path) -> None:
    record = build_throughput.main(
        ["--docs", "1500", "--writes", "600", "--cache", str(tmp_path / "cache"),
         "--out", str(tmp_path / "out")]
    )  # fmt: skip
    (row,) = record["postings"]
    assert row["docs"] == 1500 and row["postings"] > 0 and row["docs_per_s"] > 0
    live = record["live"]
    assert live["writes"] == 600 and live["upserts_per_s"] > 0 and live["segments_after"] >= 1
    assert (tmp_path / "out" / "build_throughput-latest.json").is_file()


def test_sharded_search_smoke(tmp_path: Path) -> None:
    """In its own process with a deadline: Ray's runtime stays out of the test process."""
    import subprocess
    import sys

    pytest.importorskip("ray", reason="Ray is not installed (pip install 'sparseretr[ray]')")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "benchmarks.sharded_search", "--synthetic", "3000",
           "--queries", "20", "--shards", "1", "2", "-k", "10", "--clients", "2",
           "--cache", str(tmp_path / "cache"), "--out", str(out)]  # fmt: skip
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    record = _read_json(out, "sharded_search")
    engines = [(r["engine"], r["shards"]) for r in record["rows"]]
    assert engines == [("one process, unsplit (anchor)", 0), ("one process, 3 segments", 0),
                       ("Ray shards", 1), ("Ray shards", 2)]  # fmt: skip
    for r in record["rows"]:
        assert r["identical"] == 20 and r["qps_batch"] > 0 and r["p50_ms"] > 0


def test_a_failed_bmp_build_costs_only_bmp(tmp_path: Path) -> None:
    """bmp builds in a child process (at 1M documents block 8 it outgrows 24 GB): a child that
    dies returns the reason instead of ending the whole benchmark run."""
    from benchmarks.pruning import run

    info = run.build_bmp(tmp_path / "no-such-index", tmp_path / "bmp", 8)
    assert set(info) == {"error"}
    assert info["error"].startswith("bmp block 8 build failed, exit 1")
