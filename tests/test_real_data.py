"""Real text: the development set's provenance and isolation, the behaviour suite's shape,
and the fixed slices of the real negatives (read from files written here)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from model.config import Settings
from model.preprocess import normalize
from train.dataset import NearDuplicateIndex, load_split, ngrams
from train.decontaminate import NearCopies, corpus_texts
from train.evaluate import label_matrix
from train.negatives import SLICES, load_negatives, slice_of
from train.realeval import (
    REAL_DIR,
    SUITE,
    behaviour_table,
    load_dev,
    load_dev_by_file,
    metrics_by_file,
    read_rows,
    suite_round,
)


# -- the real development set ------------------------------------------------------------------
@pytest.fixture(scope="module")
def dev():
    return load_dev()


def test_dev_set_is_big_enough_and_every_row_has_provenance(dev):
    assert len(dev) >= 300
    for r in dev:
        assert r["source"].startswith(("github:", "http://", "https://")), r["id"]
        assert r.get("kind"), r["id"]
    assert len({r["id"] for r in dev}) == len(dev)


def test_dev_set_never_reaches_a_training_split(dev):
    """data/real is for selection, thresholds and reporting only: no dev text (or near copy) trains."""
    assert Path(Settings().data.authored_dir).resolve() != REAL_DIR.resolve()
    assert not list(Path(Settings().data.authored_dir).glob("dev_*.jsonl"))
    corpus = [r for split in ("train", "validation", "test") for r in load_split(split)]
    seen = {normalize(r["text"]) for r in corpus}
    assert not [r["id"] for r in dev if normalize(r["text"]) in seen]
    index = NearDuplicateIndex([ngrams(r["text"]) for r in corpus if r["source"] == "written"])
    near = [r["id"] for r in dev if len(normalize(r["text"])) >= 12 and index.find(ngrams(r["text"]), 0.8)]
    assert not near, f"dev rows with a near copy in the written corpus: {near[:10]}"


# -- the behaviour suite -----------------------------------------------------------------------
def test_behaviour_suite_shape():
    suite = read_rows([SUITE])
    per = Counter(r["functionality"] for r in suite)
    assert len(per) >= 30 and min(per.values()) >= 10, per
    assert len({normalize(r["text"]) for r in suite}) == len(suite), "duplicate cases"


def test_behaviour_cases_are_not_in_the_corpus():
    suite = read_rows([SUITE])
    corpus = {normalize(r["text"]) for split in ("train", "validation", "test") for r in load_split(split)}
    assert not [r["id"] for r in suite if normalize(r["text"]) in corpus]


def test_behaviour_cases_of_later_rounds_sit_on_no_corpus_or_candidate_row():
    """Cases 13 and up (later, blind writers) were decontaminated with ``python -m train.decontaminate
    --against corpus``: none may sit on a training, validation or test row, nor on a candidate row a
    later model may train on (the candidates that did were dropped, training side yielding)."""
    later = [r for r in read_rows([SUITE]) if suite_round(r) >= 2]
    assert len(later) >= 300
    finder = NearCopies(corpus_texts(set()))
    _, near = finder.split(later)
    assert not [(r["id"], r["matched"]) for r in near]


def test_suite_rounds_follow_case_numbers():
    ids = ["a-01", "a-12", "a-13", "a-24", "a-25", "a-60"]
    assert [suite_round({"id": i}) for i in ids] == [1, 1, 2, 2, 3, 3]


def test_behaviour_table_counts_exact_label_sets():
    rows = [{"id": "a-01", "functionality": "a", "labels": ["threat"]},
            {"id": "a-02", "functionality": "a", "labels": []},
            {"id": "b-01", "functionality": "b", "labels": ["insult"]}]  # fmt: skip
    import numpy as np

    pred = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 1]])
    assert behaviour_table(rows, pred) == {"a": {"n": 2, "pass_rate": 0.5, "failed": ["a-02"]},
                                           "b": {"n": 1, "pass_rate": 0.0, "failed": ["b-01"]}}  # fmt: skip


# -- real negatives: fixed, disjoint slices ------------------------------------------------------
def test_slices_are_disjoint_cover_everything_and_keep_dialogues_whole(datasets):
    got = {part: load_negatives(datasets, "cped", part, 0.2, 13) for part in SLICES}
    ids = [r["id"] for rows in got.values() for r in rows]
    assert len(ids) == len(set(ids)) == 600
    for part, rows in got.items():
        for r in rows:
            assert slice_of("cped", r["id"].split(":")[1], 0.2, 13) == part
    held = len(got["calibration"]) + len(got["test"])
    assert 0.1 < held / 600 < 0.3
    dialogues = {part: {r["id"].split(":")[1] for r in rows} for part, rows in got.items()}
    assert not dialogues["train"] & dialogues["test"]


def test_cold_keeps_its_upstream_split_and_only_safe_rows(datasets):
    train = load_negatives(datasets, "cold", "train", 0.2, 13)
    assert len(train) == 50 and all(r["id"].startswith("cold-train:") for r in train)
    held = load_negatives(datasets, "cold", "calibration", 0.2, 13) + load_negatives(datasets, "cold", "test", 0.2, 13)
    assert len(held) == 50 and all(r["id"].startswith("cold-dev:") for r in held)


def test_unknown_slice_or_corpus_is_an_error(datasets):
    with pytest.raises(ValueError, match="slice"):
        load_negatives(datasets, "cped", "dev", 0.2, 13)
    with pytest.raises(ValueError, match="corpus"):
        load_negatives(datasets, "weibo", "train", 0.2, 13)


def test_build_takes_only_training_slices_and_keeps_public_text_out_of_committed_files(datasets, tmp_path):
    import shutil

    from train.dataset import PUBLIC_FILE, build

    authored = tmp_path / "authored"
    authored.mkdir()
    shutil.copy(sorted(Path(Settings().data.authored_dir).glob("*.jsonl"))[0], authored)
    train_slice = load_negatives(datasets, "cped", "train", 0.2, 13)
    hard = tmp_path / "hard.jsonl"
    hard.write_text(json.dumps({"id": train_slice[0]["id"], "labels": ["threat"]}) + "\n"
                    + json.dumps({"id": train_slice[1]["id"], "labels": []}) + "\n", encoding="utf-8")  # fmt: skip
    out = tmp_path / "out"
    settings = Settings.load(overrides=[
        f"data.authored_dir={authored}", "data.template_rows=0", f"data.out_dir={out}",
        f"data.negatives_dir={datasets}", f"data.hard_negatives={hard}",
        f"data.person_directed={tmp_path / 'none.jsonl'}",
        'data.negatives_rows={"cped": 50, "kdconv": 40, "cold": 30}',
    ])  # fmt: skip
    build(settings, out)
    committed = [json.loads(line) for s in ("train", "validation", "test")
                 for line in (out / f"{s}.jsonl").read_text(encoding="utf-8").splitlines()]  # fmt: skip
    assert not [r for r in committed if r["source"] in ("cped", "kdconv", "cold")]
    public = [json.loads(line) for line in (out / PUBLIC_FILE).read_text(encoding="utf-8").splitlines()]
    assert Counter(r["source"] for r in public) == {"cped": 52, "kdconv": 40, "cold": 30}
    held = {r["id"] for c in ("cped", "kdconv", "cold") for p in ("calibration", "test")
            for r in load_negatives(datasets, c, p, 0.2, 13)}  # fmt: skip
    assert not held & {r["id"] for r in public}
    by_id = {r["id"]: r for r in public}
    assert by_id[train_slice[0]["id"]]["labels"] == ["threat"] and by_id[train_slice[1]["id"]]["labels"] == []
    own_train = (out / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(load_split("train", out)) == len(own_train) + len(public)  # training sees both


def test_hard_negatives_are_capped_and_person_directed_attacks_train_as_insult(datasets, tmp_path):
    from train.dataset import load_real_negatives

    pool = load_negatives(datasets, "cped", "train", 0.2, 13)
    hard = tmp_path / "hard.jsonl"
    lines = [{"id": r["id"], "labels": []} for r in pool[:20]] + [{"id": pool[20]["id"], "labels": ["threat"]}]
    hard.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    attacks = tmp_path / "pd.jsonl"
    decisions = [{"id": "cold-train:1", "person_directed": True}, {"id": "cold-train:3", "person_directed": False}]
    attacks.write_text("".join(json.dumps(x) + "\n" for x in decisions), encoding="utf-8")
    cfg = Settings.load(overrides=[
        f"data.negatives_dir={datasets}", f"data.hard_negatives={hard}", f"data.person_directed={attacks}",
        'data.negatives_rows={"cped": 0, "kdconv": 0, "cold": 0}', 'data.hard_negatives_max={"cped": 5}',
    ]).data  # fmt: skip
    rows = load_real_negatives(cfg)
    cped = [r for r in rows if r["source"] == "cped"]
    assert sum(not r["labels"] for r in cped) == 5  # capped
    assert [r["labels"] for r in cped if r["labels"]] == [["threat"]]  # a reviewed violation is always kept
    assert [(r["id"], r["labels"]) for r in rows if r["source"] == "cold"] == [("cold-train:1", ["insult"])]


def test_dev_metrics_per_file_keep_each_files_rows_apart(dev):
    """A file added later can be read on its own (a blind read at the thresholds chosen before it)."""
    by_file = load_dev_by_file()
    assert [r["id"] for rows in by_file.values() for r in rows] == [r["id"] for r in dev]
    assert all(name.startswith("dev_") for name in by_file)
    y = label_matrix(dev)
    pred = y.copy()
    last = list(by_file)[-1]
    pred[len(dev) - len(by_file[last]) :] = 1  # every row of the last file flagged with every label
    result = metrics_by_file(by_file, y, pred)
    assert {name: m["n"] for name, m in result.items()} == {name: len(rows) for name, rows in by_file.items()}
    assert all(m["exact_match"] == 1.0 for name, m in result.items() if name != last)
    assert result[last]["exact_match"] < 1.0
