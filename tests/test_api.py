"""The HTTP API against a real server: uvicorn on a loopback port, spoken to over HTTP.

One in-process server (auth off, default limits) is shared by the module; one `collectguard
serve` subprocess (API key, CORS and a lowered limit from env vars and --set) tests the command
end to end. Scores come from the tiny random model, so only mechanics are asserted: equality
with direct ``Classifier.score`` calls, order, ids, errors, headers.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn

from model.config import Settings
from model.labels import ALL_LABELS, VIOLATIONS
from serve.api.app import create_app
from serve.api.batcher import MicroBatcher
from serve.summary import summarize_call

pytestmark = pytest.mark.slow

TEXTS = [
    "您好，我是瑞丰消费金融的工作人员，您的账单已经逾期了。",
    "你再不还钱我就去你单位找你领导",
    "麻烦您转告他给我们回个电话",
    "你个老赖，不要脸",
    "他在我们这欠了两万三千块",
    "好的，我下周一之前一定还上。",
    "喂 你好 请问是王先生吗 嗯嗯嗯 那个那个 您的账单",
    "ＡＢＣ全角字母，還有繁體字。",
]
SPEAKERS = ["agent", "customer"]
LISTENERS = ["debtor", "third_party", "unknown"]
API_KEY = "s3cret-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """uvicorn serving ``app`` in a background thread (signal handlers are main-thread only)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture(scope="module")
def server(tiny_artifact: Path) -> Iterator[ServerThread]:
    settings = Settings()
    settings.serve.model_dir = tiny_artifact  # loaded by the lifespan, as in production
    settings.inference.backend = "torch"  # scores compared to 1e-5 with tiny_classifier's (test_serve_fair: int8)
    with ServerThread(create_app(settings)) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def cli_server(tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`collectguard serve` in a subprocess: key and CORS from env vars, a limit from --set."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve") / "stderr.log"
    script = Path(sys.executable).with_name("collectguard")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "collectguard"]
    cmd += ["serve", "--model", str(tiny_artifact), "--port", str(port), "--set", "serve.max_segments=4"]
    env = {
        **os.environ,
        "COLLECTGUARD_SERVE__API_KEY": API_KEY,
        "COLLECTGUARD_SERVE__CORS_ORIGINS": '["https://ops.example"]',
        "COLLECTGUARD_INFERENCE__THREADS": "1",
    }
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"collectguard serve exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"collectguard serve did not become ready:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield {"url": url, "log": log_path}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def assert_same(api: list[dict[str, Any]], direct: list[dict[str, Any]]) -> None:
    """Batched and direct scores agree up to padding noise; decisions agree exactly."""
    assert len(api) == len(direct)
    for a, d in zip(api, direct, strict=True):
        assert set(a["scores"]) == set(ALL_LABELS)
        for label in ALL_LABELS:
            assert a["scores"][label] == pytest.approx(d["scores"][label], abs=1e-5)
        assert a["labels"] == d["labels"]
        assert a["label"] == d["label"]


def segments_for(k: int, n: int) -> list[dict[str, Any]]:
    return [
        {"text": TEXTS[(k + i) % len(TEXTS)], "speaker": SPEAKERS[(k + i) % 2], "listener": LISTENERS[(k + i) % 3]}
        for i in range(n)
    ]


def assert_error(resp: httpx.Response, status: int, field: str | None = None, *needles: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert err["type"] and err["message"]
    if field is not None:
        assert err.get("field") == field, err
    for needle in needles:
        assert needle in err["message"], err
    assert err.get("request_id") == resp.headers["x-request-id"]
    return err


# -- happy paths ---------------------------------------------------------------------------------------


def test_health_ready_and_model(client: httpx.Client, tiny_classifier) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    info = client.get("/v1/model").json()
    assert info["name"] == "tiny-test" and info["version"] == "0.0.0-test"
    assert info["labels"] == list(VIOLATIONS) and info["all_labels"] == list(ALL_LABELS)
    assert info["thresholds"] == tiny_classifier.thresholds
    assert info["preprocess_version"] == tiny_classifier.preprocess_version
    assert info["max_length"] == 32 and info["stride"] == 8
    assert info["base_encoder"] == tiny_classifier.manifest.base["encoder"]
    assert isinstance(info["metrics"], dict)


def test_score_matches_direct_classifier(client: httpx.Client, tiny_classifier) -> None:
    segments = segments_for(0, 5)
    segments[0]["id"] = "seg-a"
    segments[3]["id"] = "seg-d"
    body = client.post("/v1/score", json={"segments": segments}).json()
    assert body["model"] == {"name": "tiny-test", "version": "0.0.0-test"}
    assert [r["id"] for r in body["results"]] == ["seg-a", None, None, "seg-d", None]
    assert_same(body["results"], tiny_classifier.score(segments))


def test_score_defaults_speaker_and_listener(client: httpx.Client, tiny_classifier) -> None:
    body = client.post("/v1/score", json={"segments": [{"text": TEXTS[2]}]}).json()
    assert_same(body["results"], tiny_classifier.score([{"text": TEXTS[2], "speaker": "agent", "listener": "unknown"}]))


def test_per_request_thresholds(client: httpx.Client) -> None:
    segments = segments_for(1, 3)
    low = client.post("/v1/score", json={"segments": segments, "thresholds": dict.fromkeys(VIOLATIONS, 0.0)}).json()
    assert all(r["labels"] == list(VIOLATIONS) and r["label"] == "threat" for r in low["results"])
    high = client.post("/v1/score", json={"segments": segments, "thresholds": dict.fromkeys(VIOLATIONS, 1.0)}).json()
    assert all(r["labels"] == [] and r["label"] == "compliant" for r in high["results"])
    one = client.post("/v1/score", json={"segments": segments, "thresholds": {"insult": 0.0}}).json()
    assert all("insult" in r["labels"] for r in one["results"])


def test_calls_summary(client: httpx.Client, tiny_classifier) -> None:
    segments = [{**s, "start": 1.5 * i, "end": 1.5 * i + 1.0} for i, s in enumerate(segments_for(2, 6))]
    thresholds = {"threat": 0.0}
    resp = client.post("/v1/calls", json={"call_id": "call-42", "segments": segments, "thresholds": thresholds})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["call_id"] == "call-42" and body["model"]["name"] == "tiny-test"
    direct = tiny_classifier.score(segments, thresholds)
    assert_same(body["results"], direct)
    expected = summarize_call(segments, body["results"])
    assert body["summary"] == json.loads(json.dumps(expected))
    assert body["summary"]["verdict"] == "threat"  # threshold 0 flags every agent segment
    assert body["summary"]["first_at"]["threat"] == 0.0
    assert body["summary"]["n_agent_segments"] == sum(s["speaker"] == "agent" for s in segments)


def test_calls_without_timing(client: httpx.Client) -> None:
    resp = client.post("/v1/calls", json={"call_id": "c", "segments": [{"text": TEXTS[0]}]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["summary"]["n_segments"] == 1


def test_openapi_documents_limits_and_errors(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/v1/score", "/v1/calls", "/v1/model", "/healthz", "/readyz"} <= set(spec["paths"])
    schemas = spec["components"]["schemas"]
    assert schemas["ScoreRequest"]["properties"]["segments"]["maxItems"] == 256
    seg = next(v for k, v in schemas.items() if k.startswith("SegmentIn"))
    assert seg["properties"]["text"]["maxLength"] == 5000
    responses = spec["paths"]["/v1/score"]["post"]["responses"]
    assert {"200", "400", "413", "415", "422"} <= set(responses)
    assert responses["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")


def test_request_id_echoed_or_generated(client: httpx.Client) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123.x"}).headers["x-request-id"] == "abc-123.x"
    generated = client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    weird = client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces" + "x" * 200})
    assert weird.headers["x-request-id"] != "bad id\twith spaces" and len(weird.headers["x-request-id"]) == 32
    err = client.post("/v1/score", json={}, headers={"X-Request-ID": "req-7"}).json()["error"]
    assert err["request_id"] == "req-7"


def test_cors_off_by_default(client: httpx.Client) -> None:
    resp = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in resp.headers


def test_concurrent_requests_are_batched_and_exact(server: ServerThread, tiny_classifier) -> None:
    payloads = [{"segments": segments_for(k, 40 if k == 7 else 1 + k % 5)} for k in range(50)]
    batcher = server.app.state.service.batcher
    before = batcher.batches

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
            return await asyncio.gather(*(c.post("/v1/score", json=p) for p in payloads))

    responses = asyncio.run(fire())
    assert [r.status_code for r in responses] == [200] * 50
    for payload, resp in zip(payloads, responses, strict=True):
        assert_same(resp.json()["results"], tiny_classifier.score(payload["segments"]))
    # Without cross-request batching there would be at least one batch per request (51 here).
    assert batcher.batches - before < 50


def test_inference_does_not_block_event_loop(server: ServerThread, client: httpx.Client) -> None:
    batcher = server.app.state.service.batcher
    original, gate = batcher.predict, threading.Event()

    def held(segments):  # a model stuck in a long forward pass
        gate.wait(10)
        return original(segments)

    batcher.predict = held
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(client.post, "/v1/score", json={"segments": [{"text": TEXTS[0]}]})
            time.sleep(0.3)
            t0 = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            assert client.get("/readyz").status_code == 200
            assert time.perf_counter() - t0 < 1.0
            assert not pending.done()
            gate.set()
            assert pending.result(timeout=20).status_code == 200
    finally:
        batcher.predict = original
        gate.set()


def test_not_ready_without_model() -> None:
    """Before the lifespan has loaded a model: alive, not ready, /v1 answers 503 (no hang)."""

    async def probe() -> tuple[httpx.Response, ...]:
        transport = httpx.ASGITransport(app=create_app(Settings()))  # no lifespan: nothing loaded
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return (
                await c.get("/healthz"),
                await c.get("/readyz"),
                await c.post("/v1/score", json={"segments": [{"text": "你好"}]}),
                await c.get("/v1/model"),
            )

    health, ready, score, model = asyncio.run(probe())
    assert health.status_code == 200 and ready.status_code == 503
    assert assert_error(score, 503)["type"] == "not_ready"
    assert_error(model, 503)


def test_batcher_isolates_a_failing_request() -> None:
    """A batch that fails is retried request by request: only the bad request gets the error."""

    class Model:  # one window per segment, its "token ids" the text's code points
        def prepare(self, segments):
            return SimpleNamespace(ids=[[ord(c) for c in s.text] for s in segments])

        def run_windows(self, ids):
            if any(x == [ord(c) for c in "boom"] for x in ids):
                raise ValueError("boom")
            return np.array([[len(x), 0.0, 0.0] for x in ids], dtype=np.float32)

        def combine(self, prepared, scores):
            return scores

    async def go():
        from model.preprocess import Segment

        batcher = MicroBatcher(Model(), max_size=4, max_wait_ms=20)
        await batcher.start()
        try:
            return await asyncio.gather(
                batcher.submit([Segment("ab"), Segment("abcd"), Segment("a"), Segment("abc"), Segment("abcde")]),
                batcher.submit([Segment("boom")]),
                batcher.submit([Segment("xyz")]),
                return_exceptions=True,
            )
        finally:
            await batcher.stop()

    good, bad, other = asyncio.run(go())
    assert good[:, 0].tolist() == [2, 4, 1, 3, 5] and other[:, 0].tolist() == [3]
    assert isinstance(bad, ValueError)


# -- bad input ------------------------------------------------------------------------------------------

SEG = {"text": TEXTS[0]}
BAD_JSON_CASES = [
    # (id, path, body, status, field, needles)
    ("empty-text", "/v1/score", {"segments": [SEG, {"text": ""}]}, 422, "segments[1].text", ()),
    ("whitespace", "/v1/score", {"segments": [{"text": " \t\n "}]}, 422, "segments[0].text", ("empty",)),
    ("normalises-to-nothing", "/v1/score", {"segments": [{"text": "\u200b\u200d\ufeff"}]}, 422, "segments[0].text",
     ("no content",)),
    ("text-not-string", "/v1/score", {"segments": [{"text": 123}]}, 422, "segments[0].text", ()),
    ("segments-not-list", "/v1/score", {"segments": "hello"}, 422, "segments", ()),
    ("segment-not-object", "/v1/score", {"segments": ["hello"]}, 422, "segments[0]", ()),
    ("no-segments", "/v1/score", {"segments": []}, 422, "segments", ()),
    ("missing-segments", "/v1/score", {}, 422, "segments", ()),
    ("body-not-object", "/v1/score", [SEG], 422, None, ()),
    ("unknown-speaker", "/v1/score", {"segments": [{**SEG, "speaker": "robot"}]}, 422, "segments[0].speaker",
     ("agent",)),
    ("unknown-listener", "/v1/score", {"segments": [{**SEG, "listener": "boss"}]}, 422, "segments[0].listener",
     ("third_party",)),
    ("unknown-field", "/v1/score", {"segments": [{**SEG, "listner": "debtor"}]}, 422, "segments[0].listner", ()),
    ("unknown-threshold", "/v1/score", {"segments": [SEG], "thresholds": {"rudeness": 0.5}}, 422,
     "thresholds.rudeness", ()),
    ("threshold-above-1", "/v1/score", {"segments": [SEG], "thresholds": {"threat": 1.5}}, 422,
     "thresholds.threat", ("1",)),
    ("threshold-negative", "/v1/score", {"segments": [SEG], "thresholds": {"insult": -0.1}}, 422,
     "thresholds.insult", ("0",)),
    ("threshold-string", "/v1/score", {"segments": [SEG], "thresholds": {"insult": "0.5"}}, 422,
     "thresholds.insult", ()),
    ("threshold-bool", "/v1/score", {"segments": [SEG], "thresholds": {"insult": True}}, 422,
     "thresholds.insult", ()),
    ("thresholds-not-object", "/v1/score", {"segments": [SEG], "thresholds": [0.5]}, 422, "thresholds", ()),
    ("too-many-segments", "/v1/score", {"segments": [SEG] * 257}, 413, "segments", ("257", "256")),
    ("segment-too-long", "/v1/score", {"segments": [SEG, {"text": "欠" * 5001}]}, 413, "segments[1].text",
     ("5001", "5000")),
    ("request-too-long", "/v1/score", {"segments": [{"text": "欠" * 5000}] * 41}, 413, "segments",
     ("205000", "200000")),
    ("call-missing-id", "/v1/calls", {"segments": [SEG]}, 422, "call_id", ()),
    ("call-end-before-start", "/v1/calls", {"call_id": "c", "segments": [{**SEG, "start": 5.0, "end": 2.0}]}, 422,
     "segments[0]", ("before start",)),
    ("call-negative-start", "/v1/calls", {"call_id": "c", "segments": [{**SEG, "start": -1}]}, 422,
     "segments[0].start", ()),
    ("call-whitespace", "/v1/calls", {"call_id": "c", "segments": [SEG, {"text": "  "}]}, 422, "segments[1].text",
     ()),
    ("call-too-many", "/v1/calls", {"call_id": "c", "segments": [SEG] * 300}, 413, "segments", ("256",)),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "status", "field", "needles"), [c[1:] for c in BAD_JSON_CASES],
                         ids=[c[0] for c in BAD_JSON_CASES])  # fmt: skip
def test_bad_json_input(client: httpx.Client, path: str, body: Any, status: int, field: str | None, needles) -> None:
    err = assert_error(client.post(path, json=body), status, field, *needles)
    if status == 422 and "errors" in err:
        assert err["errors"][0]["field"] == err["field"]


@pytest.mark.parametrize(
    ("content", "headers", "status", "kind"),
    [
        (b'{"segments": [', {"Content-Type": "application/json"}, 400, "invalid_json"),
        (b"not json at all", {"Content-Type": "application/json"}, 400, "invalid_json"),
        (b"\xff\xfe\x00garbage", {"Content-Type": "application/json"}, 400, None),
        (b"[" * 50_000 + b"]" * 50_000, {"Content-Type": "application/json"}, 400, None),
        (b"", {"Content-Type": "application/json"}, 422, "validation_error"),
        (b'{"segments": [{"text": "hi"}]}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        (b'{"segments": [{"text": "hi"}]}', {"Content-Type": "application/x-www-form-urlencoded"}, 415, None),
        (b'{"segments": [{"text": "hi"}]}', {}, 415, "unsupported_media_type"),
        (b"x" * 3_000_000, {"Content-Type": "application/json"}, 413, "too_large"),
    ],
    ids=["truncated", "not-json", "not-utf8", "deeply-nested", "empty-body", "text-plain", "form", "no-type", "huge"],
)
def test_bad_raw_body(client: httpx.Client, content: bytes, headers: dict[str, str], status: int, kind) -> None:
    resp = client.post("/v1/score", content=content, headers=headers)  # bytes: httpx adds no Content-Type
    err = assert_error(resp, status)
    if kind:
        assert err["type"] == kind


def test_unknown_path_and_method(client: httpx.Client) -> None:
    assert_error(client.get("/v1/nope"), 404, None, "/v1/nope")
    assert_error(client.get("/v1/score"), 405, None, "GET")


# -- the command: env vars, --set, auth, CORS, access log ------------------------------------------------


def test_cli_server_auth(cli_server: dict[str, Any]) -> None:
    url = cli_server["url"]
    assert httpx.get(f"{url}/healthz").status_code == 200  # open
    assert httpx.get(f"{url}/readyz").status_code == 200
    missing = httpx.get(f"{url}/v1/model")
    assert_error(missing, 401, None, "API key")
    assert missing.headers["www-authenticate"] == "Bearer"
    assert_error(httpx.get(f"{url}/v1/model", headers={"X-API-Key": "wrong"}), 401, None, "invalid")
    assert_error(httpx.get(f"{url}/v1/model", headers={"Authorization": "Bearer wrong"}), 401)
    # Refused before the body is even looked at.
    assert_error(httpx.post(f"{url}/v1/score", content=b"{", headers={"Content-Type": "application/json"}), 401)
    assert httpx.get(f"{url}/v1/model", headers={"X-API-Key": API_KEY}).status_code == 200
    ok = httpx.post(f"{url}/v1/score", json={"segments": [SEG]}, headers={"Authorization": f"Bearer {API_KEY}"})
    assert ok.status_code == 200, ok.text
    spec = httpx.get(f"{url}/openapi.json").json()
    assert "ApiKey" in spec["components"]["securitySchemes"]


def test_cli_server_settings_and_cors(cli_server: dict[str, Any]) -> None:
    url, key = cli_server["url"], {"X-API-Key": API_KEY}
    # --set serve.max_segments=4 reached the server.
    assert_error(httpx.post(f"{url}/v1/score", json={"segments": [SEG] * 5}, headers=key), 413, "segments", "4")
    preflight = httpx.options(
        f"{url}/v1/score",
        headers={"Origin": "https://ops.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "x-api-key,content-type"},
    )  # fmt: skip
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://ops.example"
    other = httpx.get(f"{url}/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_cli_server_access_log(cli_server: dict[str, Any]) -> None:
    url = cli_server["url"]
    headers = {"X-API-Key": API_KEY, "X-Request-ID": "log-me-1"}
    resp = httpx.post(f"{url}/v1/score", json={"segments": [SEG, SEG, SEG]}, headers=headers)
    assert resp.status_code == 200 and resp.headers["x-request-id"] == "log-me-1"
    deadline = time.monotonic() + 5
    while True:
        lines = [line for line in cli_server["log"].read_text().splitlines() if "log-me-1" in line]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert lines, cli_server["log"].read_text()
    record = json.loads(lines[-1])
    assert record["method"] == "POST" and record["path"] == "/v1/score" and record["status"] == 200
    assert record["n_segments"] == 3 and record["request_id"] == "log-me-1"
    assert isinstance(record["duration_ms"], float | int) and record["duration_ms"] >= 0
