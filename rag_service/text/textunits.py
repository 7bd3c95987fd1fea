"""How a passage's text is structured, line by line: list items, the question or lead-in line a list hangs from,
and the units of evidence a check can read on their own. Shared by citation validation, passage completion and
claim verification."""

from __future__ import annotations

import re

# A list item's marker: a bullet, "1." / "1)" / "1、" / "(1)", a circled number, "a)".
LIST_MARKER = r"^\s*(?:[-*•·▪◦●○■□►▶✓✔]|\d{1,2}[.)、）]|[(（]\d{1,2}[)）]|[①-⑳]|[a-zA-Z][.)](?=\s))\s*"
LIST_ITEM = re.compile(LIST_MARKER + r"\S")
QUESTION_END = re.compile(r"[?？]\s*$")
LEAD_IN = re.compile(r"[:：]\s*$")


def nonblank_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def is_header(line: str) -> bool:
    """A line that introduces what follows: a question, or a lead-in ending with a colon."""
    return bool(QUESTION_END.search(line) or LEAD_IN.search(line))


_SENTENCE_BREAK = re.compile(r"(?<=[。！？!?；;])|(?<=\.)\s+")
# A piece that ends in a bare list number ("11.", "Garden > 11.") is the numbering of what follows, not a sentence.
NUMBERING_ONLY = re.compile(r"(?:^|>|\n)\s*\d{1,2}[.)]\s*$")


def join_numbering(pieces: list[str], sep: str = " ") -> list[str]:
    """Sentences with a bare list number glued back onto the sentence it numbers (``sep`` between them: pieces cut
    on whitespace lost theirs, raw pieces keep it and take "")."""
    out: list[str] = []
    for piece in pieces:
        if out and NUMBERING_ONLY.search(out[-1]):
            out[-1] += sep + piece
        else:
            out.append(piece)
    return out


def is_bare_question(unit: str) -> bool:
    """One line that asks (a scraped FAQ's question line): it names a topic and states nothing."""
    return "\n" not in unit.strip() and bool(QUESTION_END.search(unit))


def evidence_units(text: str) -> list[str]:
    """What a passage states, in units a check can read on their own: each sentence outside lists; each list item
    under the line that introduces it (a question or a lead-in: "- NLTK" answers nothing without "Which tools split
    sentences?"); and each list of two items or more whole, under that line, so a list answer is judged as a list."""
    lines = nonblank_lines(text)
    units: list[str] = []
    i = 0
    while i < len(lines):
        if not (LIST_ITEM.match(lines[i]) and not is_header(lines[i])):
            units.extend(join_numbering([s.strip() for s in _SENTENCE_BREAK.split(lines[i]) if s and s.strip()]))
            i += 1
            continue
        j = i
        while j < len(lines) and LIST_ITEM.match(lines[j]) and not is_header(lines[j]):
            j += 1
        header = [lines[i - 1].strip()] if i and is_header(lines[i - 1]) else []
        items = [line.strip() for line in lines[i:j]]
        units.extend("\n".join([*header, item]) for item in items)
        if len(items) > 1:
            units.append("\n".join([*header, *items]))
        i = j
    return list(dict.fromkeys(units))
