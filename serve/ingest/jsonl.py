"""JSONL calls: one ``{"call_id", "segments": [...], ...}`` object per line, streamed.

Streaming means a truncated gzip still yields every complete line before the damage, and an
archive larger than memory is fine. The encoding is sniffed from the first bytes; in byte-
oriented encodings (UTF-8, GB18030, Big5) each line is decoded alone, so one bad line is one
error. UTF-16 files are decoded whole.
"""

from __future__ import annotations

import itertools
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from serve.ingest.encoding import decode, decode_line, is_line_safe, sniff_encoding
from serve.ingest.files import open_binary
from serve.ingest.options import IngestOptions
from serve.ingest.records import Call, FileRecord, ReadError, parse_call_id
from serve.ingest.speakers import make_segment


def call_from_object(obj: Any, src: str, where: str, opts: IngestOptions) -> Iterator[Call | ReadError]:
    """One call object (a JSONL line, or a JSON document holding calls) → the call and its errors."""
    if not isinstance(obj, dict):
        yield ReadError(src, where, f"expected a JSON object (a call), got {type(obj).__name__}")
        return
    try:
        call_id = parse_call_id(obj.get("call_id"))
    except ValueError as e:
        yield ReadError(src, where, str(e))
        return
    raw_segments = obj.get("segments")
    if not isinstance(raw_segments, list) or not raw_segments:
        yield ReadError(src, where, f"call {call_id}: 'segments' must be a non-empty list")
        return
    segments = []
    for i, seg in enumerate(raw_segments):
        pos = f"{where} segments[{i}]"
        try:
            if not isinstance(seg, dict):
                raise ValueError(f"a segment must be an object, got {type(seg).__name__}")
            segments.append(make_segment(seg, opts.speaker_map, opts.roles, pos))
        except ValueError as e:
            yield ReadError(src, pos, f"call {call_id}: {e}")
    if segments:
        metadata = {k: v for k, v in obj.items() if k not in ("call_id", "segments")}
        yield {"call_id": call_id, "segments": segments, "metadata": metadata, "source": src, "position": where}


def _line(line: str, src: str, lineno: int, opts: IngestOptions) -> Iterator[Call | ReadError]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        yield ReadError(src, f"line {lineno}", f"invalid JSON: {e.msg} at column {e.colno}")
        return
    yield from call_from_object(obj, src, f"line {lineno}", opts)


def read_jsonl_text(text: str, src: str, opts: IngestOptions) -> Iterator[Call | ReadError]:
    """JSONL already decoded (a ``.json`` file that turned out to be one object per line)."""
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield from _line(line, src, lineno, opts)


def _head_lines(fh: Any, limit: int) -> tuple[list[bytes], BaseException | None]:
    """The first lines, as few as can tell the encoding, at most about ``limit`` bytes.

    Reading stops as soon as the text so far decides: non-ASCII bytes that are valid UTF-8, or
    enough non-ASCII bytes for the detector. So a pipe that delivers lines slowly is not waited
    on. A read failure is returned, not raised, so the complete lines before it are still read.
    """
    lines: list[bytes] = []
    size = wide = 0
    try:
        while size < limit:
            line = fh.readline()
            if not line:
                break
            lines.append(line)
            size += len(line)
            wide += sum(b > 0x7F for b in line)
            if wide >= 512 or (wide and sniff_encoding(b"".join(lines)) == "utf-8"):
                break
    except (OSError, EOFError, zlib.error) as e:
        return lines, e
    return lines, None


def read_jsonl(path: Path, opts: IngestOptions, record: FileRecord) -> Iterator[Call | ReadError]:
    src = str(path)
    lineno = 0
    try:
        with open_binary(path) as fh:
            head, failure = _head_lines(fh, opts.detect_bytes)
            codec = sniff_encoding(b"".join(head), opts.encoding)
            record.encoding = codec
            if not is_line_safe(codec):  # UTF-16: a 0x0A byte is not a line end; decode whole
                if failure:
                    raise failure
                yield from read_jsonl_text(decode(b"".join(head) + fh.read(), codec), src, opts)
                return
            for raw in itertools.chain(head, () if failure else fh):
                lineno += 1
                yield from _decoded_line(raw, codec, src, lineno, opts)
            if failure:
                raise failure
    except (OSError, EOFError, zlib.error) as e:
        yield ReadError(src, f"line {lineno + 1}", f"cannot read further (corrupt or truncated file): {e}")


def _decoded_line(raw: bytes, codec: str, src: str, lineno: int, opts: IngestOptions) -> Iterator[Call | ReadError]:
    try:
        line = decode_line(raw, codec, lineno == 1)
    except UnicodeDecodeError as e:
        yield ReadError(src, f"line {lineno}", f"not {codec} text: {e.reason}")
        return
    if line.strip():
        yield from _line(line, src, lineno, opts)
