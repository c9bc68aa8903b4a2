"""FastAPI dependencies: everything a route needs comes from ``app.state`` through these."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from sparseretr.service.batcher import MicroBatcher
from sparseretr.service.errors import ApiError
from sparseretr.service.metrics import Metrics
from sparseretr.service.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def get_batcher(request: Request) -> MicroBatcher:
    return request.app.state.batcher


def get_engine(request: Request) -> Any:
    """The loaded engine; 503 while it is still loading (or if loading failed)."""
    engine = request.app.state.engine
    if engine is not None:
        return engine
    error = request.app.state.engine_error
    if error:
        raise ApiError(503, "engine_unavailable", "the search engine failed to load", error)
    raise ApiError(
        503, "not_ready", "the index is still loading; retry shortly",
        headers={"Retry-After": "5"},
    )


def require_api_key(
    request: Request,
    x_api_key: Annotated[str | None, Header(alias="X-API-Key")] = None,
) -> None:
    """Writes need ``X-API-Key`` when the service has a key configured (else they are open)."""
    settings: Settings = request.app.state.settings
    if not settings.writes_need_key:
        return
    assert settings.api_key is not None
    expected = settings.api_key.get_secret_value().encode()
    if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), expected):
        raise ApiError(
            401, "unauthorized",
            "missing or invalid API key: send it in the X-API-Key header",
            headers={"WWW-Authenticate": 'ApiKey header="X-API-Key"'},
        )


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
BatcherDep = Annotated[MicroBatcher, Depends(get_batcher)]
EngineDep = Annotated[Any, Depends(get_engine)]
