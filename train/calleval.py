"""Precision and recall of the call-level detectors on authored calls and customer turns.

``python -m train.calleval`` reads ``data/calls/anonymous_calls.jsonl`` (outbound calls, each
marked ``anonymous_collection`` true or false) and ``data/calls/complaint_turns.jsonl``
(customer turns marked ``complaint``), runs the same functions the API and relabel run
(:func:`serve.calls.check_call` on whole calls, :func:`serve.calls.complaint.is_complaint` on
turns) and prints precision / recall / F1 per split: ``dev`` (the rules were written and tuned
while reading it) and ``heldout`` (written before it was ever scored and never tuned on).
``--out FILE`` writes the numbers and every miss as JSON; ``--set calls.key=value`` changes
the check's settings.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from model.config import REPO_ROOT, CallsConfig, Settings, repo_relative
from serve.calls import check_call
from serve.calls.complaint import is_complaint

CALLS_FILE = REPO_ROOT / "data" / "calls" / "anonymous_calls.jsonl"
TURNS_FILE = REPO_ROOT / "data" / "calls" / "complaint_turns.jsonl"
SPLITS = ("dev", "heldout")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def prf(pairs: Iterable[tuple[bool, bool]]) -> dict[str, Any]:
    """Precision, recall and F1 of ``(truth, predicted)`` pairs, with the counts behind them."""
    tp = fp = fn = tn = 0
    for truth, pred in pairs:
        tp += truth and pred
        fp += (not truth) and pred
        fn += truth and not pred
        tn += not truth and not pred
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else None
    rnd = lambda x: round(x, 3) if x is not None else None  # noqa: E731
    return {"n": tp + fp + fn + tn, "positives": tp + fn, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": rnd(precision), "recall": rnd(recall), "f1": rnd(f1)}  # fmt: skip


def evaluate_anonymous(calls: list[dict[str, Any]], cfg: CallsConfig) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Per-split metrics of ``anonymous_collection`` and the calls it got wrong."""
    judged, misses = [], []
    for call in calls:
        meta = {k: call[k] for k in ("started_at", "direction", "debtor_id", "callee") if k in call}
        got = check_call(call["segments"], meta, cfg)["flags"]["anonymous_collection"]
        judged.append((call["split"], call["anonymous_collection"], got["raised"] is True))
        if (got["raised"] is True) != call["anonymous_collection"]:
            misses.append({"call_id": call["call_id"], "truth": call["anonymous_collection"], "reason": got["reason"],
                           "agent": [s["text"] for s in call["segments"] if s["speaker"] == "agent"][:3]})  # fmt: skip
    return _by_split(judged), misses


def evaluate_complaint(turns: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Per-split metrics of the complaint detector on single customer turns, and its misses."""
    judged, misses = [], []
    for turn in turns:
        got = is_complaint(turn["text"])
        judged.append((turn["split"], turn["complaint"], got))
        if got != turn["complaint"]:
            misses.append({"id": turn["id"], "truth": turn["complaint"], "text": turn["text"]})
    return _by_split(judged), misses


def _by_split(judged: list[tuple[str, bool, bool]]) -> dict[str, Any]:
    out = {split: prf((t, p) for s, t, p in judged if s == split) for split in SPLITS}
    out["all"] = prf((t, p) for _, t, p in judged)
    return out


def run(cfg: CallsConfig, calls_file: Path = CALLS_FILE, turns_file: Path = TURNS_FILE) -> dict[str, Any]:
    anonymous, anonymous_misses = evaluate_anonymous(read_jsonl(calls_file), cfg)
    complaint, complaint_misses = evaluate_complaint(read_jsonl(turns_file))
    return {
        "data": {"calls": repo_relative(calls_file), "turns": repo_relative(turns_file)},
        "settings": cfg.model_dump(mode="json"),
        "anonymous_collection": anonymous,
        "complaint": complaint,
        "misses": {"anonymous_collection": anonymous_misses, "complaint": complaint_misses},
    }


def _table(name: str, metrics: dict[str, Any]) -> str:
    lines = [f"{name}:"]
    for split, m in metrics.items():
        lines.append(f"  {split:<8} n={m['n']:<4} positives={m['positives']:<4} precision={m['precision']} "
                     f"recall={m['recall']} f1={m['f1']} (fp={m['fp']}, fn={m['fn']})")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=Path, default=CALLS_FILE)
    parser.add_argument("--turns", type=Path, default=TURNS_FILE)
    parser.add_argument("--out", type=Path, help="write metrics and misses as JSON")
    parser.add_argument("--misses", action="store_true", help="print every miss")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args(argv)
    result = run(Settings.from_args(args).calls, args.calls, args.turns)
    print(_table("anonymous_collection (calls)", result["anonymous_collection"]))
    print(_table("complaint (customer turns)", result["complaint"]))
    if args.misses:
        print(json.dumps(result["misses"], ensure_ascii=False, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
