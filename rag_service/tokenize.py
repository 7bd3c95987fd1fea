"""Tokenisation for BM25: jieba search mode for CJK runs, lower-cased words for Latin script.

Splitting by script first keeps mixed text ("RAG 系统 uses BM25") sane: jieba never sees English,
and English never falls through as one giant CJK token.
"""

from __future__ import annotations

import logging
import re

import jieba

jieba.setLogLevel(logging.WARNING)

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
_RUNS = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+", re.UNICODE)
_IS_CJK = re.compile(rf"[{_CJK}]")


def has_cjk(text: str) -> bool:
    return _IS_CJK.search(text) is not None


def tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    for run in _RUNS.findall(text):
        if _IS_CJK.match(run):
            tokens.extend(t for t in jieba.cut_for_search(run) if t.strip())
        else:
            tokens.append(run.lower())
    return tokens
