"""PDF: the text layer page by page (pypdf), ruled tables as Markdown tables (pdfplumber), running headers and footers
dropped, and pages without a text layer read by OCR.

pypdf extracts text about ten times faster than pdfminer (pdfplumber's engine), so pdfplumber only opens the pages whose
content draws lines or rectangles, the only tables it finds reliably (a grid); a table without rules stays text.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pypdf

from rag_service.errors import InvalidInputError
from rag_service.ingestion.formats.common import LoadContext, Loaded, join_pages, markdown_table, reason

# A page with fewer word characters than this in its text layer is a scan (or a photo) when it holds an image: a
# scanner's PDF often carries a stray line of text (a date stamp, a barcode's digits) above the image.
OCR_BELOW_CHARS = 20
OCR_DPI = 300  # the resolution the OCR bench measured its error rates at (docs/benchmarks.md "OCR engines")
# Path-drawing operators in a page's content stream; a ruled table draws at least its four borders.
_DRAWING = re.compile(rb"(?<![A-Za-z])(?:re|l)(?![A-Za-z])")
MIN_DRAWING_OPS = 4
# pdfplumber costs ~57 ms of CPU a ruled page against pypdf's ~2 ms for text (docs/benchmarks.md "PDF tables"): at
# most this many pages are searched for tables (~17 s), so a 2,000-page ruled PDF stays inside parse_cpu_s; the pages
# after them keep their text layer, and the document's metadata says how many.
MAX_TABLE_PAGES = 300
# A line among the first or last FURNITURE_LINES of a page that appears so on at least FURNITURE_SHARE of the pages (and
# on FURNITURE_MIN_PAGES or more) is a running header or footer, printed by the layout and not written by the author.
FURNITURE_LINES = 3
FURNITURE_SHARE = 0.5
FURNITURE_MIN_PAGES = 3
FURNITURE_MAX_CHARS = 80  # running headers are short; a long line repeated at a page's top is the author's (a form)
# Lines that are only a page number in one of its common spellings; for these the number may change page to page.
_PAGE_NUMBER = re.compile(
    r"(?:page|p\.|pg\.?|第)?\s*[-–—(\[]?\s*\d{1,5}\s*(?:/\s*\d{1,5}|of\s+\d{1,5}|页|頁)?\s*[-–—)\]]?"
    r"(?:\s*(?:/|of|共)\s*\d{1,5}\s*页?)?", re.IGNORECASE)
_WORD_CHAR = re.compile(r"\w")

if TYPE_CHECKING:
    from rag_service.ingestion.ocr import OcrText


def load_pdf(raw: bytes, ctx: LoadContext) -> Loaded:
    source, limits, progress = ctx.source, ctx.limits, ctx.progress
    try:
        reader = pypdf.PdfReader(io.BytesIO(raw))
        locked = reader.is_encrypted and reader.decrypt("") == pypdf.PasswordType.NOT_DECRYPTED
        count = 0 if locked else len(reader.pages)
        if count > limits.pdf_pages:
            raise InvalidInputError(f"{source}: {count:,} pages is over the {limits.pdf_pages:,}-page limit "
                                    "(max_pdf_pages)")
        pages = [] if locked else [page.extract_text() or "" for page in reader.pages]
        ruled = [] if locked else [i for i, page in enumerate(reader.pages) if _draws_lines(page)]
        scanned = [] if locked else [i for i, page in enumerate(reader.pages)
                                     if len(_WORD_CHAR.findall(pages[i])) < OCR_BELOW_CHARS and _has_image(page)]
    except InvalidInputError:
        raise
    except pypdf.errors.DependencyError as exc:
        raise InvalidInputError(f"{source}: the PDF is encrypted ({reason(exc)})") from None
    except Exception as exc:  # pypdf raises many types on malformed input; none may escape
        raise InvalidInputError(f"{source}: not a valid PDF ({reason(exc)})") from None
    if locked:
        raise InvalidInputError(f"{source}: the PDF is encrypted")
    if len(scanned) > limits.ocr_pages:
        raise InvalidInputError(f"{source}: {len(scanned):,} scanned pages is over the {limits.ocr_pages:,}-page OCR "
                                "limit (max_ocr_pages)")
    for index, text in _with_tables(raw, ruled[:MAX_TABLE_PAGES]):
        pages[index] = text
    confidences = {}
    for done, (index, read) in enumerate(_ocr_pages(raw, scanned, source), 1):
        pages[index] = read.text
        confidences[index + 1] = round(read.confidence, 3)
        progress(done, len(scanned))
    pages = drop_furniture(pages)
    loaded = join_pages(pages)
    if not loaded.text:
        raise InvalidInputError(f"{source}: no text in the PDF (no text layer, and OCR found no words)"
                                if scanned else f"{source}: no extractable text (no text layer and no page image)")
    if len(ruled) > MAX_TABLE_PAGES:
        loaded.metadata["table_pages_not_searched"] = len(ruled) - MAX_TABLE_PAGES
    if confidences:
        kept = {n for _, n in loaded.metadata["page_starts"]}  # a page OCR found nothing on has no text
        loaded.metadata["ocr_pages"] = {page: c for page, c in confidences.items() if page in kept}
        from rag_service.ingestion.ocr import ENGINE

        loaded.metadata["ocr_engine"] = ENGINE
    return loaded


def _draws_lines(page: Any) -> bool:
    try:
        contents = page.get_contents()
        data = contents.get_data() if contents is not None else b""
    except Exception:  # an unreadable stream: pypdf already extracted what it could
        return False
    return len(_DRAWING.findall(data, 0, 4_000_000)) >= MIN_DRAWING_OPS


def _has_image(page: Any) -> bool:
    try:
        resources = page.get("/Resources")
        xobjects = resources.get_object().get("/XObject") if resources is not None else None
        if xobjects is None:
            return False
        return any(x.get_object().get("/Subtype") in ("/Image", "/Form") for x in xobjects.get_object().values())
    except Exception:
        return False


def _with_tables(raw: bytes, indexes: list[int]) -> Iterator[tuple[int, str]]:
    """(page index, text) for the pages where pdfplumber finds a ruled table: the text outside the tables with each
    table as a Markdown table in its place, separated by blank lines so the splitter keeps it whole."""
    if not indexes:
        return
    import pdfplumber  # only PDFs that draw lines pay for importing pdfminer

    try:
        with pdfplumber.open(io.BytesIO(raw)) as pdf:
            for index in indexes:
                page = pdf.pages[index]
                tables = [t for t in page.find_tables() if len(t.rows) >= 2 and len(t.rows[0].cells) >= 2]
                if not tables:
                    page.close()  # pdfplumber keeps each page's parsed objects until then
                    continue
                boxes = [t.bbox for t in tables]

                def outside(obj: dict[str, Any], boxes: list[tuple[float, float, float, float]] = boxes) -> bool:
                    x = (obj["x0"] + obj["x1"]) / 2
                    y = (obj["top"] + obj["bottom"]) / 2
                    return not any(x0 <= x <= x1 and top <= y <= bottom for x0, top, x1, bottom in boxes)

                blocks: list[tuple[float, str]] = [
                    (line["top"], line["text"]) for line in page.filter(outside).extract_text_lines()]
                for table in tables:
                    rows = [[cell or "" for cell in row] for row in table.extract()]
                    blocks.append((table.bbox[1], "\n" + markdown_table(rows) + "\n"))
                blocks.sort(key=lambda block: block[0])
                page.close()
                yield index, "\n".join(text for _, text in blocks)
    except Exception:  # pdfminer fails on some files pypdf reads: keep pypdf's text for those pages
        return


def _ocr_pages(raw: bytes, indexes: list[int], source: str) -> Iterator[tuple[int, OcrText]]:
    if not indexes:
        return
    import pypdfium2

    from rag_service.ingestion.ocr import OcrUnavailableError, recognize

    try:
        pdf = pypdfium2.PdfDocument(raw)
    except Exception as exc:
        raise InvalidInputError(f"{source}: cannot render the PDF's scanned pages ({reason(exc)})") from None
    try:
        for index in indexes:
            try:
                image = pdf[index].render(scale=OCR_DPI / 72).to_pil()
            except Exception as exc:
                raise InvalidInputError(f"{source}: cannot render page {index + 1} for OCR ({reason(exc)})") from None
            try:
                yield index, recognize(image)
            except OcrUnavailableError as exc:
                raise InvalidInputError(f"{source}: page {index + 1} needs OCR, which cannot run on this server "
                                        f"({exc})") from None
    finally:
        pdf.close()


def _furniture_key(line: str) -> str:
    """Lines compared across pages: whitespace squeezed, and a bare page number in any spelling is one key."""
    squeezed = " ".join(line.split())
    return "#page-number#" if _PAGE_NUMBER.fullmatch(squeezed) else squeezed.casefold()


def drop_furniture(pages: list[str]) -> list[str]:
    """Remove running headers, footers and page numbers: lines at a page's top or bottom that recur on most pages."""
    edges: list[list[tuple[int, str]]] = []
    seen: Counter[str] = Counter()
    for text in pages:
        lines = text.split("\n")
        filled = [i for i, line in enumerate(lines) if line.strip()]
        edge = sorted(set(filled[:FURNITURE_LINES] + filled[-FURNITURE_LINES:]))
        keyed = [(i, _furniture_key(lines[i])) for i in edge  # a table's header row repeats on purpose
                 if len(lines[i].strip()) <= FURNITURE_MAX_CHARS and not lines[i].lstrip().startswith("|")]
        edges.append(keyed)
        seen.update({key for _, key in keyed})
    with_text = sum(1 for text in pages if text.strip())
    needed = max(FURNITURE_MIN_PAGES, FURNITURE_SHARE * with_text)
    furniture = {key for key, n in seen.items() if n >= needed}
    if not furniture:
        return pages
    out = []
    for text, keyed in zip(pages, edges, strict=True):
        drop = {i for i, key in keyed if key in furniture}
        out.append("\n".join(line for i, line in enumerate(text.split("\n")) if i not in drop))
    return out
