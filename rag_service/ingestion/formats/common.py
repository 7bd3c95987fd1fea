"""What every format loader shares: its limits, its result record, text cleaning and archive checks.

Every failure a user can cause is an ``InvalidInputError`` whose one-line message starts with the source name; no
parser exception escapes a loader.
"""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rag_service.errors import InvalidInputError
from rag_service.settings import Settings

MAX_ZIP_RATIO = 200  # zip members above ZIP_RATIO_MIN_BYTES: XML compresses 10-30:1, a bomb far more
ZIP_RATIO_MIN_BYTES = 1024 * 1024

_IngestDefaults = Settings.model_fields


@dataclass(frozen=True, slots=True)
class LoadLimits:
    """What one file may cost to parse (Settings: max_document_expansion_mb, max_pdf_pages, max_sheet_cells,
    max_ocr_pages)."""

    expanded_bytes: int = int(_IngestDefaults["max_document_expansion_mb"].default * 1024 * 1024)
    pdf_pages: int = _IngestDefaults["max_pdf_pages"].default
    sheet_cells: int = _IngestDefaults["max_sheet_cells"].default
    ocr_pages: int = _IngestDefaults["max_ocr_pages"].default

    @classmethod
    def of(cls, settings: Settings) -> LoadLimits:
        return cls(int(settings.max_document_expansion_mb * 1024 * 1024), settings.max_pdf_pages,
                   settings.max_sheet_cells, settings.max_ocr_pages)


DEFAULT_LIMITS = LoadLimits()


@dataclass(slots=True)
class Loaded:
    """A format loader's result: cleaned text and what it knows about it (``page_starts``: [offset, page] pairs
    for documents with pages; ``ocr_pages``: {page: confidence} for pages read by OCR)."""

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\v\f\r\x1b") + b"\x7f"  # C0 controls but layout
_CLEAN_TABLE = {
    **{c: None for c in CONTROL_BYTES + b"\x1b"}, 0xFEFF: None,
    **{ord(c): "\n" for c in "\r\v\f\x85\u2028\u2029"},
}
_SURROGATE = re.compile("[\ud800-\udfff]")
_BLANK_RUNS = re.compile(r"\n{3,}")


def clean(text: str) -> str:
    """Normalise line ends, control characters and blank runs so splitters and offsets see one shape; keep
    full-width CJK punctuation as it is (NFC, not NFKC). Idempotent, so cleaned pieces can be joined safely.
    A lone surrogate (JSON may spell one, ``"\\ud83d"``; UTF-8 cannot encode it, so no embedder, tokenizer or
    database takes it) becomes U+FFFD, as a decoder does with a broken byte sequence; a split pair is joined."""
    if _SURROGATE.search(text):
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").translate(_CLEAN_TABLE)
    # Per-line rstrip, not a regex such as [ \t]+\n: that one rescans every run of blanks from each of its
    # starting points, so a 60 KB upload of spaces held the GIL for seconds (1 MB: half an hour).
    text = "\n".join(line.rstrip(" \t") for line in text.split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip()


def join_pages(pages: list[str], first: int = 1) -> Loaded:
    """Pages cleaned one by one and joined with a blank line, so each page's offset in the final text is known
    exactly; the joined text is already clean and must not be cleaned again. Empty pages take no offset."""
    parts: list[str] = []
    page_starts: list[list[int]] = []
    offset = 0
    for number, page_text in enumerate(pages, first):
        cleaned = clean(page_text)
        if not cleaned:
            continue
        if parts:
            offset += 2
        page_starts.append([offset, number])
        parts.append(cleaned)
        offset += len(cleaned)
    return Loaded("\n\n".join(parts), {"pages": len(pages), "page_starts": page_starts})


def reason(exc: BaseException) -> str:
    """Library messages can span lines or be empty; a user-facing message must be one short line."""
    text = " ".join(str(exc).split())[:200]
    return text or type(exc).__name__


def human_size(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            break
        value /= 1024
    return f"{value:.1f}".removesuffix(".0") + f" {unit}"


def zip_members(raw: bytes, source: str, damaged: str) -> list[zipfile.ZipInfo]:
    """The archive's directory, read without inflating anything; ``damaged`` is the message for a broken one."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            return archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise InvalidInputError(f"{source}: {damaged} ({reason(exc)})") from None


def check_expansion(members: list[zipfile.ZipInfo], source: str, what: str, limits: LoadLimits) -> None:
    """Refuse an archive before any parser inflates it: a small DOCX, XLSX or EPUB can hide gigabytes. The directory's
    sizes are what the parser would inflate (zipfile stops at the declared size, so a lying entry cannot exceed it)."""
    total = sum(m.file_size for m in members)
    if total > limits.expanded_bytes:
        raise InvalidInputError(f"{source}: refusing {what} that decompresses to {human_size(total)} "
                                f"(limit {human_size(limits.expanded_bytes)}, max_document_expansion_mb)")
    for m in members:
        if m.file_size > ZIP_RATIO_MIN_BYTES and m.file_size > MAX_ZIP_RATIO * max(m.compress_size, 1):
            raise InvalidInputError(
                f"{source}: refusing {what} whose member {m.filename} expands {m.file_size // max(m.compress_size, 1)}"
                f":1 to {human_size(m.file_size)} (limit {MAX_ZIP_RATIO}:1 above {human_size(ZIP_RATIO_MIN_BYTES)})"
            )


def markdown_table(rows: list[list[str]]) -> str:
    """Rows of cells as a Markdown table whose first row is the header; pipes and line breaks inside a cell are
    escaped so every row keeps its columns. Short rows are padded to the widest."""
    width = max((len(r) for r in rows), default=0)
    if width == 0:
        return ""

    def line(cells: list[str]) -> str:
        padded = [" ".join(c.split()).replace("|", "\\|") for c in cells] + [""] * (width - len(cells))
        return "| " + " | ".join(padded) + " |"

    return "\n".join([line(rows[0]), "|" + "---|" * width, *(line(r) for r in rows[1:])])


# A loader's report of slow work done so far, (done, total): OCR calls it once per page.
Progress = Callable[[int, int], None]


def no_progress(done: int, total: int) -> None:
    """The default: nobody is watching (the CLI, tests, evaluation)."""


@dataclass(frozen=True, slots=True)
class LoadContext:
    """What a format loader is told besides the bytes: whose they are (messages start with ``source``), its limits,
    whom to tell about slow work, and how to load a file found inside this one (a mail's attachment) with the same
    detection and limits (``nested``; None where nesting is not allowed, as inside an attachment)."""

    source: str
    limits: LoadLimits = DEFAULT_LIMITS
    progress: Progress = no_progress
    json_text_field: str = "text"
    nested: Callable[[str, bytes], Loaded] | None = None
