"""The API under contention, over HTTP against a real uvicorn: fair interleaving, a bounded queue
(503 + Retry-After) and per-request deadlines (504). Also the scheduler's passes, unit by unit.

The model is the tiny one; a slow model is simulated by wrapping ``batcher.predict`` (one call =
one forward pass), so timings here are the scheduler's, not the network's.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from test_api import ServerThread, assert_error

from model.config import Settings
from serve.api.app import create_app
from serve.api.batcher import MicroBatcher

pytestmark = pytest.mark.slow

LONG = "您好，这里是澜舟消费金融，关于您的分期账单我们想和您确认一下还款安排，"  # ~35 characters


@contextmanager
def serving(classifier, **serve: object) -> Iterator[ServerThread]:
    settings = Settings()
    for key, value in serve.items():
        setattr(settings.serve, key, value)
    with ServerThread(create_app(settings, classifier=classifier)) as srv:
        yield srv


def slowed(batcher: MicroBatcher, fixed_s: float, per_window_s: float) -> None:
    """Make every forward pass cost ``fixed_s + per_window_s × windows`` on top of the real one."""
    real = batcher.predict

    def slow(ids):
        time.sleep(fixed_s + per_window_s * len(ids))
        return real(ids)

    batcher.predict = slow


def gated(batcher: MicroBatcher) -> threading.Event:
    """Hold every forward pass until the returned event is set."""
    real, gate = batcher.predict, threading.Event()

    def held(ids):
        gate.wait(30)
        return real(ids)

    batcher.predict = held
    return gate


def test_small_requests_are_served_while_a_big_one_is_scored(tiny_classifier):
    big = [{"text": LONG * 3, "speaker": "agent", "listener": "debtor"} for _ in range(64)]  # ~500 windows
    with serving(tiny_classifier, batch_max_size=8, batch_max_tokens=256, batch_max_wait_ms=2.0) as srv:
        batcher = srv.app.state.service.batcher
        slowed(batcher, 0.02, 0.001)  # ~28 ms a pass: the big request alone takes ~2 s
        with httpx.Client(base_url=srv.url, timeout=60) as client, ThreadPoolExecutor(1) as pool:
            t0 = time.perf_counter()
            pending = pool.submit(client.post, "/v1/score", json={"segments": big})
            while batcher.windows == 0:  # the big request is being scored
                time.sleep(0.01)
            small = []
            for i in range(8):
                t = time.perf_counter()
                resp = client.post("/v1/score", json={"segments": [{"text": f"你个老赖，第{i}次了"}]})
                assert resp.status_code == 200, resp.text
                small.append(time.perf_counter() - t)
            still_running = not pending.done()
            resp = pending.result(60)
            big_s = time.perf_counter() - t0
    assert resp.status_code == 200, resp.text
    assert still_running, "the small requests should have finished while the big one was still scored"
    # first-come-first-served would make each small request wait for the rest of the big one (~2 s)
    assert max(small) < 0.5 and max(small) < big_s / 4, (small, big_s)
    direct = tiny_classifier.score(big)
    got = resp.json()["results"]
    np.testing.assert_allclose([r["scores"]["threat"] for r in got], [r["scores"]["threat"] for r in direct],
                               atol=1e-5)  # fmt: skip
    assert [r["labels"] for r in got] == [r["labels"] for r in direct]


def test_a_full_queue_answers_503_with_retry_after(tiny_classifier):
    with serving(tiny_classifier, batch_max_size=8, queue_max_windows=20) as srv:
        batcher = srv.app.state.service.batcher
        gate = gated(batcher)
        with httpx.Client(base_url=srv.url, timeout=60) as client, ThreadPoolExecutor(1) as pool:
            first = pool.submit(client.post, "/v1/score", json={"segments": [{"text": "嗯"}] * 30})
            deadline = time.monotonic() + 10
            while batcher.queued_windows == 0 and time.monotonic() < deadline:  # admitted: alone, however big
                time.sleep(0.01)
            assert batcher.queued_windows == 22  # 8 windows are in the held pass
            refused = client.post("/v1/score", json={"segments": [{"text": "你好"}] * 5})
            err = assert_error(refused, 503, None, "queued", "retry")
            assert err["type"] == "overloaded"
            assert int(refused.headers["retry-after"]) >= 1
            assert client.get("/readyz").status_code == 200  # busy is not unready
            gate.set()
            assert first.result(30).status_code == 200
            assert client.post("/v1/score", json={"segments": [{"text": "你好"}] * 5}).status_code == 200


def test_a_request_past_its_deadline_gets_504_and_its_work_is_dropped(tiny_classifier):
    with serving(tiny_classifier, batch_max_size=4, request_timeout_s=0.5) as srv:
        batcher = srv.app.state.service.batcher
        gate = gated(batcher)
        with httpx.Client(base_url=srv.url, timeout=60) as client:
            t0 = time.perf_counter()
            late = client.post("/v1/score", json={"segments": [{"text": "你好"}] * 12})
            waited = time.perf_counter() - t0
            err = assert_error(late, 504, None, "deadline of 0.5 s", "0 of 12 windows")
            assert err["type"] == "timeout" and 0.5 <= waited < 5
            assert batcher.queued_windows == 0  # the 8 windows not yet in a pass were dropped
            gate.set()
            ok = client.post("/v1/score", json={"segments": [{"text": "你好"}]})
            assert ok.status_code == 200, ok.text
        spec = httpx.get(f"{srv.url}/openapi.json").json()
        assert {"503", "504"} <= set(spec["paths"]["/v1/score"]["post"]["responses"])


def test_the_configured_backend_is_served(tiny_artifact, tmp_path, monkeypatch):
    """The server loads the model on the configured backend (here int8 ONNX) and serves what it scores directly."""
    from model.classifier import Classifier

    monkeypatch.setenv("COLLECTGUARD_CACHE", str(tmp_path / "cache"))
    settings = Settings()
    settings.serve.model_dir = tiny_artifact
    settings.inference.backend = "auto"
    segments = [{"text": LONG * k} for k in range(1, 6)]
    with ServerThread(create_app(settings)) as srv:
        assert srv.app.state.service.classifier.backend == "onnx-int8"
        got = httpx.post(f"{srv.url}/v1/score", json={"segments": segments}, timeout=60).json()["results"]
    direct = Classifier.load(tiny_artifact, config=settings.inference).score(segments)
    for a, b in zip(got, direct, strict=True):
        assert a["scores"]["threat"] == pytest.approx(b["scores"]["threat"], abs=0.01)


# -- the scheduler's passes -----------------------------------------------------------------------


class Recorder:
    """A window model whose windows are given lengths; records every pass it runs."""

    def __init__(self) -> None:
        self.passes: list[list[tuple[int, int]]] = []  # (request, length) per window

    def prepare(self, segments):  # a segment's text is "request:length,length,..."
        req, _, lengths = segments[0].text.partition(":")
        return SimpleNamespace(ids=[[int(req)] * int(n) for n in lengths.split(",")])

    def run_windows(self, ids):
        self.passes.append([(x[0], len(x)) for x in ids])
        return np.zeros((len(ids), 3), dtype=np.float32)

    def combine(self, prepared, scores):
        return scores


def test_passes_interleave_requests_bucket_by_length_and_respect_limits():
    from model.preprocess import Segment

    model = Recorder()
    a = "1:" + ",".join(["5"] * 10 + ["30"] * 10)
    b = "2:" + ",".join(["30"] * 5 + ["5"] * 5)

    async def go():
        batcher = MicroBatcher(model, max_size=4, max_wait_ms=50, max_tokens=64)
        await batcher.start()
        try:
            return await asyncio.gather(batcher.submit([Segment(a)]), batcher.submit([Segment(b)]))
        finally:
            await batcher.stop()

    ra, rb = asyncio.run(go())
    assert ra.shape == (20, 3) and rb.shape == (10, 3)
    assert sum(len(p) for p in model.passes) == 30
    left = {1: Counter([5] * 10 + [30] * 10), 2: Counter([30] * 5 + [5] * 5)}  # windows not yet run
    for p in model.passes:
        width = max(n for _, n in p)
        assert (len(p) <= 4 and len(p) * width <= 64) or len(p) == 1  # a pass never exceeds its limits
        # short windows travel with short ones, whoever sent them: lengths mix in a pass only when a
        # request had no window of the other length left (which one depends on arrival timing)
        # (one request's own windows run shortest first, so they mix only at its last short window,
        # e.g. when it is the only request left and the pass is filled up to max_tokens)
        for (r1, n1), (r2, n2) in itertools.combinations(p, 2):
            if r1 == r2:
                assert n1 == n2 or left[r1][min(n1, n2)] == 1, (p, left)
            else:
                assert n1 == n2 or not left[r2][n1] or not left[r1][n2], (p, left)
        for r, n in p:
            left[r][n] -= 1
    with_b = [i for i, p in enumerate(model.passes) if any(r == 2 for r, _ in p)]
    with_a = [i for i, p in enumerate(model.passes) if any(r == 1 for r, _ in p)]
    assert any({r for r, _ in p} == {1, 2} for p in model.passes)  # requests share passes
    assert with_b[-1] < with_a[-1]  # the later, smaller request did not wait for the whole earlier one
