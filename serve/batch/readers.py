"""Transcript readers for batch relabeling: JSONL calls, CSV/Parquet segment tables, SRT, WebVTT.

Every reader yields *calls* (plain dicts, see :func:`read_inputs`) and :class:`ReadError` records
for whatever it cannot use: a bad line, row, cue or file is reported with its position and the
rest of the input is still read. Nothing here raises for bad data, so one corrupt file in an
archive of thousands never stops a relabeling run and never silently drops a row.

Positions are 1-based (``line 3``, ``row 12``, ``cue 4``), as an editor or spreadsheet shows
them; a segment inside a JSONL call is named by its 0-based array index (``line 3 segments[1]``).
"""

from __future__ import annotations

import csv
import gzip
import html
import io
import json
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from model.labels import DEFAULT_LISTENER, DEFAULT_SPEAKER, SPEAKERS
from model.preprocess import Segment

FORMATS: tuple[str, ...] = ("jsonl", "csv", "parquet", "srt", "vtt")
SUFFIX_FORMATS: dict[str, str] = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv",
    ".parquet": "parquet", ".pq": "parquet", ".srt": "srt", ".vtt": "vtt",
}  # fmt: skip
GZIP_MAGIC = b"\x1f\x8b"
TABLE_REQUIRED = ("call_id", "speaker", "text")  # start/end/listener are optional columns

# Call = {"call_id": str, "segments": [segment], "metadata": dict, "source": str, "position": str | None}
# segment = Segment.as_dict(): {"start": float | None, "end": float | None, "speaker", "listener", "text"}
Call = dict[str, Any]


@dataclass(frozen=True)
class ReadError:
    """One thing that could not be used: ``file``, ``position`` (None = the whole file), ``reason``."""

    file: str
    position: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _FileError(Exception):
    """Internal: abandons the rest of a file (unreadable, wrong header, corrupt gzip)."""

    def __init__(self, reason: str, position: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.position = reason, position


# -- files and formats --------------------------------------------------------------------------
def list_files(paths: Iterable[Path], exclude: Iterable[Path] = ()) -> list[Path]:
    """Input files in a stable order: files as given, directories walked recursively and sorted.

    Hidden files and folders (``.name``) inside a directory are skipped, as are ``exclude`` folders
    (the output folder, when it lies inside an input folder). A missing path raises
    ``FileNotFoundError``: that is a typo on the command line, not a bad row in an archive.
    """
    skip = {Path(p).resolve() for p in exclude}
    out: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"input {path} does not exist")
        if not path.is_dir():
            out.append(path)
            continue
        for f in sorted(path.rglob("*")):
            rel = f.relative_to(path).parts
            if any(part.startswith(".") for part in rel) or not f.is_file():
                continue
            if any(s == f.resolve() or s in f.resolve().parents for s in skip):
                continue
            out.append(f)
    return out


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def open_binary(path: Path) -> io.BufferedIOBase:
    """Open a file for reading, transparently decompressing gzip (by magic bytes, not by name).

    The file is opened once and its first bytes peeked, so named pipes and process substitution
    (``<(zcat big.jsonl.gz)``) work too when their format is known from the name or ``--format``.
    """
    fh = open(path, "rb")  # noqa: SIM115 (returned to the caller)
    try:
        if fh.peek(2)[:2] != GZIP_MAGIC:
            return fh
        gz = gzip.GzipFile(fileobj=fh, mode="rb")
    except BaseException:
        fh.close()
        raise
    gz.myfileobj = fh  # GzipFile closes myfileobj on close(), as gzip.open() arranges for paths
    return gz


def stem_of(path: Path) -> str:
    """``call_17.srt.gz`` → ``call_17``: the call id of a subtitle file."""
    name = path.name
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = Path(name).suffix
    return name[: -len(suffix)] if suffix.lower() in SUFFIX_FORMATS else name


def detect_format(path: Path) -> str | None:
    """The format by suffix (``.gz`` stripped), else by sniffing the first bytes; None if unknown."""
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    fmt = SUFFIX_FORMATS.get(Path(name).suffix.lower())
    if fmt:
        return fmt
    try:
        with open_binary(path) as fh:
            head = fh.read(512)
    except (OSError, EOFError, zlib.error):
        return None
    if head.startswith(b"PAR1"):
        return "parquet"
    text = head.decode("utf-8", errors="ignore").lstrip("\ufeff").lstrip()
    if text.startswith("WEBVTT"):
        return "vtt"
    if text.startswith("{"):
        return "jsonl"
    if re.match(r"\d+\s*\n\s*[\d:]+[,.]\d+\s*-->", text.replace("\r", "")):
        return "srt"
    return None


# -- one segment -----------------------------------------------------------------------------------
def map_speaker(raw: Any, speaker_map: Mapping[str, str]) -> str:
    """Map a transcript's speaker name to ``agent``/``customer``; missing = ``agent`` (the API default)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return DEFAULT_SPEAKER
    name = str(raw).strip()
    mapped = speaker_map.get(name, speaker_map.get(name.lower()))
    if mapped is None:
        raise ValueError(f"unmapped speaker {name!r} (add it to relabel.speaker_map)")
    if mapped not in SPEAKERS:
        raise ValueError(f"relabel.speaker_map maps {name!r} to {mapped!r}, not one of {list(SPEAKERS)}")
    return mapped


def _time(value: Any, field: str) -> float | None:
    """Parse a time cell (tables hold strings); the range rules are :class:`Segment`'s."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{field} must be a number of seconds, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{field} must be a number of seconds, got {value!r}") from None


def make_segment(raw: Mapping[str, Any], speaker_map: Mapping[str, str]) -> dict[str, Any]:
    """Validate one segment as a :class:`Segment`; raises ``ValueError`` with the reason.

    The text is normalised here only to check that something is left: an empty segment would
    otherwise make the classifier reject the whole batch it is scored in.
    """
    text = raw.get("text")
    if text is None:
        raise ValueError("text is missing")
    listener = raw.get("listener")
    if listener is None or (isinstance(listener, str) and not listener.strip()):
        listener = DEFAULT_LISTENER
    seg = Segment(
        text,
        map_speaker(raw.get("speaker"), speaker_map),
        listener,
        _time(raw.get("start"), "start"),
        _time(raw.get("end"), "end"),
    )
    seg.normalized  # noqa: B018  raises ValueError("text is empty ...")
    return seg.as_dict()


def _call_id(value: Any) -> str:
    if isinstance(value, bool) or value is None or not isinstance(value, str | int):
        raise ValueError(f"call_id must be a string or integer, got {value!r}")
    value = str(value).strip()
    if not value:
        raise ValueError("call_id is empty")
    return value


# -- formats ---------------------------------------------------------------------------------------
def _read_text(path: Path) -> str:
    """Whole file as text (gzip handled); undecodable bytes abandon the file, naming the line."""
    try:
        with open_binary(path) as fh:
            data = fh.read()
    except (OSError, EOFError, zlib.error) as e:
        raise _FileError(f"cannot read file: {e}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise _FileError(f"not UTF-8 text: {e.reason} at byte {e.start}", f"line {line}") from None


def read_jsonl(path: Path, speaker_map: Mapping[str, str]) -> Iterator[Call | ReadError]:
    """One call per line; streamed, so a truncated gzip still yields every complete line before it."""
    src = str(path)
    lineno = 0
    try:
        with open_binary(path) as fh:
            for lineno, raw in enumerate(fh, start=1):
                try:
                    line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError as e:
                    yield ReadError(src, f"line {lineno}", f"not UTF-8 text: {e.reason}")
                    continue
                if not line.strip():
                    continue
                yield from _jsonl_call(line, src, lineno, speaker_map)
    except (OSError, EOFError, zlib.error) as e:
        yield ReadError(src, f"line {lineno + 1}", f"cannot read further (corrupt or truncated file): {e}")


def _jsonl_call(line: str, src: str, lineno: int, speaker_map: Mapping[str, str]) -> Iterator[Call | ReadError]:
    where = f"line {lineno}"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        yield ReadError(src, where, f"invalid JSON: {e.msg} at column {e.colno}")
        return
    if not isinstance(obj, dict):
        yield ReadError(src, where, f"expected a JSON object (a call), got {type(obj).__name__}")
        return
    try:
        call_id = _call_id(obj.get("call_id"))
    except ValueError as e:
        yield ReadError(src, where, str(e))
        return
    raw_segments = obj.get("segments")
    if not isinstance(raw_segments, list) or not raw_segments:
        yield ReadError(src, where, f"call {call_id}: 'segments' must be a non-empty list")
        return
    segments = []
    for i, seg in enumerate(raw_segments):
        try:
            if not isinstance(seg, dict):
                raise ValueError(f"a segment must be an object, got {type(seg).__name__}")
            segments.append(make_segment(seg, speaker_map))
        except ValueError as e:
            yield ReadError(src, f"{where} segments[{i}]", f"call {call_id}: {e}")
    if segments:
        metadata = {k: v for k, v in obj.items() if k not in ("call_id", "segments")}
        yield {"call_id": call_id, "segments": segments, "metadata": metadata, "source": src, "position": where}


def _table_rows(path: Path, fmt: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based data row number, row) for CSV or Parquet; header problems abandon the file."""
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
        columns = reader.fieldnames or []
        rows: Iterable[dict[str, Any]] = reader
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            with open_binary(path) as fh:
                table = pq.read_table(io.BytesIO(fh.read()))
        except (OSError, EOFError, zlib.error, pa.ArrowException) as e:
            raise _FileError(f"not a readable Parquet file: {e}") from None
        columns = table.column_names
        rows = (row for batch in table.to_batches() for row in batch.to_pylist())
    missing = [c for c in TABLE_REQUIRED if c not in columns]
    if missing:
        raise _FileError(f"missing column(s) {missing}; a segment table needs {list(TABLE_REQUIRED)}", "row 0 (header)")
    try:
        yield from enumerate(rows, start=1)
    except csv.Error as e:
        raise _FileError(f"malformed CSV: {e}") from None


def read_table(path: Path, fmt: str, speaker_map: Mapping[str, str]) -> Iterator[Call | ReadError]:
    """A segment table: one row per segment, grouped into calls in order of first appearance.

    The whole file is grouped before any call is yielded, because a call's rows need not be
    contiguous; bad rows are reported and the call keeps its good ones.
    """
    src = str(path)
    calls: dict[str, Call] = {}
    for rowno, row in _table_rows(path, fmt):
        where = f"row {rowno}"
        try:
            if None in row:  # csv.DictReader files surplus fields under the None key
                raise ValueError(f"{len(row[None])} more field(s) than the header has")
            if fmt == "csv" and any(v is None for v in row.values()):
                raise ValueError("fewer fields than the header has")
            call_id = _call_id(row.get("call_id"))
            seg = make_segment(row, speaker_map)
        except ValueError as e:
            yield ReadError(src, where, str(e))
            continue
        call = calls.setdefault(call_id, {"call_id": call_id, "segments": [], "metadata": {}, "source": src})
        call.setdefault("position", where)
        call["segments"].append(seg)
    yield from calls.values()


_SRT_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{1,2})[,.](\d{1,3})"
_TIMING = re.compile(rf"^\s*{_SRT_TIME}\s*-->\s*{_SRT_TIME}(?:\s.*)?$")
_PREFIX = re.compile(r"^\s*([^\s：:<>]{1,16})\s*[：:]\s*(.*)$", re.S)
_VOICE = re.compile(r"<v(?:\.[^\s>]*)?\s+([^>]+)>")
_TAG = re.compile(r"<[^>]*>")


def _seconds(h: str | None, m: str, s: str, frac: str) -> float:
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(frac.ljust(3, "0")) / 1000


def _parse_timing(line: str) -> tuple[float, float] | None:
    m = _TIMING.match(line)
    if not m:
        return None
    g = m.groups()
    return _seconds(*g[:4]), _seconds(*g[4:])


def _cue_segments(
    lines: list[str], start: float, end: float, vtt: bool, speaker_map: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Segments of one cue: a ``<v 坐席>`` tag or a ``坐席：`` prefix starts a speaker's turn.

    A prefix counts only when its name is in the speaker map (``注意：`` is text, not a speaker);
    an explicit ``<v>`` voice must be mapped. Lines without either continue the previous turn,
    and a cue that names no one is the agent's.
    """
    turns: list[tuple[str, list[str]]] = []
    speaker = DEFAULT_SPEAKER
    for raw in lines:
        voice = _VOICE.search(raw) if vtt else None
        if voice:
            speaker = map_speaker(voice.group(1), speaker_map)
        text = html.unescape(_TAG.sub("", raw)).strip()
        m = _PREFIX.match(text)
        if m and (m.group(1) in speaker_map or m.group(1).lower() in speaker_map):
            speaker = map_speaker(m.group(1), speaker_map)
            text = m.group(2).strip()
            voice = voice or m
        if turns and not voice:
            turns[-1][1].append(text)
        else:
            turns.append((speaker, [text]))
    segs = []
    for spk, parts in turns:
        text = " ".join(p for p in parts if p)
        if text:
            segs.append(make_segment({"text": text, "speaker": spk, "start": start, "end": end}, speaker_map))
    if not segs:
        raise ValueError("cue has no text")
    return segs


def read_subtitles(path: Path, fmt: str, speaker_map: Mapping[str, str]) -> Iterator[Call | ReadError]:
    """One SRT or WebVTT file = one call whose id is the file's stem; one cue = one or more segments."""
    src = str(path)
    text = _read_text(path).replace("\r\n", "\n").replace("\r", "\n")
    blocks = [b for b in re.split(r"\n[ \t]*\n", text) if b.strip()]
    if fmt == "vtt":
        if not blocks or not blocks[0].lstrip().startswith("WEBVTT"):
            raise _FileError("not a WebVTT file: the first line must be 'WEBVTT'", "line 1")
        blocks = [b for b in blocks[1:] if not re.match(r"\s*(NOTE|STYLE|REGION)\b", b)]
    segments: list[dict[str, Any]] = []
    for n, block in enumerate(blocks, start=1):
        lines = block.strip("\n").split("\n")
        idx = next((i for i, line in enumerate(lines[:2]) if "-->" in line), None)
        timing = _parse_timing(lines[idx]) if idx is not None else None
        if timing is None:
            yield ReadError(src, f"cue {n}", "no valid timing line (hh:mm:ss,mmm --> hh:mm:ss,mmm)")
            continue
        try:
            segments.extend(_cue_segments(lines[idx + 1 :], *timing, fmt == "vtt", speaker_map))
        except ValueError as e:
            yield ReadError(src, f"cue {n}", str(e))
    if not blocks:
        raise _FileError("no cues found")
    if segments:
        yield {"call_id": stem_of(path), "segments": segments, "metadata": {}, "source": src, "position": None}


def read_file(path: Path, fmt: str, speaker_map: Mapping[str, str]) -> Iterator[Call | ReadError]:
    """Calls and errors of one file in a known format; never raises for bad content."""
    try:
        if fmt == "jsonl":
            yield from read_jsonl(path, speaker_map)
        elif fmt in ("csv", "parquet"):
            yield from read_table(path, fmt, speaker_map)
        elif fmt in ("srt", "vtt"):
            yield from read_subtitles(path, fmt, speaker_map)
        else:
            raise _FileError(f"unknown format {fmt!r}")
    except _FileError as e:
        yield ReadError(str(path), e.position, e.reason)


def read_inputs(
    paths: Iterable[Path], fmt: str = "auto", speaker_map: Mapping[str, str] | None = None, exclude: Iterable[Path] = ()
) -> Iterator[Call | ReadError]:
    """Every call and every error of the inputs (files or folders), in a deterministic order.

    ``fmt`` other than ``auto`` forces that format on every file.
    """
    if speaker_map is None:
        from model.config import RelabelConfig

        speaker_map = RelabelConfig().speaker_map
    for path in list_files(paths, exclude):
        file_fmt = fmt if fmt != "auto" else detect_format(path)
        if file_fmt is None:
            yield ReadError(str(path), None, f"unrecognised format (known: {list(FORMATS)}); use --format")
            continue
        yield from read_file(path, file_fmt, speaker_map)
