"""``/documents``: read from the index's doc store; writes are refused until live updates land.

The index is immutable once built, so ``POST /documents`` and ``DELETE /documents/{id}`` answer
501 ``not_implemented`` (after the API-key check, so an unauthenticated caller learns nothing).
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Path
from fastapi.exceptions import RequestValidationError

from service.deps import EngineDep, SettingsDep, require_api_key
from service.engine_protocol import engine_docstore
from service.errors import ApiError
from service.schemas import Document, DocumentsUpsert, ErrorResponse

router = APIRouter(prefix="/documents", tags=["documents"])

DocId = Path(min_length=1, max_length=512, description="external document id")

_REBUILD_HINT = "sparseretr index build --corpus CORPUS --out INDEX --overwrite"


def _not_implemented(operation: str, **details: Any) -> ApiError:
    return ApiError(
        501, "not_implemented",
        "live index updates are not available yet: the index cannot change in place. "
        f"Rebuild it with `{_REBUILD_HINT}` and restart the service.",
        {"operation": operation, "rebuild": _REBUILD_HINT, **details},
    )


_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 413, 415, 422, 501)
}


@router.post("", status_code=202, responses=_WRITE_ERRORS,
             dependencies=[Depends(require_api_key)])
async def upsert_documents(body: DocumentsUpsert, settings: SettingsDep) -> None:
    """Insert or replace documents (not available yet: 501)."""
    if len(body.documents) > settings.max_batch:
        raise RequestValidationError([{
            "type": "too_long", "loc": ("body", "documents"),
            "msg": f"List should have at most {settings.max_batch} items",
            "ctx": {"max_length": settings.max_batch},
        }])
    raise _not_implemented("upsert", documents=len(body.documents))


@router.get("/{doc_id}", response_model=Document,
            responses={404: {"model": ErrorResponse}, 503: {"model": ErrorResponse}})
async def get_document(engine: EngineDep, doc_id: str = DocId) -> Document:
    """A stored document by its id."""
    store = engine_docstore(engine)
    if store is None:
        raise ApiError(404, "document_not_found",
                       "this index has no document store (built without texts)", {"id": doc_id})
    doc = await anyio.to_thread.run_sync(store.get, doc_id)
    if doc is None:
        raise ApiError(404, "document_not_found", f"no document with id {doc_id!r}",
                       {"id": doc_id})
    return Document.model_validate(
        {"id": str(doc.get("id", doc_id)), "title": str(doc.get("title") or ""),
         "text": str(doc.get("text") or ""), "metadata": dict(doc.get("metadata") or {})},
        strict=False,
    )


@router.delete("/{doc_id}", status_code=204, responses=_WRITE_ERRORS,
               dependencies=[Depends(require_api_key)])
async def delete_document(doc_id: str = DocId) -> None:
    """Delete a document (not available yet: 501)."""
    raise _not_implemented("delete", id=doc_id)
