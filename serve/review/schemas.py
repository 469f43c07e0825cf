"""Request and response models of the review API (``/v1/reviews``): a bad verdict, an unknown
label or a missing field is a 422 whose ``field`` names it (the API's common error body)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from model.labels import ALL_LABELS, LISTENERS, SPEAKERS, VIOLATIONS
from serve.review.models import VERDICTS

Speaker = Literal[SPEAKERS]  # type: ignore[valid-type]
Listener = Literal[LISTENERS]  # type: ignore[valid-type]
Violation = Literal[VIOLATIONS]  # type: ignore[valid-type]
Verdict = Literal[VERDICTS]  # type: ignore[valid-type]
CallLabel = Literal[ALL_LABELS]  # type: ignore[valid-type]
Reviewer = Annotated[str, Field(min_length=1, max_length=100, pattern=r"\S", description="who reviewed")]
Note = Annotated[str, Field(max_length=2000, description="optional free-text note")]


class ReviewIn(BaseModel):
    """One reviewer's verdict on one segment. ``labels`` are the right labels for a correction
    (``[]`` = compliant); for ``confirm`` they default to ``model_labels``; ``reject`` says the
    model's labels are wrong and the segment is compliant."""

    model_config = ConfigDict(extra="forbid")

    call_id: str = Field(min_length=1, max_length=200)
    segment: int = Field(ge=0, le=2**31 - 1, strict=True, description="0-based index of the segment in its call")
    text: str = Field(min_length=1, description="the segment's text as reviewed")
    speaker: Speaker
    listener: Listener
    verdict: Verdict
    labels: list[Violation] | None = Field(None, validate_default=True)
    model_labels: list[Violation] | None = Field(None, description="what the model said, kept for agreement")
    reviewer: Reviewer
    note: Note = ""

    @field_validator("labels")
    @classmethod
    def _labels_fit_verdict(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        verdict = info.data.get("verdict")
        if verdict == "correct" and value is None:
            raise ValueError("a 'correct' verdict needs the right labels ([] for compliant)")
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"duplicate labels in {value}")
        return None if value is None else [x for x in VIOLATIONS if x in value]

    @field_validator("model_labels")
    @classmethod
    def _ordered(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [x for x in VIOLATIONS if x in value]


class ReviewOut(BaseModel):
    id: int
    call_id: str
    segment: int
    text: str
    speaker: str
    listener: str
    verdict: str
    labels: list[str] | None
    model_labels: list[str] | None
    reviewer: str
    note: str
    created_at: str = Field(description="UTC, ISO 8601")


class ReviewList(BaseModel):
    reviews: list[ReviewOut]


class CallVerdictIn(BaseModel):
    """A reviewer's overall verdict on a call: the most severe label they found."""

    model_config = ConfigDict(extra="forbid")

    call_id: str = Field(min_length=1, max_length=200)
    verdict: CallLabel
    model_verdict: CallLabel | None = None
    reviewer: Reviewer
    note: Note = ""
