"""``collectguard relabel``: readers, error records, outputs, resume after a kill, engines.

Real files are written and read back. Runs in-process reuse the session's tiny classifier (the
load is patched) to keep the file fast; the kill test and the Ray test load the tiny artifact
from disk in other processes, as a user's run would.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collectguard.cli import main
from model.preprocess import PREPROCESS_VERSION
from serve.batch.chunks import SCORE_COLUMNS, score_chunk
from serve.batch.readers import ReadError, read_inputs, stem_of
from serve.summary import summarize_call

TEXTS = [
    "您好，我是瑞丰消费金融的工作人员，您的账单已经逾期了。",
    "你再不还钱我就去你单位找你领导",
    "麻烦您转告他给我们回个电话",
    "你个老赖，不要脸",
    "他在我们这欠了两万三千块",
]
SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"


def make_calls(n: int, prefix: str = "c") -> list[dict]:
    """``n`` calls of 1–4 segments with varied speakers, listeners and times."""
    calls = []
    for i in range(n):
        segs = []
        for j in range(1 + i % 4):
            segs.append(
                {
                    "start": float(j * 3),
                    "end": float(j * 3 + 2.5),
                    "speaker": ["坐席", "客户", "agent", "催收员"][(i + j) % 4],
                    "listener": ["debtor", "third_party", "unknown"][(i + j) % 3],
                    "text": TEXTS[(i * 3 + j) % len(TEXTS)] + ("。" * (j % 2)),
                }
            )
        calls.append({"call_id": f"{prefix}{i:04d}", "segments": segs, "campaign": f"camp-{i % 3}"})
    return calls


def with_metadata(calls: list[dict]) -> list[dict]:
    """Call metadata on most calls (for contacts.jsonl and the call checks), none on every fifth."""
    out = []
    for i, call in enumerate(calls):
        call = dict(call)
        if i % 5:
            call["started_at"] = f"2026-03-{1 + i % 3:02d}T{(7 + 5 * i) % 24:02d}:15:00" + ("+08:00" if i % 2 else "")
            call["debtor_id"] = f"D{i % 4}"
            call["callee"] = {"id": f"p{i % 6}", "role": ["debtor", "third_party", "unknown"][i % 3]}
        out.append(call)
    return out


def write_jsonl(path: Path, calls: list[dict], gz: bool = False) -> Path:
    data = "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in calls).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def table_rows(calls: list[dict]) -> list[dict]:
    return [{"call_id": c["call_id"], **s} for c in calls for s in c["segments"]]


def write_csv(path: Path, calls: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, ["call_id", "start", "end", "speaker", "listener", "text"])
        w.writeheader()
        w.writerows(table_rows(calls))
    return path


def write_parquet(path: Path, calls: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(table_rows(calls)), path)
    return path


def _ts(t: float, sep: str) -> str:
    return f"00:{int(t) // 60:02d}:{int(t) % 60:02d}{sep}{round((t % 1) * 1000):03d}"


def write_srt(path: Path, segments: list[dict]) -> Path:
    cues = [
        f"{i}\n{_ts(s['start'], ',')} --> {_ts(s['end'], ',')}\n{s['speaker']}：{s['text']}\n"
        for i, s in enumerate(segments, 1)
    ]
    path.write_text("\n".join(cues), encoding="utf-8")
    return path


def write_vtt(path: Path, segments: list[dict]) -> Path:
    cues = [f"{_ts(s['start'], '.')} --> {_ts(s['end'], '.')}\n<v {s['speaker']}>{s['text']}</v>\n" for s in segments]
    path.write_text("WEBVTT\n\n" + "\n".join(cues), encoding="utf-8")
    return path


def relabel(*argv: str | Path) -> int:
    return main(["relabel", *map(str, argv)])


@pytest.fixture
def fast_load(monkeypatch, tiny_classifier):
    """In-process runs reuse the session's tiny classifier instead of loading it again."""
    import torch

    from model.classifier import Classifier

    monkeypatch.setattr(Classifier, "load", classmethod(lambda cls, *a, **k: tiny_classifier))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model gains nothing from threads, and CI cores may be busy
    yield
    torch.set_num_threads(threads)


def read_out(out: Path) -> tuple[list[dict], list[dict], list[dict]]:
    segs = pq.read_table(out / "segments.parquet").to_pylist()
    calls = [json.loads(x) for x in (out / "calls.jsonl").read_text(encoding="utf-8").splitlines()]
    errors = [json.loads(x) for x in (out / "errors.jsonl").read_text(encoding="utf-8").splitlines()]
    return segs, calls, errors


def assert_same_rows(a: list[dict], b: list[dict], atol: float = 0.0) -> None:
    """Equal row by row; score columns within ``atol`` (other processes may use other thread counts)."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for key in x:
            if key in SCORE_COLUMNS:
                assert abs(x[key] - y[key]) <= atol, (key, x, y)
            else:
                assert x[key] == y[key], (key, x, y)


# -- readers -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.gz", "csv", "parquet", "srt", "vtt"])
def test_each_format_reads_back(tmp_path, fmt):
    calls = make_calls(3)
    if fmt in ("srt", "vtt"):
        writer = write_srt if fmt == "srt" else write_vtt
        path = writer(tmp_path / f"call-7.{fmt}", calls[2]["segments"])
        expected = [{"call_id": "call-7", "segments": calls[2]["segments"]}]
    elif fmt == "jsonl.gz":
        path, expected = write_jsonl(tmp_path / "calls.jsonl.gz", calls, gz=True), calls
    else:
        path = {"jsonl": write_jsonl, "csv": write_csv, "parquet": write_parquet}[fmt](tmp_path / f"t.{fmt}", calls)
        expected = calls
    items = list(read_inputs([path]))
    assert not [x for x in items if isinstance(x, ReadError)]
    assert [c["call_id"] for c in items] == [c["call_id"] for c in expected]
    for got, want in zip(items, expected, strict=True):
        assert got["source"] == str(path)
        assert [s["text"] for s in got["segments"]] == [s["text"] for s in want["segments"]]
        assert [(s["start"], s["end"]) for s in got["segments"]] == [(s["start"], s["end"]) for s in want["segments"]]
        mapped = ["customer" if s["speaker"] == "客户" else "agent" for s in want["segments"]]
        assert [s["speaker"] for s in got["segments"]] == mapped
        if fmt in ("srt", "vtt"):
            assert {s["listener"] for s in got["segments"]} == {"unknown"}
        else:
            assert [s["listener"] for s in got["segments"]] == [s["listener"] for s in want["segments"]]
        if fmt.startswith("jsonl"):
            assert got["metadata"] == {"campaign": want["campaign"]}


def test_gzip_is_detected_by_magic_bytes_and_subtitle_stems(tmp_path):
    disguised = write_jsonl(tmp_path / "calls.jsonl", make_calls(2), gz=True)  # gzip data, no .gz suffix
    nameless = tmp_path / "archive.bin"
    nameless.write_bytes(gzip.compress((SAMPLES / "call_vtt_001.vtt").read_bytes()))  # sniffed: WEBVTT
    items = list(read_inputs([disguised, nameless]))
    assert [c["call_id"] for c in items] == ["c0000", "c0001", "archive.bin"]
    assert stem_of(Path("x/call_17.srt.gz")) == "call_17"


def test_subtitle_speakers_prefixes_voices_and_multiline_cues(tmp_path):
    srt = tmp_path / "a.srt"
    srt.write_text(
        "1\n00:00:01,000 --> 00:00:02,500\n注意：这是坐席说的话\n\n"  # 注意 is not a speaker: text kept whole
        "2\n00:00:03,000 --> 00:00:04,000\n客户:我没钱\n坐席:那您什么时候有？\n",
        encoding="utf-8",
    )
    vtt = tmp_path / "b.vtt"
    vtt.write_text(
        "WEBVTT\n\nNOTE a note\n\nid-1\n00:01.000 --> 00:02.000 align:start\n<v.loud 客户>你们别打了 &amp; 烦</v>\n\n"
        "00:00:03.000 --> 00:00:04.000\n没有标签的一句\n",
        encoding="utf-8",
    )
    (a,) = read_inputs([srt])
    assert [(s["speaker"], s["text"], s["start"]) for s in a["segments"]] == [
        ("agent", "注意：这是坐席说的话", 1.0),
        ("customer", "我没钱", 3.0),
        ("agent", "那您什么时候有？", 3.0),
    ]
    (b,) = read_inputs([vtt])
    assert [(s["speaker"], s["text"]) for s in b["segments"]] == [
        ("customer", "你们别打了 & 烦"),
        ("agent", "没有标签的一句"),
    ]


# -- end to end -------------------------------------------------------------------------------------
def test_mixed_directory_outputs(tmp_path, fast_load, tiny_artifact, tiny_classifier):
    calls = make_calls(9)
    inp = tmp_path / "in"
    (inp / "sub").mkdir(parents=True)
    write_jsonl(inp / "a.jsonl", calls[:3])
    write_csv(inp / "sub" / "b.csv", calls[3:5])
    write_parquet(inp / "sub" / "c.parquet", calls[5:7])
    write_srt(inp / "d.srt", calls[7]["segments"])
    write_vtt(inp / "sub" / "e.vtt.gz", calls[8]["segments"])
    (inp / "sub" / "e.vtt.gz").write_bytes(gzip.compress((inp / "sub" / "e.vtt.gz").read_bytes()))
    out = tmp_path / "out"
    assert relabel(inp, "--out", out, "--model", tiny_artifact, "--set", "relabel.chunk_calls=4") == 0
    segs, rows, errors = read_out(out)
    assert errors == []
    # Files in sorted path order: a.jsonl, d.srt, sub/b.csv, sub/c.parquet, sub/e.vtt.gz.
    ids = [c["call_id"] for c in (*calls[:3], {"call_id": "d"}, *calls[3:7], {"call_id": "e"})]
    assert [r["call_id"] for r in rows] == ids
    assert list(pq.read_schema(out / "segments.parquet").names) == [
        "call_id", "segment", "start", "end", "speaker", "listener", "text", "speaker_tag", "source", "position",
        *SCORE_COLUMNS, "labels", "label", "evidence", "model_version", "preprocess_version",
    ]  # fmt: skip
    # Every row says where it came from: the file and its line / row / cue.
    assert all(s["source"] and s["position"] for s in segs)
    assert {s["position"].split()[0] for s in segs} == {"line", "row", "cue"}
    assert {s["position"] for s in segs if s["call_id"] == "c0001"} == {"line 2 segments[0]", "line 2 segments[1]"}
    assert len(segs) == sum(len(c["segments"]) for c in calls)
    assert {s["model_version"] for s in segs} == {tiny_classifier.version}
    # Every call row is summarize_call over its own segment rows, plus call_id and metadata.
    by_call: dict[str, list[dict]] = {}
    for s in segs:
        by_call.setdefault(s["call_id"], []).append(s)
    for row in rows:
        seg_rows = by_call[row["call_id"]]
        assert [s["segment"] for s in seg_rows] == list(range(len(seg_rows)))
        results = [
            {"labels": s["labels"], "scores": {c[len("score_") :]: s[c] for c in SCORE_COLUMNS}} for s in seg_rows
        ]
        assert {k: row[k] for k in summarize_call(seg_rows, results)} == summarize_call(seg_rows, results)
    assert rows[0]["metadata"] == {"campaign": "camp-0"}
    # The chunk's batched scores are the per-segment scores of the classifier.
    direct = tiny_classifier.score([{k: s[k] for k in ("text", "speaker", "listener")} for s in segs])
    np.testing.assert_allclose([s["score_threat"] for s in segs], [r["scores"]["threat"] for r in direct], atol=1e-5)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["calls"] == 9 and manifest["counts"]["segments"] == len(segs)
    assert manifest["counts"]["errors"] == 0 and manifest["engine"] == "local"
    assert manifest["machine"]["cpu"] and manifest["machine"]["int8_dot"]  # int8 decisions depend on the CPU
    assert (
        manifest["model"]["version"] == tiny_classifier.version and manifest["preprocess_version"] == PREPROCESS_VERSION
    )
    assert len(manifest["inputs"]) == 5 and all(len(i["sha256"]) == 64 for i in manifest["inputs"])
    assert set(manifest["thresholds"]) == {"threat", "insult", "third_party_disclosure"}


def test_bad_rows_and_files_are_reported_and_the_rest_is_scored(tmp_path, fast_load, tiny_artifact, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    good = make_calls(2)
    lines = [
        json.dumps(good[0], ensure_ascii=False),
        "{not json",
        json.dumps({"segments": [{"text": "你好"}]}),  # no call_id
        json.dumps(
            {"call_id": "x1", "segments": [{"text": "你好", "speaker": "路人甲"}, {"text": "还钱", "speaker": "客户"}]}
        ),
        "",
        json.dumps({"call_id": "x2", "segments": [{"text": "   "}]}),
        json.dumps(good[0], ensure_ascii=False),  # duplicate call_id
    ]
    (inp / "a.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (inp / "b.csv").write_text(
        "call_id,start,end,speaker,text\n"
        "t1,0,1,坐席,您好\n"
        "t1,1,2,外星人,你好\n"  # unmapped speaker
        "t1,abc,3,客户,嗯\n"  # bad start
        "t2,0,1,坐席,您好,多余\n"  # surplus field
        "t2,2,3,客户,我知道了\n",
        encoding="utf-8",
    )
    (inp / "c.csv").write_text("id,text\n1,你好\n", encoding="utf-8")  # missing columns
    (inp / "d.parquet").write_bytes(b"PAR1 this is not parquet")
    (inp / "e.srt").write_text(
        "1\n00:00:01,000 --> 00:00:02,000\n坐席：您好\n\n2\nbroken timing\n文本\n\n"
        "3\n00:00:05,000 --> 00:00:06,000\n好的\n",
        encoding="utf-8",
    )
    (inp / "f.vtt").write_text("00:01.000 --> 00:02.000\n没有头\n", encoding="utf-8")
    (inp / "g.vtt").write_text("WEBVTT\n\n00:01.000 --> 00:02.000\n<v 老板>你好\n", encoding="utf-8")
    (inp / "h.dat").write_bytes(b"\x00\x01 unknown")
    (inp / "i.jsonl").write_bytes(gzip.compress(b"\n".join(json.dumps(c).encode() for c in make_calls(3, "z")))[:-12])

    out = tmp_path / "out"
    assert relabel(inp, "--out", out, "--model", tiny_artifact) == 0
    segs, rows, errors = read_out(out)
    got = {(Path(e["file"]).name, e["position"]): e["reason"] for e in errors}
    expected = {
        ("a.jsonl", "line 2"): "invalid JSON",
        ("a.jsonl", "line 3"): "call_id",
        ("a.jsonl", "line 4 segments[0]"): "unmapped speaker '路人甲'",
        ("a.jsonl", "line 6 segments[0]"): "empty",
        ("a.jsonl", "line 7"): "duplicate call_id 'c0000'",
        ("b.csv", "row 2"): "unmapped speaker '外星人'",
        ("b.csv", "row 3"): "start must be a number",
        ("b.csv", "row 4"): "more field(s) than the header",
        ("c.csv", "row 0 (header)"): "missing column(s) ['call_id', 'speaker']",
        ("d.parquet", None): "not a readable Parquet file",
        ("e.srt", "cue 2"): "no valid timing line",
        ("f.vtt", "line 1"): "WEBVTT",
        ("g.vtt", "cue 1"): "unmapped speaker '老板'",
        ("h.dat", None): "unrecognised format",
    }
    for key, fragment in expected.items():
        assert fragment in got.get(key, ""), (key, got.get(key))
    truncated = [e for e in errors if Path(e["file"]).name == "i.jsonl"]
    assert len(truncated) == 1 and "truncated" in truncated[0]["reason"]
    assert len(errors) == len(expected) + 1
    # Good rows of bad files are still scored.
    by_call = {r["call_id"]: r["n_segments"] for r in rows}
    assert by_call["c0000"] == 1 and by_call["x1"] == 1 and by_call["t1"] == 1 and by_call["t2"] == 1
    assert by_call["e"] == 2 and "z0000" in by_call and "x2" not in by_call and "g" not in by_call
    assert len(segs) == sum(by_call.values())
    assert json.loads((out / "manifest.json").read_text())["counts"]["errors"] == len(errors)

    # --fail-on-error turns errors into a non-zero exit; a non-empty --out needs --resume.
    assert relabel(inp, "--out", tmp_path / "out2", "--model", tiny_artifact, "--fail-on-error") == 1
    assert relabel(SAMPLES, "--out", tmp_path / "out3", "--model", tiny_artifact, "--fail-on-error") == 0
    capsys.readouterr()
    assert relabel(inp, "--out", out, "--model", tiny_artifact) == 2
    assert "is not empty; pass --resume" in capsys.readouterr().err


def test_idempotent_and_resume_of_a_finished_run(tmp_path, fast_load, tiny_artifact):
    inp = write_jsonl(tmp_path / "calls.jsonl", make_calls(7))
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert relabel(inp, SAMPLES, "--out", out, "--model", tiny_artifact, "--set", "relabel.chunk_calls=3") == 0
    for name in ("segments.parquet", "calls.jsonl", "errors.jsonl", "contacts.jsonl"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    parts = sorted(p.name for p in (a / "parts").iterdir())
    assert relabel(inp, SAMPLES, "--out", a, "--model", tiny_artifact, "--resume") == 0
    assert sorted(p.name for p in (a / "parts").iterdir()) == parts  # nothing rescored
    for name in ("segments.parquet", "calls.jsonl", "errors.jsonl", "contacts.jsonl"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert json.loads((a / "manifest.json").read_text())["counts"]["resumed_calls"] == 17


def test_resume_with_a_recalibrated_model_redoes_the_saved_parts(tmp_path, fast_load, tiny_artifact, capsys):
    # train.calibrate changes thresholds but keeps the version and weights: a resume must not mix
    # rows decided at the old thresholds with rows decided at the new ones.
    import shutil

    inp = write_jsonl(tmp_path / "calls.jsonl", make_calls(6))
    out = tmp_path / "out"
    assert relabel(inp, "--out", out, "--model", tiny_artifact, "--set", "relabel.chunk_calls=2") == 0
    recalibrated = tmp_path / "recalibrated"
    shutil.copytree(tiny_artifact, recalibrated)
    manifest = json.loads((recalibrated / "collectguard.json").read_text(encoding="utf-8"))
    manifest["thresholds"] = dict.fromkeys(manifest["thresholds"], 0.0)  # every label on every segment
    (recalibrated / "collectguard.json").write_text(json.dumps(manifest), encoding="utf-8")
    capsys.readouterr()
    assert relabel(inp, "--out", out, "--model", recalibrated, "--set", "relabel.chunk_calls=2", "--resume") == 0
    assert "3 saved chunk(s) made with other thresholds will be redone" in capsys.readouterr().err
    report = json.loads((out / "manifest.json").read_text())
    assert report["counts"]["resumed_calls"] == 0 and report["counts"]["scored_calls"] == 6
    segments = pq.read_table(out / "segments.parquet").to_pylist()
    assert segments and all({"threat", "insult"} <= set(s["labels"]) for s in segments)  # new thresholds
    saved = json.loads((out / "parts" / "run.json").read_text(encoding="utf-8"))
    assert saved["thresholds"] == manifest["thresholds"] and saved["model"]["version"] == manifest["version"]
    # unchanged settings: a second resume keeps every part
    assert relabel(inp, "--out", out, "--model", recalibrated, "--set", "relabel.chunk_calls=2", "--resume") == 0
    assert json.loads((out / "manifest.json").read_text())["counts"]["resumed_calls"] == 6


def test_interrupt_keeps_committed_chunks_and_resume_finishes(tmp_path, fast_load, tiny_artifact, monkeypatch):
    import serve.batch.engines as relabel_mod

    inp = write_jsonl(tmp_path / "calls.jsonl", with_metadata(make_calls(10)))
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert relabel(inp, "--out", ref, "--model", tiny_artifact, "--set", "relabel.chunk_calls=2") == 0
    real, seen = relabel_mod.score_chunk, []

    def interrupted(clf, calls, *args):
        seen.append(1)
        if len(seen) == 3:
            raise KeyboardInterrupt  # Ctrl-C while scoring the third chunk
        return real(clf, calls, *args)

    monkeypatch.setattr(relabel_mod, "score_chunk", interrupted)
    assert relabel(inp, "--out", out, "--model", tiny_artifact, "--set", "relabel.chunk_calls=2") == 130
    assert not (out / "segments.parquet").exists() and len(list((out / "parts").glob("*.calls.jsonl"))) == 2
    monkeypatch.setattr(relabel_mod, "score_chunk", real)
    assert relabel(inp, "--out", out, "--model", tiny_artifact, "--set", "relabel.chunk_calls=2", "--resume") == 0
    for name in ("segments.parquet", "calls.jsonl", "errors.jsonl", "contacts.jsonl"):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path, fast_load, tiny_artifact):
    """A real ``collectguard relabel`` process is SIGKILLed after committing chunks, then resumed.

    Its input is a named pipe fed with the first calls only, so the kill lands at a known point
    (the process waits for more input) however fast or loaded the machine is.
    """
    calls = with_metadata(make_calls(30))
    inp, ref, out = tmp_path / "calls.jsonl", tmp_path / "ref", tmp_path / "out"
    opts = ["--model", str(tiny_artifact), "--set", "relabel.chunk_calls=2", "--backend", "torch"]  # as fast_load
    os.mkfifo(inp)
    exe = Path(sys.executable).with_name("collectguard")
    cmd = [str(exe), "relabel", str(inp), "--out", str(out), *opts, "--set", "inference.threads=1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:  # open the pipe once the process reads it (after loading the model)
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "relabel never opened its input"
            try:
                fd = os.open(inp, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                time.sleep(0.05)
        os.set_blocking(fd, True)
        os.write(fd, "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in calls[:13]).encode())
        while len(list((out / "parts").glob("*.calls.jsonl"))) < 6:  # 13 calls → 6 full chunks of 2
            assert proc.poll() is None and time.monotonic() < deadline, "relabel did not commit its chunks"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        os.close(fd)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "segments.parquet").exists()
    # Debris a kill can leave: a temporary file and a segments part whose calls part never landed.
    (out / "parts" / ".chunk-000900.calls.jsonl.tmp-1").write_text("{half a line")
    (out / "parts" / "chunk-000900.segments.parquet").write_bytes(b"half a file")

    inp.unlink()
    write_jsonl(inp, calls)  # the same path, now a regular file with every call
    assert relabel(inp, "--out", out, *opts, "--resume") == 0
    assert relabel(inp, "--out", ref, *opts) == 0
    segs, rows, errors = read_out(out)
    ref_segs, ref_rows, ref_errors = read_out(ref)
    assert_same_rows(segs, ref_segs, atol=1e-5)  # the killed process ran its own copy of the model
    assert [c["call_id"] for c in rows] == [c["call_id"] for c in ref_rows]
    assert len({(s["call_id"], s["segment"]) for s in segs}) == len(segs) == sum(len(c["segments"]) for c in calls)
    assert errors == ref_errors == []
    assert (out / "contacts.jsonl").read_bytes() == (ref / "contacts.jsonl").read_bytes()
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert counts["resumed_calls"] == 12 and counts["scored_calls"] == 18
    assert not [p for p in (out / "parts").iterdir() if p.name.startswith(".") or "000900" in p.name]


def test_score_chunk_isolates_a_failing_call(tiny_classifier):
    calls = [
        {**c, "metadata": {}, "source": "s.jsonl", "position": f"line {i + 1}"} for i, c in enumerate(make_calls(3))
    ]
    for c in calls:
        c["segments"] = [{**s, "speaker": "customer" if s["speaker"] == "客户" else "agent"} for s in c["segments"]]
    calls[1]["segments"][0]["listener"] = "nobody"  # the classifier rejects it: the whole batch fails
    result = score_chunk(tiny_classifier, calls, batch_size=4)
    assert [c["call_id"] for c in result["calls"]] == ["c0000", "c0002"]
    assert result["errors"][0]["position"] == "line 2" and "scoring failed" in result["errors"][0]["reason"]


def test_ray_engine_matches_local(tmp_path, fast_load, tiny_artifact):
    pytest.importorskip("ray")
    inp = write_jsonl(tmp_path / "calls.jsonl", make_calls(8))
    opts = ["--model", str(tiny_artifact), "--set", "relabel.chunk_calls=3", "--backend", "torch"]  # as fast_load
    local, ray_out = tmp_path / "local", tmp_path / "ray"
    assert relabel(inp, SAMPLES, "--out", local, *opts) == 0
    assert relabel(inp, SAMPLES, "--out", ray_out, *opts, "--engine", "ray", "--workers", "1") == 0
    segs, calls, errors = read_out(ray_out)
    ref_segs, ref_calls, ref_errors = read_out(local)
    assert pq.read_schema(ray_out / "segments.parquet") == pq.read_schema(local / "segments.parquet")
    assert_same_rows(segs, ref_segs, atol=1e-5)
    assert [c["call_id"] for c in calls] == [c["call_id"] for c in ref_calls] and errors == ref_errors
    assert json.loads((ray_out / "manifest.json").read_text())["engine"] == "ray"


def test_samples_are_valid_inputs():
    items = list(read_inputs([SAMPLES]))
    assert not [x for x in items if isinstance(x, ReadError)]
    calls = {c["call_id"]: c for c in items}
    assert 5 <= sum(Path(c["source"]).name == "calls.jsonl" for c in items) <= 8
    assert {"call_srt_001", "call_vtt_001"} <= set(calls)
    listeners = {s["listener"] for c in items for s in c["segments"]}
    assert "third_party" in listeners and {"agent", "customer"} == {s["speaker"] for c in items for s in c["segments"]}
    assert os.path.getsize(SAMPLES / "calls.jsonl") < 20_000


def test_process_pool_matches_local(tmp_path, tiny_artifact):
    """``--workers 2``: spawned workers get the driver's settings (backend, masking, checks) and
    write what one process writes."""
    inp = write_jsonl(tmp_path / "calls.jsonl", make_calls(8))
    opts = ["--model", str(tiny_artifact), "--set", "relabel.chunk_calls=3", "--backend", "torch"]
    local, pool = tmp_path / "local", tmp_path / "pool"
    assert relabel(inp, SAMPLES, "--out", local, *opts) == 0
    assert relabel(inp, SAMPLES, "--out", pool, *opts, "--workers", "2") == 0
    segs, calls, errors = read_out(pool)
    ref_segs, ref_calls, ref_errors = read_out(local)
    assert_same_rows(segs, ref_segs, atol=1e-5)
    assert calls == ref_calls and errors == ref_errors
    assert json.loads((pool / "manifest.json").read_text())["workers"] == 2
