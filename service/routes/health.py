"""Operations: liveness, readiness, Prometheus metrics, index statistics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sparseretr.service.deps import EngineDep, MetricsDep, SettingsDep
from sparseretr.service.engine_protocol import engine_modes
from sparseretr.service.metrics import CONTENT_TYPE_LATEST
from sparseretr.service.schemas import Defaults, ErrorResponse, Health, Limits, Ready, Stats

router = APIRouter(tags=["ops"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is alive (it may still be loading the index: see /readyz)."""
    return Health()


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}})
async def readyz(request: Request) -> Any:
    """200 once the engine is loaded and searches can be served; 503 before (or if it failed)."""
    state = request.app.state
    if state.engine is not None:
        return Ready(ready=True, status="ready")
    if state.engine_error:
        body = Ready(ready=False, status="failed", detail=state.engine_error)
    else:
        progress = getattr(state, "load_progress", None)
        body = Ready(
            ready=False,
            status="loading",
            detail=state.engine_loading,
            progress=progress.snapshot() if progress is not None else None,
        )
    return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "5"})


@router.get("/metrics", response_class=Response)
async def metrics_endpoint(metrics: MetricsDep) -> Response:
    """Prometheus text exposition."""
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/stats", response_model=Stats, responses={503: {"model": ErrorResponse}})
async def stats(engine: EngineDep, settings: SettingsDep) -> Stats:
    """Index statistics, the available modes, search defaults and request limits."""
    raw = engine.stats() if hasattr(engine, "stats") else {}
    index = {k: (str(v) if not isinstance(v, int | float | str | bool | list | dict | None)
                 else v) for k, v in dict(raw).items()}
    return Stats(
        index=index,
        modes=engine_modes(engine) or [str(m) for m in index.get("modes", [])],
        defaults=Defaults(
            mode=settings.default_mode, fusion=settings.default_fusion,
            alpha=settings.default_alpha, rrf_k=settings.default_rrf_k,
            normalization=settings.default_normalization,
            candidates=settings.default_candidates,
            bm25_weight=settings.default_bm25_weight,
        ),
        limits=Limits(
            max_k=settings.max_k, max_query_chars=settings.max_query_chars,
            max_batch=settings.max_batch, max_body_bytes=settings.max_body_bytes,
        ),
        writes_need_key=settings.writes_need_key,
    )
