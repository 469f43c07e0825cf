"""One error body for every 4xx/5xx answer of the API: the exception, the body and the handlers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve.api.batcher import BatcherClosed, DeadlineExceeded, QueueFull
from serve.api.schemas import ErrorResponse

_STATUS_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    503: "not_ready",
    504: "timeout",
}


class ApiError(Exception):
    """A client error with the field it concerns; rendered as the common error body."""

    def __init__(self, status: int, kind: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.field = status, kind, message, field


def error_body(
    kind: str, message: str, field: str | None = None, request_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    detail: dict[str, Any] = {"type": kind, "message": message}
    if field is not None:
        detail["field"] = field
    if request_id is not None:
        detail["request_id"] = request_id
    detail.update({k: v for k, v in extra.items() if v is not None})
    return {"error": detail}


def field_path(loc: Sequence[str | int]) -> str:
    """``("body", "segments", 3, "text")`` → ``segments[3].text`` (what a client would write)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def _request_id(request: Request) -> str | None:
    return request.scope.get("state", {}).get("request_id")


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(error_body(exc.kind, exc.message, exc.field, _request_id(request)), status_code=exc.status)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    rid = _request_id(request)
    if not errors:
        return JSONResponse(error_body("validation_error", "invalid request", None, rid), status_code=422)
    first = errors[0]
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "JSON decode error")
        pos = first["loc"][-1] if first.get("loc") else None
        message = f"request body is not valid JSON: {reason}" + (f" at character {pos}" if isinstance(pos, int) else "")
        return JSONResponse(error_body("invalid_json", message, "body", rid), status_code=400)
    listed = []
    for err in errors:
        loc = list(err.get("loc", ()))
        if loc[:1] == ["body"]:
            loc = loc[1:]
        field = field_path(loc)
        message = "request body is required" if err.get("type") == "missing" and not loc else err.get("msg", "")
        listed.append({"field": field, "loc": list(loc), "type": err.get("type"), "message": f"{field}: {message}"})
    head = listed[0]
    more = f" (and {len(listed) - 1} more problem{'s' if len(listed) > 2 else ''})" if len(listed) > 1 else ""
    body = error_body("validation_error", head["message"] + more, head["field"], rid, loc=head["loc"], errors=listed)
    return JSONResponse(body, status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = _STATUS_TYPES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    if exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    elif exc.status_code == 404:
        message = f"no such endpoint: {request.url.path}"
    return JSONResponse(
        error_body(kind, message, None, _request_id(request)), status_code=exc.status_code, headers=exc.headers
    )


async def _closed(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(error_body("not_ready", str(exc), None, _request_id(request)), status_code=503)


async def _queue_full(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, QueueFull)
    body = error_body("overloaded", str(exc), None, _request_id(request))
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(exc.retry_after)})


async def _deadline(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(error_body("timeout", str(exc), None, _request_id(request)), status_code=504)


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "the body is not valid JSON",
        401: "missing or wrong API key (only when the server has one)",
        413: "too many segments or characters",
        415: "Content-Type is not application/json",
        422: "a field is missing, has the wrong type or value, or a text is empty after normalisation",
        503: "the model is not loaded, or the queue is full (then with Retry-After)",
        504: "the request was not scored within serve.request_timeout_s",
    }.items()
}


def pick(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entries of some error codes."""
    return {code: ERRORS[code] for code in codes}


def add_error_handlers(app: FastAPI) -> None:
    """Route every exception the API raises or meets to the common error body."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(BatcherClosed, _closed)
    app.add_exception_handler(QueueFull, _queue_full)
    app.add_exception_handler(DeadlineExceeded, _deadline)
