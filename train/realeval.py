"""Off-domain evaluation: how a model does on words nobody here wrote.

One report, four parts (each the number a new user would feel first):
- the **real development set** (``data/real/dev_*.jsonl``: quoted real collection text with
  provenance; evaluation only, never trained on);
- **false alarms on held-out ordinary talk**: the test slices of CPED and KdConv dialogues and of
  COLD's dev safe comments (never trained on; ``train/negatives.py`` fixes the slices);
- **COLD person-directed attacks** caught as ``insult`` (ids reviewed by hand in
  ``data/real/cold_dev_person_directed.jsonl``);
- the **behaviour suite** (``data/behaviour/suite.jsonl``): pass rate per functionality, also per
  round of writing (cases 01–12 by the first writer, whose cases steered model selection for eight
  rounds; cases 13 and up by four later writers, measured fresh).

    python -m train.realeval --model model/default --datasets ../shared/datasets --out runs/realeval.json
"""

from __future__ import annotations

import argparse
import json
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model.config import REPO_ROOT, InferenceConfig
from model.thresholds import apply_thresholds as predictions
from model.thresholds import parse_thresholds
from train.dataset import iter_jsonl
from train.evaluate import emit_report, label_matrix, metrics
from train.negatives import load_cold_rows, load_negatives
from train.quoted import unquoted_mask

REAL_DIR = REPO_ROOT / "data" / "real"
SUITE = REPO_ROOT / "data" / "behaviour" / "suite.jsonl"
ORDINARY_CORPORA = ("cped", "kdconv", "cold")
#: First case number of each round of writing (``<functionality>-13`` … is round 2; data card).
ROUND_FIRST_CASES = (1, 13, 25)


def suite_round(row: Mapping[str, Any]) -> int:
    """The round of writing a behaviour case came from, by its case number.

    Round 1 (one writer) steered model selection for months, so it is no longer blind; later
    rounds were written blind and are reported apart to show what a fresh test says.
    """
    return bisect_right(ROUND_FIRST_CASES, int(row["id"].rsplit("-", 1)[1]))


def read_rows(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Validated rows of JSONL files, keeping their extra fields (provenance, functionality)."""
    rows = []
    for path in paths:
        raw_lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        for item, raw in zip(iter_jsonl(Path(path)), raw_lines, strict=True):
            if isinstance(item, ValueError):
                raise item
            rows.append({**json.loads(raw), **item})
    return rows


def load_dev_by_file(real_dir: Path = REAL_DIR) -> dict[str, list[dict[str, Any]]]:
    """The real development set per file (``dev_*.jsonl`` under ``data/real``), in name order.

    Files are added over time; a new file read at thresholds chosen before it existed is a blind
    read of the model, which the per-file report keeps visible.
    """
    paths = sorted(Path(real_dir).glob("dev_*.jsonl"))
    if not paths:
        raise FileNotFoundError(f"no dev_*.jsonl in {real_dir}")
    return {path.name: read_rows([path]) for path in paths}


def load_dev(real_dir: Path = REAL_DIR) -> list[dict[str, Any]]:
    """The real development set: every ``dev_*.jsonl`` under ``data/real``."""
    return [row for rows in load_dev_by_file(real_dir).values() for row in rows]


def ordinary_talk(datasets: Path, part: str, heldout_fraction: float, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Real ordinary talk of one slice (``calibration`` or ``test``), per corpus."""
    return {c: load_negatives(datasets, c, part, heldout_fraction, seed) for c in ORDINARY_CORPORA}


def cold_person_directed(datasets: Path, reviewed: Path = REAL_DIR / "cold_dev_person_directed.jsonl"):
    """COLD dev offensive comments reviewed as attacks on a person (LABELS.md ``insult``)."""
    keep = {
        f"cold-dev:{rec['cold_dev_row']}"
        for rec in map(json.loads, Path(reviewed).read_text(encoding="utf-8").splitlines())
        if rec["person_directed"]
    }
    return [{**r, "labels": ["insult"]} for r in load_cold_rows(Path(datasets) / "cold", "dev", "1") if r["id"] in keep]


def behaviour_table(rows: Sequence[dict[str, Any]], pred: np.ndarray) -> dict[str, dict[str, Any]]:
    """Pass rate per functionality: a case passes when the predicted label set equals the expected one.

    ``failed`` lists the failing cases' ids, so two models' reports can be compared case by case
    (:func:`train.student_gap.paired_behaviour`), not only by their rates.
    """
    y = label_matrix(rows)
    per: dict[str, list[bool]] = defaultdict(list)
    failed: dict[str, list[str]] = defaultdict(list)
    for row, yt, yp in zip(rows, y, pred, strict=True):
        passed = bool((yt == yp).all())
        per[row["functionality"]].append(passed)
        if not passed:
            failed[row["functionality"]].append(row["id"])
    return {f: {"n": len(v), "pass_rate": round(sum(v) / len(v), 4), "failed": sorted(failed[f])}
            for f, v in sorted(per.items())}  # fmt: skip


def behaviour_summary(rows: Sequence[dict[str, Any]], pred: np.ndarray) -> dict[str, Any]:
    """Cases, overall pass rate, worst functionality and the per-functionality table."""
    table = behaviour_table(rows, pred)
    overall = sum(t["pass_rate"] * t["n"] for t in table.values()) / len(rows)
    return {"n": len(rows), "overall": round(overall, 4), "min": min(t["pass_rate"] for t in table.values()),
            "functionalities": table}  # fmt: skip


def metrics_by_file(by_file: Mapping[str, Sequence[Any]], y: np.ndarray, pred: np.ndarray) -> dict[str, dict[str, Any]]:
    """Metrics of each file's rows; ``y`` and ``pred`` hold the files' rows in ``by_file`` order."""
    ends = np.cumsum([len(rows) for rows in by_file.values()])
    return {name: metrics(y[end - len(rows) : end], pred[end - len(rows) : end])
            for (name, rows), end in zip(by_file.items(), ends, strict=True)}  # fmt: skip


def report(
    probs_of, thresholds: Mapping[str, float], datasets: Path, heldout_fraction: float, seed: int
) -> dict[str, Any]:
    """The whole off-domain report; ``probs_of(rows)`` returns a model's score matrix."""
    out: dict[str, Any] = {"thresholds": dict(thresholds)}
    by_file = load_dev_by_file()
    dev = [row for rows in by_file.values() for row in rows]
    y, pred = label_matrix(dev), predictions(probs_of(dev), thresholds)
    out["real_dev"] = metrics(y, pred)
    out["real_dev_by_file"] = metrics_by_file(by_file, y, pred)
    talk = {}
    for corpus, rows in ordinary_talk(datasets, "test", heldout_fraction, seed).items():
        p = probs_of(rows)
        flagged = predictions(p, thresholds).any(1)
        talk[corpus] = {"n": len(rows), "flagged_rate": round(float(flagged.mean()), 4),
                        "max_score_p99": round(float(np.quantile(p.max(1), 0.99)), 4)}  # fmt: skip
    out["ordinary_talk_test"] = talk
    attacks = cold_person_directed(datasets)
    pred = predictions(probs_of(attacks), thresholds)
    out["cold_person_directed"] = {"n": len(attacks), "insult_rate": round(float(pred[:, 1].mean()), 4)}
    suite = read_rows([SUITE])
    pred = predictions(probs_of(suite), thresholds)
    out["behaviour"] = behaviour_summary(suite, pred)
    blind = unquoted_mask(suite, "behaviour")  # cases never quoted to a writer (train/quoted.py)
    blind_rows = [row for row, keep in zip(suite, blind, strict=True) if keep]
    out["behaviour_unquoted"] = behaviour_summary(blind_rows, pred[blind])
    rounds = np.array([suite_round(row) for row in suite])
    out["behaviour_by_round"] = {
        str(k): behaviour_summary([row for row, r in zip(suite, rounds, strict=True) if r == k], pred[rounds == k])
        for k in range(1, len(ROUND_FIRST_CASES) + 1)
    }
    return out


def main(argv: list[str] | None = None) -> int:
    from model.classifier import Classifier
    from model.config import Settings
    from model.machine import describe

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--datasets", type=Path, required=True, help="folder holding cped/, kdconv/, cold/")
    ap.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto", help="default: what users get")
    ap.add_argument("--threshold", action="append", default=[], metavar="LABEL=VALUE",
                    help="override a threshold (read new dev rows at the thresholds chosen before them)")  # fmt: skip
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    data_cfg = Settings().data
    overrides = parse_thresholds(args.threshold) or None
    clf = Classifier.load(args.model, thresholds=overrides, config=InferenceConfig(backend=args.backend))
    result = report(clf.predict_proba, clf.thresholds, args.datasets, data_cfg.heldout_fraction, data_cfg.seed)
    result["model"], result["backend"] = clf.version, clf.backend
    result["machine"] = describe()  # int8 scores depend on the CPU's int8 instructions
    emit_report(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
