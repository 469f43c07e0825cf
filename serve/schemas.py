"""Request and response models of the HTTP API: the OpenAPI document is generated from these.

Request models forbid unknown fields (a misspelt ``listner`` must fail loudly, not silently fall
back to the default) and use strict numbers (``"0.5"`` or ``true`` is not a threshold). Size
limits (segments per request, characters) are runtime settings, so they are checked by the app
(413) and written into the OpenAPI document by :func:`serve.app.create_app`, not fixed here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.labels import DEFAULT_LISTENER, DEFAULT_SPEAKER, VIOLATIONS

Speaker = Literal["agent", "customer"]
Listener = Literal["debtor", "third_party", "unknown"]
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


class CallSegmentIn(SegmentIn):
    """A segment of a call, with optional timing (used for the summary's ``first_at``)."""

    start: Seconds | None = None
    end: Seconds | None = None

    @model_validator(mode="after")
    def _ordered(self) -> CallSegmentIn:
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
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
    label: Literal["threat", "insult", "third_party_disclosure", "compliant"] = Field(
        description="the most severe violation present, else compliant"
    )
    labels: list[Literal["threat", "insult", "third_party_disclosure"]] = Field(
        description="every violation at or above its threshold"
    )
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
    verdict: Literal["threat", "insult", "third_party_disclosure", "compliant"]


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
