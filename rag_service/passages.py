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
from dataclasses import replace

from rag_service.records import Chunk

LIST_ITEM = re.compile(r"^\s*(?:[-*•·▪◦●○■□►▶✓✔]|\d{1,2}[.)、）]|[(（]\d{1,2}[)）]|[①-⑳]|[a-zA-Z][.)](?=\s))\s*\S")
_QUESTION_END = re.compile(r"[?？]\s*$")
_LEAD_IN_END = re.compile(r"[:：]\s*$")
# Most characters taken from a neighbour: enough for a question line or a short list, not a section.
NEIGHBOUR_MAX_CHARS = 300


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def is_question_list(text: str) -> bool:
    """A table of contents or a list of questions: at least four lines, three in five or more of them ending
    in a question mark (a Q&A thread, question then reply, stays below). It names topics; it states
    nothing about them."""
    lines = _lines(text)
    questions = sum(bool(_QUESTION_END.search(line)) for line in lines)
    return questions >= 4 and questions * 5 >= len(lines) * 3


def _is_header(line: str) -> bool:
    """A line that introduces what follows: a question, or a lead-in ending with a colon."""
    return bool(_QUESTION_END.search(line) or _LEAD_IN_END.search(line))


def with_neighbours(chunk: Chunk, before: Chunk | None, after: Chunk | None) -> Chunk:
    """``chunk`` with the lines a list needs from its neighbours: when it opens with list items, the
    previous chunk's last question or lead-in line and whatever follows it; when it ends inside a list that
    the next chunk continues, the next chunk's leading items. Each addition is at most
    ``NEIGHBOUR_MAX_CHARS``; ``metadata['context']`` records what was added."""
    lines = _lines(chunk.text)
    if not lines or chunk.metadata.get("role"):
        return chunk
    text = chunk.text
    added: list[str] = []
    if before is not None and LIST_ITEM.match(lines[0]) and not _is_header(lines[0]):
        overlap = max(before.end - chunk.start, 0)  # the splitter's overlap is already in ``chunk``
        previous = _lines(before.text[: len(before.text) - overlap])
        # The header the list hangs from: the nearest question or lead-in line above, with nothing but list
        # items between it and this chunk (a paragraph in between means the list is not this one).
        for i in range(len(previous) - 1, max(len(previous) - 8, -1), -1):
            if _is_header(previous[i]) and not LIST_ITEM.match(previous[i]):
                head = "\n".join(previous[i:])
                if len(head) <= NEIGHBOUR_MAX_CHARS:
                    text = head + "\n" + text
                    added.append(before.id)
                break
            if not LIST_ITEM.match(previous[i]):
                break
    if after is not None and ((LIST_ITEM.match(lines[-1]) and not _QUESTION_END.search(lines[-1]))
                              or _LEAD_IN_END.search(lines[-1])):
        overlap = max(chunk.end - after.start, 0)
        following = _lines(after.text[overlap:])
        items: list[str] = []
        for line in following:
            if (not LIST_ITEM.match(line) or _is_header(line)
                    or sum(map(len, items)) + len(line) > NEIGHBOUR_MAX_CHARS):
                break
            items.append(line)
        if items:
            text = text.rstrip("\n") + "\n" + "\n".join(items)
            added.append(after.id)
    if not added:
        return chunk
    return replace(chunk, text=text, metadata={**chunk.metadata, "context": added})
