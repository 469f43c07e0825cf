"""What a review says about a segment's labels: the one rule the queue, the agreement figures
and the training export share."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from model.labels import VIOLATIONS


def reviewed_labels(review: Mapping[str, Any]) -> list[str] | None:
    """The labels a review says are right, or None when it does not say.

    ``correct`` gives them; ``confirm`` keeps the model's (its ``labels`` if sent, else
    ``model_labels``); ``reject`` says the flagged labels are wrong, so the segment is
    compliant — unless the model flagged nothing, when a reject says "something is wrong"
    without saying what (None: a reviewer should use ``correct``).
    """
    verdict = review["verdict"]
    if verdict == "correct":
        return list(review["labels"] or [])
    if verdict == "confirm":
        labels = review.get("labels") if review.get("labels") is not None else review.get("model_labels")
        return None if labels is None else list(labels)
    if verdict == "reject":
        model = review.get("model_labels")
        return [] if model else None
    raise ValueError(f"unknown verdict {verdict!r}")


def latest_per_reviewer(reviews: Iterable[Mapping[str, Any]]) -> dict[tuple[str, int, str], Mapping[str, Any]]:
    """The newest review per (call, segment, reviewer): a reviewer who changes their mind counts once."""
    out: dict[tuple[str, int, str], Mapping[str, Any]] = {}
    for r in sorted(reviews, key=lambda r: r["id"]):
        out[(r["call_id"], r["segment"], r["reviewer"])] = r
    return out


def ordered(labels: Iterable[str]) -> list[str]:
    present = set(labels)
    return [x for x in VIOLATIONS if x in present]
