"""Tests for training-time augmentation: every op fires on its trigger, labels never move."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from train.augment import (
    AugmentConfig,
    augment_row,
    augment_rows,
    chinese_to_int,
    convert_numbers,
    drop_punctuation,
    homophone_swap,
    insert_fillers,
    int_to_chinese,
    obfuscate_lookalike,
    obfuscate_pinyin,
    pinyin_initials,
    repeat_word,
    to_traditional,
)
from train.compose import compose_rows

OFF = AugmentConfig(**{f: 0.0 for f in AugmentConfig.__dataclass_fields__})


def _row(text: str, labels: list[str], **extra) -> dict:
    return {
        "id": "r1",
        "text": text,
        "labels": labels,
        "speaker": "agent",
        "listener": "debtor",
        "source": "written",
        "notes": "n",
        **extra,
    }


@pytest.mark.parametrize(
    ("op", "text"),
    [
        (drop_punctuation, "您好，请问是本人吗？"),
        (insert_fillers, "您好请问是本人吗"),
        (homophone_swap, "您的账户已经逾期了"),
        (homophone_swap, "请再确认一下"),
        (homophone_swap, "会影响征信"),
        (convert_numbers, "本期应还20000元"),
        (convert_numbers, "本期应还两万三"),
        (repeat_word, "我们马上处理"),
        (to_traditional, "还款逾期会影响征信"),
        (obfuscate_pinyin, "你个傻逼"),
        (obfuscate_lookalike, "操你妈"),
        (obfuscate_lookalike, "你个傻逼"),
    ],
)
def test_each_op_changes_text_with_trigger(op, text: str) -> None:
    for seed in range(20):
        out = op(text, random.Random(seed))
        assert out != text and out.strip(), (op.__name__, seed, out)


@pytest.mark.parametrize(
    ("op", "text"),
    [
        (drop_punctuation, "您好请问是本人吗"),
        (homophone_swap, "你好呀"),
        (convert_numbers, "两三天以后一定处理"),
        (obfuscate_pinyin, "你妈妈最近身体好吗"),
        (obfuscate_lookalike, "麻烦您转告他回个电话"),
    ],
)
def test_ops_leave_text_without_trigger_alone(op, text: str) -> None:
    assert op(text, random.Random(0)) == text


def test_specific_rewrites() -> None:
    assert to_traditional("还款逾期", random.Random(0)) == "還款逾期"
    assert pinyin_initials("傻逼") == "sb"
    assert pinyin_initials("你妈") == "nm"
    assert pinyin_initials("他妈的") == "tmd"
    assert obfuscate_pinyin("他妈的快还钱", random.Random(1)) in {"tmd快还钱", "TMD快还钱"}
    assert int_to_chinese(20000) == "两万"
    assert int_to_chinese(3005) == "三千零五"
    assert int_to_chinese(15) == "十五"
    assert chinese_to_int("两万三") == 23000
    assert chinese_to_int("三千八") == 3800
    assert chinese_to_int("三千零八") == 3008
    assert chinese_to_int("两三") is None


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=10**8 - 1))
def test_number_round_trip(n: int) -> None:
    spoken = int_to_chinese(n)
    if n < 10:  # a lone 一/二 is too ambiguous (一下, 二手) to be read back as a number
        assert chinese_to_int(spoken) is None
    else:
        assert chinese_to_int(spoken) == n


def test_obfuscation_only_touches_abusive_words_in_insult_rows() -> None:
    cfg = replace(OFF, p_pinyin_obf=1.0)
    insult = _row("你妈妈知道你是个傻逼吗", ["insult"])
    for seed in range(10):
        out = augment_row(insult, random.Random(seed), cfg)["text"]
        assert out.startswith("你妈妈"), out  # 你妈妈 is not the curse 你妈
        assert "傻逼" not in out and "sb" in out.lower()
    # A compliant row that quotes an abusive word is never obfuscated (labels stay valid).
    quoted = _row("老赖这种说法我们不会用", [])
    full = replace(OFF, p_pinyin_obf=1.0, p_lookalike_obf=1.0)
    for seed in range(10):
        assert "老赖" in augment_row(quoted, random.Random(seed), full)["text"]


def test_augment_rows_preserves_fields_and_groups() -> None:
    rows = [
        _row("您的账户已经逾期30天，请尽快还款。", [], group="d01"),
        {**_row("你个傻逼，再不还钱你等着！", ["threat", "insult"]), "id": "r2"},
    ]
    out = augment_rows(rows, copies=3, seed=5, cfg=AugmentConfig())
    assert len(out) == 6
    for k, new in enumerate(out):
        orig = rows[k // 3]
        assert new["id"] == f"{orig['id']}-aug{k % 3 + 1}"
        assert new["labels"] == orig["labels"]
        assert new["speaker"] == orig["speaker"]
        assert new["listener"] == orig["listener"]
        assert new["source"] == "written+aug"
        assert new["group"] == orig.get("group", orig["id"])
        assert new["text"] and new["text"] != orig["text"]
    assert rows[0]["text"] == "您的账户已经逾期30天，请尽快还款。", "input row mutated"


def test_augment_deterministic_and_order_independent() -> None:
    rows = compose_rows(60, 1)
    a = augment_rows(rows, 2, seed=9)
    assert a == augment_rows(rows, 2, seed=9)
    assert a != augment_rows(rows, 2, seed=10)
    rev = augment_rows(list(reversed(rows)), 2, seed=9)
    assert sorted(a, key=lambda r: r["id"]) == sorted(rev, key=lambda r: r["id"])


def test_never_empty_and_always_changed() -> None:
    for text in ["。", "sb", "喂？", "嗯好", "？！"]:
        for seed in range(10):
            out = augment_row(_row(text, []), random.Random(seed), OFF)["text"]
            assert out.strip()
            assert out != text
    rows = compose_rows(400, 2)
    for new, orig in zip(augment_rows(rows, 1, seed=0), rows, strict=True):
        assert new["text"].strip() and new["labels"] == orig["labels"]
        assert new["group"] == orig["group"]
