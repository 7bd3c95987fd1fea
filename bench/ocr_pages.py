"""Scanned-page samples for the OCR bench and tests: text laid out on an A4 page with Pillow, as a printer and a
scanner would leave it, plus the two ways scans go wrong (a page fed askew, a noisy photocopy).

``render_page`` draws the first line of ``text`` as a bold title and the rest as body paragraphs (one per line of
``text``) at 11 pt, so a page measures the same in points at any dpi. Text that does not fit on one page is refused,
not cut, so that a caller's reference text is always exactly what is on the page; ``fit_page`` picks the paragraphs
that fit. Seeded and deterministic: the same arguments give the same pixels.
"""

from __future__ import annotations

import functools
import random
import unicodedata
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from fontTools.ttLib import TTCollection, TTFont
from PIL import Image, ImageDraw, ImageFilter, ImageFont

A4_IN = (8.27, 11.69)
MARGIN_IN = 1.0  # 2.54 cm, a word processor's default
BODY_PT = 11.0
TITLE_PT = 16.0
LINE_PITCH = 1.5  # body line pitch in ems: between "single" (1.2) and "double"; common in Chinese documents
PARAGRAPH_SPACE = 0.8  # extra ems after a paragraph, as a word processor's "space after"

NOTO = Path("/usr/share/fonts/opentype/noto")
DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
# (body, title) font files and the face index in a .ttc collection (2 = the Simplified Chinese face).
FONTS: dict[str, tuple[tuple[Path, int], tuple[Path, int]]] = {
    "zh": ((NOTO / "NotoSerifCJK-Regular.ttc", 2), (NOTO / "NotoSansCJK-Bold.ttc", 2)),
    "en": ((DEJAVU / "DejaVuSerif.ttf", 0), (DEJAVU / "DejaVuSans-Bold.ttf", 0)),
}


def fonts_installed(lang: str) -> bool:
    """Whether the fonts for ``lang`` are on this machine (the tests skip without a CJK font)."""
    return all(path.is_file() for path, _ in FONTS[lang])


@functools.cache
def _font(path: Path, index: int, px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), px, index=index)


@functools.cache
def _cmap(path: Path, index: int) -> frozenset[int]:
    font = TTCollection(str(path)).fonts[index] if path.suffix == ".ttc" else TTFont(str(path))
    return frozenset(font.getBestCmap())


def drawable(text: str, lang: str) -> bool:
    """Whether every character of ``text`` has a glyph in the body font (a missing one would print as a box that no
    OCR engine could read, counted as its error)."""
    cmap = _cmap(*FONTS[lang][0])
    return all(ord(ch) in cmap or ch.isspace() for ch in text)


NO_LINE_START = frozenset("，。、；：？！）》」』”’,.;:?!)")


def _is_cjk(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


def _tokens(paragraph: str, lang: str) -> list[str]:
    """Break opportunities: words with their trailing space in English; in Chinese every wide character, with runs of
    Latin letters and digits kept whole (as Chinese typesetting does)."""
    if lang == "en":
        out: list[str] = []
        for word in paragraph.split(" "):
            if word:
                out.append(word + " ")
        return out
    out = []
    run = ""
    for ch in paragraph:
        if ch in NO_LINE_START and (run or out):  # kinsoku: closing punctuation stays at the end of a line
            if run:
                run += ch
            else:
                out[-1] += ch
        elif _is_cjk(ch):
            if run:
                out.append(run)
                run = ""
            out.append(ch)
        else:
            run += ch
            if ch == " ":
                out.append(run)
                run = ""
    if run:
        out.append(run)
    return out


def _wrap(paragraph: str, lang: str, font: ImageFont.FreeTypeFont, width: float) -> list[str]:
    lines: list[str] = []
    line = ""
    for token in _tokens(paragraph, lang):
        if line and font.getlength((line + token).rstrip()) > width:
            lines.append(line.rstrip())
            line = token.lstrip()
        else:
            line += token
        while font.getlength(line.rstrip()) > width:  # a token longer than a line (a URL): break it anywhere
            cut = len(line) - 1
            while cut > 1 and font.getlength(line[:cut]) > width:
                cut -= 1
            lines.append(line[:cut])
            line = line[cut:]
    if line.strip():
        lines.append(line.rstrip())
    return lines


def _layout(text: str, *, dpi: int, lang: str) -> list[tuple[str, ImageFont.FreeTypeFont, int]] | None:
    """(line, font, y) for every line of the page; None when the text does not fit on one page."""
    (body_path, body_index), (title_path, title_index) = FONTS[lang]
    body = _font(body_path, body_index, round(BODY_PT / 72 * dpi))
    title = _font(title_path, title_index, round(TITLE_PT / 72 * dpi))
    width = (A4_IN[0] - 2 * MARGIN_IN) * dpi
    bottom = (A4_IN[1] - MARGIN_IN) * dpi
    em = BODY_PT / 72 * dpi
    y = MARGIN_IN * dpi
    out: list[tuple[str, ImageFont.FreeTypeFont, int]] = []
    paragraphs = [p.strip() for p in text.split("\n") if p.strip()]
    for number, paragraph in enumerate(paragraphs):
        font = title if number == 0 else body
        pitch = (TITLE_PT / 72 * dpi if number == 0 else em) * LINE_PITCH
        for line in _wrap(paragraph, lang, font, width):
            if y + pitch > bottom:
                return None
            out.append((line, font, round(y)))
            y += pitch
        y += PARAGRAPH_SPACE * em
    return out


def line_count(text: str, *, dpi: int, lang: str) -> int:
    """How many lines ``render_page`` prints for ``text`` (title lines included)."""
    lines = _layout(text, dpi=dpi, lang=lang)
    if lines is None:
        raise ValueError("the text does not fit on one A4 page")
    return len(lines)


def render_page(text: str, *, dpi: int, lang: str) -> Image.Image:
    """An RGB A4 page at ``dpi`` with ``text`` printed on it: the first line a title, the others paragraphs.

    Raises ValueError when the text does not fit on one page (see ``fit_page``)."""
    lines = _layout(text, dpi=dpi, lang=lang)
    if lines is None:
        raise ValueError("the text does not fit on one A4 page")
    page = Image.new("RGB", (round(A4_IN[0] * dpi), round(A4_IN[1] * dpi)), "white")
    draw = ImageDraw.Draw(page)
    for line, font, y in lines:
        draw.text((MARGIN_IN * dpi, y), line, font=font, fill=(20, 20, 20))
    return page


def fit_page(title: str, paragraphs: Iterable[str], *, lang: str) -> str:
    """The title and as many whole paragraphs as fit on one page, then as many sentences of the next one (at 150 and
    300 dpi both, whose rounding of font sizes differs a little)."""
    def fits(candidate: str) -> bool:
        return all(_layout(candidate, dpi=dpi, lang=lang) is not None for dpi in (150, 300))

    text = title
    for paragraph in paragraphs:
        if fits(f"{text}\n{paragraph}"):
            text = f"{text}\n{paragraph}"
            continue
        stop = "。" if lang == "zh" else ". "
        sentences = [s + stop for s in paragraph.split(stop) if s]
        head = ""
        for sentence in sentences:
            if not fits(f"{text}\n{head}{sentence}".rstrip()):
                break
            head += sentence
        if head.strip():
            text = f"{text}\n{head.strip()}"
        break
    return text


def skewed(page: Image.Image, *, seed: int) -> Image.Image:
    """The page turned 2-3 degrees either way (fed askew into a scanner), white where the turn uncovers."""
    rng = random.Random(seed)
    angle = rng.uniform(2.0, 3.0) * rng.choice((-1, 1))
    return page.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor="white")


def noisy(page: Image.Image, *, seed: int) -> Image.Image:
    """A photocopy: a slight blur, grey paper and toner, and grain (gaussian noise, sigma 25 of 255)."""
    rng = np.random.default_rng(seed)
    blurred = page.convert("L").filter(ImageFilter.GaussianBlur(radius=1.0))
    pixels = np.asarray(blurred, dtype=np.float32) * 0.8 + 30  # paper ~234, toner ~46
    pixels += rng.normal(0.0, 25.0, size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L").convert("RGB")
