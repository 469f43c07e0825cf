"""``python -m train.report``: the test-split report the model card embeds.

Scores the test split with a model **once**, then writes, from those same scores:

- ``calibration.png`` — reliability diagram per label, all rows and written-only rows;
- ``pr_curves.png`` — precision–recall per label, same two subsets, shipped thresholds marked;
- ``test_report.json`` — metrics (all / written) at the artifact's thresholds, the slice table
  and the 20 most confident errors.

Written-only rows are reported separately because template rows are easier and would flatter
the numbers (DATA card). Metrics come from :func:`train.evaluate.metrics`, like everywhere else.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from model.config import REPO_ROOT, DataConfig
from model.labels import VIOLATIONS
from train import analysis, plots
from train.dataset import load_split
from train.evaluate import metrics
from train.quoted import unquoted_mask

REPORT_FILES = ("calibration.png", "pr_curves.png", "test_report.json")


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN → None, numpy scalars → Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def build_report(
    classifier: Any, rows: list[dict[str, Any]], out: Path, n_errors: int = 20, dpi: int = 120
) -> dict[str, Any]:
    """Score ``rows`` once and write the two figures and ``test_report.json`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    y_true, probs, y_pred = analysis.score_rows(classifier, rows)
    subsets = analysis.written_subsets(rows)
    written = subsets["written only"]
    unquoted = unquoted_mask(rows, "test")  # items quoted in a writer's brief are not blind (train/quoted.py)
    thresholds = {label: float(classifier.thresholds[label]) for label in VIOLATIONS}

    figures = {
        "calibration.png": plots.reliability_diagram(y_true, probs, subsets=subsets),
        "pr_curves.png": plots.pr_curves(y_true, probs, thresholds, subsets=subsets),
    }
    for name, fig in figures.items():
        fig.savefig(out / name, dpi=dpi)

    ece = {
        name: analysis.expected_calibration_error(analysis.calibration_bins(y_true[m], probs[m])).round(4).to_dict()
        for name, m in subsets.items()
    }
    report = {
        "model": {"name": classifier.name, "version": classifier.version, "thresholds": thresholds},
        "data": {"split": "test", "rows": len(rows), "written_rows": int(written.sum())},
        "metrics": {
            "all": metrics(y_true, y_pred),
            "written": metrics(y_true[written], y_pred[written]),
            "written_unquoted": metrics(y_true[written & unquoted], y_pred[written & unquoted]),
        },
        "expected_calibration_error": ece,
        "slices": analysis.slice_table(rows, y_true, y_pred).reset_index().to_dict(orient="records"),
        "worst_errors": analysis.worst_errors(rows, y_true, probs, n_errors, thresholds).to_dict(orient="records"),
        "files": list(figures),
    }
    report = _clean(report)
    (out / "test_report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None, help="artifact folder (default: the shipped model)")
    p.add_argument("--data-dir", type=Path, default=DataConfig().out_dir, help="processed dataset folder")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "model", help="where the PNGs and JSON go")
    p.add_argument("--limit", type=int, default=None, help="score only this many test rows (smoke runs)")
    p.add_argument("--errors", type=int, default=20, help="how many worst errors to keep")
    return p


def main(argv: list[str] | None = None) -> int:
    from model.classifier import Classifier

    args = build_parser().parse_args(argv)
    classifier = Classifier.load(args.model)
    rows = analysis.limit_rows(load_split("test", args.data_dir), args.limit)
    report = build_report(classifier, rows, args.out, args.errors)
    summary = {k: {"macro_f1": v["macro_f1"], "n": v["n"]} for k, v in report["metrics"].items()}
    print(json.dumps({"out": str(args.out), "files": [*REPORT_FILES], "metrics": summary}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
