"""What a retrieved chunk means as a passage for the model: its list completed from its neighbours, or
recognised as a list of questions that answers nothing.

Chunk boundaries fall anywhere. On scraped FAQ pages the chunk holding an answer's items often lost the
question line above them ("💡 Why does ...?" in chunk 7, its bullets in chunk 8), or a list runs on into the
next chunk; the model then reads items without knowing what they answer, or half a list. And a table of
contents or a question list repeats the user's words without answering anything: it ranks high and is no
evidence. Both are recognised here from the text's lines, at query time, for any splitter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from rag_service.answering.citations import marked_sentences, marker_gap
from rag_service.records import Chunk
from rag_service.text.textunits import LEAD_IN, LIST_ITEM, LIST_MARKER, QUESTION_END, is_header, nonblank_lines
from rag_service.text.tokenize import evidence_tokens

_NUMBERED = re.compile(r"^\s*(?:\d{1,2}[.)、]|[一二三四五六七八九十]+、|[(（]\d{1,2}[)）])\s*\S")
_SENTENCE_END = re.compile(r"[。.!！;；]\s*$")
# Most characters taken from a neighbour: enough for a question line or a short list, not a section.
NEIGHBOUR_MAX_CHARS = 300


def is_question_list(text: str, headings: Sequence[str] = ()) -> bool:
    """Questions or a table of contents, no answers: every line a question (a question line the splitter left on
    its own, "9. What apps are worth self-hosting?"), or at least four lines and either three in five or more of
    them ending in a question mark (a Q&A thread, question then reply, stays below), or seven in ten or more
    numbered titles: short, without a sentence's closing mark (not under a question heading: there such lines are
    the answer's items, "1) 手写 Multi-Head Attention"). It names topics; it states nothing about them."""
    lines = nonblank_lines(text)
    if lines and all(QUESTION_END.search(line) for line in lines):
        return True
    if len(lines) < 4:
        return False
    questions = sum(bool(QUESTION_END.search(line)) for line in lines)
    if questions * 5 >= len(lines) * 3:
        return True
    if headings and QUESTION_END.search(headings[-1]):
        return False
    titles = sum(bool(_NUMBERED.match(line)) and len(line.strip()) <= 60 and not _SENTENCE_END.search(line)
                 for line in lines)
    return titles * 10 >= len(lines) * 7 and titles >= 5


def with_heading(chunk: Chunk) -> Chunk:
    """``chunk`` with its heading path as a first line when the splitter kept the path in metadata only
    (``markdown``, ``structure``): a section body read without its question or title line ("- within 5
    business days") answers nothing the model can recognise. ``metadata['heading_shown']`` marks it."""
    headings = [h for h in chunk.metadata.get("headings") or () if h.strip()]
    if not headings or chunk.text.lstrip().startswith(headings[-1].strip()):
        return chunk
    return replace(chunk, text=" > ".join(headings) + "\n" + chunk.text,
                   metadata={**chunk.metadata, "heading_shown": True})


def with_neighbours(chunk: Chunk, before: Chunk | None, after: Chunk | None) -> Chunk:
    """``chunk`` with its heading path when it is a section (``with_heading``) and the lines a list needs from its
    neighbours in the same section: when it opens with list items, the
    previous chunk's last question or lead-in line and whatever follows it; when it ends inside a list that
    the next chunk continues, the next chunk's leading items. Each addition is at most
    ``NEIGHBOUR_MAX_CHARS``; ``metadata['context']`` records what was added."""
    if chunk.metadata.get("role"):  # parent-child sections are whole already
        return chunk
    headings = chunk.metadata.get("headings")
    if headings:  # a section is introduced by its own heading line; a neighbour counts only within the section
        chunk = with_heading(chunk)
        before = before if before is not None and before.metadata.get("headings") == headings else None
        after = after if after is not None and after.metadata.get("headings") == headings else None
    lines = nonblank_lines(chunk.text)
    if not lines:
        return chunk
    text = chunk.text
    added: list[str] = []
    if before is not None and LIST_ITEM.match(lines[0]) and not is_header(lines[0]):
        overlap = max(before.end - chunk.start, 0)  # the splitter's overlap is already in ``chunk``
        previous = nonblank_lines(before.text[: len(before.text) - overlap])
        # The header the list hangs from: the nearest question or lead-in line above, with nothing but list
        # items between it and this chunk (a paragraph in between means the list is not this one).
        for i in range(len(previous) - 1, max(len(previous) - 8, -1), -1):
            if is_header(previous[i]) and not LIST_ITEM.match(previous[i]):
                head = "\n".join(previous[i:])
                if len(head) <= NEIGHBOUR_MAX_CHARS:
                    text = head + "\n" + text
                    added.append(before.id)
                break
            if not LIST_ITEM.match(previous[i]):
                break
    if after is not None and ((LIST_ITEM.match(lines[-1]) and not QUESTION_END.search(lines[-1]))
                              or LEAD_IN.search(lines[-1])):
        overlap = max(chunk.end - after.start, 0)
        following = nonblank_lines(after.text[overlap:])
        items: list[str] = []
        for line in following:
            if (not LIST_ITEM.match(line) or is_header(line)
                    or sum(map(len, items)) + len(line) > NEIGHBOUR_MAX_CHARS):
                break
            items.append(line)
        if items:
            text = text.rstrip("\n") + "\n" + "\n".join(items)
            added.append(after.id)
    if not added:
        return chunk
    return replace(chunk, text=text, metadata={**chunk.metadata, "context": added})


def _item_text(line: str) -> str:
    return re.sub(LIST_MARKER, "", line).strip().rstrip("；;。，,")


def list_blocks(text: str) -> list[tuple[str | None, list[str]]]:
    """The lists in a passage: (the line introducing it, when it ends with a colon, and its items), two
    items or more."""
    blocks: list[tuple[str | None, list[str]]] = []
    lines = nonblank_lines(text)
    i = 0
    while i < len(lines):
        if LIST_ITEM.match(lines[i]) and not is_header(lines[i]):
            j = i
            while j < len(lines) and LIST_ITEM.match(lines[j]) and not is_header(lines[j]):
                j += 1
            if j - i >= 2:
                header = lines[i - 1].strip() if i and LEAD_IN.search(lines[i - 1]) else None
                blocks.append((header, [_item_text(line) for line in lines[i:j]]))
            i = j
        else:
            i += 1
    return blocks


def complete_lists(answer: str, packed: Sequence[Chunk]) -> str:
    """A small model asked for a list often writes its first item and stops ("4 wheelbarrows [1]"). When every
    sentence of the answer that cites passage [n] is an item of one list in that passage, those sentences
    are replaced by the whole list, in the passage's words, each item with its marker (the list's own
    introducing line first when the answer has none). Other answers are returned unchanged."""
    sentences = marked_sentences(answer)
    cited = {n for _, _, marks in sentences for n in marks if 1 <= n <= len(packed)}
    if len(cited) != 1 or not sentences:
        return answer
    n = cited.pop()
    for header, items in list_blocks(packed[n - 1].text):
        units = [evidence_tokens(item) for item in items]
        framing = evidence_tokens(header or "")

        def item_of(body: str, units: list[set[str]] = units, framing: set[str] = framing) -> int | None:
            """The item a sentence gives: some of the item's words and next to nothing besides them and the
            list's introducing line ('4 wheelbarrows', 'The shed has 4 wheelbarrows'); a sentence saying
            something of its own about an item ('The rotavator must be booked') is not a list answer."""
            bullet = re.match(r"^\s*[-*•]\s*", body) is not None
            said = evidence_tokens(re.sub(r"^\s*[-*•]\s*", "", body))
            for k, u in enumerate(units):
                shared = len(u & said)
                if u and said and shared >= max(1.0, 0.3 * len(u)) and \
                        len(said - u - framing) <= (0.34 if bullet else 0.2) * len(said):
                    return k
            return None

        matched = [(i, item_of(body)) for i, (_, body, marks) in enumerate(sentences) if marks]
        if not matched or any(k is None for _, k in matched) or len(matched) >= len(items):
            continue
        lead = [raw for raw, body, marks in sentences if not marks and LEAD_IN.search(body)]
        first = min(i for i, _ in matched)
        before = "".join(raw for raw, _, marks in sentences[:first] if not marks).strip()
        head = before or (header or "")
        lines = ([head] if head else []) + [f"- {item}{marker_gap(item)}[{n}]" for item in items]
        rest = "".join(raw for i, (raw, _, marks) in enumerate(sentences) if i > first and not marks
                       and raw not in lead).strip()
        return "\n".join(lines) + (("\n" + rest) if rest else "")
    return answer
