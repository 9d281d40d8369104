"""Reading a person's file into a header and rows: CSV in UTF-8 (with or
without BOM), UTF-16 or GBK/GB18030, with its delimiter sniffed, or an XLSX
workbook's sheet. Used by the file import and by the reconciliation's
comparison with a channel's own export."""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class UnreadableFile(Exception):
    """The file cannot be read as a table; the message says why and what to do."""


@dataclass
class Table:
    header: list[str]
    rows: list[tuple[int, list[Any]]]  # (row number, cells)
    encoding: str


def decode(data: bytes, encoding: str | None = None) -> tuple[str, str]:
    """The text and the encoding it was in."""
    if encoding:
        try:
            return data.decode(encoding), encoding
        except (UnicodeDecodeError, LookupError) as exc:
            raise UnreadableFile(f"the file is not {encoding}: {exc}") from exc
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8) :].decode("utf-8", errors="strict"), "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16"), "utf-16"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), "gb18030"  # GBK is a subset
    except UnicodeDecodeError as exc:
        raise UnreadableFile(
            f"the file is neither UTF-8 nor GBK/GB18030 (byte {exc.start}); "
            "save it as UTF-8 or name the encoding"
        ) from exc


def read_csv(data: bytes, encoding: str | None = None) -> Table:
    text, used = decode(data, encoding)
    sample = text[:4096]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    header: list[str] | None = None
    rows: list[tuple[int, list[Any]]] = []
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue
        if header is None:
            header = [c.strip() for c in cells]
            continue
        rows.append((reader.line_num, cells))
    if header is None:
        raise UnreadableFile("the file is empty: no header row")
    return Table(header, rows, used)


def read_xlsx(data: bytes, sheet: str | None = None) -> Table:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:
        raise UnreadableFile(f"not a readable XLSX workbook: {exc}") from exc
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise UnreadableFile(f"no sheet {sheet!r}; the workbook has {book.sheetnames}")
        ws = book[sheet] if sheet else book.worksheets[0]
        header: list[str] | None = None
        rows: list[tuple[int, list[Any]]] = []
        for number, values in enumerate(ws.iter_rows(values_only=True), start=1):
            cells = ["" if v is None else v for v in values]
            if not any(str(c).strip() for c in cells):
                continue
            if header is None:
                header = [str(c).strip() for c in cells]
                continue
            rows.append((number, cells))
    finally:
        book.close()
    if header is None:
        raise UnreadableFile("the sheet is empty: no header row")
    return Table(header, rows, "xlsx")


def read_table(path: Path, encoding: str | None = None, sheet: str | None = None) -> Table:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableFile(f"cannot read {path}: {exc}") from exc
    if data.startswith(b"PK\x03\x04") or path.suffix.lower() in (".xlsx", ".xlsm"):
        return read_xlsx(data, sheet)
    return read_csv(data, encoding)


# A cell a spreadsheet would read as a formula (=HYPERLINK(...), +cmd, @SUM, a
# tab or return first): text from outside must never run as one.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    """``value`` as a CSV cell that a spreadsheet shows as text, never runs:
    a leading quote before what would start a formula (OWASP's advice)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _xlsx_text(value: str) -> str:
    """A text cell a workbook can hold: no formula, and without the control
    characters XML 1.0 forbids (a hostile SKU or note may carry them)."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    return str(ILLEGAL_CHARACTERS_RE.sub("", safe_cell(value)))


def xlsx_bytes(header: list[str], rows: list[list[object]], title: str = "orderbus") -> bytes:
    """A one-sheet workbook of these rows; text cells that would start a
    formula are written as text (safe_cell), never as formulas."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet(title[:31])
    sheet.append(header)
    for row in rows:
        sheet.append([_xlsx_text(v) if isinstance(v, str) else v for v in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
