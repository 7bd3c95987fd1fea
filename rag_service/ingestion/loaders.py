"""Turn a file's bytes into a cleaned ``Document``: detect the format, then hand the bytes to its loader
(``rag_service.ingestion.formats``).

The format is judged by content before the extension is trusted: a PDF named ``.txt`` is still a PDF, and junk named
``.pdf`` fails with a clear message instead of a parser traceback. Every failure a user can cause is an
``InvalidInputError`` whose one-line message starts with the source name; no parser exception escapes.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from pathlib import Path

from rag_service.errors import InvalidInputError
from rag_service.ingestion.formats import FORMATS, SUFFIXES
from rag_service.ingestion.formats.common import (
    DEFAULT_LIMITS,
    LoadContext,
    Loaded,
    LoadLimits,
    Progress,
    check_expansion,
    clean,
    no_progress,
    zip_members,
)
from rag_service.ingestion.formats.image import is_image
from rag_service.ingestion.formats.json_records import parse_json
from rag_service.ingestion.formats.text import detect_encoding, looks_binary
from rag_service.records import Document
from rag_service.text.language import has_words

__all__ = ["FORMATS", "SUFFIXES", "LoadLimits", "clean", "detect_encoding", "load", "read_bytes"]

_SUPPORTED = ", ".join(sorted(SUFFIXES))
_MAGIC = (
    (b"\x1f\x8b", "a gzip archive"), (b"Rar!", "a RAR archive"), (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
    (b"{\\rtf", "an RTF document"), (b"\x7fELF", "an executable"),
)
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_OLE2_BY_SUFFIX = {
    ".doc": "a legacy Word .doc document; save it as .docx", ".ppt": "a legacy PowerPoint .ppt; save it as .pptx",
}
# ZIP-based formats by a member only they have; OpenDocument and EPUB by their ``mimetype`` member.
_ZIP_MEMBERS = (("word/document.xml", "docx"), ("ppt/presentation.xml", "pptx"), ("xl/workbook.xml", "xlsx"))
_ZIP_MIMETYPES = {"application/epub+zip": "epub", "application/vnd.oasis.opendocument.text": "odt"}
_ZIP_FORMATS = {fmt for _, fmt in _ZIP_MEMBERS} | set(_ZIP_MIMETYPES.values())


def _named(fmt: str) -> str:
    """A format's name for "not a valid ...": its ``what`` without the article ("a DOCX" -> "DOCX")."""
    return FORMATS[fmt].what.split(" ", 1)[1]


_NOT_TEXT_BY_SUFFIX = {
    ".pdf": "not a valid PDF (no %PDF- header)",
    **{s: f"not a valid {_named(name)} (not a ZIP archive)" for s, name in SUFFIXES.items() if name in _ZIP_FORMATS},
    **{s: "not a valid image (no image header)" for s, name in SUFFIXES.items() if name == "image"},
    ".xls": "not a valid Excel .xls workbook (not an OLE2 file)",
}
_ZIP_OTHERS = (
    ("xl/", "an Excel workbook without a workbook part"), ("ppt/", "a PowerPoint file without a presentation part"),
    ("content.xml", "an OpenDocument file other than text (.ods, .odp)"),
)
# A message's first header: mail read without a .eml extension (a saved message, an .txt export of one).
_MAIL_HEAD = re.compile(
    rb"(?:Return-Path|Received|Delivered-To|From|Message-ID|MIME-Version|Date|Subject|To|X-[\w-]+):[ \t]",
    re.IGNORECASE)
_MAIL_NEEDS = (re.compile(rb"^From:", re.IGNORECASE | re.MULTILINE),
               re.compile(rb"^(?:Subject|Message-ID|MIME-Version):", re.IGNORECASE | re.MULTILINE))


def read_bytes(path: Path, max_bytes: int) -> bytes:
    """Refuse an oversized file before reading it, and never read more than one byte past the limit even if the
    file grows in between."""
    try:
        with path.open("rb") as fh:
            size = path.stat().st_size
            raw = fh.read(max_bytes + 1) if size <= max_bytes else b""
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if size > max_bytes or len(raw) > max_bytes:
        raise InvalidInputError(f"{path}: {max(size, len(raw)):,} bytes is over the {max_bytes:,}-byte limit")
    return raw


def load(path: Path, source: str, raw: bytes, *, json_text_field: str = "text",
         limits: LoadLimits = DEFAULT_LIMITS, progress: Progress = no_progress) -> Document:
    """The document in ``raw`` (the bytes of ``path``, named ``source``); ``progress`` hears of slow work (OCR)."""
    ctx = LoadContext(source, limits, progress, json_text_field,
                      nested=lambda name, data: _load(Path(name), data, LoadContext(
                          f"{source} › {name}", limits, progress, json_text_field))[1])
    fmt, loaded = _load(path, raw, ctx)
    sha = hashlib.sha256(raw).hexdigest()
    return Document(id=sha[:16], source=source, text=loaded.text, sha256=sha,
                    metadata={"format": fmt, **loaded.metadata})


def _load(path: Path, raw: bytes, ctx: LoadContext) -> tuple[str, Loaded]:
    source = ctx.source
    if not raw.strip():
        raise InvalidInputError(f"{source}: no text in the file")
    suffix = path.suffix.lower()
    fmt = sniff(suffix, raw, ctx)
    if fmt is not None:
        loaded = FORMATS[fmt].load(raw, ctx)
    else:
        if suffix in _NOT_TEXT_BY_SUFFIX and looks_binary(raw):
            raise InvalidInputError(f"{source}: {_NOT_TEXT_BY_SUFFIX[suffix]}")
        decoded, encoding = detect_encoding(raw, source)
        fmt = _text_format(suffix, decoded)
        loaded = FORMATS[fmt].load(decoded, ctx)
        loaded.metadata["encoding"] = encoding
    if not has_words(loaded.text):  # nothing but separators, markers or digits
        raise InvalidInputError(f"{source}: no text in the file")
    return fmt, loaded


def sniff(suffix: str, raw: bytes, ctx: LoadContext) -> str | None:
    """The binary format the bytes are, or None for anything that may be text; other known binaries raise."""
    source = ctx.source
    if raw[:1024].lstrip().startswith(b"%PDF-"):
        return "pdf"
    if raw.startswith(b"PK\x03\x04"):
        return _zip_format(suffix, raw, ctx)
    if is_image(raw):
        return "image"
    if raw.startswith(_OLE2):
        if suffix == ".xls":
            return "xls"
        if suffix == ".msg" or "__substg1.0_".encode("utf-16-le") in raw:  # a MAPI property stream's name
            return "msg"
        what = _OLE2_BY_SUFFIX.get(suffix, "a legacy or password-protected Office file (.doc, .xls, .ppt, .msg)")
        raise InvalidInputError(f"{source}: unsupported file type ({what}; supported: {_SUPPORTED})")
    for magic, what in _MAGIC:
        if raw.startswith(magic):
            raise InvalidInputError(f"{source}: unsupported file type ({what}; supported: {_SUPPORTED})")
    if suffix == ".eml" or (SUFFIXES.get(suffix) is None and _looks_like_mail(raw)):
        return "eml"
    return None


def _looks_like_mail(raw: bytes) -> bool:
    head = raw[:8192].split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
    return bool(_MAIL_HEAD.match(raw)) and all(p.search(head) for p in _MAIL_NEEDS)


def _zip_format(suffix: str, raw: bytes, ctx: LoadContext) -> str:
    """Which ZIP-based format this is, from the archive's directory, before any parser inflates it."""
    source = ctx.source
    expected = SUFFIXES.get(suffix)
    damaged = f"not a valid {_named(expected)}" if expected in _ZIP_FORMATS else "a damaged ZIP archive"
    members = zip_members(raw, source, damaged)
    names = {m.filename for m in members}
    fmt = next((f for member, f in _ZIP_MEMBERS if member in names), None)
    if fmt is None and "mimetype" in names:
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                mimetype = archive.read("mimetype")[:100].decode("ascii", "replace").strip()
        except Exception:  # a damaged member: the parser would fail on it too
            mimetype = ""
        fmt = _ZIP_MIMETYPES.get(mimetype)
    if fmt is None:
        what = next((kind for prefix, kind in _ZIP_OTHERS if any(n.startswith(prefix) for n in names)), "a ZIP archive")
        if expected in _ZIP_FORMATS:
            what += f", not {FORMATS[expected].what}"
        raise InvalidInputError(f"{source}: unsupported file type ({what}; supported: {_SUPPORTED})")
    check_expansion(members, source, FORMATS[fmt].what, ctx.limits)
    return fmt



def _text_format(suffix: str, text: str) -> str:
    """The extension picks among text formats; without a known one, the first characters do."""
    fmt = SUFFIXES.get(suffix)
    if fmt is not None and FORMATS[fmt].text:
        return fmt
    head = text[:1024].lstrip().lower()
    if head.startswith("<") and re.search(r"<!doctype html|<html[\s>]", head):
        return "html"
    if head.startswith(("{", "[")):
        try:
            parse_json(text, "")
        except InvalidInputError:
            return "txt"
        return "json"
    return "txt"

