"""Evidence spans → pieces of text to show, some marked. Pure data: the template escapes every
piece, so a span can never turn caller text into HTML."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Piece:
    text: str
    label: str | None = None
    weight: float | None = None


def pieces(text: str, evidence: Sequence[Mapping[str, Any]] | None) -> list[Piece]:
    """Split ``text`` at its evidence spans. A span is used only when its offsets are valid and
    ``text[start:end] == span.text`` (a mismatched span is ignored, never shown at the wrong
    place); overlapping spans keep the heavier one."""
    spans = []
    for ev in evidence or ():
        try:
            start, end = int(ev["start"]), int(ev["end"])
        except (KeyError, TypeError, ValueError):
            continue
        if not 0 <= start < end <= len(text) or ("text" in ev and text[start:end] != ev["text"]):
            continue
        weight = ev.get("weight")
        spans.append(
            (start, end, str(ev.get("label") or ""), float(weight) if isinstance(weight, int | float) else None)
        )
    spans.sort(key=lambda s: (-(s[3] or 0.0), s[0]))
    chosen: list[tuple[int, int, str, float | None]] = []
    for span in spans:
        if all(span[1] <= c[0] or span[0] >= c[1] for c in chosen):
            chosen.append(span)
    chosen.sort()
    out, pos = [], 0
    for start, end, label, weight in chosen:
        if start > pos:
            out.append(Piece(text[pos:start]))
        out.append(Piece(text[start:end], label or "evidence", weight))
        pos = end
    if pos < len(text):
        out.append(Piece(text[pos:]))
    return out
