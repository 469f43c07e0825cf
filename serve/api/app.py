"""The HTTP scoring API: ``collectguard serve`` (also the review page, ``/review``, and ``/docs``).

One process holds one model. Requests are validated here (every bad input gets a 4xx naming the
field and the limit), their segments are queued on the :class:`~serve.api.batcher.MicroBatcher`,
and the model runs in its single worker thread, so the event loop stays free for health checks
and new requests. Call results are split and summarised by :func:`serve.scoring.split_by_call`,
the function batch scoring uses, so the API and offline relabeling can never disagree on a
verdict. Middleware (:mod:`serve.api.middleware`), error handlers (:mod:`serve.api.errors`) and
the OpenAPI patching (:mod:`serve.api.openapi`) live in their own modules.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from model.classifier import Classifier
from model.config import ServeConfig, Settings, model_path
from model.labels import ALL_LABELS, VIOLATIONS
from model.preprocess import Segment
from model.privacy import Masked, mask, mask_pii
from serve.api.batcher import MicroBatcher
from serve.api.docs import add_docs
from serve.api.errors import ERRORS, ApiError, add_error_handlers, pick
from serve.api.middleware import RequestGuard
from serve.api.openapi import document_limits
from serve.api.schemas import (
    CallRequest,
    CallResponse,
    Health,
    ModelDescription,
    ScoreRequest,
    ScoreResponse,
    SegmentIn,
    Thresholds,
)
from serve.evidence import attach_evidence, evidence_jobs, variants_of
from serve.review import pages as review_pages
from serve.review import routes as review_routes
from serve.review.context import ReviewContext
from serve.scoring import split_by_call

log = logging.getLogger("collectguard.serve")


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
    settings: Settings

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

    def input_segments(self, segments: Sequence[SegmentIn]) -> tuple[list[Segment], list[Masked | None]]:
        """The input boundary: texts masked (``privacy.mask_pii``) before anything scores or logs them."""
        if not self.settings.privacy.mask_pii:
            return [s.to_segment() for s in segments], [None] * len(segments)
        masked = [mask(s.text) for s in segments]
        segs = [replace(s.to_segment(), text=m.text) for s, m in zip(segments, masked, strict=True)]
        return segs, masked

    async def score(
        self, segments: Sequence[SegmentIn], thresholds: Thresholds | None, explain: bool = False
    ) -> tuple[list[dict[str, Any]], list[Segment]]:
        """Validate, mask, queue for the model, decide with this request's thresholds, explain if asked.

        Returns the results (ids masked like the text) and the segments as scored (masked).
        """
        self.check_limits(segments)
        segs, masked = self.input_segments(segments)
        # Text that normalises to nothing would fail the whole shared batch; find it first, in a
        # thread since normalising 200,000 characters is not free. The normalised text is kept on
        # each Segment, so the model does not normalise it again.
        bad = await asyncio.to_thread(_first_unusable_text, segs)
        if bad is not None:
            i, reason = bad
            raise ApiError(422, "validation_error", f"segments[{i}].text: {reason}", f"segments[{i}].text")
        probs = await self.batcher.submit(segs)
        results = self.classifier.decide(probs, thresholds.as_dict() if thresholds else None)
        if explain:
            await self.explain(segs, results, masked)
        mask_on = self.settings.privacy.mask_pii
        ids = [mask_pii(s.id) if (mask_on and s.id) else s.id for s in segments]
        return [{"id": i, **r} for i, r in zip(ids, results, strict=True)], segs

    async def explain(self, segs: list[Segment], results: list[dict[str, Any]], masked: list[Masked | None]) -> None:
        """Evidence on flagged results: all occlusion variants go through the batcher as one job."""
        cfg = self.settings.explain
        jobs = await asyncio.to_thread(evidence_jobs, segs, results, cfg)
        variants = variants_of(jobs)
        probs = await self.batcher.submit(variants) if variants else np.zeros((0, len(VIOLATIONS)))
        await asyncio.to_thread(attach_evidence, jobs, probs, results, cfg, masked)
        for r in results:
            r.setdefault("evidence", [])


def _first_unusable_text(segments: Sequence[Segment]) -> tuple[int, str] | None:
    for i, seg in enumerate(segments):
        try:
            seg.normalized  # noqa: B018 (computed and cached on the segment)
        except ValueError as e:
            return i, str(e)
    return None


def _service(request: Request) -> Service:
    service = getattr(request.app.state, "service", None)
    if service is None or not service.batcher.running:
        raise ApiError(503, "not_ready", "the model is not loaded yet")
    return service


# -- routes ---------------------------------------------------------------------------------------------

router = APIRouter()


@router.get("/healthz", response_model=Health, tags=["health"])
async def healthz() -> dict[str, str]:
    """Liveness: the process answers. Never needs the model or an API key."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Health, tags=["health"], responses={503: {"model": Health}})
async def readyz(request: Request) -> Any:
    """Readiness: 200 once the model is loaded and the batcher runs, else 503."""
    service = request.app.state.service
    if service is None or not service.batcher.running:
        return JSONResponse({"status": "not_ready"}, status_code=503)
    return {"status": "ready"}


@router.get("/v1/model", response_model=ModelDescription, tags=["model"], responses=pick(401, 503))
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


@router.post("/v1/score", response_model=ScoreResponse, tags=["scoring"], responses=ERRORS)
async def score(body: ScoreRequest, request: Request) -> dict[str, Any]:
    """Score transcript segments; results come back in input order.

    ``speaker`` and ``listener`` matter: the same words can be a disclosure when said to a
    third party and compliant when said to the debtor. ``thresholds`` override the model's
    per-label decision thresholds for this request only. ``explain: true`` adds ``evidence``
    (offsets into the text as sent) to flagged segments.
    """
    request.state.n_segments = len(body.segments)
    service = _service(request)
    results, _ = await service.score(body.segments, body.thresholds, body.explain)
    return {"model": service.model_info, "results": results}


@router.post("/v1/calls", response_model=CallResponse, tags=["scoring"], responses=ERRORS)
async def calls(body: CallRequest, request: Request) -> dict[str, Any]:
    """Score every segment of one call and summarise it, with the call-level checks.

    The summary (shared with batch relabeling) counts agent segments only: customer speech
    is scored and shown but never makes a call non-compliant. Optional metadata (``started_at``,
    ``direction``, ``debtor_id``, ``callee``) feeds ``summary.flags``; a check whose metadata is
    missing is ``null``. Flagged segments carry ``evidence`` unless ``explain`` is false.
    """
    request.state.n_segments = len(body.segments)
    service = _service(request)
    explain = service.settings.explain.flagged if body.explain is None else body.explain
    results, segs = await service.score(body.segments, body.thresholds, explain)
    call = {"call_id": body.call_id, "segments": [s.as_dict() for s in segs], "metadata": body.metadata()}
    [scored] = split_by_call([call], results, service.settings.calls)
    call_id = mask_pii(body.call_id) if service.settings.privacy.mask_pii else body.call_id
    return {"model": service.model_info, "call_id": call_id, "results": results, "summary": scored["summary"]}


# -- the app -----------------------------------------------------------------------------------------


def _lifespan(settings: Settings, classifier: Classifier | None):
    """Load the model (unless given) and run its batcher for the app's lifetime."""
    cfg = settings.serve

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        clf = classifier
        if clf is None:
            log.info("loading model from %s", cfg.model_dir or "the shipped default")
            clf = await asyncio.to_thread(Classifier.load, cfg.model_dir, None, settings.inference)
        batcher = MicroBatcher(
            clf, cfg.batch_max_size, cfg.batch_max_wait_ms, cfg.batch_max_tokens, cfg.queue_max_windows,
            cfg.request_timeout_s,
        )  # fmt: skip
        await batcher.start()
        app.state.service = Service(clf, batcher, cfg, settings)
        log.info("ready: %s %s", clf.name, clf.version)
        try:
            yield
        finally:
            app.state.service = None
            await batcher.stop()
            app.state.review.close()

    return lifespan


def _add_middleware(app: FastAPI, cfg: ServeConfig) -> None:
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


def create_app(settings: Settings, classifier: Classifier | None = None) -> FastAPI:
    """Build the app; the model loads in the lifespan (``serve.model_dir``, None = the shipped one).

    Passing a ``classifier`` skips loading (tests, notebooks, embedding in another app).
    """
    app = FastAPI(
        title="collectguard",
        summary="Flags threats, insults and third-party debt disclosure in Chinese debt-collection transcripts.",
        version=_package_version(),
        lifespan=_lifespan(settings, classifier),
        docs_url=None,  # served from local files by add_docs (no CDN)
        redoc_url=None,
    )
    app.state.service = None
    app.state.review = ReviewContext(settings)
    add_error_handlers(app)
    app.include_router(router)
    app.include_router(review_routes.router)
    app.include_router(review_pages.router)
    app.mount("/review/static", StaticFiles(directory=review_pages.STATIC_DIR), name="review-static")
    add_docs(app)
    document_limits(app, settings.serve)
    _add_middleware(app, settings.serve)
    return app


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

    settings = Settings.from_args(args, env=True)
    if getattr(args, "host", None):
        settings.serve.host = args.host
    if getattr(args, "port", None) is not None:
        settings.serve.port = args.port
    if getattr(args, "model", None) is not None:
        settings.serve.model_dir = args.model
    if settings.serve.model_dir is not None:  # a shipped name (student) from the flag, config or environment
        settings.serve.model_dir = model_path(settings.serve.model_dir)
    if getattr(args, "calls", None) is not None:
        settings.review.calls_dir = args.calls
    if settings.serve.model_dir is not None and not settings.serve.model_dir.is_dir():
        raise FileNotFoundError(f"--model {settings.serve.model_dir}: no such model folder")
    configure_logging()
    app = create_app(settings)
    uvicorn.run(app, host=settings.serve.host, port=settings.serve.port, access_log=False, log_level="info")
    return 0
