"""How far apart two models of the same recipe land on the behaviour suite, functionality by functionality.

The speed issue holds a student to within 2 points of its teacher on every behaviour
functionality (:data:`train.student_gap.BARS`). With about 60 cases each, 2 points is one case.
This measures the spread that bar sits in: between two runs of one recipe that differ only in
seed (or in being rerun), how many functionalities already differ by more than the bar, in each
direction; and, where the reports list their failing cases, which ones the paired test of
``train.student_gap`` would call behind. It reads ``train.realeval`` reports only:

    python -m train.rerun_spread --pair "v2h, rerun" train/results/realeval_v2h.json \
        train/results/realeval_r18_v2h_rerun.json --out train/results/rerun_spread.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from train.evaluate import emit_report
from train.student_gap import BARS, has_case_ids, paired_behaviour, points


def pass_rates(report: dict[str, Any]) -> dict[str, float]:
    """Each behaviour functionality's pass rate, in points."""
    return {name: points(r["pass_rate"]) for name, r in report["behaviour"]["functionalities"].items()}


def spread(a: dict[str, float], b: dict[str, float], bar: float = BARS["behaviour"]) -> dict[str, Any]:
    """Functionalities where one run is more than ``bar`` points behind the other (both shared by the two)."""
    shared = sorted(set(a) & set(b))
    b_behind = [k for k in shared if a[k] - b[k] > bar]
    a_behind = [k for k in shared if b[k] - a[k] > bar]
    return {
        "functionalities": len(shared),
        "bar_points": bar,
        "b_behind_a": len(b_behind),
        "a_behind_b": len(a_behind),
        "either_way": len(b_behind) + len(a_behind),
        "b_behind_a_names": b_behind,
        "a_behind_b_names": a_behind,
    }


def paired_spread(a: dict[str, Any], b: dict[str, Any], alpha: float = 0.05) -> dict[str, Any]:
    """The paired test of :func:`train.student_gap.paired_behaviour`, both ways: what it flags
    between two runs of one recipe is how often it would flag a student by chance."""
    b_vs_a, a_vs_b = paired_behaviour(a, b, alpha), paired_behaviour(b, a, alpha)
    whole = b_vs_a["whole_suite"]
    return {
        "alpha": alpha,
        "b_behind_a_unadjusted": b_vs_a["behind_unadjusted"],
        "a_behind_b_unadjusted": a_vs_b["behind_unadjusted"],
        "b_behind_a_holm": b_vs_a["behind_holm"],
        "a_behind_b_holm": a_vs_b["behind_holm"],
        "whole_suite": {
            "only_b_fails": whole["only_student_fails"],
            "only_a_fails": whole["only_teacher_fails"],
            "p_b_behind_a": whole["p_one_sided"],
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", nargs=3, action="append", required=True, metavar=("NAME", "A", "B"),
                    help="a name and two train.realeval JSON reports (repeatable)")  # fmt: skip
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    result = {}
    for name, a, b in args.pair:
        reports = [json.loads(Path(p).read_text(encoding="utf-8")) for p in (a, b)]
        result[name] = {"a": a, "b": b, **spread(*(pass_rates(r) for r in reports))}
        if all(has_case_ids(r) for r in reports):
            result[name]["paired"] = paired_spread(*reports)
    emit_report(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
