"""Occlusion explanations: which characters of a segment drive a label's score.

Each character (or n-gram) of the *normalised* text is dropped in turn and the segment is
re-scored; the drop in the label's score is that span's weight. Occlusion needs no gradients
and no access to the network's internals, so it works for every backend the
:class:`~model.classifier.Classifier` supports, and because the variants are built from
:func:`model.preprocess.normalize` output and scored through ``predict_proba`` they take the
same preprocessing path as production traffic. All variants are scored in one batch.
"""

from __future__ import annotations

import difflib
import html
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from model.labels import VIOLATIONS
from model.preprocess import Segment, normalize

#: Smallest score change drawn at full colour: differences below a few hundredths are noise.
MIN_SCALE = 0.05


def occlusion_scores(classifier: Any, segment: Any, window: int = 1) -> tuple[str, np.ndarray, np.ndarray]:
    """``(normalised text, base scores (3,), occluded scores (n_spans, 3))`` from one batch.

    Span ``i`` is ``text[i:i+window]``; a variant with nothing left scores 0 for every label
    (an empty segment carries no evidence of a violation).
    """
    if window < 1:
        raise ValueError(f"window must be ≥ 1, got {window}")
    seg = Segment.of(segment)
    text = normalize(seg.text)
    n_spans = max(len(text) - window + 1, 1)
    variants = [text[:i] + text[i + window :] for i in range(n_spans)]
    keep = [i for i, v in enumerate(variants) if v.strip()]
    batch = [Segment(text, seg.speaker, seg.listener)]
    batch += [Segment(variants[i], seg.speaker, seg.listener) for i in keep]
    probs = np.asarray(classifier.predict_proba(batch), dtype=float)
    occluded = np.zeros((n_spans, len(VIOLATIONS)), dtype=float)
    occluded[keep] = probs[1:]
    return text, probs[0], occluded


def occlusion(classifier: Any, segment: Any, label: str | None = None, window: int = 1) -> list[tuple[str, float]]:
    """``[(span, delta)]`` for each span of the normalised text, in text order.

    ``delta`` is the label's score on the whole text minus its score with the span removed:
    positive spans push towards the label, negative ones away from it. ``label=None`` explains
    the label with the highest score. With ``window=1`` there is one entry per character.
    """
    if label is not None and label not in VIOLATIONS:
        raise ValueError(f"label must be one of {list(VIOLATIONS)}, got {label!r}")
    text, base, occluded = occlusion_scores(classifier, segment, window)
    col = int(np.argmax(base)) if label is None else VIOLATIONS.index(label)
    deltas = base[col] - occluded[:, col]
    return [(text[i : i + window], float(d)) for i, d in enumerate(deltas)]


def char_weights(spans: Sequence[tuple[str, float]], window: int = 1) -> list[float]:
    """Per-character weights from n-gram occlusions: the mean delta of the spans covering each char."""
    if window == 1:
        return [d for _, d in spans]
    n_chars = len(spans) + window - 1
    total, count = np.zeros(n_chars), np.zeros(n_chars)
    for i, (_, d) in enumerate(spans):
        total[i : i + window] += d
        count[i : i + window] += 1
    return (total / np.maximum(count, 1)).tolist()


def highlight_html(
    text: str, weights: Sequence[float] | Sequence[tuple[str, float]], scale: float | None = None
) -> str:
    """``text`` as HTML with each character's background coloured by its weight.

    Red = pushes towards the label, blue = away from it; opacity is ``|w| / scale``. The default
    scale is the largest ``|w|`` but at least :data:`MIN_SCALE`, so the strongest character is
    fully coloured while score changes too small to matter stay faint instead of looking decisive.
    ``weights`` may be the ``(char, delta)`` list from :func:`occlusion` with ``window=1``.
    """
    values = [float(w[1]) if isinstance(w, tuple) else float(w) for w in weights]
    if len(values) != len(text):
        raise ValueError(f"need one weight per character: {len(text)} characters, {len(values)} weights")
    scale = scale or max(max((abs(v) for v in values), default=0.0), MIN_SCALE)
    parts = []
    for ch, w in zip(text, values, strict=True):
        alpha = min(abs(w) / scale, 1.0)
        rgb = "220,40,40" if w >= 0 else "40,90,220"
        parts.append(
            f'<span title="{w:+.3f}" style="background-color: rgba({rgb},{alpha:.2f})">{html.escape(ch)}</span>'
        )
    return '<span style="font-size: 1.1em; line-height: 1.8">' + "".join(parts) + "</span>"


def explanation_html(classifier: Any, segment: Any, labels: Sequence[str] | None = None, window: int = 1) -> str:
    """An HTML block explaining one segment: per label, its score, decision and highlighted text.

    Scores for every label come from the same single batch, so showing all three labels costs
    no more than showing one; all labels share one colour scale so their colours compare.
    """
    seg = Segment.of(segment)
    text, base, occluded = occlusion_scores(classifier, seg, window)
    all_deltas = base[None, :] - occluded
    scale = max(float(np.abs(all_deltas).max(initial=0.0)), MIN_SCALE)  # one scale: labels compare by colour
    rows = []
    for label in labels or VIOLATIONS:
        col = VIOLATIONS.index(label)
        deltas = all_deltas[:, col]
        weights = char_weights([(text[i : i + window], float(d)) for i, d in enumerate(deltas)], window)
        flagged = base[col] >= classifier.thresholds[label]
        top = _top_spans(text, deltas, window)
        rows.append(
            f"<tr><td style='text-align:left'><b>{label}</b><br>score {base[col]:.3f} "
            f"(threshold {classifier.thresholds[label]:.2f}) {'⚑ flagged' if flagged else ''}"
            f"<br><small>top: {html.escape(top)}</small></td>"
            f"<td style='text-align:left'>{highlight_html(text, weights, scale)}</td></tr>"
        )
    head = html.escape(f"speaker={seg.speaker} listener={seg.listener}")
    return f"<div><small>{head}</small><table>{''.join(rows)}</table></div>"


def _top_spans(text: str, deltas: np.ndarray, window: int, k: int = 3) -> str:
    order = np.argsort(-deltas, kind="stable")[:k]
    return "  ".join(f"{text[i : i + window]} {deltas[i]:+.3f}" for i in order)


# -- evidence spans on the original text ---------------------------------------------------------------


@lru_cache(maxsize=8192)
def _char_form(ch: str) -> str:
    """What one original character becomes on its own under :func:`normalize` (``""`` if dropped)."""
    if ch.isspace():
        return " "
    try:
        return normalize(ch)
    except ValueError:
        return ""


def align_to_original(text: str) -> tuple[str, list[tuple[int, int]]]:
    """``(normalize(text), spans)``: ``spans[i]`` is the ``[start, end)`` of ``text`` that
    normalised character ``i`` came from.

    Normalisation is not character-by-character (placeholders collapse to one 某, fillers and
    punctuation runs collapse, spaces next to CJK vanish), so each original character is
    normalised alone and that sequence is aligned to the real output with
    :class:`difflib.SequenceMatcher`; a replaced stretch maps to the whole original stretch it
    replaced. The preprocessing itself is not touched: this only reads it.
    """
    norm = normalize(text)
    forms, owner = [], []
    for i, ch in enumerate(text):
        form = _char_form(ch)
        forms.append(form)
        owner.extend([i] * len(form))
    chars = "".join(forms)
    spans: list[tuple[int, int]] = [(0, len(text))] * len(norm)
    matcher = difflib.SequenceMatcher(None, chars, norm, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            for k in range(b1 - b0):
                o = owner[a0 + k]
                spans[b0 + k] = (o, o + 1)
        elif op == "replace" or op == "insert":
            lo = owner[a0] if a0 < len(owner) else (owner[a0 - 1] + 1 if a0 else 0)
            hi = owner[a1 - 1] + 1 if a1 > a0 else lo
            if hi == lo:  # inserted: attach to the neighbouring original character
                lo, hi = max(lo - 1, 0), max(lo, 1)
            for k in range(b0, b1):
                spans[k] = (lo, hi)
    return norm, spans


@dataclass(frozen=True)
class OcclusionPlan:
    """A segment's normalised text cut into chunks, and one variant per chunk with it left out."""

    segment: Segment
    normalized: str
    chunks: tuple[tuple[int, int], ...]
    variants: tuple[Segment, ...]
    keep: tuple[int, ...]  # chunks whose variant is not empty (the others score 0)


def plan_occlusion(segment: Any, max_variants: int = 16, min_chunk: int = 2) -> OcclusionPlan:
    """Chunks of ``ceil(n / max_variants)`` (at least ``min_chunk``) normalised characters.

    Cost is bounded: at most ``max_variants`` extra segments are scored per explained segment,
    each shorter than the original, whatever its length.
    """
    seg = Segment.of(segment)
    text = seg.normalized
    size = max(min_chunk, -(-len(text) // max_variants))
    chunks = tuple((i, min(i + size, len(text))) for i in range(0, len(text), size))
    variants, keep = [], []
    for k, (a, b) in enumerate(chunks):
        rest = text[:a] + text[b:]
        if rest.strip():
            keep.append(k)
            variants.append(Segment(rest, seg.speaker, seg.listener))
    return OcclusionPlan(seg, text, chunks, tuple(variants), tuple(keep))


def evidence_spans(
    plan: OcclusionPlan,
    base: Sequence[float],
    variant_probs: np.ndarray,
    labels: Sequence[str],
    min_weight: float = 0.02,
    keep_fraction: float = 0.5,
    original: str | None = None,
    to_original: Any = None,
    blocked: Sequence[tuple[int, int]] = (),
) -> list[dict[str, Any]]:
    """``[{"label", "start", "end", "text", "weight"}]``: spans of the original text per label.

    A chunk is evidence for a label when leaving it out lowers the label's score by at least
    ``min_weight`` and by at least ``keep_fraction`` of the largest drop; adjacent chunks merge
    (weight = the largest drop among them). Positions are mapped from the normalised text back
    to ``original`` (default: the segment's own text), through ``to_original`` when the scored
    text was itself derived from ``original`` (masking), so ``original[start:end] == text``.
    Characters inside ``blocked`` ranges of the scored text (mask tokens) are never evidence.
    """
    scored = plan.segment.text
    original = scored if original is None else original
    _, spans = align_to_original(scored)
    occluded = np.zeros((len(plan.chunks), len(VIOLATIONS)))
    occluded[list(plan.keep)] = np.asarray(variant_probs, dtype=float).reshape(len(plan.keep), len(VIOLATIONS))
    out: list[dict[str, Any]] = []
    for label in labels:
        col = VIOLATIONS.index(label)
        deltas = float(base[col]) - occluded[:, col]
        floor = max(min_weight, keep_fraction * float(deltas.max(initial=0.0)))
        chosen = [k for k in range(len(plan.chunks)) if deltas[k] >= floor and deltas[k] > 0]
        for run in _runs(chosen):
            a, b = plan.chunks[run[0]][0], plan.chunks[run[-1]][1]
            weight = float(max(deltas[k] for k in run))
            for lo, hi in _original_pieces(spans[a:b], blocked):
                start, end = to_original(lo, hi) if to_original else (lo, hi)
                start, end = _trim(original, start, end)
                if end > start:
                    out.append({"label": label, "start": start, "end": end, "text": original[start:end],
                                "weight": round(weight, 4)})  # fmt: skip
    return out


def _runs(indices: Sequence[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for k in indices:
        if runs and runs[-1][-1] == k - 1:
            runs[-1].append(k)
        else:
            runs.append([k])
    return runs


def _original_pieces(spans: Sequence[tuple[int, int]], blocked: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Contiguous stretches of the scored text covered by ``spans``, cut where a blocked range is."""
    lo, hi = min(s for s, _ in spans), max(e for _, e in spans)
    pieces, start = [], lo
    for a, b in sorted(blocked):
        if b <= start or a >= hi:
            continue
        if a > start:
            pieces.append((start, a))
        start = max(start, b)
    if start < hi:
        pieces.append((start, hi))
    return pieces


_EDGE = set(" \t\r\n,.;:!?，。；：！？、…~-—\"'“”‘’()（）[]【】")


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start] in _EDGE:
        start += 1
    while end > start and text[end - 1] in _EDGE:
        end -= 1
    return start, end
