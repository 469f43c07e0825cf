"""Segment tables — CSV, Excel (.xlsx/.xls) and Parquet — one row per segment, one column mapping.

Required columns ``call_id``, ``speaker``, ``text``; optional ``start``, ``end`` (seconds) and
``listener``. Header names in ``ingest.column_aliases`` (``通话ID``, ``角色``, ``内容``…) are
accepted for them. Rows are grouped into calls in order of first appearance, the whole table
first, because a call's rows need not be contiguous; a bad row is reported and the call keeps
its good ones.
"""

from __future__ import annotations

import csv
import io
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from serve.ingest.encoding import decode, sniff_encoding
from serve.ingest.excel import excel_sheets
from serve.ingest.files import open_binary, read_bytes
from serve.ingest.options import IngestOptions
from serve.ingest.records import Call, FileError, FileRecord, ReadError, parse_call_id
from serve.ingest.speakers import make_segment

TABLE_REQUIRED = ("call_id", "speaker", "text")
TABLE_OPTIONAL = ("start", "end", "listener")
Rows = Iterable[tuple[str, Mapping[str, Any]]]  # (position, row)


def column_map(columns: list[Any], aliases: Mapping[str, list[str]]) -> dict[str, str]:
    """Our field name → the table's column name, for every field the header has."""
    lookup = {str(c).strip().lower(): c for c in columns if c is not None}
    found: dict[str, str] = {}
    for name in (*TABLE_REQUIRED, *TABLE_OPTIONAL):
        for candidate in (name, *aliases.get(name, ())):
            if candidate.lower() in lookup:
                found[name] = lookup[candidate.lower()]
                break
    return found


def check_header(columns: list[Any], aliases: Mapping[str, list[str]], where: str) -> dict[str, str]:
    mapping = column_map(columns, aliases)
    missing = [c for c in TABLE_REQUIRED if c not in mapping]
    if missing:
        raise FileError(f"missing column(s) {missing}; a segment table needs {list(TABLE_REQUIRED)}", where)
    return mapping


def _csv_rows(path: Path, opts: IngestOptions, record: FileRecord) -> Rows:
    try:
        data = read_bytes(path)
    except (OSError, EOFError, zlib.error) as e:
        raise FileError(f"cannot read file: {e}") from None
    record.encoding = sniff_encoding(data[: opts.detect_bytes], opts.encoding)
    text = decode(data, record.encoding).lstrip("\ufeff")
    first = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first and "," not in first else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    mapping = check_header(list(reader.fieldnames or []), opts.column_aliases, "row 0 (header)")
    try:
        for rowno, row in enumerate(reader, start=1):
            if None in row:  # csv.DictReader files surplus fields under the None key
                yield f"row {rowno}", {"_error": f"{len(row[None])} more field(s) than the header has"}
            elif any(v is None for v in row.values()):
                yield f"row {rowno}", {"_error": "fewer fields than the header has"}
            else:
                yield f"row {rowno}", {k: row[c] for k, c in mapping.items()}
    except csv.Error as e:
        raise FileError(f"malformed CSV: {e}") from None


def _parquet_rows(path: Path, opts: IngestOptions) -> Rows:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with open_binary(path) as fh:
            table = pq.read_table(io.BytesIO(fh.read()))
    except (OSError, EOFError, zlib.error, pa.ArrowException) as e:
        raise FileError(f"not a readable Parquet file: {e}") from None
    mapping = check_header(table.column_names, opts.column_aliases, "row 0 (header)")
    rows = (row for batch in table.to_batches() for row in batch.to_pylist())
    for rowno, row in enumerate(rows, start=1):
        yield f"row {rowno}", {k: row[c] for k, c in mapping.items()}


def _excel_rows(path: Path, fmt: str, opts: IngestOptions, record: FileRecord) -> Rows:
    """Every sheet whose header has the required columns; others are listed in the file record."""
    used, skipped = 0, []
    for sheet, header, rows in excel_sheets(path, fmt):
        mapping = column_map(header, opts.column_aliases)
        if any(c not in mapping for c in TABLE_REQUIRED):
            skipped.append(sheet)
            continue
        used += 1
        index = {name: header.index(col) for name, col in mapping.items()}
        for excel_row, cells in rows:
            if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
                continue  # blank spreadsheet rows are layout, not data
            yield (
                f"sheet {sheet!r} row {excel_row}",
                {k: cells[i] if i < len(cells) else None for k, i in index.items()},
            )
    if skipped:
        record.extra["sheets_skipped"] = skipped
    if not used:
        raise FileError(f"no sheet has the columns {list(TABLE_REQUIRED)} (sheets: {skipped})", "row 1 (header)")


def table_rows(path: Path, fmt: str, opts: IngestOptions, record: FileRecord) -> Rows:
    if fmt == "csv":
        return _csv_rows(path, opts, record)
    if fmt == "parquet":
        return _parquet_rows(path, opts)
    return _excel_rows(path, fmt, opts, record)


def read_table(path: Path, fmt: str, opts: IngestOptions, record: FileRecord) -> Iterator[Call | ReadError]:
    src = str(path)
    calls: dict[str, Call] = {}
    for where, row in table_rows(path, fmt, opts, record):
        try:
            if "_error" in row:
                raise ValueError(row["_error"])
            call_id = parse_call_id(row.get("call_id"))
            seg = make_segment(row, opts.speaker_map, opts.roles, where)
        except ValueError as e:
            yield ReadError(src, where, str(e))
            continue
        call = calls.setdefault(call_id, {"call_id": call_id, "segments": [], "metadata": {}, "source": src})
        call.setdefault("position", where)
        call["segments"].append(seg)
    yield from calls.values()
