"""Splitters: one contract, ``split(Document) -> list[Chunk]``, and a registry by name.

Every splitter works on offsets into the cleaned document text, so a chunk's ``text`` is always exactly
``doc.text[start:end]`` (citations and highlighting can trust the offsets). Sizes and overlaps are
measured with ``length``: characters by default, or the embedder's token counter when a knowledge base
counts in tokens.

- ``recursive``: LangChain's recursive splitter (paragraphs, lines, sentence ends, clauses, words, characters);
- ``sentence``: whole sentences packed up to the size, the overlap being whole trailing sentences;
- ``markdown``: one ATX-heading section at a time (``metadata["headings"]``), a big section by sentences;
- ``structure``: the same for structure without Markdown (question lines, numbered and title lines, lists),
  tables of contents left out;
- ``semantic``: sentences grouped by topic (a dip in adjacent embedding similarity), then by size;
- ``parent_child``: small sentence chunks to match, each pointing to a big parent chunk to answer from.
"""

from __future__ import annotations

import inspect
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
from langchain_text_splitters import RecursiveCharacterTextSplitter

from rag_service.errors import ConfigError
from rag_service.records import Chunk, Document
from rag_service.text.tokenize import has_cjk

Length = Callable[[str], int]
Embed = Callable[[list[str]], np.ndarray]
Span = tuple[int, int]  # [start, end) into the document text

# Paragraphs, lines, then sentence ends (Chinese full-width first), clauses, words, characters.
SEPARATORS = ["\n\n", "\n", "。", "！", "？", "；", "…", ". ", "! ", "? ", "; ", "，", ", ", " ", ""]

# Document metadata too bulky to copy into every chunk (the pipeline maps offsets to pages itself).
_BULKY_METADATA = frozenset({"page_starts"})

# A closing quote or bracket right after a sentence end belongs to that sentence.
_CLOSERS = "”’」』)）\"'"
_SENTENCE_END = re.compile(
    rf"[。！？；…]+[{_CLOSERS}]*"  # full-width ends always end a sentence
    rf"|[.!?;]+[{_CLOSERS}]*(?=\s|$)"  # ASCII ends only before whitespace or the end: not 3.14, not a.b
    rf"|[!?;]+[{_CLOSERS}]*(?=[^\x00-\x7f{_CLOSERS}])"  # half-width !?; typed inside Chinese text
)
_BLANK_LINE = re.compile(r"\n\s*\n")
_WORD_BEFORE_DOT = re.compile(r"[A-Za-z.]+$")
_INITIALS = re.compile(r"(?:[A-Za-z]\.)*[A-Za-z]")  # J. / e.g. / i.e. / U.S.
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "fig", "cf", "approx"})

# A code fence: three to eight backticks or tildes. A longer run ("~~~~~~~~~~~~~~~~~~~~" across a scraped page) is a
# separator line, not the start of a code block that would swallow the page's structure.
_FENCE = re.compile(r" {0,3}(`{3,8}|~{3,8})(?![`~])")
# The closing "##" run is cut in code: a lazy title followed by optional blank runs backtracked quadratically on a
# long heading line (a 1 MB file of such lines took 19 s).
_HEADING = re.compile(r" {0,3}(#{1,6})[ \t]+(\S.*)")


def _heading_title(raw: str) -> str:
    """A heading's text without trailing blanks or a closing run of '#' that follows a blank ("Title ##")."""
    title = raw.rstrip(" \t")
    bare = title.rstrip("#")
    if bare != title and bare and bare[-1] in " \t":
        return bare.rstrip(" \t")
    return title


@dataclass(frozen=True, slots=True)
class Piece:
    """A chunk-to-be: its span and the keys the splitter adds to the document's metadata."""

    start: int
    end: int
    metadata: dict[str, Any] = field(default_factory=dict)


def _strip(text: str, start: int, end: int) -> Span | None:
    """Trim whitespace by moving the offsets (never by editing text); None when nothing is left."""
    piece = text[start:end]
    stripped = piece.strip()
    if not stripped:
        return None
    start += len(piece) - len(piece.lstrip())
    return start, start + len(stripped)


def _is_abbreviation(text: str, dot: int) -> bool:
    """Whether the '.' at ``dot`` ends an abbreviation or initials ("Dr.", "e.g.", "J.") rather than a sentence."""
    word = _WORD_BEFORE_DOT.search(text, max(0, dot - 12), dot)
    if word is None:
        return False
    token = word.group().strip(".")
    return token.lower() in _ABBREVIATIONS or _INITIALS.fullmatch(token) is not None


_TABLE_BLOCK = re.compile(r"\s*\|[^\n]*(?:\n[ \t]*\|[^\n]*)+\s*")


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Sentences of ``text[start:end]`` as trimmed spans, in order.

    Ends: full-width 。！？；… always; ASCII . ! ? ; before whitespace or the end (so decimals and
    "Dr."-style abbreviations stay inside); half-width ! ? ; straight before Chinese text; and blank
    lines. Closing quotes and brackets after an end stay with their sentence. A Markdown table (a block whose
    lines all start with '|', as loaders write tables) is one "sentence", so packing keeps it whole where it fits.
    """
    end = len(text) if end is None else end
    bounds: list[Span] = []
    block_start = start
    blocks = [(m.start(), m.end()) for m in _BLANK_LINE.finditer(text, start, end)] + [(end, end)]
    for block_end, next_start in blocks:
        if _TABLE_BLOCK.fullmatch(text, block_start, block_end):
            bounds.append((block_start, block_end))
            block_start = next_start
            continue
        cut = block_start
        for m in _SENTENCE_END.finditer(text, block_start, block_end):
            if m.group().rstrip(_CLOSERS) == "." and _is_abbreviation(text, m.start()):
                continue
            bounds.append((cut, m.end()))
            cut = m.end()
        bounds.append((cut, block_end))
        block_start = next_start
    return [span for span in (_strip(text, a, b) for a, b in bounds) if span is not None]


def _chunk(doc: Document, key: str, position: int, piece: Piece) -> Chunk:
    """The one place chunks are built: text from the offsets, the document's metadata minus bulky keys."""
    metadata = {k: v for k, v in doc.metadata.items() if k not in _BULKY_METADATA} | piece.metadata
    return Chunk(id=f"{doc.id}:{key}", doc_id=doc.id, source=doc.source, text=doc.text[piece.start:piece.end],
                 position=position, start=piece.start, end=piece.end, metadata=metadata)


class Splitter(ABC):
    """Every splitter takes the same arguments, so ``make_splitter`` can build any of them by name;
    ``embed`` is used only by the splitters that need vectors."""

    name: str

    def __init__(self, chunk_size: int, chunk_overlap: int, *, length: Length = len,
                 embed: Embed | None = None) -> None:
        if chunk_size < 1:
            raise ConfigError(f"{self.name} splitter: chunk_size must be at least 1, got {chunk_size}")
        if not 0 <= chunk_overlap < chunk_size:
            raise ConfigError(f"{self.name} splitter: chunk_overlap must be >= 0 and below chunk_size "
                              f"({chunk_size}), got {chunk_overlap}")
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.length = length

    @abstractmethod
    def split(self, doc: Document) -> list[Chunk]: ...


class RecursiveSplitter(Splitter):
    """LangChain's recursive splitter with Chinese and English sentence separators, with exact offsets."""

    name = "recursive"

    def __init__(self, chunk_size: int, chunk_overlap: int, *, length: Length = len,
                 embed: Embed | None = None) -> None:
        super().__init__(chunk_size, chunk_overlap, length=length, embed=embed)
        self._splitter = RecursiveCharacterTextSplitter(
            chunk_size=chunk_size, chunk_overlap=chunk_overlap, length_function=length, separators=SEPARATORS,
            keep_separator="end", strip_whitespace=True,
        )

    def split(self, doc: Document) -> list[Chunk]:
        return [_chunk(doc, str(position), position, piece) for position, piece in enumerate(self._pieces(doc.text))]

    def _pieces(self, text: str) -> list[Piece]:
        return [Piece(start, end) for start, end in self.spans(text)]

    def spans(self, text: str, start: int = 0, end: int | None = None) -> list[Span]:
        """Chunk spans of ``text[start:end]``.

        Each piece is located by searching after the previous piece's start: LangChain's own
        ``start_index`` guesses from the overlap size, which is wrong when the overlapped text repeats
        or when sizes are tokens rather than characters.
        """
        segment = text[start:] if end is None else text[start:end]
        spans, search_from = [], 0
        for piece in self._splitter.split_text(segment):
            at = segment.index(piece, search_from)
            spans.append((start + at, start + at + len(piece)))
            search_from = at + 1
        return spans


class SentenceSplitter(RecursiveSplitter):
    """Whole sentences packed up to ``chunk_size``; the overlap is the previous chunk's trailing whole
    sentences that fit in ``chunk_overlap``. Only a sentence longer than ``chunk_size`` is cut, by the
    recursive splitter this class extends."""

    name = "sentence"

    def spans(self, text: str, start: int = 0, end: int | None = None) -> list[Span]:
        return self._pack(text, sentence_spans(text, start, end))

    def _size(self, text: str, start: int, end: int) -> int:
        return self.length(text[start:end])

    def _pack(self, text: str, sentences: list[Span]) -> list[Span]:
        """Greedy packing of consecutive sentences into chunk spans."""
        chunks: list[Span] = []
        current: list[Span] = []
        for sentence in sentences:
            if self._size(text, *sentence) > self.chunk_size:
                if current:
                    chunks.append((current[0][0], current[-1][1]))
                chunks.extend(super().spans(text, *sentence))
                current = []
                continue
            if current and self._size(text, current[0][0], sentence[1]) > self.chunk_size:
                chunks.append((current[0][0], current[-1][1]))
                current = self._overlap(text, current, sentence)
            current.append(sentence)
        if current:
            chunks.append((current[0][0], current[-1][1]))
        return chunks

    def _overlap(self, text: str, previous: list[Span], sentence: Span) -> list[Span]:
        """The trailing sentences of ``previous`` within ``chunk_overlap`` that still leave room for ``sentence``.
        Never all of ``previous`` (it did not fit with ``sentence``), so packing always moves forward."""
        keep = len(previous)
        while keep > 0 and (self._size(text, previous[keep - 1][0], previous[-1][1]) <= self.chunk_overlap
                            and self._size(text, previous[keep - 1][0], sentence[1]) <= self.chunk_size):
            keep -= 1
        return previous[keep:]


def _fenced(lines: list[str]) -> list[bool]:
    """Whether each line is part of a fenced code block (its fence lines included): code, never structure."""
    out, fence = [], ""
    for line in lines:
        marker = _FENCE.match(line)
        if fence:
            out.append(True)
            if marker and marker.group(1)[0] == fence[0] and len(marker.group(1)) >= len(fence):
                fence = ""
        else:
            out.append(marker is not None)
            fence = marker.group(1) if marker else ""
    return out


def _sections(text: str) -> Iterator[tuple[list[str], int, int]]:
    """(heading path, body start, body end) for the text before the first heading and under each ATX
    heading; heading lines themselves are not part of any body, and '#' lines inside code fences are code."""
    path: list[tuple[int, str]] = []
    body_start = offset = 0
    lines = text.split("\n")
    for line, code in zip(lines, _fenced(lines), strict=True):
        line_start, offset = offset, offset + len(line) + 1
        heading = None if code else _HEADING.fullmatch(line)
        if heading:
            yield [title for _, title in path], body_start, line_start
            level = len(heading.group(1))
            path = [(lvl, title) for lvl, title in path if lvl < level] + [(level, _heading_title(heading.group(2)))]
            body_start = min(offset, len(text))
    yield [title for _, title in path], body_start, len(text)


class MarkdownSplitter(SentenceSplitter):
    """One ATX-heading section per chunk when it fits, else the section's sentences packed as by
    ``sentence``; sections are never merged, so every chunk has one heading path,
    ``metadata["headings"]`` (the pipeline prefixes it to the indexed text, not to ``text``)."""

    name = "markdown"

    def _pieces(self, text: str) -> list[Piece]:
        return [Piece(start, end, {"headings": list(headings)})
                for headings, body_start, body_end in _sections(text)
                for start, end in self.spans(text, body_start, body_end)]


# -- structure without Markdown: question lines, numbered or short heading lines, lists, tables of contents ------
_QUESTION_PREFIX = re.compile(r"(?:Q\s*\d*\s*[:：.)]|问\s*\d*\s*[:：]|问题\s*\d*\s*[:：])", re.IGNORECASE)
_LIST_ITEM = re.compile(r"(?:[-*•·‣◦▪–—]\s|\d{1,3}[.)、）]\s?|[（(]\d{1,3}[)）]|[a-z][.)]\s|[①-⑳])")
_CHAPTER = re.compile(r"第[一二三四五六七八九十百零〇\d]+\s*([章部篇节条])|(?:chapter|part)\s+\d+\b", re.IGNORECASE)
_CN_ORDINAL = re.compile(r"[一二三四五六七八九十]{1,3}[、.．]")
_DOTTED = re.compile(r"(\d+(?:\.\d+)+)\.?\s")
_TERMINAL = "。．.!！;；,，:：、"
_TOC_TITLE = re.compile(r"(?:目录|目 录|contents|table of contents|索引)\s*[:：]?", re.IGNORECASE)
_KEY_STRIP = re.compile(r"[\s.…·_\-—]+\d*\s*$")
QUESTION_LEVEL = 9  # a question is a leaf: the next question replaces it, a heading above it stays
_BANNER = re.compile(r"[-=*_~]{3,}\s*[^-=*_~\s].*?\s*[-=*_~]{3,}")  # a title between rules, on one line


def _leading_symbol(line: str) -> str:
    """The line without a leading run of emoji or symbols (💡, ❓, ■, ➤...) that mark entries in scraped FAQs."""
    i = 0
    while i < len(line) and (unicodedata.category(line[i]) in ("So", "Sk", "Sm", "Cf") or line[i] in " \t\ufe0f"):
        i += 1
    return line[i:]


def _line_kind(line: str) -> tuple[str, int]:
    """("blank"|"heading"|"question"|"item"|"table"|"text", level) of one line, judged without Markdown. A
    Markdown table row is body text: its cells are short and a header row repeats, but it is neither a heading nor
    a table of contents."""
    stripped = line.strip()
    if not stripped:
        return "blank", 0
    if stripped.startswith("|"):
        return "table", 0
    atx = _HEADING.fullmatch(line)
    if atx:
        return "heading", len(atx.group(1))
    bare = _leading_symbol(stripped)
    if len(bare) <= 150 and (bare.endswith(("?", "？")) or _QUESTION_PREFIX.match(bare)):
        return "question", QUESTION_LEVEL
    if _BANNER.fullmatch(bare):  # "---- Sponsored ----": an inserted block, closed by the next question
        return "heading", QUESTION_LEVEL
    if len(bare) <= 60:
        chapter = _CHAPTER.match(bare)
        if chapter:
            return "heading", 2 if chapter.group(1) in ("节", "条") else 1
        if _CN_ORDINAL.match(bare) and bare[-1] not in _TERMINAL:
            return "heading", 1
        dotted = _DOTTED.match(bare + " ")
        if dotted and bare[-1] not in _TERMINAL:
            return "heading", min(dotted.group(1).count(".") + 1, 8)
    if _LIST_ITEM.match(bare):
        return "item", 0
    return "text", 0


def _title_like(line: str) -> bool:
    """A short line without closing punctuation: a heading when it stands alone before its content."""
    bare = _leading_symbol(line.strip())
    limit = 30 if has_cjk(bare) else 60
    return 1 < len(bare) <= limit and bare[-1] not in _TERMINAL and not _LIST_ITEM.match(bare)


def _key(line: str) -> str:
    """A heading or TOC line reduced to compare the two: no markers, numbering, dot leaders or page numbers."""
    bare = _leading_symbol(line.strip())
    bare = _LIST_ITEM.sub("", bare, count=1) if _LIST_ITEM.match(bare) else bare
    bare = _DOTTED.sub("", bare + " ", count=1).strip() if _DOTTED.match(bare + " ") else bare
    bare = _KEY_STRIP.sub("", bare)
    return "".join(bare.lower().split()).rstrip("?？")


@dataclass(frozen=True, slots=True)
class _Line:
    start: int
    end: int
    kind: str
    level: int


def _lines(text: str) -> list[_Line]:
    out, offset = [], 0
    raws = text.split("\n")
    for raw, code in zip(raws, _fenced(raws), strict=True):
        # Fenced code is body text: a '# comment' or a line ending in '?' there opens no section.
        kind, level = ("code", 0) if code else _line_kind(raw)
        out.append(_Line(offset, offset + len(raw), kind, level))
        offset += len(raw) + 1
    # A short unpunctuated line between a blank line (or the start) and content is a heading too.
    for i, line in enumerate(out):
        if line.kind != "text" or not _title_like(text[line.start:line.end]):
            continue
        before = i == 0 or out[i - 1].kind == "blank"
        after = next((n for n in out[i + 1:] if n.kind != "blank"), None)
        if before and after is not None and after.kind in ("text", "item", "code"):
            out[i] = _Line(line.start, line.end, "heading", 1)
    return out


def _tables_of_contents(text: str, lines: list[_Line]) -> set[int]:
    """Indexes of lines that form a table of contents: at least 3 consecutive short lines (blank lines between
    allowed) that each reappear later in the document as a line of their own, the entries they list (a title line
    such as 目录 / Contents just before joins them). PDF text often has no blank lines, so nothing here needs any."""
    keys = [_key(text[line.start:line.end]) if line.kind not in ("blank", "code", "table") else "" for line in lines]
    last: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key:
            last[key] = i
    candidate = [bool(key) and len(key) >= 2 and last[key] > i and lines[i].end - lines[i].start <= 150
                 for i, key in enumerate(keys)]
    toc: set[int] = set()
    i = 0
    while i < len(lines):
        if not candidate[i]:
            i += 1
            continue
        run, j = [], i
        while j < len(lines) and (candidate[j] or lines[j].kind == "blank"):
            if candidate[j]:
                run.append(j)
            j += 1
        if len(run) >= 3:
            toc.update(range(run[0], run[-1] + 1))
            before = next((k for k in range(run[0] - 1, -1, -1) if lines[k].kind != "blank"), None)
            if before is not None and _TOC_TITLE.fullmatch(text[lines[before].start:lines[before].end].strip()):
                toc.add(before)
        i = j
    return toc


def _toc_level(line: str) -> int:
    """The level a line listed in a table of contents gets as a heading: by its numbering (2 → 1, 2.1 → 2)."""
    bare = _leading_symbol(line.strip())
    dotted = _DOTTED.match(bare + " ")
    return min(dotted.group(1).count(".") + 1, 8) if dotted else 1


def _structure_sections(text: str) -> Iterator[tuple[list[str], int, int]]:
    """(heading path, body start, body end) by the structure plain text carries: heading and question lines open
    sections, a table of contents belongs to no section (it would match every question it lists)."""
    lines = _lines(text)
    toc = _tables_of_contents(text, lines)
    # What a table of contents lists is a heading where it appears later, however plain the line looks there.
    listed = {_key(text[lines[i].start:lines[i].end]) for i in toc}
    for i, line in enumerate(lines):
        if i not in toc and line.kind in ("text", "item") and _key(text[line.start:line.end]) in listed:
            lines[i] = _Line(line.start, line.end, "heading", _toc_level(text[line.start:line.end]))
    # The open headings (level, title, the heading line); the first ``bodied`` of them have had a body yielded.
    path: list[tuple[int, str, _Line]] = []
    bodied = 0
    body_start: int | None = None
    body_end = 0

    def flush() -> Iterator[tuple[list[str], int, int]]:
        nonlocal bodied
        if body_start is not None and body_end > body_start:
            yield [title for _, title, _ in path], body_start, body_end
            bodied = len(path)

    def close(level: int, question: bool = False) -> Iterator[tuple[list[str], int, int]]:
        """Close the headings at ``level`` and below, and for a ``question`` any open question written as a heading
        ("### 13. Where do contributors talk?" then "14. Who are the maintainers?": siblings, not parent and
        child); one that never got a body (a question followed by the next question, a list of bare questions)
        becomes its own piece, or its text would be in no chunk."""
        nonlocal bodied
        while path and (path[-1][0] >= level or (question and path[-1][1].endswith(("?", "？")))):
            _, _, heading = path.pop()
            if len(path) >= bodied:
                yield [title for _, title, _ in path], heading.start, heading.end
            bodied = len(path)

    for i, line in enumerate(lines):
        if i in toc:
            yield from flush()
            body_start = None
            continue
        if line.kind in ("heading", "question"):
            yield from flush()
            body_start = None
            title = " ".join(_leading_symbol(text[line.start:line.end].strip()).split())
            atx = _HEADING.fullmatch(text[line.start:line.end])
            if atx:
                title = _heading_title(atx.group(2))
            yield from close(line.level, line.kind == "question")
            path.append((line.level, title, line))
            continue
        if line.kind == "blank":
            continue
        if body_start is None:
            body_start = line.start
        body_end = line.end
    yield from flush()
    yield from close(0)


class StructureSplitter(SentenceSplitter):
    """Sections found in plain text, PDF and DOCX without Markdown: question lines (ending in ?/？, or Q:/问：),
    numbered headings (第二章, 一、, 2.1), short stand-alone title lines and ATX headings open sections; each chunk
    carries its heading/question path (``metadata["headings"]``, prefixed to the indexed text as by
    ``markdown``), so the chunk holding an answer's list items still names the question; a list stays with its
    section, packed by sentences; a table of contents is left out of the chunks."""

    name = "structure"

    def _pieces(self, text: str) -> list[Piece]:
        return [Piece(start, end, {"headings": list(headings)} if headings else {})
                for headings, body_start, body_end in _structure_sections(text)
                for start, end in self.spans(text, body_start, body_end)]


class SemanticSplitter(SentenceSplitter):
    """Sentences grouped by topic: a new group starts where the cosine similarity of adjacent sentences
    is below the ``breakpoint_percentile``-th percentile of all adjacent similarities in the document
    (default 25: the lowest quarter are topic breaks; 0 turns topic breaks off). A group larger than
    ``chunk_size`` is packed as by ``sentence``, with its sentence overlap; there is no overlap across a
    topic break, since that would glue the old topic onto the new one."""

    name = "semantic"

    def __init__(self, chunk_size: int, chunk_overlap: int, *, length: Length = len, embed: Embed | None = None,
                 breakpoint_percentile: float = 25) -> None:
        super().__init__(chunk_size, chunk_overlap, length=length, embed=embed)
        if embed is None:
            raise ConfigError("semantic splitter: needs an embed function (the knowledge base's embedder)")
        if not 0 <= breakpoint_percentile <= 100:
            raise ConfigError(f"semantic splitter: breakpoint_percentile must be within 0..100, "
                              f"got {breakpoint_percentile}")
        self._embed = embed
        self.breakpoint_percentile = breakpoint_percentile

    def spans(self, text: str, start: int = 0, end: int | None = None) -> list[Span]:
        sentences = sentence_spans(text, start, end)
        bounds = [0, *self._topic_breaks(text, sentences), len(sentences)]
        return [span for lo, hi in pairwise(bounds) for span in self._pack(text, sentences[lo:hi])]

    def _topic_breaks(self, text: str, sentences: list[Span]) -> list[int]:
        """Indices of the sentences that start a new topic; all sentences are embedded in one call."""
        if len(sentences) < 2:
            return []
        vectors = np.asarray(self._embed([text[a:b] for a, b in sentences]), dtype=np.float64)
        if vectors.shape[0] != len(sentences):
            raise ValueError(f"embed returned {vectors.shape[0]} vectors for {len(sentences)} sentences")
        similarity = np.einsum("ij,ij->i", vectors[:-1], vectors[1:])
        threshold = np.percentile(similarity, self.breakpoint_percentile)
        return (np.flatnonzero(similarity < threshold) + 1).tolist()


class ParentChildSplitter(Splitter):
    """Small chunks to match, big ones to read: parents are ``parent_size`` sentence chunks without
    overlap (default 4 x chunk_size), children are ``sentence`` chunks of one parent at
    ``chunk_size``/``chunk_overlap``. Returns each parent (id ``<doc>:p<k>``, ``role`` "parent") followed
    by its children (ids ``<doc>:<n>`` numbered across the document, ``role`` "child", ``parent_id``);
    the pipeline indexes the children and answers from the parent."""

    name = "parent_child"

    def __init__(self, chunk_size: int, chunk_overlap: int, *, length: Length = len, embed: Embed | None = None,
                 parent_size: int | None = None) -> None:
        super().__init__(chunk_size, chunk_overlap, length=length, embed=embed)
        self.parent_size = 4 * chunk_size if parent_size is None else parent_size
        if self.parent_size <= chunk_size:
            raise ConfigError(f"parent_child splitter: parent_size must be larger than chunk_size ({chunk_size}), "
                              f"got {self.parent_size}")
        self._parents = SentenceSplitter(self.parent_size, 0, length=length)
        self._children = SentenceSplitter(chunk_size, chunk_overlap, length=length)

    def split(self, doc: Document) -> list[Chunk]:
        chunks: list[Chunk] = []
        position = 0
        for k, (parent_start, parent_end) in enumerate(self._parents.spans(doc.text)):
            parent = _chunk(doc, f"p{k}", k, Piece(parent_start, parent_end, {"role": "parent"}))
            chunks.append(parent)
            for start, end in self._children.spans(doc.text, parent_start, parent_end):
                chunks.append(_chunk(doc, str(position), position,
                                     Piece(start, end, {"role": "child", "parent_id": parent.id})))
                position += 1
        return chunks


SPLITTERS: dict[str, type[Splitter]] = {
    cls.name: cls
    for cls in (RecursiveSplitter, SentenceSplitter, MarkdownSplitter, StructureSplitter, SemanticSplitter,
                ParentChildSplitter)
}


def make_splitter(name: str, chunk_size: int, chunk_overlap: int, *, length: Length = len,
                  embed: Embed | None = None, **params: Any) -> Splitter:
    """The splitter called ``name``. ``params`` are splitter-specific (semantic: breakpoint_percentile;
    parent_child: parent_size); one the splitter does not take is a ConfigError, not silently ignored."""
    try:
        cls = SPLITTERS[name]
    except KeyError:
        raise ConfigError(f"unknown splitter '{name}' (choose from {', '.join(sorted(SPLITTERS))})") from None
    unknown = sorted(set(params) - set(inspect.signature(cls).parameters))
    if unknown:
        raise ConfigError(f"{name} splitter: unknown parameter(s) {', '.join(unknown)}")
    return cls(chunk_size, chunk_overlap, length=length, embed=embed, **params)
