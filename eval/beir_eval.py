"""`sparseretr eval beir`: load a BEIR split, search each system, score it, write the report."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cost import sparse_cost
from .data import load_beir
from .metrics import evaluate
from .report import SystemResult, markdown_table, write_report
from .runner import Searcher, run_retrieval


@dataclass
class EvalReport:
    rows: list[SystemResult]
    markdown: str
    json_path: Path
    md_path: Path


def evaluate_system(
    name: str,
    searcher: Searcher,
    data: Any,
    *,
    k: int,
    timing: str,
    encode_seconds: float | None = None,
    extra: dict[str, Any] | None = None,
) -> SystemResult:
    run = run_retrieval(
        searcher, data.queries, k=k, timing="query" if timing == "single" else "batch"
    )
    return SystemResult(
        name=name,
        metrics=evaluate(data.qrels, run.results),
        latency={**run.latency(), **{f"{key}_total": v for key, v in run.breakdown.items()}},
        encode_seconds=encode_seconds,
        extra=extra or {},
    )


def _engine_rows(
    path: str,
    data: Any,
    *,
    modes: Sequence[str],
    fusions: Sequence[str],
    k: int,
    timing: str,
    check_exact: bool,
    options: dict[str, Any],
) -> list[SystemResult]:
    """Every requested mode of one index, through the same Engine the HTTP service uses."""
    from sparseretr.engine import Engine

    engine = Engine.open(
        path, dense=any(m in ("dense", "hybrid") for m in modes), bm25="bm25" in modes
    )
    manifest = engine.manifest
    base = {
        "index": str(path),
        "encoder": manifest.get("encoder_config"),
    }
    rows = []
    for mode in modes:
        for fusion in fusions if mode == "hybrid" else [None]:
            engine.check_mode(mode)
            opts = {**options, "fusion": fusion} if fusion else {}
            searcher = engine.searcher(mode, **opts)
            extra = dict(base, mode=mode, **opts)
            if mode == "sparse":
                queries = engine.encode("sparse", list(data.queries.values()))
                extra.update(sparse_cost(engine, queries))
                if check_exact:
                    extra["exact_top10_vs_brute_force"] = engine.exact_agreement(queries)
            name = engine.name if mode == "sparse" else mode
            if fusion:
                name = f"hybrid {fusion}"
            encode_s = manifest.get("build", {}).get("encode_s") if mode == "sparse" else None
            rows.append(
                evaluate_system(
                    f"{name} ({Path(path).name})",
                    searcher,
                    data,
                    k=k,
                    timing=timing,
                    encode_seconds=encode_s,
                    extra=extra,
                )
            )
    return rows


def evaluate_beir(
    dataset: str,
    *,
    split: str = "test",
    indexes: Sequence[str] = (),
    baselines: Sequence[str] = (),
    k: int = 1000,
    out_dir: str | Path = "runs",
    timing: str = "single",
    check_exact: bool = False,
    modes: Sequence[str] = ("sparse",),
    fusions: Sequence[str] = ("rrf",),
    fusion_options: dict[str, Any] | None = None,
) -> EvalReport:
    if not indexes and not baselines:
        raise ValueError("nothing to evaluate: pass --index PATH and/or --baseline bm25")
    data = load_beir(dataset, split=split)
    rows = [
        row
        for p in indexes
        for row in _engine_rows(
            p,
            data,
            modes=modes,
            fusions=fusions,
            k=k,
            timing=timing,
            check_exact=check_exact,
            options=fusion_options or {},
        )
    ]
    for baseline in baselines:
        if baseline != "bm25":
            raise ValueError(f"unknown baseline {baseline!r}")
        from .bm25_pyserini import PyseriniBM25

        rows.append(
            evaluate_system(
                "bm25 pyserini flat (k1=0.9, b=0.4)",
                PyseriniBM25.from_beir(data),
                data,
                k=k,
                timing=timing,
            )
        )
    meta = {
        "dataset": data.name,
        "split": split,
        "n_queries": len(data.queries),
        "n_docs": len(data.corpus),
        "k": k,
        "timing": timing,
        "command": "sparseretr " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    }
    out = Path(out_dir) / f"{data.name}-{split}"
    json_path, md_path = write_report(out, rows, meta)
    return EvalReport(rows, markdown_table(rows), json_path, md_path)
