"""SRT and WebVTT: one file is one call (its id is the file's stem); one cue is one or more segments.

Speakers come from WebVTT voice tags (``<v SPEAKER_00>``) or a speaker prefix at the start of a
line (``[SPEAKER_00]:``, ``Speaker 1:``, ``坐席：``, ``【客户】``), which is stripped from the
text; a line without either continues the previous turn, and a cue that names no one has no tag.
"""

from __future__ import annotations

import html
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from serve.ingest.encoding import decode, sniff_encoding
from serve.ingest.files import read_bytes, stem_of
from serve.ingest.options import IngestOptions
from serve.ingest.records import Call, FileError, FileRecord, ReadError
from serve.ingest.speakers import make_segment, split_prefix

_SRT_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{1,2})[,.](\d{1,3})"
_TIMING = re.compile(rf"^\s*{_SRT_TIME}\s*-->\s*{_SRT_TIME}(?:\s.*)?$")
_VOICE = re.compile(r"<v(?:\.[^\s>]*)?\s+([^>]+)>")
_TAG = re.compile(r"<[^>]*>")


def _seconds(h: str | None, m: str, s: str, frac: str) -> float:
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(frac.ljust(3, "0")) / 1000


def parse_timing(line: str) -> tuple[float, float] | None:
    m = _TIMING.match(line)
    if not m:
        return None
    g = m.groups()
    return _seconds(*g[:4]), _seconds(*g[4:])


def cue_segments(lines: list[str], start: float, end: float, vtt: bool, opts: IngestOptions,
                 where: str) -> list[dict[str, Any]]:  # fmt: skip
    """Segments of one cue: a voice tag or a speaker prefix starts a speaker's turn."""
    turns: list[tuple[str | None, list[str]]] = []
    tag: str | None = None
    for raw in lines:
        voice = _VOICE.search(raw) if vtt else None
        if voice:
            tag = voice.group(1).strip()
        text = html.unescape(_TAG.sub("", raw)).strip()
        prefix, text = split_prefix(text, opts.speaker_map)
        if prefix is not None:
            tag = prefix
        if turns and not voice and prefix is None:
            turns[-1][1].append(text)
        else:
            turns.append((tag, [text]))
    segs = []
    for n, (spk, parts) in enumerate(turns):
        text = " ".join(p for p in parts if p)
        if text:
            pos = where if len(turns) == 1 else f"{where} turn {n + 1}"
            raw = {"text": text, "speaker": spk, "start": start, "end": end}
            segs.append(make_segment(raw, opts.speaker_map, opts.roles, pos))
    if not segs:
        raise ValueError("cue has no text")
    return segs


def read_subtitles(path: Path, fmt: str, opts: IngestOptions, record: FileRecord) -> Iterator[Call | ReadError]:
    src = str(path)
    try:
        data = read_bytes(path)
    except (OSError, EOFError, zlib.error) as e:
        raise FileError(f"cannot read file: {e}") from None
    record.encoding = sniff_encoding(data[: opts.detect_bytes], opts.encoding)
    text = decode(data, record.encoding).lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    blocks = [b for b in re.split(r"\n[ \t]*\n", text) if b.strip()]
    if fmt == "vtt":
        if not blocks or not blocks[0].lstrip().startswith("WEBVTT"):
            raise FileError("not a WebVTT file: the first line must be 'WEBVTT'", "line 1")
        blocks = [b for b in blocks[1:] if not re.match(r"\s*(NOTE|STYLE|REGION)\b", b)]
    segments: list[dict[str, Any]] = []
    for n, block in enumerate(blocks, start=1):
        lines = block.strip("\n").split("\n")
        idx = next((i for i, line in enumerate(lines[:2]) if "-->" in line), None)
        timing = parse_timing(lines[idx]) if idx is not None else None
        if timing is None:
            yield ReadError(src, f"cue {n}", "no valid timing line (hh:mm:ss,mmm --> hh:mm:ss,mmm)")
            continue
        try:
            segments.extend(cue_segments(lines[idx + 1 :], *timing, fmt == "vtt", opts, f"cue {n}"))
        except ValueError as e:
            yield ReadError(src, f"cue {n}", str(e))
    if not blocks:
        raise FileError("no cues found")
    if segments:
        yield {"call_id": stem_of(path), "segments": segments, "metadata": {}, "source": src, "position": None}
