"""Model artifacts: save/load round trip, refusal of anything that does not match, thresholds."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from model.architecture import base_fingerprint, build_model, load_tokenizer
from model.artifact import MANIFEST, WEIGHTS, Manifest, load_artifact, read_manifest, save_artifact, version_stamp
from model.classifier import Classifier, check_thresholds
from model.config import InferenceConfig
from model.labels import VIOLATIONS
from model.preprocess import PREPROCESS_VERSION

TORCH = InferenceConfig(backend="torch")  # round trips compare with the in-memory PyTorch network

TEXTS = [
    "你再不还钱我就去你单位找你领导",
    {"text": "麻烦您转告他给我们回个电话", "listener": "third_party"},
    {"text": "你个老赖，不要脸", "speaker": "customer", "listener": "debtor"},
    "他在我们这欠了两万三千块" * 12,  # several windows at max_length 32
    "您好",
]


def copy_artifact(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_manifest(path: Path, **changes) -> None:
    file = path / MANIFEST
    data = json.loads(file.read_text(encoding="utf-8"))
    data.update(changes)
    file.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def make_manifest(base: Path, method: str, train: dict | None = None) -> Manifest:
    return Manifest(
        name="rt", version="0.0.1", method=method, base=base_fingerprint(str(base), None),
        thresholds=dict.fromkeys(VIOLATIONS, 0.5), max_length=32, stride=8, train=train or {},
    )  # fmt: skip


# -- round trip ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "train"), [("head", {}), ("top", {"top_layers": 1})])
def test_save_load_round_trip_identical_scores(tiny_base, tmp_path, method, train):
    model = build_model(str(tiny_base), method, train, seed=7)
    with torch.no_grad():  # make the trained part differ from a fresh build
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    tok = load_tokenizer(tiny_base)
    manifest = make_manifest(tiny_base, method, train)
    before = Classifier(model, tok, manifest).predict_proba(TEXTS)
    path = save_artifact(tmp_path / "a", model, tok, manifest, keep=None)
    loaded = Classifier.load(path, config=TORCH)
    np.testing.assert_array_equal(loaded.predict_proba(TEXTS), before)
    assert loaded.manifest.weights_sha256 == manifest.weights_sha256 != ""
    assert read_manifest(path).method == method


def test_lora_round_trip_merges_to_the_same_scores(tiny_base, tmp_path):
    train = {"lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0}
    model = build_model(str(tiny_base), "lora", train, seed=3)
    tok = load_tokenizer(tiny_base)
    manifest = make_manifest(tiny_base, "lora", train)
    untouched = Classifier(model, tok, manifest).predict_proba(TEXTS)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    before = Classifier(model, tok, manifest).predict_proba(TEXTS)
    assert np.abs(before - untouched).max() > 1e-3  # the adapters matter
    path = save_artifact(tmp_path / "a", model, tok, manifest, keep=None)
    after = Classifier.load(path, config=TORCH).predict_proba(TEXTS)
    np.testing.assert_allclose(after, before, atol=1e-5, rtol=0)


def test_loaded_artifact_is_deterministic(tiny_artifact, tiny_classifier):
    again = Classifier.load(tiny_artifact, config=TORCH)
    np.testing.assert_array_equal(again.predict_proba(TEXTS), tiny_classifier.predict_proba(TEXTS))
    probs = tiny_classifier.predict_proba(TEXTS)
    assert probs.shape == (len(TEXTS), len(VIOLATIONS)) and ((probs > 0) & (probs < 1)).all()


# -- refusals -----------------------------------------------------------------------------------
def test_tampered_weights_bytes_are_refused(tiny_artifact, tmp_path):
    path = copy_artifact(tiny_artifact, tmp_path / "a")
    data = bytearray((path / WEIGHTS).read_bytes())
    header_len = int.from_bytes(data[:8], "little")
    assert len(data) - 1 >= 8 + header_len  # the last byte is tensor data, not header
    data[-1] ^= 0x01
    (path / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="weights hash does not match"):
        load_artifact(path)


def test_tampered_manifest_hash_is_refused(tiny_artifact, tmp_path):
    path = copy_artifact(tiny_artifact, tmp_path / "a")
    edit_manifest(path, weights_sha256="0" * 64)
    with pytest.raises(ValueError, match="weights hash does not match"):
        Classifier.load(path)


def test_other_preprocess_version_is_refused(tiny_artifact, tmp_path):
    path = copy_artifact(tiny_artifact, tmp_path / "a")
    edit_manifest(path, preprocess_version="cg-pp-0")
    with pytest.raises(ValueError, match="preprocessing version") as e:
        Classifier.load(path)
    assert "cg-pp-0" in str(e.value) and PREPROCESS_VERSION in str(e.value)


@pytest.mark.parametrize(
    "labels",
    [
        ["insult", "threat", "third_party_disclosure"],  # same names, other output order
        ["threat", "insult"],
        [*VIOLATIONS, "violence"],
    ],
)
def test_other_labels_are_refused(tiny_artifact, tmp_path, labels):
    path = copy_artifact(tiny_artifact, tmp_path / "a")
    edit_manifest(path, labels=labels)
    with pytest.raises(ValueError, match="labels"):
        load_artifact(path)


def test_wrong_base_fingerprint_in_manifest_is_refused(tiny_artifact, tmp_path):
    path = copy_artifact(tiny_artifact, tmp_path / "a")
    manifest = json.loads((path / MANIFEST).read_text())
    edit_manifest(path, base={**manifest["base"], "sha256": "f" * 64})
    with pytest.raises(ValueError, match="base encoder differs"):
        load_artifact(path)


def test_changed_base_weights_are_refused(tiny_base, tmp_path):
    from conftest import make_tiny_artifact
    from safetensors.torch import load_file, save_file

    base = copy_artifact(tiny_base, tmp_path / "base")
    path = make_tiny_artifact(tmp_path / "a", base)
    load_artifact(path)  # fine as made
    state = load_file(str(base / "model.safetensors"))
    key = sorted(state)[0]
    state[key] = state[key] + 1.0
    save_file(state, str(base / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="base encoder differs"):
        load_artifact(path)


def test_other_format_and_bad_manifest_thresholds_are_refused(tiny_artifact, tmp_path):
    path = copy_artifact(tiny_artifact, tmp_path / "a")
    edit_manifest(path, format="collectguard-artifact/0")
    with pytest.raises(ValueError, match="format"):
        read_manifest(path)
    path2 = copy_artifact(tiny_artifact, tmp_path / "b")
    edit_manifest(path2, thresholds={"threat": 1.5, "insult": 0.5, "third_party_disclosure": 0.5})
    with pytest.raises(ValueError, match="thresholds"):
        read_manifest(path2)
    path3 = copy_artifact(tiny_artifact, tmp_path / "c")
    edit_manifest(path3, thresholds={"threat": 0.5, "insult": 0.5})
    with pytest.raises(ValueError, match="thresholds"):
        read_manifest(path3)


def test_missing_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match=MANIFEST):
        load_artifact(tmp_path)


# -- thresholds ---------------------------------------------------------------------------------
def test_load_threshold_overrides_change_decisions(tiny_artifact, tiny_classifier):
    everything = Classifier.load(tiny_artifact, thresholds=dict.fromkeys(VIOLATIONS, 0.0))
    nothing = Classifier.load(tiny_artifact, thresholds=dict.fromkeys(VIOLATIONS, 1.0))
    assert all(r["labels"] == list(VIOLATIONS) and r["label"] == "threat" for r in everything.score(TEXTS))
    assert all(r["labels"] == [] and r["label"] == "compliant" for r in nothing.score(TEXTS))
    only_insult = Classifier.load(tiny_artifact, thresholds={"insult": 0.0, "threat": 1.0})
    assert only_insult.thresholds == {"insult": 0.0, "threat": 1.0, "third_party_disclosure": 0.5}
    for r in only_insult.score(TEXTS):
        assert "insult" in r["labels"] and "threat" not in r["labels"]
        assert r["label"] in ("insult", "third_party_disclosure")


def test_score_threshold_overrides_change_decisions(tiny_classifier):
    probs = tiny_classifier.predict_proba(TEXTS)
    j = VIOLATIONS.index("insult")
    cut = float(np.median(probs[:, j]))
    assert probs[:, j].min() < cut  # some rows fall below, some reach it
    saved = dict(tiny_classifier.thresholds)
    results = tiny_classifier.score(TEXTS, thresholds={"insult": cut})
    assert [("insult" in r["labels"]) for r in results] == [bool(p >= cut) for p in probs[:, j]]
    assert tiny_classifier.thresholds == saved  # a per-call override does not stick
    low = tiny_classifier.score(TEXTS, thresholds=dict.fromkeys(VIOLATIONS, 0.0))
    high = tiny_classifier.score(TEXTS, thresholds=dict.fromkeys(VIOLATIONS, 1.0))
    assert [r["label"] for r in low] == ["threat"] * len(TEXTS)
    assert [r["label"] for r in high] == ["compliant"] * len(TEXTS)
    for r, p in zip(high, probs, strict=True):
        assert r["scores"]["compliant"] == pytest.approx(1 - p.max())
        assert [r["scores"][v] for v in VIOLATIONS] == pytest.approx(p.tolist())


@pytest.mark.parametrize(
    ("thresholds", "named"),
    [
        ({"violence": 0.5}, "violence"),
        ({"threat": 1.5}, "threat"),
        ({"insult": -0.1}, "insult"),
        ({"third_party_disclosure": "x"}, "third_party_disclosure"),
        ({"threat": True}, "threat"),
        ({"threat": float("nan")}, "threat"),
        ({"compliant": 0.5}, "compliant"),
    ],
)
def test_invalid_thresholds_name_the_label(tiny_artifact, tiny_classifier, thresholds, named):
    with pytest.raises(ValueError, match=named):
        check_thresholds(thresholds)
    with pytest.raises(ValueError, match=named):
        tiny_classifier.score(["你好"], thresholds=thresholds)
    with pytest.raises(ValueError, match=named):
        Classifier.load(tiny_artifact, thresholds=thresholds)


def test_version_stamp_tells_apart_runs_of_one_day():
    # Round 15's and round 19's students finished on the same day; the minute keeps their versions apart.
    before = datetime.now(UTC).replace(second=0, microsecond=0)
    stamp = version_stamp("student6-s7")
    after = datetime.now(UTC)
    assert re.fullmatch(r"\d{4}\.\d{2}\.\d{2}\.\d{4}-student6-s7", stamp), stamp
    when = datetime.strptime(stamp.split("-")[0], "%Y.%m.%d.%H%M").replace(tzinfo=UTC)
    assert before <= when <= after + timedelta(minutes=1)
