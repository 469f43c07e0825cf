"""Transcript readers — the older name of :mod:`serve.ingest`, kept as a thin facade.

Everything is implemented in ``serve/ingest/``; these functions keep their signatures so code
written against them (the review upload, notebooks) keeps working, and they now read what
``serve.ingest`` reads: any encoding, Excel, ASR JSON, speaker tags with automatic roles.
Nothing here raises for bad data: a bad line, row, cue or file is a :class:`ReadError` with
its position, and the rest of the input is still read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from model.labels import DEFAULT_SPEAKER
from serve.ingest import reader
from serve.ingest.files import (
    FORMATS,
    GZIP_MAGIC,
    SUFFIX_FORMATS,
    detect_format,
    is_gzip,
    list_files,
    open_binary,
    stem_of,
)
from serve.ingest.options import IngestOptions
from serve.ingest.records import Call, ReadError
from serve.ingest.speakers import lookup_role
from serve.ingest.speakers import make_segment as _make_segment
from serve.ingest.tables import TABLE_REQUIRED

__all__ = [
    "FORMATS", "GZIP_MAGIC", "SUFFIX_FORMATS", "TABLE_REQUIRED", "Call", "ReadError", "detect_format", "is_gzip",
    "list_files", "make_segment", "map_speaker", "open_binary", "read_file", "read_inputs", "read_jsonl",
    "read_subtitles", "read_table", "stem_of",
]  # fmt: skip


def _options(speaker_map: Mapping[str, str] | None, fmt: str = "auto", **kw: Any) -> IngestOptions:
    """Options from the configured defaults, with the caller's speaker map."""
    from model.config import Settings

    settings = Settings()
    opts = IngestOptions.from_settings(settings, fmt=fmt)
    return IngestOptions(**{**opts.__dict__, **({"speaker_map": speaker_map} if speaker_map is not None else {}), **kw})


def map_speaker(raw: Any, speaker_map: Mapping[str, str]) -> str:
    """Map a transcript's speaker name to ``agent``/``customer``; missing = ``agent`` (the API default)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return DEFAULT_SPEAKER
    role = lookup_role(str(raw).strip(), speaker_map)
    if role is None:
        raise ValueError(f"unmapped speaker {str(raw).strip()!r} (add it to relabel.speaker_map)")
    return role


def make_segment(raw: Mapping[str, Any], speaker_map: Mapping[str, str]) -> dict[str, Any]:
    """Validate one segment with explicitly mapped speakers; raises ``ValueError`` with the reason."""
    seg = _make_segment(raw, speaker_map, "map")
    seg["speaker"] = seg["speaker"] or DEFAULT_SPEAKER
    return seg


def read_file(path: Path, fmt: str, speaker_map: Mapping[str, str]) -> Iterator[Call | ReadError]:
    """Calls and errors of one file in a known format; never raises for bad content."""
    return reader.read_file(Path(path), fmt, _options(speaker_map, fmt))


def read_jsonl(path: Path, speaker_map: Mapping[str, str]) -> Iterator[Call | ReadError]:
    return read_file(path, "jsonl", speaker_map)


def read_table(path: Path, fmt: str, speaker_map: Mapping[str, str]) -> Iterator[Call | ReadError]:
    return read_file(path, fmt, speaker_map)


def read_subtitles(path: Path, fmt: str, speaker_map: Mapping[str, str]) -> Iterator[Call | ReadError]:
    return read_file(path, fmt, speaker_map)


def read_inputs(
    paths: Iterable[Path],
    fmt: str = "auto",
    speaker_map: Mapping[str, str] | None = None,
    exclude: Iterable[Path] = (),
    *,
    options: IngestOptions | None = None,
) -> Iterator[Call | ReadError]:
    """Every call and every error of the inputs (files or folders), in a deterministic order.

    ``fmt`` other than ``auto`` forces that format on every file; ``options`` (an
    :class:`IngestOptions`) overrides ``fmt`` and ``speaker_map`` with a run's full settings.
    """
    opts = options or _options(speaker_map, fmt)
    return reader.read_inputs(paths, opts, exclude)
