"""The records readers produce: calls (plain dicts), read errors and one record per file.

A call is ``{"call_id", "segments", "metadata", "source", "position", "roles"}``; a segment is
``{"start", "end", "speaker", "listener", "text", "speaker_tag", "position"}``: the
:class:`model.preprocess.Segment` fields plus where it came from (``position``: line, row, cue
or JSON path) and the tag the transcript gave its speaker before roles were assigned.
Plain dicts, because calls cross process boundaries (the process pool, Ray) as JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

Call = dict[str, Any]


@dataclass(frozen=True)
class ReadError:
    """One thing that could not be used: ``file``, ``position`` (None = the whole file), ``reason``."""

    file: str
    position: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FileRecord:
    """What was read from one input file, for the run manifest: how it was decoded and parsed."""

    path: str
    format: str | None = None
    encoding: str | None = None  # None for binary formats (Parquet, Excel)
    shape: str | None = None  # the ASR JSON shape, e.g. "funasr"
    calls: int = 0
    errors: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(out.pop("extra"))
        return out


class FileError(Exception):
    """Abandons the rest of a file (unreadable, wrong header, unknown shape); carries the position."""

    def __init__(self, reason: str, position: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.position = reason, position


def parse_call_id(value: Any) -> str:
    """A call id is a non-empty string or an integer (spreadsheets and JSON give both)."""
    if isinstance(value, float) and value.is_integer():  # Excel stores 1001 as 1001.0
        value = int(value)
    if isinstance(value, bool) or value is None or not isinstance(value, str | int):
        raise ValueError(f"call_id must be a string or integer, got {value!r}")
    value = str(value).strip()
    if not value:
        raise ValueError("call_id is empty")
    return value


def parse_time(value: Any, field: str, scale: float = 1.0) -> float | None:
    """A time cell in seconds (``scale`` 0.001 for milliseconds); the range rules are Segment's."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{field} must be a number, got {value!r}")
    try:
        return float(value) * scale
    except (TypeError, ValueError):
        unit = "seconds" if scale == 1.0 else "milliseconds"
        raise ValueError(f"{field} must be a number of {unit}, got {value!r}") from None
