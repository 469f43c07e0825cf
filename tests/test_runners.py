"""Backends are objects handed to the Classifier; every path encodes and pads through one function.

These compare code paths with each other (not with pinned scores), so they hold for any model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from model.classifier import Classifier
from model.preprocess import Segment, encode_windows, make_windows, pad_batch
from model.runners import TorchRunner

SEGMENTS = [
    {"text": "你再不还钱我就去你单位找你领导", "speaker": "agent", "listener": "debtor"},
    {"text": "麻烦您转告他给我们回个电话" * 12, "speaker": "agent", "listener": "third_party"},
    "嗯 对 是我",
]


def test_default_runner_is_torch_and_an_explicit_one_gives_the_same_scores(tiny_classifier):
    assert isinstance(tiny_classifier.runner, TorchRunner)
    clf = Classifier(tiny_classifier.model, tiny_classifier.tokenizer, tiny_classifier.manifest,
                     runner=TorchRunner(tiny_classifier.model))  # fmt: skip
    np.testing.assert_array_equal(clf.predict_proba(SEGMENTS), tiny_classifier.predict_proba(SEGMENTS))


def test_the_classifier_feeds_its_runner_the_shared_encoding(tiny_classifier):
    """What the runner receives is exactly encode_windows + pad_batch of the windows, batch by batch."""
    seen: list[dict[str, np.ndarray]] = []

    def recording(batch):
        seen.append({k: np.array(v) for k, v in batch.items()})
        return TorchRunner(tiny_classifier.model)(batch)

    m = tiny_classifier.manifest
    clf = Classifier(tiny_classifier.model, tiny_classifier.tokenizer, m, runner=recording)
    probs = clf.predict_proba(SEGMENTS, batch_size=64)
    windows = make_windows(clf.tokenizer, [Segment.of(s) for s in SEGMENTS], m.max_length, m.stride)
    assert len(windows) > len(SEGMENTS)  # the long segment is windowed
    ids = encode_windows(clf.tokenizer, windows, m.max_length)
    order = np.argsort([len(x) for x in ids], kind="stable")
    [batch] = seen
    expected = pad_batch([ids[i] for i in order], clf.tokenizer.pad_token_id)
    for key in ("input_ids", "attention_mask"):
        np.testing.assert_array_equal(batch[key], expected[key])
    np.testing.assert_array_equal(probs, tiny_classifier.predict_proba(SEGMENTS, batch_size=64))


def test_preprocess_command_prints_the_classifiers_encoding(capsys, tiny_artifact, tiny_classifier):
    from collectguard.cli import main

    text = "你好，" * 60 + "我就去你单位找你领导"
    assert main(["preprocess", text, "--listener", "debtor", "--model", str(tiny_artifact)]) == 0
    printed = json.loads(capsys.readouterr().out)["windows"]
    m = tiny_classifier.manifest
    windows = make_windows(tiny_classifier.tokenizer, [Segment(text, listener="debtor")], m.max_length, m.stride)
    ids = encode_windows(tiny_classifier.tokenizer, windows, m.max_length)
    assert [w["tokens"] for w in printed] == [tiny_classifier.tokenizer.convert_ids_to_tokens(x) for x in ids]


def test_pad_batch_pads_right_with_a_mask():
    batch = pad_batch([[5, 6, 7], [8]], pad_id=1)
    np.testing.assert_array_equal(batch["input_ids"], [[5, 6, 7], [8, 1, 1]])
    np.testing.assert_array_equal(batch["attention_mask"], [[1, 1, 1], [1, 0, 0]])
    assert batch["input_ids"].dtype == np.int64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"speaker": "robot"}, "speaker must be one of"),
        ({"listener": "nobody"}, "listener must be one of"),
        ({"start": -1.0}, "start must be"),
        ({"start": 5.0, "end": 2.0}, "before start"),
        ({"end": float("nan")}, "end must be"),
    ],
)
def test_segment_is_the_one_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Segment("你好", **kwargs)
    with pytest.raises(ValueError, match=message):
        Segment.of({"text": "你好", **kwargs})


def test_segment_normalises_once_and_defaults_from_the_label_schema():
    from model.labels import DEFAULT_LISTENER, DEFAULT_SPEAKER

    seg = Segment.of({"text": "嗯嗯嗯 你好", "speaker": None, "listener": ""})
    assert (seg.speaker, seg.listener) == (DEFAULT_SPEAKER, DEFAULT_LISTENER)
    assert seg.normalized == "嗯你好" and "normalized" in vars(seg)  # cached on the segment
    assert seg.as_dict() == {
        "start": None,
        "end": None,
        "speaker": "agent",
        "listener": "unknown",
        "text": "嗯嗯嗯 你好",
    }
