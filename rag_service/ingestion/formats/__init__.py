"""The file formats ingestion reads, by name: a new format is a module with a loader plus an entry in ``FORMATS``.

Binary formats are recognised by their bytes (a PDF named ``.txt`` is still a PDF) and ZIP-based ones by their
members; text formats by the extension, then by their first characters. Parsers load lazily, inside the function
that needs them, so a process that never meets a slide deck never imports python-pptx.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from rag_service.ingestion.formats.common import LoadContext, Loaded


@dataclass(frozen=True, slots=True)
class Format:
    name: str
    suffixes: tuple[str, ...]
    what: str  # how a message names a file of this format
    module: str  # in this package; its ``function(data, ctx) -> Loaded`` loads the file
    function: str
    text: bool = False  # True: ``data`` is the decoded text; False: the file's bytes

    def load(self, data: Any, ctx: LoadContext) -> Loaded:
        loaded: Loaded = getattr(importlib.import_module(f"{__name__}.{self.module}"), self.function)(data, ctx)
        return loaded


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("txt", (".txt", ".text", ".log"), "a text file", "text", "load_text", text=True),
    Format("md", (".md", ".markdown"), "a Markdown file", "text", "load_text", text=True),
    Format("html", (".html", ".htm", ".xhtml"), "an HTML page", "html", "load_page", text=True),
    Format("csv", (".csv", ".tsv"), "a CSV file", "delimited", "load_csv", text=True),
    Format("json", (".json", ".jsonl", ".ndjson"), "a JSON file", "json_records", "load_json", text=True),
    Format("pdf", (".pdf",), "a PDF", "pdf", "load_pdf"),
    Format("docx", (".docx",), "a DOCX", "docx", "load_docx"),
    Format("pptx", (".pptx",), "a PowerPoint file", "pptx", "load_pptx"),
    Format("xlsx", (".xlsx", ".xlsm"), "an Excel workbook", "xlsx", "load_xlsx"),
    Format("xls", (".xls",), "a legacy Excel workbook", "xlsx", "load_xls"),
    Format("odt", (".odt",), "an OpenDocument text", "odt", "load_odt"),
    Format("epub", (".epub",), "an EPUB book", "epub", "load_epub"),
    Format("eml", (".eml",), "an e-mail message", "eml", "load_eml"),
    Format("msg", (".msg",), "an Outlook message", "msg", "load_msg"),
    Format("image", (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif"), "an image", "image",
           "load_image"),
)}
SUFFIXES: dict[str, str] = {suffix: f.name for f in FORMATS.values() for suffix in f.suffixes}


def preload() -> None:
    """Import every format's parser now: the parser process does this at start, where the time is not charged to a
    file. The OCR engine is left to load on the first scan (its models cost memory a text-only server never needs)."""
    for module in dict.fromkeys(f.module for f in FORMATS.values()):
        importlib.import_module(f"{__name__}.{module}")
