"""PPTX: one page per slide, its title a Markdown '#' line, text frames in reading order, bullets as '- ' items,
tables as Markdown tables and the speaker notes last under a "Speaker notes:" line.

python-pptx parses every slide's XML when it opens the package, so the slides are counted from the presentation
part (and the archive's slide members) first and a deck over the limit is refused before that.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any
from xml.etree.ElementTree import iterparse

from pptx import Presentation
from pptx.enum.shapes import PP_PLACEHOLDER
from pptx.oxml.ns import qn
from pptx.shapes.autoshape import Shape
from pptx.shapes.base import BaseShape
from pptx.shapes.graphfrm import GraphicFrame
from pptx.shapes.group import GroupShape
from pptx.slide import Slide
from pptx.text.text import TextFrame

from rag_service.errors import InvalidInputError
from rag_service.ingestion.formats.common import LoadContext, Loaded, join_pages, markdown_table, reason

NOTES_MARKER = "Speaker notes:"
# Groups nested deeper than this are read as plain text in document order: no deck needs more, and recursion on a
# hostile one stays shallow (lxml itself refuses XML nested deeper than 256 elements).
MAX_GROUP_DEPTH = 16
_PRESENTATION = "ppt/presentation.xml"
_SLIDE_MEMBER = re.compile(r"ppt/slides/[^/]+\.xml")
_SLD_ID = qn("p:sldId")
# Slide furniture that repeats on every slide and says nothing about it.
_SKIPPED_PLACEHOLDERS = {PP_PLACEHOLDER.SLIDE_NUMBER, PP_PLACEHOLDER.DATE, PP_PLACEHOLDER.FOOTER,
                         PP_PLACEHOLDER.HEADER}
# Placeholders whose paragraphs the master styles as bullets unless a paragraph says <a:buNone/>.
_BULLETED_PLACEHOLDERS = {PP_PLACEHOLDER.BODY, PP_PLACEHOLDER.OBJECT, PP_PLACEHOLDER.VERTICAL_BODY,
                          PP_PLACEHOLDER.VERTICAL_OBJECT}
_BULLET_TAGS = {qn("a:buChar"), qn("a:buAutoNum"), qn("a:buBlip")}
_NO_BULLET = qn("a:buNone")


def load_pptx(raw: bytes, ctx: LoadContext) -> Loaded:
    """Each slide is a page, so a chunk's citation names the slide its text is on."""
    source, limit = ctx.source, ctx.limits.pdf_pages
    try:
        _refuse_too_many(_count_slides(raw), source, limit)
        presentation = Presentation(io.BytesIO(raw))
        slides = list(presentation.slides)
        _refuse_too_many(len(slides), source, limit)  # a deck whose slides the pre-count could not see
        pages = [_slide_text(slide, number) for number, slide in enumerate(slides, 1)]
        hidden = [number for number, slide in enumerate(slides, 1) if slide._element.get("show") in ("0", "false")]
    except InvalidInputError:
        raise
    except RecursionError:
        raise InvalidInputError(f"{source}: not a valid PowerPoint file (nested too deeply)") from None
    except Exception as exc:  # python-pptx, lxml and zipfile raise many types on malformed input
        message = reason(exc)
        if "Excessive depth" in message:  # lxml's refusal of XML nested deeper than 256 elements
            message = "nested too deeply"
        raise InvalidInputError(f"{source}: not a valid PowerPoint file ({message})") from None
    loaded = join_pages(pages)
    loaded.metadata["slides"] = len(slides)
    if hidden:
        loaded.metadata["hidden_slides"] = hidden  # kept: a hidden slide is often the backup detail a question needs
    return loaded


def _refuse_too_many(count: int, source: str, limit: int) -> None:
    if count > limit:
        raise InvalidInputError(f"{source}: {count:,} slides is over the {limit:,}-slide limit (max_pdf_pages)")


def _count_slides(raw: bytes) -> int:
    """The slide list's length (streamed, not built as a tree) or the number of slide parts, whichever is larger."""
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        members = sum(1 for name in archive.namelist() if _SLIDE_MEMBER.fullmatch(name))
        listed = 0
        with archive.open(_PRESENTATION) as part:
            for _, element in iterparse(part):  # expat: no recursion, no external entities
                if element.tag == _SLD_ID:
                    listed += 1
                element.clear()
    return max(members, listed)


def _slide_text(slide: Slide, number: int) -> str:
    title_shape = slide.shapes.title
    title = " ".join(title_shape.text_frame.text.split()) if title_shape is not None else ""
    blocks = [f"# {title or f'Slide {number}'}"]
    blocks += [b for b in _shapes_text(slide.shapes, 0, skip=title_shape) if b]
    if slide.has_notes_slide:
        notes_frame = slide.notes_slide.notes_text_frame
        notes = notes_frame.text.strip() if notes_frame is not None else ""
        if notes:
            blocks.append(f"{NOTES_MARKER}\n{notes}")
    return "\n\n".join(blocks)


def _reading_order(shapes: Iterable[BaseShape]) -> list[BaseShape]:
    """Top to bottom, then left to right; a shape without a position keeps its place among those at the top."""
    return sorted(shapes, key=lambda s: (s.top or 0, s.left or 0))


def _shapes_text(shapes: Iterable[BaseShape], depth: int, skip: BaseShape | None = None) -> Iterator[str]:
    for shape in _reading_order(shapes):
        if skip is not None and shape.shape_id == skip.shape_id:
            continue
        if shape.is_placeholder and shape.placeholder_format.type in _SKIPPED_PLACEHOLDERS:
            continue
        if isinstance(shape, GroupShape):
            if depth >= MAX_GROUP_DEPTH:
                yield _flat_text(shape._element)
            else:
                yield from _shapes_text(shape.shapes, depth + 1)
        elif isinstance(shape, GraphicFrame):
            yield _frame_text(shape)
        elif isinstance(shape, Shape) and shape.has_text_frame:
            yield _text_frame(shape.text_frame, _bulleted(shape))


def _bulleted(shape: BaseShape) -> bool:
    return shape.is_placeholder and shape.placeholder_format.type in _BULLETED_PLACEHOLDERS


def _text_frame(frame: TextFrame, bulleted: bool) -> str:
    """Bullet paragraphs as '- ' items indented two spaces per level, other paragraphs as lines."""
    lines = []
    for paragraph in frame.paragraphs:
        text = paragraph.text.strip()
        if not text:
            continue
        p_pr = paragraph._p.pPr
        marks = {child.tag for child in p_pr} if p_pr is not None else set()
        if (bulleted or marks & _BULLET_TAGS) and _NO_BULLET not in marks:
            lines.append("  " * paragraph.level + "- " + " ".join(text.split()))
        else:
            lines.append(text)
    return "\n".join(lines)


def _frame_text(frame: GraphicFrame) -> str:
    if frame.has_table:
        rows = [["" if cell.is_spanned else cell.text for cell in row.cells] for row in frame.table.rows]
        return markdown_table(rows) if any(any(c.strip() for c in r) for r in rows) else ""
    if frame.has_chart:
        chart = frame.chart
        if chart.has_title and chart.chart_title.has_text_frame:
            title = " ".join(chart.chart_title.text_frame.text.split())
            return f"Chart: {title}" if title else ""
    return ""


def _flat_text(element: Any) -> str:
    """Every paragraph under ``element`` in document order, without recursion."""
    paragraphs = ("".join(t.text or "" for t in p.iter(qn("a:t"))).strip() for p in element.iter(qn("a:p")))
    return "\n".join(p for p in paragraphs if p)
