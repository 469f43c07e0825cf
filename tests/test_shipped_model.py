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


def test_targets_on_the_written_test_split(shipped):
    rows = load_split("test", written_only=True)
    report, _ = evaluate_rows(shipped, rows)
    assert report["macro_f1"] >= 0.90
    assert report["compliant_false_positive_rate"] <= 0.05


def test_scores_do_not_depend_on_batching(shipped):
    rows = load_split("test", written_only=True)[:40]
    one_batch = shipped.predict_proba(rows, batch_size=64)
    small = shipped.predict_proba(rows, batch_size=3)
    np.testing.assert_allclose(one_batch, small, atol=1e-5)
