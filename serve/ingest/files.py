"""Finding input files, opening them (gzip by magic bytes) and telling their format."""

from __future__ import annotations

import gzip
import io
import re
import zlib
from collections.abc import Iterable
from pathlib import Path

from serve.ingest.asr_shapes import SHAPE_NAMES

TABLE_FORMATS = ("csv", "xlsx", "xls", "parquet")
FORMATS: tuple[str, ...] = ("jsonl", "json", *TABLE_FORMATS, "srt", "vtt", *SHAPE_NAMES)
SUFFIX_FORMATS: dict[str, str] = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "csv", ".xlsx": "xlsx",
    ".xlsm": "xlsx", ".xls": "xls", ".parquet": "parquet", ".pq": "parquet", ".srt": "srt", ".vtt": "vtt",
}  # fmt: skip
GZIP_MAGIC = b"\x1f\x8b"
_MAGIC = ((b"PAR1", "parquet"), (b"PK\x03\x04", "xlsx"), (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "xls"))


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


def read_bytes(path: Path, limit: int | None = None) -> bytes:
    """The whole (decompressed) file; more than ``limit`` bytes raises ``ValueError``."""
    with open_binary(path) as fh:
        data = fh.read() if limit is None else fh.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise ValueError(f"larger than {limit / 1e6:.0f} MB (ingest.max_json_mb); split it or write JSONL")
    return data


def stem_of(path: Path) -> str:
    """``call_17.srt.gz`` → ``call_17``: the call id of a one-call file (subtitles, ASR JSON)."""
    name = path.name
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = Path(name).suffix
    return name[: -len(suffix)] if suffix.lower() in SUFFIX_FORMATS else name


def _head_text(head: bytes) -> str:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return head.decode("utf-16", errors="ignore")
    return head.decode("utf-8", errors="ignore").lstrip("\ufeff")


def detect_format(path: Path) -> str | None:
    """The format by suffix (``.gz`` stripped), else by sniffing the first bytes; None if unknown.

    Sniffed JSON is ``json``, which reads JSONL too (a document that is not one JSON value is
    read line by line), so a call archive named ``calls.txt`` still works.
    """
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    fmt = SUFFIX_FORMATS.get(Path(name).suffix.lower())
    if fmt:
        return fmt
    try:
        with open_binary(path) as fh:
            head = fh.read(512)
    except (OSError, EOFError, zlib.error):
        return None
    for magic, found in _MAGIC:
        if head.startswith(magic):
            return found
    text = _head_text(head).lstrip()
    if text.startswith("WEBVTT"):
        return "vtt"
    if text.startswith(("{", "[")):
        return "json"
    if re.match(r"\d+\s*\n\s*[\d:]+[,.]\d+\s*-->", text.replace("\r", "")):
        return "srt"
    return None
