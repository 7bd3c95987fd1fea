"""The glossary matcher as it was before issue 29 (one case-insensitive regex alternation of every term, longest
first), kept as the reference the hash-lookup matcher must agree with (tests/test_glossary.py) and as the "old"
column of bench/glossary_bench.py. Not used by the service: on 2,000 entries of 12 terms it took 56 s for a
4,000-character query, holding the GIL."""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable, Iterable, Sequence

from rag_service.index.glossary import Expansion, GlossaryEntry, normalise
from rag_service.text.tokenize import Tokenizer, has_cjk

_JOINER = r"[\s\-\u2010\u2011\u2012\u2013]+"


def regex_pattern(terms: Iterable[str]) -> re.Pattern[str] | None:
    parts = []
    for term in sorted({normalise(t) for t in terms}, key=len, reverse=True):
        body = _JOINER.join(re.escape(w) for w in term.split())
        parts.append(body if has_cjk(term) else rf"(?<![^\W_]){body}(?![^\W_])")
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


class RegexGlossaryTokenizer:
    """``GlossaryTokenizer``'s matching methods as they were (without its version)."""

    def __init__(self, base: Tokenizer, items: Sequence[GlossaryEntry]) -> None:
        self.base = base
        self.entries = list(items)
        self._pattern = regex_pattern(t for e in self.entries for t in e.terms)

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in self._pattern.finditer(text)] if self._pattern is not None else []

    def __call__(self, text: str) -> list[str]:
        tokens = self.base(text)
        if self._pattern is not None:
            for match in self._pattern.finditer(text):
                whole = normalise(match.group(0))
                if whole not in tokens:
                    tokens.append(whole)
        return tokens

    def query_tokens(self, query: str) -> list[str]:
        if self._pattern is None:
            return self.base(query)
        rest = self._pattern.sub(" ", query)
        named = [normalise(m.group(0)) for m in self._pattern.finditer(query)]
        added = self.expansion_tokens(self.expand(query))
        return self.base(rest) + list(dict.fromkeys([*named, *added]))

    def expand(self, query: str) -> list[Expansion]:
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
        return list(dict.fromkeys(normalise(t) for e in expansions for t in e.added))


def merge_reference(current: list[GlossaryEntry], new: Iterable[tuple[str, ...]], max_terms: int,
                    new_id: Callable[[], str]) -> list[GlossaryEntry]:
    """``admin.glossary.add``'s merging as it was: every new entry compared with every entry."""
    for terms in new:
        keys = {normalise(t) for t in terms}
        overlapping = [e for e in current if keys & {normalise(t) for t in e.terms}]
        if overlapping:
            merged: dict[str, str] = {}
            for term in [*(t for e in overlapping for t in e.terms), *terms]:
                merged.setdefault(normalise(term), term)
            current = [e for e in current if e not in overlapping] + [
                GlossaryEntry(overlapping[0].id, tuple(merged.values())[:max_terms])]
        else:
            current.append(GlossaryEntry(new_id(), terms))
    return current


# -- a large glossary (tests/test_glossary.py and bench/glossary_bench.py) ----------------------------------------
_CHINESE = "模型训练数据推理服务部署向量检索文档知识问答系统用户权限日志监控延迟缓存队列索引分词召回排序评估标注"
_WORDS = ("model training data inference service deploy vector search document knowledge answer system user "
          "access log monitor latency cache queue index token recall rank evaluation label fine tuning").split()


def large_glossary(entries: int = 2000, terms: int = 12, seed: int = 0) -> list[GlossaryEntry]:
    """``entries`` entries of ``terms`` distinct terms each, a third each: acronyms, English phrases of two or three
    words, Chinese terms of three to six characters."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out = []
    for number in range(entries):
        names: list[str] = []
        while len(names) < terms:
            kind = len(names) % 3
            if kind == 0:
                term = "".join(rng.choice(string.ascii_uppercase) for _ in range(rng.randint(2, 5)))
            elif kind == 1:
                term = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 3))) + f" {rng.randint(1, 999)}"
            else:
                term = "".join(rng.choice(_CHINESE) for _ in range(rng.randint(3, 6)))
            if normalise(term) not in seen:
                seen.add(normalise(term))
                names.append(term)
        out.append(GlossaryEntry(f"e{number}", tuple(names)))
    return out


def long_query(language: str, chars: int, glossary: Sequence[GlossaryEntry], seed: int = 0) -> str:
    """About ``chars`` characters of Chinese or English text from the glossary's vocabulary, naming a term now and
    then."""
    rng = random.Random(seed)
    parts: list[str] = []
    while sum(map(len, parts)) < chars:
        if rng.random() < 0.05:
            parts.append(rng.choice(rng.choice(glossary).terms))
        elif language == "zh":
            parts.append("".join(rng.choice(_CHINESE) for _ in range(rng.randint(2, 8))) + rng.choice("，。的和在"))
        else:
            parts.append(rng.choice(_WORDS))
    return (" " if language == "en" else "").join(parts)[:chars]
