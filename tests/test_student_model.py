"""The shipped distilled student (model/student): that it learned from the shipped default, fits
the size budget, loads by name, and keeps its measured quality on the test split (its int8 parity
is in tests/test_onnx.py)."""

from __future__ import annotations

import json

import pytest

from model.classifier import Classifier
from model.config import REPO_ROOT, SHIPPED_MODEL_DIR
from train.dataset import load_split
from train.evaluate import evaluate_rows

pytestmark = pytest.mark.slow
STUDENT = REPO_ROOT / "model" / "student"


@pytest.fixture(scope="module")
def student() -> Classifier:
    return Classifier.load("student")  # the default backend, as users get it


def test_student_learned_from_the_shipped_default_and_fits_the_budget():
    # Round 15: the student is distilled from the shipped default itself (its exact weights), so a
    # new default without a new student fails here instead of shipping a stale pair.
    manifest = json.loads((STUDENT / "collectguard.json").read_text(encoding="utf-8"))
    default = json.loads((SHIPPED_MODEL_DIR / "collectguard.json").read_text(encoding="utf-8"))
    teacher = manifest["train"]["distilled_from"]
    assert (teacher["name"], teacher["version"]) == (default["name"], default["version"])
    assert teacher["weights_sha256"] == default["weights_sha256"]
    assert manifest["base"] == default["base"]
    assert len(manifest["train"]["layers"]) <= 6
    assert manifest["metrics"]["pool_rows"] >= 100_000
    assert sum(f.stat().st_size for f in STUDENT.iterdir() if f.is_file()) <= 25 * 1024 * 1024


def test_student_has_half_the_layers(student):
    assert student.model.config.num_hidden_layers == 6 == len(student.model.base_model.encoder.layer)
    assert student.model.config.num_hidden_layers * 2 == Classifier.load().model.config.num_hidden_layers


def test_student_quality_on_the_written_test_split(student):
    report, _ = evaluate_rows(student, load_split("test", written_only=True))
    assert report["macro_f1"] >= 0.89
    assert report["compliant_false_positive_rate"] <= 0.05


def test_every_command_takes_the_student_by_name(capsys, tmp_path, monkeypatch):
    from collectguard.cli import main

    monkeypatch.chdir(tmp_path)  # the name works from any folder
    assert main(["score", "--text", "你个老赖", "--model", "student", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"]["name"] == "collectguard-student"
