"""train.decontaminate drops new rows that sit on the other side (evaluation items or the corpus) and keeps the rest."""

import json
from pathlib import Path

from model.preprocess import normalize
from train.dataset import load_split
from train.decontaminate import main


def test_drops_rows_near_evaluation_items(tmp_path):
    suite = [json.loads(line) for line in Path("data/behaviour/suite.jsonl").read_text(encoding="utf-8").splitlines()]
    long_case = normalize(next(r["text"] for r in suite if len(r["text"]) >= 30))  # compared after normalising
    rows = [
        {"id": "z-1", "text": suite[0]["text"], "labels": []},  # an exact copy of a behaviour case
        {"id": "z-2", "text": "前缀不同。" + long_case[10:24], "labels": []},  # shares 14 characters with one
        {"id": "z-3", "text": "喂，您好，这里是测试用的一句完全新写的话，和评测无关。", "labels": []},
    ]
    f = tmp_path / "written_z.jsonl"
    f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    dropped = tmp_path / "dropped.jsonl"
    assert main([str(f), "--dropped", str(dropped)]) == 0
    kept = [json.loads(line)["id"] for line in f.read_text(encoding="utf-8").splitlines()]
    assert kept == ["z-3"]
    out = [json.loads(line) for line in dropped.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in out] == ["z-1", "z-2"]
    assert all(r["matched"].startswith("suite.jsonl:") for r in out)


def test_new_behaviour_cases_are_dropped_when_they_sit_on_a_corpus_row(tmp_path):
    train_text = next(r["text"] for r in load_split("train") if r.get("source") == "written" and len(r["text"]) >= 20)
    rows = [
        {"id": "x-13", "functionality": "x", "text": train_text + "。", "labels": []},  # a training row again
        {"id": "x-14", "functionality": "x", "text": "喂，这里是测试用的一句新写的话，和训练无关。", "labels": []},
    ]
    f = tmp_path / "cases.jsonl"
    f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    dropped = tmp_path / "dropped.jsonl"
    assert main([str(f), "--against", "corpus", "--dropped", str(dropped)]) == 0
    assert [json.loads(line)["id"] for line in f.read_text(encoding="utf-8").splitlines()] == ["x-14"]
    (out,) = [json.loads(line) for line in dropped.read_text(encoding="utf-8").splitlines()]
    assert out["id"] == "x-13" and out["matched"].startswith("train.jsonl:")
