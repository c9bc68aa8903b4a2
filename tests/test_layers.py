"""Imports run one way: kernels <- index <- sparseretr <- eval / service <- the CLI; no cycles.

Parses every module's imports (function-level ones too: a lazy import is still a dependency)
and fails on an edge to a higher layer, between the two top rooms, or on any import cycle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# repository folder -> the package it installs as
FOLDERS = {
    "kernels": "sparseretr.kernels",
    "index": "sparseretr.index",
    "sparseretr": "sparseretr",
    "eval": "sparseretr.eval",
    "service": "sparseretr.service",
}
LAYERS = (  # most specific first
    ("sparseretr.kernels", 0),
    ("sparseretr.index", 1),
    ("sparseretr.eval", 3),
    ("sparseretr.service", 3),
    ("sparseretr.cli", 4),
    ("sparseretr", 2),
)


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for py in (ROOT / folder).rglob("*.py"):
            parts = [p for p in py.relative_to(ROOT / folder).with_suffix("").parts]
            found[".".join([package, *[p for p in parts if p != "__init__"]])] = py
    return found


def layer(module: str) -> tuple[str, int]:
    for prefix, level in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return prefix, level
    raise AssertionError(f"{module} is in no layer")


def imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        out |= {n for n in names if n in known and n != module}
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports(m, p, known) for m, p in known.items()}


def test_no_upward_or_sideways_import() -> None:
    bad = []
    for a, targets in graph().items():
        (room_a, la) = layer(a)
        for b in targets:
            room_b, lb = layer(b)
            if lb > la or (la == lb == 3 and room_a != room_b):
                bad.append(f"{a} -> {b}")
    assert not bad, "imports against the layers:\n" + "\n".join(sorted(bad))


def test_no_import_cycle() -> None:
    g = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_check_sees_edges() -> None:
    """The parser must find real edges, or the two tests above pass on nothing."""
    g = graph()
    assert "sparseretr.index.vectors" in g["sparseretr.index.build"]
    assert "sparseretr.kernels.scoring" in g["sparseretr.kernels"]  # relative-free package import
    assert any(t.startswith("sparseretr.index") for t in g["sparseretr.engine"])
    assert defaultdict(set, g)["sparseretr.cli"]
