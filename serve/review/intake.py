"""A pasted or uploaded transcript → calls, through the same readers ``relabel`` and ``score``
use (:func:`serve.batch.readers.read_inputs`): every format they read works here, and a bad line
is reported with its position while the good calls in the same file are still shown."""

from __future__ import annotations

import re
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from serve.batch.readers import FORMATS, SUFFIX_FORMATS, ReadError, read_inputs

#: Choices on the page: "auto" sniffs the content (or the uploaded file's name).
PAGE_FORMATS: tuple[str, ...] = ("auto", *FORMATS)
_SAFE_NAME = re.compile(r"[^\w.\-]+")


@dataclass
class Intake:
    calls: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def error(self, position: str | None, reason: str) -> None:
        self.errors.append({"position": position, "reason": reason})


def _file_name(filename: str | None, fmt: str) -> str:
    """A safe temporary name: the upload's own base name (SRT/WebVTT take the call id from it),
    or a unique ``paste-…`` name so two pasted subtitle calls never share a call id."""
    if filename:
        name = _SAFE_NAME.sub("_", Path(filename).name).strip("._") or "upload"
        return name[:120]
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    suffix = {v: k for k, v in reversed(list(SUFFIX_FORMATS.items()))}.get(fmt, "") if fmt != "auto" else ""
    return f"paste-{stamp}-{secrets.token_hex(2)}{suffix}"


def _looks_like_table(data: bytes) -> bool:
    head = data[:2048].decode("utf-8", errors="ignore").lstrip("\ufeff").splitlines()
    first = head[0].strip() if head else ""
    return not first.startswith(("{", "[")) and "," in first and "call_id" in first and "text" in first


def read_transcript(
    data: bytes, filename: str | None, fmt: str, speaker_map: Mapping[str, str], max_calls: int
) -> Intake:
    """Calls and positioned errors of one pasted text or uploaded file (gzip allowed)."""
    if fmt not in PAGE_FORMATS:
        raise ValueError(f"format must be one of {list(PAGE_FORMATS)}, got {fmt!r}")
    out = Intake()
    if not data.strip():
        out.error(None, "nothing to read: paste a transcript or choose a file")
        return out
    if fmt == "auto" and not filename and _looks_like_table(data):
        fmt = "csv"  # a pasted table has no name to tell it by
    shown = filename or "pasted text"
    with tempfile.TemporaryDirectory(prefix="cg-review-") as tmp:
        path = Path(tmp) / _file_name(filename, fmt)
        path.write_bytes(data)
        for item in read_inputs([path], fmt, speaker_map):
            if isinstance(item, ReadError):
                reason = item.reason.replace("; use --format", "; choose the format")
                out.error(item.position, reason)
            elif len(out.calls) >= max_calls:
                out.error(item.get("position"), f"more than {max_calls} calls in one upload; the rest were not read")
                break
            else:
                out.calls.append({**item, "source": shown})
    return out
