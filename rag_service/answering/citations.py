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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rag_service.records import Chunk, Citation
from rag_service.text.language import detect_language
from rag_service.text.textunits import evidence_units, join_numbering
from rag_service.text.tokenize import evidence_tokens

SUPPORT_THRESHOLD = 0.5
# Cosine similarity of a sentence to each of some texts under the knowledge base's multilingual embedder: how a
# sentence in one language is matched to passages in another, where no word is shared.
Aligner = Callable[[str, Sequence[str]], list[float]]
# A sentence in another language than a passage is supported by it when its closest evidence unit of that passage
# is at least ALIGN_MIN similar (e5) and within ALIGN_MARGIN of the closest passage. On our cross-lingual set
# (eval/data/crosslingual) the floor sits below almost every reference answer's similarity to its gold unit, and
# other units of the same document clear it too, so it only rules out passages on other subjects: the model's
# evidence check does the judging (verification.py; docs/evaluation.md "Calibrated constants").
ALIGN_MIN = 0.80
ALIGN_MARGIN = 0.02

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
    aligned: list[int] = field(default_factory=list)  # passages in another language matched by meaning (ALIGN_MIN)


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
    return join_numbering(parts, sep="")  # 'Garden > 11.' numbers the sentence that follows


def strip_markers(text: str) -> str:
    """The answer as prose: 'x [1].' becomes 'x.'."""
    return re.sub(rf"\s*{_MARKER}", "", text).strip()


def marked_sentences(text: str) -> list[tuple[str, str, list[int]]]:
    """Each sentence of an answer as (raw text, text without markers, marker numbers in order)."""
    return [(raw, _MARKER_RE.sub("", raw).rstrip(),
             [int(n) for m in _MARKER_RE.findall(raw) for n in re.findall(r"\d+", m)])
            for raw in _sentences(text)]


def aligned_passages(sentence: str, packed: Sequence[Chunk], align: Aligner) -> list[int]:
    """The passages (numbers) in another language than ``sentence`` that state something close to it: the closest
    evidence unit at least ALIGN_MIN similar and within ALIGN_MARGIN of the closest passage's."""
    lang = detect_language(sentence)
    foreign = [n for n, c in enumerate(packed, start=1) if detect_language(c.text) != lang]
    best: dict[int, float] = {}
    for n in foreign:
        units = evidence_units(packed[n - 1].text)
        best[n] = max(align(sentence, units), default=0.0)
    top = max(best.values(), default=0.0)
    return [n for n, s in best.items() if s >= ALIGN_MIN and s >= top - ALIGN_MARGIN]


def validate(answer: str, packed: list[Chunk], question: str = "", threshold: float = SUPPORT_THRESHOLD,
             align: Aligner | None = None) -> tuple[str, list[Citation], list[SentenceCheck]]:
    """Each sentence's markers checked against the passages by shared content units (beyond the question's); with
    ``align``, a sentence in another language than a passage can also be matched to it by meaning."""
    passage_tokens = [evidence_tokens(c.text) for c in packed]
    given = evidence_tokens(question)
    out: list[str] = []
    checks: list[SentenceCheck] = []
    cited: dict[int, Citation] = {}
    for raw, body, marked in marked_sentences(answer):
        tokens = evidence_tokens(body)
        tokens = (tokens - given) or tokens
        support = {n: _support(tokens, toks) for n, toks in enumerate(passage_tokens, start=1)}
        aligned = aligned_passages(body, packed, align) if align is not None and tokens else []
        for n in aligned:  # matched by meaning: as good as the word overlap the bar asks for
            support[n] = max(support[n], threshold)
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
        rendered = place_markers(raw, body, keep)
        checks.append(SentenceCheck(body.strip(), marked, keep, how, {n: round(s, 3) for n, s in support.items() if s},
                                    rendered, [n for n in aligned if n in keep]))
        out.append(rendered)
    return "".join(out).strip(), list(cited.values()), checks


def marker_gap(text: str) -> str:
    """What goes between a sentence and its marker: nothing after CJK text or full-width punctuation
    ('八本书[1]'), a space otherwise ('45 euros [1]')."""
    return "" if text and re.match(r"[\u3000-\u9fff\uff00-\uffef]", text[-1]) else " "


def place_markers(raw: str, body: str, keep: list[int]) -> str:
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
