"""`collectguard score` (the README's main job): real files in, a readable report out."""

from __future__ import annotations

import json
from pathlib import Path

from collectguard.cli import main

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"


def test_scores_every_sample_call(tiny_artifact, capsys):
    assert main(["score", str(SAMPLES / "calls.jsonl"), "--model", str(tiny_artifact)]) == 0
    out = capsys.readouterr().out
    call_ids = [json.loads(line)["call_id"] for line in (SAMPLES / "calls.jsonl").read_text().splitlines() if line]
    for call_id in call_ids:
        assert f"== {call_id}  verdict:" in out


def test_json_output_has_results_and_the_shared_summary(tiny_artifact, capsys):
    assert main(["score", str(SAMPLES / "calls.jsonl"), "--model", str(tiny_artifact), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    first = lines[0]
    assert len(first["results"]) == len(first["segments"]) == first["summary"]["n_segments"]
    assert set(first["results"][0]["scores"]) == {"threat", "insult", "third_party_disclosure", "compliant"}


def test_bad_rows_are_reported_and_the_rest_is_scored(tiny_artifact, tmp_path, capsys):
    good = (SAMPLES / "calls.jsonl").read_text().splitlines()[0]
    f = tmp_path / "mixed.jsonl"
    f.write_text(good + "\n{not json\n", encoding="utf-8")
    assert main(["score", str(f), "--model", str(tiny_artifact)]) == 0
    captured = capsys.readouterr()
    assert "line 2" in captured.err
    assert "verdict:" in captured.out


def test_text_segments_and_threshold_override(tiny_artifact, capsys):
    args = ["score", "--text", "你好", "--model", str(tiny_artifact), "--json"]
    assert main([*args, "--threshold", "threat=0", "--threshold", "insult=0", "--threshold",
                 "third_party_disclosure=0"]) == 0  # fmt: skip
    res = json.loads(capsys.readouterr().out)["results"][0]
    assert res["labels"] == ["threat", "insult", "third_party_disclosure"]
    assert main([*args, "--threshold", "rudeness=0.5"]) == 2
    assert "rudeness" in capsys.readouterr().err
