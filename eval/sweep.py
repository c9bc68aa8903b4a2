"""`eval beir --sweep`: the price of the query-time pruning knobs, nDCG@10 against latency.

Each system's exact point (prune_alpha 1, term_fraction 1) is the anchor: every other point is
read as a speed-up over it (p50, one query at a time, measured in the same run) and an nDCG@10
difference from it. The table names, per system, the fastest setting that loses at most 0.005
nDCG@10 and the best nDCG@10 at 2x and 5x speed-ups.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .report import SystemResult, jsonable

GRID = tuple((a, t) for a in (1.0, 0.9, 0.8, 0.6) for t in (1.0, 0.7, 0.5, 0.3))
LOSS_BUDGET = 0.005


def sweep_points(rows: Sequence[SystemResult]) -> dict[str, list[dict[str, Any]]]:
    """system -> points {prune_alpha, term_fraction, ndcg10, recall100, p50_ms, speedup, delta}."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if not r.extra.get("sweep"):
            continue
        out.setdefault(r.extra["system"], []).append(
            {
                "prune_alpha": r.extra["prune_alpha"],
                "term_fraction": r.extra["term_fraction"],
                "ndcg10": r.metrics.get("NDCG@10"),
                "recall100": r.metrics.get("Recall@100"),
                "p50_ms": r.latency.get("p50_ms"),
                "p99_ms": r.latency.get("p99_ms"),
            }
        )
    for points in out.values():
        exact = next((p for p in points if p["prune_alpha"] == p["term_fraction"] == 1.0), None)
        for p in points:
            ok = exact is not None and p["p50_ms"] and exact["p50_ms"]
            p["speedup"] = exact["p50_ms"] / p["p50_ms"] if ok else None
            p["delta"] = p["ndcg10"] - exact["ndcg10"] if exact is not None else None
    return out


def picks(points: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The settings a user should pick: within the loss budget, and at 2x / 5x speed-ups."""
    def best(cands: list[Mapping[str, Any]], key: str) -> Mapping[str, Any] | None:
        return max(cands, key=lambda p: p[key]) if cands else None

    timed = [p for p in points if p["speedup"] is not None]
    return {
        f"fastest within {LOSS_BUDGET} nDCG@10": best(
            [p for p in timed if p["delta"] >= -LOSS_BUDGET], "speedup"
        ),
        "best nDCG@10 at >= 2x": best([p for p in timed if p["speedup"] >= 2], "ndcg10"),
        "best nDCG@10 at >= 5x": best([p for p in timed if p["speedup"] >= 5], "ndcg10"),
    }


def _fmt(v: Any, f: str) -> str:
    return "–" if v is None else f.format(v)


def markdown_sweep(table: Mapping[str, list[dict[str, Any]]]) -> str:
    lines = []
    for system, points in table.items():
        lines += [
            f"**{system}**",
            "",
            "| prune_alpha | term_fraction | nDCG@10 | Δ vs exact | R@100 | p50 ms | speed-up |",
            "|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for p in points:
            lines.append(
                f"| {p['prune_alpha']:g} | {p['term_fraction']:g} | {_fmt(p['ndcg10'], '{:.4f}')} "
                f"| {_fmt(p['delta'], '{:+.4f}')} | {_fmt(p['recall100'], '{:.4f}')} "
                f"| {_fmt(p['p50_ms'], '{:.2f}')} | {_fmt(p['speedup'], '{:.2f}x')} |"
            )
        lines.append("")
        for what, p in picks(points).items():
            setting = (
                "none"
                if p is None
                else f"prune_alpha={p['prune_alpha']:g}, term_fraction={p['term_fraction']:g} "
                f"({p['speedup']:.2f}x, nDCG@10 {p['ndcg10']:.4f}, {p['delta']:+.4f})"
            )
            lines.append(f"- {what}: {setting}")
        lines.append("")
    return "\n".join(lines)


def plot(table: Mapping[str, list[dict[str, Any]]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for system, points in table.items():
        pts = sorted((p for p in points if p["p50_ms"]), key=lambda p: p["p50_ms"])
        ax.plot([p["p50_ms"] for p in pts], [p["ndcg10"] for p in pts], "o-", label=system)
        for p in pts:
            ax.annotate(f"{p['prune_alpha']:g}/{p['term_fraction']:g}",
                        (p["p50_ms"], p["ndcg10"]), fontsize=6)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency per query, ms (log)")
    ax.set_ylabel("nDCG@10")
    ax.set_title(title + "  (labels: prune_alpha/term_fraction)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_sweep(
    out_dir: Path, rows: Sequence[SystemResult], meta: Mapping[str, Any]
) -> list[Path]:
    table = sweep_points(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    title = f"{meta.get('dataset', '?')} ({meta.get('split', '?')})"
    json_path = out_dir / "sweep.json"
    body = {"meta": dict(meta), "systems": table, "picks": {s: picks(p) for s, p in table.items()}}
    json_path.write_text(json.dumps(jsonable(body), indent=2, allow_nan=False) + "\n")
    md_path = out_dir / "sweep.md"
    md_path.write_text(f"# Pruning knobs: {title}\n\n" + markdown_sweep(table))
    return [json_path, md_path, plot(table, out_dir / "sweep.png", title)]
