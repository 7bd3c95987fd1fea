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

import bisect
import functools
import hashlib
import json
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag_service.errors import InvalidInputError
from rag_service.text.tokenize import Tokenizer, has_cjk

if TYPE_CHECKING:
    from rag_service.settings import Settings
    from rag_service.storage.catalog import Catalog, KnowledgeBase

OPTION = "glossary"


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
# Part of the tokenizer version: a change to how terms are matched or normalised re-tokenises every KB.
SCHEME = "g2"


def normalise(term: str) -> str:
    """A term's key and whole-term token: lower case, hyphens and runs of spaces as one space."""
    return " ".join(_HYPHENS.sub(" ", term).split()).lower()


def _checked_term(term: str, settings: Settings) -> str:
    """One term with its runs of whitespace as one space; refused past the limits or without a word in it."""
    if len(term) > settings.glossary_max_term_chars or not term.isprintable() or "=" in term or not normalise(term):
        raise InvalidInputError(f"glossary term {term[:80]!r}: at most {settings.glossary_max_term_chars} printable "
                                "characters, not only hyphens, no '='")
    return term


def parse_entry(text: str | Sequence[str], settings: Settings) -> tuple[str, ...]:
    """``"SFT = 有监督微调 = supervised fine-tuning"`` (or a list of terms) as checked, de-duplicated terms."""
    raw = text.split("=") if isinstance(text, str) else list(text)
    terms: list[str] = []
    keys: set[str] = set()
    for item in raw:
        term = " ".join(str(item).split())
        if not term:
            continue
        if (key := normalise(_checked_term(term, settings))) not in keys:
            keys.add(key)
            terms.append(term)
    if not 2 <= len(terms) <= settings.glossary_max_terms:
        raise InvalidInputError(f"a glossary entry names 2-{settings.glossary_max_terms} different terms that mean "
                                f"the same, like 'SFT = 有监督微调 = supervised fine-tuning'; got {len(terms)}")
    return tuple(terms)


def check_glossary(settings: Settings, value: object) -> list[GlossaryEntry]:
    """A whole glossary as a KB's options store it (``[{"id": ..., "terms": [...]}, ...]``), checked against the
    limits in ``Settings`` (entries, terms per entry, characters per term, terms in all): what an edit may store and
    what an import may bring. InvalidInputError names the first problem."""
    if not isinstance(value, list):
        raise InvalidInputError("a glossary is a list of entries")
    if len(value) > settings.glossary_max_entries:
        raise InvalidInputError(f"a glossary holds at most {settings.glossary_max_entries} entries; got {len(value)}")
    out: list[GlossaryEntry] = []
    ids: set[str] = set()
    keys: set[str] = set()  # normalised terms: each in one entry (an edit merges entries that share one)
    total = 0
    for number, item in enumerate(value, 1):
        if not (isinstance(item, dict) and set(item) == {"id", "terms"} and isinstance(item["id"], str)
                and 0 < len(item["id"]) <= 64 and item["id"].isprintable() and isinstance(item["terms"], list)
                and all(isinstance(t, str) for t in item["terms"])):
            raise InvalidInputError(f"glossary entry {number}: expected {{'id': a short text, 'terms': [texts]}}")
        if item["id"] in ids:
            raise InvalidInputError(f"glossary entry {number}: id {item['id']!r} is used twice")
        ids.add(item["id"])
        terms = parse_entry(item["terms"], settings)
        if list(terms) != item["terms"]:
            raise InvalidInputError(f"glossary entry {number}: terms repeated or with extra spaces: {item['terms']}")
        for key in map(normalise, terms):
            if key in keys:
                raise InvalidInputError(f"glossary entry {number}: term {key!r} is in an earlier entry too")
            keys.add(key)
        total += len(terms)
        if total > settings.glossary_max_total_terms:
            raise InvalidInputError(f"a glossary holds at most {settings.glossary_max_total_terms} terms in all "
                                    "(RAG_GLOSSARY_MAX_TOTAL_TERMS)")
        out.append(GlossaryEntry(item["id"], terms))
    return out


def read_file(path: Path, settings: Settings) -> list[tuple[str, ...]]:
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
                entries.append(parse_entry(line, settings))
            except InvalidInputError as exc:
                raise InvalidInputError(f"{path}:{number}: {exc}") from None
    return entries


def entries(kb: KnowledgeBase) -> list[GlossaryEntry]:
    return [GlossaryEntry(e["id"], tuple(e["terms"])) for e in kb.options.get(OPTION, [])]


# -- tokens ---------------------------------------------------------------------------------------------------
@functools.cache
def _fold_table() -> dict[int, str]:
    """``str.translate`` table from a character to the one case-insensitive ``re`` matching treats it as (simple
    lower case, and one letter for lower-case letters sharing an upper case: i and ı, s and ſ, σ and ς), and from
    every joiner (whitespace, hyphens) to a space. Built once per process, from the whole of Unicode."""
    first: dict[str, str] = {}  # an upper case -> the smallest lower-case letter with it
    cased: list[tuple[str, str]] = []
    for code in range(0x110000):
        char = chr(code)
        low = char.lower()
        if low == char and char.upper() == char:
            continue
        low = low[0]  # a longer full lower case (only İ's) starts with the simple one
        cased.append((char, low))
        if (key := low.upper()) not in first or low < first[key]:
            first[key] = low
    table = {ord(char): first[low.upper()] for char, low in cased if first[low.upper()] != char}
    everything = "".join(map(chr, range(0x110000)))
    table.update((ord(char), " ") for char in re.findall(r"\s", everything) + _HYPHENS.findall(everything))
    return table


_RUNS_OF_SPACES = re.compile(" {2,}")


class _Folded:
    """A text case-folded with each run of joiners as one space (what a term's key is matched against), and the
    way back from a position in it to one in the text."""

    __slots__ = ("breaks", "shifts", "text")

    def __init__(self, text: str) -> None:
        folded = text.translate(_fold_table())
        self.breaks, self.shifts = [0], [0]  # from breaks[i] on, a position is shifts[i] further on in the text
        pieces, removed, last = [], 0, 0
        for run in _RUNS_OF_SPACES.finditer(folded):
            start, end = run.span()
            pieces.append(folded[last:start + 1])
            self.breaks.append(start + 1 - removed)
            removed += end - start - 1
            self.shifts.append(removed)
            last = end
        self.text = "".join([*pieces, folded[last:]]) if pieces else folded

    def original(self, position: int) -> int:
        if len(self.breaks) == 1:
            return position
        return position + self.shifts[bisect.bisect_right(self.breaks, position) - 1]


class TermMatcher:
    """Finds glossary terms in a text: leftmost first, then the longest term there; case-insensitive; a term's
    words joined by any run of spaces or hyphens; a term without CJK only at word boundaries (so 'SFT' is not found
    inside 'SFTP'). That is what one regex alternation of every term (longest first) found, but by hash lookups of
    the few term lengths that begin with the text's next two characters, in time linear in the text whatever the
    glossary's size; the alternation tried every term at every position while holding the GIL (docs/benchmarks.md,
    "A large glossary")."""

    def __init__(self, terms: Iterable[str]) -> None:
        self._bounded: dict[str, bool] = {}  # a term's key (folded, single spaces) -> only at word boundaries
        for term in {normalise(t) for t in terms}:
            if term:  # a term of hyphens alone has no key (parse_entry refuses it)
                self._bounded[term.translate(_fold_table())] = not has_cjk(term)
        lengths: dict[str, set[int]] = {}
        for key in self._bounded:
            lengths.setdefault(key[:2], set()).add(len(key))
        # the lengths to try at a position, longest first, by the two characters there (one for one-character keys)
        self._lengths = {head: sorted(found, reverse=True) for head, found in lengths.items()}

    def __len__(self) -> int:
        return len(self._bounded)

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where terms occur in ``text``: non-overlapping (start, end) pairs, left to right."""
        folded = _Folded(text)
        s, lengths, bounded = folded.text, self._lengths, self._bounded
        found: list[tuple[int, int]] = []
        position, size = 0, len(s)
        while position < size:
            step = 1
            for length in (*lengths.get(s[position:position + 2], ()), *lengths.get(s[position], ())):
                if position + length > size or (at_boundaries := bounded.get(s[position:position + length])) is None:
                    continue
                start, end = folded.original(position), folded.original(position + length - 1) + 1
                if at_boundaries and ((start and text[start - 1].isalnum())
                                      or (end < len(text) and text[end].isalnum())):
                    continue
                found.append((start, end))
                step = length
                break
            position += step
        return found


class GlossaryTokenizer:
    """The base tokenizer plus one whole-term token for each glossary term found in the text."""

    def __init__(self, base: Tokenizer, items: Sequence[GlossaryEntry]) -> None:
        self.base = base
        self.entries = list(items)
        self.matcher = TermMatcher(t for e in self.entries for t in e.terms)
        self._keys = [tuple(normalise(t) for t in e.terms) for e in self.entries]
        self._entries_of: dict[str, list[int]] = {}  # a normalised term -> the entries that name it
        for number, keys in enumerate(self._keys):
            for key in keys:
                self._entries_of.setdefault(key, []).append(number)
        digest = hashlib.sha256(json.dumps([e.terms for e in self.entries], ensure_ascii=False).encode())
        self.version = f"{base.version}+{SCHEME}{digest.hexdigest()[:12]}" if self.entries else base.version

    def _named(self, text: str) -> list[tuple[int, int]]:
        return self.matcher.spans(text) if self.matcher else []

    def __call__(self, text: str) -> list[str]:
        tokens = self.base(text)
        seen = set(tokens)
        for start, end in self._named(text):
            if (whole := normalise(text[start:end])) not in seen:
                seen.add(whole)
                tokens.append(whole)
        return tokens

    def query_tokens(self, query: str) -> list[str]:
        """A query's BM25 tokens: a glossary term it names counts as that concept, whatever form a document uses
        (the whole-term tokens of all the entry's terms) instead of as the pieces jieba would cut it into, which
        would match unrelated text sharing a piece (人类反馈强化学习 -> 人类, 反馈)."""
        spans = self._named(query)
        if not spans:
            return self.base(query)
        rest = " ".join(query[start:end] for start, end in zip([0] + [e for _, e in spans],
                                                               [s for s, _ in spans] + [len(query)], strict=True))
        named = [normalise(query[start:end]) for start, end in spans]
        added = self.expansion_tokens(self._expand(named))
        return self.base(rest) + list(dict.fromkeys([*named, *added]))

    def expand(self, query: str) -> list[Expansion]:
        """For each entry the query names, the entry's other terms."""
        return self._expand([normalise(query[start:end]) for start, end in self._named(query)])

    def _expand(self, named: Iterable[str]) -> list[Expansion]:
        found = set(named)
        out = []
        for number in sorted({n for key in found for n in self._entries_of.get(key, ())}):
            entry, keys = self.entries[number], self._keys[number]
            others = tuple(t for t, key in zip(entry.terms, keys, strict=True) if key not in found)
            if others:
                out.append(Expansion(next(t for t, key in zip(entry.terms, keys, strict=True) if key in found),
                                     others))
        return out

    def expansion_tokens(self, expansions: Iterable[Expansion]) -> list[str]:
        """The whole-term tokens BM25 adds for ``expansions`` (documents carry them where the terms occur)."""
        return list(dict.fromkeys(normalise(t) for e in expansions for t in e.added))


_CacheKey = tuple[str, tuple[tuple[str, ...], ...]]
_cache: OrderedDict[_CacheKey, GlossaryTokenizer] = OrderedDict()  # least recently used first
_cache_lock = threading.Lock()
# Tokenizers kept: a few glossaries at the largest size, many small ones (each search looks its KB's up).
_CACHE_TOKENIZERS, _CACHE_TERMS = 64, 100_000


def tokenizer_for(base: Tokenizer, kb: KnowledgeBase) -> GlossaryTokenizer:
    """The KB's tokenizer: the base one with its glossary (cached per glossary content)."""
    return tokenizer_with(base, kb.options)


def tokenizer_with(base: Tokenizer, options: dict[str, Any]) -> GlossaryTokenizer:
    """The tokenizer a KB with these options has (for a KB about to be created, as by an import). A new glossary's
    matcher is built outside the cache's lock, so other KBs' searches do not wait for it."""
    stored = options.get(OPTION, [])
    key = (base.version, tuple(tuple(e["terms"]) for e in stored))
    with _cache_lock:
        tok = _cache.get(key)
        if tok is not None:
            _cache.move_to_end(key)
            return tok
    tok = GlossaryTokenizer(base, [GlossaryEntry(e["id"], tuple(e["terms"])) for e in stored])
    with _cache_lock:
        _cache[key] = tok
        while len(_cache) > _CACHE_TOKENIZERS or (
                len(_cache) > 1 and sum(len(t.matcher) for t in _cache.values()) > _CACHE_TERMS):
            _cache.popitem(last=False)
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


def suggest(catalog: Catalog, kb: KnowledgeBase, limit: int = 50, *, max_terms: int) -> list[Suggestion]:
    """Abbreviation-expansion pairs the KB's own documents write out, most frequent first, minus the pairs the
    glossary already has; at most ``max_terms`` names each (``glossary_max_terms``)."""
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
        names = [acronym, *dict.fromkeys(t for t, _ in terms)][:max_terms]
        if {normalise(n) for n in names} <= known:
            continue
        key = (acronym, terms[0][0])
        out.append(Suggestion(tuple(names), sum(n for _, n in terms), examples[key]))
    out.sort(key=lambda s: (-s.count, s.terms))
    return out[:limit]
