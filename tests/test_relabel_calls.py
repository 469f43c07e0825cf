"""Relabel on real files: call flags in calls.jsonl, contacts.jsonl across calls, bad metadata
in errors.jsonl (the call still scored), evidence as a column, and no personal number in any
output; ``collectguard score`` reports the same flags."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_relabel import fast_load, read_out, relabel  # noqa: F401 (fast_load: a fixture used via pytestmark)

from collectguard.cli import main

pytestmark = pytest.mark.usefixtures("fast_load")  # in-process runs reuse the session's tiny classifier

PHONE, ID_NO = "13800138000", "11010519491231002X"
NAMED = [{"speaker": "坐席", "listener": "debtor", "text": "您好，这边是瑞丰消费金融的，我是工号8023的小李"},
         {"speaker": "坐席", "listener": "debtor", "text": "您本期账单已经逾期五天了"},
         {"speaker": "客户", "text": "好的我明天还"}]  # fmt: skip
ANONYMOUS = [{"speaker": "坐席", "listener": "debtor", "text": f"喂，你的借款逾期了，打{PHONE}回电"},
             {"speaker": "客户", "text": "你们这是骚扰，我要投诉"}]  # fmt: skip


def at(day: int, hour: int) -> str:
    return f"2026-03-{day:02d}T{hour:02d}:10:00+08:00"


def calls() -> list[dict]:
    out = [
        {"call_id": "anon-late", "segments": ANONYMOUS, "started_at": at(1, 23), "debtor_id": "D0",
         "callee": {"id": "d0", "role": "debtor"}},
        {"call_id": "named-day", "segments": NAMED, "started_at": at(1, 10), "debtor_id": "D0",
         "callee": {"id": "d0", "role": "debtor"}},
    ]  # fmt: skip
    # D1: four calls to the debtor on one day (cap 3); D2: three.
    out += [{"call_id": f"cap-{i}", "segments": NAMED, "started_at": at(2, 9 + i), "debtor_id": "D1",
             "callee": {"role": "debtor"}} for i in range(4)]  # fmt: skip
    out += [{"call_id": f"ok-{i}", "segments": NAMED, "started_at": at(2, 9 + i), "debtor_id": "D2",
             "callee": {"role": "debtor"}} for i in range(3)]  # fmt: skip
    # D3: four distinct third parties within a week (limit 3); D4: three. Callee ids are phone numbers.
    out += [{"call_id": f"blast-{i}", "segments": NAMED, "started_at": at(1 + i, 11), "debtor_id": "D3",
             "callee": {"id": f"1390013900{i}", "role": "third_party"}} for i in range(4)]  # fmt: skip
    out += [{"call_id": f"few-{i}", "segments": NAMED, "started_at": at(1 + i, 11), "debtor_id": "D4",
             "callee": {"id": f"friend{i}", "role": "third_party"}} for i in range(3)]  # fmt: skip
    out += [
        {"call_id": "no-debtor", "segments": NAMED, "started_at": at(3, 12)},
        {"call_id": "pii-debtor", "segments": NAMED, "started_at": at(3, 12), "debtor_id": ID_NO},
        {"call_id": "bad-meta", "segments": ANONYMOUS, "started_at": f"call me on {PHONE}", "direction": "sideways",
         "debtor_id": "D5"},
    ]  # fmt: skip
    return out


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    path = tmp_path / "calls.jsonl"
    path.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in calls()), encoding="utf-8")
    return path


def run(
    archive: Path, out: Path, model: Path, *sets: str, resume: bool = False
) -> tuple[list[dict], dict[str, dict], list[dict], list[dict]]:
    opts = [x for s in sets for x in ("--set", s)] + (["--resume"] if resume else [])
    assert relabel(archive, "--out", out, "--model", model, *opts) == 0
    segs, rows, errors = read_out(out)
    contacts = [json.loads(x) for x in (out / "contacts.jsonl").read_text(encoding="utf-8").splitlines()]
    return segs, {r["call_id"]: r for r in rows}, errors, contacts


def test_call_flags_contacts_errors_and_evidence(tmp_path: Path, archive: Path, tiny_artifact) -> None:
    out = tmp_path / "out"
    segs, rows, errors, contacts = run(archive, out, tiny_artifact, "explain.min_weight=0")
    flags = {cid: {k: f["raised"] for k, f in r["flags"].items()} for cid, r in rows.items()}
    assert flags["anon-late"] == {"anonymous_collection": True, "outside_permitted_hours": True, "complaint": True}
    assert flags["named-day"] == {"anonymous_collection": False, "outside_permitted_hours": False, "complaint": False}
    # Bad metadata: reported with its position, the call scored, the check that needed it null.
    assert flags["bad-meta"]["outside_permitted_hours"] is None and flags["bad-meta"]["anonymous_collection"] is True
    assert [e["position"] for e in errors] == ["line 19", "line 19"]
    assert (
        "started_at" in errors[0]["reason"] and "direction" in errors[1]["reason"] and "scored" in errors[0]["reason"]
    )
    assert rows["bad-meta"]["metadata_problems"][1]["field"] == "direction"

    by = {(c["debtor_id"], c["day"]): c for c in contacts}
    cap = lambda key: by[key]["flags"]["daily_contact_cap_exceeded"]["raised"]  # noqa: E731
    blast = lambda key: by[key]["flags"]["contact_list_blasting"]["raised"]  # noqa: E731
    assert cap(("D1", "2026-03-02")) is True and by[("D1", "2026-03-02")]["calls_to_debtor"] == 4
    assert cap(("D2", "2026-03-02")) is False
    assert blast(("D3", "2026-03-04")) is True and blast(("D3", "2026-03-03")) is False
    assert {blast(("D4", f"2026-03-0{d}")) for d in (1, 2, 3)} == {False}
    unknown = by[(None, "2026-03-03")]
    assert unknown["call_ids"] == ["no-debtor"] and cap((None, "2026-03-03")) is None
    assert by[("D5", None)]["call_ids"] == ["bad-meta"] and cap(("D5", None)) is None
    assert ("[ID]", "2026-03-03") in by
    assert sum(c["calls"] for c in contacts) == len(calls())

    # Evidence: a column; every span is a slice of the stored text.
    assert "evidence" in pq.read_schema(out / "segments.parquet").names
    flagged = [s for s in segs if s["labels"]]
    assert flagged and all(s["evidence"] is not None for s in flagged)
    assert any(s["evidence"] for s in flagged)
    for s in flagged:
        for ev in s["evidence"]:
            assert s["text"][ev["start"] : ev["end"]] == ev["text"]

    # No personal number in anything stored.
    stored = "".join(p.read_text(encoding="utf-8") for p in out.glob("*.jsonl")) + repr(segs)
    for number in (PHONE, ID_NO, "13900139000"):
        assert number not in stored, number
    assert "打[PHONE]回电" in repr(segs)


def test_resume_rebuilds_contacts_and_metadata_errors(
    tmp_path: Path,
    archive: Path,
    tiny_artifact,
) -> None:
    ref, out = tmp_path / "ref", tmp_path / "out"
    run(archive, ref, tiny_artifact, "relabel.chunk_calls=3")
    run(archive, out, tiny_artifact, "relabel.chunk_calls=3")
    for part in sorted((out / "parts").glob("chunk-*.calls.jsonl"))[2:]:  # as if killed after two chunks
        part.unlink()
    for name in ("segments.parquet", "calls.jsonl", "contacts.jsonl", "errors.jsonl", "manifest.json"):
        (out / name).unlink()
    run(archive, out, tiny_artifact, "relabel.chunk_calls=3", resume=True)
    for name in ("segments.parquet", "calls.jsonl", "contacts.jsonl", "errors.jsonl"):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name


def test_mask_pii_off_keeps_originals(tmp_path: Path, archive: Path, tiny_artifact) -> None:
    segs, rows, errors, contacts = run(archive, tmp_path / "out", tiny_artifact, "privacy.mask_pii=false")
    assert PHONE in repr(segs) and rows["pii-debtor"]["metadata"]["debtor_id"] == ID_NO
    assert "[PHONE]" in errors[0]["reason"]  # error messages never quote a personal number
    assert any(c["debtor_id"] == ID_NO for c in contacts)


def test_score_command_reports_the_same_flags(
    tmp_path: Path,
    archive: Path,
    tiny_artifact,
    capsys,
) -> None:
    _, rows, _, _ = run(archive, tmp_path / "out", tiny_artifact)
    capsys.readouterr()
    assert main(["score", str(archive), "--json", "--model", str(tiny_artifact)]) == 0
    scored = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(scored) == len(rows)
    for call in scored:
        assert call["summary"]["flags"] == rows[call["call_id"]]["flags"]
    assert main(["score", str(archive), "--model", str(tiny_artifact)]) == 0
    text = capsys.readouterr().out
    assert "anonymous_collection: RAISED" in text and "outside_permitted_hours: unknown" in text
    assert PHONE not in text
