"""Running the service: ``serve(settings)`` (what ``sparseretr serve`` calls) and its CLI flags."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from sparseretr.service.settings import Settings

log = logging.getLogger("service")


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    """Flags for ``sparseretr serve``; each overrides its SPARSERETR_* environment variable."""
    p.add_argument("--index", help="index folder (SPARSERETR_INDEX_PATH)")
    p.add_argument("--data", help="corpus to build the index from on first start")
    p.add_argument("--host", help="bind address (default 127.0.0.1; 0.0.0.0 in Docker)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--api-key", help="key required in X-API-Key for writes")
    p.add_argument("--workers", type=int, help="inference threads")
    p.add_argument("--no-build", action="store_true", help="never build a missing index")
    p.add_argument("--log-level", help="debug, info, warning ...")


def settings_from_args(a: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        "index_path": getattr(a, "index", None),
        "data_path": getattr(a, "data", None),
        "host": getattr(a, "host", None),
        "port": getattr(a, "port", None),
        "api_key": getattr(a, "api_key", None),
        "workers": getattr(a, "workers", None),
        "log_level": getattr(a, "log_level", None),
    }
    if getattr(a, "no_build", False):
        overrides["build_if_missing"] = False
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def serve(settings: Settings | None = None) -> None:
    """Run uvicorn with the app factory (one process: the engine is shared by threads)."""
    import uvicorn
    from sparseretr.service.app import create_app

    settings = settings or Settings()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
