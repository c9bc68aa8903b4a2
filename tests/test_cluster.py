"""Sharded serving: an index cut into segments (`index split`, `index build --segments`) and
served by `sparseretr serve --shards N` on a local Ray runtime answers what one process answers
over the same documents: the same ids, the same scores, every mode."""

from __future__ import annotations

import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sparseretr.index.errors import UserInputError
from sparseretr.index.segments import Run, Snapshot, merge_runs
from sparseretr.index.writer import IndexWriter
from test_batch_build import WORDS, make_corpus  # tests/ is on sys.path (rootdir)
from test_segments import docs_for, queries, random_vectors, seg_index  # noqa: F401 (fixture)

from sparseretr.cli import main
from sparseretr.cluster.deploy import plan_shards


# ------------------------------------------------------------------ split
def _runs(snap: Snapshot, side: str, q, k: int) -> list[list[tuple[str, float]]]:
    return [[(h.id, h.score) for h in r] for r in snap.search(side, q, k)]


def test_split_keeps_every_score_and_drops_deletes(seg_index: Path) -> None:  # noqa: F811
    rng = np.random.default_rng(5)
    w = IndexWriter(seg_index, background_merges=False)
    ids = [f"n{i}" for i in range(9)]
    w.upsert(ids, docs_for(ids), random_vectors(rng, len(ids)))
    w.delete(["d3", "d40"])
    w.refresh()
    q = queries(rng)
    before = _runs(w.snapshot, "sparse", q, 20)
    n_live = w.snapshot.n_docs
    snap = w.split(3)
    assert [s.n_docs for s in snap.segments] == [22, 23, 22]  # 67 live docs
    assert snap.n_docs == n_live and sum(s.n_deleted for s in snap.segments) == 0
    assert _runs(snap, "sparse", q, 20) == before  # fixed scales: no score moves
    assert snap.get_documents(["d3", "n4"]) == [None, docs_for(["n4"])[0]]
    for bad in (0, 9):
        with pytest.raises(UserInputError, match="segments must be"):
            w.split(bad)
    w.close()
    reopened = Snapshot.open(seg_index)
    assert len(reopened.segments) == 3 and _runs(reopened, "sparse", q, 20) == before
    names = {p.name for p in (seg_index / "segments").iterdir()}
    assert names == {s.name for s in reopened.segments}  # the old segment folders are gone
    reopened.close()


def test_index_build_writes_the_segments_asked_for(tmp_path: Path, capsys) -> None:
    corpus = make_corpus(tmp_path / "corpus.jsonl", n=30)
    args = ["index", "build", "--corpus", str(corpus), "--encoder", "bm25", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "two"), "--segments", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [s["n_docs"] for s in summary["segments"]] == [15, 15]
    one, two = Snapshot.open(tmp_path / "one"), Snapshot.open(tmp_path / "two")
    q = one.first.sparse  # any query over the shared vocabulary: each doc's own terms
    queries_ = q.doc_vectors(np.arange(5))
    assert _runs(two, "sparse", queries_, 30) == _runs(one, "sparse", queries_, 30)
    two.close()
    shutil.copytree(tmp_path / "one", tmp_path / "three")
    assert main(["index", "split", str(tmp_path / "three"), "--segments", "3"]) == 0
    three = Snapshot.open(tmp_path / "three")
    assert len(three.segments) == 3
    assert _runs(three, "sparse", queries_, 30) == _runs(one, "sparse", queries_, 30)
    one.close()
    three.close()
    assert main([*args, "--out", str(tmp_path / "bad"), "--segments", "9"]) == 2


def test_plan_shards_is_contiguous_and_balanced() -> None:
    assert plan_shards([10, 10, 10], 3) == [[0], [1], [2]]
    assert plan_shards([10, 10, 10, 10], 2) == [[0, 1], [2, 3]]
    assert plan_shards([100, 1, 1, 1], 2) == [[0], [1, 2, 3]]
    assert plan_shards([1, 1, 1, 100], 3) == [[0, 1], [2], [3]]  # the big one alone
    with pytest.raises(UserInputError, match="index split INDEX --segments 3"):
        plan_shards([5, 5], 3)
    with pytest.raises(UserInputError, match="integer >= 1"):
        plan_shards([5], 0)
    for n_live, shards in (([5, 0], 1), ([10, 10, 0], 2), ([0, 0], 1)):  # empty tails
        plan = plan_shards(n_live, shards)
        assert len(plan) == shards
        assert sorted(p for run in plan for p in run) == list(range(len(n_live)))


def test_shard_errors_reach_users_as_their_own_or_as_unavailable() -> None:
    from types import SimpleNamespace

    from sparseretr.index.errors import UnavailableError

    from sparseretr.cluster.deploy import ray_gather

    class TaskError(Exception):
        def __init__(self, cause: Exception) -> None:
            super().__init__("ray::ShardSearcher.runs() (pid=1)\n  File ...\nremote traceback")
            self.cause = cause

    class ActorError(Exception):
        actor_init_failed = False

    class InitError(ActorError):
        actor_init_failed = True

    class Timeout(Exception):
        pass

    raised: list[Exception] = []

    def get(refs: list, timeout: float) -> list:
        raise raised[-1]

    exc = SimpleNamespace(RayTaskError=TaskError, RayActorError=ActorError, GetTimeoutError=Timeout)
    ray = SimpleNamespace(get=get, exceptions=exc, cancel=lambda ref, force: None)
    gather = ray_gather(ray, Path("/idx"), timeout_s=5)
    raised.append(TaskError(UserInputError("k must be >= 1")))
    with pytest.raises(UserInputError, match=r"^k must be >= 1$"):  # no remote traceback
        gather([1])
    raised.append(InitError("died in its creation task\n  File x\nmod.UserInputError: moved on"))
    with pytest.raises(UnavailableError, match="could not start: moved on"):
        gather([1])
    raised.append(ActorError("node lost"))
    with pytest.raises(UnavailableError, match="is down"):
        gather([1])
    raised.append(Timeout())
    with pytest.raises(UnavailableError, match="did not answer within 5 s"):
        gather([1])


def test_merge_runs_orders_ties_by_segment_then_internal_id() -> None:
    def run(seg: int, internal: list[int], scores: list[float], ids: list[str]) -> Run:
        return Run(seg, np.array([internal]), np.array([scores], np.float32), np.array([ids], "S"))

    runs = [
        run(1, [4, 0, -1], [2.0, 1.0, 0.0], ["x", "y", ""]),
        run(0, [9, -1], [2.0, 0], ["z", ""]),
        run(2, [-1, 1], [0.0, 2.0], ["", "w"]),  # a deleted hit (-1) before a live one (dense)
    ]
    (got,) = merge_runs(runs, 1, 3)
    assert [(h.id, h.segment) for h in got] == [("z", 0), ("x", 1), ("w", 2)]
    (alone,) = merge_runs(runs[:1], 1, 5)
    assert [h.id for h in alone] == ["x", "y"]


# --------------------------------------------------- serve --shards on Ray
N_DOCS = 60
MODES = ("sparse", "bm25", "dense", "hybrid")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data, {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("cluster") / "corpus.jsonl", n=N_DOCS)


@pytest.fixture(scope="module")
def one(corpus: Path) -> Path:
    """The corpus as one index with the service's first-start sides (SPLADE, dense, BM25)."""
    out = corpus.parent / "one"
    args = ["index", "build", "--corpus", str(corpus), "--out", str(out), "--dense",
            "--with-bm25", "--quiet"]  # fmt: skip
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def service(corpus: Path) -> Iterator[tuple[str, Path]]:
    """`sparseretr serve --shards 3` in its own process, as a user starts it: the index is
    missing, so the first start builds it from the corpus and splits it for its shards."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'sparseretr[ray]')")
    port = _free_port()
    index = corpus.parent / "served"
    cmd = [sys.executable, "-m", "sparseretr.cli", "serve", "--index", str(index), "--data",
           str(corpus), "--shards", "3", "--port", str(port), "--workers", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(f"serve exited {proc.returncode}: {proc.stderr.read()[-3000:]}")
            try:
                if _http(url + "/readyz")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline, "serve --shards 3 was not ready in 300 s"
            time.sleep(1)
        yield url, index
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_sharded_service_answers_what_one_index_answers(
    one: Path, service: tuple[str, Path]
) -> None:
    from sparseretr.engine import Engine

    service, served = service
    snap = Snapshot.open(served, dense=False)
    assert len(snap.segments) == 3  # the first-start build was split for 3 shards
    snap.close()
    rng = random.Random(7)
    vocab = WORDS.split(" ")
    texts = [" ".join(rng.choices(vocab, k=rng.randint(1, 4))) for _ in range(20)]
    stats = _http(service + "/stats")[1]["index"]
    assert stats["segments"] == 3 and stats["n_docs"] == N_DOCS and not stats["writable"]
    engine = Engine.open(one)
    try:
        for mode in MODES:
            for k in (5, N_DOCS):
                status, body = _http(
                    service + "/search/batch", {"queries": texts, "k": k, "mode": mode}
                )
                assert status == 200, body
                got = [[(h["id"], h["score"]) for h in r["hits"]] for r in body["results"]]
                res = engine.search(texts, k=k, mode=mode)
                ref = [[(h.id, h.score) for h in r.hits] for r in res]
                assert got == ref, f"mode {mode}, k {k}"
        status, body = _http(service + "/search", {"query": texts[0], "k": 3, "explain": True,
                                                   "mode": "sparse"})  # fmt: skip
        (ref,) = engine.search(texts[:1], k=3, mode="sparse", explain=True)
        assert ref.explain is not None
        for hit in body["hits"]:
            tokens = [(m["token"], m["doc_weight"]) for m in hit["matched"]]
            assert tokens == [(m["token"], m["doc_weight"]) for m in ref.explain[hit["id"]]]
    finally:
        engine.close()
    status, doc = _http(service + "/documents/doc7")
    assert status == 200 and doc["id"] == "doc7"
    assert _http(service + "/documents/nope")[0] == 404
    status, err = _http(service + "/documents", {"documents": [{"id": "x", "text": "y"}]})
    assert status == 409 and err["error"]["code"] == "read_only_index"


def test_too_few_segments_is_a_clear_error(one: Path) -> None:
    from sparseretr.cluster.deploy import open_sharded

    with pytest.raises(UserInputError, match="1 segment"):
        open_sharded(one, 2)  # fails before starting Ray
