"""Which backend a loaded model runs on: PyTorch by default; ONNX Runtime int8 with ``auto`` or ``onnx``.

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
from model.export import MODEL_FILE, default_export_dir, export_onnx
from model.onnx_backend import OnnxRunner
from model.runners import TorchRunner

TEXTS = ["你再不还钱我就去你单位找你领导", "麻烦您转告他给我们回个电话", "嗯", "他在我们这欠了两万三千块，" * 12]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("COLLECTGUARD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


AUTO = InferenceConfig(backend="auto")


def test_default_is_torch():
    assert Settings().inference.backend == "torch"


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
    export_onnx(tiny_classifier.model, tiny_classifier.tokenizer, tiny_classifier.manifest, artifact / "onnx-int8",
                "int8")  # fmt: skip
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
        (["score", "--text", "x"], "torch"),
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


def test_int8_scores_depend_on_batch_companions_only_slightly(tiny_artifact, cache):
    """Dynamic int8 quantises activations per batch, so a text's score moves a little with its
    batch companions (PyTorch: not at all, see test_shipped_model). Bounded here so a change to
    the quantisation that makes it worse is seen."""
    clf = Classifier.load(tiny_artifact)
    together = clf.predict_proba(TEXTS)
    alone = np.concatenate([clf.predict_proba([t]) for t in TEXTS])
    assert np.abs(together - alone).max() < 0.01
