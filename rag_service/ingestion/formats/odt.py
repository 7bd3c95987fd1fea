"""OpenDocument text (.odt): headings by outline level as Markdown '#' lines, paragraphs, '- ' list items, tables as
Markdown tables, footnotes after their paragraph.

content.xml is read with the standard library's expat parser (``epub.parse_xml``: a depth limit, no external
entities, no entity amplification) rather than odfpy, which builds a Python object with dozens of attributes per
element (several times the memory of an ElementTree) and extracts text by unbounded recursion.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
import zipfile

from rag_service.errors import InvalidInputError
from rag_service.ingestion.formats.common import LoadContext, Loaded, clean, markdown_table, reason
from rag_service.ingestion.formats.epub import MAX_XML_DEPTH, XmlTooDeepError, parse_xml

_TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_OFFICE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"
_DRAW = "{urn:oasis:names:tc:opendocument:xmlns:drawing:1.0}"
_MANIFEST = "{urn:oasis:names:tc:opendocument:xmlns:manifest:1.0}"
_DC = "{http://purl.org/dc/elements/1.1/}"
# No text for a reader: reviewer comments, deleted text kept for change tracking, the generated table of contents
# (it repeats the headings with page numbers), declarations, ruby annotations, frame captions for images.
_SKIP = {
    f"{_OFFICE}annotation", f"{_TEXT}tracked-changes", f"{_TEXT}table-of-content", f"{_TEXT}sequence-decls",
    f"{_TEXT}variable-decls", f"{_TEXT}user-field-decls", f"{_TEXT}note-citation", f"{_TEXT}ruby-text",
    f"{_OFFICE}forms", f"{_TABLE}table-columns", f"{_TABLE}table-column", f"{_TABLE}table-header-columns",
    "{urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0}title",
    "{urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0}desc",
}
_ROW_GROUPS = {f"{_TABLE}table-header-rows", f"{_TABLE}table-rows", f"{_TABLE}table-row-group"}
_CELLS = {f"{_TABLE}table-cell", f"{_TABLE}covered-table-cell"}
_WS = re.compile(r"[ \t\r\n]+")
MAX_SPACES = 100  # text:s c="1000000000" is one attribute; what it spells must not be


def load_odt(raw: bytes, ctx: LoadContext) -> Loaded:
    """metadata: title (meta.xml's dc:title) when the document has one."""
    source = ctx.source
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            names = set(archive.namelist())
            if _encrypted(archive, names):
                raise InvalidInputError(f"{source}: the OpenDocument text is password-protected")
            if "content.xml" not in names:
                raise InvalidInputError(f"{source}: not a valid OpenDocument text (no content.xml)")
            content = parse_xml(archive.read("content.xml"))
            meta = parse_xml(archive.read("meta.xml")) if "meta.xml" in names else None
        renderer = _Renderer(ctx)
        for body in content.iter(f"{_OFFICE}text"):
            renderer.blocks(body, 0)
    except InvalidInputError:
        raise
    except XmlTooDeepError:
        raise InvalidInputError(f"{source}: the OpenDocument XML is nested more than {MAX_XML_DEPTH} levels "
                                "deep") from None
    except RecursionError:
        raise InvalidInputError(f"{source}: the OpenDocument XML is nested too deeply") from None
    except Exception as exc:  # zipfile and expat raise many types on malformed input
        raise InvalidInputError(f"{source}: not a valid OpenDocument text ({reason(exc)})") from None
    title_element = meta.find(f"{_OFFICE}meta/{_DC}title") if meta is not None else None
    title = " ".join("".join(title_element.itertext()).split()) if title_element is not None else ""
    return Loaded(clean("\n\n".join(renderer.out)), {"title": title} if title else {})


def _encrypted(archive: zipfile.ZipFile, names: set[str]) -> bool:
    """A password-protected document keeps its manifest readable and lists encryption data for its members."""
    if "META-INF/manifest.xml" not in names:
        return False
    manifest = parse_xml(archive.read("META-INF/manifest.xml"))
    return any(True for _ in manifest.iter(f"{_MANIFEST}encryption-data"))


class _Renderer:
    """Blocks (headings, paragraphs, lists, tables) in document order, each one string of ``out``."""

    def __init__(self, ctx: LoadContext) -> None:
        self.ctx = ctx
        self.out: list[str] = []
        self.cells = 0  # table cells emitted so far, against the max_sheet_cells limit

    def blocks(self, parent: ET.Element, level: int) -> None:
        for child in parent:
            self.block(child, level)

    def block(self, element: ET.Element, level: int) -> None:
        tag = element.tag
        if tag in _SKIP:
            return
        if tag == f"{_TEXT}h":
            notes: list[str] = []
            text = " ".join(self.inline(element, notes).split())
            try:
                depth = min(max(int(element.get(f"{_TEXT}outline-level", "1")), 1), 6)
            except ValueError:
                depth = 1
            if text:
                self.out.append("#" * depth + " " + text)
            self.out.extend(notes)
        elif tag == f"{_TEXT}p":
            notes = []
            text = "\n".join(line.strip() for line in self.inline(element, notes).split("\n")).strip()
            if text:
                self.out.append(text)
            self.out.extend(notes)
        elif tag == f"{_TEXT}list":
            lines: list[str] = []
            self.list_items(element, level, lines)
            if lines:
                self.out.append("\n".join(lines))
        elif tag == f"{_TABLE}table":
            rows = self.table_rows(element)
            if rows:
                self.out.append(markdown_table(rows))
        else:  # sections, text boxes, index bodies, anything unknown: its content, in order
            self.blocks(element, level)

    def list_items(self, element: ET.Element, level: int, lines: list[str]) -> None:
        """Each item's first paragraph as '- ', its further paragraphs indented under it, sub-lists one level in.
        A heading or table inside a list item leaves the list and stands as its own block."""
        indent = "  " * level
        for item in element:
            if item.tag not in (f"{_TEXT}list-item", f"{_TEXT}list-header"):
                continue
            first = True
            for child in item:
                if child.tag == f"{_TEXT}list":
                    self.list_items(child, level + 1, lines)
                elif child.tag == f"{_TEXT}p":
                    notes: list[str] = []
                    text = " ".join(self.inline(child, notes).split())
                    if text:
                        lines.append(f"{indent}- {text}" if first else f"{indent}  {text}")
                        first = False
                    lines.extend(indent + "  " + note for note in notes)
                elif child.tag not in _SKIP:
                    if lines:
                        self.out.append("\n".join(lines))
                        lines.clear()
                    self.block(child, level + 1)

    def table_rows(self, table: ET.Element) -> list[list[str]]:
        """Rows of cell texts. A merged cell's covered neighbours stay as empty cells so every value keeps its
        column; repeated rows and columns (one element standing for many) are expanded only up to the last
        non-empty one and count against max_sheet_cells, so a 'repeated a billion times' attribute costs nothing."""
        rows: list[list[str]] = []
        for row in _table_rows(table):
            cells: list[str] = []
            pending = 0  # empty cells not yet emitted: only needed if a value follows them
            for cell in row:
                if cell.tag not in _CELLS:
                    continue
                text = self.cell_text(cell)
                repeat = _count(cell.get(f"{_TABLE}number-columns-repeated"))
                if not text:
                    pending += repeat
                    continue
                self.count(pending + repeat)
                cells.extend([""] * pending + [text] * repeat)
                pending = 0
            if not cells:
                continue
            for repeat in range(_count(row.get(f"{_TABLE}number-rows-repeated"))):
                if repeat:
                    self.count(len(cells))
                rows.append(cells)
        return rows

    def cell_text(self, cell: ET.Element) -> str:
        """A cell's paragraphs (and any table nested in it) on one line."""
        return " ".join(" ".join(self.paragraphs(cell)).split())

    def paragraphs(self, element: ET.Element) -> list[str]:
        """The texts of the paragraphs and headings inside ``element`` (a cell, a note, a text box), each followed
        by its own notes; not into a paragraph, whose inner notes and text boxes ``inline`` already reads."""
        texts: list[str] = []
        for child in element:
            if child.tag in (f"{_TEXT}p", f"{_TEXT}h"):
                notes: list[str] = []
                text = " ".join(self.inline(child, notes).split())
                texts.extend([text, *notes] if text else notes)
            elif child.tag not in _SKIP:
                texts.extend(self.paragraphs(child))
        return texts

    def count(self, cells: int) -> None:
        self.cells += cells
        if self.cells > self.ctx.limits.sheet_cells:
            raise InvalidInputError(f"{self.ctx.source}: more than {self.ctx.limits.sheet_cells:,} table cells "
                                    "(max_sheet_cells)")

    def inline(self, element: ET.Element, notes: list[str]) -> str:
        """A paragraph's text: ODF collapses white space like XML, then spells spaces, tabs and line breaks out as
        elements. Footnote bodies go to ``notes`` (shown after the paragraph as '[n] text')."""
        parts: list[str] = []
        if element.text:
            parts.append(_WS.sub(" ", element.text))
        for child in element:
            tag = child.tag
            if tag == f"{_TEXT}s":
                parts.append(" " * min(_count(child.get(f"{_TEXT}c")), MAX_SPACES))
            elif tag == f"{_TEXT}tab":
                parts.append("\t")
            elif tag == f"{_TEXT}line-break":
                parts.append("\n")
            elif tag == f"{_TEXT}note":
                citation = child.find(f"{_TEXT}note-citation")
                body = child.find(f"{_TEXT}note-body")
                mark = "".join(citation.itertext()).strip() if citation is not None else ""
                text = " ".join(self.paragraphs(body)) if body is not None else ""
                if text:
                    notes.append(f"[{mark}] {text}" if mark else text)
            elif tag == f"{_DRAW}text-box":
                notes.extend(self.paragraphs(child))  # a text box is a block of its own, after the paragraph
            elif tag not in _SKIP:
                parts.append(self.inline(child, notes))
            if child.tail:
                parts.append(_WS.sub(" ", child.tail))
        return "".join(parts)


def _table_rows(table: ET.Element) -> list[ET.Element]:
    """Rows in order, through header-row and row-group wrappers (not into tables nested in cells)."""
    rows: list[ET.Element] = []
    for child in table:
        if child.tag == f"{_TABLE}table-row":
            rows.append(child)
        elif child.tag in _ROW_GROUPS:
            rows.extend(_table_rows(child))
    return rows


def _count(value: str | None) -> int:
    try:
        return max(int(value or "1"), 1)
    except ValueError:
        return 1
