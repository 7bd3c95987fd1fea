"""PDF tables and page furniture, on PDFs drawn with reportlab: every cell in its row and column of a Markdown table
kept whole in one chunk; running headers, footers and page numbers gone; the author's own lines kept."""

from __future__ import annotations

import io
import random
import re
from pathlib import Path

import pytest
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Table, TableStyle

from rag_service.errors import IngestCancelledError
from rag_service.ingestion.formats.common import LoadLimits
from rag_service.ingestion.formats.pdf import drop_furniture
from rag_service.ingestion.loaders import load
from rag_service.ingestion.pipeline import Ingestor, with_pages
from rag_service.ingestion.sandbox import ParseWorker, SandboxLimits
from rag_service.ingestion.splitters import make_splitter
from rag_service.records import Document
from rag_service.retrieval.search import Retriever
from rag_service.settings import Settings
from rag_service.workspace import Workspace

WORDS = ("revenue cost margin region growth forecast quarter budget team product market share customer supplier "
         "contract invoice payment schedule review audit").split()
HEADER = "ACME Corp - Quarterly Report 2026"
pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))  # a CID font every PDF reader has: no font file needed


def prose(rnd: random.Random, n: int) -> str:
    return " ".join(rnd.choice(WORDS) for _ in range(n)) + "."


def build(story: list, *, furniture: bool = True) -> bytes:
    def decorate(canvas, doc) -> None:  # type: ignore[no-untyped-def]
        if furniture:
            canvas.saveState()
            canvas.setFont("Helvetica", 9)
            canvas.drawString(72, A4[1] - 40, HEADER)
            canvas.drawString(A4[0] / 2, 30, f"Page {doc.page} of 4")
            canvas.restoreState()

    out = io.BytesIO()
    SimpleDocTemplate(out, pagesize=A4).build(story, onFirstPage=decorate, onLaterPages=decorate)
    return out.getvalue()


def grid(data: list[list[str]], font: str = "Helvetica") -> Table:
    table = Table(data)
    table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black), ("FONTNAME", (0, 0), (-1, -1), font)]))
    return table


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Each Markdown table in the text as rows of cells (separator row left out, escaped pipes restored)."""
    tables, current = [], []
    for line in [*text.split("\n"), ""]:
        if line.startswith("|"):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not all(re.fullmatch(r"-+", c) for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def load_pdf(tmp_path: Path, raw: bytes, name: str = "report.pdf") -> Document:
    path = tmp_path / name
    path.write_bytes(raw)
    return load(path, name, raw)


def test_every_cell_is_in_its_row_and_column(tmp_path: Path) -> None:
    rnd = random.Random(7)
    styles = getSampleStyleSheet()
    expected = []
    story: list = []
    for page in range(4):
        rows = 3 + page * 2
        data = [["Region", "Q1 revenue", "Q2 revenue", "Owner"]] + [
            [f"R{page}{i}", f"{rnd.randint(100, 99999):,}", f"{rnd.randint(100, 99999):,}", rnd.choice(WORDS).title()]
            for i in range(rows)]
        data[1][3] = "note with | pipe"
        expected.append(data)
        story += [Paragraph(f"Section {page + 1}", styles["Heading1"]), Paragraph(prose(rnd, 80), styles["Normal"]),
                  grid(data), Paragraph(prose(rnd, 40), styles["Normal"]), PageBreak()]
    doc = load_pdf(tmp_path, build(story))
    assert markdown_tables(doc.text) == expected
    for page, data in enumerate(expected, 1):  # each table on its own page, after its section's heading
        start = doc.text.index(f"| {data[1][0]} |")
        starts = doc.metadata["page_starts"]
        assert max(p for offset, p in starts if offset <= start) == page
        assert doc.text.rindex(f"Section {page}", 0, start) < start


def test_chinese_cells_and_a_table_kept_whole_in_one_chunk(tmp_path: Path) -> None:
    styles = getSampleStyleSheet()
    data = [["地区", "一季度", "负责人"], ["华东", "1,200", "张伟"], ["华南", "980", "李娜"], ["西北", "310", "王芳"]]
    rnd = random.Random(3)
    story = [Paragraph(prose(rnd, 120), styles["Normal"]), grid(data, "STSong-Light"),
             Paragraph(prose(rnd, 120), styles["Normal"])]
    doc = load_pdf(tmp_path, build(story, furniture=False))
    assert markdown_tables(doc.text) == [data]
    chunks = make_splitter("structure", 400, 50).split(doc)
    holding = [c for c in chunks if "华东" in c.text]
    assert len(holding) == 1 and all(cell in holding[0].text for row in data for cell in row)


def test_running_headers_footers_and_page_numbers_are_dropped(tmp_path: Path) -> None:
    rnd = random.Random(11)
    styles = getSampleStyleSheet()
    story: list = []
    for page in range(4):
        story += [Paragraph(f"Chapter {page + 1} findings", styles["Heading1"]), Paragraph(prose(rnd, 200),
                                                                                         styles["Normal"]), PageBreak()]
    doc = load_pdf(tmp_path, build(story))
    assert HEADER not in doc.text
    assert not re.search(r"Page \d of 4", doc.text)
    for page in range(4):  # a heading that differs page to page is the author's, not the layout's
        assert f"Chapter {page + 1} findings" in doc.text
    chunks = with_pages(make_splitter("structure", 500, 50).split(doc), doc)
    assert {c.metadata["page"] for c in chunks} == {1, 2, 3, 4}


@pytest.mark.parametrize("number", ["7", "- 7 -", "Page 7", "page 7 of 12", "第 7 页", "7 / 12", "p. 7"])
def test_page_numbers_in_their_usual_spellings(number: str) -> None:
    pages = [f"Body line {i} of its own.\nMore text {i * 3}.\n{number.replace('7', str(i))}" for i in range(1, 6)]
    assert all(not page.endswith(number.replace("7", str(i))) for i, page in enumerate(drop_furniture(pages), 1))


def test_furniture_needs_most_pages_and_short_lines() -> None:
    short = ["Confidential\nAlpha text here.", "Beta text here.\nConfidential", "Gamma text."]
    assert drop_furniture(short[:2]) == short[:2]  # two pages say nothing about a layout
    assert drop_furniture(short) == short  # 2 of 3 pages: not FURNITURE_MIN_PAGES
    long_line = "This sentence is the author's own and is long enough that no running header would ever say it."
    pages = [f"{long_line}\nPage body {i}." for i in range(5)]
    assert drop_furniture(pages) == pages
    table = [f"| Region | Q1 |\n|---|---|\n| R{i} | {i} |\nText {i}." for i in range(5)]
    assert drop_furniture(table) == table  # a table's header row repeats on purpose


SCANNED = ("Scanned appendix\n"
           "The warranty covers parts and labour for three years from the date of delivery. Claims are filed with the "
           "service desk in building C, which answers within five working days.")


def mixed_pdf() -> bytes:
    """Page 1 with a text layer, page 2 a scanned page: an image and no text, as a scanner writes it."""
    from reportlab.lib.utils import ImageReader

    from bench.ocr_pages import render_page

    out = io.BytesIO()
    canvas = Canvas(out, pagesize=A4)
    canvas.setFont("Helvetica", 12)
    canvas.drawString(72, A4[1] - 72, "Delivery terms: goods ship within ten days of the order.")
    canvas.showPage()
    canvas.drawImage(ImageReader(render_page(SCANNED, dpi=200, lang="en")), 0, 0, width=A4[0], height=A4[1])
    canvas.showPage()
    canvas.save()
    return out.getvalue()


@pytest.mark.slow
def test_a_scanned_page_is_read_by_ocr_in_the_sandbox_with_progress_and_marked(tmp_path: Path) -> None:
    from bench.ocr_pages import fonts_installed

    if not fonts_installed("en"):
        pytest.skip("no DejaVu fonts to print the scanned page with (bench/ocr_pages.py FONTS)")
    path = tmp_path / "contract.pdf"
    path.write_bytes(mixed_pdf())
    heard: list[tuple[int, int]] = []
    worker = ParseWorker(SandboxLimits.of(Settings()))
    try:
        doc = worker.load(path, "contract.pdf", max_bytes=10_000_000, json_text_field="text",
                          limits=LoadLimits(), on_progress=lambda done, total: heard.append((done, total)))
    finally:
        worker.close()
    assert heard == [(1, 1)]  # one page needed OCR, and its progress reached the parent
    assert doc.metadata["pages"] == 2 and doc.metadata["ocr_engine"] == "rapidocr"
    assert list(doc.metadata["ocr_pages"]) == [2] and 0.8 < doc.metadata["ocr_pages"][2] <= 1.0
    assert "ten days of the order" in doc.text
    assert "service desk in building C" in " ".join(doc.text.split())
    chunks = with_pages(make_splitter("structure", 400, 40).split(doc), doc)
    by_page = {c.metadata["page"]: c for c in chunks}
    assert "ocr" not in by_page[1].metadata
    assert by_page[2].metadata["ocr"] is True and by_page[2].metadata["ocr_confidence"] == doc.metadata["ocr_pages"][2]
    assert by_page[2].place_json()["ocr"] is True and "ocr" not in by_page[1].place_json()

    ws = Workspace(Settings(data_dir=tmp_path / "data"))
    try:
        ingestor, _ = Ingestor.open(ws, "contracts")
        (result,) = ingestor.run([path])
        assert result.status == "added"
        (record,) = ws.catalog.documents(ingestor.kb.id)
        assert (record.format, record.pages, record.ocr_pages) == ("pdf", 2, 1)
        hits = Retriever(ws, ws.catalog.get_kb("contracts")).search("how long does the warranty last?", k=1)
        assert hits[0].to_json()["ocr"] is True and hits[0].to_json()["page"] == 2
    finally:
        ws.close()


def test_tables_are_searched_on_at_most_max_table_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the cap a ruled page keeps its text layer (its cells in reading order), and the metadata says how many."""
    from rag_service.ingestion.formats import pdf

    monkeypatch.setattr(pdf, "MAX_TABLE_PAGES", 1)
    styles = getSampleStyleSheet()
    data = [["Region", "Owner"], ["North", "Alvarez"], ["South", "Brennan"]]
    story: list = []
    for page in range(2):
        story += [Paragraph(f"Part {page + 1}", styles["Heading1"]), grid(data), PageBreak()]
    doc = load_pdf(tmp_path, build(story, furniture=False))
    assert markdown_tables(doc.text) == [data]  # the first page's table only
    assert doc.metadata["table_pages_not_searched"] == 1
    second = doc.text[doc.text.index("Part 2"):]
    assert "|" not in second and "Alvarez" in second


@pytest.mark.slow
def test_a_cancelled_job_stops_an_ocr_parse_after_the_page_in_hand(tmp_path: Path) -> None:
    """carry_on is asked at each OCR page: False stops the parse there and the next file gets a fresh parser."""
    from bench.ocr_pages import fonts_installed

    if not fonts_installed("en"):
        pytest.skip("no DejaVu fonts to print the scanned page with (bench/ocr_pages.py FONTS)")
    path, good = tmp_path / "contract.pdf", tmp_path / "good.txt"
    path.write_bytes(mixed_pdf())
    good.write_text("A small good file.", encoding="utf-8")
    asked: list[bool] = []
    worker = ParseWorker(SandboxLimits.of(Settings()))
    try:
        with pytest.raises(IngestCancelledError):
            worker.load(path, "contract.pdf", max_bytes=10_000_000, json_text_field="text", limits=LoadLimits(),
                        carry_on=lambda: asked.append(False) or False)
        assert asked == [False]
        assert worker.load(good, "good.txt", max_bytes=1000, json_text_field="text",
                           limits=LoadLimits()).text == "A small good file."
    finally:
        worker.close()
