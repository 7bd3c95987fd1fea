"""A knowledge base's domain glossary: terms that mean the same thing (``SFT = 有监督微调 = supervised fine-tuning``).

Vertical domains name things in ways a general tokenizer and a general embedder do not know: jieba cuts 有监督微调
into pieces, and nothing tells BM25 that a question about 人类反馈强化学习 is about the document's RLHF. A glossary
fixes both, per knowledge base:

- **Terms stay whole.** The KB's tokenizer emits each glossary term found in a text as one extra token (besides the
  usual pieces, so partial queries still match). Changing the glossary changes the KB's tokenizer version, and the
  stored BM25 tokens are re-tokenised (``lexical.ensure_tokens``) before the next search.
- **Queries are expanded on the BM25 side.** A query that names any term of an entry looks for the concept: the
  whole-term tokens of all the entry's terms, in place of the pieces of the term it used; ``--explain`` lists each
  expansion. Optionally the vector query text gets them
  too (``glossary_expand_vector``).
- **Suggestions** are mined from the KB itself: abbreviation-expansion pairs written as ``有监督微调(SFT)``,
  ``supervised fine-tuning (SFT)``, ``SFT：监督微调`` or ``SCIM means System for Cross-domain Identity Management``
  (an English expansion must spell the acronym), for the user to accept.

Entries live in the KB's options in the catalog (so every replica sees the same glossary).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag_service.errors import InvalidInputError
from rag_service.text.tokenize import Tokenizer, has_cjk

if TYPE_CHECKING:
    from rag_service.storage.catalog import Catalog, KnowledgeBase

OPTION = "glossary"
MAX_ENTRIES = 2000
MAX_TERMS = 12
MAX_TERM_CHARS = 64


@dataclass(frozen=True, slots=True)
class GlossaryEntry:
    id: str
    terms: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "terms": list(self.terms)}


@dataclass(frozen=True, slots=True)
class Expansion:
    """The query named ``matched``; BM25 also looked for ``added``."""

    matched: str
    added: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"matched": self.matched, "added": list(self.added)}


@dataclass(frozen=True, slots=True)
class Suggestion:
    terms: tuple[str, ...]
    count: int  # how often the pair was written out in the KB
    example: str

    def to_json(self) -> dict[str, Any]:
        return {"terms": list(self.terms), "count": self.count, "example": self.example}


# Hyphens (ASCII and Unicode) join words the way spaces do: "know-your-business" is "know your business".
_HYPHENS = re.compile(r"[\-\u2010\u2011\u2012\u2013]")
_JOINER = r"[\s\-\u2010\u2011\u2012\u2013]+"
# Part of the tokenizer version: a change to how terms are matched or normalised re-tokenises every KB.
SCHEME = "g2"


def normalise(term: str) -> str:
    """A term's key and whole-term token: lower case, hyphens and runs of spaces as one space."""
    return " ".join(_HYPHENS.sub(" ", term).split()).lower()


def parse_entry(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"SFT = 有监督微调 = supervised fine-tuning"`` (or a list of terms) as checked, de-duplicated terms."""
    raw = text.split("=") if isinstance(text, str) else list(text)
    terms: list[str] = []
    for item in raw:
        term = " ".join(str(item).split())
        if not term:
            continue
        if len(term) > MAX_TERM_CHARS or not term.isprintable() or "=" in term:
            raise InvalidInputError(f"glossary term {term[:80]!r}: at most {MAX_TERM_CHARS} printable characters, "
                                    "no '='")
        if normalise(term) not in {normalise(t) for t in terms}:
            terms.append(term)
    if not 2 <= len(terms) <= MAX_TERMS:
        raise InvalidInputError(f"a glossary entry names 2-{MAX_TERMS} different terms that mean the same, "
                                f"like 'SFT = 有监督微调 = supervised fine-tuning'; got {len(terms)}")
    return tuple(terms)


def read_file(path: Path) -> list[tuple[str, ...]]:
    """One entry per line (``a = b = c``); blank lines and ``#`` comments skipped. A bad line names its number."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read glossary file {path}: {exc}") from None
    entries = []
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if line:
            try:
                entries.append(parse_entry(line))
            except InvalidInputError as exc:
                raise InvalidInputError(f"{path}:{number}: {exc}") from None
    return entries


def entries(kb: KnowledgeBase) -> list[GlossaryEntry]:
    return [GlossaryEntry(e["id"], tuple(e["terms"])) for e in kb.options.get(OPTION, [])]


# -- tokens ---------------------------------------------------------------------------------------------------
def _pattern(terms: Iterable[str]) -> re.Pattern[str] | None:
    """Every term, longest first, case-insensitive, its words joined by spaces or hyphens; Latin terms only at word
    boundaries (so 'SFT' is not found inside 'SFTP')."""
    parts = []
    for term in sorted({normalise(t) for t in terms}, key=len, reverse=True):
        body = _JOINER.join(re.escape(w) for w in term.split())
        parts.append(body if has_cjk(term) else rf"(?<![^\W_]){body}(?![^\W_])")
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


class GlossaryTokenizer:
    """The base tokenizer plus one whole-term token for each glossary term found in the text."""

    def __init__(self, base: Tokenizer, items: Sequence[GlossaryEntry]) -> None:
        self.base = base
        self.entries = list(items)
        self._pattern = _pattern(t for e in self.entries for t in e.terms)
        digest = hashlib.sha256(json.dumps([e.terms for e in self.entries], ensure_ascii=False).encode())
        self.version = f"{base.version}+{SCHEME}{digest.hexdigest()[:12]}" if self.entries else base.version

    def __call__(self, text: str) -> list[str]:
        tokens = self.base(text)
        if self._pattern is not None:
            for match in self._pattern.finditer(text):
                whole = normalise(match.group(0))
                if whole not in tokens:
                    tokens.append(whole)
        return tokens

    def query_tokens(self, query: str) -> list[str]:
        """A query's BM25 tokens: a glossary term it names counts as that concept, whatever form a document uses
        (the whole-term tokens of all the entry's terms) instead of as the pieces jieba would cut it into, which
        would match unrelated text sharing a piece (人类反馈强化学习 -> 人类, 反馈)."""
        if self._pattern is None:
            return self.base(query)
        rest = self._pattern.sub(" ", query)
        named = [normalise(m.group(0)) for m in self._pattern.finditer(query)]
        added = self.expansion_tokens(self.expand(query))
        return self.base(rest) + list(dict.fromkeys([*named, *added]))

    def expand(self, query: str) -> list[Expansion]:
        """For each entry the query names, the entry's other terms."""
        if self._pattern is None:
            return []
        found = {normalise(m.group(0)) for m in self._pattern.finditer(query)}
        out = []
        for entry in self.entries:
            named = [t for t in entry.terms if normalise(t) in found]
            if named:
                others = tuple(t for t in entry.terms if normalise(t) not in found)
                if others:
                    out.append(Expansion(named[0], others))
        return out

    def expansion_tokens(self, expansions: Iterable[Expansion]) -> list[str]:
        """The whole-term tokens BM25 adds for ``expansions`` (documents carry them where the terms occur)."""
        return list(dict.fromkeys(normalise(t) for e in expansions for t in e.added))


_cache: dict[tuple[str, str], GlossaryTokenizer] = {}
_cache_lock = threading.Lock()


def tokenizer_for(base: Tokenizer, kb: KnowledgeBase) -> GlossaryTokenizer:
    """The KB's tokenizer: the base one with its glossary (cached per glossary content)."""
    return tokenizer_with(base, kb.options)


def tokenizer_with(base: Tokenizer, options: dict[str, Any]) -> GlossaryTokenizer:
    """The tokenizer a KB with these options has (for a KB about to be created, as by an import)."""
    items = [GlossaryEntry(e["id"], tuple(e["terms"])) for e in options.get(OPTION, [])]
    key = (base.version, json.dumps([e.terms for e in items], ensure_ascii=False))
    with _cache_lock:
        tok = _cache.get(key)
        if tok is None:
            if len(_cache) > 64:
                _cache.clear()
            tok = _cache[key] = GlossaryTokenizer(base, items)
    return tok


# -- suggestions ---------------------------------------------------------------------------------------------
_ACRONYM = r"[A-Z][A-Za-z0-9&\-]{1,11}"
_CN_TERM = r"[\u4e00-\u9fff]{2,12}"
_EN_TERM = r"[A-Za-z][A-Za-z\-]+(?: [A-Za-z][A-Za-z\-]+){1,7}"
# (pattern, which group is the acronym, whether an English expansion follows the acronym)
_PAIRS: tuple[tuple[re.Pattern[str], int, bool], ...] = (
    (re.compile(rf"({_CN_TERM})\s*[(（]\s*({_ACRONYM})\s*[)）]"), 2, False),  # 有监督微调(SFT)
    (re.compile(rf"({_ACRONYM})\s*[(（]\s*({_CN_TERM})\s*[)）]"), 1, False),  # SFT（有监督微调）
    (re.compile(rf"({_EN_TERM})\s*\(\s*({_ACRONYM})\s*\)"), 2, False),  # supervised fine-tuning (SFT)
    (re.compile(rf"(?m)^[ \t]*[-•*]?[ \t]*({_ACRONYM})[ \t]*[:：][ \t]*({_CN_TERM})"), 1, False),  # SFT：监督微调，…
    (re.compile(rf"\b({_ACRONYM})\s+(?:here\s+)?(?:means|stands for|is short for|is an abbreviation (?:of|for))\s+"
                rf"({_EN_TERM})"), 1, True),  # SCIM means System for Cross-domain Identity Management
)
_CN_STOP_PREFIX = re.compile(r"^(?:的|了|在|是|和|与|及|或|通过|使用|采用|进行|称为|叫做|即|也就是)+")
_MINOR_WORDS = frozenset({"for", "of", "and", "the", "to", "in", "on", "a", "an", "with", "by"})


def _initials_match(phrase: str, acronym: str, *, head: bool = False) -> str | None:
    """The shortest tail (or, with ``head``, start) of ``phrase`` whose word initials spell ``acronym``, with or
    without its minor words (System for Cross-domain Identity Management = SCIM); None if there is none."""
    words = phrase.split()
    letters = "".join(c for c in acronym.lower() if c.isalpha())
    spans = [words[: n] for n in range(1, len(words) + 1)] if head else \
        [words[start:] for start in range(len(words) - 1, -1, -1)]
    for span in spans:
        for parts in ([p for w in span for p in w.split("-") if p], span):  # fine-tuning: one word or two
            for keep in (parts, [p for p in parts if p.lower() not in _MINOR_WORDS]):
                if "".join(p[0].lower() for p in keep) == letters:
                    return " ".join(span)
    return None


def _count_pairs(text: str, counts: Counter[tuple[str, str]], examples: dict[tuple[str, str], str]) -> None:
    """Count the abbreviation-expansion pairs ``text`` writes out, keeping the first example of each."""
    for pattern, acronym_group, head in _PAIRS:
        for m in pattern.finditer(text):
            acronym, term = m.group(acronym_group), m.group(3 - acronym_group)
            if has_cjk(term):
                term = _CN_STOP_PREFIX.sub("", term)
                if len(term) < 2:
                    continue
            else:
                matched = _initials_match(term, acronym, head=head)
                if matched is None:
                    continue
                term = matched
            key = (acronym, term)
            counts[key] += 1
            examples.setdefault(key, text[max(0, m.start() - 20):m.end() + 20].replace("\n", " "))


def suggest(catalog: Catalog, kb: KnowledgeBase, limit: int = 50) -> list[Suggestion]:
    """Abbreviation-expansion pairs the KB's own documents write out, most frequent first, minus the pairs the
    glossary already has."""
    counts: Counter[tuple[str, str]] = Counter()
    examples: dict[tuple[str, str], str] = {}
    seen_headings: set[tuple[str, str]] = set()
    for chunk in catalog.indexed_chunks(kb.id):
        # A section's heading/question line is indexed with each of its chunks but written once: read it once.
        headings = [h for h in chunk.metadata.get("headings", ()) if (chunk.doc_id, h) not in seen_headings]
        seen_headings.update((chunk.doc_id, h) for h in headings)
        for text in (*headings, chunk.text):
            _count_pairs(text, counts, examples)
    known = {normalise(t) for e in entries(kb) for t in e.terms}
    grouped: dict[str, list[tuple[str, int]]] = {}
    for (acronym, term), n in counts.most_common():
        grouped.setdefault(acronym, []).append((term, n))
    out = []
    for acronym, terms in grouped.items():
        names = [acronym, *dict.fromkeys(t for t, _ in terms)][:MAX_TERMS]
        if {normalise(n) for n in names} <= known:
            continue
        key = (acronym, terms[0][0])
        out.append(Suggestion(tuple(names), sum(n for _, n in terms), examples[key]))
    out.sort(key=lambda s: (-s.count, s.terms))
    return out[:limit]
