"""HTTP routers: search, documents, health/ops, and the web UI."""

from sparseretr.service.routes import documents, health, search, ui

__all__ = ["documents", "health", "search", "ui"]
