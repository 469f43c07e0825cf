"""Agreement figures: how often reviewers confirm the model, per label; how much each reviewer
did; and how often two reviewers of the same segment agree."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

from model.labels import COMPLIANT, VIOLATIONS
from serve.review.verdicts import latest_per_reviewer, reviewed_labels


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def agreement(reviews: Sequence[Mapping[str, Any]], call_verdicts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per label: segments the model gave it, how many reviewers kept it (``confirm_rate``) and
    segments where reviewers added it (``missed``); per reviewer: counts; between reviewers:
    share of doubly reviewed segments with the same labels; per call: verdict agreement."""
    latest = latest_per_reviewer(reviews)
    per_label: dict[str, Counter] = {lb: Counter() for lb in (*VIOLATIONS, COMPLIANT)}
    for review in latest.values():
        model, said = review.get("model_labels"), reviewed_labels(review)
        if model is None or said is None:
            continue
        for lb in VIOLATIONS:
            if lb in model:
                per_label[lb]["predicted"] += 1
                per_label[lb]["confirmed"] += lb in said
            elif lb in said:
                per_label[lb]["missed"] += 1
        if not model:
            per_label[COMPLIANT]["predicted"] += 1
            per_label[COMPLIANT]["confirmed"] += not said
        elif not said:
            per_label[COMPLIANT]["missed"] += 1
    labels = {
        lb: {"predicted": c["predicted"], "confirmed": c["confirmed"], "missed": c["missed"],
             "confirm_rate": _rate(c["confirmed"], c["predicted"])}
        for lb, c in per_label.items()
    }  # fmt: skip
    reviewers: dict[str, Counter] = defaultdict(Counter)
    for r in reviews:
        reviewers[r["reviewer"]]["reviews"] += 1
        reviewers[r["reviewer"]][r["verdict"]] += 1
    for v in call_verdicts:
        reviewers[v["reviewer"]]["call_verdicts"] += 1
    by_segment: dict[tuple[str, int], list[list[str] | None]] = defaultdict(list)
    for (call_id, segment, _), review in latest.items():
        by_segment[(call_id, segment)].append(reviewed_labels(review))
    pairs = agree = 0
    for opinions in by_segment.values():
        for a, b in combinations([o for o in opinions if o is not None], 2):
            pairs += 1
            agree += sorted(a) == sorted(b)
    with_model = [v for v in call_verdicts if v.get("model_verdict")]
    return {
        "labels": labels,
        "reviewers": {
            name: {k: c[k] for k in ("reviews", "confirm", "reject", "correct", "call_verdicts")}
            for name, c in sorted(reviewers.items())
        },
        "between_reviewers": {"pairs": pairs, "agree": agree, "rate": _rate(agree, pairs)},
        "calls": {
            "verdicts": len(call_verdicts),
            "agree_with_model": sum(v["verdict"] == v["model_verdict"] for v in with_model),
            "rate": _rate(sum(v["verdict"] == v["model_verdict"] for v in with_model), len(with_model)),
        },
    }
