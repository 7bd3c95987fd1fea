"""Excel workbooks (.xlsx with openpyxl, legacy .xls with xlrd): one page per sheet under a '# <sheet name>' line, each
row one record of 'header: value' lines as for CSV.

Formulas give their cached value, the one Excel saved with the file; a formula cell without one (a workbook written by
a library that does not calculate, openpyxl itself among them) is skipped as empty. Hidden sheets are read like the
others and listed in the metadata: a hidden lookup sheet often holds the very codes a question asks about.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable, Sequence
from typing import Any

from rag_service.errors import InvalidInputError
from rag_service.ingestion.formats.common import LoadContext, Loaded, join_pages, reason

MAX_SHEET_ROWS = 1_048_576  # Excel's last row; openpyxl yields an empty row for every row number a file skips
# How many row and cell positions one non-empty cell may cost to reach: openpyxl pads a row to its last cell and fills
# skipped row numbers with empty rows, so a few cells far apart would cost billions of steps without this bound.
POSITIONS_PER_CELL = 10
TITLE_ROWS = 3  # single-cell rows above a wider row are title lines, not the header


class _Budget:
    """The workbook-wide count of non-empty cells and of positions walked to find them."""

    def __init__(self, ctx: LoadContext) -> None:
        self.source = ctx.source
        self.max_cells = ctx.limits.sheet_cells
        self.max_positions = POSITIONS_PER_CELL * ctx.limits.sheet_cells + 2 * MAX_SHEET_ROWS
        self.cells = 0
        self.positions = 0

    def row(self, sheet: str, width: int, filled: int) -> None:
        self.cells += filled
        self.positions += width + 1
        if self.cells > self.max_cells:
            raise InvalidInputError(f"{self.source}: more than {self.max_cells:,} non-empty cells (max_sheet_cells)")
        if self.positions > self.max_positions:
            raise InvalidInputError(
                f"{self.source}: sheet {sheet!r} spreads its cells over more than {self.max_positions:,} rows and "
                "columns (a damaged or deliberately sparse sheet; the limit follows max_sheet_cells)")


def load_xlsx(raw: bytes, ctx: LoadContext) -> Loaded:
    """Each sheet is a page and a '#' section, so a chunk's citation names its sheet."""
    from openpyxl import load_workbook
    from openpyxl.worksheet._read_only import ReadOnlyWorksheet

    source = ctx.source
    budget = _Budget(ctx)
    try:
        workbook = load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl, zipfile and the XML parser raise many types on malformed input
        raise InvalidInputError(f"{source}: not a valid Excel workbook ({reason(exc)})") from None
    try:
        names = list(workbook.sheetnames)
        pages, records, hidden = [], 0, []
        for name in names:
            sheet = workbook[name]
            if not isinstance(sheet, ReadOnlyWorksheet):  # a chart sheet: no cells
                pages.append("")
                continue
            if sheet.sheet_state != "visible":
                hidden.append(name)
            # The <dimension> element is the writer's claim, not the data: "A1:XFD1048576" would pad every row to
            # 16,384 cells. Without it each row is as wide as its last cell and the rows end where the data does.
            sheet.reset_dimensions()
            text, count = _sheet_text(name, sheet.iter_rows(values_only=True), budget)
            pages.append(text)
            records += count
    except InvalidInputError:
        raise
    except RecursionError:
        raise InvalidInputError(f"{source}: not a valid Excel workbook (nested too deeply)") from None
    except Exception as exc:
        raise InvalidInputError(f"{source}: not a valid Excel workbook ({reason(exc)})") from None
    finally:
        workbook.close()
    return _loaded(pages, records, hidden)


def load_xls(raw: bytes, ctx: LoadContext) -> Loaded:
    """A legacy .xls workbook read like an .xlsx one; xlrd loads one sheet at a time (on_demand) and frees it after."""
    import xlrd

    source = ctx.source
    budget = _Budget(ctx)
    try:
        book = xlrd.open_workbook(file_contents=raw, on_demand=True, ragged_rows=True)
    except Exception as exc:  # xlrd raises XLRDError, struct.error, IndexError ... on malformed input
        raise InvalidInputError(f"{source}: not a valid Excel .xls workbook ({reason(exc)})") from None
    try:
        pages, records, hidden = [], 0, []
        for index in range(book.nsheets):
            sheet = book.sheet_by_index(index)
            if sheet.visibility:
                hidden.append(sheet.name)
            rows = (_xls_row(sheet.row(r), book.datemode) for r in range(sheet.nrows))
            text, count = _sheet_text(sheet.name, rows, budget)
            pages.append(text)
            records += count
            book.unload_sheet(index)
    except InvalidInputError:
        raise
    except Exception as exc:
        raise InvalidInputError(f"{source}: not a valid Excel .xls workbook ({reason(exc)})") from None
    finally:
        book.release_resources()
    return _loaded(pages, records, hidden)


def _xls_row(cells: Sequence[Any], datemode: int) -> list[Any]:
    """xlrd's typed cells as the Python values openpyxl would give."""
    import xlrd

    values: list[Any] = []
    for cell in cells:
        kind, value = cell.ctype, cell.value
        if kind == xlrd.XL_CELL_DATE:
            try:
                when = xlrd.xldate_as_datetime(value, datemode)
                value = when.time() if 0 <= value < 1 else when  # a time of day has no date
            except (ValueError, OverflowError, xlrd.xldate.XLDateError):
                pass  # a number formatted as a date but out of the calendar: keep the number
        elif kind == xlrd.XL_CELL_BOOLEAN:
            value = bool(value)
        elif kind == xlrd.XL_CELL_ERROR:
            value = xlrd.error_text_from_code.get(value, "#ERROR")
        elif kind in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK):
            value = None
        values.append(value)
    return values


def _loaded(pages: list[str], records: int, hidden: list[str]) -> Loaded:
    loaded = join_pages(pages)
    loaded.metadata.update({"sheets": len(pages), "records": records})
    if hidden:
        loaded.metadata["hidden_sheets"] = hidden
    return loaded


def _sheet_text(name: str, rows: Iterable[Sequence[Any]], budget: _Budget) -> tuple[str, int]:
    """'# name', any title lines, then one blank-line-separated record of 'header: value' lines per row under the
    first row with two or more values (or the first row, when no early row is wider); a sheet of one row is that row,
    its values joined with ' | '."""
    header: list[str] | None = None
    pending: list[list[tuple[int, str]]] = []  # non-empty rows read before the header was chosen
    blocks: list[str] = []
    records = 0

    def record(cells: list[tuple[int, str]]) -> None:
        nonlocal records
        assert header is not None
        blocks.append("\n".join(f"{_column_name(header, i)}: {value}" for i, value in cells))
        records += 1

    for row in rows:
        cells = [(i, text) for i, value in enumerate(row) if (text := _cell_text(value))]
        budget.row(name, len(row), len(cells))
        if not cells:
            continue
        if header is not None:
            record(cells)
            continue
        pending.append(cells)
        if len(cells) > 1 or len(pending) > TITLE_ROWS:
            header = _choose_header(pending, blocks)
            for early in pending:
                record(early)
            pending = []
    if pending:  # a sheet of single-value rows, or fewer than TITLE_ROWS of them
        header = _choose_header(pending, blocks)
        for early in pending:
            record(early)
    if header is not None and not records:  # a one-row sheet: its only row is content, not a header
        blocks.append(" | ".join(value for value in header if value))
    if not blocks:
        return "", 0
    return f"# {' '.join(name.split())}\n\n" + "\n\n".join(blocks), records


def _choose_header(pending: list[list[tuple[int, str]]], blocks: list[str]) -> list[str]:
    """Take the header out of ``pending``: the first wide row, the single-value rows above it becoming title lines in
    ``blocks``; or, with no wide row, the first row."""
    at = next((i for i, cells in enumerate(pending) if len(cells) > 1), 0)
    blocks.extend(cells[0][1] for cells in pending[:at])
    cells = pending[at]
    del pending[:at + 1]
    header: list[str] = []
    for i, value in cells:
        header += [""] * (i - len(header)) + [" ".join(value.split())]
    return header


def _column_name(header: list[str], index: int) -> str:
    if index < len(header) and header[index]:
        return header[index]
    from openpyxl.utils import get_column_letter

    return f"column {get_column_letter(index + 1)}"


def _cell_text(value: Any) -> str:
    """A cell as a person reads it: whole numbers without '.0', at most 15 significant digits (Excel's precision),
    dates in ISO form (a midnight datetime as its date alone), booleans as Excel spells them."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.15g}"
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0) and value.tzinfo is None:
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    return str(value).strip()
