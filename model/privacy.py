"""Personal-information masking: phone, ID and bank-card numbers and e-mail addresses.

The collection standard (../shared/REGULATIONS.md) has a chapter on personal-information
security: what the product stores or logs must not carry a debtor's numbers. :func:`mask_pii`
replaces them with ``[PHONE]``, ``[ID]``, ``[CARD]`` and ``[EMAIL]`` at the input boundary of
the API and of relabeling, so scoring, stored rows, logs and echoed text all see the masked
text. The tokens are template placeholders to :mod:`model.preprocess` (``[phone]`` after
lower-casing → the neutral stand-in 某), so masked text takes the same preprocessing path as
training text with placeholders and scores like it.

Numbers are found as runs of digit characters — ASCII, full-width and Chinese numerals
(零〇一二三四五六七八九, 幺 and 两 as ASR writes them) — with at most one space or dash between
digits, and classified by shape:

- ``[ID]``: 18 characters (17 digits + digit or X) or 15 digits whose birth date is a real
  calendar date in range (resident ID card);
- ``[CARD]``: 16–19 digits that are not an ID (bank cards);
- ``[PHONE]``: a mobile number (1[3-9] + 9 digits, optionally after +86 / 0086 / 86), a landline
  with its area code (0 + 2–3 digits, then 7–8 digits; ``(010)``-style brackets too), a 400/800
  service number, or 7–8 digits right after 电话/座机/号码/拨打 and similar words.

Ordinary numbers — amounts, dates, times, staff numbers (工号) of up to 8 digits — match none of
these shapes and are left alone (tests/test_privacy.py checks both directions with generated
numbers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

PHONE, ID, CARD, EMAIL = "[PHONE]", "[ID]", "[CARD]", "[EMAIL]"
TOKENS: tuple[str, ...] = (PHONE, ID, CARD, EMAIL)

_DIGIT_VALUES = {
    **{c: str(i) for i, c in enumerate("0123456789")},
    **{c: str(i) for i, c in enumerate("０１２３４５６７８９")},
    **{c: str(i) for i, c in enumerate("零一二三四五六七八九")},
    "〇": "0", "幺": "1", "两": "2",
}  # fmt: skip
_D = "[" + "".join(_DIGIT_VALUES) + "]"
_SEP = r"(?:[ \u3000\t]*[-－–—][ \u3000\t]*|[ \u3000\t]{1,2})"  # one dash (spaced or not) or 1–2 spaces
_GAP = f"{_SEP}?"
_X = "[xXｘＸ]"


def _digits(n_min: int, n_max: int | None = None) -> str:
    """``n_min``..``n_max`` digit characters with optional single separators between them."""
    rest = f"{{{n_min - 1},{n_max - 1}}}" if n_max is not None else f"{{{n_min - 1}}}"
    return f"{_D}(?:{_GAP}{_D}){rest}"


_NOT_AFTER = rf"(?<![0-9０-９A-Za-z{''.join(_DIGIT_VALUES)}])"
_NOT_BEFORE = rf"(?![0-9０-９{''.join(_DIGIT_VALUES)}])"
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+[@＠][A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
_ID18 = re.compile(
    _NOT_AFTER + f"({_digits(17)}{_GAP}(?:{_D}|{_X}))" + rf"(?![0-9０-９A-Za-z{''.join(_DIGIT_VALUES)}])"
)
_LONG = re.compile(_NOT_AFTER + f"({_digits(15, 19)})" + _NOT_BEFORE)
_ONE, _MOBILE2 = "[1１一幺]", "[3-9３-９三四五六七八九]"
_MOBILE_BODY = rf"{_ONE}{_GAP}{_MOBILE2}(?:{_GAP}{_D}){{9}}"
# With a country code (+86, 0086, 86, (+86)): checked before long runs, which would read it as an ID or card.
_MOBILE_INTL = re.compile(
    _NOT_AFTER + rf"((?:(?:\+|00|＋)[8８][6６]{_GAP}|[8８][6６]{_GAP}|\(\+?86\){_GAP}){_MOBILE_BODY})" + _NOT_BEFORE
)
_MOBILE = re.compile(_NOT_AFTER + f"({_MOBILE_BODY})" + _NOT_BEFORE)
_ZERO = "[0０零〇]"
_LANDLINE = re.compile(
    _NOT_AFTER
    + rf"((?:[(（]{_ZERO}{_D}{{2,3}}[)）]|{_ZERO}(?:{_GAP}{_D}){{2,3}}){_GAP}{_digits(7, 8)}"
    + rf"|[4４8８]{_ZERO}{_ZERO}{_GAP}{_digits(3)}{_GAP}{_digits(4)})"
    + _NOT_BEFORE
)
_CUE = "(?:电话|电活|座机|手机|号码|手机号|联系方式|拨打|打到|回电|致电|tel|Tel|TEL)"
_CUED_PHONE = re.compile(rf"{_CUE}(?:是|为|号|:|：)?[ \u3000]*({_digits(7, 8)})" + _NOT_BEFORE)


def digit_string(text: str) -> str:
    """The digits a run of digit characters spells (separators and other characters dropped)."""
    return "".join(_DIGIT_VALUES[c] for c in text if c in _DIGIT_VALUES)


def _plausible_birth(digits: str, century: str | None = None) -> bool:
    """A resident ID's birth date: a real date between 1900 and 2099."""
    try:
        if century is None:
            year, month, day = int(digits[6:10]), int(digits[10:12]), int(digits[12:14])
        else:
            year, month, day = int(century + digits[6:8]), int(digits[8:10]), int(digits[10:12])
        date(year, month, day)
    except ValueError:
        return False
    return 1900 <= year <= 2099


@dataclass(frozen=True)
class Span:
    """``original[start:end]`` was replaced by ``token``."""

    start: int
    end: int
    token: str


@dataclass(frozen=True)
class Masked:
    """A text after masking, with the spans it replaced so positions map back to the original."""

    original: str
    text: str
    spans: tuple[Span, ...] = field(default_factory=tuple)

    @property
    def changed(self) -> bool:
        return bool(self.spans)

    def token_ranges(self) -> list[tuple[int, int]]:
        """``[start, end)`` of each mask token in :attr:`text`."""
        out, shift = [], 0
        for s in self.spans:
            begin = s.start + shift
            out.append((begin, begin + len(s.token)))
            shift += len(s.token) - (s.end - s.start)
        return out

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """A span of :attr:`text` as a span of :attr:`original` (a token maps to what it replaced)."""
        return self._map(start, is_end=False), self._map(end, is_end=True)

    def _map(self, pos: int, is_end: bool) -> int:
        shift = 0
        for s, (a, b) in zip(self.spans, self.token_ranges(), strict=True):
            if pos < a or (is_end and pos == a):
                break
            if pos < b or (is_end and pos == b):
                return s.end if is_end else s.start
            shift = b - s.end
        return pos - shift


def find_pii(text: str) -> list[Span]:
    """Non-overlapping spans of personal numbers and e-mail addresses, in text order."""
    taken: list[Span] = []

    def free(a: int, b: int) -> bool:
        return all(b <= s.start or a >= s.end for s in taken)

    for m in _EMAIL.finditer(text):
        taken.append(Span(m.start(), m.end(), EMAIL))
    for m in _ID18.finditer(text):
        d = digit_string(m.group(1)[:-1]) + m.group(1)[-1]
        if _plausible_birth(d) and free(*m.span(1)):
            taken.append(Span(*m.span(1), ID))
    for m in _MOBILE_INTL.finditer(text):
        if free(*m.span(1)):
            taken.append(Span(*m.span(1), PHONE))
    for m in _LONG.finditer(text):
        if not free(*m.span(1)):
            continue
        d = digit_string(m.group(1))
        token = ID if len(d) == 15 and _plausible_birth(d, "19") else CARD if len(d) >= 16 else None
        if token:
            taken.append(Span(*m.span(1), token))
    for pattern in (_MOBILE, _LANDLINE, _CUED_PHONE):
        for m in pattern.finditer(text):
            if free(*m.span(1)):
                taken.append(Span(*m.span(1), PHONE))
    return sorted(taken, key=lambda s: s.start)


def mask(text: str) -> Masked:
    """``text`` with personal numbers and e-mail addresses replaced, plus the replaced spans."""
    spans = find_pii(text)
    if not spans:
        return Masked(text, text)
    parts, last = [], 0
    for s in spans:
        parts += [text[last : s.start], s.token]
        last = s.end
    parts.append(text[last:])
    return Masked(text, "".join(parts), tuple(spans))


def mask_pii(text: str) -> str:
    """``text`` with phone, ID and bank-card numbers and e-mail addresses masked."""
    return mask(text).text


def mask_value(value: object) -> object:
    """Mask every string inside a JSON-like value (metadata, error records); other values unchanged."""
    if isinstance(value, str):
        return mask_pii(value)
    if isinstance(value, dict):
        return {k: mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(v) for v in value]
    return value
