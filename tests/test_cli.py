"""The `collectguard` command line: argument handling and `preprocess` output."""

from __future__ import annotations

import json

import pytest

from collectguard.cli import build_parser, main, parse_thresholds, read_corpus_texts
from model.preprocess import PREPROCESS_VERSION, normalize

RAW = "嗯嗯嗯 那个那个 你兒子的ＡＢＣ學校 我們 知道 在哪"


def run_preprocess(capsys, *args):
    rc = main(["preprocess", *args])
    out = capsys.readouterr()
    return rc, out


def test_preprocess_prints_context_and_normalised_text(capsys, tiny_artifact):
    rc, out = run_preprocess(
        capsys, RAW, "--speaker", "customer", "--listener", "third_party", "--model", str(tiny_artifact)
    )
    assert rc == 0, out.err
    data = json.loads(out.out)
    assert data["preprocess_version"] == PREPROCESS_VERSION
    assert data["tokenizer"] == str(tiny_artifact)
    [window] = data["windows"]
    assert window["context"] == "客户对第三方"
    assert window["text"] == normalize(RAW) == "嗯那个你儿子的abc学校我们知道在哪"
    assert window["span"] == [0, len(window["text"])]
    tokens = window["tokens"]
    assert tokens[0] == "<s>" and tokens[-1] == "</s>" and tokens.count("</s>") == 3
    assert "".join(t for t in tokens if not t.startswith("<")).replace("▁", "") == "客户对第三方" + window["text"]
    assert window["unknown_pieces"] == 0


def test_preprocess_defaults_and_windows(capsys, tiny_artifact):
    rc, out = run_preprocess(
        capsys, "你好" * 200, "--model", str(tiny_artifact),
        "--set", "preprocess.max_length=32", "--set", "preprocess.stride=8",
    )  # fmt: skip
    assert rc == 0, out.err
    windows = json.loads(out.out)["windows"]
    assert len(windows) > 1
    assert {w["context"] for w in windows} == {"坐席对象未知"}
    assert all(len(w["tokens"]) <= 32 for w in windows)
    assert windows[0]["span"][0] == 0 and windows[-1]["span"][1] == 400


def test_preprocess_with_model_uses_the_models_windowing(capsys, tiny_artifact):
    from model.architecture import load_tokenizer
    from model.artifact import read_manifest
    from model.preprocess import Segment, make_windows

    manifest = read_manifest(tiny_artifact)
    assert (manifest.max_length, manifest.stride) == (32, 8)
    text = "你好" * 200
    expected = make_windows(load_tokenizer(tiny_artifact), [Segment(text)], manifest.max_length, manifest.stride)
    rc, out = run_preprocess(capsys, text, "--model", str(tiny_artifact))
    assert rc == 0, out.err
    assert [w["span"] for w in json.loads(out.out)["windows"]] == [[w.start, w.end] for w in expected]


def test_preprocess_empty_text_is_a_clean_error(capsys, tiny_artifact):
    rc, out = run_preprocess(capsys, "   ", "--model", str(tiny_artifact))
    assert rc == 2
    assert "collectguard preprocess: error:" in out.err and "empty" in out.err
    assert out.out == ""


@pytest.mark.parametrize("args", [["x", "--speaker", "boss"], ["x", "--listener", "neighbour"], []])
def test_preprocess_rejects_bad_arguments(capsys, args):
    with pytest.raises(SystemExit) as e:
        main(["preprocess", *args])
    assert e.value.code == 2
    assert "usage" in capsys.readouterr().err


def test_parser_knows_every_job():
    parser = build_parser()
    for argv in (
        ["base", "build"],
        ["preprocess", "x"],
        ["data", "build"],
        ["train"],
        ["evaluate", "--data", "d.jsonl"],
        ["score", "--text", "x"],
        ["serve"],
        ["relabel", "a.jsonl", "--out", "o"],
        ["export"],
    ):
        assert parser.parse_args(argv).run


def test_parse_thresholds():
    assert parse_thresholds(["threat=0.3", "insult=1"]) == {"threat": 0.3, "insult": 1.0}
    with pytest.raises(SystemExit, match="LABEL=VALUE"):
        parse_thresholds(["threat"])
    with pytest.raises(SystemExit, match="not a number"):
        parse_thresholds(["threat=high"])


def test_read_corpus_texts(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "你好"}\n\nnot json\n{"x": 1}\n{"text": "还钱"}\n', encoding="utf-8")
    (tmp_path / "b.txt").write_text("第一行\n\n第二行\n", encoding="utf-8")
    assert read_corpus_texts(tmp_path) == ["你好", "还钱", "第一行", "第二行"]
    assert read_corpus_texts(tmp_path / "b.txt") == ["第一行", "第二行"]
