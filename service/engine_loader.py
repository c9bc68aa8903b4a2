"""The service's default engine factory: build the index on first start if asked, then open it.

Its own module because both the app factory (which calls it) and the runner (serve) need it,
and each of those must not import the other.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sparseretr.service.settings import Settings

log = logging.getLogger("service")


def ensure_index(settings: Settings) -> None:
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
        show_progress=False,
    )


def open_engine(settings: Settings) -> Any:
    """Default engine factory: build the index on first start if asked, then open it."""
    from sparseretr.index.segments import is_segmented

    from sparseretr.engine import Engine

    ensure_index(settings)
    extra = {"device": settings.device} if settings.device else {}
    writable = settings.writable and is_segmented(settings.index_path)
    return Engine.open(
        settings.index_path, dense=settings.dense, bm25=settings.bm25, writable=writable, **extra
    )
