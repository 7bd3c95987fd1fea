"""The language of a text and of a knowledge base, and the search defaults that depend on it.

Only the script matters here, because that is what changes how retrieval behaves: ``zh`` is text written mostly in
CJK characters (Chinese; Japanese and Korean take the same jieba path in BM25), ``en`` everything else (the
Snowball path). Defaults chosen by language apply only where nothing more specific is set: a search's own
``fusion``, then the KB's stored option, then an explicit ``RAG_FUSION`` / ``RAG_BM25_WEIGHT``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from rag_service.fusion import Fusion

# CJK ideographs, kana and hangul: the script BM25 hands to jieba (rag_service.tokenize) and that makes a text zh.
CJK_RANGES = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
Language = Literal["zh", "en"]
LANGUAGES: tuple[Language, ...] = ("zh", "en")
_CJK_CHARS = re.compile(rf"[{CJK_RANGES}]")
_LETTERS = re.compile(rf"[^\W\d_{CJK_RANGES}]")
# One CJK character carries about as much as one English word of ~5 letters: a text is zh when it has at least as
# many CJK characters as English "words" (letters / 5), so a Chinese page quoting English terms stays zh.
LETTERS_PER_WORD = 5


def has_words(text: str) -> bool:
    """Whether ``text`` holds a letter or a CJK character: a separator line ('-----', '* * *'), a bare list marker
    or a lone number says nothing and is never indexed, packed or shown."""
    return bool(_CJK_CHARS.search(text) or _LETTERS.search(text))


def detect_language(text: str) -> Language:
    """``zh`` when CJK characters outnumber Latin-script words (letters / 5), else ``en``."""
    cjk = len(_CJK_CHARS.findall(text))
    return "zh" if cjk and cjk * LETTERS_PER_WORD >= len(_LETTERS.findall(text)) else "en"


def query_language(text: str) -> Language:
    """The language a question is asked in: ``zh`` when it holds any CJK character (answers and prompts follow it)."""
    return "zh" if _CJK_CHARS.search(text) else "en"


def majority_language(chunks_by_language: Mapping[str | None, int]) -> Language | None:
    """The language holding most chunks (None for an empty KB or one whose documents predate detection)."""
    known = {lang: n for lang, n in chunks_by_language.items() if lang in LANGUAGES and n > 0}
    if not known:
        return None
    return max(LANGUAGES, key=lambda lang: (known.get(lang, 0), lang == "en"))  # a tie keeps the en defaults


@dataclass(frozen=True, slots=True)
class LanguageDefaults:
    """Fusion used for a KB of this language unless something more specific is set, with the measurement behind
    it (reproduce with the command in ``evidence``)."""

    fusion: Fusion
    bm25_weight: float
    evidence: str


LANGUAGE_DEFAULTS: dict[Language, LanguageDefaults] = {
    # Weighted fusion of min-max-normalised scores beat reciprocal-rank fusion on every data set we measured, with
    # the weight leaning towards whichever list is stronger in the language. nDCG@10 (eval/README.md "Fusion by
    # language"):
    # RGB zh dev (240 questions, 5,847 news passages): bm25 0.691, vector 0.773; RRF 0.769; weighted with bm25 at
    # 0.2 / 0.3 / 0.4 / 0.5 / 0.6: 0.786 / 0.790 / 0.788 / 0.781 / 0.771. CMRC dev (500 questions): RRF 0.984, 0.3
    # 0.988. Structure benchmark hybrid hit@5 with the glossary 0.840 (RRF) -> 0.933 (0.3).
    "zh": LanguageDefaults("weighted", 0.3, "python eval/fusion_study.py --beir ../shared/eval-data/rgb_zh_dev "
                           "--split dev"),
    # SciFact train (809 questions, 5,183 abstracts): bm25 0.696, vector 0.663; RRF 0.713; weighted 0.3 / 0.4 / 0.5 /
    # 0.6 / 0.7: 0.707 / 0.725 / 0.738 / 0.739 / 0.729. ClapNQ dev (recursive 400/60): RRF 0.959, weighted 0.5
    # 0.974, 0.3 0.967. 0.5 rather than the 0.001-better 0.6: the even split, not a tuned decimal.
    "en": LanguageDefaults("weighted", 0.5, "python eval/fusion_study.py --beir ../shared/eval-data/scifact "
                           "--split train"),
}
# A KB with no detected language yet (empty, or documents ingested before detection) uses these.
FALLBACK: Language = "en"


def defaults_for(language: Language | None) -> LanguageDefaults:
    return LANGUAGE_DEFAULTS[language or FALLBACK]
