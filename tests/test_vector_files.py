"""Vectors out (`sparseretr export`) and back in (`sparseretr index build --vectors`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparseretr.cli import main
from sparseretr.engine import Engine


@pytest.fixture(scope="module")
def splade_index(tiny_beir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vf") / "splade"
    assert main(["index", "build", "--corpus", str(tiny_beir), "--out", str(out),
                 "--max-length", "64", "--quiet"]) == 0  # fmt: skip
    return out


def top(path: Path, query: str, k: int = 6) -> list[tuple[str, float]]:
    eng = Engine.open(path, dense=False)
    try:
        (res,) = eng.search([query], k=k, mode="sparse")
        return [(h.id, h.score) for h in res.hits]
    finally:
        eng.close()


@pytest.mark.parametrize("fmt", ["anserini", "opensearch"])
def test_round_trip_gives_the_same_search(splade_index: Path, tmp_path: Path, fmt, capsys):
    exported = tmp_path / "out"
    assert main(["export", str(splade_index), str(exported), "--format", fmt]) == 0
    meta = json.loads((exported / "export-info.txt").read_text())
    assert meta["n_docs"] == 6 and meta["format"] == fmt
    if fmt == "anserini":
        first = json.loads((exported / "docs-00000.jsonl").read_text().splitlines()[0])
        assert set(first) == {"id", "contents", "vector"}
        assert all(isinstance(w, int) and 1 <= w <= 255 for w in first["vector"].values())
        source = exported
    else:
        lines = (exported / "bulk.ndjson").read_text().splitlines()
        assert json.loads(lines[0]) == {"index": {"_index": "splade", "_id": "d1"}}
        mapping = json.loads((exported / "mapping.json").read_text())
        assert mapping["mappings"]["properties"]["sparse_embedding"] == {"type": "rank_features"}
        query = json.loads((exported / "query_example.json").read_text())
        assert query["query"]["neural_sparse"]["sparse_embedding"]["query_tokens"]
        source = exported / "bulk.ndjson"
    rebuilt = tmp_path / "rebuilt"
    capsys.readouterr()
    assert main(["index", "build", "--vectors", str(source), "--out", str(rebuilt),
                 "--max-length", "64", "--with-bm25", "--quiet"]) == 0  # fmt: skip
    for q in ("vitamin D cancer", "protein folding chaperones", "sleep memory"):
        got, want = top(rebuilt, q), top(splade_index, q)
        assert [i for i, _ in got] == [i for i, _ in want]
        # Anserini weights are the integer impacts (weight / scale): scores scale by a constant.
        ratio = got[0][1] / want[0][1]
        assert [s for _, s in got] == pytest.approx([ratio * s for _, s in want], rel=0.02)
        if fmt == "opensearch":
            assert ratio == pytest.approx(1.0, rel=0.02)
    eng = Engine.open(rebuilt, dense=False, bm25=True)
    try:
        assert eng.docstore.get("d1")["title"] == "Vitamin D and cancer" or fmt == "anserini"
        assert eng.search(["cancer"], k=2, mode="bm25")[0].hits
    finally:
        eng.close()


def test_bad_vector_files_are_clear_errors(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "a", "contents": "x", "vector": {"zzzqqqxxyy": 3}}) + "\n")
    assert main(["index", "build", "--vectors", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "not in the encoder's vocabulary" in capsys.readouterr().err
    bad.write_text("{not json\n")
    assert main(["index", "build", "--vectors", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["index", "build", "--vectors", str(bad), "--corpus", "x", "--out", "o"]) == 2
    assert "not both" in capsys.readouterr().err
