"""Scoring calls: the one path shared by ``/v1/calls``, ``collectguard score``, relabeling and Ray.

A call is ``{"call_id", "segments", ...}``; its segments are scored in one flat batch (so the
Classifier's length bucketing sees many segments at once), the results are split back per call
and each call is summarised by :func:`serve.summary.summarize_call`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from serve.summary import summarize_call


def split_by_call(calls: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Split flat per-segment results back per call: ``{"call_id", "segments", "results", "summary"}``."""
    total = sum(len(call["segments"]) for call in calls)
    if total != len(results):
        raise ValueError(f"{total} segments but {len(results)} results")
    out, i = [], 0
    for call in calls:
        segs = call["segments"]
        res = list(results[i : i + len(segs)])
        i += len(segs)
        out.append({"call_id": call["call_id"], "segments": segs, "results": res, "summary": summarize_call(segs, res)})
    return out


def score_calls(
    clf: Any,
    calls: Sequence[Mapping[str, Any]],
    thresholds: Mapping[str, float] | None = None,
    batch_size: int | None = None,
) -> list[dict[str, Any]]:
    """Score every segment of every call in one batch; returns each call with results and summary."""
    flat = [seg for call in calls for seg in call["segments"]]
    return split_by_call(calls, clf.score(flat, thresholds=thresholds, batch_size=batch_size))
