"""The service's default engine factory: build the index on first start if asked, then open it.

Its own module because both the app factory (which calls it) and the runner (serve) need it,
and each of those must not import the other.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparseretr.service.settings import Settings

log = logging.getLogger("service")


@dataclass
class LoadProgress:
    """What the engine loader is doing, for /readyz and the search page while it loads.

    Written by the loader thread, read by request handlers: a lock keeps each read whole."""

    phase: str = "opening the index"
    docs_done: int = 0
    docs_total: int = 0
    started: float = field(default_factory=time.monotonic)
    _first: int = 0  # documents already encoded when this build (or resume) started
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def building(self, done: int, total: int) -> None:
        with self._lock:
            if self.phase != "building the index":
                self.phase, self.started = "building the index", time.monotonic()
                self._first = done
            self.docs_done, self.docs_total = done, total

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {"phase": self.phase}
            if self.docs_total:
                out.update(docs_done=self.docs_done, docs_total=self.docs_total)
                new = self.docs_done - self._first
                elapsed = time.monotonic() - self.started
                if new > 0 and elapsed > 0:
                    out["eta_s"] = round((self.docs_total - self.docs_done) * elapsed / new, 1)
            return out


def ensure_index(settings: Settings, progress: LoadProgress | None = None) -> None:
    """Build ``settings.index_path`` from ``settings.data_path`` when it does not exist yet.

    Runs inside the engine loader (a worker thread), so /healthz answers during a long build.
    """
    index = Path(settings.index_path)
    if index.exists() or not settings.build_if_missing:
        return
    data = Path(settings.data_path)
    if not data.exists():
        raise FileNotFoundError(
            f"index {index} does not exist and there is no data at {data} to build it from; "
            "set SPARSERETR_INDEX_PATH or SPARSERETR_DATA_PATH"
        )
    from sparseretr.batch import build_from_corpus
    from sparseretr.encoders import create_encoder
    from sparseretr.models import DEFAULT_DENSE

    log.warning("index %s is missing: building it from %s (first start)", index, data)
    index.parent.mkdir(parents=True, exist_ok=True)
    build_from_corpus(
        data, index, create_encoder("splade", device=settings.device),
        dense_model=DEFAULT_DENSE if settings.dense else None,
        with_bm25=settings.bm25,
        show_progress=True,  # the bar goes to the server's log (stderr)
        on_progress=progress.building if progress is not None else None,
    )
    if settings.shards > 1:  # one segment per shard actor
        from sparseretr.indexing import split_index

        split_index(index, settings.shards)
    if progress is not None:
        progress.phase = "opening the index"


def open_engine(settings: Settings, progress: LoadProgress | None = None) -> Any:
    """Default engine factory: build the index on first start if asked, then open it."""
    from sparseretr.index.segments import is_segmented

    from sparseretr.engine import Engine

    ensure_index(settings, progress)
    extra = {"device": settings.device} if settings.device else {}
    if settings.shards:
        from sparseretr.cluster.deploy import open_sharded

        engine = open_sharded(
            settings.index_path, settings.shards, ray_address=settings.ray_address,
            dense=settings.dense, bm25=settings.bm25, **extra,
        )  # fmt: skip
    else:
        writable = settings.writable and is_segmented(settings.index_path)
        engine = Engine.open(
            settings.index_path, dense=settings.dense, bm25=settings.bm25, writable=writable,
            **extra,
        )  # fmt: skip
    warm_up(engine, progress)  # sharded: each shard actor decodes its own segments
    # What is loaded now (torch, the models, the index) lives as long as the process. Frozen,
    # the collector's full passes stop walking it (~480k objects): the hits of a few k=1000
    # searches had set one off, a ~235 ms pause in some user's request (benchmarks/README.md).
    gc.collect()
    gc.freeze()
    return engine


def warm_up(engine: Any, progress: LoadProgress | None = None) -> None:
    """One search through every side before /readyz says ready. The first search of a
    process otherwise pays, inside a user's request, for loading the compiled kernels and
    for the index's per-term arrays that the kernels decode on first use (seconds at a
    million documents: benchmarks/README.md)."""
    if progress is not None:
        progress.phase = "warming up"
    t0 = time.perf_counter()
    engine.search(["warm up"], k=1)  # the default mode: hybrid over every side present
    log.info("warmed up in %.0f ms", (time.perf_counter() - t0) * 1e3)
