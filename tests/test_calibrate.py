"""train.calibrate writes a loadable artifact whose manifest matches the thresholds it ships."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model.classifier import Classifier
from model.labels import VIOLATIONS
from train.calibrate import expected_calibration_error, fold_of, write_calibrated

NEW = {"threat": 0.61, "insult": 0.72, "third_party_disclosure": 0.83}


def test_calibrated_copy_loads_with_new_thresholds_and_shipped_metrics(tiny_artifact, tmp_path):
    before = json.loads((tiny_artifact / "collectguard.json").read_text())
    result = {"thresholds": NEW, "rule": "test rule", "mix": {"real_dev": 3}}
    test = {"all": {"n": 7, "macro_f1": 0.5}, "written": {"n": 3, "macro_f1": 0.4}}
    out = write_calibrated(tiny_artifact, tmp_path / "calibrated", result, test)

    manifest = json.loads((out / "collectguard.json").read_text())
    assert manifest["thresholds"] == NEW
    assert manifest["calibration"] == {"rule": "test rule", "mix": {"real_dev": 3}}
    assert manifest["metrics"]["test"] == test
    if "test" in before.get("metrics", {}):
        assert manifest["metrics"]["test_at_training_thresholds"] == before["metrics"]["test"]
    assert json.loads((tiny_artifact / "collectguard.json").read_text()) == before  # the source is untouched
    clf = Classifier.load(out)
    assert clf.thresholds == NEW
    assert set(VIOLATIONS) <= set(clf.score(["您好，请问是本人吗？"])[0]["scores"])


def test_folds_keep_one_source_together():
    rows = [{"source": "https://example.org/a#3"}, {"source": "https://example.org/a#9"}]
    assert fold_of(rows[0]) == fold_of(rows[1])


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_not():
    y = np.array([[1], [0], [1], [0]])
    assert expected_calibration_error(y, np.array([[1.0], [0.0], [1.0], [0.0]])) == 0
    assert expected_calibration_error(y, np.array([[0.0], [1.0], [0.0], [1.0]])) == 1


def test_each_source_weighs_the_same_so_a_small_real_source_is_not_outvoted():
    from train.calibrate import source_weights
    from train.evaluate import choose_thresholds

    w = source_weights([8, 2])
    assert w.sum() == pytest.approx(2.0) and w[0] == pytest.approx(1 / 8) and w[-1] == pytest.approx(1 / 2)
    # 8 authored rows (positives at 0.6+, negatives low); 2 real rows: a lawful notice at 0.7, a threat at 0.99
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 1])[:, None].repeat(3, 1)
    p = np.array([0.6, 0.62, 0.64, 0.66, 0.1, 0.1, 0.1, 0.1, 0.7, 0.99])[:, None].repeat(3, 1)
    pooled = choose_thresholds(y, p, 0.8)["threat"]
    weighted = choose_thresholds(y, p, 0.8, source_weights([8, 2]))["threat"]
    assert pooled <= 0.7 < weighted  # pooled, the real false alarm is cheap; weighted, it is half a source


def test_wilson_bound_is_above_the_share_and_tightens_with_more_rows():
    from train.calibrate import wilson_upper

    assert wilson_upper(8, 3000, 0) == pytest.approx(8 / 3000)
    small, large = wilson_upper(8, 3000, 0.95), wilson_upper(80, 30000, 0.95)
    assert small > large > 80 / 30000
    assert wilson_upper(0, 3000, 0.95) > 0  # no flag seen is not proof of a zero rate


def test_budget_raises_only_the_label_that_floods_ordinary_talk_and_only_as_far_as_needed():
    from train.calibrate import hold_false_alarm_budget

    rng = np.random.default_rng(0)
    talk = rng.uniform(0, 0.3, size=(1000, 3))
    talk[:20, 1] = np.linspace(0.55, 0.95, 20)  # 2 % of the corpus scores as insult
    before = {"threat": 0.5, "insult": 0.5, "third_party_disclosure": 0.5}
    after = hold_false_alarm_budget(before, {"cped": talk}, {"cped": 0.005}, 0)
    assert after["threat"] == 0.5 and after["third_party_disclosure"] == 0.5
    flagged = (talk >= np.array([after[label] for label in VIOLATIONS])).any(1)
    assert flagged.sum() == 5  # exactly at the budget, not below it
    stricter = hold_false_alarm_budget(before, {"cped": talk}, {"cped": 0.005}, 0.95)
    assert stricter["insult"] > after["insult"]
    assert hold_false_alarm_budget(before, {"cped": talk}, {"kdconv": 0.005}, 0.95) == before  # no budget, no change


def test_budget_stops_when_only_certain_scores_are_left():
    from train.calibrate import hold_false_alarm_budget

    talk = np.zeros((100, 3))
    talk[:10, 0] = 1.0
    th = {"threat": 0.5, "insult": 0.5, "third_party_disclosure": 0.5}
    assert hold_false_alarm_budget(th, {"cold": talk}, {"cold": 0.01}, 0)["threat"] <= 1.0
