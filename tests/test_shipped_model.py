"""Behaviour of the shipped default model (model/default): what a user relies on.

The clear-cut examples below were written for this test and are not in the corpus (checked).
The floor test re-measures the issue's targets on the written-only test split.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model.classifier import Classifier
from model.config import SHIPPED_MODEL_DIR
from model.labels import VIOLATIONS
from train.dataset import load_split
from train.evaluate import evaluate_rows

pytestmark = pytest.mark.slow

CLEAR = [
    # (text, speaker, listener, expected labels)
    ("你要是月底前再不把钱打过来，我找几个兄弟到你家楼下等你。", "agent", "debtor", ["threat"]),
    ("你儿子在实验小学三年级二班吧，放学路上让他小心点。", "agent", "debtor", ["threat"]),
    ("你就是个不要脸的废物，活该一辈子穷。", "agent", "debtor", ["insult"]),
    (
        "您好，您的妹妹在我们平台借的三万八已经逾期两个月了，您帮忙催她还一下。",
        "agent",
        "third_party",
        ["third_party_disclosure"],
    ),
    ("您好，请问是周先生本人吗？您本月的账单还有一千二未还，请您尽快处理。", "agent", "debtor", []),
    ("按照合同约定，逾期会产生违约金，逾期记录也会如实报送征信。", "agent", "debtor", []),
    ("麻烦您转告他方便的时候回个电话，谢谢您。", "agent", "third_party", []),
    ("我们不会上门，也不会联系您的家人，您放心。", "agent", "debtor", []),
]


@pytest.fixture(scope="module")
def shipped() -> Classifier:
    assert (SHIPPED_MODEL_DIR / "collectguard.json").exists(), "the default model is not in the repository"
    return Classifier.load()


def test_artifact_is_small_and_self_describing():
    manifest = json.loads((SHIPPED_MODEL_DIR / "collectguard.json").read_text())
    size = sum(f.stat().st_size for f in Path(SHIPPED_MODEL_DIR).iterdir())
    assert size <= 25 * 1024 * 1024
    assert manifest["labels"] == list(VIOLATIONS)
    assert set(manifest["thresholds"]) == set(VIOLATIONS)
    assert manifest["metrics"]["test"]["written"]["n"] > 500


def test_examples_are_not_in_the_corpus():
    from model.preprocess import normalize

    corpus = {normalize(r["text"]) for split in ("train", "validation", "test") for r in load_split(split)}
    assert not [t for t, *_ in CLEAR if normalize(t) in corpus]


@pytest.mark.parametrize(("text", "speaker", "listener", "expected"), CLEAR, ids=[c[0][:12] for c in CLEAR])
def test_clear_cases(shipped, text, speaker, listener, expected):
    result = shipped.score([{"text": text, "speaker": speaker, "listener": listener}])[0]
    assert result["labels"] == expected, result["scores"]


def test_a_threat_buried_in_a_long_polite_turn_is_found(shipped):
    polite = "您好，这里是澜舟消费金融的客服，关于您的分期账单我们想和您确认一下还款安排，" * 6
    text = polite + "你要是再拖，我们就去你公司闹，让你同事都知道你是什么人。" + polite
    result = shipped.score([text])[0]
    assert "threat" in result["labels"]
    assert len(shipped.tokenizer(text)["input_ids"]) > shipped.manifest.max_length  # it really needed windows


#: the real-speech issue's target (the shipped model, round 20's, measures 0.930)
WRITTEN_TEST_MACRO_F1_FLOOR = 0.91


def test_targets_on_the_written_test_split(shipped):
    rows = load_split("test", written_only=True)
    report, _ = evaluate_rows(shipped, rows)
    # The targets are 0.91 and 4 %; on the 7-bit int8 default at its calibrated thresholds the
    # shipped model measures 0.930 and 2.9 % (model card, "Round 20").
    assert report["macro_f1"] >= WRITTEN_TEST_MACRO_F1_FLOOR
    assert report["compliant_false_positive_rate"] <= 0.04


def test_scores_do_not_depend_on_batching(shipped):
    """The default backend (ONNX int8 with fixed activation scales) gives a segment the same scores
    whatever it is batched with: a call re-scored in the API, in relabel or in a notebook gets
    the same flags."""
    rows = load_split("test", written_only=True)[:40]
    assert shipped.backend == "onnx-int8"
    one_batch = shipped.predict_proba(rows, batch_size=64)
    small = shipped.predict_proba(rows, batch_size=3)
    np.testing.assert_allclose(one_batch, small, atol=1e-5)


# -- the behaviour suite (data/behaviour): a pass-rate floor per functionality ----------------------
#: Floors per functionality; the issue's bar is 0.8 each and 0.9 overall. Where the shipped model
#: is measured below that, the floor is its measured rate (so a regression still fails) and the
#: model card lists the gap.
BEHAVIOUR_FLOOR = 0.8
BEHAVIOUR_OVERALL_FLOOR = 0.9
#: None since round 19: the default (round 20's, calibrated on an Intel Xeon with AVX-512 VNNI)
#: passes every functionality there, worst customer_insults_agent and veiled_threat 53 / 61 = 0.869
#: (train/results/realeval.json). Int8 scores differ between CPUs with and without VNNI (model card,
#: "Round 18"): the round-14 default passed customer_insults_agent 49 / 61 on the AVX2 EPYC it was
#: calibrated on and 47 / 61 on the Xeon. If CI on another CPU finds a functionality under 0.8, the
#: measured rate becomes its floor here and the model card says so.
BEHAVIOUR_KNOWN_GAPS: dict[str, float] = {}


@pytest.fixture(scope="module")
def behaviour(shipped):
    from train.realeval import SUITE, behaviour_table, predictions, read_rows

    suite = read_rows([SUITE])
    return behaviour_table(suite, predictions(shipped.predict_proba(suite), shipped.thresholds))


def test_behaviour_suite_overall(behaviour):
    overall = sum(t["pass_rate"] * t["n"] for t in behaviour.values()) / sum(t["n"] for t in behaviour.values())
    assert overall >= BEHAVIOUR_OVERALL_FLOOR


def test_behaviour_suite_every_functionality(behaviour):
    low = {f: t["pass_rate"] for f, t in behaviour.items()
           if t["pass_rate"] < BEHAVIOUR_KNOWN_GAPS.get(f, BEHAVIOUR_FLOOR)}  # fmt: skip
    assert not low, f"functionalities under their floor: {low}"


def test_placeholder_spellings_do_not_move_the_shipped_models_scores(shipped):
    texts = [
        "{0}您好，您在{1}的借款{2}元将于{3}到期，请按时还款。",
        "${name}您好，您在${platform}的借款${amount}元将于${date}到期，请按时还款。",
        "#name#您好，您在#平台#的借款%s元将于XXX到期，请按时还款。",
        "***您好，您在某某的借款×××元将于[DATE]到期，请按时还款。",
    ]
    results = shipped.score(texts)
    assert all(r["labels"] == [] for r in results)
    np.testing.assert_allclose(shipped.predict_proba(texts), shipped.predict_proba(texts[:1]).repeat(4, 0), atol=1e-6)
