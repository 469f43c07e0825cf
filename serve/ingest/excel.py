"""Excel workbooks: ``.xlsx`` with openpyxl (read-only, values not formulas), ``.xls`` with xlrd.

Yields ``(sheet name, header, rows)`` per sheet, rows as ``(Excel row number, cells)`` so
positions are the row numbers Excel shows.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from serve.ingest.files import read_bytes
from serve.ingest.records import FileError

Sheet = tuple[str, list[Any], Iterator[tuple[int, list[Any]]]]


def _xlsx(data: bytes) -> Iterator[Sheet]:
    from openpyxl import load_workbook

    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as e:
        raise FileError(f"not a readable .xlsx workbook: {e}") from None
    for ws in wb.worksheets:
        rows = ws.iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            continue
        yield ws.title, list(header), ((n, list(r)) for n, r in enumerate(rows, start=2))


def _xls(data: bytes) -> Iterator[Sheet]:
    import xlrd

    try:
        book = xlrd.open_workbook(file_contents=data)
    except xlrd.XLRDError as e:
        raise FileError(f"not a readable .xls workbook: {e}") from None
    for sheet in book.sheets():
        if sheet.nrows == 0:
            continue
        rows = ((n + 1, [c.value if c.ctype != xlrd.XL_CELL_EMPTY else None for c in sheet.row(n)])
                for n in range(1, sheet.nrows))  # fmt: skip
        yield sheet.name, sheet.row_values(0), rows


def excel_sheets(path: Path, fmt: str) -> Iterator[Sheet]:
    try:
        data = read_bytes(path)
    except (OSError, EOFError, zlib.error) as e:
        raise FileError(f"cannot read file: {e}") from None
    yield from (_xls(data) if fmt == "xls" else _xlsx(data))
