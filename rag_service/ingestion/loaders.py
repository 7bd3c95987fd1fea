"""Turn a file's bytes into a cleaned ``Document``.

The format is judged by content before the extension is trusted: a PDF named ``.txt`` is still a PDF, and junk named
``.pdf`` fails with a clear message instead of a parser traceback. Every failure a user can cause is an
``InvalidInputError`` whose one-line message starts with the source name; no parser exception escapes.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import json
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docx
import pypdf
from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import PreformattedString
from charset_normalizer import from_bytes
from docx.table import Table
from docx.text.paragraph import Paragraph

from rag_service.errors import InvalidInputError
from rag_service.records import Document
from rag_service.settings import Settings
from rag_service.text.language import has_words

FORMATS = ("txt", "md", "html", "pdf", "docx", "csv", "json")
MAX_DOCX_RATIO = 200  # zip members above DOCX_RATIO_MIN_BYTES: XML compresses 10-30:1, a bomb far more
DOCX_RATIO_MIN_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class LoadLimits:
    """What one file may cost to parse (Settings: max_document_expansion_mb, max_pdf_pages)."""

    expanded_bytes: int = int(Settings.model_fields["max_document_expansion_mb"].default * 1024 * 1024)
    pdf_pages: int = Settings.model_fields["max_pdf_pages"].default

    @classmethod
    def of(cls, settings: Settings) -> LoadLimits:
        return cls(int(settings.max_document_expansion_mb * 1024 * 1024), settings.max_pdf_pages)

_SUFFIX_FORMATS = {
    ".txt": "txt", ".text": "txt", ".log": "txt", ".md": "md", ".markdown": "md",
    ".html": "html", ".htm": "html", ".xhtml": "html", ".csv": "csv", ".tsv": "csv",
    ".json": "json", ".jsonl": "json", ".ndjson": "json",
}
_SUPPORTED = ", ".join(FORMATS)
# Longest first: the UTF-32-LE mark begins with the UTF-16-LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)
_CHINESE_CODECS = {"gb2312", "gbk", "gb18030", "hz", "big5", "big5hkscs", "cp950"}
_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\v\f\r\x1b") + b"\x7f"
_MAGIC = (
    (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy or password-protected Office file (.doc, .xls, .ppt)"),
    (b"\x1f\x8b", "a gzip archive"), (b"Rar!", "a RAR archive"), (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
    (b"{\\rtf", "an RTF document"), (b"\x7fELF", "an executable"),
)
_NOT_TEXT_BY_SUFFIX = {".pdf": "not a valid PDF (no %PDF- header)", ".docx": "not a valid DOCX (not a ZIP archive)"}
_CLEAN_TABLE = {
    **{c: None for c in _CONTROL_BYTES + b"\x1b"}, 0xFEFF: None,
    **{ord(c): "\n" for c in "\r\v\f\x85\u2028\u2029"},
}
_WS = re.compile(r"\s+")
_SURROGATE = re.compile("[\ud800-\udfff]")
_BLANK_RUNS = re.compile(r"\n{3,}")
_HEADING_STYLE = re.compile(r"heading ([1-6])", re.IGNORECASE)
_HTML_DROP = {
    "script", "style", "nav", "noscript", "template", "head", "svg", "iframe", "object", "canvas", "rt", "rp",
}
_HTML_BLOCKS = {
    "p", "div", "section", "article", "main", "aside", "blockquote", "ul", "ol", "dl", "table", "figure",
    "address", "details", "fieldset", "form", "hr", "header", "footer", "body",
}
_HTML_LINES = {"dt", "dd", "figcaption", "caption", "summary", "legend"}


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


def detect_encoding(raw: bytes, source: str) -> tuple[str, str]:
    """(text, codec name). Byte-order marks and strict UTF-8 are certain, so they go first; charset-normalizer
    confuses short GBK and Big5, so for a Chinese guess GB18030 then Big5 are tried strictly and the first decoding
    without private-use or unassigned characters wins (a wrong CJK codec produces those)."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(encoding), encoding
            except UnicodeDecodeError as exc:
                raise InvalidInputError(f"{source}: not valid {encoding} text despite its byte-order mark "
                                        f"({exc.reason} at byte {exc.start})") from None
    if _looks_binary(raw):
        raise InvalidInputError(f"{source}: looks binary, not text")
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    best = from_bytes(raw).best()
    guess = codecs.lookup(best.encoding).name if best is not None else None
    candidates = ["gb18030", "big5"]
    if guess in _CHINESE_CODECS:
        candidates.append(guess)
    elif guess is not None:
        candidates.insert(0, guess)
    for encoding in dict.fromkeys(candidates):
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        if _plausible(text):
            return text, encoding
    raise InvalidInputError(f"{source}: cannot detect the text encoding (tried UTF-8, GB18030, Big5, others)")


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


def load(path: Path, source: str, raw: bytes, *, json_text_field: str = "text",
         limits: LoadLimits = LoadLimits()) -> Document:
    if not raw.strip():
        raise InvalidInputError(f"{source}: no text in the file")
    fmt = _binary_format(path, raw, source, limits)
    metadata: dict[str, Any]
    if fmt == "pdf":
        text, metadata = _load_pdf(raw, source, limits)
    elif fmt == "docx":
        text, metadata = _load_docx(raw, source)
    else:
        suffix = path.suffix.lower()
        if suffix in _NOT_TEXT_BY_SUFFIX and _looks_binary(raw):
            raise InvalidInputError(f"{source}: {_NOT_TEXT_BY_SUFFIX[suffix]}")
        decoded, encoding = detect_encoding(raw, source)
        fmt = _text_format(suffix, decoded)
        if fmt == "html":
            text, metadata = _load_html(decoded, source)
        elif fmt == "csv":
            text, metadata = _load_csv(decoded, source)
        elif fmt == "json":
            text, metadata = _load_json(decoded, source, json_text_field)
        else:
            text, metadata = clean(decoded), {}
        metadata["encoding"] = encoding
    if not has_words(text):  # nothing but separators, markers or digits
        raise InvalidInputError(f"{source}: no text in the file")
    sha = hashlib.sha256(raw).hexdigest()
    return Document(id=sha[:16], source=source, text=text, sha256=sha, metadata={"format": fmt, **metadata})


def _reason(exc: BaseException) -> str:
    """Library messages can span lines or be empty; a user-facing message must be one short line."""
    text = " ".join(str(exc).split())[:200]
    return text or type(exc).__name__


def _human_size(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            break
        value /= 1024
    return f"{value:.1f}".removesuffix(".0") + f" {unit}"


def _looks_binary(raw: bytes) -> bool:
    """NUL bytes or many C0 controls mean binary; BOM-marked UTF-16/32 is text despite its NULs."""
    if raw.startswith(tuple(bom for bom, _ in _BOMS)):
        return False
    sample = raw[:8192]
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    return b"\0" in sample or controls > len(sample) // 20


def _plausible(text: str) -> bool:
    sample = text[:65536]
    bad = sum(
        1 for ch in sample
        if unicodedata.category(ch) in ("Co", "Cn", "Cs") or ch == "\ufffd"
        or (unicodedata.category(ch) == "Cc" and ch not in "\t\n\v\f\r\x1b")
    )
    return bad <= len(sample) // 100


def _binary_format(path: Path, raw: bytes, source: str, limits: LoadLimits) -> str | None:
    """'pdf' or 'docx' when the bytes say so, None for anything that may be text; other known binaries raise."""
    if raw[:1024].lstrip().startswith(b"%PDF-"):
        return "pdf"
    if raw.startswith(b"PK\x03\x04"):
        return _check_docx_zip(path, raw, source, limits)
    for magic, what in _MAGIC:
        if raw.startswith(magic):
            raise InvalidInputError(f"{source}: unsupported file type ({what}; supported: {_SUPPORTED})")
    return None


def _check_docx_zip(path: Path, raw: bytes, source: str, limits: LoadLimits) -> str:
    """Inspect the archive's directory before any parser inflates it: a small DOCX can hide gigabytes."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        what = "not a valid DOCX" if path.suffix.lower() == ".docx" else "a damaged ZIP archive"
        raise InvalidInputError(f"{source}: {what} ({_reason(exc)})") from None
    names = {m.filename for m in members}
    if "word/document.xml" not in names:
        kinds = (("xl/", "an Excel workbook"), ("ppt/", "a PowerPoint file"), ("content.xml", "an OpenDocument file"))
        what = next((kind for prefix, kind in kinds if any(n.startswith(prefix) for n in names)), "a ZIP archive")
        raise InvalidInputError(f"{source}: unsupported file type ({what}, not a DOCX; supported: {_SUPPORTED})")
    total = sum(m.file_size for m in members)
    if total > limits.expanded_bytes:
        raise InvalidInputError(f"{source}: refusing a DOCX that decompresses to {_human_size(total)} "
                                f"(limit {_human_size(limits.expanded_bytes)})")
    for m in members:
        if m.file_size > DOCX_RATIO_MIN_BYTES and m.file_size > MAX_DOCX_RATIO * max(m.compress_size, 1):
            raise InvalidInputError(
                f"{source}: refusing a DOCX whose member {m.filename} expands {m.file_size // max(m.compress_size, 1)}"
                f":1 to {_human_size(m.file_size)} (limit {MAX_DOCX_RATIO}:1 above {_human_size(DOCX_RATIO_MIN_BYTES)})"
            )
    return "docx"


def _load_pdf(raw: bytes, source: str, limits: LoadLimits) -> tuple[str, dict[str, Any]]:
    """Pages are cleaned one by one and joined with a blank line, so each page's offset in the final text is known
    exactly; the joined text is already clean and must not be cleaned again."""
    try:
        reader = pypdf.PdfReader(io.BytesIO(raw))
        locked = reader.is_encrypted and reader.decrypt("") == pypdf.PasswordType.NOT_DECRYPTED
        count = 0 if locked else len(reader.pages)
        if count > limits.pdf_pages:
            raise InvalidInputError(f"{source}: {count:,} pages is over the {limits.pdf_pages:,}-page limit "
                                    "(max_pdf_pages)")
        pages = [] if locked else [page.extract_text() or "" for page in reader.pages]
    except InvalidInputError:
        raise
    except pypdf.errors.DependencyError as exc:
        raise InvalidInputError(f"{source}: the PDF is encrypted ({_reason(exc)})") from None
    except Exception as exc:  # pypdf raises many types on malformed input; none may escape
        raise InvalidInputError(f"{source}: not a valid PDF ({_reason(exc)})") from None
    if locked:
        raise InvalidInputError(f"{source}: the PDF is encrypted")
    parts: list[str] = []
    page_starts: list[list[int]] = []
    offset = 0
    for number, page_text in enumerate(pages, 1):
        cleaned = clean(page_text)
        if not cleaned:
            continue
        if parts:
            offset += 2
        page_starts.append([offset, number])
        parts.append(cleaned)
        offset += len(cleaned)
    if not parts:
        raise InvalidInputError(f"{source}: no extractable text (scanned PDF? OCR is not supported)")
    return "\n\n".join(parts), {"pages": len(pages), "page_starts": page_starts}


def _load_docx(raw: bytes, source: str) -> tuple[str, dict[str, Any]]:
    """Heading styles become Markdown '#' lines so a Markdown-aware splitter can cut at them."""
    try:
        blocks = [_docx_block(item) for item in docx.Document(io.BytesIO(raw)).iter_inner_content()]
    except Exception as exc:  # python-docx, lxml and zipfile raise many types on malformed input
        raise InvalidInputError(f"{source}: not a valid DOCX ({_reason(exc)})") from None
    out: list[str] = []
    previous_is_item = False
    for text, is_item in blocks:
        if text:
            if out:
                out.append("\n" if is_item and previous_is_item else "\n\n")
            out.append(text)
            previous_is_item = is_item
    return clean("".join(out)), {}


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


def _text_format(suffix: str, text: str) -> str:
    """The extension picks among text formats; without a known one, the first characters do."""
    if suffix in _SUFFIX_FORMATS:
        return _SUFFIX_FORMATS[suffix]
    head = text[:1024].lstrip().lower()
    if head.startswith("<") and re.search(r"<!doctype html|<html[\s>]", head):
        return "html"
    if head.startswith(("{", "[")):
        try:
            _parse_json(text, "")
        except InvalidInputError:
            return "txt"
        return "json"
    return "txt"


class _HtmlText:
    """Renders HTML as Markdown-like text: '#' headings, '- ' list items, blank lines between blocks."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self._trailing = 0  # newlines at the end of the text so far: a break is O(1), not a scan back

    def _add(self, text: str) -> None:
        body = text.rstrip("\n")
        self._trailing = self._trailing + len(text) if not body else len(text) - len(body)
        self.parts.append(text)

    def text(self) -> str:
        return "".join(self.parts)

    def walk(self, node: Tag, pre: bool = False) -> None:
        for child in node.children:
            if isinstance(child, Tag):
                self._tag(child, pre)
            elif isinstance(child, NavigableString) and not isinstance(child, PreformattedString):
                self._string(str(child), pre)

    def _string(self, text: str, pre: bool) -> None:
        if not pre:
            text = _WS.sub(" ", text)
            if not self.parts or self.parts[-1][-1] in " \n":
                text = text.lstrip(" ")
        if text:
            self._add(text)

    def _break(self, newlines: int) -> None:
        """End the current line or paragraph; adjacent blocks share one break instead of stacking theirs."""
        if self.parts and self._trailing < newlines:
            self._add("\n" * (newlines - self._trailing))

    def _block(self, text: str, newlines: int) -> None:
        if text:
            self._break(newlines)
            self._add(text)
            self._break(newlines)

    def _tag(self, tag: Tag, pre: bool) -> None:
        name = tag.name
        if name in _HTML_DROP or (name in ("header", "footer") and tag.find_parent("article") is None):
            return  # page chrome; an article's own header usually holds its title, so that one is kept
        if name == "br":
            self._add("\n")
        elif re.fullmatch(r"h[1-6]", name):
            line = _inline(tag)
            self._block("#" * int(name[1]) + " " + line if line else "", 2)
        elif name == "li":
            inner = _HtmlText()
            inner.walk(tag, pre)
            body = "\n".join(filter(None, (line.strip() for line in inner.text().split("\n"))))
            self._block("- " + body if body else "", 1)
        elif name == "tr":
            cells = [_inline(cell) for cell in tag.find_all(("td", "th"), recursive=False)]
            self._block(" | ".join(cells) if any(cells) else "", 1)
        elif name == "pre":
            self._break(2)
            self.walk(tag, True)
            self._break(2)
        elif name in _HTML_BLOCKS or name in _HTML_LINES:
            newlines = 2 if name in _HTML_BLOCKS else 1
            self._break(newlines)
            self.walk(tag, pre)
            self._break(newlines)
        else:
            self.walk(tag, pre)


def _inline(tag: Tag) -> str:
    inner = _HtmlText()
    inner.walk(tag)
    return " ".join(inner.text().split())


def _load_html(text: str, source: str) -> tuple[str, dict[str, Any]]:
    """Parsed by libxml2 (lxml): linear on every malformed input tried, where Python's html.parser (3.11) is
    quadratic on unclosed comments, start tags and marked sections, and bs4's use of it on void elements followed
    by end tags (docs/benchmarks.md, bench/html_bench.py). It also follows the HTML rules for implied end tags
    (an unclosed <p> ends at a block), where html.parser ran its text into the next cell's."""
    try:
        soup = BeautifulSoup(text, "lxml")
        title = " ".join(soup.title.get_text().split()) if soup.title is not None else ""
        renderer = _HtmlText()
        renderer.walk(soup)
    except RecursionError:
        raise InvalidInputError(f"{source}: the HTML is nested too deeply") from None
    except Exception as exc:  # a parser may reject malformed markup with assorted exceptions
        raise InvalidInputError(f"{source}: not valid HTML ({_reason(exc)})") from None
    return clean(renderer.text()), ({"title": title} if title else {})


def _csv_delimiter(text: str) -> str:
    """csv.Sniffer guesses wildly on small files; the delimiter that splits the header widest and the most rows to
    the header's width is a steadier choice."""
    best, best_score = ",", (0, 0)
    sample = text[:20000]
    for delimiter in (",", ";", "\t"):
        try:
            rows = [r for r in itertools.islice(csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter), 30)
                    if r]
        except csv.Error:
            continue
        width = len(rows[0]) if rows else 0
        score = (sum(len(r) == width for r in rows), width)
        if width > 1 and score > best_score:
            best, best_score = delimiter, score
    return best


def _load_csv(text: str, source: str) -> tuple[str, dict[str, Any]]:
    """Each row becomes one record of 'header: value' lines, so a chunk of it still says what each value is."""
    delimiter = _csv_delimiter(text)
    try:
        rows = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if any(c.strip() for c in r)]
    except csv.Error as exc:
        raise InvalidInputError(f"{source}: not valid CSV ({_reason(exc)})") from None
    if not rows:
        raise InvalidInputError(f"{source}: no text in the file")
    header = [name.strip() for name in rows[0]]
    records = []
    for row in rows[1:]:
        lines = [
            f"{header[i] if i < len(header) and header[i] else f'column {i + 1}'}: {value.strip()}"
            for i, value in enumerate(row) if value.strip()
        ]
        records.append("\n".join(lines))
    if not records:
        raise InvalidInputError(f"{source}: only a header row, no data rows")
    return clean("\n\n".join(records)), {"records": len(records), "delimiter": delimiter}


def _json_error(exc: ValueError | RecursionError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    return "nested too deeply" if isinstance(exc, RecursionError) else _reason(exc)


def _parse_json(text: str, source: str) -> list[Any]:
    """A whole JSON document (array or single value), or else JSON Lines when the first line parses on its own."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        whole_error = _json_error(exc)
    else:
        return data if isinstance(data, list) else [data]
    records: list[Any] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except (ValueError, RecursionError) as exc:
            if records:
                raise InvalidInputError(f"{source}: line {n} is not valid JSON ({_json_error(exc)})") from None
            break
    if not records:
        raise InvalidInputError(f"{source}: not valid JSON ({whole_error})")
    return records


def _load_json(text: str, source: str, field: str) -> tuple[str, dict[str, Any]]:
    objects = [r for r in _parse_json(text, source) if isinstance(r, dict)]
    if not objects:
        raise InvalidInputError(f"{source}: expected a JSON object, an array of objects or JSON Lines of objects")
    values = (o.get(field) for o in objects)
    records = [clean(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)) for v in values if v is not None]
    records = [r for r in records if r]
    if not records:
        keys = list(dict.fromkeys(k for o in objects for k in o))
        shown = ", ".join(keys[:20]) + (", ..." if len(keys) > 20 else "")
        raise InvalidInputError(f"{source}: no record has a non-empty '{field}' field (keys found: {shown or 'none'})")
    return "\n\n".join(records), {"records": len(records)}
