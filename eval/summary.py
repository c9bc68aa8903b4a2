"""One table over several BEIR datasets: a row per system, a column per dataset plus the mean.

The shape of pyserini's regression tables and the BEIR leaderboard: each metric (nDCG@10,
R@100) gets its own table, the mean is taken only over systems that ran on every dataset (a
mean over fewer datasets would not be comparable), and a grouped bar chart shows nDCG@10.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .report import SystemResult, jsonable

METRICS = (("nDCG@10", "NDCG@10"), ("R@100", "Recall@100"))


def summary_table(per_dataset: Mapping[str, Sequence[SystemResult]]) -> dict[str, Any]:
    """{"datasets": [...], "systems": [{"name", metric: {dataset: value, "mean": value}}]}."""
    datasets = list(per_dataset)
    names: list[str] = []
    for rows in per_dataset.values():
        names += [r.name for r in rows if r.name not in names]
    systems = []
    for name in names:
        entry: dict[str, Any] = {"name": name}
        for label, key in METRICS:
            values = {
                ds: r.metrics.get(key) for ds, rows in per_dataset.items() for r in rows
                if r.name == name
            }  # fmt: skip
            complete = len(values) == len(datasets) and all(v is not None for v in values.values())
            values["mean"] = sum(values.values()) / len(values) if complete else None
            entry[label] = values
        systems.append(entry)
    return {"datasets": datasets, "systems": systems}


def markdown_summary(table: Mapping[str, Any]) -> str:
    datasets = table["datasets"]
    parts = []
    for label, _ in METRICS:
        lines = [
            f"**{label}**",
            "",
            "| System | " + " | ".join(datasets) + " | mean |",
            "|:--" + "|--:" * (len(datasets) + 1) + "|",
        ]
        for s in table["systems"]:
            cells = [_cell(s[label].get(d)) for d in [*datasets, "mean"]]
            lines.append(f"| {s['name'].replace('|', chr(92) + '|')} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _cell(v: float | None) -> str:
    return "–" if v is None else f"{v:.4f}"


def bar_chart(table: Mapping[str, Any], path: Path, metric: str = "nDCG@10") -> Path:
    """Grouped bars: one group per system, one bar per dataset (and the mean)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    datasets = [*table["datasets"], "mean"]
    systems = table["systems"]
    width = 0.8 / len(datasets)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(systems) + 2), 4.5))
    for j, ds in enumerate(datasets):
        xs = [i + (j - (len(datasets) - 1) / 2) * width for i in range(len(systems))]
        ys = [s[metric].get(ds) or 0.0 for s in systems]
        bars = ax.bar(xs, ys, width, label=ds)
        ax.bar_label(bars, labels=[_cell(s[metric].get(ds)) for s in systems], fontsize=6,
                     rotation=90, padding=2)  # fmt: skip
    ax.set_xticks(range(len(systems)))
    ax.set_xticklabels([s["name"] for s in systems], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(metric)
    top = max((s[metric].get(ds) or 0.0 for s in systems for ds in datasets), default=1.0)
    ax.set_ylim(0, top * 1.2 + 1e-6)
    ax.legend(fontsize=8)
    ax.set_title(f"{metric} by system and dataset")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_summary(
    out_dir: str | Path,
    per_dataset: Mapping[str, Sequence[SystemResult]],
    meta: Mapping[str, Any],
) -> list[Path]:
    """summary.json, summary.md and ndcg10.png in out_dir; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = summary_table(per_dataset)
    json_path = out / "summary.json"
    document = {"meta": dict(meta), **table}
    json_path.write_text(json.dumps(jsonable(document), indent=2, allow_nan=False) + "\n")
    md_path = out / "summary.md"
    title = f"# BEIR ({meta.get('split', '?')}): {', '.join(table['datasets'])}\n\n"
    reproduce = f"\nReproduce:\n\n```bash\n{meta['command']}\n```\n" if meta.get("command") else ""
    md_path.write_text(title + markdown_summary(table) + reproduce, encoding="utf-8")
    png = bar_chart(table, out / "ndcg10.png")
    return [json_path, md_path, png]
