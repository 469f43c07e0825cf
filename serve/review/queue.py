"""The review queue: the call whose review buys the most model improvement comes first.

Active learning by uncertainty and disagreement: calls where reviewers disagree (with each
other, or with the model on a call nobody has closed yet) come first, then calls whose scores
sit closest to a decision threshold (within ``review.queue_margin``), closest first. Calls with
an overall verdict are done and leave the queue.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from model.labels import VIOLATIONS
from serve.review.calls import CallEntry
from serve.review.verdicts import latest_per_reviewer, ordered, reviewed_labels


@dataclass(frozen=True)
class QueueItem:
    entry: CallEntry
    disagreements: int
    uncertain: int
    margin: float

    @property
    def reason(self) -> str:
        if self.disagreements:
            return f"{self.disagreements} disputed segment(s)"
        if self.uncertain:
            return f"{self.uncertain} segment(s) near a threshold (closest {self.margin:.3f})"
        return f"closest score {self.margin:.3f} from a threshold"


def segment_margin(result: Mapping[str, Any], thresholds: Mapping[str, float]) -> float:
    """How far a segment is from flipping: the smallest |score − threshold| over the labels."""
    return min(abs(float(result["scores"].get(lb, 0.0)) - float(thresholds.get(lb, 0.5))) for lb in VIOLATIONS)


def disputed_segments(entry: CallEntry, reviews: Sequence[Mapping[str, Any]]) -> set[int]:
    """Segments where reviewers disagree with each other, or a reviewer with the model."""
    said: dict[int, set[tuple[str, ...]]] = defaultdict(set)
    for review in latest_per_reviewer(reviews).values():
        labels = reviewed_labels(review)
        if labels is not None:
            said[review["segment"]].add(tuple(ordered(labels)))
    results = entry.report.get("results", [])
    out = set()
    for segment, opinions in said.items():
        model = tuple(ordered(results[segment]["labels"])) if segment < len(results) else None
        if len(opinions) > 1 or (model is not None and opinions != {model}):
            out.add(segment)
    return out


def build_queue(
    entries: Iterable[CallEntry],
    thresholds: Mapping[str, float],
    reviews: Sequence[Mapping[str, Any]],
    closed_calls: set[str],
    margin: float,
) -> list[QueueItem]:
    """Open calls, most useful first (see the module docstring)."""
    by_call: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in reviews:
        by_call[r["call_id"]].append(r)
    items = []
    for entry in entries:
        if entry.call_id in closed_calls or not entry.report.get("results"):
            continue
        margins = [segment_margin(r, thresholds) for r in entry.report["results"]]
        items.append(
            QueueItem(
                entry,
                len(disputed_segments(entry, by_call.get(entry.call_id, []))),
                sum(m < margin for m in margins),
                min(margins),
            )
        )
    items.sort(key=lambda q: (q.disagreements == 0, q.uncertain == 0, q.margin, -q.uncertain, q.entry.ref))
    return items
