"""The review API over HTTP against a running server, the store behind it a real SQLite file;
``collectguard feedback export`` and ``collectguard data build`` as commands on those files."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api import ServerThread

from model.config import Settings
from serve.api.app import create_app

pytestmark = pytest.mark.slow
KEY = "review-key-1"
ROOT = Path(__file__).resolve().parent.parent


def body(**extra: Any) -> dict[str, Any]:
    base = {
        "call_id": "call-001",
        "segment": 1,
        "text": "他在我们这欠了两万三千块",
        "speaker": "agent",
        "listener": "third_party",
        "verdict": "correct",
        "labels": ["third_party_disclosure"],
        "model_labels": [],
        "reviewer": "王审核",
        "note": "对第三方说了欠款",
    }
    return {**base, **extra}


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('review') / 'review.sqlite'}"


@pytest.fixture(scope="module")
def client(tiny_classifier, db_url: str) -> Iterator[httpx.Client]:
    settings = Settings.load(overrides=[f"review.database_url={db_url}", f"serve.api_key={KEY}"])
    srv = ServerThread(create_app(settings, classifier=tiny_classifier))
    with srv, httpx.Client(base_url=srv.url, timeout=60, headers={"X-API-Key": KEY}) as c:
        yield c


def test_post_returns_the_stored_review_and_get_lists_it(client: httpx.Client):
    r = client.post("/v1/reviews", json=body())
    assert r.status_code == 201, r.text
    stored = r.json()
    assert stored["id"] > 0 and stored["reviewer"] == "王审核" and stored["labels"] == ["third_party_disclosure"]
    assert stored["created_at"].endswith("+00:00")
    listed = client.get("/v1/reviews", params={"call_id": "call-001"}).json()["reviews"]
    assert stored in listed
    assert client.get("/v1/reviews", params={"call_id": "no-such-call"}).json() == {"reviews": []}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"verdict": "maybe"}, "verdict"),
        ({"labels": ["threat", "rudeness"]}, "labels[1]"),
        ({"labels": None}, "labels"),  # a correction must say the right labels
        ({"speaker": "robot"}, "speaker"),
        ({"segment": -1}, "segment"),
        ({"reviewer": ""}, "reviewer"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_review_is_a_422_naming_the_field(client: httpx.Client, change: dict, field: str):
    r = client.post("/v1/reviews", json=body(**change))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field


@pytest.mark.parametrize("missing", ["call_id", "segment", "text", "speaker", "listener", "verdict", "reviewer"])
def test_missing_field_is_a_422_naming_it(client: httpx.Client, missing: str):
    sent = body()
    del sent[missing]
    r = client.post("/v1/reviews", json=sent)
    assert r.status_code == 422 and r.json()["error"]["field"] == missing


def test_reviews_need_the_api_key_and_json(client: httpx.Client):
    anon = httpx.post(f"{client.base_url}/v1/reviews", json=body())
    assert anon.status_code == 401
    assert httpx.get(f"{client.base_url}/v1/reviews").status_code == 401
    r = client.post("/v1/reviews", content=b"call_id=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415


def test_parallel_http_writers_lose_nothing(client: httpx.Client):
    def post(i: int) -> int:
        r = client.post("/v1/reviews", json=body(call_id="parallel", segment=i, verdict="confirm", labels=None))
        assert r.status_code == 201, r.text
        return r.json()["id"]

    with ThreadPoolExecutor(12) as pool:
        ids = list(pool.map(post, range(120)))
    listed = client.get("/v1/reviews", params={"call_id": "parallel"}).json()["reviews"]
    assert len(set(ids)) == 120 and sorted(r["segment"] for r in listed) == list(range(120))


def test_call_verdicts_and_agreement(client: httpx.Client):
    r = client.post(
        "/v1/reviews/calls",
        json={
            "call_id": "call-001",
            "verdict": "third_party_disclosure",
            "model_verdict": "compliant",
            "reviewer": "王审核",
        },
    )
    assert r.status_code == 201, r.text
    assert (
        client.post("/v1/reviews/calls", json={"call_id": "x", "verdict": "bad", "reviewer": "a"}).json()["error"][
            "field"
        ]
        == "verdict"
    )
    figures = client.get("/v1/reviews/agreement").json()
    assert figures["labels"]["third_party_disclosure"]["missed"] >= 1
    assert figures["reviewers"]["王审核"]["call_verdicts"] >= 1


def _cli(*args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("collectguard")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "collectguard"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_feedback_export_and_data_build_take_the_reviews(client: httpx.Client, db_url: str, tmp_path: Path):
    client.post(
        "/v1/reviews",
        json=body(
            call_id="call-002", segment=0, text="你个老赖，不要脸，赶紧还钱", labels=["insult"], listener="debtor"
        ),
    )
    out = tmp_path / "feedback.jsonl"
    done = _cli("feedback", "export", "--out", str(out), "--set", f"review.database_url={db_url}")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    by_text = {r["text"]: r for r in rows}
    row = by_text["你个老赖，不要脸，赶紧还钱"]
    assert row["labels"] == ["insult"] and row["source"] == "review" and row["group"] == row["id"]
    assert row["speaker"] == "agent" and row["listener"] == "debtor"
    assert json.loads(done.stdout)["rows"] == len(rows)

    authored = tmp_path / "authored"
    authored.mkdir()
    (authored / "one.jsonl").write_text(
        json.dumps(
            {"id": "w1", "text": "您好，这里是瑞丰消费金融，您的账单逾期了", "labels": [], "source": "written"},
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    with open(out, "a", encoding="utf-8") as fh:
        fh.write('{"id": "broken", "text": "x", "labels": ["rudeness"]}\n')
    processed = tmp_path / "processed"
    done = _cli(
        "data",
        "build",
        "--out",
        str(processed),
        "--set",
        f"data.authored_dir={authored}",
        "--set",
        "data.template_rows=0",
        "--set",
        "data.augment_copies=0",
        "--set",
        f"data.feedback_paths=[{out}]",
    )
    assert done.returncode == 0, done.stderr
    assert "feedback row skipped" in done.stderr and "rudeness" in done.stderr
    built = [
        json.loads(line)
        for s in ("train", "validation", "test")
        for line in (processed / f"{s}.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    reviewed = [r for r in built if r["source"] == "review"]
    # equal texts are one row after the build's exact de-duplication (the 120 parallel reviews)
    assert {r["text"] for r in reviewed} == set(by_text) and len(reviewed) == len(by_text)
    assert {r["id"] for r in reviewed} <= {r["id"] for r in rows}
    stats = json.loads((processed / "stats.json").read_text(encoding="utf-8"))
    assert stats["feedback"]["rows"] == len(rows)


def test_personal_numbers_never_reach_the_store_or_the_export(client: httpx.Client, db_url: str, tmp_path: Path):
    phone, card = "138 1234 5678", "6222 0212 3456 7890 123"
    r = client.post(
        "/v1/reviews",
        json=body(call_id="call-pii", text=f"他欠款两万，联系电话{phone}，卡号{card}", note=f"客户说打{phone}"),
    )
    assert r.status_code == 201, r.text
    stored = r.json()
    assert phone not in stored["text"] and card not in stored["text"] and "[PHONE]" in stored["text"]
    assert phone not in stored["note"] and "两万" in stored["text"]  # amounts are left alone
    out = tmp_path / "feedback.jsonl"
    done = _cli("feedback", "export", "--out", str(out), "--set", f"review.database_url={db_url}")
    assert done.returncode == 0, done.stderr
    text = out.read_text(encoding="utf-8")
    assert "call-pii" in text and phone not in text and card not in text and "13812345678" not in text


def test_export_masks_reviews_stored_before_masking_existed():
    from serve.review.export import feedback_rows

    old = {"id": 1, "call_id": "c", "segment": 0, "text": "打13812345678找他", "labels": [], "model_labels": [],
           "verdict": "confirm", "speaker": "agent", "listener": "debtor", "reviewer": "r", "note": None,
           "created_at": "2026-12-01T00:00:00+00:00"}  # fmt: skip
    rows, _ = feedback_rows([old])
    assert rows and "13812345678" not in rows[0]["text"]
    kept, _ = feedback_rows([old], mask=False)
    assert "13812345678" in kept[0]["text"]
