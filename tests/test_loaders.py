"""Loaders on real tiny files written to tmp_path: every format, every encoding, every bad input a user can cause."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import docx
import pypdf
import pytest
from fpdf import FPDF

from rag_service.errors import InvalidInputError
from rag_service.ingestion import loaders
from rag_service.ingestion.loaders import load, read_bytes
from tests.files import load_error, load_file

ZH_SIMPLIFIED = "差旅补贴标准按照出差地区和职级确定。员工在出差前需要提交申请，经部门负责人批准后方可报销。"
ZH_TRADITIONAL = "差旅補貼標準按照出差地區和職級確定。員工在出差前需要提交申請，經部門負責人批准後方可報銷。"
PAGE_ONE = "First page about travel allowances."
PAGE_TWO = "Second page covers meal allowances."



def pdf_bytes(*pages: str) -> bytes:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def encrypted_pdf(user_password: str) -> bytes:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(pdf_bytes(PAGE_ONE))))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx_bytes() -> bytes:
    document = docx.Document()
    document.add_heading("Travel policy", level=1)
    document.add_paragraph("Staff may claim meals.")
    document.add_heading("Limits", level=2)
    table = document.add_table(rows=2, cols=2)
    for (row, col), text in {(0, 0): "City", (0, 1): "Cap", (1, 0): "Paris", (1, 1): "50 EUR"}.items():
        table.cell(row, col).text = text
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def zip_with_zeros(path: Path, megabytes: int) -> None:
    """A DOCX-shaped zip bomb: streamed, so neither memory nor the file on disk grows with the payload."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("word/document.xml", "<w:document/>")
        with archive.open("word/media/zeros.bin", "w", force_zip64=True) as member:
            chunk = bytes(1 << 20)
            for _ in range(megabytes):
                member.write(chunk)


# --- text encodings ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "encoding", "expected"), [
    ("Café – naïve.\r\nSecond line.   \n\n\n\nLast.".encode(), "utf-8", "Café – naïve.\nSecond line.\n\nLast."),
    (("\ufeff" + ZH_SIMPLIFIED).encode(), "utf-8-sig", ZH_SIMPLIFIED),
    (ZH_SIMPLIFIED.encode("utf-16"), "utf-16", ZH_SIMPLIFIED),
    (ZH_SIMPLIFIED.encode("gbk"), "gb18030", ZH_SIMPLIFIED),
    (ZH_TRADITIONAL.encode("big5"), "big5", ZH_TRADITIONAL),
], ids=["utf-8", "utf-8-bom", "utf-16", "gbk", "big5"])
def test_txt_encodings(tmp_path: Path, raw: bytes, encoding: str, expected: str) -> None:
    doc = load_file(tmp_path, "notes.txt", raw)
    assert doc.text == expected
    assert doc.metadata == {"format": "txt", "encoding": encoding}
    assert doc.sha256 == hashlib.sha256(raw).hexdigest()
    assert doc.id == doc.sha256[:16]
    assert doc.source == "notes.txt"


def test_markdown_kept_as_written(tmp_path: Path) -> None:
    doc = load_file(tmp_path, "guide.md", b"# Title\n\nIntro.\n\n## Part\n\n    code stays indented\n")
    assert doc.text == "# Title\n\nIntro.\n\n## Part\n\n    code stays indented"
    assert doc.metadata == {"format": "md", "encoding": "utf-8"}


# --- html -------------------------------------------------------------------------------------------------------

def test_html_drops_page_chrome_and_renders_headings(tmp_path: Path) -> None:
    html = """<!DOCTYPE html><html><head><title> Travel  policy </title><style>p { color: red }</style></head>
    <body><header>Site banner</header><nav><ul><li>Home</li></ul></nav><script>var tracking = 1;</script>
    <h1>Travel   policy</h1><p>Staff may claim
      <b>meals</b> and taxis.</p><h2>Limits</h2><ul><li>Paris</li><li>Rome</li></ul>
    <p>差旅补贴</p><noscript>Enable JavaScript</noscript><footer>Copyright</footer></body></html>"""
    doc = load_file(tmp_path, "policy.html", html.encode())
    assert doc.text == ("# Travel policy\n\nStaff may claim meals and taxis.\n\n## Limits\n\n- Paris\n- Rome\n\n"
                        "差旅补贴")
    assert doc.metadata == {"format": "html", "title": "Travel policy", "encoding": "utf-8"}


def test_html_sniffed_without_extension(tmp_path: Path) -> None:
    doc = load_file(tmp_path, "page", b"<!doctype html><html><body><h3>Deep</h3><p>Text</p></body></html>")
    assert doc.metadata["format"] == "html"
    assert doc.text == "### Deep\n\nText"


# --- pdf --------------------------------------------------------------------------------------------------------

def test_pdf_pages_and_page_starts(tmp_path: Path) -> None:
    doc = load_file(tmp_path, "report.pdf", pdf_bytes(PAGE_ONE, PAGE_TWO))
    assert doc.metadata["format"] == "pdf"
    assert doc.metadata["pages"] == 2
    starts = doc.metadata["page_starts"]
    assert starts == [[0, 1], [doc.text.index(PAGE_TWO), 2]]
    assert doc.text == f"{PAGE_ONE}\n\n{PAGE_TWO}"


def test_pdf_empty_page_skipped_but_numbering_kept(tmp_path: Path) -> None:
    doc = load_file(tmp_path, "gap.pdf", pdf_bytes(PAGE_ONE, "", PAGE_TWO))
    assert doc.metadata["page_starts"] == [[0, 1], [len(PAGE_ONE) + 2, 3]]


def test_pdf_named_txt_is_loaded_as_pdf(tmp_path: Path) -> None:
    doc = load_file(tmp_path, "report.txt", pdf_bytes(PAGE_ONE))
    assert doc.metadata["format"] == "pdf"
    assert doc.text == PAGE_ONE


def test_pdf_with_empty_user_password_loads(tmp_path: Path) -> None:
    doc = load_file(tmp_path, "open.pdf", encrypted_pdf(""))
    assert doc.text == PAGE_ONE


def test_encrypted_pdf(tmp_path: Path) -> None:
    assert load_error(tmp_path, "secret.pdf", encrypted_pdf("s3cret")) == "secret.pdf: the PDF is encrypted"


def test_corrupt_pdf(tmp_path: Path) -> None:
    raw = pdf_bytes(PAGE_ONE)
    assert "not a valid PDF (" in load_error(tmp_path, "broken.pdf", raw[: len(raw) // 2])


def test_pdf_without_text(tmp_path: Path) -> None:
    pdf = FPDF()
    pdf.add_page()
    pdf.rect(10, 10, 50, 50)
    message = load_error(tmp_path, "scan.pdf", bytes(pdf.output()))
    assert message == "scan.pdf: no extractable text (no text layer and no page image)"


def test_junk_named_pdf(tmp_path: Path) -> None:
    assert load_error(tmp_path, "fake.pdf", bytes(range(256)) * 4) == "fake.pdf: not a valid PDF (no %PDF- header)"


def test_junk_named_txt(tmp_path: Path) -> None:
    assert load_error(tmp_path, "fake.txt", bytes(range(256)) * 4) == "fake.txt: looks binary, not text"


# --- docx -------------------------------------------------------------------------------------------------------

def test_docx_headings_paragraphs_and_table(tmp_path: Path) -> None:
    doc = load_file(tmp_path, "policy.docx", docx_bytes())
    assert doc.text == "# Travel policy\n\nStaff may claim meals.\n\n## Limits\n\nCity | Cap\nParis | 50 EUR"
    assert doc.metadata == {"format": "docx"}


def test_corrupt_docx(tmp_path: Path) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("word/document.xml", "this is not xml")
    assert "not a valid DOCX (" in load_error(tmp_path, "broken.docx", out.getvalue())


def test_docx_zip_bomb_total_size(tmp_path: Path) -> None:
    path = tmp_path / "bomb.docx"
    zip_with_zeros(path, 300)
    assert path.stat().st_size < 5_000_000
    message = load_error(tmp_path, "bomb.docx", path.read_bytes())
    assert message == "bomb.docx: refusing a DOCX that decompresses to 300 MB (limit 100 MB, max_document_expansion_mb)"


def test_docx_zip_bomb_ratio(tmp_path: Path) -> None:
    path = tmp_path / "ratio.docx"
    zip_with_zeros(path, 20)
    message = load_error(tmp_path, "ratio.docx", path.read_bytes())
    assert message.startswith("ratio.docx: refusing a DOCX whose member word/media/zeros.bin expands ")


def test_docx_cap_is_the_limit_given(tmp_path: Path) -> None:
    path = tmp_path / "big.docx"
    path.write_bytes(docx_bytes())
    with pytest.raises(InvalidInputError) as info:
        load(path, "big.docx", path.read_bytes(), limits=loaders.LoadLimits(expanded_bytes=1024))
    message = str(info.value)
    assert message.startswith("big.docx: refusing a DOCX that decompresses to ")
    assert message.endswith("(limit 1 KB, max_document_expansion_mb)")


# --- csv --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("delimiter", [",", ";", "\t"], ids=["comma", "semicolon", "tab"])
def test_csv_rows_become_records_with_header(tmp_path: Path, delimiter: str) -> None:
    rows = [["city", "cap", "note"], ["Paris", "50", "meals, taxis"], ["Rome", "", "none"], ["", "", ""]]
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter).writerows(rows)
    doc = load_file(tmp_path, "caps.csv", out.getvalue().encode())
    assert doc.text == "city: Paris\ncap: 50\nnote: meals, taxis\n\ncity: Rome\nnote: none"
    assert doc.metadata == {"format": "csv", "records": 2, "delimiter": delimiter, "encoding": "utf-8"}


def test_csv_header_only(tmp_path: Path) -> None:
    assert load_error(tmp_path, "empty.csv", b"city,cap\n") == "empty.csv: only a header row, no data rows"


# --- json -------------------------------------------------------------------------------------------------------

def test_json_array(tmp_path: Path) -> None:
    records = [{"id": 1, "text": "First record."}, {"id": 2, "text": "第二条记录。"}, {"id": 3}]
    doc = load_file(tmp_path, "faq.json", json.dumps(records, ensure_ascii=False).encode())
    assert doc.text == "First record.\n\n第二条记录。"
    assert doc.metadata == {"format": "json", "records": 2, "encoding": "utf-8"}


def test_json_single_object(tmp_path: Path) -> None:
    doc = load_file(tmp_path, "one.json", b'{"text": "Only one."}')
    assert (doc.text, doc.metadata["records"]) == ("Only one.", 1)


def test_jsonl(tmp_path: Path) -> None:
    doc = load_file(tmp_path, "faq.jsonl", b'{"text": "one"}\n\n{"text": "two"}\n{"text": "three"}\n')
    assert doc.text == "one\n\ntwo\n\nthree"
    assert doc.metadata["records"] == 3


def test_json_custom_text_field(tmp_path: Path) -> None:
    raw = b'[{"question": "Q1", "answer": "A1"}, {"question": "Q2", "answer": "A2"}]'
    doc = load_file(tmp_path, "qa.json", raw, json_text_field="answer")
    assert doc.text == "A1\n\nA2"


def test_json_sniffed_without_extension(tmp_path: Path) -> None:
    doc = load_file(tmp_path, "export", b'[{"text": "sniffed"}]')
    assert (doc.text, doc.metadata["format"]) == ("sniffed", "json")


def test_json_missing_text_field(tmp_path: Path) -> None:
    message = load_error(tmp_path, "qa.json", b'[{"question": "Q1", "answer": "A1"}, {"tags": []}]')
    assert message == "qa.json: no record has a non-empty 'text' field (keys found: question, answer, tags)"


def test_invalid_json(tmp_path: Path) -> None:
    message = load_error(tmp_path, "bad.json", b'{"text": ')
    assert message == "bad.json: not valid JSON (Expecting value at line 1, column 10)"


def test_invalid_jsonl_line(tmp_path: Path) -> None:
    message = load_error(tmp_path, "bad.jsonl", b'{"text": "ok"}\n{"text": oops}\n')
    assert message.startswith("bad.jsonl: line 2 is not valid JSON (")


# --- unsupported, empty, oversized ------------------------------------------------------------------------------

def zip_without_docx() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("readme.txt", "hello")
    return out.getvalue()


@pytest.mark.parametrize(("name", "raw", "what"), [
    ("archive.docx", zip_without_docx(), "a ZIP archive, not a DOCX"),
    ("old.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64), "a legacy Word .doc document; save it as .docx"),
    ("blob.bin", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64), "a legacy or password-protected Office file"),
    ("pack.gz", b"\x1f\x8b\x08" + bytes(64), "a gzip archive"),
], ids=["zip", "doc", "ole2", "gzip"])
def test_unsupported_binary_formats(tmp_path: Path, name: str, raw: bytes, what: str) -> None:
    assert load_error(tmp_path, name, raw).startswith(f"{name}: unsupported file type ({what}")


@pytest.mark.parametrize("raw", [b"", b" \n\t\r\n", "\ufeff  \n".encode()], ids=["empty", "blank", "bom-only"])
def test_file_without_text(tmp_path: Path, raw: bytes) -> None:
    assert load_error(tmp_path, "empty.txt", raw) == "empty.txt: no text in the file"


def test_read_bytes_over_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(b"x" * 101)
    with pytest.raises(InvalidInputError) as info:
        read_bytes(path, 100)
    assert str(info.value) == f"{path}: 101 bytes is over the 100-byte limit"
    assert read_bytes(path, 101) == b"x" * 101


def test_read_bytes_unreadable(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as info:
        read_bytes(tmp_path / "missing.txt", 100)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'missing.txt'}: cannot read (")
    assert "\n" not in message


def test_the_console_file_picker_accepts_every_format() -> None:
    """The upload's accept list is written out in the page (no build step); it must name every registered suffix."""
    page = (Path(loaders.__file__).parent.parent / "console" / "static" / "index.html").read_text(encoding="utf-8")
    accept = re.search(r'id="docs-files"[^>]*accept="([^"]+)"', page)
    assert accept is not None
    assert set(accept.group(1).split(",")) == {"image/*", *loaders.SUFFIXES}
