"""``collectguard feedback export --out FILE.jsonl``: reviewed segments as training rows.

Rows follow the corpus schema of ``data/README.md`` (``id``, ``text``, ``labels``, ``speaker``,
``listener``, ``source: "review"``, ``group``, ``notes``) so ``collectguard data build`` takes
them through ``data.feedback_paths`` like any written row. One row per reviewed segment: the
newest review of that segment wins (a later verdict, by anyone, supersedes an earlier one). A
review that does not say which labels are right (``reject`` of a segment the model called
compliant) is reported and left out.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from model.config import Settings
from model.files import atomic_write
from model.privacy import mask_pii
from serve.batch.parts import write_jsonl
from serve.review.store import ReviewStore
from serve.review.verdicts import reviewed_labels

SOURCE = "review"


def feedback_rows(reviews: Iterable[Mapping[str, Any]], mask: bool = True) -> tuple[list[dict[str, Any]], list[str]]:
    """Training rows from reviews (newest per segment), and why any review was left out.

    With ``mask`` (``privacy.mask_pii``, on by default) personal numbers in text and notes become
    ``[PHONE]``/``[ID]``/``[CARD]``/``[EMAIL]``, also for reviews stored before masking existed."""
    newest: dict[tuple[str, int], Mapping[str, Any]] = {}
    for r in sorted(reviews, key=lambda r: r["id"]):
        newest[(r["call_id"], r["segment"])] = r
    rows, skipped = [], []
    for (call_id, segment), r in sorted(newest.items(), key=lambda kv: kv[1]["id"]):
        labels = reviewed_labels(r)
        if labels is None:
            skipped.append(f"review {r['id']} (call {call_id} segment {segment}): "
                           f"'{r['verdict']}' without model labels says no label; use 'correct'")  # fmt: skip
            continue
        rid = f"review-{r['id']}"
        note = f"; note: {r['note']}" if r.get("note") else ""
        if mask:
            r = {**r, "text": mask_pii(r["text"]), "note": mask_pii(r["note"]) if r.get("note") else r.get("note")}
        rows.append({
            "id": rid, "text": r["text"], "labels": labels, "speaker": r["speaker"], "listener": r["listener"],
            "source": SOURCE, "group": rid,
            "notes": f"{r['verdict']} by {r['reviewer']} at {r['created_at']}, call {call_id} segment {segment}{note}",
        })  # fmt: skip
    return rows, skipped


def write_rows(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write(Path(path), write_jsonl(rows))


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_args(args)
    store = ReviewStore.open(settings.review.resolved_url())
    try:
        rows, skipped = feedback_rows(store.reviews(), mask=settings.privacy.mask_pii)
    finally:
        store.close()
    write_rows(args.out, rows)
    for reason in skipped:
        print(f"skipped {reason}", file=sys.stderr)
    print(json.dumps({"out": str(args.out), "rows": len(rows), "skipped": len(skipped)}))
    return 0
