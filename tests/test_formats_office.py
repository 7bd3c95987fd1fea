"""PowerPoint and Excel loaders on real files built at test time (python-pptx, openpyxl, xlwt): slides and sheets as
pages and '#' sections, bullets, tables, notes, records, and the hostile files each refused with one line."""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pytest
from pptx import Presentation
from pptx.chart.data import CategoryChartData
from pptx.enum.chart import XL_CHART_TYPE
from pptx.util import Inches

from rag_service.errors import InvalidInputError
from rag_service.ingestion.formats.common import LoadContext, Loaded, LoadLimits
from rag_service.ingestion.formats.xlsx import load_xls
from rag_service.records import Document
from tests.files import load_error, load_file

ZH = "差旅补贴标准按照出差地区和职级确定。"
SHEET_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"



def page_of(doc: Document, phrase: str) -> int:
    """The page (slide, sheet) the phrase starts on, as the pipeline assigns it to a chunk."""
    offset = doc.text.index(phrase)
    return max(page for start, page in doc.metadata["page_starts"] if start <= offset)


def rezip(raw: bytes, member: str, change: Callable[[bytes], bytes]) -> bytes:
    """The archive with one member rewritten, as a hostile or broken writer would have saved it."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, change(data) if name == member else data)
    return out.getvalue()


def zip_bomb(raw: bytes, megabytes: int) -> bytes:
    """The file plus a member of zeros: streamed, so memory does not grow with the payload."""
    out = io.BytesIO(raw)
    with zipfile.ZipFile(out, "a", zipfile.ZIP_DEFLATED, compresslevel=1) as archive, \
            archive.open("docProps/zeros.bin", "w", force_zip64=True) as member:
        chunk = bytes(1 << 20)
        for _ in range(megabytes):
            member.write(chunk)
    return out.getvalue()


# --- PowerPoint -------------------------------------------------------------------------------------------------


def deck_bytes() -> bytes:
    """Slide 1: title, two-level bullets, notes. Slide 2: no title; text boxes added out of reading order, a table, a
    chart, nested groups. Slide 3: a Chinese title, hidden."""
    prs = Presentation()
    first = prs.slides.add_slide(prs.slide_layouts[1])
    first.shapes.title.text = "Travel policy"
    body = first.placeholders[1].text_frame
    body.text = "Meals are covered"
    sub = body.add_paragraph()
    sub.text = "Up to 50 EUR a day"
    sub.level = 1
    first.notes_slide.notes_text_frame.text = "Mention the Paris exception."

    second = prs.slides.add_slide(prs.slide_layouts[6])
    for left, top, text in ((5, 1, "Right column"), (1, 1, "Left column"), (1, 0.2, "Top line")):
        second.shapes.add_textbox(Inches(left), Inches(top), Inches(3), Inches(0.5)).text_frame.text = text
    table = second.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    for (row, col), text in {(0, 0): "City", (0, 1): "Cap", (1, 0): "Paris", (1, 1): "50 | EUR"}.items():
        table.cell(row, col).text = text
    data = CategoryChartData()
    data.categories = ["Paris", "Berlin"]
    data.add_series("Spend", (50, 45))
    chart = second.shapes.add_chart(XL_CHART_TYPE.COLUMN_CLUSTERED, Inches(1), Inches(3.5), Inches(4), Inches(2),
                                    data).chart
    chart.has_title = True
    chart.chart_title.text_frame.text = "Spend by city"
    group = second.shapes.add_group_shape()
    for _ in range(40):  # deeper than MAX_GROUP_DEPTH: read flat, still read
        group = group.shapes.add_group_shape()
    group.shapes.add_textbox(Inches(1), Inches(6), Inches(3), Inches(0.5)).text_frame.text = "Deep in groups"

    third = prs.slides.add_slide(prs.slide_layouts[5])
    third.shapes.title.text = "出差规定"
    third.shapes.add_textbox(Inches(1), Inches(2), Inches(6), Inches(1)).text_frame.text = ZH
    third._element.set("show", "0")
    out = io.BytesIO()
    prs.save(out)
    return out.getvalue()


def test_pptx_slides_are_pages_with_titles_bullets_tables_and_notes(tmp_path: Path) -> None:
    doc = load_file(tmp_path, "deck.pptx", deck_bytes())
    assert doc.metadata["format"] == "pptx"
    assert doc.metadata["slides"] == 3
    assert doc.metadata["pages"] == 3
    assert doc.metadata["hidden_slides"] == [3]
    assert doc.text.startswith(
        "# Travel policy\n\n- Meals are covered\n  - Up to 50 EUR a day\n\nSpeaker notes:\nMention the Paris exception."
        "\n\n# Slide 2\n\nTop line\n\nLeft column\n\nRight column\n\n"
        "| City | Cap |\n|---|---|\n| Paris | 50 \\| EUR |\n\nChart: Spend by city\n\nDeep in groups\n\n# 出差规定\n\n"
    )
    assert doc.text.endswith(ZH)
    assert [page_of(doc, p) for p in ("Travel policy", "Mention the Paris", "# Slide 2", "Deep in groups", ZH)] \
        == [1, 1, 2, 2, 3]


def test_pptx_over_the_slide_limit_is_refused_before_parsing(tmp_path: Path) -> None:
    """10,000 entries in the slide list naming a relationship that does not exist: python-pptx would fail on them as
    "not a valid PowerPoint file", so the slide-limit message proves the count came first."""
    ids = "".join(f'<p:sldId id="{256 + i}" r:id="rId999"/>' for i in range(10_000))

    def many(xml: bytes) -> bytes:
        return re.sub(rb"<p:sldIdLst>.*?</p:sldIdLst>", f"<p:sldIdLst>{ids}</p:sldIdLst>".encode(), xml)

    prs = Presentation()
    prs.slides.add_slide(prs.slide_layouts[6])
    out = io.BytesIO()
    prs.save(out)
    raw = rezip(out.getvalue(), "ppt/presentation.xml", many)
    assert load_error(tmp_path, "big.pptx", raw) \
        == "big.pptx: 10,000 slides is over the 2,000-slide limit (max_pdf_pages)"


def test_pptx_slide_limit_is_the_limit_given(tmp_path: Path) -> None:
    assert load_error(tmp_path, "deck.pptx", deck_bytes(), limits=LoadLimits(pdf_pages=2)) \
        == "deck.pptx: 3 slides is over the 2-slide limit (max_pdf_pages)"


def test_pptx_nested_50000_deep_is_refused(tmp_path: Path) -> None:
    """lxml refuses XML nested deeper than 256; 50,000 levels stay under 1 MB, where the ZIP ratio check starts (at
    100,000 it refuses the slide member first, for its 455:1 ratio)."""
    nest = 50_000

    def deep(xml: bytes) -> bytes:
        return xml.replace(b"</p:spTree>", b"<p:grpSp>" * nest + b"</p:grpSp>" * nest + b"</p:spTree>")

    raw = rezip(deck_bytes(), "ppt/slides/slide1.xml", deep)
    assert load_error(tmp_path, "deep.pptx", raw) == "deep.pptx: not a valid PowerPoint file (nested too deeply)"


def test_pptx_damaged_zip(tmp_path: Path) -> None:
    raw = deck_bytes()
    message = load_error(tmp_path, "cut.pptx", raw[: len(raw) // 2])
    assert message.startswith("cut.pptx: not a valid PowerPoint file (")


def test_pptx_damaged_slide_xml(tmp_path: Path) -> None:
    raw = rezip(deck_bytes(), "ppt/slides/slide2.xml", lambda xml: xml[: len(xml) // 2])
    assert load_error(tmp_path, "bad.pptx", raw).startswith("bad.pptx: not a valid PowerPoint file (")


def test_pptx_zip_bomb(tmp_path: Path) -> None:
    message = load_error(tmp_path, "bomb.pptx", zip_bomb(deck_bytes(), 101))
    assert re.fullmatch(r"bomb\.pptx: refusing a PowerPoint file that decompresses to 101(\.\d)? MB \(limit 100 MB, "
                        r"max_document_expansion_mb\)", message)


# --- Excel ------------------------------------------------------------------------------------------------------


def workbook_bytes() -> bytes:
    """'Rates': a title row, a blank row, the header, two records and a formula; 'Codes': hidden; 'Blank': empty;
    'Motto': one row."""
    wb = openpyxl.Workbook()
    rates = wb.active
    assert rates is not None
    rates.title = "Rates"
    rates.append(["Travel allowances 2024"])
    rates.append([])
    rates.append(["City", "Cap", "Since", "Ratio", None, "Note"])
    rates.append(["Paris", 50.0, dt.datetime(2024, 1, 5), 0.1 + 0.2, None, ZH])
    rates.append(["Berlin", 45, dt.date(2023, 3, 1), 1 / 3, "extra", None])
    rates.append(["Total", "=B4+B5"])  # openpyxl saves no cached value: skipped unless one is written below
    codes = wb.create_sheet("Codes")
    codes.sheet_state = "hidden"
    codes.append(["Code", "Meaning"])
    codes.append(["X1", "Meals"])
    wb.create_sheet("Blank")
    wb.create_sheet("Motto").append(["Travel light", "spend less"])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


RATES = ("# Rates\n\nTravel allowances 2024\n\n"
         f"City: Paris\nCap: 50\nSince: 2024-01-05\nRatio: 0.3\nNote: {ZH}\n\n"
         "City: Berlin\nCap: 45\nSince: 2023-03-01\nRatio: 0.333333333333333\ncolumn E: extra\n\n"
         "City: Total")


def test_xlsx_sheets_are_pages_of_records(tmp_path: Path) -> None:
    doc = load_file(tmp_path, "book.xlsx", workbook_bytes())
    assert doc.text == RATES + "\n\n# Codes\n\nCode: X1\nMeaning: Meals\n\n# Motto\n\nTravel light | spend less"
    assert doc.metadata["format"] == "xlsx"
    assert doc.metadata["sheets"] == 4
    assert doc.metadata["records"] == 4
    assert doc.metadata["hidden_sheets"] == ["Codes"]
    assert [page_of(doc, p) for p in ("# Rates", "City: Berlin", "Code: X1", "Travel light")] == [1, 1, 2, 4]


def test_xlsx_formula_gives_its_cached_value(tmp_path: Path) -> None:
    """The value Excel saved with the formula; openpyxl writes none, so the test writes it as Excel would."""
    raw = rezip(workbook_bytes(), "xl/worksheets/sheet1.xml", lambda xml: xml.replace(b"<v></v>", b"<v>95</v>"))
    assert load_file(tmp_path, "book.xlsx", raw).text.startswith(RATES + "\nCap: 95\n\n# Codes")


def sheet_xml(rows: str, dimension: str = "") -> bytes:
    return (f'<worksheet xmlns="{SHEET_NS}">{dimension}<sheetData>{rows}</sheetData></worksheet>').encode()


def num_row(row: int, *columns: str) -> str:
    return f'<row r="{row}">' + "".join(f'<c r="{c}{row}"><v>{row}</v></c>' for c in columns) + "</row>"


def with_sheet(xml: bytes) -> bytes:
    return rezip(workbook_bytes(), "xl/worksheets/sheet1.xml", lambda _: xml)


def test_xlsx_bogus_dimension_does_not_pad_rows(tmp_path: Path) -> None:
    """A dimension claiming every cell of the grid (and a start past the data): 300 rows would be padded to 16,384
    cells each, 4.9 million positions, if the claim were believed; the data alone is read."""
    rows = '<row r="1"><c r="A1" t="inlineStr"><is><t>n</t></is></c><c r="B1" t="inlineStr"><is><t>m</t></is></c></row>'
    rows += "".join(num_row(r, "A", "B") for r in range(2, 301))
    raw = with_sheet(sheet_xml(rows, '<dimension ref="C3:XFD1048576"/>'))
    doc = load_file(tmp_path, "dim.xlsx", raw, limits=LoadLimits(sheet_cells=1000))
    assert doc.text.startswith("# Rates\n\nn: 2\nm: 2\n\nn: 3\nm: 3\n\n")
    assert "n: 300\nm: 300\n\n# Codes" in doc.text


def test_xlsx_cell_limit(tmp_path: Path) -> None:
    raw = with_sheet(sheet_xml("".join(num_row(r, "A", "B", "C") for r in range(1, 501))))  # 1,500 cells
    assert load_error(tmp_path, "huge.xlsx", raw, limits=LoadLimits(sheet_cells=1000)) \
        == "huge.xlsx: more than 1,000 non-empty cells (max_sheet_cells)"
    doc = load_file(tmp_path, "huge.xlsx", raw, limits=LoadLimits(sheet_cells=2000))
    assert doc.metadata["records"] == 499 + 1  # the one-row Motto sheet is a line, not a record


def test_xlsx_rows_far_apart_are_refused(tmp_path: Path) -> None:
    """Two cells a hundred million rows apart: openpyxl would yield every row between them."""
    raw = with_sheet(sheet_xml(num_row(1, "A") + num_row(100_000_000, "A")))
    assert load_error(tmp_path, "sparse.xlsx", raw, limits=LoadLimits(sheet_cells=1000)) == (
        "sparse.xlsx: sheet 'Rates' spreads its cells over more than 2,107,152 rows and columns (a damaged or "
        "deliberately sparse sheet; the limit follows max_sheet_cells)")


def test_xlsx_one_cell_on_the_last_row_is_read(tmp_path: Path) -> None:
    raw = with_sheet(sheet_xml(num_row(1, "A", "B") + num_row(1_048_576, "XFD")))
    doc = load_file(tmp_path, "far.xlsx", raw, limits=LoadLimits(sheet_cells=1000))
    assert doc.text.startswith("# Rates\n\ncolumn XFD: 1048576\n\n# Codes")


def test_xlsx_deeply_nested_xml(tmp_path: Path) -> None:
    """openpyxl streams sheets with expat, which does not recurse: 100,000 nested runs cost memory, not the stack."""
    nest = 100_000
    cell = f'<c r="A1" t="inlineStr"><is>{"<r>" * nest}{"</r>" * nest}<t>Deep text</t></is></c>'
    raw = with_sheet(sheet_xml(f'<row r="1">{cell}</row>' + num_row(2, "A")))
    assert load_file(tmp_path, "deep.xlsx", raw).text.startswith("# Rates\n\nDeep text: 2\n\n# Codes")


def test_xlsx_damaged(tmp_path: Path) -> None:
    raw = workbook_bytes()
    assert load_error(tmp_path, "cut.xlsx", raw[: len(raw) // 2]).startswith("cut.xlsx: not a valid Excel workbook (")
    bad = rezip(raw, "xl/workbook.xml", lambda xml: xml[: len(xml) // 2])
    assert load_error(tmp_path, "bad.xlsx", bad).startswith("bad.xlsx: not a valid Excel workbook (")


def test_xlsx_zip_bomb(tmp_path: Path) -> None:
    message = load_error(tmp_path, "bomb.xlsx", zip_bomb(workbook_bytes(), 101))
    assert re.fullmatch(r"bomb\.xlsx: refusing an Excel workbook that decompresses to 101(\.\d)? MB \(limit 100 MB, "
                        r"max_document_expansion_mb\)", message)


# --- legacy .xls (an OLE2 container named .xls) -------------------------------------------------------------------


def xls_bytes(rows: int = 0) -> bytes:
    xlwt = pytest.importorskip("xlwt", reason="xlwt (a test-only .xls writer) is not installed")
    book = xlwt.Workbook(encoding="utf-8")
    rates = book.add_sheet("Rates")
    for col, value in enumerate(["City", "Cap", "Since", "At"]):
        rates.write(0, col, value)
    date, time = xlwt.easyxf(num_format_str="YYYY-MM-DD"), xlwt.easyxf(num_format_str="hh:mm")
    for row, (city, cap, since, at) in enumerate((("Paris", 50, dt.datetime(2024, 1, 5), dt.time(10, 30)),
                                                  (ZH, 2.5, dt.datetime(2023, 3, 1), dt.time(8, 0))), 1):
        rates.write(row, 0, city)
        rates.write(row, 1, cap)
        rates.write(row, 2, since, date)
        rates.write(row, 3, at, time)
    for row in range(rows):
        rates.write(row + 3, 0, row)
    codes = book.add_sheet("Codes")
    codes.visibility = 1
    codes.write(0, 0, "Code")
    codes.write(0, 1, "Valid")
    codes.write(1, 0, "X1")
    codes.write(1, 1, True)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_xls_sheets_are_pages_of_records(tmp_path: Path) -> None:
    doc = load_file(tmp_path, "old.xls", xls_bytes())
    assert doc.metadata.pop("format") == "xls"
    loaded = Loaded(doc.text, doc.metadata)
    assert loaded.text == ("# Rates\n\nCity: Paris\nCap: 50\nSince: 2024-01-05\nAt: 10:30:00\n\n"
                           f"City: {ZH}\nCap: 2.5\nSince: 2023-03-01\nAt: 08:00:00\n\n# Codes\n\nCode: X1\nValid: TRUE")
    assert loaded.metadata == {"pages": 2, "page_starts": [[0, 1], [loaded.text.index("# Codes"), 2]], "sheets": 2,
                               "records": 3, "hidden_sheets": ["Codes"]}


def test_xls_cell_limit(tmp_path: Path) -> None:
    assert load_error(tmp_path, "big.xls", xls_bytes(rows=1_000), limits=LoadLimits(sheet_cells=1000)) \
        == "big.xls: more than 1,000 non-empty cells (max_sheet_cells)"


@pytest.mark.parametrize("raw", [b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), b"not a workbook at all" * 30],
                         ids=["ole2-header-only", "junk"])
def test_broken_xls_is_refused(tmp_path: Path, raw: bytes) -> None:
    with pytest.raises(InvalidInputError) as info:
        load_xls(raw, LoadContext("broken.xls"))
    assert re.fullmatch(r"broken\.xls: not a valid Excel \.xls workbook \([^\n]+\)", str(info.value))
    if raw.startswith(b"\xd0\xcf\x11\xe0"):  # through load() too (text named .xls, an HTML or TSV export, is text)
        assert load_error(tmp_path, "broken.xls", raw).startswith("broken.xls: not a valid Excel .xls workbook (")
