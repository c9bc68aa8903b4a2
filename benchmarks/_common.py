"""Helpers shared by the benchmarks: thread pinning, machine facts, JSON + Markdown output.

Why here: both scripts must record the same context (versions, load average, thread counts) so
that their numbers can be read as ratios against anchors measured in the same run.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = Path("..") / "shared" / "data" / "beir" / "scifact"


@contextlib.contextmanager
def pinned_threads(n: int) -> Iterator[dict[str, Any]]:
    """Pin Numba, torch and BLAS/OpenMP pools to n threads; restore them on exit.

    Yields what was actually set. Restoring matters when a benchmark's main() runs inside a
    longer process (the smoke tests), so later code gets its thread pools back.
    """
    import numba
    import torch

    info: dict[str, Any] = {"requested": n}
    saved = (numba.get_num_threads(), torch.get_num_threads())
    limiter = None
    try:
        numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
        torch.set_num_threads(n)
        try:
            from threadpoolctl import threadpool_limits

            limiter = threadpool_limits(limits=n)
            info["threadpoolctl"] = n
        except ImportError:
            info["threadpoolctl"] = None
        info["numba"] = numba.get_num_threads()
        info["torch"] = torch.get_num_threads()
        yield info
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
        numba.set_num_threads(saved[0])
        torch.set_num_threads(saved[1])


def machine_info() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg": list(load) if load else None,
    }


def versions() -> dict[str, str | None]:
    from sparseretr.eval.report import package_versions

    return package_versions(
        ("sparseretr", "torch", "transformers", "numba", "numpy", "scipy", "pyserini")
    )


def write_json(record: dict[str, Any], name: str, out_dir: Path | None) -> Path:
    """Write <out_dir>/<name>-<UTC timestamp>.json (and <name>-latest.json); return the path."""
    folder = Path(out_dir) if out_dir is not None else RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    record = {"benchmark": name, "timestamp": stamp, **record}
    text = json.dumps(record, indent=2, default=float)
    path = folder / f"{name}-{stamp}.json"
    path.write_text(text + "\n")
    (folder / f"{name}-latest.json").write_text(text + "\n")
    return path


def markdown(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; floats get 4 significant-ish digits, the first column is left-aligned."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            if v != v:  # NaN
                return "–"
            return f"{v:.3g}" if abs(v) < 10 else f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.1f}"
        return "–" if v is None else str(v)

    lines = [
        "| " + " | ".join(headers) + " |",
        "|:--" + "|--:" * (len(headers) - 1) + "|",
    ]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
