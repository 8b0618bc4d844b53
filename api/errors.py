"""Errors as RFC 9457 problem+json, mapped from the project's exception tree in one place.

Every error body has `type`, `title`, `status` and `detail`; validation errors add `errors`, a list
of {field, message} where field is a path such as `body.complaints[3].text`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from triage.errors import (
    AuthError,
    ConflictError,
    EmbeddingError,
    ForbiddenError,
    IdempotencyError,
    InputError,
    InvalidTransitionError,
    KnowledgeBaseError,
    NotBuiltError,
    NotFoundError,
    StaleVersionError,
    StoreError,
    TriageError,
    UnknownDepartmentError,
    VectorStoreError,
)

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"


def problem(status: int, slug: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": f"/problems/{slug}", "title": title, "status": status, "detail": detail, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {"Retry-After": "5"} if status == 503 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def field_path(loc: Sequence[str | int]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"field": field_path(e["loc"]), "message": e["msg"]} for e in exc.errors()]
    first = errors[0] if errors else {"field": "", "message": "invalid request"}
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return problem(422, "validation", "Invalid request", f"{first['field']}: {first['message']}{more}", errors=errors)


def _triage_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TriageError)
    if isinstance(exc, UnknownDepartmentError):
        return problem(
            422,
            "unknown-department",
            "Unknown department",
            str(exc),
            errors=[{"field": exc.field, "message": exc.detail}],
            valid_departments=exc.valid,
        )
    if isinstance(exc, InputError):
        return problem(
            422, "validation", "Invalid request", str(exc), errors=[{"field": exc.field, "message": exc.detail}]
        )
    if isinstance(exc, AuthError):
        return problem(401, "unauthorized", "Unauthorized", str(exc))
    if isinstance(exc, ForbiddenError):
        return problem(403, "forbidden", "Forbidden", str(exc))
    if isinstance(exc, NotFoundError):
        return problem(404, "not-found", "Not found", str(exc))
    if isinstance(exc, InvalidTransitionError):
        return problem(
            409,
            "invalid-transition",
            "Action not allowed now",
            str(exc),
            current_status=exc.status,
            allowed_actions=exc.allowed,
        )
    if isinstance(exc, StaleVersionError):
        current = exc.current.model_dump(mode="json") if exc.current is not None else None
        return problem(409, "stale-version", "The case changed", str(exc), current=current)
    if isinstance(exc, IdempotencyError):
        return problem(409, "external-id-conflict", "External id already used", str(exc))
    if isinstance(exc, ConflictError):
        return problem(409, "conflict", "A concurrent change came first", f"{exc}; read it again and retry")
    if isinstance(exc, StoreError):
        return problem(503, "database-unavailable", "Database unavailable", str(exc))
    if isinstance(exc, NotBuiltError):
        return problem(503, "not-built", "The workspace is not built", str(exc))
    if isinstance(exc, VectorStoreError | EmbeddingError | KnowledgeBaseError):
        return problem(503, "dependency-unavailable", "A dependency is unavailable", str(exc))
    log.error("unmapped triage error: %r", exc)
    return problem(500, "internal", "Internal error", type(exc).__name__)


def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    slug = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}.get(exc.status_code, "http")
    return problem(exc.status_code, slug, _title(exc.status_code), str(exc.detail))


def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "internal", "Internal error", "an unexpected error occurred; it has been logged")


def _title(status: int) -> str:
    from http import HTTPStatus

    return HTTPStatus(status).phrase


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(TriageError, _triage_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


class BodyLimit:
    """413 for bodies over `max_bytes`, whether declared in Content-Length or streamed in chunks."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(int(declared))(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, f"request body exceeds {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)

    def _too_large(self, size: int) -> JSONResponse:
        return problem(
            413, "too-large", "Request body too large", f"the body is {size} bytes; the limit is {self.max_bytes} bytes"
        )
