"""Is a gap between two models on the real dev set bigger than the dev set can tell?

The real dev set is 450 rows quoted from a few dozen pages and files, and rows from one source
are alike, so resampling rows would understate the spread. This resamples *sources* with
replacement (a cluster bootstrap) and scores both models on the same draws, so the interval is
for the difference of their macro-F1, each at its own thresholds.

    python -m train.dev_bootstrap --model model/default --against runs/sd_cal --out report.json
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import f1_score
from tqdm import tqdm

from train.calibrate import source_of
from train.evaluate import emit_report, label_matrix
from train.realeval import REAL_DIR, load_dev, predictions


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    """Macro-F1 over the three labels, by the rule ``train.evaluate.metrics`` reports (unrounded)."""
    return float(f1_score(y, pred, average="macro", zero_division=0))


def paired_bootstrap(
    y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, groups: list[str], samples: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Macro-F1 of A and B and of B − A, with 95 % intervals from resampling ``groups`` whole."""
    y, pred_a, pred_b = (np.asarray(m, dtype=bool) for m in (y, pred_a, pred_b))
    names, of_row = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(of_row == i) for i in range(len(names))]
    rng = np.random.default_rng(seed)
    draws = np.empty((samples, 2))
    for s in tqdm(range(samples), desc="bootstrap", unit="draw", leave=False):
        idx = np.concatenate([members[i] for i in rng.integers(0, len(names), len(names))])
        draws[s] = macro_f1(y[idx], pred_a[idx]), macro_f1(y[idx], pred_b[idx])

    def interval(x: np.ndarray) -> list[float]:
        return [round(float(q), 4) for q in np.percentile(x, [2.5, 97.5])]

    a, b = macro_f1(y, pred_a), macro_f1(y, pred_b)
    return {
        "rows": len(y), "sources": len(names), "samples": samples,
        "a": {"macro_f1": round(a, 4), "interval_95": interval(draws[:, 0])},
        "b": {"macro_f1": round(b, 4), "interval_95": interval(draws[:, 1])},
        "b_minus_a": {"macro_f1": round(b - a, 4), "interval_95": interval(draws[:, 1] - draws[:, 0]),
                      "share_of_draws_b_ahead": round(float((draws[:, 1] > draws[:, 0]).mean()), 4)},
    }  # fmt: skip


def labels_of(model: Path, rows: list[dict[str, Any]]) -> np.ndarray:
    """The model's 0/1 labels for ``rows`` at its own thresholds, as ``train.realeval`` decides them."""
    from model.classifier import Classifier

    clf = Classifier.load(model)
    return predictions(clf.predict_proba(rows), clf.thresholds)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="model A (e.g. the shipped default)")
    ap.add_argument("--against", type=Path, required=True, help="model B, compared with A")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--real-dir", type=Path, default=REAL_DIR, help="folder of dev_*.jsonl")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    args = ap.parse_args(argv)
    rows = load_dev(args.real_dir)
    result = {"model_a": str(args.model), "model_b": str(args.against), **paired_bootstrap(
        label_matrix(rows), labels_of(args.model, rows), labels_of(args.against, rows),
        [source_of(r) for r in rows], args.samples, args.seed,
    )}  # fmt: skip
    emit_report(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
