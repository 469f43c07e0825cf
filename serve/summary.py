"""Call-level summaries: one function shared by the API's ``/v1/calls`` and batch relabeling.

Per LABELS.md, call-level compliance counts only the agent's segments; customer speech is
scored (and shown) but never makes a call non-compliant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from model.config import CallsConfig
from model.labels import AGENT, COMPLIANT, DEFAULT_SPEAKER, VIOLATIONS, most_severe
from serve.calls import check_call


def _field(segment: Any, name: str) -> Any:
    """A segment's field, whether it is a mapping (a row) or an object (a Segment, an API model)."""
    return segment.get(name) if isinstance(segment, Mapping) else getattr(segment, name, None)


def summarize_call(
    segments: Sequence[Any],
    results: Sequence[Mapping[str, Any]],
    metadata: Mapping[str, Any] | None = None,
    calls: CallsConfig | None = None,
) -> dict[str, Any]:
    """Summarise one call from its segments (``speaker``, optional ``start``) and their results.

    Returns violation counts per label on agent segments, the start time and index of the first
    of each, the highest agent score per label, the flagged agent segment indices, a verdict
    (the most severe label present on any agent segment, else ``compliant``), and the
    call-level ``flags`` of :func:`serve.calls.check_call` judged with the call's ``metadata``
    (``metadata_problems`` names any value it could not use).
    """
    if len(segments) != len(results):
        raise ValueError(f"{len(segments)} segments but {len(results)} results")
    counts = dict.fromkeys(VIOLATIONS, 0)
    first_at: dict[str, float | None] = dict.fromkeys(VIOLATIONS)
    first_segment: dict[str, int | None] = dict.fromkeys(VIOLATIONS)
    max_scores = dict.fromkeys(VIOLATIONS, 0.0)
    flagged: list[int] = []
    n_agent = 0
    for i, (seg, res) in enumerate(zip(segments, results, strict=True)):
        if (_field(seg, "speaker") or DEFAULT_SPEAKER) != AGENT:
            continue
        n_agent += 1
        for label in VIOLATIONS:
            max_scores[label] = max(max_scores[label], float(res["scores"][label]))
        if res["labels"]:
            flagged.append(i)
        for label in res["labels"]:
            counts[label] += 1
            if first_segment[label] is None:
                first_segment[label] = i
                start = _field(seg, "start")
                first_at[label] = float(start) if start is not None else None
    present = [label for label in VIOLATIONS if counts[label]]
    return {
        "n_segments": len(segments),
        "n_agent_segments": n_agent,
        "violations": counts,
        "first_at": first_at,
        "first_segment": first_segment,
        "max_scores": max_scores,
        "flagged_segments": flagged,
        "verdict": most_severe(present) if present else COMPLIANT,
        **check_call(segments, metadata, calls),
    }
