"""DOCX: heading styles become Markdown '#' lines, list items '- ' lines, tables one line per row."""

from __future__ import annotations

import io
import re
from typing import Any

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from rag_service.errors import InvalidInputError
from rag_service.ingestion.formats.common import LoadContext, Loaded, clean, reason

_HEADING_STYLE = re.compile(r"heading ([1-6])", re.IGNORECASE)


def load_docx(raw: bytes, ctx: LoadContext) -> Loaded:
    """Heading styles become Markdown '#' lines so a Markdown-aware splitter can cut at them."""
    source = ctx.source
    try:
        blocks = [_docx_block(item) for item in docx.Document(io.BytesIO(raw)).iter_inner_content()]
    except Exception as exc:  # python-docx, lxml and zipfile raise many types on malformed input
        raise InvalidInputError(f"{source}: not a valid DOCX ({reason(exc)})") from None
    out: list[str] = []
    previous_is_item = False
    for text, is_item in blocks:
        if text:
            if out:
                out.append("\n" if is_item and previous_is_item else "\n\n")
            out.append(text)
            previous_is_item = is_item
    return Loaded(clean("".join(out)))


def _docx_block(item: Paragraph | Table) -> tuple[str, bool]:
    """(text, is a list item): list items stay on consecutive lines, everything else is a paragraph."""
    if isinstance(item, Table):
        rows = []
        for row in item.rows:
            seen: list[Any] = []
            cells = []
            for cell in row.cells:  # a merged cell is repeated once per grid column it spans
                if not any(cell._tc is tc for tc in seen):
                    seen.append(cell._tc)
                    cells.append(" ".join(cell.text.split()))
            if any(cells):
                rows.append(" | ".join(cells))
        return "\n".join(rows), False
    text = item.text.strip()
    style = (item.style.name if item.style is not None else None) or ""
    heading = _HEADING_STYLE.fullmatch(style)
    if text and (heading or style == "Title"):
        return "#" * (int(heading.group(1)) if heading else 1) + " " + " ".join(text.split()), False
    p_pr = item._p.pPr
    if text and (style.startswith("List") or (p_pr is not None and p_pr.numPr is not None)):
        return "- " + text, True
    return text, False
