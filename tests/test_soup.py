"""train.soup: averaging LoRA runs (or students of one teacher) gives exactly the mean of their
merged weights, and refuses runs that cannot be averaged (other method, LoRA rank, vocabulary,
teacher), naming the setting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model.architecture import base_fingerprint, build_model, load_tokenizer
from model.artifact import KEPT_IDS, MANIFEST, Manifest, load_artifact, save_artifact
from model.labels import VIOLATIONS
from train.soup import soup


def lora_artifact(out: Path, base: Path, seed: int, lora_r: int = 4) -> Path:
    """A tiny LoRA artifact with random (non-zero) adapters, so its update is not zero."""
    train = {"lora_r": lora_r, "lora_alpha": 2 * lora_r, "seed": seed}
    model = build_model(str(base), "lora", train, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    manifest = Manifest(name="tiny-lora", version=f"0.0.0-lora-s{seed}", method="lora",
                        base=base_fingerprint(str(base), None), thresholds=dict.fromkeys(VIOLATIONS, 0.5),
                        max_length=32, stride=8, train=train)  # fmt: skip
    return save_artifact(out, model, load_tokenizer(base), manifest, keep=None)


def merged(path: Path) -> dict[str, torch.Tensor]:
    model, _, _ = load_artifact(path)  # loading merges LoRA into the base weights
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_soup_is_the_mean_of_the_merged_runs(tmp_path, tiny_base):
    a = lora_artifact(tmp_path / "a", tiny_base, seed=1)
    b = lora_artifact(tmp_path / "b", tiny_base, seed=2)
    out = soup([a, b], tmp_path / "soup")
    wa, wb, ws = merged(a), merged(b), merged(out)
    assert set(ws) == set(wa)
    moved = 0
    for key in ws:
        torch.testing.assert_close(ws[key], (wa[key] + wb[key]) / 2, atol=1e-5, rtol=1e-4)
        moved += not torch.allclose(wa[key], wb[key])
    assert moved > 0  # the two runs really differ, so the check above is not trivial
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["train"]["lora_r"] == 8 and manifest["train"]["lora_alpha"] == 16
    assert [r["seed"] for r in manifest["train"]["soup_of"]] == [1, 2]


def test_soup_refuses_runs_that_cannot_be_averaged(tmp_path, tiny_base, tiny_artifact):
    a = lora_artifact(tmp_path / "a", tiny_base, seed=1)
    with pytest.raises(ValueError, match="lora_r"):
        soup([a, lora_artifact(tmp_path / "r8", tiny_base, seed=2, lora_r=8)], tmp_path / "x")
    with pytest.raises(ValueError, match="method"):
        soup([tiny_artifact, a], tmp_path / "y")
    other = lora_artifact(tmp_path / "v", tiny_base, seed=3)
    np.save(other / KEPT_IDS, np.arange(10, dtype=np.int32))
    with pytest.raises(ValueError, match="vocabulary"):
        soup([a, other], tmp_path / "z")
    with pytest.raises(ValueError, match="two runs"):
        soup([a], tmp_path / "w")


def test_soup_takes_the_widest_vocabulary_that_contains_the_others(tmp_path, tiny_base):
    """Runs on different data keep different rare characters: a nested vocabulary is shared, a crossing one refused."""
    a = lora_artifact(tmp_path / "a", tiny_base, seed=1)
    b = lora_artifact(tmp_path / "b", tiny_base, seed=2)
    np.save(a / KEPT_IDS, np.arange(20, dtype=np.int32))
    np.save(b / KEPT_IDS, np.arange(30, dtype=np.int32))
    out = soup([a, b], tmp_path / "soup")
    np.testing.assert_array_equal(np.load(out / KEPT_IDS), np.arange(30))
    np.save(b / KEPT_IDS, np.arange(5, 30, dtype=np.int32))
    with pytest.raises(ValueError, match="not contained"):
        soup([a, b], tmp_path / "crossing")


def student_artifact(out: Path, base: Path, seed: int, teacher_sha: str = "t" * 64) -> Path:
    """A tiny distilled student (method ``top``, layers 1 and 3 of a 4-layer base) with random trained weights."""
    train = {"method": "top", "layers": [1, 3], "top_layers": 2, "weights_dtype": "float16", "seed": seed,
             "distilled_from": {"name": "tiny-teacher", "version": "0.0.0", "weights_sha256": teacher_sha}}  # fmt: skip
    model = build_model(str(base), "top", train, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".encoder." in name or name.startswith("classifier."):
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    manifest = Manifest(name="tiny-student", version=f"0.0.0-student2-s{seed}", method="top",
                        base=base_fingerprint(str(base), None), thresholds=dict.fromkeys(VIOLATIONS, 0.5),
                        max_length=32, stride=8, train=train)  # fmt: skip
    return save_artifact(out, model, load_tokenizer(base), manifest, keep=None)


def test_soup_of_students_is_the_mean_of_their_weights(tmp_path, base4):
    """Students of one teacher start from the same layers, so their tensors are averaged directly."""
    a = student_artifact(tmp_path / "a", base4, seed=1)
    b = student_artifact(tmp_path / "b", base4, seed=2)
    out = soup([a, b], tmp_path / "soup")
    wa, wb, ws = merged(a), merged(b), merged(out)
    moved = 0
    for key in ws:  # float16 storage: the mean of two float16 tensors, rounded once more
        torch.testing.assert_close(ws[key], (wa[key] + wb[key]) / 2, atol=2e-3, rtol=2e-3)
        moved += not torch.allclose(wa[key], wb[key])
    assert moved > 0
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["method"] == "top" and manifest["train"]["layers"] == [1, 3]
    assert "lora_r" not in manifest["train"] and manifest["version"] == "0.0.0-student2-soup2"
    assert [r["seed"] for r in manifest["train"]["soup_of"]] == [1, 2]


def test_students_of_different_teachers_are_refused(tmp_path, base4):
    a = student_artifact(tmp_path / "a", base4, seed=1)
    b = student_artifact(tmp_path / "b", base4, seed=2, teacher_sha="u" * 64)
    with pytest.raises(ValueError, match="distilled_from"):
        soup([a, b], tmp_path / "x")
