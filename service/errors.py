"""One error shape for every failure: ``{"error": {"code", "message", "details"}}``.

User input never produces a 500: validation problems are 422 (with pydantic's per-field details),
unparseable JSON is 400, unknown routes 404, wrong methods 405, oversize bodies 413 (see
``service.middleware``), engine ``ValueError`` (e.g. a mode the index was built without) 400.
Only genuine server faults answer 500, with no internals in the body.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sparseretr.index.errors import UnavailableError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("service")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    501: "not_implemented",
    503: "service_unavailable",
}


class ApiError(Exception):
    """Raise from a route to answer ``status`` with the standard error body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": jsonable_encoder(details)}}
    return JSONResponse(body, status_code=status, headers=headers)


def _clean_errors(errors: Any) -> list[dict[str, Any]]:
    """Pydantic errors without ``input``/``ctx`` objects that may be huge or not JSON-safe."""
    out = []
    for e in errors:
        item = {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        ctx = e.get("ctx")
        if ctx:
            item["ctx"] = {k: v if isinstance(v, int | float | str | bool) else str(v)
                           for k, v in ctx.items()}
        out.append(item)
    return out


async def _validation_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = _clean_errors(exc.errors())
    if any(e["type"] == "json_invalid" for e in errors):
        return error_response(400, "malformed_json", "the request body is not valid JSON", errors)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if (
        request.method in ("POST", "PUT", "PATCH")
        and ctype
        and ctype != "application/json"
        and not ctype.endswith("+json")
        and any(e["loc"] == ["body"] for e in errors)
    ):
        return error_response(
            415, "unsupported_media_type",
            f"send the body as JSON with Content-Type: application/json (got {ctype!r})",
        )
    parts = [
        f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
        for e in errors[:3]
    ]
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return error_response(422, "validation_error", "invalid request: " + "; ".join(parts) + more,
                          errors)


async def _http_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    status = exc.status_code
    code = _CODES.get(status, "http_error")
    if status == 404 and exc.detail == "Not Found":
        message = f"no route for {request.method} {request.url.path}"
    elif status == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
        allowed = _allowed_methods(request)
        if allowed:  # Starlette lists only the first matching route's methods
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(allowed)}
    elif status == 400 and "parsing the body" in str(exc.detail):
        code, message = "malformed_json", "the request body is not valid UTF-8 JSON"
    else:
        message = str(exc.detail) if exc.detail else HTTPStatus(status).phrase
    return error_response(status, code, message, None, getattr(exc, "headers", None))


def _allowed_methods(request: Request) -> list[str]:
    """Every method the API documents for this path, read from the (cached) OpenAPI schema."""
    from starlette.routing import compile_path

    methods: set[str] = set()
    for path, operations in request.app.openapi().get("paths", {}).items():
        if compile_path(path)[0].match(request.url.path):
            methods |= {m.upper() for m in operations}
    return sorted(methods)


async def _api_error_handler(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _unavailable(request: Request, exc: UnavailableError) -> JSONResponse:
    """A part the engine needs is down (a shard of a sharded deployment, Java for pyserini):
    the request may succeed later, so 503, with what is missing."""
    log.error("unavailable on %s %s: %s", request.method, request.url.path, exc)
    return error_response(503, "service_unavailable", str(exc), None, {"Retry-After": "5"})


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_handler)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_handler)  # type: ignore[arg-type]
    app.add_exception_handler(ApiError, _api_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(UnavailableError, _unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unhandled)
