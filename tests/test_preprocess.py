"""The one preprocessing path: normalisation, context prefix, windows, combining, versioning."""

from __future__ import annotations

import itertools
import random
import unicodedata

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from model.labels import LISTENERS, SPEAKERS
from model.preprocess import (
    LISTENER_TAGS,
    PREPROCESS_VERSION,
    SPEAKER_TAGS,
    Segment,
    Window,
    check_version,
    combine_by_max,
    context_prefix,
    encode_windows,
    make_windows,
    normalize,
    pad_batch,
    segments_of,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def tok(tiny_tokenizer_dir):
    from model.architecture import load_tokenizer

    return load_tokenizer(tiny_tokenizer_dir)


# -- normalize --------------------------------------------------------------------------------
@settings(max_examples=400, deadline=None)
@given(st.text())
@example("ＡＢＣ　還錢嗯嗯嗯")
@example("\u200b\ufeff")
@example("İSTANBUL ﬃ ㍿")
@example("嗯, 嗯,,嗯。。。那个 那个")
def test_normalize_idempotent_on_any_unicode(text):
    try:
        once = normalize(text)
    except ValueError:
        return  # nothing left after normalisation: allowed
    assert once, "normalize returned an empty string instead of raising"
    assert normalize(once) == once


FILLERISH = st.lists(
    st.sampled_from(
        [*"嗯啊呃哦噢唉哎那个就是说你好钱 ,，。.!！?？、~-—…“”「」\u3000\t\nＡa還錢ß", "那个", "就是说", "..."]
    ),
    max_size=25,
).map("".join)


@FAST
@given(FILLERISH)
def test_normalize_idempotent_on_filler_and_punctuation_soup(text):
    try:
        once = normalize(text)
    except ValueError:
        return
    assert normalize(once) == once


@pytest.mark.parametrize("text", ["", " ", "   \t\n ", "\u3000\u3000", "\n\r"])
def test_normalize_rejects_empty_and_whitespace(text):
    with pytest.raises(ValueError, match="empty"):
        normalize(text)


@pytest.mark.parametrize("text", ["\u200b", "\ufeff\u200d", "\x00\x01"])
def test_normalize_rejects_text_with_no_content(text):
    with pytest.raises(ValueError):
        normalize(text)


@pytest.mark.parametrize("value", [None, 123, b"abc", ["x"]])
def test_normalize_rejects_non_strings(value):
    with pytest.raises(ValueError, match="string"):
        normalize(value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ＡＢＣ１２３", "abc123"),  # NFKC full-width → half-width, then lower-cased
        ("還錢", "还钱"),  # traditional → simplified
        ("你個老賴，還不還錢", "你个老赖,还不还钱"),  # full-width comma → ',' too
        ("嗯嗯嗯嗯", "嗯"),
        ("那个那个", "那个"),
        ("嗯嗯嗯嗯我下周还", "嗯我下周还"),
        ("那个那个就是说就是说我没钱", "那个就是说我没钱"),
        ("啊啊啊你听我说", "啊你听我说"),
        ("嗯, 嗯, 嗯 好的", "嗯好的"),
        ("Hello WORLD", "hello world"),
        ("你 好 吗", "你好吗"),
        ("我  下周 还 500 块", "我下周还500块"),
        ("  前后空格  ", "前后空格"),
        ("你好\u200b啊", "你好啊"),  # zero-width space dropped
        ("【催收】“您好”", '[催收]"您好"'),
        ("什么！！！", "什么!"),
        ("等等。。。", "等等。"),
    ],
)
def test_normalize_examples(raw, expected):
    assert normalize(raw) == expected


def test_fillers_collapse_without_losing_other_content():
    raw = "嗯嗯嗯嗯那个那个你欠的钱啊啊啊什么时候还呃呃"
    out = normalize(raw)
    assert out == "嗯那个你欠的钱啊什么时候还呃"
    # every non-filler character survives, in order
    content = [c for c in raw if c not in "嗯那个啊呃"]
    assert [c for c in out if c not in "嗯那个啊呃"] == content
    # a single (non-repeated) filler is kept
    assert normalize("那个人是谁") == "那个人是谁"
    assert normalize("嗯好") == "嗯好"


@FAST
@given(st.text(alphabet=st.characters(categories=["Lu", "Ll"], max_codepoint=0x24F), min_size=1, max_size=20))
def test_latin_lower_cased(text):
    out = normalize(text)
    assert out == unicodedata.normalize("NFKC", out)
    assert out == out.lower()


@FAST
@given(st.lists(st.sampled_from([*list("你好还钱逾期单位领导我就去找"), "abc", "12"]), min_size=2, max_size=12))
def test_spaces_between_cjk_removed(parts):
    out = normalize(" ".join(parts))
    assert "  " not in out
    for i, ch in enumerate(out):
        if ch == " ":
            assert not _is_cjk(out[i - 1]) and not _is_cjk(out[i + 1]), out
    # nothing but spaces was removed
    assert out.replace(" ", "") == "".join(parts)


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


# -- context ------------------------------------------------------------------------------------
@pytest.mark.parametrize("speaker", SPEAKERS)
@pytest.mark.parametrize("listener", LISTENERS)
def test_context_prefix_every_pair(speaker, listener):
    assert context_prefix(speaker, listener) == SPEAKER_TAGS[speaker] + LISTENER_TAGS[listener]


def test_context_prefix_values():
    assert context_prefix() == "坐席对象未知"
    assert context_prefix("agent", "third_party") == "坐席对第三方"
    assert context_prefix("customer", "debtor") == "客户对债务人"
    assert len({context_prefix(s, lst) for s in SPEAKERS for lst in LISTENERS}) == len(SPEAKERS) * len(LISTENERS)


@pytest.mark.parametrize(("speaker", "listener", "field"), [("boss", "debtor", "speaker"), ("agent", "x", "listener")])
def test_context_prefix_errors(speaker, listener, field):
    with pytest.raises(ValueError, match=field):
        context_prefix(speaker, listener)


# -- Segment ------------------------------------------------------------------------------------
def test_segment_of():
    assert Segment.of("你好") == Segment("你好", "agent", "unknown")
    assert Segment.of({"text": "你好", "speaker": "customer", "listener": "debtor"}) == Segment(
        "你好", "customer", "debtor"
    )
    assert Segment.of({"text": "你好", "speaker": None, "listener": ""}) == Segment("你好", "agent", "unknown")
    seg = Segment("x", "customer", "third_party")
    assert Segment.of(seg) is seg


@pytest.mark.parametrize("bad", [123, None, ["你好"], {"speaker": "agent"}])
def test_segment_of_rejects(bad):
    with pytest.raises(ValueError):
        Segment.of(bad)


def test_segments_of_names_position():
    with pytest.raises(ValueError, match="segment 2"):
        segments_of(["a", {"text": "b"}, 7])


# -- windows ------------------------------------------------------------------------------------
SENTENCES = [
    "您好，我是瑞丰消费金融的工作人员，您的账单已经逾期了。",
    "你再不还钱我就去你单位找你领导",
    "麻烦您转告他给我们回个电话",
    "你个老赖，不要脸",
    "他在我们这欠了两万三千块",
    "ok 好的 bye",
    "还款 12345 元",
]


def long_text(n_chars: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    out = ""
    while len(out) < n_chars:
        out += rng.choice(SENTENCES)
    return out[:n_chars]


def test_short_text_is_one_window(tok):
    seg = Segment("你再不還錢我就去你單位找你領導", "customer", "third_party")
    windows = make_windows(tok, [seg], 128, 32)
    norm = normalize(seg.text)
    assert windows == [Window(0, "客户对第三方", norm, 0, len(norm))]


def test_long_text_windows_cover_overlap_and_fit(tok):
    text = long_text(2000)
    norm = normalize(text)
    max_length, stride = 64, 16
    windows = make_windows(tok, [Segment(text, "agent", "debtor")], max_length, stride)
    assert len(windows) > 5
    covered = np.zeros(len(norm), dtype=bool)
    for w in windows:
        assert w.segment == 0 and w.prefix == "坐席对债务人"
        assert w.text == norm[w.start : w.end] and w.text
        covered[w.start : w.end] = True
    assert covered.all(), f"uncovered positions {np.flatnonzero(~covered)[:10]}"
    assert windows[0].start == 0 and windows[-1].end == len(norm)
    for a, b in itertools.pairwise(windows):
        assert a.start < b.start < a.end, "consecutive windows must overlap and advance"
    ids = encode_windows(tok, windows, max_length)
    assert len(ids) == len(windows)
    assert all(len(x) <= max_length for x in ids)
    padded = pad_batch(ids, tok.pad_token_id)
    assert padded["input_ids"].shape == (len(windows), max(len(x) for x in ids))
    # deterministic
    assert make_windows(tok, [Segment(text, "agent", "debtor")], max_length, stride) == windows


@FAST
@given(
    st.lists(st.sampled_from([*SENTENCES, "嗯", "钱", "!", " abc "]), min_size=1, max_size=60).map("".join),
    st.sampled_from([24, 32, 48, 64]),
    st.sampled_from([1, 4, 8]),
)
def test_windows_cover_every_character(tok, text, max_length, stride):
    try:
        norm = normalize(text)
    except ValueError:
        return
    windows = make_windows(tok, [Segment(text)], max_length, stride)
    covered = np.zeros(len(norm), dtype=bool)
    for w in windows:
        assert norm[w.start : w.end] == w.text
        covered[w.start : w.end] = True
    assert all(covered[i] or norm[i] == " " for i in range(len(norm)))
    for a, b in itertools.pairwise(windows):
        assert a.start < b.start < a.end


def _chars_reaching_model(tok, norm: str, windows, max_length: int) -> np.ndarray:
    """Positions of ``norm`` covered by a token the model actually receives (after truncation)."""
    enc = tok(
        [w.prefix for w in windows], [w.text for w in windows],
        truncation="only_second", max_length=max_length, return_offsets_mapping=True,
    )  # fmt: skip
    seen = np.zeros(len(norm), dtype=bool)
    for k, w in enumerate(windows):
        for (a, b), seq in zip(enc["offset_mapping"][k], enc.sequence_ids(k), strict=True):
            if seq == 1:
                seen[w.start + a : w.start + b] = True
    return seen


def test_windows_of_long_sentence_text_lose_nothing_to_truncation(tok):
    norm = normalize(long_text(2000))
    windows = make_windows(tok, [Segment(norm)], 64, 16)
    seen = _chars_reaching_model(tok, norm, windows, 64)
    assert all(seen[i] or norm[i] == " " for i in range(len(norm)))


def test_no_character_is_dropped_by_window_truncation(tok):
    max_length, stride = 32, 8
    lost = {}
    for n in range(20, 80):
        text = "再" * n  # every character is one piece on its own
        windows = make_windows(tok, [Segment(text)], max_length, stride)
        seen = _chars_reaching_model(tok, text, windows, max_length)
        if not seen.all():
            lost[n] = np.flatnonzero(~seen).tolist()
    assert not lost, f"characters never seen by the model (text length: positions): {lost}"


def test_make_windows_several_segments_and_empty(tok):
    segs = [Segment("你好"), Segment(long_text(400, seed=1), "customer", "debtor"), Segment("还钱")]
    windows = make_windows(tok, segs, 48, 8)
    assert [w.segment for w in windows] == sorted(w.segment for w in windows)
    assert {w.segment for w in windows} == {0, 1, 2}
    assert sum(w.segment == 1 for w in windows) > 1
    assert all(w.prefix == "客户对债务人" for w in windows if w.segment == 1)
    assert make_windows(tok, [], 48, 8) == []


def test_make_windows_rejects_stride_not_below_budget(tok):
    with pytest.raises(ValueError, match="stride"):
        make_windows(tok, [Segment(long_text(300))], 16, 12)


def test_make_windows_rejects_bad_context(tok):
    with pytest.raises(ValueError, match="listener"):
        make_windows(tok, [Segment("你好", "agent", "boss")], 64, 8)


# -- combine and version ------------------------------------------------------------------------
def test_combine_by_max():
    rng = np.random.default_rng(0)
    owners = [0, 0, 1, 2, 2, 2, 3]
    windows = [Window(s, "p", "t", 0, 1) for s in owners]
    scores = rng.random((len(owners), 3)).astype(np.float32)
    out = combine_by_max(scores, windows, 4)
    assert out.shape == (4, 3) and out.dtype == np.float32
    for seg in range(4):
        rows = [i for i, s in enumerate(owners) if s == seg]
        np.testing.assert_array_equal(out[seg], scores[rows].max(axis=0))
    # per label, not per row: segment 2's maxima come from different windows
    scores2 = np.array([[0.9, 0.1, 0.2], [0.1, 0.8, 0.3]], dtype=np.float32)
    np.testing.assert_array_equal(
        combine_by_max(scores2, [Window(0, "", "", 0, 1)] * 2, 1), np.array([[0.9, 0.8, 0.3]], dtype=np.float32)
    )


def test_combine_by_max_length_mismatch():
    with pytest.raises(ValueError):
        combine_by_max(np.zeros((2, 3), dtype=np.float32), [Window(0, "", "", 0, 1)], 1)


def test_check_version():
    check_version(PREPROCESS_VERSION)
    with pytest.raises(ValueError) as e:
        check_version("cg-pp-0", where="my-model")
    msg = str(e.value)
    assert "cg-pp-0" in msg and PREPROCESS_VERSION in msg and "my-model" in msg


# -- placeholders and masks (LABELS.md: they stand for ordinary values, never change a label) --
PLACEHOLDER_SPELLINGS = ["{0}", "{name}", "${user_name}", "{$platform}", "{{amount}}", "#name#", "%s", "%1$s",
                         "[PHONE]", "<NAME>", "XXX", "xx", "***", "某某", "×××"]  # fmt: skip


@pytest.mark.parametrize("spelling", PLACEHOLDER_SPELLINGS)
def test_every_placeholder_spelling_normalises_the_same(spelling):
    reference = normalize("{name}您好,您在我司的借款将于明日到期,请按时还款。")
    assert normalize(f"{spelling}您好，您在我司的借款将于明日到期，请按时还款。") == reference


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("请连接wifi后登录APP", "请连接wifi后登录app"),
        ("xxl号的衣服", "xxl号的衣服"),
        ("5*3=15", "5*3=15"),
        ("颜色#ff0000", "颜色#ff0000"),
        ("[澜海金融]您好", "[澜海金融]您好"),  # a brand tag is content, not a placeholder
    ],
)
def test_ordinary_ascii_and_brand_tags_are_not_placeholders(text, kept):
    assert normalize(text) == kept


def test_masked_phone_and_name_keep_their_visible_parts():
    assert normalize("王**您好，请致电138****5521") == "王某您好,请致电138某5521"


def test_placeholder_spellings_score_the_same(tiny_classifier):
    """The model sees one stand-in, so no spelling of a placeholder can move a score."""
    texts = [f"{p}您好，您的账单{q}元已出，请于{r}前还款。" for p, q, r in
             [("{0}", "{1}", "{2}"), ("${name}", "${amount}", "${date}"), ("#name#", "%s", "XXX")]]  # fmt: skip
    probs = tiny_classifier.predict_proba(texts)
    assert np.allclose(probs, probs[0], atol=0)
