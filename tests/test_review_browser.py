"""The review page and /docs in a real browser: Debian's Chromium driven by Playwright, every
request that leaves the test server blocked (the page must work air-gapped).

The server runs in-process (uvicorn, the tiny random model, an API key, a SQLite store file) and
also lists a relabel output folder written here with the ``evidence`` spans and call ``flags``
that the call report carries (issue 12's shape), to see them rendered.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api import ServerThread

from model.config import Settings
from serve.api.app import create_app
from serve.summary import summarize_call

CHROMIUM = os.environ.get("COLLECTGUARD_CHROMIUM", "/usr/bin/chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}: apt-get install chromium"),
]
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright (PyPI) is a test dependency")
KEY = "browser-key-7"
ROOT = Path(__file__).resolve().parent.parent
README_SHOT = ROOT / "serve" / "review" / "call_view.png"


def _scores(threat: float = 0.1, insult: float = 0.1, tpd: float = 0.1) -> dict[str, float]:
    return {
        "threat": threat,
        "insult": insult,
        "third_party_disclosure": tpd,
        "compliant": 1 - max(threat, insult, tpd),
    }


FOLDER_CALLS: list[dict[str, Any]] = [
    {
        "call_id": "debt-0417",
        "flags": {
            "anonymous_collection": {
                "value": True,
                "segments": [1],
                "reason": "no institution or name before the debt",
            },
            "outside_permitted_hours": None,
            "complaint": False,
        },
        "segments": [
            ("agent", "debtor", "喂，王先生吗，你那笔钱什么时候还", _scores(), [], []),
            (
                "agent",
                "debtor",
                "你再不还钱我就去你单位找你领导",
                _scores(threat=0.97),
                ["threat"],
                [
                    {"start": 7, "end": 11, "text": "去你单位", "label": "threat", "weight": 0.81},
                    {"start": 12, "end": 15, "text": "你领导", "label": "threat", "weight": 0.35},
                ],
            ),
            ("customer", "unknown", "你们这样我要投诉到12378", _scores(), [], []),
        ],
    },
    {
        "call_id": "debt-0418",
        "flags": {"anonymous_collection": False, "outside_permitted_hours": True, "complaint": False},
        "segments": [("agent", "debtor", "您再不处理，后果自负", _scores(threat=0.52), ["threat"], [])],
    },
    {
        "call_id": "debt-0419",
        "flags": {"anonymous_collection": False, "outside_permitted_hours": False, "complaint": False},
        "segments": [
            (
                "agent",
                "debtor",
                "你个老赖",
                _scores(0.01, 0.95, 0.01),
                ["insult"],
                [{"start": 2, "end": 4, "text": "老赖", "label": "insult", "weight": 0.9}],
            ),
            ("agent", "debtor", "请尽快还款", _scores(0.02, 0.02, 0.02), [], []),
        ],
    },
]


def write_relabel_folder(out: Path) -> Path:
    """``calls.jsonl`` + ``segments.parquet`` as ``collectguard relabel`` writes them, plus evidence/flags."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    seg_rows, call_lines = [], []
    for call in FOLDER_CALLS:
        segs, results = [], []
        for i, (speaker, listener, text, scores, labels, evidence) in enumerate(call["segments"]):
            segs.append(
                {"start": 3.0 * i, "end": 3.0 * i + 2.5, "speaker": speaker, "listener": listener, "text": text}
            )
            results.append({"scores": scores, "labels": labels})
            seg_rows.append(
                {
                    "call_id": call["call_id"],
                    "segment": i,
                    **segs[-1],
                    **{f"score_{k}": v for k, v in scores.items()},
                    "labels": labels,
                    "label": labels[0] if labels else "compliant",
                    "model_version": "t",
                    "preprocess_version": "t",
                    "evidence": evidence,
                }
            )
        summary = summarize_call(segs, results)
        call_lines.append(
            json.dumps(
                {
                    "call_id": call["call_id"],
                    **summary,
                    "metadata": {"agent": "A-07"},
                    "source": "calls.jsonl",
                    "flags": call["flags"],
                },
                ensure_ascii=False,
            )
        )
    pq.write_table(pa.Table.from_pylist(seg_rows), out / "segments.parquet")
    (out / "calls.jsonl").write_text("\n".join(call_lines) + "\n", encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def server(tiny_classifier, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("review-browser")
    db = f"sqlite:///{tmp / 'review.sqlite'}"
    folder = write_relabel_folder(tmp / "relabel-out")
    settings = Settings.load(
        overrides=[f"review.database_url={db}", f"serve.api_key={KEY}", f"review.calls_dir={folder}"]
    )
    with ServerThread(create_app(settings, classifier=tiny_classifier)) as srv:
        yield {"url": srv.url, "db": db, "tmp": tmp}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Watch:
    """A browser context that blocks (and records) every request not aimed at the test server,
    and records dialogs (an ``alert`` means injected script ran) and page errors."""

    def __init__(self, browser: Any, base: str) -> None:
        self.blocked: list[str] = []
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context(base_url=base, viewport={"width": 1280, "height": 900})
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.base = base

    def _route(self, route: Any) -> None:
        if route.request.url.startswith(self.base):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def login(self) -> Watch:
        self.page.goto("/review")
        self.page.fill('input[name="key"]', KEY)
        self.page.click('button[type="submit"]')
        self.page.wait_for_url(re.compile(r"/review$"))
        self.page.fill("#reviewer", "李质检")
        return self


@pytest.fixture
def watch(browser: Any, server: dict[str, Any]) -> Iterator[Watch]:
    w = Watch(browser, server["url"]).login()
    yield w
    w.context.close()
    assert w.blocked == [], f"the page tried to reach outside the server: {w.blocked}"
    assert w.dialogs == [], f"script ran in the page: {w.dialogs}"
    assert w.errors == [], f"JavaScript errors: {w.errors}"


def api(server: dict[str, Any]) -> httpx.Client:
    return httpx.Client(base_url=server["url"], headers={"X-API-Key": KEY}, timeout=30)


def paste(w: Watch, text: str) -> None:
    w.page.goto("/review")
    w.page.fill('textarea[name="text"]', text)
    w.page.click('#intake button[type="submit"]')
    w.page.wait_for_load_state()


def test_docs_render_offline(watch: Watch):
    watch.page.goto("/docs")
    watch.page.wait_for_selector(".swagger-ui .info .title", timeout=20000)
    assert "collectguard" in watch.page.inner_text(".swagger-ui .info .title")
    watch.page.wait_for_selector(".opblock-summary-path:has-text('/v1/reviews')")
    assert watch.page.locator(".opblock").count() >= 5


def test_page_asks_for_the_key_and_never_puts_it_in_a_url(browser: Any, server: dict[str, Any]):
    w = Watch(browser, server["url"])
    urls: list[str] = []
    w.page.on("request", lambda r: urls.append(r.url))
    w.page.goto("/review/queue")
    assert "/review/login" in w.page.url
    w.page.fill('input[name="key"]', "wrong")
    w.page.click('button[type="submit"]')
    assert w.page.inner_text("#login-error") == "Wrong key."
    w.page.fill('input[name="key"]', KEY)
    w.page.click('button[type="submit"]')
    w.page.wait_for_url(re.compile(r"/review/queue$"))
    assert not any(KEY in u for u in urls)
    # a form posted without the session's CSRF token is refused
    r = w.context.request.post(f"{server['url']}/review/calls/f1/verdict", form={"verdict": "threat", "reviewer": "x"})
    assert r.status == 403
    w.context.close()
    assert w.blocked == []


def test_paste_review_with_keys_then_api_and_export(watch: Watch, server: dict[str, Any], tmp_path: Path):
    call = {
        "call_id": "paste-0001",
        "segments": [
            {"speaker": "坐席", "text": "您好，我是瑞丰消费金融的工作人员", "start": 0.0, "end": 2.0},
            {
                "speaker": "坐席",
                "listener": "third_party",
                "text": "他在我们这欠了两万三千块",
                "start": 2.5,
                "end": 5.0,
            },
            {"speaker": "客户", "text": "我会转告他的", "start": 5.5, "end": 7.0},
        ],
    }
    paste(watch, json.dumps(call, ensure_ascii=False))
    page = watch.page
    assert re.search(r"/review/calls/s\d+$", page.url), page.url
    assert page.inner_text("#call-id") == "paste-0001"
    assert page.locator(".seg").count() == 3
    page.locator("#seg-0").focus()
    page.keyboard.press("c")
    page.wait_for_selector("#seg-0 .status:has-text('confirm by 李质检')")
    page.locator("#seg-1").focus()
    boxes = page.locator("#seg-1 input[name=labels]")
    want = [False, False, True]  # threat, insult, third_party_disclosure
    for i in range(3):
        if boxes.nth(i).is_checked() != want[i]:
            page.keyboard.press(str(i + 1))
    assert [boxes.nth(i).is_checked() for i in range(3)] == want
    page.keyboard.press("e")
    page.wait_for_selector("#seg-1 .status:has-text('correct → third_party_disclosure by 李质检')")

    with api(server) as c:
        reviews = c.get("/v1/reviews", params={"call_id": "paste-0001"}).json()["reviews"]
    fix = next(r for r in reviews if r["segment"] == 1)
    assert fix["verdict"] == "correct" and fix["labels"] == ["third_party_disclosure"]
    assert fix["speaker"] == "agent" and fix["listener"] == "third_party" and fix["reviewer"] == "李质检"

    out = tmp_path / "feedback.jsonl"
    script = Path(sys.executable).with_name("collectguard")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "collectguard"]
    done = subprocess.run(
        [*cmd, "feedback", "export", "--out", str(out), "--set", f"review.database_url={server['db']}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    row = next(r for r in rows if r["text"] == "他在我们这欠了两万三千块")
    assert (
        row["labels"] == ["third_party_disclosure"] and row["source"] == "review" and row["listener"] == "third_party"
    )


def test_caller_text_and_query_parameters_render_as_text(watch: Watch):
    evil = "<script>alert(1)</script>"
    img = '<img src=x onerror="alert(2)">'
    call = {
        "call_id": "xss-<b>1</b>",
        "segments": [{"speaker": "agent", "text": evil}, {"speaker": "agent", "text": img}],
    }
    paste(watch, json.dumps(call))
    page = watch.page
    assert page.inner_text("#seg-0 .text") == evil
    assert page.inner_text("#seg-1 .text") == img
    assert page.inner_text("#call-id") == "xss-<b>1</b>"
    assert page.locator("#seg-0 .text script").count() == 0 and page.locator("#seg-1 .text img").count() == 0
    page.goto("/review?sort=%3Cscript%3Ealert(3)%3C/script%3E&flag=%3Cimg%20src=x%20onerror=alert(4)%3E")
    problems = page.locator(".problem").all_inner_texts()
    assert any("<script>alert(3)</script>" in p for p in problems), problems
    assert page.locator("main script, main img").count() == 0
    page.goto("/review/login?next=javascript:alert(5)")
    assert page.locator('input[name="next"]').get_attribute("value") == "/review"


def test_folder_calls_show_flags_evidence_and_filter(watch: Watch, tmp_path: Path):
    page = watch.page

    # pasted calls of earlier tests are in the list too (their own checks may raise flags): look
    # at the folder's calls only
    def shown(query: str) -> set[str]:
        page.goto(query)
        ids = {t.split("\t")[0].strip() for t in page.locator("#calls tbody tr").all_inner_texts()}
        return ids & {"debt-0417", "debt-0418", "debt-0419"}

    assert shown("/review?flag=anonymous_collection") == {"debt-0417"}
    assert shown("/review?verdict=insult") == {"debt-0419"}
    page.goto("/review?sort=score&label=threat")
    refs = page.locator("#calls tbody tr").evaluate_all("rows => rows.map(r => r.dataset.ref)")
    assert refs[:2] == ["f1", "f2"] or refs.index("f1") < refs.index("f2")
    page.goto("/review")
    page.click("text=debt-0417")
    marks = page.locator("#seg-1 mark.ev")
    assert marks.all_inner_texts() == ["去你单位", "你领导"]
    assert marks.first.get_attribute("class") == "ev threat"
    assert page.inner_text("#seg-1 .text") == "你再不还钱我就去你单位找你领导"
    flag = page.locator('#flags li[data-flag="anonymous_collection"]')
    assert "raised" in flag.inner_text() and "no institution" in flag.inner_text()
    assert "unknown" in page.inner_text('#flags li[data-flag="outside_permitted_hours"]')
    # the README's screenshot is this view (written there when COLLECTGUARD_README_SHOT=1)
    shot = README_SHOT if os.environ.get("COLLECTGUARD_README_SHOT") == "1" else tmp_path / "call_view.png"
    page.locator("#seg-1").focus()
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_lines_are_named_and_good_calls_still_show(watch: Watch, tmp_path: Path):
    good = [{"call_id": f"up-{i}", "segments": [{"speaker": "agent", "text": "请您尽快还款"}]} for i in (1, 2)]
    lines = [json.dumps(good[0]), '{"call_id": "up-bad", "segments": [', json.dumps(good[1])]
    upload = tmp_path / "batch.jsonl"
    upload.write_text("\n".join(lines) + "\n", encoding="utf-8")
    page = watch.page
    page.set_input_files('input[name="file"]', str(upload))
    page.click('#intake button[type="submit"]')
    page.wait_for_selector("#intake-errors")
    errors = page.inner_text("#intake-errors")
    assert "line 2" in errors and "invalid JSON" in errors
    assert page.locator("#intake-calls a").all_inner_texts() == ["up-1", "up-2"]


def test_queue_serves_disputed_then_uncertain_calls_first(watch: Watch, server: dict[str, Any]):
    page = watch.page
    page.goto("/review/queue")
    order = [r for r in page.locator("#queue li").evaluate_all("ls => ls.map(l => l.dataset.ref)") if r and r[0] == "f"]
    assert order == ["f2", "f1", "f3"], order  # 0.52 is nearest its threshold; 0.40 next; 0.45 last
    with api(server) as c:
        r = c.post(
            "/v1/reviews",
            json={
                "call_id": "debt-0419",
                "segment": 0,
                "text": "你个老赖",
                "speaker": "agent",
                "listener": "debtor",
                "verdict": "reject",
                "model_labels": ["insult"],
                "reviewer": "赵",
            },
        )
        assert r.status_code == 201
    page.reload()
    order = [r for r in page.locator("#queue li").evaluate_all("ls => ls.map(l => l.dataset.ref)") if r and r[0] == "f"]
    assert order == ["f3", "f2", "f1"], order
    page.goto("/review/calls/f2")
    page.select_option("#call-verdict-select", "compliant")
    page.click("#call-verdict button[type=submit]")
    page.wait_for_url(re.compile(r"/review/calls/"))
    assert not page.url.endswith("/f2")  # closed calls leave the queue; the next one opens
    page.goto("/review/agreement")
    assert page.locator('#reviewer-counts tr[data-reviewer="赵"] .n').inner_text() == "1"
    assert page.locator("#label-agreement tr[data-label=insult] .rate").inner_text().endswith("%")
