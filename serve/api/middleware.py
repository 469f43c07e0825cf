"""Pure ASGI middleware in front of the API: request id, API key, content type, body size, access log."""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders

from model.config import ServeConfig
from serve.api.errors import error_body

log = logging.getLogger("collectguard.serve")
access_log = logging.getLogger("collectguard.access")

#: POST endpoints whose body is JSON: the only ones the body guard reads.
JSON_ENDPOINTS = frozenset({"/v1/score", "/v1/calls", "/v1/reviews", "/v1/reviews/calls"})
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def max_body_bytes(cfg: ServeConfig) -> int:
    """Bytes a request within the character limits can take: 12 per character covers a JSON
    ``\\ud83d\\ude00`` escape of one astral character, plus room for ids and field names."""
    return 12 * cfg.max_chars_per_request + 1024 * cfg.max_segments + 65536


class RequestGuard:
    """Pure ASGI middleware run before routing, so cheap refusals never parse a body.

    Order: request id (echoed on every response) → API key (401 before anything else is said
    about the request) → content type (415) → body size (413, read with a cap so a huge or
    endless body cannot exhaust memory) → the app. One JSON access-log line per request.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], config: ServeConfig) -> None:
        self.app = app
        self.config = config
        self.max_body = max_body_bytes(config)

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        headers = Headers(scope=scope)
        sent = headers.get("x-request-id")
        request_id = sent if sent and _REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500
        started = False

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                MutableHeaders(scope=message).append("x-request-id", request_id)
            await send(message)

        def refuse(code: int, kind: str, message: str, field: str | None = None, **headers: str) -> JSONResponse:
            body = error_body(kind, message, field, request_id)
            return JSONResponse(body, status_code=code, headers=headers or None)

        try:
            path, method = scope["path"], scope["method"]
            refusal = self._check_auth(path, headers, refuse)
            if refusal is None and method == "POST" and path in JSON_ENDPOINTS:
                refusal = self._check_content_type(headers, refuse)
                if refusal is None:
                    body, refusal = await self._read_body(headers, receive, refuse)
                    if refusal is None and body is None:
                        status = 499  # the client went away mid-body (nginx's code, for the access log)
                        return
                    if refusal is None:
                        receive = _replay(body, receive)
            if refusal is not None:
                await refusal(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error on %s %s (request %s)", scope.get("method"), scope.get("path"), request_id)
            if not started:
                await refuse(500, "internal_error", "internal server error")(scope, receive, send_with_id)
        finally:
            access_log.info(
                json.dumps(
                    {
                        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
                        "method": scope.get("method"),
                        "path": scope.get("path"),
                        "status": status,
                        "duration_ms": round((time.perf_counter() - t0) * 1000, 2),
                        "request_id": request_id,
                        "n_segments": state.get("n_segments"),
                    }
                )
            )

    def _check_auth(self, path: str, headers: Headers, refuse: Callable[..., JSONResponse]) -> JSONResponse | None:
        key = self.config.api_key
        if not key or not path.startswith("/v1/"):
            return None
        given = headers.get("x-api-key")
        if given is None:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            given = token.strip() if scheme.lower() == "bearer" else None
        if given is None:
            return refuse(401, "unauthorized", "missing API key: send X-API-Key or Authorization: Bearer",
                          **{"WWW-Authenticate": "Bearer"})  # fmt: skip
        if not hmac.compare_digest(given.encode(), key.encode()):
            return refuse(401, "unauthorized", "invalid API key", **{"WWW-Authenticate": "Bearer"})
        return None

    @staticmethod
    def _check_content_type(headers: Headers, refuse: Callable[..., JSONResponse]) -> JSONResponse | None:
        value = headers.get("content-type")
        media = (value or "").split(";", 1)[0].strip().lower()
        if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
            return None
        got = f"got {value!r}" if value else "no Content-Type header was sent"
        return refuse(415, "unsupported_media_type", f"Content-Type must be application/json; {got}", "content-type")

    async def _read_body(
        self, headers: Headers, receive: Callable, refuse: Callable[..., JSONResponse]
    ) -> tuple[bytes | None, JSONResponse | None]:
        too_big = f"request body exceeds the limit of {self.max_body} bytes"
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                return None, refuse(400, "bad_request", f"invalid Content-Length {declared!r}", "content-length")
            if int(declared) > self.max_body:
                return None, refuse(413, "too_large", too_big, "body")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None, refuse(413, "too_large", too_big, "body")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None


def _replay(body: bytes, receive: Callable) -> Callable:
    """A ``receive`` that hands the app the body already read, then defers to the real one."""
    done = False

    async def replay() -> dict[str, Any]:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
