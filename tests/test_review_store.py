"""The review store on a real SQLite file: migrations match the models, writes survive, parallel
writers (processes and threads) lose nothing, and the queue, agreement and export rules."""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from model.config import ReviewConfig, Settings
from serve.review.agreement import agreement
from serve.review.calls import CallEntry
from serve.review.export import feedback_rows
from serve.review.highlight import pieces
from serve.review.models import Base
from serve.review.queue import build_queue
from serve.review.store import ReviewStore


def review(call_id: str = "c1", segment: int = 0, verdict: str = "confirm", **extra) -> dict:
    base = {
        "call_id": call_id,
        "segment": segment,
        "text": "你再不还钱我就去你单位找你领导",
        "speaker": "agent",
        "listener": "debtor",
        "verdict": verdict,
        "labels": None,
        "model_labels": ["threat"],
        "reviewer": "ann",
        "note": "",
    }
    return {**base, **extra}


@pytest.fixture
def store(tmp_path: Path):
    s = ReviewStore.open(f"sqlite:///{tmp_path / 'review.sqlite'}")
    yield s
    s.close()


def test_migrations_create_exactly_the_models_tables(store: ReviewStore):
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        version = conn.exec_driver_sql("select version_num from alembic_version").scalar()
    assert diff == [], f"models and migrations disagree: {diff}"
    assert version == "0001"


def test_reopening_migrates_nothing_and_keeps_rows(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    first = ReviewStore.open(url)
    stored = first.add_review(**review(note="注意"))
    first.close()
    again = ReviewStore.open(url)
    [back] = again.reviews("c1")
    again.close()
    assert back == stored and back["note"] == "注意" and back["created_at"].endswith("+00:00")


def test_default_url_is_a_file_in_the_user_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert ReviewConfig().resolved_url() == f"sqlite:///{tmp_path / 'xdg' / 'collectguard' / 'review.sqlite'}"
    url = Settings.load(overrides=["review.database_url=sqlite:////x/y.db"]).review.resolved_url()
    assert url == "sqlite:////x/y.db"


def _write_many(url: str, worker: int, n: int) -> None:
    s = ReviewStore.open(url)
    for i in range(n):
        s.add_review(**review(call_id=f"w{worker}", segment=i, reviewer=f"r{worker}"))
    s.close()


def test_parallel_writer_processes_lose_no_write(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    workers, each = 6, 40
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(url, w, each)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(600)  # generous: a loaded CI machine starts spawned interpreters slowly
        assert p.exitcode == 0, f"writer {p.name} exited with {p.exitcode} (its traceback is on stderr)"
    s = ReviewStore.open(url)
    rows = s.reviews()
    s.close()
    assert len(rows) == workers * each
    assert {(r["call_id"], r["segment"]) for r in rows} == {(f"w{w}", i) for w in range(workers) for i in range(each)}
    assert len({r["id"] for r in rows}) == len(rows)


def test_parallel_writer_threads_on_one_store(store: ReviewStore):
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda i: store.add_review(**review(segment=i))["id"], range(200)))
    assert len(set(ids)) == 200 and len(store.reviews("c1")) == 200


def _entry(ref: str, call_id: str, scores: list[dict], labels: list[list[str]]) -> CallEntry:
    segs = [
        {"text": f"第{i}句", "speaker": "agent", "listener": "debtor", "start": None, "end": None}
        for i in range(len(scores))
    ]
    results = [
        {"scores": s, "labels": lb, "label": lb[0] if lb else "compliant"} for s, lb in zip(scores, labels, strict=True)
    ]
    return CallEntry(ref, "test", {"call_id": call_id, "segments": segs, "results": results, "summary": {}})


def _s(threat: float, insult: float = 0.0, tpd: float = 0.0) -> dict:
    return {
        "threat": threat,
        "insult": insult,
        "third_party_disclosure": tpd,
        "compliant": 1 - max(threat, insult, tpd),
    }


def test_queue_puts_disputes_first_then_scores_nearest_a_threshold():
    th = {"threat": 0.5, "insult": 0.5, "third_party_disclosure": 0.5}
    far = _entry("s1", "far", [_s(0.99), _s(0.01)], [["threat"], []])
    near = _entry("s2", "near", [_s(0.47)], [[]])
    nearer = _entry("s3", "nearer", [_s(0.51)], [["threat"]])
    disputed = _entry("s4", "disputed", [_s(0.99)], [["threat"]])
    done = _entry("s5", "done", [_s(0.5)], [["threat"]])
    reviews = [{"id": 1, **review(call_id="disputed", verdict="reject")}]
    queue = build_queue([far, near, nearer, disputed, done], th, reviews, {"done"}, margin=0.15)
    assert [q.entry.call_id for q in queue] == ["disputed", "nearer", "near", "far"]
    assert queue[0].disagreements == 1 and queue[1].uncertain == 1 and queue[3].uncertain == 0


def test_agreement_counts_confirmations_per_label_and_reviews_per_reviewer():
    rows = [
        {"id": 1, **review(segment=0, verdict="confirm")},
        {"id": 2, **review(segment=1, verdict="reject")},
        {"id": 3, **review(segment=2, verdict="correct", labels=["insult"], model_labels=[])},
        {"id": 4, **review(segment=2, verdict="correct", labels=["insult"], model_labels=[], reviewer="bo")},
    ]
    figures = agreement(rows, [{"call_id": "c1", "verdict": "threat", "model_verdict": "threat", "reviewer": "bo"}])
    assert figures["labels"]["threat"] == {"predicted": 2, "confirmed": 1, "missed": 0, "confirm_rate": 0.5}
    assert figures["labels"]["insult"]["missed"] == 2
    assert figures["labels"]["compliant"] == {"predicted": 2, "confirmed": 0, "missed": 1, "confirm_rate": 0.0}
    assert figures["reviewers"]["ann"]["reviews"] == 3 and figures["reviewers"]["bo"]["call_verdicts"] == 1
    assert figures["between_reviewers"] == {"pairs": 1, "agree": 1, "rate": 1.0}
    assert figures["calls"]["rate"] == 1.0


def test_export_rows_take_the_newest_review_and_skip_unlabelled_rejects(store: ReviewStore):
    store.add_review(**review(segment=0, verdict="confirm"))
    store.add_review(**review(segment=0, verdict="correct", labels=["threat", "insult"], reviewer="bo"))
    store.add_review(**review(segment=1, verdict="reject"))
    store.add_review(**review(segment=2, verdict="reject", model_labels=[]))
    rows, skipped = feedback_rows(store.reviews())
    assert [(r["id"], r["labels"]) for r in rows] == [("review-2", ["threat", "insult"]), ("review-3", [])]
    assert all(r["source"] == "review" and r["group"] == r["id"] for r in rows)
    assert len(skipped) == 1 and "review 4" in skipped[0]


def test_evidence_pieces_use_only_spans_that_match_the_text():
    text = "你再不还钱我就去你单位找你领导"
    ev = [
        {"start": 7, "end": 11, "text": "去你单位", "label": "threat", "weight": 0.9},
        {"start": 8, "end": 10, "text": "你单", "label": "insult", "weight": 0.1},  # overlaps a heavier span
        {"start": 0, "end": 2, "text": "不对", "label": "threat", "weight": 0.5},  # text does not match
        {"start": 20, "end": 30, "label": "threat"},  # out of range
    ]
    got = pieces(text, ev)
    assert "".join(p.text for p in got) == text
    assert [(p.text, p.label) for p in got if p.label] == [("去你单位", "threat")]
