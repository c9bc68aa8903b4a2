"""``/documents`` and ``/refresh``: read, upsert and delete documents in a live index.

A write is acknowledged once it is durable (index/writer.py logs it, fsynced, before this
answers), and is searchable after the next refresh: the service refreshes every
``refresh_interval_s``, a write with ``?refresh=true`` waits for one, and ``POST /refresh``
forces one. A read-only index (a plain index folder, or ``SPARSERETR_WRITABLE=false``) answers
409 ``read_only_index``.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Query
from fastapi.exceptions import RequestValidationError
from sparseretr.service.deps import EngineDep, MetricsDep, SettingsDep, require_api_key
from sparseretr.service.engine_protocol import engine_docstore
from sparseretr.service.errors import ApiError
from sparseretr.service.metrics import Metrics
from sparseretr.service.schemas import (
    Document,
    DocumentsUpsert,
    ErrorResponse,
    RefreshResult,
    WriteAck,
)

router = APIRouter(tags=["documents"])

DocId = Path(min_length=1, max_length=512, description="external document id")
Refresh = Query(False, description="wait until the write is searchable (one refresh)")

_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 415, 422, 503)
}


def _writable(engine: Any) -> None:
    if not getattr(engine, "writable", False):
        raise ApiError(
            409, "read_only_index",
            "this index does not take writes: it is a plain (unsegmented) index folder, it is "
            "served by Ray shards (SPARSERETR_SHARDS: read-only), or the service runs with "
            "SPARSERETR_WRITABLE=false; write through a single-process service on a segmented "
            "index (`sparseretr index build` writes one)",
        )  # fmt: skip


async def _refresh(engine: Any, metrics: Metrics) -> RefreshResult:
    snap = await anyio.to_thread.run_sync(engine.refresh)
    metrics.set_index_stats(engine.stats())
    return RefreshResult(generation=snap.generation, n_docs=snap.n_docs,
                         segments=len(snap.segments))  # fmt: skip


@router.post("/documents", responses=_WRITE_ERRORS, dependencies=[Depends(require_api_key)])
async def upsert_documents(
    body: DocumentsUpsert,
    engine: EngineDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    refresh: bool = Refresh,
) -> WriteAck:
    """Insert or replace documents by id; answers once the write is durable."""
    if len(body.documents) > settings.max_batch:
        raise RequestValidationError([{
            "type": "too_long", "loc": ("body", "documents"),
            "msg": f"List should have at most {settings.max_batch} items",
            "ctx": {"max_length": settings.max_batch},
        }])  # fmt: skip
    _writable(engine)
    docs = [d.model_dump() for d in body.documents]
    seq = await anyio.to_thread.run_sync(engine.upsert, docs)
    if refresh:
        await _refresh(engine, metrics)
    return WriteAck(seq=seq, ids=[d["id"] for d in docs], searchable=refresh)


@router.delete("/documents/{doc_id}", responses=_WRITE_ERRORS,
               dependencies=[Depends(require_api_key)])  # fmt: skip
async def delete_document(
    engine: EngineDep, metrics: MetricsDep, doc_id: str = DocId, refresh: bool = Refresh
) -> WriteAck:
    """Delete a document; 404 when no live document has this id."""
    _writable(engine)
    seq, (found,) = await anyio.to_thread.run_sync(engine.delete, [doc_id])
    if not found:
        raise ApiError(404, "document_not_found", f"no document with id {doc_id!r}",
                       {"id": doc_id})  # fmt: skip
    if refresh:
        await _refresh(engine, metrics)
    return WriteAck(seq=seq, ids=[doc_id], searchable=refresh)


@router.post("/refresh", responses=_WRITE_ERRORS, dependencies=[Depends(require_api_key)])
async def refresh_index(engine: EngineDep, metrics: MetricsDep) -> RefreshResult:
    """Make every acknowledged write searchable now (one commit)."""
    _writable(engine)
    return await _refresh(engine, metrics)


@router.get("/documents/{doc_id}", response_model=Document,
            responses={404: {"model": ErrorResponse}, 503: {"model": ErrorResponse}})  # fmt: skip
async def get_document(engine: EngineDep, doc_id: str = DocId) -> Document:
    """A stored document by its id (a write shows here at once, before the refresh)."""
    store = engine_docstore(engine)
    if store is None:
        raise ApiError(
            404,
            "document_not_found",
            "this index has no document store (built without texts)",
            {"id": doc_id},
        )
    doc = await anyio.to_thread.run_sync(store.get, doc_id)
    if doc is None:
        raise ApiError(404, "document_not_found", f"no document with id {doc_id!r}", {"id": doc_id})
    return Document.model_validate(
        {"id": str(doc.get("id", doc_id)), "title": str(doc.get("title") or ""),
         "text": str(doc.get("text") or ""), "metadata": dict(doc.get("metadata") or {})},
        strict=False,
    )  # fmt: skip
