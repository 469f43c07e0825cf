"""PII masking (model/privacy.py): generated numbers in many formats never survive; ordinary
numbers (amounts, dates, times, 工号) are left alone; masked text goes through the same
preprocessing as a placeholder; positions map back to the original text."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.preprocess import STAND_IN, normalize
from model.privacy import CARD, EMAIL, ID, PHONE, TOKENS, digit_string, mask, mask_pii

CN = "零一二三四五六七八九"
FILLER = st.sampled_from(["你好", "请记一下", "我的是", "麻烦您", "，", "。", " ", "嗯", "好的", "对"])
SEPARATORS = st.sampled_from([" ", "-", " - ", "  ", "－"])


def _write(digits: str, style: str, sep: str, groups: list[int]) -> str:
    """Digits as ASR or a typist writes them: plain, full-width or Chinese numerals, grouped."""
    if style == "cn":
        digits = "".join(CN[int(d)] for d in digits)
    elif style == "cn1":  # 幺 for one, as read out on the phone
        digits = "".join("幺" if d == "1" else CN[int(d)] for d in digits)
    elif style == "wide":
        digits = "".join(chr(0xFF10 + int(d)) for d in digits)
    out, i = [], 0
    for g in groups:
        out.append(digits[i : i + g])
        i += g
    if i < len(digits):
        out.append(digits[i:])
    return sep.join(x for x in out if x)


STYLE = st.sampled_from(["ascii", "cn", "cn1", "wide"])


@st.composite
def mobiles(draw) -> tuple[str, str]:
    digits = "1" + draw(st.sampled_from("3456789")) + draw(st.text("0123456789", min_size=9, max_size=9))
    groups = draw(st.sampled_from([[11], [3, 4, 4], [3, 8], [3, 3, 5]]))
    text = _write(digits, draw(STYLE), draw(SEPARATORS), groups)
    prefix = draw(st.sampled_from(["", "+86 ", "+86-", "86", "0086 "]))
    return prefix + text, digits


@st.composite
def landlines(draw) -> tuple[str, str]:
    area = "0" + draw(st.text("123456789", min_size=2, max_size=3))
    local = draw(st.sampled_from("2345678")) + draw(st.text("0123456789", min_size=6, max_size=7))
    sep = draw(SEPARATORS)
    style = draw(st.sampled_from(["ascii", "wide", "cn"]))
    if draw(st.booleans()) and style == "ascii":
        return f"({area}){local}", area + local
    return _write(area, style, "", [len(area)]) + sep + _write(local, style, sep, [4, 4]), area + local


@st.composite
def id_numbers(draw) -> tuple[str, str]:
    born = date(1940, 1, 1) + timedelta(days=draw(st.integers(0, 365 * 80)))
    body = draw(st.text("0123456789", min_size=6, max_size=6)) + born.strftime("%Y%m%d")
    body += draw(st.text("0123456789", min_size=3, max_size=3))
    check = draw(st.sampled_from("0123456789Xx"))
    groups = draw(st.sampled_from([[17], [6, 8, 3], [6, 4, 4, 3]]))  # the check character ends the last group
    style = draw(st.sampled_from(["ascii", "cn", "wide"]))
    written_check = check if check in "Xx" else _write(check, style, "", [1])
    return _write(body, style, draw(SEPARATORS), groups) + written_check, body


@st.composite
def cards(draw) -> tuple[str, str]:
    n = draw(st.integers(16, 19))
    digits = draw(st.sampled_from(["62", "43", "51", "60"])) + draw(
        st.text("0123456789", min_size=n - 2, max_size=n - 2)
    )
    if n == 18:
        digits = digits[:6] + "00" + digits[8:]  # not a birth date: an ID is masked as [ID], also fine
    groups = draw(st.sampled_from([[n], [4, 4, 4, 4, 3], [6, n - 6]]))
    return _write(digits, draw(st.sampled_from(["ascii", "wide", "cn"])), draw(SEPARATORS), groups), digits


@st.composite
def emails(draw) -> tuple[str, str]:
    user = draw(st.from_regex(r"[a-z][a-z0-9._]{1,12}[a-z0-9]", fullmatch=True))
    host = draw(st.from_regex(r"[a-z][a-z0-9]{1,10}", fullmatch=True))
    tld = draw(st.sampled_from(["com", "cn", "com.cn", "net", "org"]))
    at = draw(st.sampled_from(["@", "＠"]))
    address = f"{user}{at}{host}.{tld}"
    return address, address


def _in_context(draw, item: str) -> str:
    return draw(FILLER) + item + draw(FILLER)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from([(mobiles, PHONE), (landlines, PHONE), (id_numbers, ID), (cards, CARD)]))
def test_numbers_never_survive(data, kind) -> None:
    strategy, token = kind
    written, digits = data.draw(strategy())
    text = _in_context(data.draw, written)
    out = mask_pii(text)
    assert digits not in digit_string(out), (text, out)
    assert digits[-6:] not in digit_string(out), (text, out)  # nothing recognisable is left
    assert token in out or (token == CARD and ID in out), (text, out)


@settings(max_examples=100)
@given(emails(), st.data())
def test_emails_never_survive(item, data) -> None:
    written, _ = item
    out = mask_pii(_in_context(data.draw, written))
    assert written not in out and "@" not in out and "＠" not in out
    assert EMAIL in out


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from(["mobile", "card", "id"]), st.data()), min_size=2, max_size=4), st.data())
def test_several_numbers_in_one_text(kinds, data) -> None:
    """Numbers next to each other (space only) are each masked, not merged into one unknown run."""
    strategies = {"mobile": mobiles, "card": cards, "id": id_numbers}
    items = [data.draw(strategies[k]()) for k, _ in kinds]
    text = "，".join(w for w, _ in items)
    out = mask_pii(text)
    for _, digits in items:
        assert digits not in digit_string(out), (text, out)


@st.composite
def ordinary_numbers(draw) -> str:
    """Amounts, dates, times, staff numbers, counts: what collection calls are full of."""
    kind = draw(st.sampled_from(["amount", "amount_cn", "date", "date_cn", "time", "staff", "count", "percent"]))
    if kind == "amount":
        n = draw(st.integers(1, 9_999_999))
        cents = draw(st.sampled_from(["", ".00", ".5", ".36"]))
        text = draw(st.sampled_from([f"{n}", f"{n:,}"])) + cents
        return text + draw(st.sampled_from(["元", "块", " 元", "块钱"]))
    if kind == "amount_cn":
        return draw(st.sampled_from(["两万三千", "一万五千八百元", "三千二百五十块", "十二万", "五百"]))
    if kind == "date":
        d = date(2015, 1, 1) + timedelta(days=draw(st.integers(0, 4000)))
        return d.strftime(draw(st.sampled_from(["%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y%m%d", "%m月%d日"])))
    if kind == "date_cn":
        d = date(2015, 1, 1) + timedelta(days=draw(st.integers(0, 4000)))
        return f"{d.year}年{d.month}月{d.day}号"
    if kind == "time":
        h, m = draw(st.integers(0, 23)), draw(st.integers(0, 59))
        return draw(st.sampled_from([f"{h}:{m:02d}", f"{h:02d}:{m:02d}:00", f"{h}点{m}分", f"晚上{h}点"]))
    if kind == "staff":
        n = draw(st.text("0123456789", min_size=3, max_size=8))
        return draw(st.sampled_from([f"工号{n}", f"工号 {n}", f"我的工号是{n}", f"编号{n}"]))
    if kind == "count":
        return f"逾期{draw(st.integers(1, 900))}天，第{draw(st.integers(1, 60))}期"
    return f"{draw(st.integers(0, 100))}%"


@settings(max_examples=400)
@given(st.lists(ordinary_numbers(), min_size=1, max_size=4), st.data())
def test_ordinary_numbers_are_left_alone(items, data) -> None:
    text = "".join(data.draw(st.sampled_from(["，", "，那个", "。您", "的话", "，到"])) + x for x in items)
    assert mask_pii(text) == text


def test_examples() -> None:
    cases = {
        "打幺三八零零幺三八零零零找我": f"打{PHONE}找我",
        "座机（0755）8765 4321": f"座机{PHONE}",
        "电话是8765-4321": f"电话是{PHONE}",
        "身份证11010519491231002X，卡号6222 0212 3456 7890 123": f"身份证{ID}，卡号{CARD}",
        "工号8023的小李，借款5000元，2024-03-15到期": "工号8023的小李，借款5000元，2024-03-15到期",
    }
    for text, expected in cases.items():
        assert mask_pii(text) == expected


def test_positions_map_back_to_the_original() -> None:
    m = mask("我电话13800138000，邮箱a.b@example.com，行吗")
    assert m.text == f"我电话{PHONE}，邮箱{EMAIL}，行吗"
    (p0, p1), (e0, e1) = m.token_ranges()
    assert m.text[p0:p1] == PHONE and m.text[e0:e1] == EMAIL
    assert m.original[slice(*m.to_original(p0, p1))] == "13800138000"
    assert m.original[slice(*m.to_original(e0, e1))] == "a.b@example.com"
    # Text outside the tokens maps to itself.
    tail = m.text.index("行吗")
    assert m.original[slice(*m.to_original(tail, tail + 2))] == "行吗"
    assert m.original[slice(*m.to_original(0, 3))] == "我电话"


def test_masked_text_takes_the_placeholder_path() -> None:
    """The tokens are placeholders to cg-pp-2: masked text normalises exactly like a template slot."""
    for token in TOKENS:
        assert normalize(f"你打{token}找他") == normalize("你打{phone}找他") == f"你打{STAND_IN}找他"
    assert normalize(mask_pii("你打13800138000找他")) == normalize("你打[PHONE]找他")
