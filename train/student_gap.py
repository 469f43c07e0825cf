"""Is the student good enough to ship as the default? Its gap to the teacher, bar by bar.

The bar (issue "Speed as the default"): within 1.0 point of the teacher's macro-F1 on the
authored test split (written rows) and on the real development set, within 0.5 points of its
flagged rate on each held-out ordinary-talk corpus, and within 2 points on every behaviour-suite
functionality. Reads two artifacts (their manifests hold the test metrics at their shipped
thresholds) and their ``train.realeval`` reports:

    python -m train.student_gap --teacher model/default --teacher-eval train/results/realeval.json \
        --student runs/student/calibrated --student-eval runs/student/realeval.json --out train/results/student_gap.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from train.evaluate import emit_report

#: allowed shortfall of the student, in points (percent)
BARS = {"test_written_macro_f1": 1.0, "real_dev_macro_f1": 1.0, "ordinary_talk_flagged": 0.5, "behaviour": 2.0}


def points(x: float) -> float:
    return round(100 * x, 2)


def rows_of(manifest: dict[str, Any], realeval: dict[str, Any]) -> dict[str, tuple[float, bool]]:
    """Each measure in points, with whether higher is better."""
    out = {
        "test_written_macro_f1": (points(manifest["metrics"]["test"]["written"]["macro_f1"]), True),
        "real_dev_macro_f1": (points(realeval["real_dev"]["macro_f1"]), True),
    }
    for corpus, r in realeval["ordinary_talk_test"].items():
        out[f"ordinary_talk_flagged:{corpus}"] = (points(r["flagged_rate"]), False)
    for name, r in realeval["behaviour"]["functionalities"].items():
        out[f"behaviour:{name}"] = (points(r["pass_rate"]), True)
    return out


def gap(teacher: dict[str, tuple[float, bool]], student: dict[str, tuple[float, bool]]) -> dict[str, Any]:
    """Per measure: both values, the student's shortfall (positive = worse) and whether it is within its bar."""
    table = {}
    for key, (t, higher_better) in teacher.items():
        s = student[key][0]
        shortfall = round((t - s) if higher_better else (s - t), 2)
        bar = BARS[key.split(":")[0]]
        table[key] = {"teacher": t, "student": s, "shortfall": shortfall, "bar": bar, "ok": shortfall <= bar}
    return {"meets_bar": all(r["ok"] for r in table.values()), "measures": table}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for who in ("teacher", "student"):
        ap.add_argument(f"--{who}", type=Path, required=True, help=f"{who} artifact folder")
        ap.add_argument(f"--{who}-eval", type=Path, required=True, help=f"{who}'s train.realeval JSON")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    def load(artifact: Path, report: Path) -> dict[str, tuple[float, bool]]:
        manifest = json.loads((artifact / "collectguard.json").read_text(encoding="utf-8"))
        return rows_of(manifest, json.loads(report.read_text(encoding="utf-8")))

    result = gap(load(args.teacher, args.teacher_eval), load(args.student, args.student_eval))
    emit_report(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
