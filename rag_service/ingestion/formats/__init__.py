"""The file formats ingestion reads, by name: a new format is a module with a loader plus an entry in ``FORMATS``.

Binary formats are recognised by their bytes (a PDF named ``.txt`` is still a PDF) and ZIP-based ones by their
members; text formats by the extension, then by their first characters. Parsers load lazily, inside the function
that needs them, so a process that never meets a slide deck never imports python-pptx.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from rag_service.ingestion.formats.common import LoadContext, Loaded


@dataclass(frozen=True, slots=True)
class Format:
    name: str
    suffixes: tuple[str, ...]
    what: str  # how a message names a file of this format
    load_bytes: Callable[[bytes, LoadContext], Loaded] | None = None  # binary formats
    load_text: Callable[[str, LoadContext], Loaded] | None = None  # text formats, after decoding


def _pdf(raw: bytes, ctx: LoadContext) -> Loaded:
    from rag_service.ingestion.formats.pdf import load_pdf

    return load_pdf(raw, ctx.source, ctx.limits, ctx.progress)


def _docx(raw: bytes, ctx: LoadContext) -> Loaded:
    from rag_service.ingestion.formats.docx import load_docx

    return load_docx(raw, ctx.source)


def _pptx(raw: bytes, ctx: LoadContext) -> Loaded:
    from rag_service.ingestion.formats.pptx import load_pptx

    return load_pptx(raw, ctx)


def _xlsx(raw: bytes, ctx: LoadContext) -> Loaded:
    from rag_service.ingestion.formats.xlsx import load_xlsx

    return load_xlsx(raw, ctx)


def _xls(raw: bytes, ctx: LoadContext) -> Loaded:
    from rag_service.ingestion.formats.xlsx import load_xls

    return load_xls(raw, ctx)


def _epub(raw: bytes, ctx: LoadContext) -> Loaded:
    from rag_service.ingestion.formats.epub import load_epub

    return load_epub(raw, ctx)


def _odt(raw: bytes, ctx: LoadContext) -> Loaded:
    from rag_service.ingestion.formats.odt import load_odt

    return load_odt(raw, ctx)


def _eml(raw: bytes, ctx: LoadContext) -> Loaded:
    from rag_service.ingestion.formats.eml import load_eml

    return load_eml(raw, ctx)


def _msg(raw: bytes, ctx: LoadContext) -> Loaded:
    from rag_service.ingestion.formats.msg import load_msg

    return load_msg(raw, ctx)


def _image(raw: bytes, ctx: LoadContext) -> Loaded:
    from rag_service.ingestion.formats.image import load_image

    return load_image(raw, ctx)


def _txt(text: str, ctx: LoadContext) -> Loaded:
    from rag_service.ingestion.formats.text import load_text

    return load_text(text, ctx.source)


def _html(text: str, ctx: LoadContext) -> Loaded:
    from rag_service.ingestion.formats.html import load_html

    return load_html(text, ctx.source)


def _csv(text: str, ctx: LoadContext) -> Loaded:
    from rag_service.ingestion.formats.delimited import load_csv

    return load_csv(text, ctx.source)


def _json(text: str, ctx: LoadContext) -> Loaded:
    from rag_service.ingestion.formats.json_records import load_json

    return load_json(text, ctx.source, ctx.json_text_field)


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("txt", (".txt", ".text", ".log"), "a text file", load_text=_txt),
    Format("md", (".md", ".markdown"), "a Markdown file", load_text=_txt),
    Format("html", (".html", ".htm", ".xhtml"), "an HTML page", load_text=_html),
    Format("csv", (".csv", ".tsv"), "a CSV file", load_text=_csv),
    Format("json", (".json", ".jsonl", ".ndjson"), "a JSON file", load_text=_json),
    Format("pdf", (".pdf",), "a PDF", load_bytes=_pdf),
    Format("docx", (".docx",), "a DOCX", load_bytes=_docx),
    Format("pptx", (".pptx",), "a PowerPoint file", load_bytes=_pptx),
    Format("xlsx", (".xlsx", ".xlsm"), "an Excel workbook", load_bytes=_xlsx),
    Format("xls", (".xls",), "a legacy Excel workbook", load_bytes=_xls),
    Format("odt", (".odt",), "an OpenDocument text", load_bytes=_odt),
    Format("epub", (".epub",), "an EPUB book", load_bytes=_epub),
    Format("eml", (".eml",), "an e-mail message", load_bytes=_eml),
    Format("msg", (".msg",), "an Outlook message", load_bytes=_msg),
    Format("image", (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif"), "an image",
           load_bytes=_image),
)}
SUFFIXES: dict[str, str] = {suffix: f.name for f in FORMATS.values() for suffix in f.suffixes}


def preload() -> None:
    """Import every format's parser now: the parser process does this at start, where the time is not charged to a
    file. The OCR engine is left to load on the first scan (its models cost memory a text-only server never needs)."""
    for module in ("pdf", "docx", "pptx", "xlsx", "odt", "epub", "eml", "msg", "image", "text", "html", "delimited",
                   "json_records"):
        importlib.import_module(f"{__name__}.{module}")
