"""The typed records handed from one pipeline step to the next."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Document:
    """A loaded, cleaned document before splitting. ``id`` is the sha256 of the source bytes."""

    id: str
    source: str
    text: str
    sha256: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a document that is embedded and indexed on its own."""

    id: str
    doc_id: str
    source: str
    text: str
    position: int
    start: int
    end: int
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def index_text(self) -> str:
        """What is embedded and BM25-indexed: the text, prefixed by its heading path when it has one
        (title enhancement: a section's heading words find the section)."""
        headings = self.metadata.get("headings")
        return f"{' > '.join(headings)}\n{self.text}" if headings else self.text

    def place_json(self) -> dict[str, Any]:
        """Where the text sits, for hits and citations alike: its page (PDF page, slide, sheet) and its section's
        heading path (structure, markdown), each only when known; ``ocr`` when the page's text was read by OCR."""
        out: dict[str, Any] = {}
        if "page" in self.metadata:
            out["page"] = self.metadata["page"]
        if self.metadata.get("ocr"):
            out["ocr"] = True
        if self.metadata.get("headings"):
            out["headings"] = list(self.metadata["headings"])
        return out


@dataclass(frozen=True, slots=True)
class Hit:
    """A retrieved chunk with its fused score and, for explanation, each retriever's view of it."""

    chunk: Chunk
    score: float
    ranks: dict[str, int] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    matched: str | None = None  # the indexed child chunk that matched, when ``chunk`` is its parent
    terms: tuple[str, ...] = ()  # query terms found in the chunk (filled when explaining)

    def to_json(self, *, explain: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "chunk_id": self.chunk.id,
            "doc_id": self.chunk.doc_id,
            "source": self.chunk.source,
            "text": self.chunk.text,
            "score": self.score,
            **self.chunk.place_json(),
        }
        if explain:
            out["explain"] = {
                **{name: {"rank": self.ranks[name], "score": self.scores[name]} for name in self.ranks},
                **({"rerank": self.scores["rerank"]} if "rerank" in self.scores else {}),
                "fused_score": self.score,
                "matched_terms": list(self.terms),
                **({"matched_chunk_id": self.matched} if self.matched else {}),
            }
        return out


@dataclass(frozen=True, slots=True)
class Citation:
    """A passage number the answer cites, resolved to the chunk that was packed under it."""

    n: int
    chunk: Chunk

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "chunk_id": self.chunk.id,
            "doc_id": self.chunk.doc_id,
            "source": self.chunk.source,
            "text": self.chunk.text,
            **self.chunk.place_json(),
        }


@dataclass(frozen=True, slots=True)
class Claim:
    """One answer sentence and what verification found. ``supported`` is the verdict; ``reason`` says
    why not: ``no-content`` (nothing beyond the question's own words), ``no-answer`` (a number was asked
    for and it gives none), ``uncited`` (no packed passage holds its words), ``off-question`` (the cited
    passage lacks the question's numbers or names: another year, another model), ``not-stated`` (the
    answer as a whole fell below the calibrated trust score). ``lead_in`` marks a line
    that only introduces a list ("The kit contains:"), which stands or falls with its items."""

    text: str
    citations: list[int]
    supported: bool
    reason: str | None = None
    # Share of the question's own words found around the claim's new words in the cited passage
    # (verification.anchoring): a name in a sentence about something else scores low.
    anchoring: float | None = None
    evidence: str | None = None  # the cited passage's sentence that states it best (by anchoring)
    evidence_passage: int | None = None  # the packed passage number ([n]) that sentence comes from
    lead_in: bool = False
    how: str = ""  # what citation validation did: model | corrected | attributed | unsupported | extract
    # Share of the sentence found verbatim in the passage it cites (verification.quote_share): a quote is checkable
    # character by character.
    quote: float | None = None
    evidence_p: float | None = None  # P(yes) that its evidence answers the question, when the model was asked
    aligned: bool = False  # matched to its passage in another language by meaning (citations.ALIGN_MIN)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text, "citations": self.citations, "supported": self.supported}
        if self.reason:
            out["reason"] = self.reason
        if self.evidence:
            out["evidence"] = self.evidence
        return out


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer with the evidence behind it; ``trace`` holds everything needed to explain it."""

    answer: str
    citations: list[Citation]
    refused: bool
    usage: Usage
    grounded: bool
    trace: dict[str, Any] = field(default_factory=dict)
    session_id: str | None = None
    # The closest passages when refused (at most 3), so the user can still look.
    related: list[Hit] = field(default_factory=list)
    # Each delivered sentence with its verdict (with policy 'lenient' unsupported ones are kept, marked).
    claims: list[Claim] = field(default_factory=list)
    policy: str = "strict"
    # The passages the model was given, as given (a list completed from neighbouring chunks included);
    # the JSON shape names them in the trace only.
    packed: list[Chunk] = field(default_factory=list)

    def to_json(self, *, with_trace: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "answer": self.answer,
            "citations": [c.to_json() for c in self.citations],
            "refused": self.refused,
            "grounded": self.grounded,
            "usage": asdict(self.usage),
            "related": [h.to_json() for h in self.related],
            "claims": [c.to_json() for c in self.claims],
            "policy": self.policy,
        }
        if self.session_id is not None:
            out["session_id"] = self.session_id
        if with_trace:
            out["trace"] = self.trace
        return out
