"""EPUB, OpenDocument text and e-mail through ``loaders.load``: real files built at test time with each format's own
library (ebooklib, odfpy, the standard library's email), and the hostile variants each refused in one line."""

from __future__ import annotations

import io
import struct
import time
import zipfile
from email.header import Header
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import docx
import pytest
from ebooklib import epub
from odf import dc, teletype
from odf import table as odf_table
from odf import text as odf_text
from odf.opendocument import OpenDocumentText

from rag_service.ingestion.formats.common import LoadLimits
from tests.files import load_error, load_file

ZH = "差旅补贴标准按照出差地区和职级确定。员工在出差前需要提交申请。"



def rezip(raw: bytes, replace: dict[str, bytes]) -> bytes:
    """The archive with some members replaced or added; ``mimetype`` stays first and stored, as OCF requires."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = replace.pop(info.filename, None)
            target.writestr(info, source.read(info) if data is None else data)
        for name, data in replace.items():
            target.writestr(name, data)
    return out.getvalue()


# --- epub -------------------------------------------------------------------------------------------------------

def epub_bytes() -> bytes:
    """Three chapters, added in another order than the spine reads them; one without a heading of its own (its TOC
    title must stand in), one Chinese; plus a cover page that is only an image and the navigation document."""
    book = epub.EpubBook()
    book.set_identifier("book-1")
    book.set_title("Travel Handbook")
    book.set_language("en")
    book.add_author("Jane Roe")
    cover = epub.EpubHtml(title="Cover", file_name="cover.xhtml")
    cover.content = '<div><img src="cover.png" alt="Cover"/></div>'
    first = epub.EpubHtml(title="Getting started", file_name="start.xhtml")
    first.content = "<h1>Getting started</h1><p>Pack light for short trips.</p><h2>Visas</h2><p>Apply early.</p>"
    second = epub.EpubHtml(title="Coming home", file_name="home.xhtml")
    second.content = '<p>Unpack slowly.<a id="end"/></p><p>File the claim within a week.</p>'
    chinese = epub.EpubHtml(title="报销", file_name="zh.xhtml", lang="zh")
    chinese.content = f"<h1>第三章 报销</h1><p>{ZH}</p>"
    for chapter in (chinese, second, first, cover):
        book.add_item(chapter)
    book.toc = (first, second, chinese)
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = [cover, "nav", first, second, chinese]
    out = io.BytesIO()
    epub.write_epub(out, book)
    return out.getvalue()


def test_epub_chapters_in_spine_order_with_headings_and_metadata(tmp_path: Path) -> None:
    doc = load_file(tmp_path, "handbook.epub", epub_bytes())
    assert doc.text == ("# Getting started\n\nPack light for short trips.\n\n## Visas\n\nApply early.\n\n"
                        "# Coming home\n\nUnpack slowly.\n\nFile the claim within a week.\n\n"
                        f"# 第三章 报销\n\n{ZH}")
    assert doc.metadata == {"format": "epub", "title": "Travel Handbook", "author": "Jane Roe", "chapters": 3}


def test_epub_detected_by_content_without_suffix(tmp_path: Path) -> None:
    doc = load_file(tmp_path, "handbook.bin", epub_bytes())
    assert doc.metadata["format"] == "epub"
    assert doc.text.startswith("# Getting started\n\n")


def test_epub_xhtml_with_html_entities_still_read(tmp_path: Path) -> None:
    """&nbsp; is not XML without the DTD: such a chapter goes to the HTML parser instead of failing the book."""
    chapter = (b'<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml"><head><title>x'
               b"</title></head><body><h1>Back&nbsp;again</h1><p>Unpack&nbsp;slowly.</p></body></html>")
    doc = load_file(tmp_path, "handbook.epub", rezip(epub_bytes(), {"EPUB/home.xhtml": chapter}))
    assert "\n\n# Back again\n\nUnpack slowly.\n\n# 第三章 报销\n\n" in doc.text


def test_epub_broken_navigation_falls_back_to_ncx_titles(tmp_path: Path) -> None:
    """The EPUB 2 NCX still names the chapter that has no heading of its own when the EPUB 3 nav does not parse."""
    doc = load_file(tmp_path, "handbook.epub", rezip(epub_bytes(), {"EPUB/nav.xhtml": b"<html><unclosed>"}))
    assert "\n\n# Coming home\n\nUnpack slowly.\n\n" in doc.text
    assert doc.metadata["chapters"] == 3


def test_epub_drm_refused_but_font_obfuscation_is_not_drm(tmp_path: Path) -> None:
    def encryption(algorithm: str, uri: str) -> bytes:
        return (f'<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
                f'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData>'
                f'<enc:EncryptionMethod Algorithm="{algorithm}"/><enc:CipherData>'
                f'<enc:CipherReference URI="{uri}"/></enc:CipherData></enc:EncryptedData></encryption>').encode()

    drm = rezip(epub_bytes(), {"META-INF/encryption.xml": encryption(
        "http://www.w3.org/2001/04/xmlenc#aes128-cbc", "EPUB/start.xhtml")})
    assert load_error(tmp_path, "locked.epub", drm) == "locked.epub: the EPUB is DRM-protected"
    fonts = rezip(epub_bytes(), {"META-INF/encryption.xml": encryption(
        "http://www.idpf.org/2008/embedding", "EPUB/fonts/serif.otf")})
    assert load_file(tmp_path, "fonts.epub", fonts).metadata["chapters"] == 3


def test_epub_nesting_bomb_refused(tmp_path: Path) -> None:
    chapter = (b'<html xmlns="http://www.w3.org/1999/xhtml"><body>' + b"<div>" * 10_000 + b"deep"
               + b"</div>" * 10_000 + b"</body></html>")
    message = load_error(tmp_path, "deep.epub", rezip(epub_bytes(), {"EPUB/home.xhtml": chapter}))
    assert message == "deep.epub: the EPUB's XML is nested more than 256 levels deep"


def test_epub_parts_limit(tmp_path: Path) -> None:
    message = load_error(tmp_path, "long.epub", epub_bytes(), limits=LoadLimits(pdf_pages=4))
    assert message == "long.epub: 5 parts is over the 4-part limit (max_pdf_pages)"


def test_epub_without_package_document_refused(tmp_path: Path) -> None:
    raw = rezip(epub_bytes(), {"EPUB/content.opf": b"<package><unclosed></package>"})
    assert load_error(tmp_path, "broken.epub", raw).startswith("broken.epub: not a valid EPUB (")


# --- odt --------------------------------------------------------------------------------------------------------

def odt_bytes() -> bytes:
    doc = OpenDocumentText()
    doc.meta.addElement(dc.Title(text="Expense rules"))
    doc.text.addElement(odf_text.H(outlinelevel=1, text="Travel"))
    paragraph = odf_text.P(text="Claims are")
    paragraph.addElement(odf_text.S(c=2))
    paragraph.addText("due")
    paragraph.addElement(odf_text.Tab())
    paragraph.addText("monthly.")
    paragraph.addElement(odf_text.LineBreak())
    paragraph.addElement(odf_text.Span(text="Late claims need approval."))
    note = odf_text.Note(noteclass="footnote")
    note.addElement(odf_text.NoteCitation(text="1"))
    body = odf_text.NoteBody()
    body.addElement(odf_text.P(text="Approval by the head of department."))
    note.addElement(body)
    paragraph.addElement(note)
    doc.text.addElement(paragraph)
    doc.text.addElement(odf_text.H(outlinelevel=2, text="Meals"))
    items = odf_text.List()
    for label in ("Breakfast", "Lunch"):
        item = odf_text.ListItem()
        item.addElement(odf_text.P(text=label))
        items.addElement(item)
    sub = odf_text.List()
    sub_item = odf_text.ListItem()
    sub_item.addElement(odf_text.P(text="Only on travel days"))
    sub.addElement(sub_item)
    item.addElement(sub)
    doc.text.addElement(items)
    doc.text.addElement(odf_text.H(outlinelevel=3, text="每日上限"))
    table = odf_table.Table(name="Caps")
    table.addElement(odf_table.TableColumn(numbercolumnsrepeated=3))
    for row in (("City", "Cap", "Note"), ("Paris", "50 EUR", ""), ("北京", "300 元", "含早餐")):
        table_row = odf_table.TableRow()
        for value in row:
            cell = odf_table.TableCell()
            if value:
                cell.addElement(odf_text.P(text=value))
            table_row.addElement(cell)
        table.addElement(table_row)
    doc.text.addElement(table)
    last = odf_text.P()
    teletype.addTextToElement(last, ZH)
    doc.text.addElement(last)
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def test_odt_headings_lists_tables_and_chinese(tmp_path: Path) -> None:
    doc = load_file(tmp_path, "rules.odt", odt_bytes())
    assert doc.text == (
        "# Travel\n\n"
        "Claims are  due\tmonthly.\nLate claims need approval.\n\n"
        "[1] Approval by the head of department.\n\n"
        "## Meals\n\n- Breakfast\n- Lunch\n  - Only on travel days\n\n"
        "### 每日上限\n\n"
        "| City | Cap | Note |\n|---|---|---|\n| Paris | 50 EUR |  |\n| 北京 | 300 元 | 含早餐 |\n\n"
        f"{ZH}")
    assert doc.metadata == {"format": "odt", "title": "Expense rules"}


def odt_with_content(body: str) -> bytes:
    """A minimal ODT package around a hand-written office:text body (hostile shapes odfpy would take long to build)."""
    content = (
        '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"><office:body><office:text>'
        f"{body}</office:text></office:body></office:document-content>")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.text")
        archive.writestr("content.xml", content)
    return out.getvalue()


def test_odt_nesting_bomb_refused(tmp_path: Path) -> None:
    body = "<text:p>" + "<text:span>" * 10_000 + "deep" + "</text:span>" * 10_000 + "</text:p>"
    message = load_error(tmp_path, "deep.odt", odt_with_content(body))
    assert message == "deep.odt: the OpenDocument XML is nested more than 256 levels deep"


def test_odt_repeated_cells_expanded_only_where_they_hold_text(tmp_path: Path) -> None:
    """A billion repeated empty columns after the last value cost nothing; a billion repeated values are refused."""
    row = ('<table:table-row><table:table-cell><text:p>Paris</text:p></table:table-cell>'
           '<table:table-cell table:number-columns-repeated="1000000000"/></table:table-row>')
    start = time.monotonic()
    doc = load_file(tmp_path, "wide.odt", odt_with_content(f"<table:table>{row}{row}</table:table>"))
    assert doc.text == "| Paris |\n|---|\n| Paris |"
    assert time.monotonic() - start < 2
    bomb = ('<table:table><table:table-row><table:table-cell table:number-columns-repeated="1000000000">'
            "<text:p>x</text:p></table:table-cell></table:table-row></table:table>")
    assert load_error(tmp_path, "bomb.odt", odt_with_content(bomb)) == \
        "bomb.odt: more than 1,000,000 table cells (max_sheet_cells)"
    spaces = load_file(tmp_path, "spaces.odt", odt_with_content('<text:p>a<text:s text:c="1000000000"/>b</text:p>'))
    assert spaces.text == "a" + " " * 100 + "b"


def test_odt_password_protected_refused(tmp_path: Path) -> None:
    manifest = (b'<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
                b'<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml">'
                b'<manifest:encryption-data manifest:checksum-type="SHA1/1K" manifest:checksum="x"/>'
                b"</manifest:file-entry></manifest:manifest>")
    raw = rezip(odt_bytes(), {"META-INF/manifest.xml": manifest, "content.xml": b"\x8f\x01 encrypted bytes"})
    assert load_error(tmp_path, "secret.odt", raw) == "secret.odt: the OpenDocument text is password-protected"


# --- eml --------------------------------------------------------------------------------------------------------

def mail(subject: str = "Quarterly report") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "张三 <zhang@example.com>"
    message["To"] = "a@example.com, b@example.com"
    message["Cc"] = "c@example.com"
    message["Date"] = "Mon, 01 Jan 2024 10:00:00 +0000"
    message["Subject"] = subject
    message["Message-ID"] = "<r1@example.com>"
    return message


HEADER_BLOCK = ("From: 张三 <zhang@example.com>\nTo: a@example.com, b@example.com\nCc: c@example.com\n"
                "Date: Mon, 01 Jan 2024 10:00:00 +0000\nSubject: Quarterly report")
MAIL_META = {"from": "张三 <zhang@example.com>", "to": "a@example.com, b@example.com", "cc": "c@example.com",
             "date": "Mon, 01 Jan 2024 10:00:00 +0000", "subject": "Quarterly report",
             "message_id": "<r1@example.com>"}


def test_eml_plain(tmp_path: Path) -> None:
    message = mail()
    message.set_content("Sales rose 5%.\n\nCosts fell.")
    doc = load_file(tmp_path, "report.eml", message.as_bytes())
    assert doc.text == f"{HEADER_BLOCK}\n\nSales rose 5%.\n\nCosts fell."
    assert doc.metadata == {"format": "eml", "mail": MAIL_META}


def test_eml_html_only_rendered(tmp_path: Path) -> None:
    message = mail()
    message.set_content("<html><body><h2>Summary</h2><p>Sales <b>rose</b>.</p><ul><li>East</li></ul></body></html>",
                        subtype="html")
    doc = load_file(tmp_path, "report.eml", message.as_bytes())
    assert doc.text == f"{HEADER_BLOCK}\n\n## Summary\n\nSales rose.\n\n- East"


def test_eml_alternative_reads_the_plain_version_once(tmp_path: Path) -> None:
    message = mail()
    message.set_content("Plain version.")
    message.add_alternative("<p>HTML version.</p>", subtype="html")
    doc = load_file(tmp_path, "report.eml", message.as_bytes())
    assert doc.text == f"{HEADER_BLOCK}\n\nPlain version."
    empty_plain = mail()
    empty_plain.set_content(" \n")
    empty_plain.add_alternative("<p>HTML version.</p>", subtype="html")
    assert load_file(tmp_path, "r2.eml", empty_plain.as_bytes()).text == f"{HEADER_BLOCK}\n\nHTML version."


def test_eml_gbk_subject_and_body(tmp_path: Path) -> None:
    """A GBK body labelled gb2312 (what many Chinese mailers send) and an RFC 2047 GBK subject."""
    message = EmailMessage()
    message["From"] = "a@example.com"
    message.set_content(ZH + "（褚）", charset="gbk")  # 褚 is in GBK, not in GB2312
    body = message.as_bytes().replace(b'charset="gbk"', b'charset="gb2312"')
    raw = b"Subject: " + Header("差旅补贴 通知", "gbk").encode().encode() + b"\n" + body
    doc = load_file(tmp_path, "zh.eml", raw)
    assert doc.text == f"From: a@example.com\nSubject: 差旅补贴 通知\n\n{ZH}（褚）"
    assert doc.metadata["mail"]["subject"] == "差旅补贴 通知"


def test_eml_unknown_and_wrong_charsets_never_raise(tmp_path: Path) -> None:
    raw = (b"From: a@example.com\nSubject: =?x-unknown?Q?caf=E9?=\nMIME-Version: 1.0\n"
           b'Content-Type: text/plain; charset="x-unknown"\nContent-Transfer-Encoding: 8bit\n\n') \
        + "Café naïve – ok.".encode()
    doc = load_file(tmp_path, "odd.eml", raw)
    assert doc.text.endswith("\n\nCafé naïve – ok.")
    assert doc.metadata["mail"]["subject"] == "café"
    ascii_label = raw.replace(b"x-unknown", b"us-ascii")
    assert load_file(tmp_path, "ascii.eml", ascii_label).text.endswith("\n\nCafé naïve – ok.")


def docx_bytes() -> bytes:
    document = docx.Document()
    document.add_heading("Budget", level=1)
    document.add_paragraph("Travel budget is 10,000 EUR.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_eml_attachments_ingested_or_refused_one_by_one(tmp_path: Path) -> None:
    message = mail()
    message.set_content("See the attached files.")
    message.add_attachment(b"city,cap\nParis,50 EUR\n", maintype="text", subtype="csv", filename="caps.csv")
    message.add_attachment(docx_bytes(), maintype="application", filename="budget.docx",
                           subtype="vnd.openxmlformats-officedocument.wordprocessingml.document")
    message.add_attachment(b"\x00\x01\x02junk" * 50, maintype="application", subtype="pdf", filename="scan.pdf")
    doc = load_file(tmp_path, "report.eml", message.as_bytes())
    assert doc.text == (f"{HEADER_BLOCK}\n\nSee the attached files.\n\n"
                        "# Attachment: caps.csv\n\ncity: Paris\ncap: 50 EUR\n\n"
                        "# Attachment: budget.docx\n\n## Budget\n\nTravel budget is 10,000 EUR.")
    assert doc.metadata["attachments"] == [
        {"name": "caps.csv", "status": "ingested"},
        {"name": "budget.docx", "status": "ingested"},
        {"name": "scan.pdf", "status": "refused", "reason": "not a valid PDF (no %PDF- header)"},
    ]


def test_eml_attached_mail_read_but_its_attachments_not_opened(tmp_path: Path) -> None:
    inner = EmailMessage()
    inner["From"] = "b@example.com"
    inner["Subject"] = "Original"
    inner.set_content("The forwarded text.")
    inner.add_attachment(b"a,b\n1,2\n", maintype="text", subtype="csv", filename="inner.csv")
    message = mail()
    message.set_content("Forwarding.")
    message.add_attachment(inner, filename="original.eml")
    doc = load_file(tmp_path, "fwd.eml", message.as_bytes())
    assert doc.text == (f"{HEADER_BLOCK}\n\nForwarding.\n\n# Attachment: original.eml\n\n"
                        "From: b@example.com\nSubject: Original\n\nThe forwarded text.")
    assert doc.metadata["attachments"] == [{"name": "original.eml", "status": "ingested"}]


def multipart_bomb(depth: int) -> bytes:
    head = b"From: a@example.com\nSubject: bomb\nMIME-Version: 1.0\n"
    opening = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(depth))
    closing = b"".join(b"--b%d--\n" % i for i in reversed(range(depth)))
    return head + opening + b"Content-Type: text/plain\n\nhello\n" + closing


def test_eml_multipart_bombs_refused_in_one_line(tmp_path: Path) -> None:
    start = time.monotonic()
    assert load_error(tmp_path, "bomb.eml", multipart_bomb(10_000)) == \
        "bomb.eml: 10,001 MIME parts is over the 1,000-part limit"
    assert load_error(tmp_path, "deep.eml", multipart_bomb(200)) == \
        "deep.eml: the mail's MIME parts are nested more than 50 levels deep"
    rfc2231 = multipart_bomb(10_000).replace(b'boundary="', b"boundary*=us-ascii'en'").replace(b'"\n\n--b', b"\n\n--b")
    assert load_error(tmp_path, "bomb2.eml", rfc2231) == "bomb2.eml: 10,001 MIME parts is over the 1,000-part limit"
    chain = b"From: a@example.com\nSubject: chain\n" + b"Content-Type: message/rfc822\n\n" * 900 + b"hello\n"
    assert load_error(tmp_path, "chain.eml", chain) == \
        "chain.eml: the mail's MIME parts are nested more than 50 levels deep"
    # 998 message/* parts pass the part count; the parser's own recursion gives out first
    chain = b"From: a@example.com\nSubject: chain\n" + b"Content-Type: message/rfc822\n\n" * 998 + b"hello\n"
    assert load_error(tmp_path, "chain2.eml", chain) == "chain2.eml: the mail's MIME parts are nested too deeply"
    flat = (b'From: a@example.com\nSubject: flat\nContent-Type: multipart/mixed; boundary="B"\n\n'
            + b"--B\nContent-Type: text/plain\n\nhi\n" * 5000 + b"--B--\n")
    assert load_error(tmp_path, "flat.eml", flat) == "flat.eml: 5,001 MIME parts is over the 1,000-part limit"
    assert time.monotonic() - start < 5


def test_eml_detected_by_headers_without_suffix(tmp_path: Path) -> None:
    message = mail()
    message.set_content("Sales rose 5%.")
    doc = load_file(tmp_path, "report", message.as_bytes())
    assert doc.metadata["format"] == "eml"
    assert doc.text == f"{HEADER_BLOCK}\n\nSales rose 5%."


# --- msg (Outlook) ----------------------------------------------------------------------------------------------

def cfb_bytes(streams: dict[str, bytes]) -> bytes:
    """A minimal OLE2 compound file (version 3, every stream under 4 KB so all live in the mini stream) holding
    ``streams`` by path ('storage/stream', one level of storages). olefile reads but cannot write these, and no
    MIT-licensed .msg writer exists, so the test lays out the sectors itself (MS-CFB 2.2-2.6)."""
    end, free, fat_sect, nostream = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF
    storages = sorted({path.split("/")[0] for path in streams if "/" in path})
    entries: list[dict[str, Any]] = [{"name": "Root Entry", "type": 5, "kids": []}]
    index = {"": 0}
    for storage in storages:
        index[storage] = len(entries)
        entries.append({"name": storage, "type": 1, "kids": []})
        entries[0]["kids"].append(index[storage])
    mini = bytearray()
    mini_fat: list[int] = []
    for path, data in streams.items():
        parent, _, name = path.rpartition("/")
        start = len(mini) // 64
        count = max(1, -(-len(data) // 64))
        mini_fat.extend([*range(start + 1, start + count), end])
        mini += data.ljust(count * 64, b"\0")
        entries[index[parent]]["kids"].append(len(entries))
        entries.append({"name": name, "type": 2, "kids": [], "start": start, "size": len(data)})
    for entry in entries:  # siblings as a chain of right links, the parent pointing at the first
        kids = entry.pop("kids")
        entry["child"] = kids[0] if kids else nostream
        for a, b in zip(kids, [*kids[1:], nostream], strict=False):
            entries[a]["right"] = b
    dir_sectors = -(-len(entries) // 4)
    mini_fat_sectors = -(-len(mini_fat) // 128)
    mini_sectors = -(-len(mini) // 512)
    first_dir, first_mini_fat, first_mini = 1, 1 + dir_sectors, 1 + dir_sectors + mini_fat_sectors
    entries[0].update(start=first_mini, size=len(mini))
    fat = [fat_sect]
    for first, count in ((first_dir, dir_sectors), (first_mini_fat, mini_fat_sectors), (first_mini, mini_sectors)):
        fat.extend([*range(first + 1, first + count), end])
    directory = bytearray()
    for entry in entries:
        name = entry["name"].encode("utf-16-le") + b"\0\0"
        directory += struct.pack("<64sHBBIII16sIQQII", name, len(name), entry["type"], 1, nostream,
                                 entry.get("right", nostream), entry["child"], b"", 0, 0, 0,
                                 entry.get("start", end), entry.get("size", 0)) + b"\0" * 4
    header = struct.pack("<8s16sHHHHH6sIIIIIIIII", bytes.fromhex("d0cf11e0a1b11ae1"), b"", 0x3E, 3, 0xFFFE, 9, 6,
                         b"", 0, 1, first_dir, 0, 4096, first_mini_fat if mini_fat else end, mini_fat_sectors, end, 0)
    header += struct.pack("<109I", 0, *[free] * 108)
    body = b"".join([
        struct.pack(f"<{len(fat)}I", *fat).ljust(512, b"\xff"),
        bytes(directory).ljust(dir_sectors * 512, b"\0"),
        struct.pack(f"<{len(mini_fat)}I", *mini_fat).ljust(mini_fat_sectors * 512, b"\xff"),
        bytes(mini).ljust(mini_sectors * 512, b"\0"),
    ])
    return header + body


def utf16(text: str) -> bytes:
    return text.encode("utf-16-le")


def msg_bytes() -> bytes:
    return cfb_bytes({
        "__properties_version1.0": bytes(32),
        "__substg1.0_0037001F": utf16("季度报告 Quarterly report"),
        "__substg1.0_0C1A001F": utf16("张三"),
        "__substg1.0_5D01001F": utf16("zhang@example.com"),
        "__substg1.0_0E04001F": utf16("Li Si; Wang Wu"),
        "__substg1.0_1000001F": utf16(f"Sales rose 5%.\r\n\r\n{ZH}"),
        "__substg1.0_007D001F": utf16("Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <m1@example.com>\r\n"),
        "__attach_version1.0_#00000000/__substg1.0_3707001F": utf16("caps.csv"),
        "__attach_version1.0_#00000000/__substg1.0_37010102": b"city,cap\nParis,50 EUR\n",
    })


@pytest.mark.parametrize("name", ["report.msg", "saved-mail.bin"], ids=["suffix", "by-content"])
def test_msg_properties_body_and_attachment(tmp_path: Path, name: str) -> None:
    doc = load_file(tmp_path, name, msg_bytes())
    assert doc.metadata.pop("format") == "msg"
    assert doc.text == ("From: 张三 <zhang@example.com>\nTo: Li Si; Wang Wu\nDate: Mon, 01 Jan 2024 10:00:00 +0000\n"
                        f"Subject: 季度报告 Quarterly report\n\nSales rose 5%.\n\n{ZH}\n\n"
                        "# Attachment: caps.csv\n\ncity: Paris\ncap: 50 EUR")
    assert doc.metadata == {
        "mail": {"from": "张三 <zhang@example.com>", "to": "Li Si; Wang Wu", "cc": "",
                 "date": "Mon, 01 Jan 2024 10:00:00 +0000", "subject": "季度报告 Quarterly report",
                 "message_id": "<m1@example.com>"},
        "attachments": [{"name": "caps.csv", "status": "ingested"}],
    }


@pytest.mark.parametrize("raw", [
    bytes.fromhex("d0cf11e0a1b11ae1") + b"\0" * 100,  # an OLE2 signature, then nothing (shorter than a path)
    msg_bytes()[:1024],  # cut inside the directory
    cfb_bytes({"WordDocument": b"not mail"}),  # a valid compound file that is not a message
], ids=["header-only", "truncated", "not-a-message"])
def test_msg_broken_refused_in_one_line(tmp_path: Path, raw: bytes) -> None:
    assert load_error(tmp_path, "broken.msg", raw).startswith("broken.msg: not ")
