"""``.json`` files: collectguard calls, or one ASR engine's transcript (:mod:`serve.ingest.asr_shapes`).

The document is read whole (up to ``ingest.max_json_mb``). One that is not a single JSON value
is read as JSONL. An ASR transcript is one call named by the file's stem (or the engine's own
key / task id); each segment's position is its JSON path (``Result.Sentences[3]``).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from serve.ingest.asr_shapes import Found, iter_sentences, recognise
from serve.ingest.encoding import decode, sniff_encoding
from serve.ingest.files import read_bytes, stem_of
from serve.ingest.jsonl import call_from_object, read_jsonl_text
from serve.ingest.options import IngestOptions
from serve.ingest.records import Call, FileError, FileRecord, ReadError
from serve.ingest.speakers import make_segment


def _is_calls(doc: Any) -> bool:
    if isinstance(doc, dict):
        return "call_id" in doc
    return isinstance(doc, list) and bool(doc) and all(isinstance(c, dict) and "call_id" in c for c in doc)


def _asr_calls(found: list[Found], shape: str, path: Path, opts: IngestOptions) -> Iterator[Call | ReadError]:
    src, stem = str(path), stem_of(path)
    merged = shape == "dashscope"  # one call whose channels are separate lists
    calls: list[Call] = []
    for n, part in enumerate(found):
        key, where, sentences, scale, convert = part
        if not merged or not calls:
            call_id = key or (stem if len(found) == 1 or merged else f"{stem}#{n}")
            calls.append({"call_id": call_id, "segments": [], "metadata": {"asr_format": shape}, "source": src,
                          "position": where})  # fmt: skip
        call = calls[-1]
        for pos, sentence in iter_sentences(part):
            try:
                if not isinstance(sentence, dict):
                    raise ValueError(f"a sentence must be an object, got {type(sentence).__name__}")
                raw = convert(sentence)
                if isinstance(raw["text"], str):
                    raw["text"] = raw["text"].strip()  # Whisper starts every segment with a space
                call["segments"].append(make_segment(raw, opts.speaker_map, opts.roles, pos, scale))
            except ValueError as e:
                yield ReadError(src, pos, f"call {call['call_id']}: {e}")
        if not sentences:
            yield ReadError(src, where, f"call {call['call_id']}: no sentences (silence, or a failed task?)")
    for call in calls:
        if merged:
            call["segments"].sort(key=lambda s: (s["start"] is None, s["start"] or 0.0))
        if call["segments"]:
            yield call


def read_json(path: Path, fmt: str, opts: IngestOptions, record: FileRecord) -> Iterator[Call | ReadError]:
    """``fmt`` is ``json`` (recognise the shape) or a shape name (force it)."""
    src = str(path)
    try:
        data = read_bytes(path, opts.max_json_bytes)
    except (OSError, EOFError, zlib.error, ValueError) as e:
        raise FileError(f"cannot read file: {e}") from None
    record.encoding = sniff_encoding(data[: opts.detect_bytes], opts.encoding)
    text = decode(data, record.encoding).lstrip("\ufeff")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        if fmt != "json" or e.msg != "Extra data":
            raise FileError(f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}", f"line {e.lineno}") from None
        record.shape = "jsonl"
        yield from read_jsonl_text(text, src, opts)
        return
    if fmt == "json" and _is_calls(doc):
        record.shape = "calls"
        items = [doc] if isinstance(doc, dict) else doc
        for i, obj in enumerate(items):
            yield from call_from_object(obj, src, "document" if isinstance(doc, dict) else f"[{i}]", opts)
        return
    try:
        shape, found = recognise(doc, None if fmt == "json" else fmt)
    except ValueError as e:
        raise FileError(str(e)) from None
    record.shape = shape
    yield from _asr_calls(found, shape, path, opts)
