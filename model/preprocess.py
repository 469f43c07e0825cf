"""The one preprocessing path: raw transcript text → normalised text → model input windows.

Training, the HTTP API, batch relabeling and the notebooks all call these functions, so a rule
lives here once. Any change to what the model sees must bump :data:`PREPROCESS_VERSION`; model
artifacts record it and refuse to load under another version.

Model input format (fixed, documented in the README): every segment is encoded as a text pair
``(context, text)`` where ``context`` is a short Chinese prefix naming the speaker and listener,
e.g. ``坐席对第三方`` (agent → third party). Long texts are cut into overlapping windows of at most
``max_length`` tokens (context repeated in each); window scores are combined by max per label.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

import numpy as np

from model.labels import DEFAULT_LISTENER, DEFAULT_SPEAKER, check_context

#: Bump whenever normalisation, the context prefix or windowing changes.
PREPROCESS_VERSION = "cg-pp-2"

SPEAKER_TAGS: Mapping[str, str] = {"agent": "坐席", "customer": "客户"}
LISTENER_TAGS: Mapping[str, str] = {"debtor": "对债务人", "third_party": "对第三方", "unknown": "对象未知"}

# Fillers whose immediate repetition carries no content (嗯嗯嗯 → 嗯, 那个那个 → 那个).
FILLERS: tuple[str, ...] = ("就是说", "那个", "嗯", "啊", "呃", "哦", "噢", "唉", "哎")
_FILLER_RUN = re.compile("|".join(f"(?:{f})(?:[ ,]*(?:{f}))+" for f in FILLERS))

_CJK = r"\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_SPACE_NEAR_CJK = re.compile(rf"(?<=[{_CJK}]) +|  *(?=[{_CJK}])")
_SPACES = re.compile(r"\s+")
# Characters NFKC leaves alone but that only vary in typography.
_PUNCT_MAP = str.maketrans(
    {
        "“": '"', "”": '"', "„": '"', "「": '"', "」": '"', "『": '"', "』": '"',
        "‘": "'", "’": "'", "【": "[", "】": "]", "〔": "[", "〕": "]",
        "—": "-", "–": "-", "―": "-", "・": "·", "•": "·", "｡": "。", "､": "、",
    }
)  # fmt: skip
#: The neutral stand-in every template placeholder and mask maps to (LABELS.md: they stand for
#: ordinary values and never change a label). 某 is what Chinese itself uses for "a certain ...".
STAND_IN = "某"
# Template placeholders of every common engine: ${x} {$x} {{x}} {x} {0} #x# %s %1$s [PHONE] <NAME>.
_PLACEHOLDER = re.compile(
    r"\$\{[^{}\n]{1,40}\}|\{\$[^{}\n]{1,40}\}|\{\{[^{}\n]{1,40}\}\}|\{[^{}\n]{0,40}\}"
    r"|#[a-z_][a-z0-9_.]{0,30}#|#[\u4e00-\u9fff]{1,8}#"
    r"|%(?:\d+\$)?[sd]|\[[a-z_]{2,20}\]|<[a-z_]{2,20}>",
    re.IGNORECASE,
)
# Masks: XXX / xx, *** (also inside 138****5521), ×××, ○○, □□; runs of 某 collapse to one.
_MASK = re.compile(r"(?<![a-z])x{2,}(?![a-z])|\*{2,}|×{2,}|○{2,}|□{2,}|某{2,}", re.IGNORECASE)


def neutralise_placeholders(text: str) -> str:
    """Map template placeholders and masks to one neutral stand-in, so their spelling cannot move a score."""
    return _MASK.sub(STAND_IN, _PLACEHOLDER.sub(STAND_IN, text))


_REPEATED_PUNCT = [
    (re.compile(r"\.{3,}"), "..."),
    (re.compile(r"。{2,}"), "。"),
    (re.compile(r"([!?,;:、~\-])\1+"), r"\1"),
]


@lru_cache(maxsize=1)
def _t2s():
    """OpenCC traditional→simplified converter (PyPI `opencc`, the project's official binding)."""
    import opencc

    return opencc.OpenCC("t2s")


def _is_dropped(ch: str) -> bool:
    # Control and format characters (zero-width spaces, BOM, bidi marks) and unassigned or
    # private-use code points carry nothing a classifier can use.
    return unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn"} and ch not in "\t\n\r"


def _normalize_once(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)  # also full-width → half-width
    text = "".join(ch for ch in text if not _is_dropped(ch))
    text = _t2s().convert(text)
    text = text.lower()
    text = text.translate(_PUNCT_MAP)
    text = neutralise_placeholders(text)
    for pattern, repl in _REPEATED_PUNCT:
        text = pattern.sub(repl, text)
    text = _SPACES.sub(" ", text).strip()
    text = _SPACE_NEAR_CJK.sub("", text)
    text = _FILLER_RUN.sub(lambda m: next(f for f in FILLERS if m.group(0).startswith(f)), text)
    return text


def normalize(text: str) -> str:
    """Normalise one transcript segment; raises ``ValueError`` if nothing is left.

    NFKC (full-width → half-width), control characters dropped, traditional → simplified,
    Latin lower-cased, typographic punctuation unified and de-duplicated, template placeholders
    and masks mapped to one stand-in (:func:`neutralise_placeholders`), whitespace collapsed
    (and removed next to CJK, where ASR inserts it arbitrarily), repeated fillers collapsed.
    Applied to a fixed point so that ``normalize(normalize(x)) == normalize(x)``.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("text is empty or whitespace only")
    out = text
    for _ in range(4):  # each pass is a no-op on its own output in practice; the loop guarantees it
        nxt = _normalize_once(out)
        if nxt == out:
            break
        out = nxt
    if not out:
        raise ValueError(f"text has no content after normalisation: {text[:40]!r}")
    return out


def context_prefix(speaker: str = DEFAULT_SPEAKER, listener: str = DEFAULT_LISTENER) -> str:
    """The first sequence of the model's text pair, e.g. ``坐席对债务人``."""
    check_context(speaker, listener)
    return SPEAKER_TAGS[speaker] + LISTENER_TAGS[listener]


def _seconds(value: Any, name: str) -> float | None:
    """An optional time in seconds: a finite number ≥ 0, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a number of seconds ≥ 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Segment:
    """One transcript segment with its context and optional timing (LABELS.md, "Unit").

    The one validated input type: the readers, the dataset builder, the API schemas and the
    Classifier all build it, so the rules (text is a string, speaker and listener are in
    :mod:`model.labels`, times are seconds with ``end >= start``) are checked here only. Missing
    or empty ``speaker``/``listener`` take the defaults of :mod:`model.labels`.
    """

    text: str
    speaker: str = DEFAULT_SPEAKER
    listener: str = DEFAULT_LISTENER
    start: float | None = None
    end: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise ValueError(f"text must be a string, got {type(self.text).__name__}")
        check_context(self.speaker, self.listener)
        start, end = _seconds(self.start, "start"), _seconds(self.end, "end")
        if start is not None and end is not None and end < start:
            raise ValueError(f"end ({end}) is before start ({start})")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)

    @cached_property
    def normalized(self) -> str:
        """:func:`normalize` of the text, computed once per segment (raises ``ValueError`` if empty)."""
        return normalize(self.text)

    @classmethod
    def of(cls, obj: str | Mapping[str, Any] | Segment) -> Segment:
        """Accept a string, a mapping with ``text`` (+ ``speaker``/``listener``/``start``/``end``) or a Segment."""
        if isinstance(obj, Segment):
            return obj
        if isinstance(obj, str):
            return cls(obj)
        if isinstance(obj, Mapping):
            if "text" not in obj:
                raise ValueError("segment has no 'text' field")
            return cls(
                obj["text"],
                obj.get("speaker") or DEFAULT_SPEAKER,
                obj.get("listener") or DEFAULT_LISTENER,
                obj.get("start"),
                obj.get("end"),
            )
        raise ValueError(f"a segment must be a string or a mapping with 'text', got {type(obj).__name__}")

    def as_dict(self) -> dict[str, Any]:
        """The segment as a plain row (JSON, Parquet): ``start``, ``end``, ``speaker``, ``listener``, ``text``."""
        return {"start": self.start, "end": self.end, "speaker": self.speaker, "listener": self.listener,
                "text": self.text}  # fmt: skip


@dataclass(frozen=True)
class Window:
    """A span ``text[start:end]`` of one normalised segment that fits the model."""

    segment: int  # index of the segment in the input sequence
    prefix: str
    text: str
    start: int
    end: int


def make_windows(tokenizer: Any, segments: Sequence[Segment], max_length: int, stride: int) -> list[Window]:
    """Cut every segment into deterministic, overlapping windows of at most ``max_length`` tokens.

    ``stride`` is the number of tokens consecutive windows share, so a phrase cut at one edge is
    whole in the next window. Nothing past the model's maximum length is ever dropped.
    """
    if not segments:
        return []
    prefixes = [context_prefix(s.speaker, s.listener) for s in segments]
    texts = [s.normalized for s in segments]
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    prefix_lens = {p: len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in set(prefixes)}
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    windows: list[Window] = []
    for i, (text, prefix) in enumerate(zip(texts, prefixes, strict=True)):
        offsets = enc["offset_mapping"][i]
        budget = max_length - specials - prefix_lens[prefix]
        if budget - 2 <= stride:
            raise ValueError(
                f"max_length={max_length} leaves {budget} tokens per window, not more than stride={stride}"
            )
        if len(offsets) <= budget:
            windows.append(Window(i, prefix, text, 0, len(text)))
            continue
        # A window starting mid-text re-tokenises with an extra leading "▁" piece (and may split a
        # boundary piece): keep a margin so the re-tokenised window still fits whole.
        budget -= 2
        step = budget - stride
        begin = 0
        while True:
            end = min(begin + budget, len(offsets))
            a, b = offsets[begin][0], offsets[end - 1][1]
            windows.append(Window(i, prefix, text[a:b], a, b))
            if end == len(offsets):
                break
            begin += step
    return windows


def encode_windows(tokenizer: Any, windows: Sequence[Window], max_length: int) -> list[list[int]]:
    """Token ids of windows as ``(prefix, text)`` pairs, unpadded: exactly what the model is fed.

    The Classifier, training and ``collectguard preprocess`` all encode through this function.
    """
    if not windows:
        return []
    enc = tokenizer(
        [w.prefix for w in windows],
        [w.text for w in windows],
        truncation="only_second",  # guards a boundary piece re-tokenising one token longer
        max_length=max_length,
    )
    return enc["input_ids"]


def pad_batch(ids: Sequence[Sequence[int]], pad_id: int) -> dict[str, np.ndarray]:
    """Right-pad token id lists to the longest one: int64 ``input_ids`` and ``attention_mask``."""
    width = max(len(x) for x in ids)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    attention = np.zeros((len(ids), width), dtype=np.int64)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = x
        attention[row, : len(x)] = 1
    return {"input_ids": input_ids, "attention_mask": attention}


def combine_by_max(window_scores: np.ndarray, windows: Sequence[Window], n_segments: int) -> np.ndarray:
    """Per-segment scores: the max over that segment's windows, label by label."""
    out = np.full((n_segments, window_scores.shape[1]), -np.inf, dtype=window_scores.dtype)
    for row, w in zip(window_scores, windows, strict=True):
        np.maximum(out[w.segment], row, out=out[w.segment])
    return out


def check_version(version: str, where: str = "model artifact") -> None:
    """Refuse artifacts made with another preprocessing: their inputs would differ silently."""
    if version != PREPROCESS_VERSION:
        raise ValueError(
            f"{where} was made with preprocessing version {version!r}, but this code is "
            f"{PREPROCESS_VERSION!r}; retrain the model or install the matching collectguard version"
        )


def segments_of(items: Iterable[str | Mapping[str, Any] | Segment]) -> list[Segment]:
    """Coerce a batch of inputs, naming the position of the first bad one."""
    out = []
    for i, item in enumerate(items):
        try:
            out.append(Segment.of(item))
        except ValueError as e:
            raise ValueError(f"segment {i}: {e}") from None
    return out
