"""The HTTP scoring API: ``collectguard serve``.

One process holds one model. Requests are validated here (every bad input gets a 4xx naming the
field and the limit), their segments are queued on the :class:`~serve.batcher.MicroBatcher`, and
the model runs in its single worker thread, so the event loop stays free for health checks and
new requests. Call summaries come from :func:`serve.summary.summarize_call`, the function batch
relabeling uses, so the API and offline relabeling can never disagree on a verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException

from model.classifier import Classifier
from model.config import ServeConfig, Settings
from model.labels import ALL_LABELS, VIOLATIONS
from model.preprocess import Segment, normalize
from serve.batcher import BatcherClosed, MicroBatcher
from serve.schemas import (
    CallRequest,
    CallResponse,
    ErrorResponse,
    Health,
    ModelDescription,
    ScoreRequest,
    ScoreResponse,
    SegmentIn,
    Thresholds,
)
from serve.summary import summarize_call

log = logging.getLogger("collectguard.serve")
access_log = logging.getLogger("collectguard.access")

#: POST endpoints whose body is JSON: the only ones the body guard reads.
JSON_ENDPOINTS = frozenset({"/v1/score", "/v1/calls"})
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_STATUS_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    503: "not_ready",
}


def max_body_bytes(cfg: ServeConfig) -> int:
    """Bytes a request within the character limits can take: 12 per character covers a JSON
    ``\\ud83d\\ude00`` escape of one astral character, plus room for ids and field names."""
    return 12 * cfg.max_chars_per_request + 1024 * cfg.max_segments + 65536


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


def headline_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Scalars of the manifest's metrics, one level of nesting deep (e.g. ``test.macro_f1``).

    The full metrics (curves, confusion matrices) live in the artifact; the API keeps this answer
    small and its shape stable across training-code changes.
    """
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, bool | int | float | str) or value is None:
            out[key] = value
        elif isinstance(value, Mapping):
            inner = {k: v for k, v in value.items() if isinstance(v, bool | int | float | str) or v is None}
            if inner:
                out[key] = inner
    return out


# -- the scoring service ---------------------------------------------------------------------------


@dataclass
class Service:
    """What a running app holds: the model, its batcher and the limits it enforces."""

    classifier: Classifier
    batcher: MicroBatcher
    config: ServeConfig

    @property
    def model_info(self) -> dict[str, str]:
        return {"name": self.classifier.name, "version": self.classifier.version}

    def check_limits(self, segments: Sequence[SegmentIn]) -> None:
        """Size limits are settings, not schema constants, so they are checked here (413)."""
        cfg = self.config
        if len(segments) > cfg.max_segments:
            raise ApiError(
                413, "too_large",
                f"segments: {len(segments)} segments exceed the limit of {cfg.max_segments} per request",
                "segments",
            )  # fmt: skip
        total = 0
        for i, seg in enumerate(segments):
            if len(seg.text) > cfg.max_chars_per_segment:
                raise ApiError(
                    413, "too_large",
                    f"segments[{i}].text: {len(seg.text)} characters exceed the limit of "
                    f"{cfg.max_chars_per_segment} per segment",
                    f"segments[{i}].text",
                )  # fmt: skip
            total += len(seg.text)
        if total > cfg.max_chars_per_request:
            raise ApiError(
                413, "too_large",
                f"segments: {total} characters in all exceed the limit of {cfg.max_chars_per_request} per request",
                "segments",
            )  # fmt: skip

    async def score(self, segments: Sequence[SegmentIn], thresholds: Thresholds | None) -> list[dict[str, Any]]:
        """Validate, queue for the model, and decide with this request's thresholds."""
        self.check_limits(segments)
        # Text that normalises to nothing would fail the whole shared batch; find it first, in a
        # thread since normalising 200,000 characters is not free.
        bad = await asyncio.to_thread(_first_unusable_text, [s.text for s in segments])
        if bad is not None:
            i, reason = bad
            raise ApiError(422, "validation_error", f"segments[{i}].text: {reason}", f"segments[{i}].text")
        probs = await self.batcher.submit([Segment(s.text, s.speaker, s.listener) for s in segments])
        results = self.classifier.decide(probs, thresholds.as_dict() if thresholds else None)
        return [{"id": s.id, **r} for s, r in zip(segments, results, strict=True)]


def _first_unusable_text(texts: Sequence[str]) -> tuple[int, str] | None:
    for i, text in enumerate(texts):
        try:
            normalize(text)
        except ValueError as e:
            return i, str(e)
    return None


def _service(request: Request) -> Service:
    service = getattr(request.app.state, "service", None)
    if service is None or not service.batcher.running:
        raise ApiError(503, "not_ready", "the model is not loaded yet")
    return service


# -- middleware: request id, auth, content type, body size, access log -----------------------------


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


# -- exception handlers: one error body for everything ---------------------------------------------


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


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "the body is not valid JSON",
        401: "missing or wrong API key (only when the server has one)",
        413: "too many segments or characters",
        415: "Content-Type is not application/json",
        422: "a field is missing, has the wrong type or value, or a text is empty after normalisation",
        503: "the model is not loaded",
    }.items()
}


# -- the app -----------------------------------------------------------------------------------------


def create_app(settings: Settings, classifier: Classifier | None = None) -> FastAPI:
    """Build the app; the model loads in the lifespan (``serve.model_dir``, None = the shipped one).

    Passing a ``classifier`` skips loading (tests, notebooks, embedding in another app).
    """
    cfg = settings.serve

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        clf = classifier
        if clf is None:
            log.info("loading model from %s", cfg.model_dir or "the shipped default")
            clf = await asyncio.to_thread(Classifier.load, cfg.model_dir, None, settings.inference)
        batcher = MicroBatcher(
            lambda segs: clf.predict_proba(segs, batch_size=cfg.batch_max_size),
            cfg.batch_max_size,
            cfg.batch_max_wait_ms,
        )
        await batcher.start()
        app.state.service = Service(clf, batcher, cfg)
        log.info("ready: %s %s", clf.name, clf.version)
        try:
            yield
        finally:
            app.state.service = None
            await batcher.stop()

    app = FastAPI(
        title="collectguard",
        summary="Flags threats, insults and third-party debt disclosure in Chinese debt-collection transcripts.",
        version=_package_version(),
        lifespan=lifespan,
    )
    app.state.service = None
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(BatcherClosed, _closed)

    @app.get("/healthz", response_model=Health, tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers. Never needs the model or an API key."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=Health, tags=["health"], responses={503: {"model": Health}})
    async def readyz(request: Request) -> Any:
        """Readiness: 200 once the model is loaded and the batcher runs, else 503."""
        service = request.app.state.service
        if service is None or not service.batcher.running:
            return JSONResponse({"status": "not_ready"}, status_code=503)
        return {"status": "ready"}

    @app.get("/v1/model", response_model=ModelDescription, tags=["model"], responses=_pick(401, 503))
    async def model_info(request: Request) -> dict[str, Any]:
        """The loaded model: labels, thresholds, preprocessing, window size and headline metrics."""
        clf = _service(request).classifier
        m = clf.manifest
        return {
            "name": clf.name,
            "version": clf.version,
            "labels": list(VIOLATIONS),
            "all_labels": list(ALL_LABELS),
            "thresholds": dict(clf.thresholds),
            "preprocess_version": clf.preprocess_version,
            "max_length": m.max_length,
            "stride": m.stride,
            "base_encoder": (m.base or {}).get("encoder"),
            "method": m.method,
            "metrics": headline_metrics(m.metrics or {}),
        }

    @app.post("/v1/score", response_model=ScoreResponse, tags=["scoring"], responses=ERRORS)
    async def score(body: ScoreRequest, request: Request) -> dict[str, Any]:
        """Score transcript segments; results come back in input order.

        ``speaker`` and ``listener`` matter: the same words can be a disclosure when said to a
        third party and compliant when said to the debtor. ``thresholds`` override the model's
        per-label decision thresholds for this request only.
        """
        request.state.n_segments = len(body.segments)
        service = _service(request)
        results = await service.score(body.segments, body.thresholds)
        return {"model": service.model_info, "results": results}

    @app.post("/v1/calls", response_model=CallResponse, tags=["scoring"], responses=ERRORS)
    async def calls(body: CallRequest, request: Request) -> dict[str, Any]:
        """Score every segment of one call and summarise it.

        The summary (shared with batch relabeling) counts agent segments only: customer speech
        is scored and shown but never makes a call non-compliant.
        """
        request.state.n_segments = len(body.segments)
        service = _service(request)
        results = await service.score(body.segments, body.thresholds)
        segments = [s.model_dump() for s in body.segments]
        return {
            "model": service.model_info,
            "call_id": body.call_id,
            "results": results,
            "summary": summarize_call(segments, results),
        }

    _document_limits(app, cfg)
    # Added last = outermost: CORS preflights must be answered before the API-key check.
    app.add_middleware(RequestGuard, config=cfg)
    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cfg.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-API-Key", "Authorization", "X-Request-ID"],
            expose_headers=["X-Request-ID"],
        )
    return app


def _pick(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: ERRORS[code] for code in codes}


def _document_limits(app: FastAPI, cfg: ServeConfig) -> None:
    """Write this server's limits (and auth, if on) into its OpenAPI document, so clients and
    fuzzers see the real maxima rather than ones fixed when the schema classes were written."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes, tags=app.openapi_tags
            )
            components = schema.get("components", {}).get("schemas", {})
            for name, spec in components.items():
                props = spec.get("properties", {})
                if name.startswith(("SegmentIn", "CallSegmentIn")) and "text" in props:
                    props["text"]["maxLength"] = cfg.max_chars_per_segment
                if name.startswith(("ScoreRequest", "CallRequest")) and "segments" in props:
                    props["segments"]["maxItems"] = cfg.max_segments
                    props["segments"]["description"] = (
                        f"{props['segments'].get('description', '')} (at most {cfg.max_segments} segments and "
                        f"{cfg.max_chars_per_request} characters per request)"
                    ).strip()
            if cfg.api_key:
                schema.setdefault("components", {})["securitySchemes"] = {
                    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                    "Bearer": {"type": "http", "scheme": "bearer"},
                }
                for path, ops in schema.get("paths", {}).items():
                    if path.startswith("/v1/"):
                        for op in ops.values():
                            op["security"] = [{"ApiKey": []}, {"Bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("collectguard")
    except PackageNotFoundError:
        return "0"


# -- the command -------------------------------------------------------------------------------------


def configure_logging(level: int = logging.INFO) -> None:
    """Our loggers to stderr; access lines are bare JSON so log shippers can parse them."""
    plain = logging.StreamHandler(sys.stderr)
    plain.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    bare = logging.StreamHandler(sys.stderr)
    bare.setFormatter(logging.Formatter("%(message)s"))
    for name, handler in (("collectguard", plain), ("collectguard.access", bare)):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False


def run(args: argparse.Namespace) -> int:
    """``collectguard serve``: settings ← config file ← COLLECTGUARD_SERVE__* env ← --set ← flags."""
    import uvicorn

    from model.cli import load_settings

    settings = load_settings(args, env=True)
    if getattr(args, "host", None):
        settings.serve.host = args.host
    if getattr(args, "port", None) is not None:
        settings.serve.port = args.port
    if getattr(args, "model", None) is not None:
        settings.serve.model_dir = args.model
    if settings.serve.model_dir is not None and not settings.serve.model_dir.is_dir():
        raise FileNotFoundError(f"--model {settings.serve.model_dir}: no such model folder")
    configure_logging()
    app = create_app(settings)
    uvicorn.run(app, host=settings.serve.host, port=settings.serve.port, access_log=False, log_level="info")
    return 0
