"""ONNX export and backend: mechanics on the tiny artifact, accuracy parity on the shipped model.

The tiny model checks that export reproduces PyTorch and that the ONNX runner keeps the torch
runner's contract; only the shipped model can show that int8 keeps the decisions that matter.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model.config import SHIPPED_MODEL_DIR, InferenceConfig
from model.export import (
    META_FILE,
    MODEL_FILE,
    calibration_segments,
    default_export_dir,
    export_onnx,
    make_session,
    stale_reason,
)
from model.onnx_backend import OnnxRunner
from model.runners import TorchRunner

SEGMENTS = [
    "您好，我是瑞丰消费金融的工作人员，您的账单已经逾期了。",
    {"text": "你再不还钱我就去你单位找你领导", "speaker": "agent", "listener": "debtor"},
    {"text": "麻烦您转告他给我们回个电话", "speaker": "agent", "listener": "third_party"},
    "嗯",
    "他在我们这欠了两万三千块，" * 12,  # several windows at max_length 32
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A private export cache, so tests never touch (or reuse) the user's."""
    return tmp_path_factory.mktemp("cg_cache")


@pytest.fixture(scope="module")
def exports(tiny_classifier, tmp_path_factory) -> dict[str | None, Path]:
    out = tmp_path_factory.mktemp("onnx")
    parts = (tiny_classifier.model, tiny_classifier.tokenizer, tiny_classifier.manifest)
    calibration = calibration_segments(InferenceConfig().int8_calibration, 64)
    return {q: export_onnx(*parts, out / str(q), q, calibration=calibration) for q in (None, "int8")}


def _batches(clf) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    vocab = len(clf.tokenizer)
    out = []
    for n, length in [(1, 5), (3, 17), (8, 32)]:
        ids = rng.integers(4, vocab, size=(n, length), dtype=np.int64)
        mask = np.ones_like(ids)
        mask[0, length // 2 :] = 0  # padding must be masked the same way
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


def test_fp32_export_matches_torch(tiny_classifier, exports):
    sess = make_session(exports[None])
    for batch in _batches(tiny_classifier):
        got = sess.run(["logits"], batch)[0]
        np.testing.assert_allclose(got, TorchRunner(tiny_classifier.model)(batch), atol=1e-4, rtol=0)


def test_int8_export_is_close_and_smaller(tiny_classifier, exports):
    sess = make_session(exports["int8"])
    for batch in _batches(tiny_classifier):
        got = sess.run(["logits"], batch)[0]
        np.testing.assert_allclose(got, TorchRunner(tiny_classifier.model)(batch), atol=0.05, rtol=0)
    meta = json.loads((exports["int8"].parent / META_FILE).read_text())
    assert meta["quantize"] == "int8" and meta["weights_sha256"] == tiny_classifier.manifest.weights_sha256
    assert meta["preprocess_version"] == tiny_classifier.preprocess_version


def test_export_leaves_torch_model_in_eval_mode(tiny_classifier, exports):
    # the exporter restores its wrapper's mode; a training-mode wrapper would enable dropout
    assert not tiny_classifier.model.training


def test_runner_contract_and_scores(tiny_artifact, tiny_classifier, cache, monkeypatch):
    from model.classifier import Classifier

    monkeypatch.setenv("COLLECTGUARD_CACHE", str(cache))
    clf = Classifier.load(tiny_artifact, config=InferenceConfig(backend="onnx", onnx_quantize="none"))
    batch = _batches(clf)[1]
    assert isinstance(clf.runner, OnnxRunner) and clf.runner.onnx_path.exists()
    logits = clf.runner(batch)
    assert logits.dtype == np.float32 and logits.shape == (3, 3)
    # same preprocessing, windows and thresholds: only the network call differs
    np.testing.assert_allclose(clf.predict_proba(SEGMENTS), tiny_classifier.predict_proba(SEGMENTS), atol=1e-5)
    assert [r["labels"] for r in clf.score(SEGMENTS)] == [r["labels"] for r in tiny_classifier.score(SEGMENTS)]
    assert stale_reason(default_export_dir(clf.manifest, None), clf.manifest, None) is None  # exported on first use

    int8 = Classifier.load(tiny_artifact, config=InferenceConfig(backend="onnx"))  # int8 is the default
    assert (default_export_dir(clf.manifest, "int8") / MODEL_FILE).exists()
    np.testing.assert_allclose(int8.predict_proba(SEGMENTS), tiny_classifier.predict_proba(SEGMENTS), atol=0.02)


def test_stale_export_is_detected_and_replaced(tiny_artifact, tiny_classifier, cache, monkeypatch):
    from model.classifier import Classifier

    monkeypatch.setenv("COLLECTGUARD_CACHE", str(cache))
    folder = default_export_dir(tiny_classifier.manifest, None)
    if stale_reason(folder, tiny_classifier.manifest, None):
        export_onnx(tiny_classifier.model, tiny_classifier.tokenizer, tiny_classifier.manifest, folder, None)
    meta_file = folder / META_FILE
    meta = json.loads(meta_file.read_text())
    assert stale_reason(folder, tiny_classifier.manifest, "int8") is not None  # other quantisation
    for key, value in [("weights_sha256", "0" * 64), ("preprocess_version", "cg-pp-0")]:
        meta_file.write_text(json.dumps({**meta, key: value}))
        assert key in (stale_reason(folder, tiny_classifier.manifest, None) or "")
    (folder / MODEL_FILE).unlink()
    meta_file.write_text(json.dumps(meta))
    assert "missing" in stale_reason(folder, tiny_classifier.manifest, None)
    # the backend re-exports instead of using the stale folder
    meta_file.write_text(json.dumps({**meta, "weights_sha256": "0" * 64}))
    Classifier.load(tiny_artifact, config=InferenceConfig(backend="onnx", onnx_quantize="none"))
    assert stale_reason(folder, tiny_classifier.manifest, None) is None


def test_cli_export_writes_files(tiny_artifact, tmp_path, capsys):
    from collectguard.cli import main

    out = tmp_path / "export"
    argv = ["export", "--format", "onnx", "--quantize", "int8", "--out", str(out), "--model", str(tiny_artifact)]
    assert main(argv) == 0
    assert (out / MODEL_FILE).stat().st_size > 0
    meta = json.loads((out / META_FILE).read_text())
    assert meta["quantize"] == "int8"
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["onnx"] == str(out / MODEL_FILE)


def decisions(clf, rows) -> np.ndarray:
    """Per-label decisions (rows × labels, bool) of a classifier at its own thresholds."""
    from model.thresholds import apply_thresholds

    return np.asarray(apply_thresholds(clf.predict_proba(rows), clf.thresholds), dtype=bool)


def default_vs_torch(model_dir, rows) -> tuple[float, object, object]:
    """Share of per-label decisions on which the default backend and PyTorch agree."""
    from model.classifier import Classifier

    default = Classifier.load(model_dir)  # the default: int8 ONNX
    torch_clf = Classifier.load(model_dir, config=InferenceConfig(backend="torch"))
    return float((decisions(default, rows) == decisions(torch_clf, rows)).mean()), default, torch_clf


def test_default_backend_agrees_with_torch_on_the_test_split_tiny(tiny_artifact, cache, monkeypatch):
    """The mechanics of the shipped-model check below, on the tiny model: the default is int8 ONNX,
    it is compared with PyTorch on every row and label of the test split, and they agree."""
    from train.dataset import load_split

    monkeypatch.setenv("COLLECTGUARD_CACHE", str(cache))
    rows = load_split("test")
    agree, default, torch_clf = default_vs_torch(tiny_artifact, rows)
    assert (default.backend, torch_clf.backend) == ("onnx-int8", "torch")
    on = decisions(torch_clf, rows)
    assert on.shape == (len(rows), 3) and 0 < on.mean() < 1  # some decisions each way: not a vacuous check
    assert agree >= 0.99, agree


@pytest.mark.slow
@pytest.mark.skipif(
    not (SHIPPED_MODEL_DIR / "collectguard.json").exists(),
    reason=f"no shipped model yet ({SHIPPED_MODEL_DIR}/collectguard.json); int8 parity needs the real weights",
)
@pytest.mark.parametrize("model", [None, "student"], ids=["default", "student"])
def test_shipped_default_backend_keeps_decisions_and_macro_f1(model, tmp_path_factory, monkeypatch):
    """The default (int8 ONNX) vs PyTorch on the test split: ≥ 99 % of per-label decisions agree, macro-F1 drops ≤ 0.01
    — for the shipped default model and the shipped distilled student."""
    from train.dataset import load_split
    from train.evaluate import evaluate_rows

    monkeypatch.setenv("COLLECTGUARD_CACHE", str(tmp_path_factory.mktemp("shipped_cache")))  # a fresh export
    rows = load_split("test")
    agree, default, torch_clf = default_vs_torch(model, rows)
    assert default.backend == "onnx-int8"
    ref_metrics, _ = evaluate_rows(torch_clf, rows)
    q_metrics, _ = evaluate_rows(default, rows)
    print(f"int8 vs torch: decisions agree {agree:.4f}, macro-F1 {ref_metrics['macro_f1']} → {q_metrics['macro_f1']}")
    assert agree >= 0.99
    assert q_metrics["macro_f1"] >= ref_metrics["macro_f1"] - 0.01
