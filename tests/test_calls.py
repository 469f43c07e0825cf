"""Call-level checks (serve/calls/): metadata, each check raised and not raised, null when
undecidable, contact counting across calls, and the shared summary carrying them."""

from __future__ import annotations

import pytest

from model.config import CallsConfig
from serve.calls import check_call
from serve.calls.anonymous import anonymous_collection
from serve.calls.complaint import complaint, is_complaint
from serve.calls.contacts import contact_record, contact_rows
from serve.calls.hours import outside_permitted_hours
from serve.calls.metadata import CallMetadata
from serve.summary import summarize_call

CFG = CallsConfig()


def agent(text: str, listener: str = "debtor") -> dict:
    return {"text": text, "speaker": "agent", "listener": listener}


def customer(text: str) -> dict:
    return {"text": text, "speaker": "customer", "listener": "unknown"}


def meta(**raw) -> CallMetadata:
    parsed, problems = CallMetadata.parse(raw, CFG.timezone)
    assert not problems, problems
    return parsed


# -- metadata ------------------------------------------------------------------------------------------


def test_metadata_problems_name_the_field_and_leave_it_out() -> None:
    raw = {"started_at": "yesterday", "direction": "sideways", "debtor_id": "D1", "callee": {"role": "boss"}}
    parsed, problems = CallMetadata.parse(raw, CFG.timezone)
    assert [f for f, _ in problems] == ["started_at", "direction", "callee.role"]
    assert parsed.started_at is None and parsed.direction == "outbound" and parsed.debtor_id == "D1"
    assert "ISO 8601" in problems[0][1] and "outbound" in problems[1][1] and "third_party" in problems[2][1]


def test_started_at_without_offset_is_read_in_the_configured_zone() -> None:
    naive, _ = CallMetadata.parse({"started_at": "2026-03-01T21:30:00"}, "Asia/Shanghai")
    assert naive.started_at.utcoffset().total_seconds() == 8 * 3600
    berlin, _ = CallMetadata.parse({"started_at": "2026-03-01T21:30:00"}, "Europe/Berlin")
    assert berlin.started_at.utcoffset().total_seconds() == 3600


# -- outside_permitted_hours ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("started_at", "raised"),
    [
        ("2026-03-01T22:00:00+08:00", True),
        ("2026-03-01T21:59:00+08:00", False),
        ("2026-03-02T07:59:00+08:00", True),
        ("2026-03-02T08:00:00+08:00", False),
        ("2026-03-01T14:30:00Z", True),  # 22:30 in Shanghai: the instant counts, read on the local clock
        ("2026-03-01T23:30:00", True),  # no offset: read in calls.timezone
        ("2026-03-01T12:00:00", False),
    ],
)
def test_outside_permitted_hours(started_at: str, raised: bool) -> None:
    out = outside_permitted_hours(meta(started_at=started_at), CFG)
    assert out["raised"] is raised and out["evidence"]["window"] == "22:00–08:00"


def test_hours_window_is_configurable_and_unknown_without_a_time() -> None:
    late = meta(started_at="2026-03-01T21:30:00+08:00")
    assert outside_permitted_hours(late, CallsConfig(quiet_start="21:00"))["raised"] is True
    assert outside_permitted_hours(late, CFG)["raised"] is False
    missing = outside_permitted_hours(meta(), CFG)
    assert missing["raised"] is None and "started_at" in missing["reason"]


# -- anonymous_collection --------------------------------------------------------------------------------

IDENTIFIED = [
    [agent("您好，这边是瑞丰消费金融的，我是工号8023的小李，您的账单已经逾期了。")],
    [
        customer("喂？"),
        agent("喂 你好 嗯 我是安和资产管理有限公司的催收专员 张明"),
        agent("关于您的欠款想跟您沟通一下"),
    ],
    [agent("您好这边是星河分期的客服小周，工号幺三五七"), customer("什么事"), agent("您上个月的款还没还")],
    [agent("你好，受恒信銀行委托，我姓趙，跟您說一下您信用卡逾期的事")],  # traditional characters
    [agent("您好我是{platform}的工作人员{agent_name}，您的账单{amount}元已到期")],  # template placeholders
    [agent("这 里 是 北 辰 律 师 事 务 所 ，我 是 张 律 师"), agent("受委托跟您谈一下借款的事")],  # ASR spacing
    [agent("您好，这边是青禾小贷，我公号是8812，您那笔借款今天到期")],  # 公号: ASR for 工号
]
ANONYMOUS = [
    [agent("喂，是王先生吗？您的借款已经逾期三天了，今天必须还。")],  # nothing at all
    [agent("您好，我是银行的工作人员，您的账单逾期了")],  # a generic word, not a name
    [agent("您好，这边是瑞丰消费金融，您的账单逾期了"), agent("我是工号8023的小李")],  # the person too late
    [agent("我是小李，你那笔钱什么时候还？")],  # a person but no institution
    [agent("你欠的钱到底什么时候还"), agent("我们是瑞丰银行的，我是张经理")],  # debt before identity
    [agent("请问您是李强的家人吗？", "third_party"), customer("你哪位？"),
     agent("我是瑞丰银行的张经理", "third_party")],  # only to a third party who asked
]  # fmt: skip


@pytest.mark.parametrize("segments", IDENTIFIED)
def test_identified_calls_are_not_anonymous(segments: list[dict]) -> None:
    out = anonymous_collection(segments, meta(), CFG)
    assert out["raised"] is False, out
    assert out["evidence"]["institution"] and out["evidence"]["person"]


@pytest.mark.parametrize("segments", ANONYMOUS)
def test_anonymous_calls_are_flagged_with_what_is_missing(segments: list[dict]) -> None:
    out = anonymous_collection(segments, meta(), CFG)
    assert out["raised"] is True, out
    assert "did not state" in out["reason"]
    assert out["evidence"]["institution"] is None or out["evidence"]["person"] is None


def test_anonymous_is_not_judged_inbound_or_without_agent_speech() -> None:
    segs = ANONYMOUS[0]
    assert anonymous_collection(segs, meta(direction="inbound"), CFG)["raised"] is None
    assert anonymous_collection([customer("喂")], meta(), CFG)["raised"] is None


def test_identify_within_turns_is_a_setting() -> None:
    segs = [agent("您好"), agent("在吗"), agent("这边是瑞丰银行的张经理")]
    assert anonymous_collection(segs, meta(), CallsConfig(identify_within_turns=2))["raised"] is True
    assert anonymous_collection(segs, meta(), CallsConfig(identify_within_turns=3))["raised"] is False


# -- complaint --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["我要投诉你们", "你们投诉电话是多少", "我已经打了12378了", "再打我就报警", "我去消协反映", "你们这是骚扰",
     "我要找律师告你们", "一天打十几个电话你们有完没完", "凭什么给我单位打电话", "我要向金融监管局举报",
     "我要頭訴你們"],
)  # fmt: skip
def test_complaints_are_found(text: str) -> None:
    assert is_complaint(text), text


@pytest.mark.parametrize(
    "text",
    ["你烦不烦啊", "我不会投诉的，你放心", "你去起诉我啊", "你报警吧我不怕", "好的我明天还", "我现在没钱",
     "滚，别烦我", "我在律师事务所上班"],
)  # fmt: skip
def test_anger_or_negation_is_not_a_complaint(text: str) -> None:
    assert not is_complaint(text), text


def test_complaint_counts_customer_turns_only() -> None:
    out = complaint([agent("你可以投诉，投诉电话是12378"), customer("行吧我知道了")])
    assert out["raised"] is False
    out = complaint([agent("您好"), customer("我要投诉你们，12378")])
    assert out["raised"] is True and {m["segment"] for m in out["evidence"]["matches"]} == {1}


# -- contacts across calls ---------------------------------------------------------------------------------


def records(calls: list[tuple[str, dict]]) -> list[dict]:
    return [contact_record(cid, raw, CFG) for cid, raw in calls]


def day(n: int, hour: int = 10) -> str:
    return f"2026-03-{n:02d}T{hour:02d}:00:00+08:00"


def test_daily_cap_raised_above_three_calls_to_the_debtor() -> None:
    calls = [
        (f"c{i}", {"debtor_id": "D1", "started_at": day(1, 9 + i), "callee": {"role": "debtor"}}) for i in range(4)
    ]
    calls += [
        (f"d{i}", {"debtor_id": "D2", "started_at": day(1, 9 + i), "callee": {"role": "debtor"}}) for i in range(3)
    ]
    rows = {r["debtor_id"]: r for r in contact_rows(records(calls), CFG)}
    assert rows["D1"]["flags"]["daily_contact_cap_exceeded"]["raised"] is True
    assert rows["D2"]["flags"]["daily_contact_cap_exceeded"]["raised"] is False
    assert rows["D1"]["calls_to_debtor"] == 4 and rows["D1"]["call_ids"] == ["c0", "c1", "c2", "c3"]
    assert (
        contact_rows(records(calls), CallsConfig(daily_contact_cap=4))[0]["flags"]["daily_contact_cap_exceeded"][
            "raised"
        ]
        is False
    )


def test_unknown_callees_make_the_cap_unknown_and_inbound_calls_do_not_count() -> None:
    calls = [
        (f"c{i}", {"debtor_id": "D1", "started_at": day(1, 9 + i), "callee": {"role": "debtor"}}) for i in range(3)
    ]
    unknown = [*calls, ("u", {"debtor_id": "D1", "started_at": day(1, 15)})]
    assert contact_rows(records(unknown), CFG)[0]["flags"]["daily_contact_cap_exceeded"]["raised"] is None
    inbound = [*calls, ("i", {"debtor_id": "D1", "started_at": day(1, 15), "direction": "inbound"})]
    assert contact_rows(records(inbound), CFG)[0]["flags"]["daily_contact_cap_exceeded"]["raised"] is False


def test_contact_list_blasting_over_a_rolling_week() -> None:
    def third(i: int, n: int, who: str) -> tuple[str, dict]:
        return f"t{i}", {"debtor_id": "D9", "started_at": day(n), "callee": {"id": who, "role": "third_party"}}

    calls = [third(0, 1, "mum"), third(1, 3, "boss"), third(2, 5, "friend"), third(3, 7, "mum")]
    rows = contact_rows(records(calls), CFG)
    assert [r["flags"]["contact_list_blasting"]["raised"] for r in rows] == [False, False, False, False]
    calls.append(third(4, 7, "cousin"))  # a fourth distinct person within days 1–7
    rows = contact_rows(records(calls), CFG)
    assert rows[-1]["flags"]["contact_list_blasting"]["raised"] is True
    assert rows[-1]["flags"]["contact_list_blasting"]["evidence"]["distinct_third_parties"] == 4
    calls.append(third(5, 9, "aunt"))  # day 9's window (3–9) holds boss, friend, mum, cousin, aunt
    rows = {r["day"]: r for r in contact_rows(records(calls), CFG)}
    assert rows["2026-03-09"]["flags"]["contact_list_blasting"]["raised"] is True
    late = records([third(0, 1, "a"), third(1, 1, "b"), third(2, 9, "c"), third(3, 9, "d")])
    assert {r["flags"]["contact_list_blasting"]["raised"] for r in contact_rows(late, CFG)} == {False}


def test_calls_without_debtor_or_time_are_reported_not_dropped() -> None:
    rows = contact_rows(records([("a", {"started_at": day(1)}), ("b", {"debtor_id": "D1"}), ("c", {})]), CFG)
    assert sum(r["calls"] for r in rows) == 3
    for r in rows:
        assert {f["raised"] for f in r["flags"].values()} == {None}
        assert "no valid" in r["flags"]["daily_contact_cap_exceeded"]["reason"]


def test_personal_ids_are_masked_but_still_grouped_apart() -> None:
    calls = [(f"c{i}", {"debtor_id": phone, "started_at": day(1, 9 + i), "callee": {"role": "debtor"}})
             for i, phone in enumerate(["13800138000"] * 4 + ["13900139000"])]  # fmt: skip
    rows = contact_rows(records(calls), CFG)
    assert [r["debtor_id"] for r in rows] == ["[PHONE]", "[PHONE]"]
    assert sorted(r["calls"] for r in rows) == [1, 4]
    assert "13800138000" not in repr(rows)


# -- the shared summary ---------------------------------------------------------------------------------


def test_summary_carries_the_flags_and_nulls_without_metadata() -> None:
    segs = [agent("你欠的钱什么时候还"), customer("我要投诉你们")]
    results = [{"labels": [], "scores": dict.fromkeys(("threat", "insult", "third_party_disclosure"), 0.1)}] * 2
    bare = summarize_call(segs, results)
    assert bare["flags"]["outside_permitted_hours"]["raised"] is None
    assert bare["flags"]["anonymous_collection"]["raised"] is True and bare["flags"]["complaint"]["raised"] is True
    full = summarize_call(segs, results, {"started_at": day(1, 23), "direction": "inbound"})
    assert full["flags"]["outside_permitted_hours"]["raised"] is True
    assert full["flags"]["anonymous_collection"]["raised"] is None
    bad = check_call(segs, {"started_at": "soon"})
    assert bad["metadata_problems"][0]["field"] == "started_at"
    assert bad["flags"]["outside_permitted_hours"]["raised"] is None
