"""Application factory.

``create_app(settings, engine)`` wires settings, metrics, middleware, error handlers, routers and
the micro-batcher onto ``app.state``. Without an injected engine, the lifespan loads one with
``Engine.open(settings.index_path)`` (building the index first when it is missing and
``build_if_missing`` is on) in a worker thread; with ``load_in_background`` the server answers
``/healthz`` meanwhile and ``/readyz`` says 503 until it is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from sparseretr.service.batcher import MicroBatcher
from sparseretr.service.engine_loader import LoadProgress, open_engine
from sparseretr.service.errors import install_error_handlers
from sparseretr.service.metrics import Metrics, MetricsMiddleware
from sparseretr.service.middleware import BodySizeLimitMiddleware
from sparseretr.service.routes import documents, health, search, ui
from sparseretr.service.settings import Settings, get_settings

log = logging.getLogger("service")

# (settings, progress) -> engine; the factory reports what it is doing through progress.
EngineFactory = Callable[[Settings, LoadProgress], Any]


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("sparseretr")
    except Exception:
        return "0"


def create_app(
    settings: Settings | None = None,
    engine: Any | None = None,
    *,
    engine_factory: EngineFactory | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    factory = engine_factory or open_engine
    metrics = Metrics()

    def run_batch(queries: list[str], key: Hashable) -> list[tuple[Any, int]]:
        eng = app.state.engine
        results = eng.search(queries, **key.engine_kwargs())  # type: ignore[attr-defined]
        return [(r, len(queries)) for r in results]

    batcher: MicroBatcher = MicroBatcher(
        run_batch,
        window_ms=settings.microbatch_window_ms,
        max_size=settings.microbatch_max_size,
        max_queue=settings.max_queue,
        workers=settings.workers,
        on_batch=metrics.engine_batch.labels("microbatch").observe,
        on_depth=metrics.queue_depth.set,
    )

    def engine_loaded(eng: Any) -> None:
        app.state.engine = eng
        app.state.engine_error = None
        app.state.engine_loading = None
        metrics.ready.set(1)
        with contextlib.suppress(Exception):
            metrics.set_index_stats(eng.stats())

    async def load() -> None:
        app.state.engine_loading = f"loading index {settings.index_path}"
        progress = app.state.load_progress = LoadProgress()
        try:
            eng = await anyio.to_thread.run_sync(factory, settings, progress)
        except Exception as e:  # reported by /readyz; /healthz stays up
            log.exception("could not load the engine from %s", settings.index_path)
            app.state.engine_error = f"{type(e).__name__}: {e}"
            app.state.engine_loading = None
            return
        engine_loaded(eng)
        log.info("engine ready: %s", settings.index_path)

    async def refresh_loop() -> None:
        """Commit pending writes every refresh_interval_s, off the event loop."""
        while True:
            await asyncio.sleep(settings.refresh_interval_s)
            eng = app.state.engine
            if eng is None or not getattr(eng, "writable", False):
                continue
            try:
                await anyio.to_thread.run_sync(eng.refresh)
                metrics.set_index_stats(eng.stats())
            except Exception:  # logged and retried: acknowledged writes stay in the log
                log.exception("periodic refresh failed")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[None]] = []
        if app.state.engine is None:
            if settings.load_in_background:
                tasks.append(asyncio.create_task(load()))
            else:
                await load()
        if settings.refresh_interval_s > 0:
            tasks.append(asyncio.create_task(refresh_loop()))
        try:
            yield
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            await batcher.aclose()
            eng = app.state.engine
            if eng is not None and owned and hasattr(eng, "close"):
                with contextlib.suppress(Exception):
                    eng.close()

    owned = engine is None
    app = FastAPI(
        title="sparseretr",
        version=_version(),
        summary="Learned sparse retrieval over HTTP: sparse, dense, hybrid and BM25 search.",
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.batcher = batcher
    app.state.engine = None
    app.state.engine_error = None
    app.state.engine_loading = None
    app.state.load_progress = None
    if engine is not None:
        engine_loaded(engine)

    install_error_handlers(app)
    # Outermost last: metrics see every response, 413s included.
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    app.include_router(search.router)
    app.include_router(documents.router)
    app.include_router(health.router)
    app.include_router(ui.router)
    return app
