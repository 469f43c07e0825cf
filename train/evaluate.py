"""Evaluation: the metrics every report uses, threshold selection, and ``collectguard evaluate``.

Macro-F1 is over the three violation labels; the compliant false-positive rate is the share of
rows labelled ``[]`` that get any violation — the number a QA team feels as false alarms.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import f1_score, precision_recall_curve, precision_recall_fscore_support

from model.labels import VIOLATIONS


def emit_report(result: Mapping[str, Any], out: Path | None) -> None:
    """Print a JSON report and, with ``out``, write the same text there: what the report commands
    (``train.realeval``, ``train.student_gap``, ``train.dev_bootstrap``) all do with their result."""
    text = json.dumps(result, indent=2, ensure_ascii=False)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
    print(text)


def label_matrix(rows: Sequence[dict[str, Any]]) -> np.ndarray:
    """Rows' ``labels`` lists as a 0/1 matrix in :data:`VIOLATIONS` order."""
    return np.array([[label in r["labels"] for label in VIOLATIONS] for r in rows], dtype=int).reshape(-1, 3)


def metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """The evaluation object printed by ``collectguard evaluate`` (and stored in artifacts)."""
    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, average=None, labels=range(3), zero_division=0)
    compliant = y_true.sum(1) == 0
    return {
        "n": len(y_true),
        "macro_f1": round(float(f1_score(y_true, y_pred, average="macro", zero_division=0)), 4),
        "micro_f1": round(float(f1_score(y_true, y_pred, average="micro", zero_division=0)), 4),
        "exact_match": round(float((y_true == y_pred).all(1).mean()) if len(y_true) else 0.0, 4),
        "compliant_false_positive_rate": round(float(y_pred[compliant].any(1).mean()) if compliant.any() else 0.0, 4),
        "labels": {
            label: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4), "f1": round(float(f[i]), 4),
                    "support": int(s[i])}
            for i, label in enumerate(VIOLATIONS)
        },
    }  # fmt: skip


def choose_thresholds(
    y_true: np.ndarray, probs: np.ndarray, precision_floor: float, weights: np.ndarray | None = None
) -> dict[str, float]:
    """Per label, the threshold with the best F1 among those reaching ``precision_floor``.

    ``weights`` (per row) make precision and recall weighted counts, so that a mix of sources
    can give each source the same say. If no threshold reaches the floor, the best-F1 threshold
    overall is used (and the floor is reported as missed by the metrics, not hidden).
    """
    out = {}
    for i, label in enumerate(VIOLATIONS):
        if y_true[:, i].sum() == 0:
            out[label] = 0.5
            continue
        prec, rec, th = precision_recall_curve(y_true[:, i], probs[:, i], sample_weight=weights)
        prec, rec = prec[:-1], rec[:-1]  # the last point has no threshold
        f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0)
        ok = prec >= precision_floor
        best = int(np.argmax(np.where(ok, f1, -1))) if ok.any() else int(np.argmax(f1))
        out[label] = round(float(th[best]), 4)
    return out


def read_eval_rows(path: Path) -> list[dict[str, Any]]:
    """Labelled rows for evaluation; bad rows are reported on stderr and skipped."""
    from train.dataset import iter_jsonl

    rows, bad = [], 0
    for item in iter_jsonl(path, require_id=False):
        if isinstance(item, ValueError):
            bad += 1
            print(f"skipped: {item}", file=sys.stderr)
        else:
            rows.append(item)
    if not rows:
        raise ValueError(f"{path}: no valid rows to evaluate ({bad} bad)")
    return rows


def evaluate_rows(classifier, rows: Sequence[dict[str, Any]], thresholds: dict[str, float] | None = None):
    """Score rows with a Classifier; returns (metrics, results) with results in row order."""
    results = classifier.score(rows, thresholds=thresholds)
    y_pred = np.array([[label in r["labels"] for label in VIOLATIONS] for r in results], dtype=int).reshape(-1, 3)
    return metrics(label_matrix(rows), y_pred), results


def run(args: argparse.Namespace) -> int:
    from model.classifier import Classifier
    from model.config import Settings
    from model.thresholds import parse_thresholds

    settings = Settings.from_args(args)
    clf = Classifier.load(args.model, config=settings.inference)
    rows = read_eval_rows(args.data)
    report, results = evaluate_rows(clf, rows, parse_thresholds(args.threshold))
    if args.errors:
        with open(args.errors, "w", encoding="utf-8") as f:
            for row, res in zip(rows, results, strict=True):
                if sorted(row["labels"]) != sorted(res["labels"]):
                    err = {"id": row["id"], "text": row["text"], "speaker": row["speaker"], "listener": row["listener"],
                           "labels": row["labels"], "predicted": res["labels"], "scores": res["scores"]}  # fmt: skip
                    f.write(json.dumps(err, ensure_ascii=False) + "\n")
    print(json.dumps(report, ensure_ascii=False))
    return 0
