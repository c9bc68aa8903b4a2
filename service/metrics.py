"""Prometheus metrics on a per-app ``CollectorRegistry`` (never the global one), so a process
may create many apps (tests do) without duplicate-metric errors."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "MetricsMiddleware"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "sparseretr_http_requests", "HTTP requests by endpoint, mode and status",
            ["endpoint", "method", "mode", "status"], registry=r,
        )
        self.latency = Histogram(
            "sparseretr_http_request_duration_seconds", "HTTP request latency",
            ["endpoint", "mode"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.queries = Counter(
            "sparseretr_queries", "queries searched (a batch request counts each)", ["mode"],
            registry=r,
        )
        self.engine_batch = Histogram(
            "sparseretr_engine_batch_size", "queries per engine.search call", ["source"],
            buckets=_BATCH_BUCKETS, registry=r,
        )
        self.queue_depth = Gauge(
            "sparseretr_microbatch_queue_depth", "single queries waiting or running", registry=r
        )
        self.rejected = Counter(
            "sparseretr_overload_rejections", "requests refused because the queue was full",
            registry=r,
        )
        self.ready = Gauge("sparseretr_engine_ready", "1 once the engine is loaded", registry=r)
        self.index_docs = Gauge("sparseretr_index_documents", "documents in the index", registry=r)
        self.index_postings = Gauge(
            "sparseretr_index_postings", "postings in the sparse index", registry=r
        )
        self.index_vocab = Gauge("sparseretr_index_vocab", "vocabulary size", registry=r)

    def set_index_stats(self, stats: Mapping[str, Any]) -> None:
        for gauge, key in (
            (self.index_docs, "n_docs"),
            (self.index_postings, "n_postings"),
            (self.index_vocab, "vocab"),
        ):
            value = stats.get(key)
            if isinstance(value, int | float):
                gauge.set(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request; the endpoint label is the route template
    (``/documents/{doc_id}``), never the raw path, so label cardinality stays bounded."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            state = scope.get("state") or {}
            mode = str(state.get("mode") or "none")
            elapsed = time.perf_counter() - start
            self.metrics.requests.labels(endpoint, scope["method"], mode, str(status)).inc()
            self.metrics.latency.labels(endpoint, mode).observe(elapsed)
