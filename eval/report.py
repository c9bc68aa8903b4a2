"""Write evaluation reports: a full JSON record and a pyserini-style Markdown regression table.

The JSON keeps everything needed to reproduce or diff a run (config, dataset, versions);
the Markdown is the short table people paste into READMEs and PRs.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

VERSIONED_PACKAGES = ("sparseretr", "torch", "numba", "numpy", "beir", "pyserini")

# (header, source dict, key, format) — one column each in the Markdown table.
COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("nDCG@10", "metrics", "NDCG@10", "{:.4f}"),
    ("R@100", "metrics", "Recall@100", "{:.4f}"),
    ("MRR@10", "metrics", "MRR@10", "{:.4f}"),
    ("MAP@100", "metrics", "MAP@100", "{:.4f}"),
    ("p50 ms", "latency", "p50_ms", "{:.2f}"),
    ("p99 ms", "latency", "p99_ms", "{:.2f}"),
    ("doc nnz", "extra", "nnz_per_doc", "{:.1f}"),  # sparse rows: eval.cost.sparse_cost
    ("query nnz", "extra", "nnz_per_query", "{:.1f}"),
    ("FLOPS", "extra", "flops", "{:.3f}"),
)
MISSING = "–"


@dataclass
class SystemResult:
    """One evaluated system: its metrics, query latency summary and index-time encode cost."""

    name: str
    metrics: dict[str, float]
    latency: dict[str, float] = field(default_factory=dict)
    encode_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def package_versions(names: Sequence[str] = VERSIONED_PACKAGES) -> dict[str, str | None]:
    """Installed versions from package metadata (no imports, so torch is not loaded for this)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def markdown_table(rows: Sequence[SystemResult]) -> str:
    """``| System | nDCG@10 | R@100 | ... | p99 ms | doc nnz | query nnz | FLOPS | encode s |``."""
    headers = ["System", *(c[0] for c in COLUMNS), "encode s"]
    lines = [
        "| " + " | ".join(headers) + " |",
        "|:--" + "|--:" * (len(headers) - 1) + "|",
    ]
    for row in rows:
        cells = [row.name.replace("|", "\\|")]
        for _, source, key, fmt in COLUMNS:
            cells.append(_fmt(getattr(row, source).get(key), fmt))
        cells.append(_fmt(row.encode_seconds, "{:.1f}"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(
    out_dir: str | Path, rows: Sequence[SystemResult], meta: Mapping[str, Any]
) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``out_dir``; returns their paths.

    ``meta`` should carry ``dataset``, ``split``, ``n_queries`` and ``config``; ``date`` and
    ``versions`` are filled in unless given.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    full_meta: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": package_versions(),
        **meta,
    }
    document = {"meta": full_meta, "systems": [asdict(row) for row in rows]}

    json_path = out / "report.json"
    json_path.write_text(
        json.dumps(jsonable(document), indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    md_path = out / "report.md"
    md_path.write_text(_markdown_document(rows, full_meta), encoding="utf-8")
    return json_path, md_path


def _markdown_document(rows: Sequence[SystemResult], meta: Mapping[str, Any]) -> str:
    dataset, split = meta.get("dataset", "?"), meta.get("split", "?")
    title = f"# Retrieval evaluation: {dataset} ({split}"
    title += f", {meta['n_queries']} queries)" if "n_queries" in meta else ")"
    versions = meta.get("versions") or {}
    version_str = ", ".join(f"{k} {v}" for k, v in versions.items() if v)
    parts = [title, "", markdown_table(rows)]
    parts.append(f"Date: {meta.get('date')}  ")
    if version_str:
        parts.append(f"Versions: {version_str}  ")
    if meta.get("command"):
        parts += ["", "Reproduce:", "", "```bash", str(meta["command"]), "```"]
    return "\n".join(parts) + "\n"


def _fmt(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    return fmt.format(value)


def jsonable(value: Any) -> Any:
    """Make strict JSON: NaN/inf -> null, numpy scalars -> Python, paths/others -> str."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return jsonable(value.item())
    return str(value)
