"""Scoring calls: the one path shared by ``/v1/calls``, ``collectguard score``, relabeling and Ray.

A call is ``{"call_id", "segments", "metadata"?, ...}``. Its segment texts are masked first
(:func:`model.privacy.mask_pii`, unless ``privacy.mask_pii`` is off), so scoring and everything
downstream see the masked text; the segments of all calls are scored in one flat batch (so the
Classifier's length bucketing sees many segments at once); flagged segments get evidence spans
(:mod:`serve.evidence`, unless ``explain.flagged`` is off); the results are split back per call
and each call is summarised by :func:`serve.summary.summarize_call`, call-level checks included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from model.config import CallsConfig, Settings
from model.preprocess import Segment
from model.privacy import mask_pii
from serve.evidence import explain_results
from serve.summary import summarize_call


def split_by_call(
    calls: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]], config: CallsConfig | None = None
) -> list[dict[str, Any]]:
    """Split flat per-segment results back per call: ``{"call_id", "segments", "results", "summary"}``.

    Each call's optional ``metadata`` (``started_at``, ``direction``, ``debtor_id``, ``callee``)
    feeds the call-level checks of the summary.
    """
    total = sum(len(call["segments"]) for call in calls)
    if total != len(results):
        raise ValueError(f"{total} segments but {len(results)} results")
    out, i = [], 0
    for call in calls:
        segs = call["segments"]
        res = list(results[i : i + len(segs)])
        i += len(segs)
        summary = summarize_call(segs, res, call.get("metadata"), config)
        out.append({"call_id": call["call_id"], "segments": segs, "results": res, "summary": summary})
    return out


def mask_segments(segments: Sequence[Any]) -> list[dict[str, Any]]:
    """Segments as plain rows with their text masked (the input boundary of privacy)."""
    rows = []
    for seg in segments:
        row = dict(seg) if isinstance(seg, Mapping) else Segment.of(seg).as_dict()
        row["text"] = mask_pii(row["text"]) if isinstance(row.get("text"), str) else row.get("text")
        rows.append(row)
    return rows


def mask_calls(calls: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Calls with every segment text masked; other fields untouched (metadata is masked on output)."""
    return [{**call, "segments": mask_segments(call["segments"])} for call in calls]


def score_calls(
    clf: Any,
    calls: Sequence[Mapping[str, Any]],
    thresholds: Mapping[str, float] | None = None,
    batch_size: int | None = None,
    settings: Settings | None = None,
) -> list[dict[str, Any]]:
    """Mask, score every segment of every call in one batch, explain flagged segments, summarise.

    Returns each call with its (masked) segments, results (``evidence`` on flagged ones) and
    summary. ``settings`` supplies ``privacy``, ``explain`` and ``calls`` (defaults if None).
    """
    settings = settings or Settings()
    if settings.privacy.mask_pii:
        calls = mask_calls(calls)
    flat = [Segment.of(seg) for call in calls for seg in call["segments"]]
    results = clf.score(flat, thresholds=thresholds, batch_size=batch_size)
    if settings.explain.flagged:
        explain_results(lambda v: clf.predict_proba(v, batch_size=batch_size), flat, results, settings.explain)
    return split_by_call(calls, results, settings.calls)
