"""``POST /search`` (micro-batched) and ``POST /search/batch``."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from sparseretr.service.batcher import Overloaded
from sparseretr.service.deps import BatcherDep, EngineDep, MetricsDep, SettingsDep
from sparseretr.service.engine_protocol import engine_docstore, engine_modes
from sparseretr.service.errors import ApiError
from sparseretr.service.schemas import (
    BatchSearchRequest,
    BatchSearchResponse,
    ComponentScore,
    EffectiveOptions,
    ErrorResponse,
    Highlight,
    Hit,
    MatchedToken,
    SearchOptions,
    SearchRequest,
    SearchResponse,
    Timing,
)
from sparseretr.service.settings import Settings
from sparseretr.service.snippets import make_snippet, query_terms

router = APIRouter(tags=["search"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 413, 415, 422, 503)
}


@dataclass(frozen=True)
class Params:
    """Search options after defaults and limits; hashable, so it keys micro-batches."""

    k: int
    mode: str
    fusion: str
    alpha: float
    rrf_k: int
    normalization: str
    candidates: int
    bm25_weight: float
    explain: bool
    prune_alpha: float
    term_fraction: float

    def engine_kwargs(self) -> dict[str, Any]:
        return asdict(self)


def _limit_error(loc: tuple[Any, ...], typ: str, msg: str, value: Any, ctx: dict) -> dict:
    return {"type": typ, "loc": ("body", *loc), "msg": msg, "input": value, "ctx": ctx}


def resolve(
    options: SearchOptions, queries: Sequence[str], settings: Settings, engine: Any, *,
    batch: bool,
) -> Params:
    """Apply the operator's limits (which may be tighter than the schema's) and defaults."""
    errors = []
    if options.k > settings.max_k:
        errors.append(_limit_error(("k",), "less_than_equal",
                                   f"Input should be less than or equal to {settings.max_k}",
                                   options.k, {"le": settings.max_k}))
    if batch and len(queries) > settings.max_batch:
        errors.append(_limit_error(("queries",), "too_long",
                                   f"List should have at most {settings.max_batch} items",
                                   len(queries), {"max_length": settings.max_batch}))
    for i, q in enumerate(queries):
        if len(q) > settings.max_query_chars:
            loc = ("queries", i) if batch else ("query",)
            errors.append(_limit_error(
                loc, "string_too_long",
                f"String should have at most {settings.max_query_chars} characters",
                f"<{len(q)} characters>", {"max_length": settings.max_query_chars}))
    if errors:
        raise RequestValidationError(errors)
    available = engine_modes(engine)
    mode = options.mode or settings.default_mode
    if options.mode is None and available and mode not in available:
        # the configured default needs a side this index lacks (e.g. hybrid without dense/):
        # use the engine's own default rather than failing every request that names no mode
        fallback = getattr(engine, "default_mode", None)
        mode = fallback if fallback in available else available[0]
    if available and mode not in available:
        raise ApiError(
            400, "mode_unavailable",
            f"mode {mode!r} is not available for this index; available: {', '.join(available)}",
            {"mode": mode, "available": available},
        )
    return Params(
        k=options.k,
        mode=mode,
        fusion=options.fusion or settings.default_fusion,
        alpha=settings.default_alpha if options.alpha is None else options.alpha,
        rrf_k=options.rrf_k or settings.default_rrf_k,
        normalization=options.normalization or settings.default_normalization,
        candidates=max(options.candidates or settings.default_candidates, options.k),
        bm25_weight=(
            options.bm25_weight if options.bm25_weight is not None
            else settings.default_bm25_weight if "bm25" in available else 0.0
        ),
        explain=options.explain,
        prune_alpha=options.prune_alpha or settings.default_prune_alpha,
        term_fraction=options.term_fraction or settings.default_term_fraction,
    )


def _engine_search(engine: Any, queries: list[str], params: Params) -> list[Any]:
    return list(engine.search(queries, **params.engine_kwargs()))


def _get_docs(store: Any, ids: list[str]) -> list[Mapping[str, Any] | None]:
    if store is None:
        return [None] * len(ids)
    if hasattr(store, "get_many"):
        return list(store.get_many(ids))
    return [store.get(i) for i in ids]


def _components(raw: Any) -> dict[str, ComponentScore]:
    out = {}
    for system, comp in (raw or {}).items():
        if isinstance(comp, Mapping):
            out[str(system)] = ComponentScore(score=comp.get("score"), rank=comp.get("rank"))
    return out


def render(
    result: Any, query: str, params: Params, engine: Any, settings: Settings, wall_ms: float,
    batch_size: int,
) -> SearchResponse:
    """Engine result -> response body: doc titles, snippets, highlights, explanations.
    Runs in a worker thread (the doc store is SQLite I/O)."""
    hits_in = list(getattr(result, "hits", []) or [])[: params.k]
    docs = _get_docs(engine_docstore(engine), [str(h.id) for h in hits_in])
    explain = getattr(result, "explain", None)  # None: no tokens to show (e.g. dense mode)
    fallback_tokens = query_terms(query)
    hits = []
    for rank, (h, doc) in enumerate(zip(hits_in, docs, strict=True), 1):
        matched = None
        tokens: list[str] = fallback_tokens
        if params.explain and explain is not None:
            rows = sorted(explain.get(h.id) or [], key=lambda r: -float(r.get("contribution", 0)))
            matched = [MatchedToken(**{f: r[f] for f in MatchedToken.model_fields})
                       for r in rows[: settings.max_matched_tokens]]
            if matched:
                tokens = [m.token for m in matched]
        doc = doc or {}
        snippet, spans = make_snippet(str(doc.get("text") or ""), tokens, settings.snippet_chars)
        hits.append(Hit(
            id=str(h.id),
            score=float(h.score),
            rank=rank,
            title=str(doc.get("title") or ""),
            snippet=snippet,
            components=_components(getattr(h, "components", None)),
            matched=matched,
            highlights=[Highlight(start=s.start, end=s.end, token=s.token) for s in spans],
        ))
    timing = dict(getattr(result, "timing", None) or {})
    return SearchResponse(
        query=query,
        mode=params.mode,  # type: ignore[arg-type]
        hits=hits,
        timing=Timing(
            encode_ms=float(timing.get("encode_ms", 0.0)),
            search_ms=float(timing.get("search_ms", 0.0)),
            fuse_ms=float(timing.get("fuse_ms", 0.0)),
            total_ms=wall_ms,
            batch_size=batch_size,
        ),
        options=EffectiveOptions(**params.engine_kwargs()),  # type: ignore[arg-type]
    )


def _overloaded(e: Overloaded) -> ApiError:
    return ApiError(503, "overloaded", str(e), headers={"Retry-After": "1"})


def _engine_value_error(e: ValueError) -> ApiError:
    return ApiError(400, "invalid_search", str(e) or "the engine refused these search options")


@router.post("/search", response_model=SearchResponse, responses=_ERRORS)
async def search(
    body: SearchRequest, request: Request, engine: EngineDep, settings: SettingsDep,
    batcher: BatcherDep, metrics: MetricsDep,
) -> SearchResponse:
    """Search one query. Concurrent requests with the same options share one engine call."""
    t0 = time.perf_counter()
    params = resolve(body, [body.query], settings, engine, batch=False)
    request.state.mode = params.mode
    try:
        result, batch_size = await batcher.submit(body.query, params)
    except Overloaded as e:
        metrics.rejected.inc()
        raise _overloaded(e) from e
    except ValueError as e:
        raise _engine_value_error(e) from e
    metrics.queries.labels(params.mode).inc()
    wall = (time.perf_counter() - t0) * 1000.0
    return await anyio.to_thread.run_sync(
        render, result, body.query, params, engine, settings, wall, batch_size
    )


@router.post("/search/batch", response_model=BatchSearchResponse, responses=_ERRORS)
async def search_batch(
    body: BatchSearchRequest, request: Request, engine: EngineDep, settings: SettingsDep,
    batcher: BatcherDep, metrics: MetricsDep,
) -> BatchSearchResponse:
    """Search many queries in one engine call (same options for all)."""
    t0 = time.perf_counter()
    params = resolve(body, body.queries, settings, engine, batch=True)
    request.state.mode = params.mode
    metrics.engine_batch.labels("batch").observe(len(body.queries))
    try:
        results = await batcher.run(_engine_search, engine, list(body.queries), params)
    except ValueError as e:
        raise _engine_value_error(e) from e
    if len(results) != len(body.queries):
        raise RuntimeError(f"engine returned {len(results)} results for {len(body.queries)}")
    metrics.queries.labels(params.mode).inc(len(body.queries))
    wall = (time.perf_counter() - t0) * 1000.0

    def render_all() -> list[SearchResponse]:
        return [render(r, q, params, engine, settings, wall, len(body.queries))
                for r, q in zip(results, body.queries, strict=True)]

    rendered = await anyio.to_thread.run_sync(render_all)
    # the engine reports each query's share of the batch's encode/search cost: sum them
    total = Timing(
        encode_ms=sum(r.timing.encode_ms for r in rendered),
        search_ms=sum(r.timing.search_ms for r in rendered),
        fuse_ms=sum(r.timing.fuse_ms for r in rendered),
        total_ms=(time.perf_counter() - t0) * 1000.0,
        batch_size=len(body.queries),
    )
    return BatchSearchResponse(results=rendered, timing=total)
