"""The detectors' measured precision and recall (train/calleval.py) on the authored calls and
turns in data/calls/: the set is large enough and has both kinds, the committed numbers are what
the code measures now, and held-out quality does not fall below what was reported."""

from __future__ import annotations

import json

from model.config import REPO_ROOT, CallsConfig
from train.calleval import CALLS_FILE, TURNS_FILE, prf, read_jsonl, run

RESULTS = REPO_ROOT / "train" / "results" / "calleval.json"


def test_prf_counts() -> None:
    m = prf([(True, True), (True, False), (False, True), (False, False), (True, True)])
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 1)
    assert m["precision"] == round(2 / 3, 3) and m["recall"] == round(2 / 3, 3)
    assert prf([(False, False)])["precision"] is None


def test_authored_sets_are_big_enough_and_have_both_kinds() -> None:
    calls, turns = read_jsonl(CALLS_FILE), read_jsonl(TURNS_FILE)
    assert len(calls) >= 200 and len(turns) >= 200
    for rows, key in ((calls, "anonymous_collection"), (turns, "complaint")):
        for split in ("dev", "heldout"):
            kinds = [r[key] for r in rows if r["split"] == split]
            assert sum(kinds) >= 40 and len(kinds) - sum(kinds) >= 40, (key, split)
    assert len({c["call_id"] for c in calls}) == len(calls)


def test_committed_numbers_are_what_the_code_measures() -> None:
    fresh = run(CallsConfig())
    committed = json.loads(RESULTS.read_text(encoding="utf-8"))
    for check in ("anonymous_collection", "complaint"):
        assert committed[check] == fresh[check], f"rerun: python -m train.calleval --out {RESULTS}"


def test_held_out_quality_floor() -> None:
    fresh = run(CallsConfig())
    for check in ("anonymous_collection", "complaint"):
        held = fresh[check]["heldout"]
        assert held["precision"] >= 0.8 and held["recall"] >= 0.85, (check, held)
