"""Training smoke tests: a few steps of a tiny random BERT through the real training path.

CI never trains the real model; these check the mechanics: artifact round trip (the saved
model reproduces the in-memory model's scores), determinism given the seed, resume after an
interruption, and that thresholds and metrics land in the manifest.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model.classifier import Classifier
from model.config import InferenceConfig, Settings
from train.dataset import load_split, write_jsonl

TORCH = InferenceConfig(backend="torch")  # round trips compare with the in-memory PyTorch network


def _settings(base: Path, out: Path, **train) -> Settings:
    overrides = [
        f"base.encoder={base}", "preprocess.max_length=48", "preprocess.stride=8",
        "train.method=lora", "train.top_layers=1", "train.batch_size=8", "train.max_steps=4",
        "train.checkpoint_every=2", f"train.out_dir={out}", "train.lora_r=4",
    ] + [f"train.{k}={v}" for k, v in train.items()]  # fmt: skip
    return Settings.load(None, overrides)


def test_artifact_round_trip_reproduces_in_memory_scores(tiny_base, small_data, tmp_path):
    from train.finetune import train

    artifact = train(_settings(tiny_base, tmp_path / "run"), data_dir=small_data)
    manifest = json.loads((artifact / "collectguard.json").read_text())
    assert set(manifest["thresholds"]) == {"threat", "insult", "third_party_disclosure"}
    assert manifest["metrics"]["steps"] == 4
    assert manifest["metrics"]["validation"]["all"]["n"] == 40
    in_memory = np.load(tmp_path / "run" / "validation_probs.npy")
    loaded = Classifier.load(artifact, config=TORCH).predict_proba(load_split("validation", small_data))
    np.testing.assert_allclose(loaded, in_memory, atol=1e-6)


def test_training_is_deterministic_given_the_seed(tiny_base, small_data, tmp_path):
    from train.finetune import train

    a = train(_settings(tiny_base, tmp_path / "a"), data_dir=small_data)
    b = train(_settings(tiny_base, tmp_path / "b"), data_dir=small_data)
    c = train(_settings(tiny_base, tmp_path / "c", seed=99), data_dir=small_data)
    sha = [json.loads((x / "collectguard.json").read_text())["weights_sha256"] for x in (a, b, c)]
    assert sha[0] == sha[1]
    assert sha[0] != sha[2]


def test_resume_after_interruption_matches_an_uninterrupted_run(tiny_base, small_data, tmp_path, monkeypatch):
    import train.finetune as ft

    full = ft.train(_settings(tiny_base, tmp_path / "full"), data_dir=small_data)

    real_save = ft._save_checkpoint

    def save_then_crash(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt("simulated kill after the first checkpoint")

    monkeypatch.setattr(ft, "_save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        ft.train(_settings(tiny_base, tmp_path / "resumed"), data_dir=small_data)
    assert (tmp_path / "resumed" / ft.CHECKPOINT).exists()
    monkeypatch.setattr(ft, "_save_checkpoint", real_save)
    resumed = ft.train(_settings(tiny_base, tmp_path / "resumed"), resume=True, data_dir=small_data)
    sha = [json.loads((x / "collectguard.json").read_text())["weights_sha256"] for x in (full, resumed)]
    assert sha[0] == sha[1]


def test_resume_refuses_a_checkpoint_of_another_run(tiny_base, small_data, tmp_path, monkeypatch):
    import train.finetune as ft

    real_save = ft._save_checkpoint

    def save_then_crash(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(ft, "_save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        ft.train(_settings(tiny_base, tmp_path / "r"), data_dir=small_data)
    monkeypatch.setattr(ft, "_save_checkpoint", real_save)
    with pytest.raises(ValueError, match="another run"):
        ft.train(_settings(tiny_base, tmp_path / "r", max_steps=6), resume=True, data_dir=small_data)


@pytest.mark.parametrize("method", ["top", "head", "full"])
def test_every_method_trains_and_round_trips(tiny_base, small_data, tmp_path, method):
    from train.finetune import train

    artifact = train(_settings(tiny_base, tmp_path / method, method=method, max_steps=2), data_dir=small_data)
    in_memory = np.load(tmp_path / method / "validation_probs.npy")
    loaded = Classifier.load(artifact, config=TORCH).predict_proba(load_split("validation", small_data))
    np.testing.assert_allclose(loaded, in_memory, atol=1e-6)


@pytest.mark.parametrize(("method", "top"), [("lora", 1), ("top", 1), ("head", None), ("full", None)])
def test_cached_bottom_plus_top_equals_the_full_forward(tiny_base, method, top):
    """Training on cached frozen-layer states optimises exactly the model that is saved."""
    import torch

    from model.architecture import build_model, encode_bottom, forward_top, frozen_bottom

    model = build_model(str(tiny_base), method, {"top_layers": top}, seed=0).eval()
    n_bottom = frozen_bottom(model, method, top)
    ids = torch.tensor([[0, 5, 6, 7, 2, 2, 100, 200, 300, 2], [0, 5, 6, 2, 2, 9, 2, 1, 1, 1]])
    mask = (ids != 1).long()
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
        split = forward_top(model, encode_bottom(model, ids, mask, n_bottom), mask, n_bottom)
    torch.testing.assert_close(split, full, atol=1e-6, rtol=0)


def _learnable_rows(n: int, seed: int) -> list[dict]:
    """A task a tiny model can learn in a few dozen steps: the label follows a key phrase."""
    import random

    rng = random.Random(seed)
    phrases = [
        (["threat"], ["我就去你单位找你领导", "再不还钱我就去你家"]),
        (["insult"], ["你个老赖", "不要脸的东西"]),
        ([], ["您的账单已经逾期了", "麻烦您转告他回个电话", "您好我是工作人员"]),
    ]
    fillers = ["嗯", "那个", "您好", "今天", "我们这边", "请问", "好的", "喂"]
    rows = []
    for i in range(n):
        labels, options = phrases[i % len(phrases)]
        text = rng.choice(fillers) + rng.choice(options) + rng.choice(fillers)
        rows.append({"id": f"s{seed}-{i}", "text": text, "labels": labels, "speaker": "agent", "listener": "debtor",
                     "source": "test", "group": f"s{seed}-{i}", "notes": ""})  # fmt: skip
    return rows


def test_training_learns_a_learnable_task(tiny_base, tmp_path):
    """Loss falls and held-out accuracy rises: the optimiser really changes the model (from a random head)."""
    import train.finetune as ft
    from model.artifact import Manifest
    from model.labels import VIOLATIONS
    from model.thresholds import apply_thresholds
    from train.evaluate import label_matrix

    data = tmp_path / "data"
    data.mkdir()
    for split, n, seed in (("train", 96, 0), ("validation", 30, 1), ("test", 30, 2)):
        write_jsonl(data / f"{split}.jsonl", _learnable_rows(n, seed))
    settings = _settings(
        tiny_base, tmp_path / "run", method="full", max_steps=80, batch_size=16, linear_probe_init="false",
        learning_rate=0.005, head_learning_rate=0.01, warmup_ratio=0.05, checkpoint_every=1000,
    )  # fmt: skip
    prep = ft.prepare(settings, data_dir=data)
    held_out = load_split("test", data)
    probe = Manifest(name="", version="", method="full", base={}, thresholds=dict.fromkeys(VIOLATIONS, 0.5),
                     max_length=48, stride=8)  # fmt: skip

    def accuracy() -> float:
        probs = Classifier(prep.model, prep.tokenizer, probe).predict_proba(held_out)
        return float((apply_thresholds(probs, probe.thresholds) == label_matrix(held_out)).all(1).mean())

    before = accuracy()
    fitted = ft.fit(settings, prep)
    after = accuracy()
    first, last = np.mean(fitted.losses[:5]), np.mean(fitted.losses[-5:])
    print(f"loss {first:.3f} → {last:.3f}; held-out exact match {before:.2f} → {after:.2f}")
    assert last < 0.5 * first
    assert after >= 0.9 and after > before + 0.3
