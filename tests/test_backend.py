"""Which backend a loaded model runs on: ONNX Runtime int8 by default (``auto``), PyTorch as fallback or by choice.

Mechanics on the tiny model, with a private export cache (``COLLECTGUARD_CACHE``) so a test never
reuses or touches the user's exports.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from model.classifier import Classifier
from model.config import InferenceConfig, Settings
from model.export import (
    MODEL_FILE,
    _fix_activation_scales,
    _quantize_int8,
    calibration_segments,
    default_export_dir,
    export_onnx,
)
from model.onnx_backend import OnnxRunner
from model.runners import TorchRunner

TEXTS = ["你再不还钱我就去你单位找你领导", "麻烦您转告他给我们回个电话", "嗯", "他在我们这欠了两万三千块，" * 12]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("COLLECTGUARD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


AUTO = InferenceConfig(backend="auto")


def test_default_is_auto_int8_onnx():
    assert Settings().inference.backend == "auto" and Settings().inference.onnx_quantize == "int8"


def test_onnx_threads_spin_unless_told_not_to_and_relabel_workers_never_do(tiny_artifact, cache):
    from serve.batch.engines import worker_settings

    def spinning(clf) -> str:
        return clf.runner.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")

    assert spinning(Classifier.load(tiny_artifact)) == "1"
    assert spinning(Classifier.load(tiny_artifact, config=InferenceConfig(onnx_spin=False))) == "0"
    worker = Settings.model_validate(worker_settings(Settings(), threads=1)).inference
    assert worker.onnx_spin is False and worker.threads == 1
    assert spinning(Classifier.load(tiny_artifact, config=worker)) == "0"


def test_auto_is_int8_onnx_exported_once_into_the_cache_keyed_by_weights(tiny_artifact, cache):
    clf = Classifier.load(tiny_artifact, config=AUTO)
    assert isinstance(clf.runner, OnnxRunner) and clf.backend == "onnx-int8"
    folder = default_export_dir(clf.manifest, "int8")
    assert clf.runner.onnx_path == folder / MODEL_FILE
    assert folder.name == f"{clf.manifest.weights_sha256[:12]}-int8" and folder.parent.parent == cache
    made = (folder / MODEL_FILE).stat().st_mtime_ns
    again = Classifier.load(tiny_artifact, config=AUTO)  # current export: reused, not made again
    assert again.runner.onnx_path == folder / MODEL_FILE and (folder / MODEL_FILE).stat().st_mtime_ns == made
    torch_clf = Classifier.load(tiny_artifact, config=InferenceConfig(backend="torch"))
    assert isinstance(torch_clf.runner, TorchRunner) and torch_clf.backend == "torch"
    np.testing.assert_allclose(clf.predict_proba(TEXTS), torch_clf.predict_proba(TEXTS), atol=0.02)


def test_an_export_shipped_with_the_artifact_is_used_and_nothing_is_exported(tiny_artifact, tiny_classifier, cache,
                                                                             tmp_path):  # fmt: skip
    import shutil

    artifact = shutil.copytree(tiny_artifact, tmp_path / "artifact")
    calibration = calibration_segments(InferenceConfig().int8_calibration, 32)
    export_onnx(tiny_classifier.model, tiny_classifier.tokenizer, tiny_classifier.manifest, artifact / "onnx-int8",
                "int8", calibration=calibration)  # fmt: skip
    clf = Classifier.load(artifact, config=AUTO)
    assert clf.runner.onnx_path == artifact / "onnx-int8" / MODEL_FILE
    assert not cache.exists()  # nothing exported on first use


def test_auto_falls_back_to_torch_with_a_warning_and_onnx_is_strict(tiny_artifact, cache, monkeypatch, caplog):
    import model.onnx_backend

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(model.onnx_backend, "export_onnx", broken)
    with caplog.at_level(logging.WARNING, logger="model.runners"):
        clf = Classifier.load(tiny_artifact, config=AUTO)
    assert clf.backend == "torch"
    assert "ONNX Runtime backend unavailable" in caplog.text and "disk full" in caplog.text
    assert len(clf.score(TEXTS)) == len(TEXTS)
    with pytest.raises(RuntimeError, match="disk full"):
        Classifier.load(tiny_artifact, config=InferenceConfig(backend="onnx"))


def test_backend_flag_config_and_environment():
    from collectguard.cli import build_parser

    parser = build_parser()
    for argv, want in [
        (["score", "--text", "x"], "auto"),
        (["score", "--text", "x", "--backend", "auto"], "auto"),
        (["score", "--text", "x", "--backend", "torch"], "torch"),
        (["relabel", "in", "--out", "o", "--set", "inference.backend=onnx"], "onnx"),
        (["serve", "--set", "inference.backend=onnx", "--backend", "torch"], "torch"),  # the flag wins
        (["evaluate", "--data", "d.jsonl", "--backend", "onnx"], "onnx"),
    ]:
        assert Settings.from_args(parser.parse_args(argv)).inference.backend == want, argv
    with pytest.raises(SystemExit):
        parser.parse_args(["score", "--backend", "tensorrt"])
    with pytest.raises(ValueError, match="backend"):
        Settings.load(overrides=["inference.backend=cuda"])


def test_score_command_runs_the_chosen_backend(tiny_artifact, cache, capsys, caplog):
    from collectguard.cli import main

    outputs = {}
    for backend in ("torch", "auto"):
        argv = ["score", "--text", TEXTS[0], "--text", TEXTS[3], "--json", "--model", str(tiny_artifact)]
        assert main([*argv, "--backend", backend]) == 0
        outputs[backend] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (cache / "onnx").is_dir()  # auto exported on first use; torch did not need to
    for a, b in zip(outputs["torch"]["results"], outputs["auto"]["results"], strict=True):
        assert a["scores"]["threat"] == pytest.approx(b["scores"]["threat"], abs=0.02)


def test_int8_scores_do_not_depend_on_batch_companions(tiny_artifact, cache):
    """A segment's int8 scores are the same alone or beside others — in the API, other clients'
    requests. Fixed (calibrated) activation scales make it so; the dynamic per-batch scales that
    onnxruntime's quantiser leaves do not, which is checked too, so this test can fail."""
    clf = Classifier.load(tiny_artifact)
    assert clf.backend == "onnx-int8"
    long_batch = [*TEXTS, "你他妈的" * 40]  # a companion with a wide activation range
    together = clf.predict_proba(long_batch)[: len(TEXTS)]
    alone = np.concatenate([clf.predict_proba([t]) for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-6, rtol=0)
    # the same graph before its scales are fixed: scores move with the batch
    import onnx

    dynamic = cache / "dynamic.onnx"
    assert not [n for n in onnx.load(str(clf.runner.onnx_path)).graph.node if n.op_type == "DynamicQuantizeLinear"]
    torch_clf = Classifier.load(tiny_artifact, config=InferenceConfig(backend="torch"))
    from model.export import _calibration_batches, _fuse, _probe_batches, _trace_to_onnx

    probe = _probe_batches(torch_clf.model, torch_clf.tokenizer, torch_clf.manifest.max_length)[0]
    _trace_to_onnx(torch_clf.model, probe, cache / "raw.onnx")
    _fuse(cache / "raw.onnx", cache / "fused.onnx", torch_clf.model.config)
    _quantize_int8(cache / "fused.onnx", dynamic)
    torch_clf.runner = OnnxRunner(dynamic)
    moved = np.abs(torch_clf.predict_proba(long_batch)[: len(TEXTS)] - np.concatenate(
        [torch_clf.predict_proba([t]) for t in TEXTS])).max()  # fmt: skip
    assert moved > 1e-4, moved
    batches = _calibration_batches(torch_clf.tokenizer, torch_clf.manifest, calibration_segments(
        InferenceConfig().int8_calibration, 32))  # fmt: skip
    assert _fix_activation_scales(dynamic, batches) > 0
    torch_clf.runner = OnnxRunner(dynamic)
    fixed = torch_clf.predict_proba(long_batch)[: len(TEXTS)]
    np.testing.assert_allclose(fixed, np.concatenate([torch_clf.predict_proba([t]) for t in TEXTS]), atol=1e-6)


def test_int8_needs_calibration_data_and_says_where_it_looked(tiny_artifact, tiny_classifier, cache, tmp_path,
                                                              caplog):  # fmt: skip
    missing = tmp_path / "nowhere.jsonl"
    with pytest.raises(FileNotFoundError, match=r"nowhere\.jsonl.*inference\.int8_calibration"):
        Classifier.load(tiny_artifact, config=InferenceConfig(backend="onnx", int8_calibration=missing))
    with caplog.at_level(logging.WARNING, logger="model.runners"):
        clf = Classifier.load(tiny_artifact, config=InferenceConfig(int8_calibration=missing))
    assert clf.backend == "torch" and "nowhere.jsonl" in caplog.text  # auto: falls back, says why
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "您好"}\n{"speaker": "agent"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        calibration_segments(bad, 10)
    with pytest.raises(ValueError, match="calibration segments"):
        export_onnx(tiny_classifier.model, tiny_classifier.tokenizer, tiny_classifier.manifest, tmp_path / "x", "int8")
