"""HTML rendered as Markdown-like text: '#' headings, '- ' list items, table rows, blank lines between blocks."""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import PreformattedString

from rag_service.errors import InvalidInputError
from rag_service.ingestion.formats.common import LoadContext, Loaded, clean, reason

_WS = re.compile(r"\s+")
_HTML_DROP = {
    "script", "style", "nav", "noscript", "template", "head", "svg", "iframe", "object", "canvas", "rt", "rp",
}
_HTML_BLOCKS = {
    "p", "div", "section", "article", "main", "aside", "blockquote", "ul", "ol", "dl", "table", "figure",
    "address", "details", "fieldset", "form", "hr", "header", "footer", "body",
}
_HTML_LINES = {"dt", "dd", "figcaption", "caption", "summary", "legend"}


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


def load_html(text: str, source: str) -> Loaded:
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
        raise InvalidInputError(f"{source}: not valid HTML ({reason(exc)})") from None
    return Loaded(clean(renderer.text()), {"title": title} if title else {})




def load_page(text: str, ctx: LoadContext) -> Loaded:
    """An uploaded HTML file (EPUB chapters and mail bodies call ``load_html`` with their own source names)."""
    return load_html(text, ctx.source)
