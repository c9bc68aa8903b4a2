"""`sparseretr index build` as a resumable batch job: kill -9 anywhere, resume, same index.

Every comparison is on content: each array of the index, the encoder state, the stored docs
and the manifest's counts, against an uninterrupted build of the same corpus.
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from sparseretr.batch import work_dir_for
from sparseretr.cli import main

N_DOCS = 300
WORDS = (
    "vitamin cancer protein fold sleep memory exercise heart blood pressure cell gene risk "
    "study trial dose insulin tumor neuron receptor enzyme bacteria virus immune lung"
)


def make_corpus(path: Path, n: int = N_DOCS, seed: int = 0) -> Path:
    rng = random.Random(seed)
    vocab = WORDS.split(" ")
    lines = []
    for i in range(n):
        doc = {
            "_id": f"doc{i}",
            "title": " ".join(rng.choices(vocab, k=3)),
            "text": " ".join(rng.choices(vocab, k=rng.randint(1, 80))),
        }
        lines.append(json.dumps(doc))
    data = ("\n".join(lines) + "\n").encode()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def build_args(corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["index", "build", "--corpus", str(corpus), "--out", str(out), "--encoder", "bm25",
            "--shard-size", "10", "--workers", "1", "--quiet", *extra]  # fmt: skip


def build(corpus: Path, out: Path, *extra: str) -> None:
    assert main(build_args(corpus, out, *extra)) == 0


def index_content(path: Path) -> dict[str, object]:
    """Everything an index holds, minus what legitimately differs per run (times, dates)."""
    if (path / "segments").is_dir():  # a segmented index: its commit point + its one segment
        commit = json.loads((path / "commit-00000001.json").read_text())
        commit.pop("created")
        return {"commit": commit, **index_content(path / "segments" / "seg-000000")}
    content: dict[str, object] = {}
    for f in sorted(path.rglob("*")):
        rel = f.relative_to(path).as_posix()
        if f.suffix == ".npy":
            arr = np.load(f, allow_pickle=False)
            content[rel] = (arr.dtype.str, arr.shape, arr.tobytes())
        elif f.is_file() and f.name not in ("manifest.json", "docstore.sqlite"):
            content[rel] = f.read_bytes()  # encoder state, dense files
    manifest = json.loads((path / "manifest.json").read_text())
    for k in ("created", "build"):
        manifest.pop(k)
    manifest["layout"].pop("postings_s")
    manifest["files"].pop("docstore.sqlite", None)  # SQLite bytes: rows are compared below
    content["manifest.json"] = manifest
    # immutable=1: read without creating -wal/-shm files beside it (they'd show up above)
    uri = f"file:{path / 'docstore.sqlite'}?mode=ro&immutable=1"
    with closing(sqlite3.connect(uri, uri=True)) as db:
        content["docstore"] = db.execute("SELECT * FROM docs ORDER BY id").fetchall()
    return content


def assert_same_index(a: Path, b: Path) -> None:
    ca, cb = index_content(a), index_content(b)
    assert sorted(ca) == sorted(cb)
    for name in ca:
        assert ca[name] == cb[name], f"{name} differs"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus") / "corpus.jsonl")


@pytest.fixture(scope="module")
def reference(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "index"
    build(corpus, out)
    ids = np.load(out / "segments" / "seg-000000" / "doc_ids.npy").astype(str).tolist()
    assert ids == [f"doc{i}" for i in range(N_DOCS)]  # every doc once, in corpus order
    assert not work_dir_for(out).exists()  # the work folder goes after a successful build
    return out


# ------------------------------------------------------------------ kill -9
# The CLI as the killed subprocesses run it, with each shard slowed by 30 ms (a slow encoder,
# as SPLADE on CPU is): BM25 alone encodes the whole tiny corpus faster than a kill can aim.
SLOW_CLI = """
import sys, time
import sparseretr.batch.encode as encode
from sparseretr.cli import main

write = encode.write_shard
def slow_write(root, shard):
    time.sleep(0.03)
    return write(root, shard)
encode.write_shard = slow_write
sys.exit(main(sys.argv[1:]))
"""


def slow_cli(corpus: Path, out: Path) -> list[str]:
    return [sys.executable, "-c", SLOW_CLI, *build_args(corpus, out)]


@pytest.fixture(scope="module")
def cli_reference(corpus: Path, reference: Path, tmp_path_factory) -> float:
    """An uninterrupted build as a subprocess (as the killed ones run): its wall time."""
    out = tmp_path_factory.mktemp("cli_reference") / "index"
    t0 = time.monotonic()
    subprocess.run(
        slow_cli(corpus, out),
        check=True,
        capture_output=True,
        timeout=300,
    )
    elapsed = time.monotonic() - t0
    assert_same_index(reference, out)
    return elapsed


def _shards_on_disk(work: Path) -> int:
    try:
        return sum(1 for p in work.iterdir() if p.name.startswith("shard-"))
    except FileNotFoundError:
        return 0


def _run_killed(cmd: list[str], rng: random.Random, mode: str, ref_s: float) -> int | None:
    """Start the build and kill -9 it at a random point: the shards on disk then, or None
    when the run got to the end."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    work = Path(cmd[cmd.index("--out") + 1] + ".work")
    if mode == "shards":  # mid-encode: once a random number of further shards is on disk
        before, total = _shards_on_disk(work), N_DOCS // 10
        target = before + rng.randint(1, max(1, total - before - 1))
        while proc.poll() is None and _shards_on_disk(work) < target:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.03))
    else:  # anywhere: imports, count, fit, encode, merge, index write, cleanup
        deadline = time.monotonic() + rng.uniform(0.3, 1.1) * ref_s
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    if not killed:
        assert proc.returncode == 0, proc.stderr.read().decode()
    proc.stderr.close()
    out = work.with_name(work.name.removesuffix(".work"))
    if not killed or (out.exists() and not work.exists()):
        return None  # done, or killed on its way out (index published, work folder gone)
    return _shards_on_disk(work)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resume_after_kill9_gives_the_same_index(
    seed: int, corpus: Path, reference: Path, cli_reference: float, tmp_path: Path
):
    out = tmp_path / "index"
    cmd = slow_cli(corpus, out)
    ref_s = cli_reference
    rng = random.Random(seed)
    kills: list[int] = []  # shards on disk at each kill
    for mode in ("shards", "time", "shards"):
        shards = _run_killed(cmd, rng, mode, ref_s)
        if shards is None:
            break  # this run got to the end
        kills.append(shards)
    else:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert any(0 < n < N_DOCS // 10 for n in kills), f"no kill landed mid-encode: {kills}"
    assert_same_index(reference, out)
    # No work folder, no temp folder of an index write: the resumed run removed them. (Only a
    # kill during the very last deletion may leave its renamed-away trash, harmlessly.)
    left = [p.name for p in tmp_path.iterdir() if not p.name.startswith(".index.work.tmp-")]
    assert left == ["index"]


# ------------------------------------------------------------------ refusals and input kinds
def test_resume_with_changed_options_is_refused(corpus: Path, reference: Path, tmp_path, capsys):
    out = tmp_path / "index"
    build(corpus, out, "--keep-work", "--limit", "200")
    shutil.rmtree(out)  # as if killed before the write: all shards, no index
    work = work_dir_for(out)
    shards = sorted(p.name for p in work.glob("shard-*"))
    assert len(shards) == 20
    capsys.readouterr()
    assert main(build_args(corpus, out, "--shard-size", "20")) == 2  # and no --limit
    err = capsys.readouterr().err
    assert "other settings" in err and "shard_size" in err and "limit" in err
    assert "--overwrite" in err and str(work) in err
    assert sorted(p.name for p in work.glob("shard-*")) == shards  # nothing was discarded
    build(corpus, out, "--overwrite")  # discards the mismatched shards, builds afresh
    assert_same_index(reference, out)
    assert not work.exists()


def test_changed_corpus_is_refused(tmp_path: Path, capsys):
    corpus = make_corpus(tmp_path / "c.jsonl", n=40)
    out = tmp_path / "index"
    build(corpus, out, "--keep-work")
    shutil.rmtree(out)
    make_corpus(corpus, n=41)  # another size, another mtime
    capsys.readouterr()
    assert main(build_args(corpus, out)) == 2
    assert "changed: corpus" in capsys.readouterr().err


def test_gzip_jsonl_and_beir_folder_give_the_same_index(reference: Path, tmp_path: Path):
    gz = make_corpus(tmp_path / "corpus.jsonl.gz")
    build(gz, tmp_path / "from_gz")
    assert_same_index(reference, tmp_path / "from_gz")
    beir = tmp_path / "beir"
    beir.mkdir()
    shutil.copy(gz, beir / "corpus.jsonl.gz")
    build(beir, tmp_path / "from_folder")
    assert_same_index(reference, tmp_path / "from_folder")


def test_torn_and_damaged_shards_do_not_count(corpus: Path, reference: Path, tmp_path: Path):
    out = tmp_path / "index"
    build(corpus, out, "--keep-work")
    shutil.rmtree(out)
    work = work_dir_for(out)
    whole = (work / "shard-000003.npz").read_bytes()
    # A writer killed mid-file leaves only its temp name: it must never count as shard 3.
    (work / "shard-000003.npz").unlink()
    torn = work / ".shard-000003.npz.tmp-999-deadbeef"
    torn.write_bytes(whole[: len(whole) // 2])
    # A final-named shard that is damaged anyway (a disk error) is found and encoded again.
    (work / "shard-000007.npz").write_bytes(b"not a shard")
    build(corpus, out)
    assert_same_index(reference, out)
    assert not work.exists()


def test_two_worker_processes_match_one(corpus: Path, reference: Path, tmp_path: Path):
    out = tmp_path / "index"
    args = build_args(corpus, out)
    args[args.index("--workers") + 1] = "2"
    assert main(args) == 0
    assert_same_index(reference, out)


def test_default_shards_are_equal_and_one_round_per_worker(tmp_path: Path, capsys):
    """No --shard-size: equal shards, as many as a multiple of the workers (no last round
    with one core idle), and a resume keeps the size the work folder was started with even
    where this machine would plan other workers."""
    corpus = make_corpus(tmp_path / "c.jsonl", n=600)
    explicit, auto = tmp_path / "explicit", tmp_path / "auto"
    build(corpus, explicit)
    args = [a for a in build_args(corpus, auto, "--keep-work") if a not in ("--shard-size", "10")]
    args[args.index("--workers") + 1] = "2"
    capsys.readouterr()
    assert main(args) == 0
    shards = json.loads(capsys.readouterr().out)["shards"]
    assert shards["total"] == 2 and shards["shard_size"] == 300 and shards["workers"] == 2
    assert_same_index(explicit, auto)
    shutil.rmtree(auto)
    (work_dir_for(auto) / "shard-000001.npz").unlink()  # as if killed with shard 0 done
    args[args.index("--workers") + 1] = "1"  # planned afresh: one shard of 600
    assert main(args) == 0
    shards = json.loads(capsys.readouterr().out)["shards"]
    assert shards["shard_size"] == 300 and shards["reused"] == 1
    assert_same_index(explicit, auto)


@pytest.mark.parametrize(
    ("n_docs", "workers", "size", "n_shards"),
    [(5183, 2, 864, 6), (3633, 2, 909, 4), (2000, 2, 1000, 2), (1_000_000, 2, 1000, 1000),
     (2500, 3, 834, 3), (300, 2, 300, 1), (511, 2, 511, 1), (512, 2, 256, 2), (7, 16, 7, 1)],
)  # fmt: skip
def test_auto_shard_size(n_docs: int, workers: int, size: int, n_shards: int):
    from sparseretr.batch.job import auto_shard_size

    assert auto_shard_size(n_docs, workers) == size
    assert -(-n_docs // size) == n_shards


def test_dense_companion_resumes(tmp_path: Path, capsys):
    corpus = make_corpus(tmp_path / "c.jsonl", n=30)
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    build(corpus, full, "--dense")
    build(corpus, resumed, "--dense", "--keep-work")
    shutil.rmtree(resumed)
    for i in (0, 2):  # as if killed with shard 1 done, 0 and 2 not
        (work_dir_for(resumed) / f"shard-00000{i}.npz").unlink()
    capsys.readouterr()
    assert main(build_args(corpus, resumed, "--dense")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["shards"]["reused"] == 1 and summary["docs_encoded"] == 20
    assert summary["docs_per_s"] == pytest.approx(20 / summary["encode_s"], rel=0.01)
    assert_same_index(full, resumed)  # includes dense/faiss.index and dense.json bytes
    faiss_file = resumed / "segments" / "seg-000000" / "dense" / "faiss.index"
    assert faiss_file.stat().st_size > 30 * 384 * 4


def test_summary_reports_phases_and_resume(corpus: Path, tmp_path: Path, capsys):
    out = tmp_path / "index"
    assert main(build_args(corpus, out, "--keep-work")) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["n_docs"] == N_DOCS and first["shards"]["total"] == 30
    assert first["shards"]["reused"] == 0 and first["bytes_on_disk"] > 0
    assert set(first["phases_s"]) >= {"count", "fit", "encode", "merge", "write"}
    assert first["nnz_per_doc"] == pytest.approx(first["n_postings"] / N_DOCS)
    assert first["docs_encoded"] == N_DOCS
    # Rerun: the index is already there and was made by this work folder: no error, cleanup.
    assert main(build_args(corpus, out)) == 0
    assert json.loads(capsys.readouterr().out)["shards"] == {"already_built": True}
    assert not work_dir_for(out).exists()
    shutil.rmtree(out)
    assert main(build_args(corpus, out, "--keep-work")) == 0
    capsys.readouterr()
    shutil.rmtree(out)
    assert main(build_args(corpus, out)) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["shards"]["reused"] == 30 and resumed["docs_encoded"] == 0
    assert resumed.get("docs_per_s") in (None, 0.0)  # nothing encoded: no rate to claim


def test_ray_flag_without_ray_says_how_to_install(corpus: Path, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: import fails
    assert main(build_args(corpus, tmp_path / "index", "--ray")) == 2
    err = capsys.readouterr().err
    assert "--ray needs Ray Data" in err and "pip install 'sparseretr[ray]'" in err
    assert not (tmp_path / "index").exists() and not work_dir_for(tmp_path / "index").exists()


def test_documents_are_encoded_in_bf16_only_where_the_cpu_computes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dtype auto (the default): a CPU without AVX512-BF16/AMX builds exactly the fp32 index;
    one with it encodes the documents in bf16 (other impacts) and says so in the manifest."""
    from sparseretr.encoders import _torch

    corpus = make_corpus(tmp_path / "corpus.jsonl", n=20)
    model = ("--encoder", "splade", "--max-length", "32", "--shard-size", "5")

    def built(name: str, native_bf16: bool, *extra: str) -> tuple[dict, str]:
        monkeypatch.setattr(_torch, "cpu_has_native_bf16", lambda: native_bf16)
        build(corpus, tmp_path / name, *model, *extra)
        seg = tmp_path / name / "segments" / "seg-000000"
        dtype = json.loads((seg / "manifest.json").read_text())["build"]["dtype"]
        content = index_content(tmp_path / name)
        content.pop("commit")
        manifest = content.pop("manifest.json")
        assert isinstance(manifest, dict)
        return content, dtype

    fp32, fp32_dtype = built("fp32", True, "--dtype", "float32")
    plain_cpu, plain_dtype = built("plain", False)
    bf16_cpu, bf16_dtype = built("bf16", True)
    assert (fp32_dtype, plain_dtype, bf16_dtype) == ("float32", "float32", "bfloat16")
    assert plain_cpu == fp32
    assert bf16_cpu["docstore"] == fp32["docstore"]
    assert bf16_cpu != fp32
