"""The language of a text and of a knowledge base.

Only the script matters here, because that is what changes how retrieval behaves: ``zh`` is text written mostly in
CJK characters (Chinese; Japanese and Korean take the same jieba path in BM25), ``en`` everything else (the
Snowball path). The search defaults chosen by language are in ``rag_service.retrieval.fusion``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

# CJK ideographs, kana and hangul: the script BM25 hands to jieba (rag_service.text.tokenize) and that makes a text zh.
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
