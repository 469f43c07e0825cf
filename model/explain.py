"""Occlusion explanations: which characters of a segment drive a label's score.

Each character (or n-gram) of the *normalised* text is dropped in turn and the segment is
re-scored; the drop in the label's score is that span's weight. Occlusion needs no gradients
and no access to the network's internals, so it works for every backend the
:class:`~model.classifier.Classifier` supports, and because the variants are built from
:func:`model.preprocess.normalize` output and scored through ``predict_proba`` they take the
same preprocessing path as production traffic. All variants are scored in one batch.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
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
