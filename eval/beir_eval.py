"""`sparseretr eval beir`: load BEIR splits, search each system, score it, write the reports.

Several datasets make one table (summary.py): an index argument may name its folder per
dataset with `{dataset}` (`--index adapted=runs/adapt-{dataset}/index`), and `LABEL=` gives
the system the same name on every dataset, so its row lines up across columns.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparseretr.index.errors import UserInputError

from sparseretr.beir import load_beir
from sparseretr.metrics import evaluate

from .cost import sparse_cost
from .report import SystemResult, markdown_table, write_report
from .runner import Searcher, run_retrieval
from .summary import markdown_summary, summary_table, write_summary
from .sweep import write_sweep

DATASET_FIELD = "{dataset}"
# --baseline name -> (row name, multifield)
BASELINES = {
    "bm25": ("bm25 pyserini flat (k1=0.9, b=0.4)", False),
    "bm25-multifield": ("bm25 pyserini multifield (k1=0.9, b=0.4)", True),
}


@dataclass
class EvalReport:
    rows: list[SystemResult]  # every dataset's rows, in order
    markdown: str  # one dataset: its table; several: the summary tables
    json_path: Path  # one dataset: its report.json; several: summary.json
    md_path: Path
    per_dataset: dict[str, list[SystemResult]] | None = None
    files: list[Path] | None = None  # every file written


MODES = ("sparse", "dense", "hybrid", "bm25")


@dataclass(frozen=True)
class IndexArg:
    """One --index argument: `[LABEL=]PATH[:MODE,MODE...]`."""

    label: str | None
    path: str  # may hold {dataset}
    modes: tuple[str, ...] | None  # None: the command's --mode list


def parse_index(arg: str) -> IndexArg:
    """`LABEL=` names the system's rows; `:sparse,bm25` evaluates only those modes on this
    index (a path holding '=' needs a label: `x=a=b`)."""
    label, sep, path = arg.partition("=")
    if not (sep and label and "/" not in label):
        label, path = None, arg
    modes = None
    head, colon, tail = path.rpartition(":")
    if colon and head and tail and all(m in MODES for m in tail.split(",")):
        path, modes = head, tuple(tail.split(","))
    return IndexArg(label, path, modes)


def index_for(template: str, dataset: str) -> str:
    return template.replace(DATASET_FIELD, dataset)


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


def _engine_rows(path: str, data: Any, **options: Any) -> list[SystemResult]:
    """Every requested mode of one index, through the same Engine the HTTP service uses
    (options: see _mode_rows)."""

    from sparseretr.engine import Engine

    modes = options["modes"]
    engine = Engine.open(
        path,
        dense=any(m in ("dense", "hybrid") for m in modes),
        bm25=any(m in ("bm25", "hybrid") for m in modes),
    )
    try:
        return _mode_rows(engine, path, data, **options)
    finally:
        engine.close()


def _mode_rows(
    engine: Any,
    path: str,
    data: Any,
    *,
    label: str | None,
    modes: Sequence[str],
    fusions: Sequence[str],
    k: int,
    timing: str,
    check_exact: bool,
    options: dict[str, Any],
    knobs: dict[str, float] | None = None,
    sweep: Sequence[tuple[float, float]] = (),
) -> list[SystemResult]:
    """knobs (prune_alpha, term_fraction) apply to the sparse, bm25 and hybrid rows; each sweep
    point (prune_alpha, term_fraction) adds a sparse row marked extra["sweep"]."""
    from sparseretr.eval.searcher import ModeSearcher, exact_agreement

    knobs = knobs or {}
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
            if fusion:  # the share the engine applies, recorded in the report
                opts["bm25_weight"] = engine.hybrid_bm25_weight(opts.get("bm25_weight"))
            if mode != "dense":
                opts.update(knobs)
            searcher = ModeSearcher(engine, mode, **opts)
            extra = dict(base, mode=mode, **opts)
            if mode == "sparse":
                queries = engine.encode("sparse", list(data.queries.values()))
                extra.update(sparse_cost(engine, queries))
                if check_exact:
                    extra["exact_top10_vs_brute_force"] = exact_agreement(engine, queries)
            name = engine.name if mode == "sparse" else mode
            if fusion:
                name = f"hybrid {fusion}"
            alone = len(modes) == 1 and (mode != "hybrid" or len(fusions) == 1)
            if label is None:
                name = f"{name} ({Path(path).name})"
            elif mode == "sparse" or alone:
                name = label
            else:
                name = f"{name} ({label})"
            encode_s = manifest.get("build", {}).get("encode_s") if mode == "sparse" else None
            rows.append(
                evaluate_system(
                    name,
                    searcher,
                    data,
                    k=k,
                    timing=timing,
                    encode_seconds=encode_s,
                    extra=extra,
                )
            )
    sparse_name = label or f"{engine.name} ({Path(path).name})"
    for a, t in sweep:
        rows.append(
            evaluate_system(
                f"{sparse_name} prune_alpha={a:g} term_fraction={t:g}",
                ModeSearcher(engine, "sparse", prune_alpha=a, term_fraction=t),
                data,
                k=k,
                timing=timing,
                extra={
                    "index": str(path),
                    "mode": "sparse",
                    "sweep": True,
                    "system": sparse_name,
                    "prune_alpha": a,
                    "term_fraction": t,
                },
            )  # fmt: skip
        )
    return rows


def evaluate_beir(
    datasets: str | Sequence[str],
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
    knobs: dict[str, float] | None = None,
    sweep: Sequence[tuple[float, float]] = (),
) -> EvalReport:
    """Evaluate every system on every dataset; one report per dataset, and with several
    datasets a summary (JSON, Markdown, PNG) in `out_dir/beir-<split>/`."""
    names = [datasets] if isinstance(datasets, str) else list(datasets)
    if not names:
        raise UserInputError("no dataset given")
    if not indexes and not baselines:
        raise UserInputError("nothing to evaluate: pass --index PATH and/or --baseline bm25")
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise UserInputError(f"unknown baseline(s) {unknown}; choose from {sorted(BASELINES)}")
    parsed = [parse_index(a) for a in indexes]
    if len(names) > 1:
        fixed = [a.path for a in parsed if DATASET_FIELD not in a.path]
        if fixed:
            raise UserInputError(
                f"with several datasets each --index must name its folder per dataset with "
                f"{DATASET_FIELD} (e.g. indexes/{DATASET_FIELD}-splade); got {fixed}"
            )
    # Load every split and find every index before minutes of searching start.
    loaded = [load_beir(ds, split=split) for ds in names]
    for data in loaded:
        for arg in parsed:
            path = Path(index_for(arg.path, data.name))
            if not path.exists():
                raise FileNotFoundError(f"index {path} (for {data.name}) does not exist")
    command = "sparseretr " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    per_dataset: dict[str, list[SystemResult]] = {}
    files: list[Path] = []
    for data in loaded:
        rows = [
            row
            for arg in parsed
            for row in _engine_rows(
                index_for(arg.path, data.name),
                data,
                label=arg.label,
                modes=arg.modes or modes,
                fusions=fusions,
                k=k,
                timing=timing,
                check_exact=check_exact,
                options=fusion_options or {},
                knobs=knobs,
                sweep=sweep,
            )
        ]
        for baseline in baselines:
            from .bm25_pyserini import PyseriniBM25  # needs Java: imported only when asked

            row_name, multifield = BASELINES[baseline]
            searcher = PyseriniBM25.from_beir(data, multifield=multifield)
            rows.append(evaluate_system(row_name, searcher, data, k=k, timing=timing))
        meta = {
            "dataset": data.name,
            "split": split,
            "n_queries": len(data.queries),
            "n_docs": len(data.corpus),
            "k": k,
            "timing": timing,
            "command": command,
        }
        files += write_report(Path(out_dir) / f"{data.name}-{split}", rows, meta)
        if sweep:
            files += write_sweep(Path(out_dir) / f"{data.name}-{split}", rows, meta)
        rows = [r for r in rows if not r.extra.get("sweep")]
        per_dataset[data.name] = rows
    all_rows = [r for rows in per_dataset.values() for r in rows]
    if len(per_dataset) == 1:
        table = markdown_table(all_rows)
        return EvalReport(all_rows, table, files[0], files[1], per_dataset, files)
    meta = {"split": split, "datasets": list(per_dataset), "k": k, "command": command}
    summary = write_summary(Path(out_dir) / f"beir-{split}", per_dataset, meta)
    markdown = markdown_summary(summary_table(per_dataset))
    return EvalReport(all_rows, markdown, summary[0], summary[1], per_dataset, files + summary)
