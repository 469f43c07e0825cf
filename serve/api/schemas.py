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

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from model.labels import ALL_LABELS, DEFAULT_LISTENER, DEFAULT_SPEAKER, LISTENERS, SPEAKERS, VIOLATIONS
from model.preprocess import Segment
from serve.calls.metadata import CALLEE_ROLES, DIRECTIONS, OUTBOUND, UNKNOWN, parse_started_at

Speaker = Literal[SPEAKERS]  # type: ignore[valid-type]  # Literal of the tuple's values
Listener = Literal[LISTENERS]  # type: ignore[valid-type]
Label = Literal[ALL_LABELS]  # type: ignore[valid-type]
Violation = Literal[VIOLATIONS]  # type: ignore[valid-type]
Direction = Literal[DIRECTIONS]  # type: ignore[valid-type]
CalleeRole = Literal[CALLEE_ROLES]  # type: ignore[valid-type]
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
    explain: StrictBool = Field(
        False, description="add `evidence` (the spans of each flagged segment's text that drove its labels)"
    )


class Callee(_Request):
    """Who the call reached: used by contact counting (relabel) and reported back."""

    id: str | None = Field(None, min_length=1, max_length=256, description="your id for the person called")
    role: CalleeRole = Field(UNKNOWN, description="debtor, third_party (relative, employer …) or unknown")


class CallRequest(_Request):
    call_id: str = Field(min_length=1, max_length=256)
    segments: list[CallSegmentIn] = Field(min_length=1, description="the call's segments in spoken order")
    thresholds: Thresholds | None = None
    started_at: str | None = Field(
        None,
        description="when the call started, ISO 8601 (2026-03-01T21:30:00+08:00); without an offset it is read in the "
        "server's calls.timezone. Needed by outside_permitted_hours (null without it)",
        examples=["2026-03-01T21:30:00+08:00"],
    )
    direction: Direction = Field(
        OUTBOUND, description="outbound: the agent placed the call; inbound calls are not judged for anonymity"
    )
    debtor_id: str | None = Field(None, min_length=1, max_length=256, description="your id of the debtor")
    callee: Callee | None = None
    explain: StrictBool | None = Field(
        None, description="evidence spans on flagged segments; null = the server's explain.flagged (on by default)"
    )

    @field_validator("started_at")
    @classmethod
    def _iso(cls, value: str | None) -> str | None:
        if value is not None:
            parse_started_at(value, "UTC")  # the zone only fills a missing offset: validity does not depend on it
        return value

    def metadata(self) -> dict[str, Any]:
        """The call's metadata as the shared checks read it (the same keys a relabel JSONL call has)."""
        callee = self.callee.model_dump() if self.callee else None
        return {"started_at": self.started_at, "direction": self.direction, "debtor_id": self.debtor_id,
                "callee": callee}  # fmt: skip


class ModelInfo(BaseModel):
    name: str
    version: str


class Scores(BaseModel):
    """Violation probabilities; ``compliant`` is 1 − the highest of them."""

    threat: float
    insult: float
    third_party_disclosure: float
    compliant: float


class Evidence(BaseModel):
    """A span of the text as sent that drove a label: ``text[start:end] == evidence.text``."""

    label: Violation
    start: int = Field(description="character offset into the segment's text as sent (Python str indexing)")
    end: int
    text: str = Field(description="the span itself (never a masked number)")
    weight: float = Field(description="how much leaving the span out lowers the label's score")


class SegmentResult(BaseModel):
    id: str | None = Field(description="the segment's id as sent (personal numbers masked), else null")
    label: Label = Field(description="the most severe violation present, else compliant")
    labels: list[Violation] = Field(description="every violation at or above its threshold")
    scores: Scores
    evidence: list[Evidence] | None = Field(
        None, description="flagged segments when explained: spans per label; [] when no span stands out; absent if not"
    )


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


class Flag(BaseModel):
    """One call-level check (LABELS.md "Call-level checks")."""

    raised: bool | None = Field(description="true / false, or null when the call lacks what the check needs")
    reason: str = Field(description="why, in words; for null, what is missing")
    evidence: dict[str, Any] = Field(description="segment indices, matched words, local time …")


class CallFlags(BaseModel):
    anonymous_collection: Flag = Field(
        description="outbound call where the agent did not name the institution and themself before the debt"
    )
    outside_permitted_hours: Flag = Field(description="started in the quiet window (default 22:00–08:00 local)")
    complaint: Flag = Field(description="the customer complains, or says they will complain or report, or asks how")


class MetadataProblem(BaseModel):
    field: str
    reason: str


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
    flags: CallFlags
    metadata_problems: list[MetadataProblem] = Field(description="always empty here: bad metadata is a 422")


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
