"""The ``/review`` page: server-rendered HTML (Jinja2, autoescaped) with a little plain JavaScript.

Every response carries a strict Content-Security-Policy (scripts and styles from this server
only), so even a missed escape could not run a caller's ``<script>``. Forms work without
JavaScript (post, then 303 back); ``static/review.js`` adds keyboard shortcuts and posts the same
forms with ``fetch``, getting JSON back. Every POST needs the session's CSRF token.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from model.labels import ALL_LABELS, VIOLATIONS
from serve.api.errors import ApiError, field_path
from serve.api.middleware import max_body_bytes
from serve.review.agreement import agreement
from serve.review.calls import CallEntry, flag_details, flag_state, severity_rank
from serve.review.context import ReviewContext, model_thresholds
from serve.review.highlight import pieces
from serve.review.intake import PAGE_FORMATS, Intake, read_transcript
from serve.review.queue import build_queue
from serve.review.routes import store_review
from serve.review.schemas import CallVerdictIn, ReviewIn
from serve.review.security import CSRF_FIELD, CSRF_HEADER, SESSION_COOKIE, Session

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
REVIEWER_COOKIE = "cg_reviewer"
SORTS = ("queue", "newest", "call_id", "severity", "score")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
_FLAG_NAME = re.compile(r"\w{1,64}")

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True), trim_blocks=True,
    lstrip_blocks=True,
)  # fmt: skip
templates.globals.update(ALL_LABELS=ALL_LABELS, VIOLATIONS=VIOLATIONS, FORMATS=PAGE_FORMATS, SORTS=SORTS)
templates.filters["flag_state"] = flag_state
templates.filters["flag_details"] = flag_details

router = APIRouter(prefix="/review", include_in_schema=False)


@dataclass
class Page:
    """One page request: the review context, its session, and a cookie to set if it is new."""

    request: Request
    ctx: ReviewContext
    session: Session
    new_cookie: str | None

    @classmethod
    def of(cls, request: Request) -> Page:
        ctx: ReviewContext = request.app.state.review
        session = ctx.guard.read_session(request.cookies.get(SESSION_COOKIE))
        cookie = None
        if session is None:
            session, cookie = ctx.guard.new_session()
        return cls(request, ctx, session, cookie)

    @property
    def allowed(self) -> bool:
        return self.ctx.guard.allowed(self.session, self.request.headers.get("x-api-key"))

    @property
    def wants_json(self) -> bool:
        return "application/json" in self.request.headers.get("accept", "")

    def finish(self, response: Response) -> Response:
        if self.new_cookie is not None:
            set_session_cookie(response, self.request, self.new_cookie, self.ctx.guard.lifetime)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"
        return response

    def render(self, name: str, status: int = 200, **values: Any) -> Response:
        html = templates.get_template(name).render(
            csrf=self.ctx.guard.csrf_token(self.session),
            needs_login=self.ctx.guard.needs_login,
            reviewer=unquote(self.request.cookies.get(REVIEWER_COOKIE, ""))[:100],
            **values,
        )
        return self.finish(HTMLResponse(html, status_code=status))

    def redirect(self, url: str) -> Response:
        return self.finish(RedirectResponse(url, status_code=303))

    def login_redirect(self) -> Response:
        target = self.request.url.path + (f"?{self.request.url.query}" if self.request.url.query else "")
        return self.redirect(f"/review/login?next={quote(target, safe='')}")

    def refuse(self, status: int, message: str, field: str | None = None) -> Response:
        if self.wants_json:
            body = {"error": {"type": "refused", "message": message, **({"field": field} if field else {})}}
            return self.finish(JSONResponse(body, status_code=status))
        return self.render("message.html", status, title="Not done", message=message)

    def csrf_ok(self, token: str | None) -> bool:
        return self.ctx.guard.csrf_ok(self.session, token or self.request.headers.get(CSRF_HEADER))


def set_session_cookie(response: Response, request: Request, value: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE, value, max_age=max_age, httponly=True, samesite="strict", path="/",
        secure=request.url.scheme == "https",
    )  # fmt: skip


def safe_next(target: str | None) -> str:
    """Only a path on this page may be a post-login target (no open redirect)."""
    if target and target.startswith("/review") and not target.startswith("//") and "\\" not in target:
        return target
    return "/review"


# -- sign-in ---------------------------------------------------------------------------------------------
@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    page = Page.of(request)
    return page.render("login.html", next=safe_next(next), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    page = Page.of(request)
    form = await request.form()
    target = safe_next(str(form.get("next") or ""))
    if not page.csrf_ok(str(form.get(CSRF_FIELD) or "")):
        return page.render("login.html", 403, next=target, error="The form expired; please sign in again.")
    if not page.ctx.guard.needs_login:
        return page.redirect(target)
    if not page.ctx.guard.key_ok(str(form.get("key") or "")):
        return page.render("login.html", 401, next=target, error="Wrong key.")
    _, cookie = page.ctx.guard.new_session(signed_in=True)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, request, cookie, page.ctx.guard.lifetime)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    page = Page.of(request)
    form = await request.form()
    if not page.csrf_ok(str(form.get(CSRF_FIELD) or "")):
        return page.refuse(403, "missing or wrong CSRF token", CSRF_FIELD)
    response = RedirectResponse("/review/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- the list of calls --------------------------------------------------------------------------------
def _review_counts(ctx: ReviewContext) -> tuple[dict[str, int], set[str]]:
    counts: dict[str, int] = defaultdict(int)
    for r in ctx.store.reviews():
        counts[r["call_id"]] += 1
    return counts, {v["call_id"] for v in ctx.store.call_verdicts()}


def filter_calls(
    entries: list[CallEntry], verdict: str, flag: str, label: str, sort: str, queue_order: list[str]
) -> list[CallEntry]:
    """The list the page shows: filtered by model verdict, raised flag and label, then sorted."""
    out = [
        e for e in entries
        if (not verdict or e.verdict == verdict)
        and (not flag or flag in e.raised_flags())
        and (not label or label in e.labels_present())
    ]  # fmt: skip
    if sort == "queue":
        rank = {ref: i for i, ref in enumerate(queue_order)}
        out.sort(key=lambda e: rank.get(e.ref, len(rank)))
    elif sort == "call_id":
        out.sort(key=lambda e: e.call_id)
    elif sort == "severity":
        out.sort(key=lambda e: (severity_rank(e.verdict), -e.max_score()))
    elif sort == "score":
        out.sort(key=lambda e: -e.max_score())
    return out  # "newest": stored calls newest first, then the folder in file order


@router.get("")
def index(request: Request, verdict: str = "", flag: str = "", label: str = "", sort: str = "newest") -> Response:
    page = Page.of(request)
    if not page.allowed:
        return page.login_redirect()
    problems = []
    if verdict and verdict not in ALL_LABELS:
        problems.append(f"unknown verdict {verdict!r}; showing all")
        verdict = ""
    if label and label not in ALL_LABELS:
        problems.append(f"unknown label {label!r}; showing all")
        label = ""
    if flag and not _FLAG_NAME.fullmatch(flag):
        problems.append(f"unknown flag {flag!r}; showing all")
        flag = ""
    if sort not in SORTS:
        problems.append(f"unknown sort {sort!r}; sorted by newest")
        sort = "newest"
    ctx = page.ctx
    entries = ctx.entries()
    counts, closed = _review_counts(ctx)
    queue = build_queue(entries, model_thresholds(request.app.state), ctx.store.reviews(), closed,
                        ctx.config.queue_margin)  # fmt: skip
    shown = filter_calls(entries, verdict, flag, label, sort, [q.entry.ref for q in queue])
    flags = sorted({name for e in entries for name in e.flags})
    return page.render(
        "index.html", calls=shown, total=len(entries), counts=counts, closed=closed, flags=flags, problems=problems,
        filters={"verdict": verdict, "flag": flag, "label": label, "sort": sort},
        folder=str(ctx.folder.path) if ctx.folder else None, intake=None,
    )  # fmt: skip


# -- paste or upload ------------------------------------------------------------------------------------
async def _read_upload(page: Page, limit: int) -> tuple[bytes, str | None, str] | Response:
    declared = page.request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return page.refuse(413, f"the upload exceeds the limit of {limit} bytes (the API's)", "file")
    form = await page.request.form(max_part_size=limit)
    if not page.csrf_ok(str(form.get(CSRF_FIELD) or "")):
        return page.refuse(403, "missing or wrong CSRF token; reload the page", CSRF_FIELD)
    fmt = str(form.get("format") or "auto")
    upload = form.get("file")
    if isinstance(upload, UploadFile) and upload.filename:
        data = await upload.read(limit + 1)
        name: str | None = upload.filename
    else:
        data, name = str(form.get("text") or "").encode("utf-8"), None
    if len(data) > limit:
        return page.refuse(413, f"the upload exceeds the limit of {limit} bytes (the API's)", "file")
    return data, name, fmt


async def _score(request: Request, intake: Intake) -> list[dict[str, Any]]:
    """Score each read call the way ``/v1/calls`` does; a call over the limits becomes an error."""
    from serve.api.schemas import CallSegmentIn
    from serve.review.calls import report_from_scored
    from serve.scoring import split_by_call

    service = request.app.state.service
    reports = []
    for call in intake.calls:
        where = call.get("position")
        try:
            segments = [CallSegmentIn(**{k: s.get(k) for k in ("text", "speaker", "listener", "start", "end")})
                        for s in call["segments"]]  # fmt: skip
            results, scored_segs = await service.score(segments, None, service.settings.explain.flagged)
        except ApiError as e:
            intake.error(where, f"call {call['call_id']}: {e.message}")
            continue
        except ValidationError as e:
            intake.error(where, f"call {call['call_id']}: {e.errors()[0]['msg']}")
            continue
        # the segments as scored (masked), with the reader's extra fields (tags, positions) kept
        segs = [{**s, **done.as_dict()} for s, done in zip(call["segments"], scored_segs, strict=True)]
        one = {"call_id": call["call_id"], "segments": segs, "metadata": call.get("metadata")}
        [scored] = split_by_call([one], results, service.settings.calls)
        reports.append(report_from_scored(scored, call.get("metadata")))
    return reports


@router.post("/transcripts")
async def add_transcript(request: Request) -> Response:
    page = Page.of(request)
    if not page.allowed:
        return page.refuse(401, "sign in first")
    service = request.app.state.service
    if service is None or not service.batcher.running:
        return page.refuse(503, "the model is not loaded yet; try again in a moment")
    got = await _read_upload(page, max_body_bytes(page.ctx.settings.serve))
    if isinstance(got, Response):
        return got
    data, name, fmt = got
    if fmt not in PAGE_FORMATS:
        return page.refuse(422, f"format must be one of {list(PAGE_FORMATS)}", "format")
    ctx = page.ctx
    intake = await run_in_threadpool(
        read_transcript, data, name, fmt, ctx.settings.relabel.speaker_map, ctx.config.max_upload_calls
    )
    reports = await _score(request, intake)
    ids = await run_in_threadpool(ctx.store.add_calls, reports, name or "pasted text")
    if len(ids) == 1 and not intake.errors:
        return page.redirect(f"/review/calls/s{ids[0]}")
    added = [CallEntry(f"s{i}", name or "pasted text", r) for i, r in zip(ids, reports, strict=True)]
    status = 200 if added else 422
    return page.render("intake.html", status, added=added, errors=intake.errors, source=name or "pasted text")


# -- one call ---------------------------------------------------------------------------------------------
def _segment_rows(entry: CallEntry, reviews: list[dict[str, Any]], thresholds: Mapping[str, float]) -> list[dict]:
    by_segment: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in reviews:
        by_segment[r["segment"]].append(r)
    rows = []
    for i, (seg, res) in enumerate(zip(entry.report["segments"], entry.report["results"], strict=True)):
        rows.append({
            "index": i, "seg": seg, "res": res, "pieces": pieces(seg["text"], res.get("evidence")),
            "reviews": by_segment.get(i, []), "latest": by_segment[i][-1] if by_segment.get(i) else None,
            "near": {lb: abs(float(res["scores"].get(lb, 0)) - thresholds[lb]) for lb in VIOLATIONS},
        })  # fmt: skip
    return rows


@router.get("/calls/{ref}")
def call_view(request: Request, ref: str) -> Response:
    page = Page.of(request)
    if not page.allowed:
        return page.login_redirect()
    entry = page.ctx.entry(ref)
    if entry is None:
        return page.render("message.html", 404, title="No such call", message=f"There is no call {ref!r}.")
    store = page.ctx.store
    thresholds = model_thresholds(request.app.state)
    return page.render(
        "call.html", entry=entry, rows=_segment_rows(entry, store.reviews(entry.call_id), thresholds),
        thresholds=thresholds, call_verdicts=store.call_verdicts(entry.call_id), flags=entry.flags,
        margin=page.ctx.config.queue_margin,
    )  # fmt: skip


def _first_error(e: ValidationError) -> tuple[str, str]:
    err = e.errors()[0]
    field = field_path([p for p in err.get("loc", ()) if p != "body"])
    return field, f"{field}: {err.get('msg', 'invalid')}"


async def _posted(page: Page) -> tuple[Any, Response | None]:
    if not page.allowed:
        return None, page.refuse(401, "sign in first")
    form = await page.request.form()
    if not page.csrf_ok(str(form.get(CSRF_FIELD) or "")):
        return None, page.refuse(403, "missing or wrong CSRF token; reload the page", CSRF_FIELD)
    return form, None


@router.post("/calls/{ref}/segments/{index}")
async def review_segment(request: Request, ref: str, index: int) -> Response:
    page = Page.of(request)
    form, refusal = await _posted(page)
    if refusal is not None:
        return refusal
    entry = await run_in_threadpool(page.ctx.entry, ref)
    if entry is None or not 0 <= index < len(entry.report["segments"]):
        return page.refuse(404, f"no segment {index} in call {ref!r}")
    seg, res = entry.report["segments"][index], entry.report["results"][index]
    verdict = str(form.get("verdict") or "")
    try:
        body = ReviewIn(
            call_id=entry.call_id, segment=index, text=seg["text"], speaker=seg.get("speaker") or "agent",
            listener=seg.get("listener") or "unknown", verdict=verdict,
            labels=[str(x) for x in form.getlist("labels")] if verdict == "correct" else None,
            model_labels=list(res.get("labels") or []), reviewer=str(form.get("reviewer") or "").strip(),
            note=str(form.get("note") or ""),
        )  # fmt: skip
        stored = await run_in_threadpool(store_review, page.ctx, body)
    except ValidationError as e:
        field, message = _first_error(e)
        return page.refuse(422, message, field)
    except ApiError as e:
        return page.refuse(e.status, e.message, e.field)
    response = (
        page.finish(JSONResponse({"review": stored}, status_code=201))
        if page.wants_json
        else page.redirect(f"/review/calls/{ref}#seg-{index}")
    )
    response.set_cookie(
        REVIEWER_COOKIE, quote(body.reviewer, safe=""), max_age=365 * 86400, samesite="strict", path="/review"
    )
    return response


@router.post("/calls/{ref}/verdict")
async def review_call(request: Request, ref: str) -> Response:
    page = Page.of(request)
    form, refusal = await _posted(page)
    if refusal is not None:
        return refusal
    entry = await run_in_threadpool(page.ctx.entry, ref)
    if entry is None:
        return page.refuse(404, f"no call {ref!r}")
    try:
        body = CallVerdictIn(
            call_id=entry.call_id, verdict=str(form.get("verdict") or ""), model_verdict=entry.verdict,
            reviewer=str(form.get("reviewer") or "").strip(), note=str(form.get("note") or ""),
        )  # fmt: skip
    except ValidationError as e:
        field, message = _first_error(e)
        return page.refuse(422, message, field)
    stored = await run_in_threadpool(page.ctx.store.add_call_verdict, **body.model_dump())
    if page.wants_json:
        return page.finish(JSONResponse({"call_verdict": stored}, status_code=201))
    return page.redirect(f"/review/next?after={quote(ref)}")


# -- queue and agreement ----------------------------------------------------------------------------------
def _queue(page: Page) -> list:
    ctx = page.ctx
    closed = {v["call_id"] for v in ctx.store.call_verdicts()}
    return build_queue(ctx.entries(), model_thresholds(page.request.app.state), ctx.store.reviews(), closed,
                       ctx.config.queue_margin)  # fmt: skip


@router.get("/queue")
def queue_page(request: Request) -> Response:
    page = Page.of(request)
    if not page.allowed:
        return page.login_redirect()
    items = _queue(page)
    return page.render("queue.html", items=items[: page.ctx.config.queue_size], total=len(items))


@router.get("/next")
def next_call(request: Request, after: str = "") -> Response:
    """The most useful open call other than the one just reviewed (or the queue page, if none)."""
    page = Page.of(request)
    if not page.allowed:
        return page.login_redirect()
    item = next((q for q in _queue(page) if q.entry.ref != after), None)
    return page.redirect(f"/review/calls/{item.entry.ref}" if item else "/review/queue")


@router.get("/agreement")
def agreement_page(request: Request) -> Response:
    page = Page.of(request)
    if not page.allowed:
        return page.login_redirect()
    store = page.ctx.store
    return page.render("agreement.html", figures=agreement(store.reviews(), store.call_verdicts()))
