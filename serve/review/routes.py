"""The review JSON API beside the page: ``POST/GET /v1/reviews``, call verdicts and agreement.

Behind the API key like every ``/v1`` route (the API's middleware); bodies are JSON and checked
by :mod:`serve.review.schemas`, so a bad verdict, an unknown label or a missing field is a 422
naming the field, in the API's common error body.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from model.privacy import mask_value
from serve.api.errors import ApiError, pick
from serve.review.agreement import agreement
from serve.review.context import ReviewContext
from serve.review.schemas import CallVerdictIn, ReviewIn, ReviewList, ReviewOut

router = APIRouter(tags=["review"])


def review_context(request: Request) -> ReviewContext:
    return request.app.state.review


def store_review(ctx: ReviewContext, body: ReviewIn) -> dict[str, Any]:
    """Check the text against the API's segment limit and store the review (API and page)."""
    limit = ctx.settings.serve.max_chars_per_segment
    if len(body.text) > limit:
        raise ApiError(413, "too_large", f"text: {len(body.text)} characters exceed the limit of {limit}", "text")
    fields = body.model_dump()
    if ctx.settings.privacy.mask_pii:  # the store keeps no personal number (privacy.mask_pii)
        fields = {k: mask_value(v) if k in ("text", "note", "call_id") else v for k, v in fields.items()}
    return ctx.store.add_review(**fields)


@router.post("/v1/reviews", status_code=201, response_model=ReviewOut, responses=pick(400, 401, 413, 415, 422))
def post_review(body: ReviewIn, request: Request) -> Any:
    """Record a reviewer's verdict on one segment: ``confirm``, ``reject`` or ``correct`` (with
    the right ``labels``). Stored with who and when; returns the stored review."""
    stored = store_review(review_context(request), body)
    return JSONResponse(ReviewOut(**stored).model_dump(), status_code=201)


@router.get("/v1/reviews", response_model=ReviewList, responses=pick(401))
def list_reviews(
    request: Request,
    call_id: str | None = Query(None, max_length=200, description="only this call's reviews"),
    reviewer: str | None = Query(None, max_length=100, description="only this reviewer's reviews"),
) -> dict[str, Any]:
    """Reviews in the order they were made."""
    return {"reviews": review_context(request).store.reviews(call_id, reviewer)}


@router.post("/v1/reviews/calls", status_code=201, responses=pick(400, 401, 415, 422))
def post_call_verdict(body: CallVerdictIn, request: Request) -> Any:
    """Record a reviewer's overall verdict on a call (the most severe label they found)."""
    return JSONResponse(review_context(request).store.add_call_verdict(**body.model_dump()), status_code=201)


@router.get("/v1/reviews/calls", responses=pick(401))
def list_call_verdicts(request: Request, call_id: str | None = Query(None, max_length=200)) -> dict[str, Any]:
    return {"call_verdicts": review_context(request).store.call_verdicts(call_id)}


@router.get("/v1/reviews/agreement", responses=pick(401))
def get_agreement(request: Request) -> dict[str, Any]:
    """Per label, how often reviewers confirm the model; per reviewer, how many reviews."""
    store = review_context(request).store
    return agreement(store.reviews(), store.call_verdicts())
