"""Speaker tags: recognise them, strip them from the text, and map them to a role when the map can.

Transcripts name speakers three ways: a role the configured map knows (``坐席``, ``客户``), an
anonymous diarisation tag (``SPEAKER_00``, ``spk 0``, ``Speaker 1``, ``说话人2``, ``channel 1``)
that says who spoke but not in which role, or a tag written into the text itself
(``[SPEAKER_00]: …``, ``坐席：…``, ``【客户】…``). This module turns all three into
``(tag, role or None)`` and a clean text; :mod:`serve.ingest.roles` fills in the roles left None.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from model.labels import DEFAULT_LISTENER, DEFAULT_SPEAKER, SPEAKERS
from model.preprocess import Segment
from serve.ingest.records import parse_time

ANONYMOUS = re.compile(
    r"^(?:speaker|spk|spkr|channel|chan|ch|说话人|发言人|讲话人|角色|声道|通道|role|voice)?[\s_\-#]*(?:\d{1,3}|[a-z])$",
    re.I,
)
_BRACKETED = re.compile(r"^\s*[\[【〔(（]\s*([^\]】〕)）\n]{1,20}?)\s*[\]】〕)）]\s*[:：]?\s*(.*)$", re.S)
_COLON = re.compile(
    r"^\s*((?:speaker|spk|说话人|发言人)[\s_]*\w{1,3}|[^\s：:<>\[\]【】()（）]{1,16})\s*[：:]\s*(.*)$", re.S | re.I
)


def canonical(tag: str) -> str:
    """``SPEAKER_00`` ≈ ``speaker 00`` ≈ ``Speaker-00``: case, spaces and separators do not matter."""
    return re.sub(r"[\s_\-#]", "", tag).lower()


def tag_of(raw: Any) -> str | None:
    """A speaker field as a tag string (``0`` → ``"0"``); None or blank → None."""
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    tag = str(raw).strip()
    return tag or None


def lookup_role(tag: str, speaker_map: Mapping[str, str]) -> str | None:
    """The mapped role of ``tag`` (exact, lower-case or canonical spelling), or None if unmapped."""
    role = speaker_map.get(tag, speaker_map.get(tag.lower()))
    if role is None:
        key = canonical(tag)
        role = next((r for name, r in speaker_map.items() if canonical(name) == key), None)
    if role is not None and role not in SPEAKERS:
        raise ValueError(f"the speaker map maps {tag!r} to {role!r}, not one of {list(SPEAKERS)}")
    return role


def is_anonymous(tag: str) -> bool:
    """A diarisation or channel tag that names no role (``SPEAKER_00``, ``spk 1``, ``说话人2``, ``B``)."""
    return bool(ANONYMOUS.match(tag))


def resolve(tag: str | None, speaker_map: Mapping[str, str], roles: str) -> str | None:
    """The role of a tag: mapped; None for an anonymous tag left to role assignment; else ``ValueError``."""
    if tag is None:
        return None
    role = lookup_role(tag, speaker_map)
    if role is not None:
        return role
    if roles == "auto" and is_anonymous(tag):
        return None
    what = "speaker tag" if is_anonymous(tag) else "speaker"
    fix = "add it to relabel.speaker_map or --role TAG=agent" if roles == "map" or not is_anonymous(tag) else ""
    raise ValueError(f"unmapped {what} {tag!r} ({fix})")


def split_prefix(text: str, speaker_map: Mapping[str, str]) -> tuple[str | None, str]:
    """``"[SPEAKER_00]: 您好"`` → ``("SPEAKER_00", "您好")``; text without a speaker prefix is unchanged.

    A prefix counts only when it is a known name or an anonymous tag: ``注意：…`` stays text.
    Bracketed tags need no colon (``【坐席】您好``); bare ones do (``坐席：您好``).
    """
    for pattern in (_BRACKETED, _COLON):
        m = pattern.match(text)
        if m:
            name = m.group(1).strip()
            if is_anonymous(name) or lookup_role(name, speaker_map) is not None:
                return name, m.group(2).strip()
    return None, text


def make_segment(raw: Mapping[str, Any], speaker_map: Mapping[str, str], roles: str = "map",
                 position: str | None = None, time_scale: float = 1.0) -> dict[str, Any]:  # fmt: skip
    """Validate one segment; raises ``ValueError`` with the reason.

    ``speaker`` is the mapped role, or None when the tag is anonymous (filled in per call by
    role assignment); ``speaker_tag`` keeps the transcript's own tag. A speaker prefix in the
    text is stripped and used when no speaker field is given. The text is normalised here only
    to check that something is left: an empty segment would otherwise make the classifier reject
    the whole batch it is scored in.
    """
    text = raw.get("text")
    if text is None:
        raise ValueError("text is missing")
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    prefix, text = split_prefix(text, speaker_map)
    tag = tag_of(raw.get("speaker")) or prefix
    role = resolve(tag, speaker_map, roles)
    listener = raw.get("listener")
    if listener is None or (isinstance(listener, str) and not listener.strip()):
        listener = DEFAULT_LISTENER
    seg = Segment(
        text,
        role or DEFAULT_SPEAKER,
        listener,
        parse_time(raw.get("start"), "start", time_scale),
        parse_time(raw.get("end"), "end", time_scale),
    )
    seg.normalized  # noqa: B018  raises ValueError("text is empty ...")
    return {**seg.as_dict(), "speaker": role, "speaker_tag": tag, "position": position}
