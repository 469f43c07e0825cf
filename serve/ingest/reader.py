"""The entry points: every file of the inputs → calls with roles, read errors, and file records."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from serve.ingest.asr_shapes import SHAPE_NAMES
from serve.ingest.files import FORMATS, TABLE_FORMATS, detect_format, list_files
from serve.ingest.json_doc import read_json
from serve.ingest.jsonl import read_jsonl
from serve.ingest.options import IngestOptions
from serve.ingest.records import Call, FileError, FileRecord, ReadError
from serve.ingest.roles import assign_roles
from serve.ingest.subtitles import read_subtitles
from serve.ingest.tables import read_table

Item = Call | ReadError | FileRecord


def _parse(path: Path, fmt: str, opts: IngestOptions, record: FileRecord) -> Iterator[Call | ReadError]:
    if fmt == "jsonl":
        return read_jsonl(path, opts, record)
    if fmt == "json" or fmt in SHAPE_NAMES:
        return read_json(path, fmt, opts, record)
    if fmt in TABLE_FORMATS:
        return read_table(path, fmt, opts, record)
    if fmt in ("srt", "vtt"):
        return read_subtitles(path, fmt, opts, record)
    raise FileError(f"unknown format {fmt!r} (known: {list(FORMATS)})")


def read_file(
    path: Path, fmt: str, opts: IngestOptions, record: FileRecord | None = None
) -> Iterator[Call | ReadError]:
    """Calls (roles assigned) and errors of one file in a known format; never raises for bad content."""
    record = record or FileRecord(str(path), fmt)
    record.format = fmt
    try:
        for item in _parse(path, fmt, opts, record):
            if isinstance(item, ReadError):
                record.errors += 1
                yield item
            else:
                record.calls += 1
                yield assign_roles(item, opts.role_margin)
    except FileError as e:
        record.errors += 1
        yield ReadError(str(path), e.position, e.reason)


def ingest(paths: Iterable[Path], opts: IngestOptions, exclude: Iterable[Path] = ()) -> Iterator[Item]:
    """Every call and error of the inputs (files or folders) in a deterministic order, each file's
    :class:`FileRecord` after its items. ``opts.fmt`` other than ``auto`` forces that format."""
    for path in list_files(paths, exclude):
        fmt = opts.fmt if opts.fmt != "auto" else detect_format(path)
        record = FileRecord(str(path), fmt)
        if fmt is None:
            record.errors = 1
            yield ReadError(str(path), None, f"unrecognised format (known: {list(FORMATS)}); use --format")
        else:
            yield from read_file(path, fmt, opts, record)
        yield record


def read_inputs(paths: Iterable[Path], opts: IngestOptions, exclude: Iterable[Path] = ()) -> Iterator[Call | ReadError]:
    """:func:`ingest` without the file records: for callers that only want calls and errors."""
    return (item for item in ingest(paths, opts, exclude) if not isinstance(item, FileRecord))
