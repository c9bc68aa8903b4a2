"""CLI smoke tests on a tiny corpus, and clear one-line errors for bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sparseretr.cli import main
from sparseretr.fusion import DEFAULTS


@pytest.fixture(scope="module")
def bm25_index(tiny_beir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("idx") / "bm25"
    assert (
        main(
            [
                "index",
                "build",
                "--corpus",
                str(tiny_beir),
                "--out",
                str(out),
                "--encoder",
                "bm25",
                "--quiet",
            ]
        )
        == 0
    )
    return out


def test_build_search_info(bm25_index: Path, capsys):
    capsys.readouterr()
    assert main(["search", "--index", str(bm25_index), "vitamin", "D", "cancer", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["id"] == "d1" and {h["id"] for h in hits} <= {"d1", "d4"}
    assert hits[0]["title"] == "Vitamin D and cancer"
    assert main(["search", "--index", str(bm25_index), "cancer", "--explain"]) == 0
    assert "cancer" in capsys.readouterr().out
    assert main(["index", "info", str(bm25_index), "--verify"]) == 0
    info = json.loads(capsys.readouterr().out)
    (seg,) = info["segments"]  # a fresh build: one segment, nothing deleted
    assert info["generation"] == 1 and seg["n_docs"] == 6 and seg["n_deleted"] == 0
    assert seg["manifest"]["n_docs"] == 6 and seg["manifest"]["encoder_config"]["kind"] == "bm25"


def test_build_with_dense_and_bm25_then_hybrid_eval(tiny_beir: Path, tmp_path: Path, capsys):
    out = tmp_path / "hybrid"
    assert main(["index", "build", "--corpus", str(tiny_beir), "--out", str(out),
                 "--encoder", "inference-free", "--dense", "--with-bm25", "--quiet"]) == 0
    seg = out / "segments" / "seg-000000"
    assert (seg / "dense" / "dense.json").is_file() and (seg / "bm25" / "manifest.json").is_file()
    capsys.readouterr()
    assert main(["eval", "beir", str(tiny_beir), "--index", str(out), "-k", "10",
                 "--out", str(tmp_path / "runs"), "--mode", "dense", "--mode", "bm25",
                 "--mode", "hybrid", "--fusion", "rrf", "--fusion", "convex"]) == 0
    table = capsys.readouterr().out
    for name in ("dense", "bm25", "hybrid rrf", "hybrid convex"):
        assert f"| {name} (hybrid)" in table
    # the index has a BM25 side: the hybrid fuses it at the default share, and the report says so
    (report,) = (tmp_path / "runs").glob("*/report.json")
    systems = json.loads(report.read_text())["systems"]
    hybrid = [s for s in systems if s["extra"]["mode"] == "hybrid"]
    assert [s["extra"]["bm25_weight"] for s in hybrid] == [DEFAULTS["bm25_weight"]] * 2
    assert main(["eval", "beir", str(tiny_beir), "--index", str(out), "-k", "10", "--out",
                 str(tmp_path / "two"), "--mode", "hybrid", "--bm25-weight", "0"]) == 0
    (report,) = (tmp_path / "two").glob("*/report.json")
    assert json.loads(report.read_text())["systems"][0]["extra"]["bm25_weight"] == 0.0


def test_encoder_kind_comes_from_the_model_folder(tiny_beir: Path, tmp_path: Path) -> None:
    """No --encoder: a folder exported as inference-free (or written by sentence-transformers
    with a query/document Router, or shipping idf.json) is indexed as inference-free."""
    import shutil

    from sparseretr.encoders import detect_kind
    from sparseretr.models import resolve_model

    for name, content in (("modules.json", '[{"type": "sentence_transformers.Router"}]'),
                          ("idf.json", "{}")):  # fmt: skip
        (tmp_path / name.split(".")[0]).mkdir()
        (tmp_path / name.split(".")[0] / name).write_text(content)
        assert detect_kind(tmp_path / name.split(".")[0]) == "inference-free"
    assert detect_kind(None) == detect_kind("splade-tiny") == "splade"
    folder = tmp_path / "exported"
    shutil.copytree(resolve_model("splade-tiny"), folder)
    (folder / "sparseretr_config.json").write_text(json.dumps({"encoder": "inference-free"}))
    out = tmp_path / "if"
    assert main(["index", "build", "--corpus", str(tiny_beir), "--out", str(out),
                 "--model", str(folder), "--quiet"]) == 0  # fmt: skip
    manifest = json.loads((out / "segments" / "seg-000000" / "manifest.json").read_text())
    assert manifest["encoder_config"]["kind"] == "inference-free"
    assert manifest["encoder_config"]["lexical"] is None  # no prior unless asked or shipped
    lex = tmp_path / "if-lex"
    assert main(["index", "build", "--corpus", str(tiny_beir), "--out", str(lex),
                 "--model", str(folder), "--lexical-weight", "2", "--quiet"]) == 0  # fmt: skip
    manifest = json.loads((lex / "segments" / "seg-000000" / "manifest.json").read_text())
    prior = manifest["encoder_config"]["lexical"]
    assert prior["weight"] == 2.0 and prior["avgdl"] > 1
    assert main(["index", "build", "--corpus", str(tiny_beir), "--out", str(tmp_path / "x"),
                 "--encoder", "bm25", "--lexical-weight", "2", "--quiet"]) != 0  # fmt: skip


def test_splade_build_and_eval(tiny_beir: Path, tmp_path: Path, capsys):
    out = tmp_path / "splade"
    assert (
        main(
            [
                "index",
                "build",
                "--corpus",
                str(tiny_beir / "corpus.jsonl"),
                "--out",
                str(out),
                "--encoder",
                "inference-free",
                "--limit",
                "5",
                "--quiet",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_docs"] == 5 and summary["nnz_per_doc"] > 0
    assert (out / "segments" / "seg-000000" / "encoder" / "idf.json").is_file()
    assert (
        main(
            [
                "eval",
                "beir",
                str(tiny_beir),
                "--index",
                str(out),
                "-k",
                "10",
                "--out",
                str(tmp_path / "runs"),
                "--check-exact",
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "inference-free" in table and "nDCG@10" in table
    report = json.loads(next((tmp_path / "runs").rglob("report.json")).read_text())
    row = report["systems"][0]
    assert row["extra"]["exact_top10_vs_brute_force"]["same_ids"] == 1.0
    assert 0.0 < row["metrics"]["NDCG@10"] <= 1.0


def test_eval_several_datasets_makes_one_table(tiny_beir: Path, tmp_path: Path, capsys):
    """Two datasets (the tiny one, and the same with q1 judged relevant to d6 only), one BM25
    index each named by {dataset}: one row, a column per dataset, their mean, a chart."""
    alpha, beta = tmp_path / "alpha", tmp_path / "beta"
    shutil.copytree(tiny_beir, alpha)
    shutil.copytree(tiny_beir, beta)
    qrels = "query-id\tcorpus-id\tscore\nq1\td6\t1\nq2\td2\t1\nq3\td5\t1\n"
    (beta / "qrels" / "test.tsv").write_text(qrels)
    for ds in (alpha, beta):
        out = tmp_path / "idx" / f"{ds.name}-bm25"
        assert main(["index", "build", "--corpus", str(ds), "--out", str(out),
                     "--encoder", "bm25", "--quiet"]) == 0  # fmt: skip
    runs = tmp_path / "runs"
    template = str(tmp_path / "idx" / "{dataset}-bm25")
    fixed = str(tmp_path / "idx" / "alpha-bm25")
    assert main(["eval", "beir", str(alpha), str(beta), "--index", fixed]) == 2
    assert "{dataset}" in capsys.readouterr().err
    assert main(["eval", "beir", str(alpha), str(tiny_beir), "--index", template]) == 2
    assert f"{tiny_beir.name}-bm25 (for {tiny_beir.name}) does not exist" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["eval", "beir", str(alpha), str(beta), "--index", f"lexical={template}",
                 "-k", "10", "--out", str(runs)]) == 0  # fmt: skip
    table = capsys.readouterr().out
    assert "| System | alpha | beta | mean |" in table and "| lexical |" in table
    summary = json.loads((runs / "beir-test" / "summary.json").read_text())
    assert summary["datasets"] == ["alpha", "beta"]
    (row,) = summary["systems"]
    for ds in summary["datasets"]:
        report = json.loads((runs / f"{ds}-test" / "report.json").read_text())
        assert row["nDCG@10"][ds] == report["systems"][0]["metrics"]["NDCG@10"]
    ndcg = row["nDCG@10"]
    assert ndcg["alpha"] != ndcg["beta"]
    assert ndcg["mean"] == pytest.approx((ndcg["alpha"] + ndcg["beta"]) / 2)
    assert row["R@100"]["mean"] is not None
    assert (runs / "beir-test" / "ndcg10.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["index", "build", "--corpus", "/tmp", "--out", "/tmp/x", "--encoder", "bm25",
          "--model", "m", "--threshold", "0.1"], "--model, --threshold would be ignored"),
        (["search", "--index", "/no/such/index", "x"], "no index at /no/such/index"),
        (["index", "build", "--corpus", "/no/such.jsonl", "--out", "/tmp/x"], "does not exist"),
        (["eval", "beir", "/no/such/folder", "--index", "/tmp/x"], "/no/such/folder"),
    ],
)
def test_user_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("sparseretr: error:") and message in err
    assert "Traceback" not in err


def test_existing_index_is_not_overwritten(bm25_index: Path, tiny_beir: Path, capsys):
    before = (bm25_index / "commit-00000001.json").read_text()
    assert (
        main(
            [
                "index",
                "build",
                "--corpus",
                str(tiny_beir),
                "--out",
                str(bm25_index),
                "--encoder",
                "bm25",
                "--quiet",
            ]
        )
        == 2
    )
    assert "--overwrite" in capsys.readouterr().err
    assert (bm25_index / "commit-00000001.json").read_text() == before


def test_corrupt_index_and_empty_query(bm25_index: Path, tmp_path: Path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(bm25_index, broken)
    (broken / "segments" / "seg-000000" / "post_docs.npy").write_bytes(b"garbage")
    assert main(["search", "--index", str(broken), "cancer"]) == 2
    assert "rebuild" in capsys.readouterr().err
    assert main(["search", "--index", str(bm25_index), "  "]) == 2
    assert "empty" in capsys.readouterr().err


def test_malformed_corpus_line(tmp_path: Path, capsys):
    bad = tmp_path / "c.jsonl"
    bad.write_text('{"_id": "a", "text": "ok"}\n{not json\n')
    assert (
        main(
            [
                "index",
                "build",
                "--corpus",
                str(bad),
                "--out",
                str(tmp_path / "i"),
                "--encoder",
                "bm25",
                "--quiet",
            ]
        )
        == 2
    )
    assert "c.jsonl:2" in capsys.readouterr().err
    assert not (tmp_path / "i").exists()


def test_console_script_help():
    exe = Path(sys.executable).with_name("sparseretr")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "sparseretr.cli"]
    out = subprocess.run([*cmd, "--help"], capture_output=True, text=True, check=True).stdout
    for word in ("index", "search", "eval"):
        assert word in out


def test_eval_sweep_prices_the_pruning_knobs(bm25_index: Path, tiny_beir: Path, tmp_path: Path):
    runs = tmp_path / "runs"
    assert main(["eval", "beir", str(tiny_beir), "--index", f"lex={bm25_index}", "-k", "10",
                 "--out", str(runs), "--sweep", "--term-fraction", "0.5"]) == 0  # fmt: skip
    out = runs / f"{tiny_beir.name}-test"
    sweep = json.loads((out / "sweep.json").read_text())
    (points,) = sweep["systems"].values()
    assert len(points) == 16
    exact = [p for p in points if p["prune_alpha"] == p["term_fraction"] == 1.0]
    assert len(exact) == 1 and exact[0]["delta"] == 0.0 and exact[0]["speedup"] == 1.0
    assert "fastest within 0.005 nDCG@10" in (out / "sweep.md").read_text()
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads((out / "report.json").read_text())
    main_row = next(r for r in report["systems"] if not r["extra"].get("sweep"))
    assert main_row["extra"]["term_fraction"] == 0.5  # the knobs reach the plain rows too


def test_a_bug_keeps_its_traceback_a_user_error_is_one_line(bm25_index: Path, monkeypatch, capsys):
    """Only user errors (UserInputError and the like) become one line and exit 2; a plain
    ValueError from inside the code is a bug and propagates with its traceback."""
    from sparseretr.index.errors import UserInputError

    import sparseretr.engine as engine_mod

    def bug(*a, **k):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(engine_mod.Engine, "open", classmethod(bug))
    with pytest.raises(ValueError, match="internal invariant"):
        main(["search", "--index", str(bm25_index), "cancer"])

    def bad_input(*a, **k):
        raise UserInputError("k must be an integer >= 1")

    monkeypatch.setattr(engine_mod.Engine, "open", classmethod(bad_input))
    assert main(["search", "--index", str(bm25_index), "cancer"]) == 2
    assert capsys.readouterr().err.strip() == "sparseretr: error: k must be an integer >= 1"
