"""serve/ingest: every accepted format and encoding, written to disk and read back; speaker tags,
automatic roles, provenance, and bad rows reported with their position while good ones are scored."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from collectguard.cli import main
from model.config import Settings
from serve.ingest import FileRecord, IngestOptions, ReadError, ingest
from serve.ingest.roles_eval import default_paths, evaluate, load_calls

MAP = {"坐席": "agent", "客户": "customer", "agent": "agent", "customer": "customer"}
AGENT_LINES = ["您好，请问是周建国先生吗？我这边是北辰消费金融的。", "您的借款已经逾期十五天了，今天能还款吗？"]
CUSTOMER_LINES = ["喂？", "我知道，这个月工资还没发，我二十号一定还。"]
DIALOGUE = [("customer", CUSTOMER_LINES[0]), ("agent", AGENT_LINES[0]), ("agent", AGENT_LINES[1]),
            ("customer", CUSTOMER_LINES[1])]  # fmt: skip
TEXTS = [t for _, t in DIALOGUE]


def opts(**kw) -> IngestOptions:
    """The configured defaults (column aliases, margin) with a small speaker map."""
    base = IngestOptions.from_settings(Settings())
    return IngestOptions(**{**base.__dict__, "speaker_map": MAP, **kw})


def read(paths, **kw) -> tuple[list[dict], list[ReadError], list[FileRecord]]:
    calls, errors, files = [], [], []
    for item in ingest([Path(p) for p in paths], opts(**kw)):
        (errors if isinstance(item, ReadError) else files if isinstance(item, FileRecord) else calls).append(item)
    return calls, errors, files


def csv_text(tags=("客户", "坐席", "坐席", "客户"), header="call_id,start,end,speaker,text") -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header.split(","))
    for i, (tag, text) in enumerate(zip(tags, TEXTS, strict=True)):
        w.writerow(["c1", i * 2, i * 2 + 1.5, tag, text])
    return buf.getvalue()


# -- encodings ------------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030", "gbk", "utf-16", "utf-16-le"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "srt"])
def test_encodings_are_detected(tmp_path, encoding, fmt):
    if fmt == "csv":
        text = csv_text()
    elif fmt == "jsonl":
        segs = [{"speaker": "坐席" if r == "agent" else "客户", "text": t} for r, t in DIALOGUE]
        text = json.dumps({"call_id": "c1", "segments": segs}, ensure_ascii=False) + "\n"
    else:
        text = "".join(f"{i + 1}\n00:00:0{i},000 --> 00:00:0{i},900\n{'坐席' if r == 'agent' else '客户'}：{t}\n\n"
                       for i, (r, t) in enumerate(DIALOGUE))  # fmt: skip
    path = tmp_path / f"c1.{fmt}"
    path.write_bytes(text.encode(encoding))
    calls, errors, (record,) = read([path])
    assert errors == []
    assert [s["text"] for s in calls[0]["segments"]] == TEXTS
    assert [s["speaker"] for s in calls[0]["segments"]] == [r for r, _ in DIALOGUE]
    expected = {"gbk": "gb18030", "utf-16": "utf-16", "utf-8-sig": "utf-8-sig"}.get(encoding, encoding)
    assert record.encoding == expected, record


def test_big5_and_forced_encoding(tmp_path):
    trad = tmp_path / "big5.csv"
    trad.write_bytes(
        "call_id,speaker,text\nc1,坐席,您的帳單已經逾期了，請儘快還款。\nc1,客戶,我下個月一定還。\n".encode("big5")
    )
    calls, errors, (record,) = read([trad], speaker_map={**MAP, "客戶": "customer"})
    assert errors == [] and record.encoding == "big5"
    assert calls[0]["segments"][0]["text"] == "您的帳單已經逾期了，請儘快還款。"
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes(csv_text().encode("gbk"))
    calls, errors, (record,) = read([gbk], encoding="gb18030")
    assert record.encoding == "gb18030" and len(calls[0]["segments"]) == 4
    calls, errors, _ = read([gbk], encoding="utf-8")  # forced wrong: the file is reported, with its line
    assert calls == [] and errors[0].position == "line 2" and "not utf-8 text" in errors[0].reason
    with pytest.raises(ValueError, match="unknown encoding"):
        opts(encoding="klingon")


def test_bad_line_in_a_gbk_jsonl_is_one_error(tmp_path):
    good = [json.dumps({"call_id": f"c{i}", "segments": [{"text": t, "speaker": "坐席"}]}, ensure_ascii=False)
            for i, t in enumerate(AGENT_LINES * 200)]  # fmt: skip
    data = b"\n".join(line.encode("gb18030") for line in good[:5]) + b"\n\xff\xfe\xfd broken\n"
    data += b"\n".join(line.encode("gb18030") for line in good[5:]) + b"\n"
    path = tmp_path / "calls.jsonl"
    path.write_bytes(data)
    calls, errors, (record,) = read([path])
    assert record.encoding == "gb18030" and len(calls) == len(good)
    assert [(e.position, e.reason.split(":")[0]) for e in errors] == [("line 6", "not gb18030 text")]


# -- Excel -----------------------------------------------------------------------------------------
def _rows():
    return [["通话ID", "开始时间", "结束时间", "角色", "内容"], *[
        [1001, i * 2.0, i * 2 + 1.5, "客户" if r == "customer" else "坐席", t] for i, (r, t) in enumerate(DIALOGUE)
    ]]  # fmt: skip


def test_xlsx_with_chinese_headers_blank_and_bad_rows(tmp_path):
    from openpyxl import Workbook

    wb = Workbook()
    wb.active.title = "说明"
    wb.active.append(["本表为质检导出"])  # a notes sheet without the columns: skipped, not an error
    ws = wb.create_sheet("通话")
    for row in _rows()[:3]:
        ws.append(row)
    ws.append([None, None, None, None, None])  # blank row: layout
    ws.append([1001, 9, 8, "坐席", "结束早于开始"])  # bad row
    for row in _rows()[3:]:
        ws.append(row)
    path = tmp_path / "qa.xlsx"
    wb.save(path)
    calls, errors, (record,) = read([path])
    assert [(e.position, "before start" in e.reason) for e in errors] == [("sheet '通话' row 5", True)]
    (call,) = calls
    assert call["call_id"] == "1001" and [s["text"] for s in call["segments"]] == TEXTS
    assert [s["position"] for s in call["segments"]][:2] == ["sheet '通话' row 2", "sheet '通话' row 3"]
    assert (
        call["segments"][1]["start"] == 2.0
        and record.format == "xlsx"
        and record.as_dict()["sheets_skipped"] == ["说明"]
    )


def test_xls(tmp_path):
    xlwt = pytest.importorskip("xlwt", reason="xlwt (test extra) writes the legacy .xls file read here")
    book = xlwt.Workbook()
    sheet = book.add_sheet("calls")
    for r, row in enumerate(_rows()):
        for c, value in enumerate(row):
            sheet.write(r, c, value)
    path = tmp_path / "old.xls"
    book.save(str(path))
    calls, errors, (record,) = read([path])
    assert errors == [] and record.format == "xls"
    assert calls[0]["call_id"] == "1001" and [s["speaker"] for s in calls[0]["segments"]] == [r for r, _ in DIALOGUE]


# -- ASR JSON --------------------------------------------------------------------------------------
def _asr_docs() -> dict[str, object]:
    agent_first = [(r, t) for r, t in DIALOGUE]
    spk = {"agent": 1, "customer": 0}
    return {
        "funasr": [{"key": "rec_0001", "text": "".join(TEXTS), "sentence_info": [
            {"text": t, "start": i * 2000, "end": i * 2000 + 1500, "timestamp": [[0, 100]], "spk": spk[r]}
            for i, (r, t) in enumerate(agent_first)]}],
        "whisperx": {"segments": [
            {"start": i * 2.0, "end": i * 2 + 1.5, "text": f" {t}", "words": [], "speaker": f"SPEAKER_0{spk[r]}"}
            for i, (r, t) in enumerate(agent_first)], "language": "zh"},
        "aliyun": {"TaskId": "task-77", "StatusCode": 21050000, "StatusText": "SUCCESS", "Result": {"Sentences": [
            {"Text": t, "BeginTime": i * 2000, "EndTime": i * 2000 + 1500, "ChannelId": 1 - spk[r], "SpeechRate": 200,
             "EmotionValue": 5.0} for i, (r, t) in enumerate(agent_first)]}},
        "tencent": {"Response": {"RequestId": "req-1", "Data": {"TaskId": 5550001, "Status": 2, "StatusStr": "success",
            "Result": "…", "ResultDetail": [{"FinalSentence": t, "SliceSentence": t, "StartMs": i * 2000,
            "EndMs": i * 2000 + 1500, "WordsNum": 3, "Words": [], "SpeechSpeed": 4.1, "SpeakerId": spk[r]}
            for i, (r, t) in enumerate(agent_first)]}}},
        "dashscope": {"file_url": "x.wav", "transcripts": [
            {"channel_id": ch, "text": "…", "sentences": [
                {"begin_time": i * 2000, "end_time": i * 2000 + 1500, "text": t, "sentence_id": i}
                for i, (r, t) in enumerate(agent_first) if spk[r] == ch]} for ch in (0, 1)]},
    }  # fmt: skip


@pytest.mark.parametrize("name", ["funasr", "whisperx", "aliyun", "tencent", "dashscope"])
@pytest.mark.parametrize("encoding", ["utf-8", "gb18030"])
def test_asr_json_shapes_with_automatic_roles(tmp_path, name, encoding):
    path = tmp_path / f"{name}_call.json"
    path.write_bytes(json.dumps(_asr_docs()[name], ensure_ascii=False, indent=1).encode(encoding))
    calls, errors, (record,) = read([path])
    assert errors == [], errors
    (call,) = calls
    shape = "whisper" if name == "whisperx" else name
    assert record.shape == shape and record.encoding == encoding and call["metadata"]["asr_format"] == shape
    assert [s["text"] for s in call["segments"]] == TEXTS
    assert [s["speaker"] for s in call["segments"]] == [r for r, _ in DIALOGUE]
    assert [s["start"] for s in call["segments"]] == [0.0, 2.0, 4.0, 6.0]  # ms → seconds
    assert call["segments"][3]["end"] == 7.5
    assert call["roles"]["method"] == "auto" and call["roles"]["status"] == "ok" and call["roles"]["n_speakers"] == 2
    assert set(call["roles"]["tags"].values()) == {"agent", "customer"}
    assert call["call_id"] == {"funasr": "rec_0001", "aliyun": "task-77", "tencent": "5550001"}.get(name, path.stem)
    prefix = {"funasr": "[0].sentence_info", "whisperx": "segments", "aliyun": "Result.Sentences",
              "tencent": "Response.Data.ResultDetail", "dashscope": "transcripts[0].sentences"}[name]  # fmt: skip
    assert call["segments"][0]["position"].startswith(prefix)


def test_plain_whisper_without_speakers_and_forced_format(tmp_path):
    path = tmp_path / "w.json"
    path.write_text(json.dumps([{"id": 0, "seek": 0, "start": 0.0, "end": 2.0, "text": AGENT_LINES[0], "tokens": []}],
                               ensure_ascii=False), encoding="utf-8")  # fmt: skip
    (call,), errors, _ = read([path])
    assert errors == [] and call["roles"]["method"] == "none" and call["segments"][0]["speaker"] == "agent"
    calls, errors, _ = read([path], fmt="tencent")
    assert calls == [] and "not a tencent transcript" in errors[0].reason


def test_unknown_json_shape_lists_the_shapes_understood(tmp_path):
    path = tmp_path / "odd.json"
    path.write_text(json.dumps({"utterances": [{"words": "你好"}]}), encoding="utf-8")
    calls, (err,), _ = read([path])
    assert calls == [] and "unknown shape" in err.reason
    for name in ("sentence_info", "segments", "Sentences", "ResultDetail", "transcripts", "call_id"):
        assert name in err.reason


def test_bad_sentences_are_reported_by_json_path_and_the_rest_is_kept(tmp_path):
    doc = _asr_docs()["aliyun"]
    doc["Result"]["Sentences"][1]["Text"] = None
    doc["Result"]["Sentences"][2]["EndTime"] = "soon"
    path = tmp_path / "a.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    (call,), errors, _ = read([path])
    assert [(e.position, e.reason.split(": ", 1)[1]) for e in errors] == [
        ("Result.Sentences[1]", "text is missing"),
        ("Result.Sentences[2]", "end must be a number of milliseconds, got 'soon'"),
    ]
    assert len(call["segments"]) == 2


# -- speaker tags in text, maps, roles -----------------------------------------------------------------
def test_srt_with_diarisation_prefixes_and_vtt_voices(tmp_path):
    spk = {"agent": "SPEAKER_01", "customer": "SPEAKER_00"}
    srt = tmp_path / "diarised.srt"
    srt.write_text("".join(f"{i + 1}\n00:00:0{i},000 --> 00:00:0{i},900\n[{spk[r]}]: {t}\n\n"
                           for i, (r, t) in enumerate(DIALOGUE)), encoding="utf-8")  # fmt: skip
    vtt = tmp_path / "voices.vtt"
    vtt.write_text("WEBVTT\n\n" + "".join(f"00:0{i}.000 --> 00:0{i}.900\n<v Speaker {1 + (r == 'agent')}>{t}</v>\n\n"
                                          for i, (r, t) in enumerate(DIALOGUE)), encoding="utf-8")  # fmt: skip
    calls, errors, _ = read([srt, vtt])
    assert errors == []
    for call in calls:
        assert [s["text"] for s in call["segments"]] == TEXTS  # the tag is gone from the text
        assert [s["speaker"] for s in call["segments"]] == [r for r, _ in DIALOGUE]
        assert call["roles"]["method"] == "auto"
    assert calls[0]["segments"][0]["speaker_tag"] == "SPEAKER_00" and calls[0]["segments"][2]["position"] == "cue 3"


def test_explicit_map_beats_automatic_roles_and_map_mode_requires_it(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(csv_text(tags=("channel 0", "channel 1", "channel 1", "channel 0")), encoding="utf-8")
    (call,), _, _ = read([path])
    assert call["roles"]["method"] == "auto" and call["roles"]["tags"] == {
        "channel 1": "agent",
        "channel 0": "customer",
    }
    (call,), _, _ = read([path], speaker_map={**MAP, "CHANNEL_0": "agent"})  # spelled differently: same tag
    assert [s["speaker"] for s in call["segments"]] == ["agent", "customer", "customer", "agent"]
    assert call["roles"]["method"] == "auto" and call["roles"]["tags"]["channel 0"] == "agent"
    calls, errors, _ = read([path], roles="map")
    assert calls == [] and len(errors) == 4 and "unmapped speaker tag 'channel 0'" in errors[0].reason


def test_one_and_three_speaker_calls_are_handled_and_reported(tmp_path):
    path = tmp_path / "t.jsonl"
    one = {"call_id": "one", "segments": [{"speaker": "spk 3", "text": t} for t in AGENT_LINES]}
    colleague = "我是他同事，他不在，我会转告他的。"
    turns = [("spk 0", CUSTOMER_LINES[0]), ("spk 1", AGENT_LINES[0]), ("spk 2", colleague), ("spk 1", AGENT_LINES[1])]
    three = {"call_id": "three", "segments": [{"speaker": s, "text": t} for s, t in turns]}
    quiet = {"call_id": "quiet", "segments": [{"speaker": "spk 0", "text": "这个周末下雨。"}]}
    path.write_text("\n".join(json.dumps(c, ensure_ascii=False) for c in (one, three, quiet)), encoding="utf-8")
    (a, b, c), errors, _ = read([path])
    assert errors == []
    assert a["roles"]["n_speakers"] == 1 and {s["speaker"] for s in a["segments"]} == {"agent"}
    assert a["roles"]["status"] == "ok"
    assert b["roles"]["n_speakers"] == 3 and b["roles"]["tags"] == {
        "spk 0": "customer",
        "spk 1": "agent",
        "spk 2": "customer",
    }
    assert c["roles"]["status"] == "uncertain"  # one short, role-less line: not guessed silently


# -- the measurement ---------------------------------------------------------------------------------
def test_role_assignment_accuracy_on_shuffled_tags():
    calls = load_calls(default_paths())
    assert len(calls) >= 300 and all(len({s["speaker"] for s in c["segments"]}) == 2 for c in calls)
    for seed in (0, 1):
        results = evaluate(calls, margin=1.0, speaker_map=MAP, seed=seed)["results"]
        assert results["all"]["accuracy"] >= 0.97, results["all"]
        assert results["half:test"]["accuracy"] >= 0.97, results["half:test"]
        assert results["all"]["uncertain_rate"] <= 0.10, results["all"]
    # The margin is what makes "uncertain" mean something: with none, nothing is uncertain.
    assert evaluate(calls, margin=0.0, speaker_map=MAP)["results"]["all"]["uncertain_rate"] == 0.0


# -- end to end: relabel and score over every format ----------------------------------------------------
@pytest.fixture
def fast_load(monkeypatch, tiny_classifier):
    from model.classifier import Classifier

    monkeypatch.setattr(Classifier, "load", classmethod(lambda cls, *a, **k: tiny_classifier))


def test_relabel_every_format_with_provenance_and_manifest(tmp_path, fast_load, tiny_artifact, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "gbk.csv").write_bytes((csv_text() + "c2,0,1,外星人,你好\n").encode("gbk"))  # one bad row
    for name, doc in _asr_docs().items():
        (inp / f"{name}.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    (inp / "odd.json").write_text("{}", encoding="utf-8")
    out = tmp_path / "out"
    assert (
        main(["relabel", str(inp), "--out", str(out), "--model", str(tiny_artifact), "--role", "外星人=customer"]) == 0
    )
    segs = pq.read_table(out / "segments.parquet").to_pylist()
    rows = [json.loads(x) for x in (out / "calls.jsonl").read_text(encoding="utf-8").splitlines()]
    errors = [json.loads(x) for x in (out / "errors.jsonl").read_text(encoding="utf-8").splitlines()]
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert [(Path(e["file"]).name, e["position"]) for e in errors] == [("odd.json", None)]
    assert len(rows) == 7 and len(segs) == 4 * 6 + 1
    assert all(s["source"] and s["position"] for s in segs)
    assert {s["position"] for s in segs if s["call_id"] == "c2"} == {"row 5"}
    assert all(r["roles"]["method"] in ("auto", "map") for r in rows)
    inputs = {Path(i["path"]).name: i for i in manifest["inputs"]}
    assert inputs["gbk.csv"]["encoding"] == "gb18030" and inputs["tencent.json"]["shape"] == "tencent"
    assert inputs["odd.json"]["errors"] == 1 and inputs["funasr.json"]["calls"] == 1
    assert manifest["roles"]["counts"]["method_auto"] == 5
    capsys.readouterr()
    assert main(["score", str(inp / "whisperx.json"), "--model", str(tiny_artifact)]) == 0
    assert "roles: auto SPEAKER_01=agent SPEAKER_00=customer (ok, lead" in capsys.readouterr().out
