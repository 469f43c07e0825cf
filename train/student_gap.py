"""Is the student good enough to ship as the default? Its gap to the teacher, bar by bar.

The bar (issue "Speed as the default"): within 1.0 point of the teacher's macro-F1 on the
authored test split (written rows) and on the real development set, within 0.5 points of its
flagged rate on each held-out ordinary-talk corpus, and within 2 points on every behaviour-suite
functionality. Reads two artifacts (their manifests hold the test metrics at their shipped
thresholds) and their ``train.realeval`` reports:

    python -m train.student_gap --teacher model/default --teacher-eval train/results/realeval.json \
        --student runs/student/calibrated --student-eval runs/student/realeval.json --out train/results/student_gap.json

When both reports list the failing behaviour cases, it adds ``paired_behaviour``: per
functionality, an exact one-sided McNemar test of whether the student fails more of the same
cases than chance would give, raw and Holm-adjusted over all functionalities — a bar that one
case of run-to-run noise does not trip.
"""

from __future__ import annotations

import argparse
import json
from math import comb
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


def one_sided_sign_test(behind: int, ahead: int) -> float:
    """Exact McNemar (sign) test, one-sided: P(at least ``behind`` of the discordant cases go against
    the student, if each discordant case were a fair coin). Cases both models pass or both fail
    carry no information about which is better, so only the discordant ones count."""
    n = behind + ahead
    return sum(comb(n, i) for i in range(behind, n + 1)) / 2**n


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment: the family-wise error over all functionalities stays at alpha."""
    order = sorted(pvalues, key=pvalues.get)
    adjusted, running = {}, 0.0
    for rank, key in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * pvalues[key]))
        adjusted[key] = running
    return adjusted


def has_case_ids(report: dict[str, Any]) -> bool:
    """Whether a ``train.realeval`` report lists each functionality's failing cases (needed for pairing)."""
    return all("failed" in r for r in report["behaviour"]["functionalities"].values())


def paired_behaviour(teacher_eval: dict[str, Any], student_eval: dict[str, Any], alpha: float = 0.05) -> dict[str, Any]:
    """Per functionality, the cases only the student fails against those only the teacher fails.

    The 2-point bar compares rates; with 47 to 66 cases a functionality, one case is 1.5 to 2.1
    points, and two runs of one recipe already differ by more than 2 points on several
    functionalities (``train.rerun_spread``). Pairing the same cases asks the sharper question: is
    the student behind by more than chance? Needs reports with ``failed`` case ids
    (``train.realeval`` writes them since round 22).
    """
    t_rows, s_rows = (e["behaviour"]["functionalities"] for e in (teacher_eval, student_eval))
    table, pvalues = {}, {}
    for name in sorted(set(t_rows) & set(s_rows)):
        t_failed, s_failed = set(t_rows[name]["failed"]), set(s_rows[name]["failed"])
        behind, ahead = len(s_failed - t_failed), len(t_failed - s_failed)
        pvalues[name] = one_sided_sign_test(behind, ahead)
        table[name] = {"n": t_rows[name]["n"], "only_student_fails": behind, "only_teacher_fails": ahead,
                       "p_one_sided": round(pvalues[name], 4)}  # fmt: skip
    adjusted = holm(pvalues)
    for name, row in table.items():
        row["p_holm"] = round(adjusted[name], 4)
    behind, ahead = (sum(r[k] for r in table.values()) for k in ("only_student_fails", "only_teacher_fails"))
    whole = {"only_student_fails": behind, "only_teacher_fails": ahead}
    return {
        "alpha": alpha,
        "whole_suite": {**whole, "p_one_sided": round(one_sided_sign_test(behind, ahead), 4)},
        "behind_unadjusted": [k for k, p in pvalues.items() if p < alpha],
        "behind_holm": [k for k, p in adjusted.items() if p < alpha],
        "functionalities": table,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for who in ("teacher", "student"):
        ap.add_argument(f"--{who}", type=Path, required=True, help=f"{who} artifact folder")
        ap.add_argument(f"--{who}-eval", type=Path, required=True, help=f"{who}'s train.realeval JSON")
    ap.add_argument("--alpha", type=float, default=0.05, help="level of the paired per-functionality test")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    def read(path: Path) -> dict[str, Any]:
        return json.loads(path.read_text(encoding="utf-8"))

    evals = [read(args.teacher_eval), read(args.student_eval)]
    manifests = [read(args.teacher / "collectguard.json"), read(args.student / "collectguard.json")]
    result = gap(*(rows_of(m, e) for m, e in zip(manifests, evals, strict=True)))
    if all(has_case_ids(e) for e in evals):
        result["paired_behaviour"] = paired_behaviour(*evals, alpha=args.alpha)
    emit_report(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
