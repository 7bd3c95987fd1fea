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


def _lazy(module: str, function: str) -> Callable[[bytes, LoadContext], Loaded]:
    """A loader ``function(raw, ctx)`` of ``formats.<module>``, imported on its first file."""

    def load(raw: bytes, ctx: LoadContext) -> Loaded:
        loaded: Loaded = getattr(importlib.import_module(f"{__name__}.{module}"), function)(raw, ctx)
        return loaded

    return load


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
    Format("pdf", (".pdf",), "a PDF", load_bytes=_lazy("pdf", "load_pdf")),
    Format("docx", (".docx",), "a DOCX", load_bytes=_lazy("docx", "load_docx")),
    Format("pptx", (".pptx",), "a PowerPoint file", load_bytes=_lazy("pptx", "load_pptx")),
    Format("xlsx", (".xlsx", ".xlsm"), "an Excel workbook", load_bytes=_lazy("xlsx", "load_xlsx")),
    Format("xls", (".xls",), "a legacy Excel workbook", load_bytes=_lazy("xlsx", "load_xls")),
    Format("odt", (".odt",), "an OpenDocument text", load_bytes=_lazy("odt", "load_odt")),
    Format("epub", (".epub",), "an EPUB book", load_bytes=_lazy("epub", "load_epub")),
    Format("eml", (".eml",), "an e-mail message", load_bytes=_lazy("eml", "load_eml")),
    Format("msg", (".msg",), "an Outlook message", load_bytes=_lazy("msg", "load_msg")),
    Format("image", (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif"), "an image",
           load_bytes=_lazy("image", "load_image")),
)}
SUFFIXES: dict[str, str] = {suffix: f.name for f in FORMATS.values() for suffix in f.suffixes}


def preload() -> None:
    """Import every format's parser now: the parser process does this at start, where the time is not charged to a
    file. The OCR engine is left to load on the first scan (its models cost memory a text-only server never needs)."""
    for module in ("pdf", "docx", "pptx", "xlsx", "odt", "epub", "eml", "msg", "image", "text", "html", "delimited",
                   "json_records"):
        importlib.import_module(f"{__name__}.{module}")
