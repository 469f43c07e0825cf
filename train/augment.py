"""Training-time text augmentation for collectguard rows.

Real inputs are ASR transcripts: punctuation goes missing, fillers and repeated words creep in,
homophones get swapped, numbers come out as digits or as characters, some users write
traditional characters, and abusers dodge keyword filters with pinyin initials (sb, nmsl) or
look-alike characters (艹, 尼玛). Training on such variants keeps the classifier from keying on
clean surface forms. This module is for training only; inference must see text exactly as
preprocessing produced it, so nothing here may be imported by the serving path.

Every op is label-preserving: noise ops never add or remove meaning, and the obfuscation ops
only rewrite words that are themselves abusive, and only in rows already labelled ``insult``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from functools import lru_cache

from pypinyin import Style, lazy_pinyin

# ---------------------------------------------------------------------------------------------
# Numbers: digits <-> Chinese numerals
# ---------------------------------------------------------------------------------------------

_DIGIT_CHARS = "零一二三四五六七八九"
_CN_DIGIT = {c: i for i, c in enumerate(_DIGIT_CHARS)} | {"两": 2}
_CN_UNIT = {"十": 10, "百": 100, "千": 1000}


def _section_to_chinese(n: int) -> str:
    """Spell 0 < n < 10000 with units, inserting 零 for internal gaps (3005 -> 三千零五)."""
    units = ["", "十", "百", "千"]
    out: list[str] = []
    pending_zero = False
    for pos in range(3, -1, -1):
        d = n // 10**pos % 10
        if d == 0:
            pending_zero = bool(out)
            continue
        if pending_zero:
            out.append("零")
            pending_zero = False
        out.append(_DIGIT_CHARS[d] + units[pos])
    return "".join(out)


def int_to_chinese(n: int) -> str:
    """Spell a non-negative integer the way people say it (20000 -> 两万, 15 -> 十五).

    Numbers of 10^8 and above are read digit by digit, as speakers do for long numbers.
    """
    if n < 0:
        raise ValueError("negative numbers are not spoken in collection calls")
    if n == 0:
        return "零"
    if n >= 10**8:
        return digits_to_chinese(str(n))
    hi, lo = divmod(n, 10000)
    s = ""
    if hi:
        s = _section_to_chinese(hi) + "万"
        if 0 < lo < 1000:
            s += "零"
    if lo:
        s += _section_to_chinese(lo)
    if s.startswith("一十"):
        s = s[1:]
    # Spoken Mandarin says 两 before 千/万/百 at the head of a section: 两万, 两千.
    return re.sub(r"(^|[零万])二(?=[千百万])", r"\g<1>两", s)


def digits_to_chinese(digits: str) -> str:
    """Read a digit string one character at a time (2024 -> 二零二四), like ASR for IDs/years."""
    return "".join(_DIGIT_CHARS[int(c)] for c in digits)


def chinese_to_int(s: str) -> int | None:
    """Parse a spoken Chinese number (两万三 -> 23000, 三千零八 -> 3008); None if ambiguous.

    Bare digit runs without units ("两三天", "三四个") are approximate ranges, not numbers,
    so they are rejected unless they contain 零 and are at least 3 long (二零二四).
    """
    if not s or any(c not in _CN_DIGIT and c not in _CN_UNIT and c != "万" for c in s):
        return None
    if not any(c in _CN_UNIT or c == "万" for c in s):
        if len(s) >= 3 and "零" in s and "两" not in s:
            return int("".join(str(_CN_DIGIT[c]) for c in s))
        return None
    total = section = 0
    num: int | None = None
    last_unit = 0
    after_zero = False
    for i, c in enumerate(s):
        if c == "零":
            if num is not None:
                return None
            after_zero = True
        elif c in _CN_DIGIT:
            if num is not None:
                return None
            num = _CN_DIGIT[c]
        elif c in _CN_UNIT:
            unit = _CN_UNIT[c]
            if num is None:
                if c == "十" and (i == 0 or s[i - 1] in "零万"):
                    num = 1
                else:
                    return None
            section += num * unit
            num, last_unit, after_zero = None, unit, False
        else:  # 万
            if num is not None:
                section += num
                num = None
            if section == 0 or total:
                return None
            total, section, last_unit, after_zero = section * 10000, 0, 10000, False
    if num is not None:
        # "三千八" means 3800 (trailing digit scales to the next lower unit), "三千零八" means 3008.
        if last_unit >= 100 and not after_zero:
            section += num * last_unit // 10
        else:
            section += num
    return total + section


# ---------------------------------------------------------------------------------------------
# ASR-noise ops
# ---------------------------------------------------------------------------------------------

_PUNCT = "，。？！、；：,.?!;:…"
_PUNCT_RE = re.compile(f"[{re.escape(_PUNCT)}]")
FILLERS = ("嗯", "啊", "那个", "就是说", "呃", "然后")
# (wrong, right) pairs that ASR confuses; swaps go both ways where both are common.
HOMOPHONES: tuple[tuple[str, str], ...] = (
    ("再", "在"),
    ("在", "再"),
    ("逾期", "预期"),
    ("征信", "正信"),
    ("还款", "换款"),
    ("的", "得"),
    ("的", "地"),
    ("得", "的"),
    ("地", "的"),
    ("已经", "以经"),
    ("利息", "利系"),
    ("账单", "帐单"),
)
_HAN_RE = re.compile(r"[\u4e00-\u9fff]")
_ARABIC_RE = re.compile(r"(?<![\d.])\d+(?![\d.])")
_CN_NUM_RE = re.compile(r"[一二两三四五六七八九十][零一二两三四五六七八九十百千万]+")


def drop_punctuation(text: str, rng: random.Random) -> str:
    """Remove punctuation (sometimes leaving a space), as most ASR engines output none."""
    sep = " " if rng.random() < 0.3 else ""
    out = _PUNCT_RE.sub(sep, text).strip()
    return out if out else text


def insert_fillers(text: str, rng: random.Random) -> str:
    """Insert a hesitation filler at the start or after a clause boundary."""
    cuts = [0] + [m.end() for m in _PUNCT_RE.finditer(text) if m.end() < len(text)]
    pos = rng.choice(cuts)
    filler = rng.choice(FILLERS) + rng.choice(("，", "", " "))
    return text[:pos] + filler + text[pos:]


def homophone_swap(text: str, rng: random.Random) -> str:
    """Replace one occurrence of a commonly mis-recognised word with its homophone."""
    options = [(a, b) for a, b in HOMOPHONES if a in text]
    if not options:
        return text
    src, dst = rng.choice(options)
    starts = [m.start() for m in re.finditer(re.escape(src), text)]
    i = rng.choice(starts)
    return text[:i] + dst + text[i + len(src) :]


def convert_numbers(text: str, rng: random.Random) -> str:
    """Flip one number between Arabic digits and Chinese numerals (20000 <-> 两万 / 二零零零零)."""
    candidates: list[tuple[int, int, str]] = []
    for m in _ARABIC_RE.finditer(text):
        digits = m.group()
        spoken = int(digits) < 10**8 and not (len(digits) > 1 and digits[0] == "0")
        use_reading = spoken and rng.random() < 0.7
        new = int_to_chinese(int(digits)) if use_reading else digits_to_chinese(digits)
        candidates.append((m.start(), m.end(), new))
    for m in _CN_NUM_RE.finditer(text):
        value = chinese_to_int(m.group())
        if value is not None:
            candidates.append((m.start(), m.end(), str(value)))
    candidates = [c for c in candidates if text[c[0] : c[1]] != c[2]]
    if not candidates:
        return text
    start, end, new = rng.choice(candidates)
    return text[:start] + new + text[end:]


def repeat_word(text: str, rng: random.Random) -> str:
    """Stutter: duplicate a 1-2 character span of Han characters (我们我们, 你你)."""
    starts = [m.start() for m in _HAN_RE.finditer(text)]
    if not starts:
        return text
    i = rng.choice(starts)
    span = 2 if i + 1 < len(text) and _HAN_RE.match(text[i + 1]) and rng.random() < 0.6 else 1
    return text[: i + span] + text[i : i + span] + text[i + span :]


@lru_cache(maxsize=1)
def _s2t():
    """Build the OpenCC converter once; construction reads config files from disk."""
    import opencc

    return opencc.OpenCC("s2t")


def to_traditional(text: str, rng: random.Random) -> str:
    """Convert simplified to traditional characters (some users type or ASR emits them)."""
    del rng  # deterministic op; signature kept uniform with the others
    return _s2t().convert(text)


# ---------------------------------------------------------------------------------------------
# Obfuscation of abusive words (only ever applied to rows labelled insult)
# ---------------------------------------------------------------------------------------------

# Words that are abusive wherever they occur in an insult row. Patterns ending in 妈 refuse a
# following 妈 so that 你妈妈 (your mother) is never treated as the curse 你妈.
ABUSIVE_WORDS: tuple[str, ...] = (
    "你妈死了",
    "操你妈",
    "草泥马",
    "他妈的",
    "你妈的",
    "狗日的",
    "王八蛋",
    "神经病",
    "不要脸",
    "窝囊废",
    "傻逼",
    "傻叉",
    "你妈",
    "他妈",
    "妈的",
    "卧槽",
    "我操",
    "废物",
    "垃圾",
    "脑残",
    "智障",
    "贱人",
    "畜生",
    "人渣",
    "去死",
    "老赖",
    "骗子",
    "穷鬼",
    "滚蛋",
)
_ABUSIVE_RE = re.compile(
    "|".join(
        re.escape(w) + ("(?!妈)" if w.endswith("妈") else "") for w in sorted(ABUSIVE_WORDS, key=len, reverse=True)
    )
)
# Character-level look-alikes used online; whole-word forms first (你妈 -> 尼玛).
LOOKALIKE_WORDS: dict[str, tuple[str, ...]] = {
    "你妈": ("尼玛",),
    "操你妈": ("艹你马", "草泥马"),
    "他妈的": ("他马的", "特么的"),
    "妈的": ("马的", "玛的"),
    "傻逼": ("傻b", "傻比", "煞笔", "傻B"),
    "卧槽": ("卧艹", "我草"),
    "我操": ("我艹", "我草"),
}
LOOKALIKE_CHARS: dict[str, tuple[str, ...]] = {
    "操": ("艹", "草"),
    "妈": ("马", "玛"),
    "逼": ("b", "比", "B"),
    "傻": ("沙", "煞"),
    "死": ("s",),
    "贱": ("jian",),
}


def _abusive_spans(text: str) -> list[re.Match[str]]:
    return list(_ABUSIVE_RE.finditer(text))


def pinyin_initials(word: str) -> str:
    """Pinyin initials of a word (傻逼 -> sb, 他妈的 -> tmd) via pypinyin."""
    return "".join(lazy_pinyin(word, style=Style.FIRST_LETTER))


# Name-calling words that nobody abbreviates to initials online (ll for 老赖 would be noise).
_NO_PINYIN = frozenset({"老赖", "骗子", "穷鬼", "人渣", "畜生", "窝囊废", "滚蛋"})


def obfuscate_pinyin(text: str, rng: random.Random) -> str:
    """Replace one abusive word with its pinyin initials (sb, nmsl, tmd), sometimes upper-cased."""
    spans = [m for m in _abusive_spans(text) if m.group() not in _NO_PINYIN]
    if not spans:
        return text
    m = rng.choice(spans)
    new = pinyin_initials(m.group())
    if rng.random() < 0.2:
        new = new.upper()
    return text[: m.start()] + new + text[m.end() :]


def obfuscate_lookalike(text: str, rng: random.Random) -> str:
    """Replace one abusive word with a look-alike spelling (操 -> 艹, 妈 -> 马, 逼 -> b)."""
    spans = [
        m for m in _abusive_spans(text) if m.group() in LOOKALIKE_WORDS or any(c in LOOKALIKE_CHARS for c in m.group())
    ]
    if not spans:
        return text
    m = rng.choice(spans)
    word = m.group()
    if word in LOOKALIKE_WORDS and rng.random() < 0.6:
        new = rng.choice(LOOKALIKE_WORDS[word])
    else:
        positions = [i for i, c in enumerate(word) if c in LOOKALIKE_CHARS]
        if positions:
            i = rng.choice(positions)
            new = word[:i] + rng.choice(LOOKALIKE_CHARS[word[i]]) + word[i + 1 :]
        else:
            new = rng.choice(LOOKALIKE_WORDS[word])
    return text[: m.start()] + new + text[m.end() :]


# ---------------------------------------------------------------------------------------------
# Row-level API
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AugmentConfig:
    """Probability that each op is applied to a row (independently, in a fixed order)."""

    p_pinyin_obf: float = 0.35
    p_lookalike_obf: float = 0.35
    p_homophone: float = 0.3
    p_numbers: float = 0.3
    p_repeat: float = 0.15
    p_fillers: float = 0.3
    p_drop_punct: float = 0.35
    p_traditional: float = 0.1


Op = Callable[[str, random.Random], str]
# Order matters: obfuscation must see simplified text before any s2t conversion; punctuation is
# dropped after fillers are placed at clause boundaries; traditional conversion runs last.
OPS: tuple[tuple[str, str, Op, bool], ...] = (
    # (name, config field, function, needs an insult label)
    ("pinyin_obf", "p_pinyin_obf", obfuscate_pinyin, True),
    ("lookalike_obf", "p_lookalike_obf", obfuscate_lookalike, True),
    ("homophone", "p_homophone", homophone_swap, False),
    ("numbers", "p_numbers", convert_numbers, False),
    ("repeat", "p_repeat", repeat_word, False),
    ("fillers", "p_fillers", insert_fillers, False),
    ("drop_punct", "p_drop_punct", drop_punctuation, False),
    ("traditional", "p_traditional", to_traditional, False),
)
assert {f.name for f in fields(AugmentConfig)} == {op[1] for op in OPS}


def augment_text(text: str, labels: Iterable[str], rng: random.Random, cfg: AugmentConfig) -> tuple[str, list[str]]:
    """Apply ops by their probabilities; guarantee a change so copies are not duplicates.

    Returns the new text and the names of the ops that changed it.
    """
    is_insult = "insult" in labels
    eligible = [op for op in OPS if is_insult or not op[3]]
    applied: list[str] = []
    out = text
    for name, field, fn, _ in eligible:
        if rng.random() < getattr(cfg, field):
            new = fn(out, rng)
            if new != out and new.strip():
                out = new
                applied.append(name)
    if out == text:
        # Nothing fired or nothing matched: try the cheap noise ops in random order;
        # insert_fillers always changes the text, so this loop always ends with a change.
        fallback = [op for op in eligible if op[0] in {"homophone", "numbers", "drop_punct"}]
        rng.shuffle(fallback)
        fallback.append(("fillers", "p_fillers", insert_fillers, False))
        for name, _, fn, _ in fallback:
            new = fn(out, rng)
            if new != out and new.strip():
                out = new
                applied.append(name)
                break
    if not out.strip():
        return text, []
    return out, applied


def augment_row(row: dict, rng: random.Random, cfg: AugmentConfig | None = None, k: int = 1) -> dict:
    """Return an augmented copy of ``row``; labels, speaker and listener are kept as they are.

    ``group`` carries over (falling back to the original id) so that augmented copies always
    land in the same data split as their source row and cannot leak across splits.
    """
    cfg = cfg or AugmentConfig()
    labels = list(row.get("labels", []))
    text, applied = augment_text(row["text"], labels, rng, cfg)
    new = dict(row)
    new["labels"] = labels
    new["text"] = text
    new["id"] = f"{row['id']}-aug{k}"
    source = row.get("source", "unknown")
    new["source"] = source if source.endswith("+aug") else f"{source}+aug"
    new["group"] = row.get("group") or row["id"]
    note = row.get("notes", "")
    new["notes"] = f"{note} [aug: {','.join(applied) or 'none'}]".strip()
    return new


def augment_rows(rows: Iterable[dict], copies: int, seed: int, cfg: AugmentConfig | None = None) -> list[dict]:
    """Make ``copies`` augmented variants of every row (originals are not included).

    Each variant gets its own RNG seeded from (seed, row id, copy index), so the output for a
    row does not depend on which other rows are in the batch or on their order.
    """
    cfg = cfg or AugmentConfig()
    out: list[dict] = []
    for row in rows:
        for k in range(1, copies + 1):
            rng = random.Random(f"{seed}:{row['id']}:{k}")
            out.append(augment_row(row, rng, cfg, k=k))
    return out
