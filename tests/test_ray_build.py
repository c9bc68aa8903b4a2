"""`index build --ray`: the same shards encoded by Ray Data actors give the same index.

Runs a local Ray runtime with 2 actors against the in-process build, with the default SPLADE
encoder (real floats, so equality means the shards' batching is the same in every worker).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_batch_build import assert_same_index, make_corpus  # tests/ is on sys.path (rootdir)

pytest.importorskip(
    "ray.data", reason="Ray Data is not installed (pip install 'sparseretr[ray]'): skipping --ray"
)

ARGS = ["--shard-size", "12", "--max-length", "64", "--quiet"]


def cli(corpus: Path, out: Path, *extra: str) -> None:
    cmd = [sys.executable, "-m", "sparseretr.cli", "index", "build", "--corpus", str(corpus),
           "--out", str(out), *ARGS, *extra]  # fmt: skip
    # A subprocess with a deadline: Ray's runtime stays out of the test process, and a hung
    # cluster start fails the test instead of stalling the suite.
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_ray_build_matches_single_process(tmp_path: Path):
    corpus = make_corpus(tmp_path / "corpus.jsonl", n=48)
    cli(corpus, tmp_path / "single", "--workers", "1")
    cli(corpus, tmp_path / "ray", "--ray", "--workers", "2")
    assert_same_index(tmp_path / "single", tmp_path / "ray")
    seg = tmp_path / "ray" / "segments" / "seg-000000"
    build = json.loads((seg / "manifest.json").read_text())["build"]
    assert build["runner"] == "ray" and build["workers"] == 2 and build["n_shards"] == 4
    assert not (tmp_path / "ray.work").exists()
