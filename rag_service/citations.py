"""Citation validation: every ``[n]`` in an answer must point to a packed passage that supports it.

A small local model often cites the wrong passage or forgets to cite. Each answer sentence is
checked against the packed passages by evidence overlap: the share of the sentence's content units
(words, CJK bigrams) that the passage contains, not counting units the question already supplied
(restating the question proves nothing; the new facts must come from the passage). A marker whose
passage supports the sentence (overlap >= threshold) is kept; otherwise the best-supporting passage
is cited instead, when one clears the threshold. What happened to every sentence (model / corrected /
attributed / unsupported) goes into the trace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag_service.records import Chunk, Citation
from rag_service.tokenize import evidence_tokens

SUPPORT_THRESHOLD = 0.5

_MARKER = r"[\[【]\s*\d+(?:\s*[,，、]\s*\d+)*\s*[\]】]"
_MARKER_RE = re.compile(_MARKER)
_SENTENCE = re.compile(rf".+?(?:[。！？!?]+|\.(?=\s|$)|\n|$)(?:\s*{_MARKER})*", re.S)
_CLOSING = " \t\n。！？!?."


@dataclass(frozen=True, slots=True)
class SentenceCheck:
    sentence: str
    marked: list[int]  # what the model wrote, valid or not
    cited: list[int]
    how: str  # model | corrected | attributed | unsupported | no-content
    support: dict[int, float]
    rendered: str = ""  # the sentence as delivered: markers corrected and placed, its whitespace kept


def _support(sentence_tokens: set[str], passage_tokens: set[str]) -> float:
    return len(sentence_tokens & passage_tokens) / len(sentence_tokens) if sentence_tokens else 0.0


def _sentences(text: str) -> list[str]:
    parts: list[str] = []
    for m in _SENTENCE.finditer(text):
        piece = m.group(0)
        if parts:  # closing marks written after a sentence's marker ('x. [1]. y') end that sentence
            head = re.match(r"[。！？!?.]+", piece)
            if head:
                parts[-1] += head.group(0)
                piece = piece[head.end():]
        if parts and not re.search(r"\w", _MARKER_RE.sub("", piece)):
            parts[-1] += piece  # a lone marker or full stop after a sentence belongs to it
        elif piece.strip():
            parts.append(piece)
    return parts


def strip_markers(text: str) -> str:
    """The answer as prose: 'x [1].' becomes 'x.'."""
    return re.sub(rf"\s*{_MARKER}", "", text).strip()


def marked_sentences(text: str) -> list[tuple[str, str, list[int]]]:
    """Each sentence of an answer as (raw text, text without markers, marker numbers in order)."""
    return [(raw, _MARKER_RE.sub("", raw).rstrip(),
             [int(n) for m in _MARKER_RE.findall(raw) for n in re.findall(r"\d+", m)])
            for raw in _sentences(text)]


def validate(answer: str, packed: list[Chunk], question: str = "",
             threshold: float = SUPPORT_THRESHOLD) -> tuple[str, list[Citation], list[SentenceCheck]]:
    passage_tokens = [evidence_tokens(c.text) for c in packed]
    given = evidence_tokens(question)
    out: list[str] = []
    checks: list[SentenceCheck] = []
    cited: dict[int, Citation] = {}
    for raw, body, marked in marked_sentences(answer):
        tokens = evidence_tokens(body)
        tokens = (tokens - given) or tokens
        support = {n: _support(tokens, toks) for n, toks in enumerate(passage_tokens, start=1)}
        if not tokens:
            keep, how = [], "no-content"
        else:
            keep = list(dict.fromkeys(n for n in marked if support.get(n, 0.0) >= threshold))
            how = "model"
            if not keep:
                best = max(support, key=lambda n: (support[n], -n), default=None)
                if best is not None and support[best] >= threshold:
                    keep, how = [best], "corrected" if marked else "attributed"
                else:
                    how = "unsupported"
        for n in keep:
            cited.setdefault(n, Citation(n=n, chunk=packed[n - 1]))
        rendered = _place_markers(raw, body, keep)
        checks.append(SentenceCheck(body.strip(), marked, keep, how, {n: round(s, 3) for n, s in support.items() if s},
                                    rendered))
        out.append(rendered)
    return "".join(out).strip(), list(cited.values()), checks


def marker_gap(text: str) -> str:
    """What goes between a sentence and its marker: nothing after CJK text or full-width punctuation
    ('八本书[1]'), a space otherwise ('45 euros [1]')."""
    return "" if text and re.match(r"[\u3000-\u9fff\uff00-\uffef]", text[-1]) else " "


def _place_markers(raw: str, body: str, keep: list[int]) -> str:
    """Markers go before the sentence's closing punctuation: 'x [1].' in English, 'x[1]。' in Chinese."""
    lead = raw[: len(raw) - len(raw.lstrip())]
    core = body.rstrip(_CLOSING)
    # 'x. [1].' loses its marker and leaves 'x. .': one closing mark each, in the order written.
    end = re.sub(r"(.)\1+", r"\1", re.sub(r"\s+", "", body[len(core):]))
    if not keep:
        return lead + core.strip() + end + ("\n" if raw.endswith("\n") else "")
    space = marker_gap(core)
    tail = "\n" if raw.endswith("\n") else ""
    return lead + core.strip() + space + "".join(f"[{n}]" for n in keep) + end + tail
