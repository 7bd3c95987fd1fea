"""EPUB: the chapters in reading (spine) order, each rendered from its XHTML with its own headings as Markdown '#'
lines; a chapter without a heading gets its table-of-contents title as one. No pages (an EPUB has none).

Read with zipfile and the standard library's expat parser rather than EbookLib: EbookLib is AGPL-3.0, parses with
lxml's ``recover=True``, which silently cuts a document at libxml2's depth limit instead of saying so, and reads every
member (fonts, images) into memory. Expat (2.4+) refuses entity amplification ("billion laughs") and never fetches an
external entity; the depth limit is ours (``parse_xml``).
"""

from __future__ import annotations

import io
import posixpath
import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

from rag_service.errors import InvalidInputError
from rag_service.ingestion.formats.common import LoadContext, Loaded, reason
from rag_service.ingestion.formats.html import load_html
from rag_service.text.language import has_words

# libxml2's default depth limit: real documents stay far below it (a chapter's XHTML, an ODT's nested lists), and a
# walk over a tree this deep fits Python's recursion limit.
MAX_XML_DEPTH = 256

_OPF = "{http://www.idpf.org/2007/opf}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_CONTAINER = "{urn:oasis:names:tc:opendocument:xmlns:container}"
_XMLENC = "{http://www.w3.org/2001/04/xmlenc#}"
_NCX = "{http://www.daisy.org/z3986/2005/ncx/}"
_XHTML = "{http://www.w3.org/1999/xhtml}"
_OPS_TYPE = "{http://www.idpf.org/2007/ops}type"
# Font obfuscation (IDPF, Adobe) is not DRM: it only scrambles embedded fonts, the text stays readable.
_FONT_OBFUSCATION = {"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"}
_FONT_SUFFIXES = (".ttf", ".otf", ".woff", ".woff2", ".eot")
_DOCUMENT_TYPES = {"application/xhtml+xml", "text/html", "application/x-dtbook+xml"}
_HEADING = re.compile(r"^#{1,6} \S", re.MULTILINE)


class XmlTooDeepError(Exception):
    """An XML document nested deeper than MAX_XML_DEPTH."""


def parse_xml(data: bytes) -> ET.Element:
    """The document's root, refusing nesting deeper than MAX_XML_DEPTH while parsing (before a deeper tree is built).
    Raises XmlTooDeepError, or ET.ParseError for malformed XML and entity amplification."""
    depth = 0
    root: ET.Element | None = None
    for event, element in ET.iterparse(io.BytesIO(data), events=("start", "end")):
        if event == "start":
            depth += 1
            if depth > MAX_XML_DEPTH:
                raise XmlTooDeepError
            if root is None:
                root = element
        else:
            depth -= 1
    if root is None:
        raise ET.ParseError("no root element")
    return root


def load_epub(raw: bytes, ctx: LoadContext) -> Loaded:
    """Chapters in spine order joined by blank lines; navigation documents and chapters without words (a cover
    image) are left out. metadata: title, author, chapters (how many were kept)."""
    source = ctx.source
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            return _Book(archive, ctx).load()
    except InvalidInputError:
        raise
    except XmlTooDeepError:
        raise InvalidInputError(f"{source}: the EPUB's XML is nested more than {MAX_XML_DEPTH} levels deep") from None
    except RecursionError:
        raise InvalidInputError(f"{source}: the EPUB's XML is nested too deeply") from None
    except Exception as exc:  # zipfile, expat and malformed package documents raise many types
        raise InvalidInputError(f"{source}: not a valid EPUB ({reason(exc)})") from None


class _Book:
    def __init__(self, archive: zipfile.ZipFile, ctx: LoadContext) -> None:
        self.archive = archive
        self.ctx = ctx
        self.source = ctx.source
        self.names = set(archive.namelist())

    def load(self) -> Loaded:
        self._refuse_drm()
        opf_path = self._package_path()
        opf = parse_xml(self.archive.read(opf_path))
        base = posixpath.dirname(opf_path)
        manifest: dict[str, tuple[str, str, set[str]]] = {}  # id → (member name, media type, properties)
        for item in opf.iter(f"{_OPF}item"):
            item_id, href = item.get("id"), item.get("href")
            if item_id and href:
                manifest[item_id] = (_resolve(base, href), item.get("media-type", ""),
                                     set(item.get("properties", "").split()))
        spine = opf.find(f"{_OPF}spine")
        refs = [ref.get("idref", "") for ref in spine.iter(f"{_OPF}itemref")] if spine is not None else []
        if len(refs) > self.ctx.limits.pdf_pages:
            raise InvalidInputError(f"{self.source}: {len(refs):,} parts is over the {self.ctx.limits.pdf_pages:,}"
                                    "-part limit (max_pdf_pages)")
        titles = self._toc_titles(manifest, spine.get("toc") if spine is not None else None)
        chapters: list[str] = []
        for ref in refs:
            if ref not in manifest:
                continue
            name, media_type, properties = manifest[ref]
            if "nav" in properties or media_type not in _DOCUMENT_TYPES or name not in self.names:
                continue
            text = self._chapter(name)
            if not has_words(text):
                continue  # a cover page (an image), a blank separator page
            if not _HEADING.search(text) and titles.get(name):
                text = f"# {titles[name]}\n\n{text}"
            chapters.append(text)
        metadata: dict[str, object] = {"chapters": len(chapters)}
        title = next((t for t in (_text(e) for e in opf.iter(f"{_DC}title")) if t), "")
        authors = [a for a in (_text(e) for e in opf.iter(f"{_DC}creator")) if a]
        if title:
            metadata["title"] = title
        if authors:
            metadata["author"] = ", ".join(dict.fromkeys(authors))
        return Loaded("\n\n".join(chapters), metadata)

    def _refuse_drm(self) -> None:
        """Encrypted content (Adobe ADEPT, Readium LCP, Apple FairPlay) lists its members in encryption.xml; only
        font obfuscation may be there in a readable book."""
        if "META-INF/encryption.xml" not in self.names:
            return
        root = parse_xml(self.archive.read("META-INF/encryption.xml"))
        for data in root.iter(f"{_XMLENC}EncryptedData"):
            method = data.find(f"{_XMLENC}EncryptionMethod")
            algorithm = method.get("Algorithm", "") if method is not None else ""
            target = data.find(f"{_XMLENC}CipherData/{_XMLENC}CipherReference")
            uri = unquote(target.get("URI", "")) if target is not None else ""
            if algorithm not in _FONT_OBFUSCATION or not uri.lower().endswith(_FONT_SUFFIXES):
                raise InvalidInputError(f"{self.source}: the EPUB is DRM-protected")

    def _package_path(self) -> str:
        """The OPF package document named by META-INF/container.xml (or the only .opf, for a sloppy packager)."""
        if "META-INF/container.xml" in self.names:
            container = parse_xml(self.archive.read("META-INF/container.xml"))
            for rootfile in container.iter(f"{_CONTAINER}rootfile"):
                path = unquote(rootfile.get("full-path", ""))
                if path in self.names:
                    return path
        opfs = sorted(n for n in self.names if n.lower().endswith(".opf"))
        if not opfs:
            raise InvalidInputError(f"{self.source}: not a valid EPUB (no package document)")
        return opfs[0]

    def _toc_titles(self, manifest: dict[str, tuple[str, str, set[str]]], ncx_id: str | None) -> dict[str, str]:
        """Member name → its first table-of-contents title: the EPUB 3 navigation document, then the EPUB 2 NCX.
        A table of contents that does not parse only costs the titles; the chapters still load."""
        titles: dict[str, str] = {}
        navs = [name for name, _, props in manifest.values() if "nav" in props]
        ncxs = [name for name, media, _ in manifest.values() if media == "application/x-dtbncx+xml"]
        if ncx_id in manifest:
            ncxs.insert(0, manifest[ncx_id][0])
        for name in navs[:1]:
            for link, title in self._toc_entries(name, nav=True):
                titles.setdefault(link, title)
        for name in ncxs[:1]:
            for link, title in self._toc_entries(name, nav=False):
                titles.setdefault(link, title)
        return titles

    def _toc_entries(self, name: str, nav: bool) -> Iterator[tuple[str, str]]:
        try:
            root = parse_xml(self.archive.read(name))
        except (KeyError, ET.ParseError, XmlTooDeepError):
            return
        base = posixpath.dirname(name)
        if nav:
            navs = list(root.iter(f"{_XHTML}nav"))
            tocs = [n for n in navs if "toc" in n.get(_OPS_TYPE, "").split()] or navs[:1]
            for toc in tocs[:1]:
                for link in toc.iter(f"{_XHTML}a"):
                    href, title = link.get("href"), _text(link)
                    if href and title:
                        yield _resolve(base, href), title
        else:
            for point in root.iter(f"{_NCX}navPoint"):
                label, content = point.find(f"{_NCX}navLabel/{_NCX}text"), point.find(f"{_NCX}content")
                href, title = content.get("src") if content is not None else None, _text(label)
                if href and title:
                    yield _resolve(base, href), title

    def _chapter(self, name: str) -> str:
        """A chapter's text by the HTML renderer. Well-formed XHTML is re-serialised as HTML first, so a self-closed
        ``<a id="x"/>`` or ``<title/>`` cannot swallow the text after it; XHTML that is not well-formed (an HTML
        entity such as ``&nbsp;`` without a DTD) goes to the HTML parser as it is. Too deep nesting refuses the book:
        parse_xml raises before the tree grows."""
        data = self.archive.read(name)
        try:
            root = parse_xml(data)
        except ET.ParseError:
            return load_html(_decode(data), self.source).text
        for element in root.iter():
            if isinstance(element.tag, str) and element.tag.startswith("{"):
                element.tag = element.tag.split("}", 1)[1]
            for key in [k for k in element.attrib if k.startswith("{")]:
                del element.attrib[key]
        return load_html(ET.tostring(root, encoding="unicode", method="html"), self.source).text


def _resolve(base: str, href: str) -> str:
    """The ZIP member an href (relative to ``base``, URL-escaped, maybe with a #fragment) names."""
    path = unquote(urlsplit(href).path)
    return posixpath.normpath(posixpath.join(base, path)) if path else ""


def _text(element: ET.Element | None) -> str:
    return " ".join("".join(element.itertext()).split()) if element is not None else ""


def _decode(data: bytes) -> str:
    """XHTML is UTF-8 or UTF-16 (with a byte-order mark) by the EPUB specification."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", "replace")
    return data.decode("utf-8-sig", "replace")
