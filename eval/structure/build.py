"""Build the structure benchmark's binary documents from their text sources, then check the question file.

    python eval/structure/build.py            # write docs/*.pdf and docs/*.docx from src/, then check
    python eval/structure/build.py --check    # only check docs/ against questions.jsonl

Sources live in ``src/<name>.<pdf|docx>.txt``, one rendered line or paragraph per line:

- ``!B text``: a bold line (a heading or title as a person would format it: no heading style, no Markdown);
- ``!L text``: a DOCX paragraph in Word's "List Bullet" style (the PDF prints it with a bullet);
- ``| a | b |``: consecutive such lines form a table (DOCX); the PDF prints them as they are;
- anything else: a plain paragraph (DOCX) or line (PDF); blank lines only add space.

PDFs are set in Noto Sans CJK SC (``fonts-noto-cjk``; the one font covers Latin and Chinese; the glyphs used are
subset and converted to TrueType, see ``_truetype_subset``) with fpdf2, DOCX files with python-docx. Dates and ZIP
timestamps are pinned, so rebuilding unchanged sources gives identical bytes.

The check loads every document through the project's own loaders (``rag_service.ingestion.loaders.load``,
as ``rag ingest``
does) and requires each question's gold span to occur exactly once in its document's extracted text and in no
other document and to be 10-80 characters long, its ``question_line`` to occur before the span, and every document
to hold 3,000-12,000 characters.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import sys
import tempfile
import zipfile
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
DOCS = HERE / "docs"
QUESTIONS = HERE / "questions.jsonl"
FONT_DIR = Path("/usr/share/fonts/opentype/noto")
FONT_INDEX = 2  # Noto Sans CJK SC inside the .ttc collections
PINNED = dt.datetime(2024, 6, 1, 12, 0, 0, tzinfo=dt.UTC)
MIN_CHARS, MAX_CHARS = 3000, 12000
MIN_SPAN, MAX_SPAN = 10, 80


def _kind(line: str) -> tuple[str, str]:
    """(kind, text) of a source line: bold, item, row or plain."""
    if line.startswith("!B "):
        return "bold", line[3:]
    if line.startswith("!L "):
        return "item", line[3:]
    if line.startswith("|") and line.rstrip().endswith("|"):
        return "row", line.strip()
    return "plain", line


def _truetype_subset(collection: Path, text: str, target: Path) -> None:
    """The glyphs ``text`` needs from one font of a CFF-flavoured collection, converted to TrueType outlines.

    fpdf2 embeds a CID-keyed CFF font with an embedded encoding CMap, which pypdf (the project's PDF loader)
    does not read: every code above 255 comes out as two wrong characters. A TrueType font is embedded with
    the standard Identity-H encoding, which every extractor understands."""
    from fontTools import subset
    from fontTools.pens.cu2quPen import Cu2QuPen
    from fontTools.pens.ttGlyphPen import TTGlyphPen
    from fontTools.ttLib import TTFont, newTable

    font = TTFont(str(collection), fontNumber=FONT_INDEX, recalcTimestamp=False)
    options = subset.Options()
    options.desubroutinize = True
    options.layout_features = []
    options.notdef_outline = True
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=text)
    subsetter.subset(font)
    order = font.getGlyphOrder()
    glyphs = font.getGlyphSet()
    glyf = newTable("glyf")
    glyf.glyphOrder, glyf.glyphs = order, {}
    for name in order:
        pen = TTGlyphPen(glyphs)
        glyphs[name].draw(Cu2QuPen(pen, 1.0, reverse_direction=True))
        glyf[name] = pen.glyph()
    font["glyf"], font["loca"] = glyf, newTable("loca")
    for tag in ("CFF ", "VORG"):
        if tag in font:
            del font[tag]
    maxp = font["maxp"]
    maxp.tableVersion = 0x00010000
    for field in ("maxTwilightPoints", "maxStorage", "maxFunctionDefs", "maxInstructionDefs", "maxStackElements",
                  "maxSizeOfInstructions", "maxComponentElements"):
        setattr(maxp, field, 0)
    maxp.maxZones = 1
    post = font["post"]
    post.formatType, post.extraNames, post.mapping = 2.0, [], {}
    font["head"].glyphDataFormat = 0
    font.sfntVersion = "\x00\x01\x00\x00"
    font.save(str(target))


def build_pdf(source: Path, target: Path) -> None:
    from fpdf import FPDF

    regular, bold = FONT_DIR / "NotoSansCJK-Regular.ttc", FONT_DIR / "NotoSansCJK-Bold.ttc"
    if not regular.is_file() or not bold.is_file():
        raise SystemExit(f"{regular} and {bold} are needed for the PDFs (apt-get install fonts-noto-cjk)")
    lines = source.read_text(encoding="utf-8").splitlines()
    pdf = FPDF(format="A4")
    pdf.set_creation_date(PINNED)
    pdf.set_title(source.name.removesuffix(".pdf.txt"))
    pdf.set_auto_page_break(auto=True, margin=15)
    with tempfile.TemporaryDirectory() as tmp:
        text = "".join(lines) + "• "
        for style, collection in (("", regular), ("B", bold)):
            ttf = Path(tmp) / f"noto{style}.ttf"
            _truetype_subset(collection, text, ttf)
            pdf.add_font("noto", style, str(ttf))
        pdf.add_page()
        for line in lines:
            if not line.strip():
                pdf.ln(3)
                continue
            kind, body = _kind(line)
            if kind == "bold":
                pdf.set_font("noto", "B", 12)
                pdf.ln(2)
            else:
                pdf.set_font("noto", "", 10)
                body = "• " + body if kind == "item" else body
            pdf.multi_cell(0, 5.5, body, new_x="LMARGIN", new_y="NEXT")
        target.write_bytes(bytes(pdf.output()))


def build_docx(source: Path, target: Path) -> None:
    import docx
    from docx.shared import Pt

    document = docx.Document()
    props = document.core_properties
    props.author = props.last_modified_by = "structure benchmark"
    props.created = props.modified = PINNED.replace(tzinfo=None)
    props.revision = 1
    rows: list[list[str]] = []

    def flush_table() -> None:
        if rows:
            table = document.add_table(rows=len(rows), cols=max(len(r) for r in rows))
            table.style = "Table Grid"
            for r, cells in enumerate(rows):
                for c, cell in enumerate(cells):
                    table.cell(r, c).text = cell
            rows.clear()

    for line in source.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        kind, text = _kind(line)
        if kind == "row":
            rows.append([cell.strip() for cell in text.strip("|").split("|")])
            continue
        flush_table()
        if kind == "bold":
            run = document.add_paragraph().add_run(text)
            run.bold = True
            run.font.size = Pt(13)
        elif kind == "item":
            document.add_paragraph(text, style="List Bullet")
        else:
            document.add_paragraph(text)
    flush_table()
    buffer = io.BytesIO()
    document.save(buffer)
    target.write_bytes(_pin_zip(buffer.getvalue()))


def _pin_zip(raw: bytes) -> bytes:
    """The same archive with every member's timestamp pinned, so the bytes do not depend on when it was built."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            pinned = zipfile.ZipInfo(info.filename, date_time=PINNED.timetuple()[:6])
            pinned.compress_type = zipfile.ZIP_DEFLATED
            pinned.external_attr = info.external_attr
            dst.writestr(pinned, src.read(info.filename))
    return out.getvalue()


def build() -> list[Path]:
    built = []
    for source in sorted(SRC.glob("*.txt")):
        name, fmt = source.name.removesuffix(".txt").rsplit(".", 1)
        target = DOCS / f"{name}.{fmt}"
        if fmt == "pdf":
            build_pdf(source, target)
        elif fmt == "docx":
            build_docx(source, target)
        else:
            raise SystemExit(f"{source}: expected <name>.pdf.txt or <name>.docx.txt")
        built.append(target)
    return built


def extracted_texts() -> dict[str, str]:
    """Source name as ``rag ingest`` names it (``docs/<file>``) -> the text the loaders extract."""
    from rag_service.ingestion.loaders import load
    from rag_service.ingestion.pipeline import discover

    return {source: load(file, source, file.read_bytes()).text for file, source in discover([DOCS])}


def check() -> list[str]:
    """Problems with the documents or the questions; empty when the benchmark is consistent."""
    texts = extracted_texts()
    problems = [f"{source}: {len(text):,} characters, outside {MIN_CHARS:,}-{MAX_CHARS:,}"
                for source, text in texts.items() if not MIN_CHARS <= len(text) <= MAX_CHARS]
    ids: Counter[str] = Counter()
    rows = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        qid, doc, spans = row["id"], row["doc"], row["gold_substrings"]
        ids[qid] += 1
        if doc not in texts:
            problems.append(f"{qid}: unknown document {doc}")
            continue
        if len(spans) != 1:
            problems.append(f"{qid}: expected exactly one gold span, got {len(spans)}")
            continue
        span = spans[0]
        if not MIN_SPAN <= len(span) <= MAX_SPAN:
            problems.append(f"{qid}: gold span of {len(span)} characters, outside {MIN_SPAN}-{MAX_SPAN}")
        if texts[doc].count(span) != 1:
            problems.append(f"{qid}: gold span occurs {texts[doc].count(span)} times in {doc}: {span!r}")
        elsewhere = [source for source, text in texts.items() if source != doc and span in text]
        if elsewhere:
            problems.append(f"{qid}: gold span also occurs in {', '.join(elsewhere)}")
        line = row.get("question_line", "")
        if not line or texts[doc].rfind(line, 0, max(texts[doc].find(span), 0)) < 0:
            problems.append(f"{qid}: question_line must occur in {doc} before the gold span: {line!r}")
        if row["lang"] not in ("zh", "en"):
            problems.append(f"{qid}: lang must be zh or en")
    problems += [f"{qid}: duplicate id" for qid, n in ids.items() if n > 1]
    by_doc = Counter(row["doc"] for row in rows)
    by_lang = Counter(row["lang"] for row in rows)
    for source, text in texts.items():
        print(f"{source}: {len(text):,} characters, {by_doc[source]} questions", file=sys.stderr)
    print(f"{len(rows)} questions: " + ", ".join(f"{lang} {n}" for lang, n in sorted(by_lang.items())),
          file=sys.stderr)
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check docs/ against questions.jsonl")
    args = parser.parse_args()
    if not args.check:
        for path in build():
            print(f"wrote {path.relative_to(HERE)} ({path.stat().st_size:,} bytes)", file=sys.stderr)
    problems = check()
    for problem in problems:
        print(f"PROBLEM {problem}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
