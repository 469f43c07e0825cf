"""Request and response models of the HTTP API: the OpenAPI document is generated from these.

Request models forbid unknown fields (a misspelt ``listner`` must fail loudly, not silently fall
back to the default) and use strict numbers (``"0.5"`` or ``true`` is not a threshold). Size
limits (segments per request, characters) are runtime settings, so they are checked by the app
(413) and written into the OpenAPI document by :func:`serve.api.openapi.document_limits`, not fixed
here. Segments are checked by the one input type, :class:`model.preprocess.Segment`, and the
allowed speakers, listeners and labels come from :mod:`model.labels`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.labels import ALL_LABELS, DEFAULT_LISTENER, DEFAULT_SPEAKER, LISTENERS, SPEAKERS, VIOLATIONS
from model.preprocess import Segment

Speaker = Literal[SPEAKERS]  # type: ignore[valid-type]  # Literal of the tuple's values
Listener = Literal[LISTENERS]  # type: ignore[valid-type]
Label = Literal[ALL_LABELS]  # type: ignore[valid-type]
Violation = Literal[VIOLATIONS]  # type: ignore[valid-type]
Probability = Annotated[float, Field(strict=True, ge=0.0, le=1.0, allow_inf_nan=False)]
Seconds = Annotated[float, Field(strict=True, ge=0.0, allow_inf_nan=False, description="seconds from call start")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Thresholds(_Request):
    """Per-request decision thresholds; labels left out (or null) keep the model's own."""

    threat: Probability | None = None
    insult: Probability | None = None
    third_party_disclosure: Probability | None = None

    def as_dict(self) -> dict[str, float]:
        return {label: v for label in VIOLATIONS if (v := getattr(self, label)) is not None}


class SegmentIn(_Request):
    """One transcript segment (LABELS.md, "Unit"): who speaks to whom changes what is a violation."""

    text: str = Field(min_length=1, description="the segment's transcript text")
    speaker: Speaker = Field(DEFAULT_SPEAKER, description="who is speaking")
    listener: Listener = Field(DEFAULT_LISTENER, description="who the agent is speaking to")
    id: str | None = Field(None, max_length=256, description="echoed back in the result")

    def to_segment(self) -> Segment:
        """The validated model input (text, speaker, listener and, for call segments, timing)."""
        return Segment(self.text, self.speaker, self.listener, getattr(self, "start", None), getattr(self, "end", None))


class CallSegmentIn(SegmentIn):
    """A segment of a call, with optional timing (used for the summary's ``first_at``)."""

    start: Seconds | None = None
    end: Seconds | None = None

    @model_validator(mode="after")
    def _valid(self) -> CallSegmentIn:
        self.to_segment()  # the Segment rules (e.g. end before start) are a 422, not a 500
        return self


class ScoreRequest(_Request):
    segments: list[SegmentIn] = Field(min_length=1, description="segments to score, results come back in this order")
    thresholds: Thresholds | None = None


class CallRequest(_Request):
    call_id: str = Field(min_length=1, max_length=256)
    segments: list[CallSegmentIn] = Field(min_length=1, description="the call's segments in spoken order")
    thresholds: Thresholds | None = None


class ModelInfo(BaseModel):
    name: str
    version: str


class Scores(BaseModel):
    """Violation probabilities; ``compliant`` is 1 − the highest of them."""

    threat: float
    insult: float
    third_party_disclosure: float
    compliant: float


class SegmentResult(BaseModel):
    id: str | None = Field(description="the segment's id as sent, else null")
    label: Label = Field(description="the most severe violation present, else compliant")
    labels: list[Violation] = Field(description="every violation at or above its threshold")
    scores: Scores


class ScoreResponse(BaseModel):
    model: ModelInfo
    results: list[SegmentResult]


class PerLabelCount(BaseModel):
    threat: int
    insult: int
    third_party_disclosure: int


class PerLabelTime(BaseModel):
    threat: float | None
    insult: float | None
    third_party_disclosure: float | None


class PerLabelIndex(BaseModel):
    threat: int | None
    insult: int | None
    third_party_disclosure: int | None


class PerLabelScore(BaseModel):
    threat: float
    insult: float
    third_party_disclosure: float


class CallSummary(BaseModel):
    """Mirrors :func:`serve.summary.summarize_call`; only agent segments count (LABELS.md)."""

    model_config = ConfigDict(extra="allow")

    n_segments: int
    n_agent_segments: int
    violations: PerLabelCount
    first_at: PerLabelTime
    first_segment: PerLabelIndex
    max_scores: PerLabelScore
    flagged_segments: list[int]
    verdict: Label


class CallResponse(BaseModel):
    model: ModelInfo
    call_id: str
    results: list[SegmentResult]
    summary: CallSummary


class ModelDescription(BaseModel):
    name: str
    version: str
    labels: list[str] = Field(description="violation labels, in the model's output order")
    all_labels: list[str] = Field(description="every label a result can carry (violations + compliant)")
    thresholds: dict[str, float]
    preprocess_version: str
    max_length: int
    stride: int
    base_encoder: str | None
    method: str
    metrics: dict[str, Any] = Field(description="headline metrics from the artifact manifest")


class Health(BaseModel):
    status: str


class ErrorDetail(BaseModel):
    type: str = Field(description="machine-readable kind, e.g. validation_error, too_large, unauthorized")
    message: str
    field: str | None = Field(None, description="the offending request field, e.g. segments[3].text")
    loc: list[str | int] | None = None
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = Field(None, description="every validation problem, when there are several")


class ErrorResponse(BaseModel):
    """The one error body of every 4xx/5xx response."""

    error: ErrorDetail
