"""The README's Python examples run as written, in order, from a folder with `mycorpus/`."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(section: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], re.S)


def test_the_python_api_section_has_examples() -> None:
    assert len(python_blocks("Python API")) >= 2


def test_python_api_examples_run(tiny_beir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    shutil.copytree(tiny_beir, tmp_path / "mycorpus")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    for block in python_blocks("Python API"):
        exec(compile(block, str(README), "exec"), scope)  # noqa: S102 - our own README
    out = capsys.readouterr().out.splitlines()
    modes = [line.split(" ", 1)[0] for line in out[:4]]
    assert modes == ["sparse", "dense", "bm25", "hybrid"]
    assert all("[('" in line for line in out[:4])  # each mode found documents
    assert float(out[-1]) > 0  # nDCG@10 on the tiny qrels
    assert scope["fused"][0].id == "d2"  # found by both runs: fused first
