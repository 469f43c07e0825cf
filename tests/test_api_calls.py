"""Call-level checks, evidence and PII masking over HTTP, against a real uvicorn server.

The tiny random model decides nothing meaningful, so thresholds of 0 make every segment flagged
(to exercise evidence) and the checks that read text (anonymous collection, complaint) are
asserted on what the text says, which does not depend on the model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_api import ServerThread, assert_error

from model.config import Settings
from serve.api.app import create_app

pytestmark = pytest.mark.slow

FLAG_ALL = {"threat": 0.0, "insult": 0.0, "third_party_disclosure": 0.0}
IDENTIFIED = [
    {"text": "您好，这边是瑞丰消费金融的，我是工号8023的小李", "speaker": "agent", "listener": "debtor"},
    {"text": "您本期账单已经逾期五天了", "speaker": "agent", "listener": "debtor"},
    {"text": "好的我明天还", "speaker": "customer"},
]
ANONYMOUS = [
    {"text": "喂，是王先生吗？你的借款已经逾期三天了", "speaker": "agent", "listener": "debtor"},
    {"text": "我要投诉你们，投诉电话多少", "speaker": "customer"},
]


def make_server(tiny_artifact: Path, **overrides: object) -> ServerThread:
    settings = Settings()
    settings.serve.model_dir = tiny_artifact
    settings.explain.min_weight = 0.0  # the random model's score drops are small: keep every span
    for dotted, value in overrides.items():
        section, field = dotted.split("__")
        setattr(getattr(settings, section), field, value)
    return ServerThread(create_app(settings))


@pytest.fixture(scope="module")
def client(tiny_artifact: Path) -> Iterator[httpx.Client]:
    with make_server(tiny_artifact) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        yield c


def call(client: httpx.Client, segments: list[dict], **extra: object) -> dict:
    resp = client.post("/v1/calls", json={"call_id": "c1", "segments": segments, **extra})
    assert resp.status_code == 200, resp.text
    return resp.json()


def flags(body: dict) -> dict[str, bool | None]:
    return {name: f["raised"] for name, f in body["summary"]["flags"].items()}


def test_anonymous_collection_both_ways_and_inbound(client: httpx.Client) -> None:
    named = call(client, IDENTIFIED)
    assert flags(named)["anonymous_collection"] is False
    assert named["summary"]["flags"]["anonymous_collection"]["evidence"]["institution"]["text"] == "瑞丰消费金融"
    anonymous = call(client, ANONYMOUS, direction="outbound")
    assert flags(anonymous)["anonymous_collection"] is True
    assert anonymous["summary"]["flags"]["anonymous_collection"]["evidence"]["first_debt_talk"]["segment"] == 0
    assert flags(call(client, ANONYMOUS, direction="inbound"))["anonymous_collection"] is None


def test_complaint_both_ways(client: httpx.Client) -> None:
    raised = call(client, ANONYMOUS)["summary"]["flags"]["complaint"]
    assert raised["raised"] is True and {m["segment"] for m in raised["evidence"]["matches"]} == {1}
    assert flags(call(client, IDENTIFIED))["complaint"] is False


def test_permitted_hours_both_ways_and_null_without_a_time(client: httpx.Client) -> None:
    assert flags(call(client, IDENTIFIED, started_at="2026-03-01T22:30:00+08:00"))["outside_permitted_hours"] is True
    assert flags(call(client, IDENTIFIED, started_at="2026-03-01T06:30:00Z"))["outside_permitted_hours"] is False
    assert flags(call(client, IDENTIFIED, started_at="2026-03-01T07:10:00"))["outside_permitted_hours"] is True
    bare = call(client, IDENTIFIED)["summary"]["flags"]["outside_permitted_hours"]
    assert bare["raised"] is None and "started_at" in bare["reason"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"started_at": "yesterday evening"}, "started_at"),
        ({"started_at": 1700000000}, "started_at"),
        ({"direction": "sideways"}, "direction"),
        ({"callee": {"id": "p1", "role": "boss"}}, "callee.role"),
        ({"callee": {"id": "p1", "role": "debtor", "name": "x"}}, "callee.name"),
        ({"debtor_id": ""}, "debtor_id"),
        ({"explain": "yes"}, "explain"),
    ],
)
def test_bad_metadata_is_a_422_naming_the_field(client: httpx.Client, extra: dict, field: str) -> None:
    resp = client.post("/v1/calls", json={"call_id": "c1", "segments": IDENTIFIED, **extra})
    assert_error(resp, 422, field)


def test_evidence_on_calls_by_default_and_off_on_request(client: httpx.Client) -> None:
    texts = ["你這個老賴！！！！不要臉", "ＮＩ个老赖，ｗｏ打断你的腿", "嗯嗯嗯 那个那个 就是说就是说 你个老赖 啊啊"]
    segs = [{"text": t, "speaker": "agent"} for t in texts]
    body = call(client, segs, thresholds=FLAG_ALL)
    for text, res in zip(texts, body["results"], strict=True):
        assert res["labels"] and res["evidence"], res
        for ev in res["evidence"]:
            assert text[ev["start"] : ev["end"]] == ev["text"] and ev["label"] in res["labels"]
    off = call(client, segs, thresholds=FLAG_ALL, explain=False)
    assert all(r["evidence"] is None for r in off["results"])


def test_score_explains_only_when_asked(client: httpx.Client) -> None:
    seg = {"text": "ＡＢＣ你個老賴，還錢！！！", "id": "s1"}
    plain = client.post("/v1/score", json={"segments": [seg], "thresholds": FLAG_ALL}).json()
    assert plain["results"][0]["evidence"] is None
    asked = client.post("/v1/score", json={"segments": [seg], "thresholds": FLAG_ALL, "explain": True}).json()
    [res] = asked["results"]
    assert res["evidence"] and all(seg["text"][e["start"] : e["end"]] == e["text"] for e in res["evidence"])


def test_personal_numbers_never_come_back_or_reach_the_log(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    secret = ["13800138000", "11010519491231002X", "6222021234567890123", "li.si@example.com"]
    text = f"你个老赖，打{secret[0]}，身份证{secret[1]}，卡号{secret[2]}，邮箱{secret[3]}"
    with caplog.at_level(logging.DEBUG):
        body = call(client, [{"text": text, "speaker": "agent", "id": f"seg-{secret[0]}"}], thresholds=FLAG_ALL,
                    call_id=f"call-{secret[0]}", debtor_id=secret[1])  # fmt: skip
        bad = client.post("/v1/score", json={"segments": [{"text": f"{secret[0]} \u200b", "id": secret[0]}]})
        late = client.post("/v1/calls", json={"call_id": "c", "segments": IDENTIFIED, "started_at": secret[0]})
    assert bad.status_code == 200 and late.status_code == 422
    shown = repr(body) + bad.text + late.text + caplog.text
    for number in secret:
        assert number not in shown, number
    assert body["call_id"] == "call-[PHONE]" and body["results"][0]["id"] == "seg-[PHONE]"
    # Scoring saw the masked text through the one preprocessing path: the same scores as a placeholder.
    placeholders = "你个老赖，打[PHONE]，身份证[ID]，卡号[CARD]，邮箱[EMAIL]"
    same = client.post("/v1/score", json={"segments": [{"text": placeholders, "speaker": "agent"}]}).json()
    assert same["results"][0]["scores"] == pytest.approx(body["results"][0]["scores"], abs=1e-6)


def test_mask_pii_off_keeps_originals(tiny_artifact: Path) -> None:
    with make_server(tiny_artifact, privacy__mask_pii=False) as srv:
        resp = httpx.post(f"{srv.url}/v1/calls", json={"call_id": "13800138000", "segments": IDENTIFIED}, timeout=60)
    assert resp.json()["call_id"] == "13800138000"


def test_openapi_documents_the_new_fields(client: httpx.Client) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    call_req = schemas["CallRequest"]["properties"]
    assert {"started_at", "direction", "debtor_id", "callee", "explain"} <= set(call_req)
    assert "ISO 8601" in call_req["started_at"]["description"]
    assert set(schemas["CallFlags"]["properties"]) == {"anonymous_collection", "outside_permitted_hours", "complaint"}
    assert "evidence" in schemas["SegmentResult"]["properties"] and "explain" in schemas["ScoreRequest"]["properties"]
    assert schemas["Callee"]["properties"]["role"]["enum"] == ["debtor", "third_party", "unknown"]
