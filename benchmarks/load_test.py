"""Load test of the HTTP service from a second process on loopback, against in-process calls.

Why both: the HTTP figures (req/s, p50/p99 at N concurrent clients) only mean something next to
the same queries answered by `Engine.search` in this process, measured in the same run. The
server is started here on 127.0.0.1 with an existing index; clients rotate over real queries.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks._common import DEFAULT_DATA, machine_info, markdown, versions, write_json


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentiles(lat: list[float]) -> dict[str, float]:
    a = np.asarray(lat) * 1e3
    return (
        {
            "p50_ms": float(np.percentile(a, 50)),
            "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()),
        }
        if a.size
        else {}
    )


async def _load(
    url: str, queries: list[str], mode: str, clients: int, seconds: float, k: int
) -> dict[str, Any]:
    """`clients` concurrent loops, each sending one request at a time until the deadline."""
    lat: list[float] = []
    errors: dict[str, int] = {}
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(i: int, http: httpx.AsyncClient) -> None:
        n = i
        while time.perf_counter() < deadline:
            body = {"query": queries[n % len(queries)], "k": k, "mode": mode}
            n += clients
            t0 = time.perf_counter()
            try:
                r = await http.post(f"{url}/search", json=body)
                if r.status_code == 200:
                    lat.append(time.perf_counter() - t0)
                else:
                    errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
            except httpx.HTTPError as e:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1

    async with httpx.AsyncClient(timeout=30.0, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        wall = time.perf_counter() - t0
    return {
        "mode": mode,
        "clients": clients,
        "seconds": wall,
        "requests": len(lat),
        "errors": errors,
        "n_errors": sum(errors.values()),
        "rps": len(lat) / wall,
        **_percentiles(lat),
    }


def _in_process(index: str, queries: list[str], mode: str, n: int, k: int) -> dict[str, Any]:
    """The same queries through Engine.search in this process, one at a time (the anchor)."""
    from sparseretr.engine import Engine

    engine = Engine.open(index)
    engine.search(queries[:2], k=k, mode=mode)  # warm-up: JIT, lazy loads
    lat = []
    for q in queries[:n]:
        t0 = time.perf_counter()
        engine.search([q], k=k, mode=mode)
        lat.append(time.perf_counter() - t0)
    engine.close()
    total = sum(lat)
    return {"mode": mode, "queries": len(lat), "qps": len(lat) / total, **_percentiles(lat)}


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}")
        try:
            r = httpx.get(f"{url}/readyz", timeout=2)
        except httpx.HTTPError:
            r = None
        if r is not None and r.status_code == 200:
            return
        if r is not None and r.json().get("status") == "failed":
            raise RuntimeError(f"server failed to load: {r.json().get('detail')}")
        time.sleep(0.5)
    raise TimeoutError(f"server not ready after {timeout:.0f} s")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.load_test", description=__doc__)
    p.add_argument("--index", default="indexes/scifact", help="existing index (with dense/)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="BEIR folder for the queries")
    p.add_argument("--modes", default="sparse,hybrid")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--in-process-queries", type=int, default=300)
    p.add_argument("--out", type=Path, default=None, help="results folder")
    a = p.parse_args(argv)
    if not Path(a.index).is_dir():
        sys.exit(f"no index at {a.index}: build it with `sparseretr index build ... --dense`")

    from sparseretr.beir import load_beir

    queries = list(load_beir(a.data, split="test").queries.values())
    modes = [m for m in a.modes.split(",") if m]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SPARSERETR_LOG_LEVEL": "warning"}
    server = subprocess.Popen(
        [sys.executable, "-m", "sparseretr.service", "--index", a.index, "--port", str(port),
         "--no-build"],  # fmt: skip
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_ready(url, server, timeout=300)
        for mode in modes:  # warm every path before timing
            httpx.post(f"{url}/search", json={"query": queries[0], "mode": mode}, timeout=60)
        http_rows = [asyncio.run(_load(url, queries, m, a.clients, a.seconds, a.k)) for m in modes]
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    local_rows = [_in_process(a.index, queries, m, a.in_process_queries, a.k) for m in modes]

    rows = []
    for h, loc in zip(http_rows, local_rows, strict=True):
        rows.append(
            [
                h["mode"],
                h["clients"],
                h["requests"],
                h["n_errors"],
                h["rps"],
                h.get("p50_ms"),
                h.get("p99_ms"),
                loc["qps"],
                loc.get("p50_ms"),
                h["rps"] / loc["qps"],
            ]
        )
    table = markdown(
        [
            "mode",
            "clients",
            "requests",
            "errors",
            "HTTP req/s",
            "HTTP p50 ms",
            "HTTP p99 ms",
            "in-process q/s (1 thread)",
            "in-process p50 ms",
            "HTTP / in-process",
        ],
        rows,
    )
    record = {
        "config": vars(a) | {"out": str(a.out)},
        "http": http_rows,
        "in_process": local_rows,
        "machine": machine_info(),
        "versions": versions(),
    }
    path = write_json(record, "load_test", a.out)
    print(table)
    print(f"\nresults: {path}")
    return record


if __name__ == "__main__":
    main()
