"""Tokenisation for BM25, by script: jieba search mode for CJK runs; lower-case, stop-word removal and
Snowball stemming for Latin script.

Splitting by script first keeps mixed text ("RAG 系统 uses BM25") sane: jieba never sees English,
and English never falls through as one giant CJK token. A tokenizer has a ``version``: tokens
stored with one version are never mixed with queries tokenised by another.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from pathlib import Path

import jieba
import Stemmer

from rag_service.text.language import CJK_RANGES

jieba.setLogLevel(logging.WARNING)

_CJK = CJK_RANGES
_RUNS = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+", re.UNICODE)
_IS_CJK = re.compile(rf"[{_CJK}]")
_SCHEME = "3"  # bump when the rules below change


def has_cjk(text: str) -> bool:
    return _IS_CJK.search(text) is not None


class Tokenizer:
    def __init__(self, user_dict: Path | None = None) -> None:
        self._jieba = jieba.Tokenizer()
        suffix = ""
        if user_dict is not None:
            self._jieba.load_userdict(str(user_dict))
            suffix = "+" + hashlib.sha256(user_dict.read_bytes()).hexdigest()[:12]
        self._stem = Stemmer.Stemmer("english").stemWord
        self.version = f"{_SCHEME}{suffix}"

    def __call__(self, text: str) -> list[str]:
        tokens: list[str] = []
        for run in _RUNS.findall(text):
            if _IS_CJK.match(run):
                tokens.extend(t for t in self._jieba.cut_for_search(run) if t.strip() and t not in STOPWORDS)
            elif (word := run.lower()) not in STOPWORDS:
                tokens.append(self._stem(word))
        return tokens


@functools.lru_cache(maxsize=8)
def get_tokenizer(user_dict: Path | None = None) -> Tokenizer:
    return Tokenizer(user_dict)


def tokenize(text: str) -> list[str]:
    """Tokens with the default tokenizer (no user dictionary)."""
    return get_tokenizer()(text)


# Function words that carry no evidence; used where overlap must mean shared content.
STOPWORDS = frozenset(
    "a an the and or but if then of to in on at by for with from as is are was were be been being it its this "
    "that these those there here which who whom what when where why how do does did has have had not no can "
    "could will would should may might must shall i you he she we they them their our your his her my me us "
    "so than too very also just only about into over under again further more most some any each all both "
    "such own same other".split()
) | frozenset("的 了 是 在 和 有 也 就 都 而 及 与 着 或 之 其 这 那 个 吗 呢 吧 啊 被 把 让 对 从 向 为 以 于 并 但 "
              "如果 因为 所以 我们 你们 他们 它们 什么 一个 没有 可以 这个 那个 哪些 哪个 多少 怎么 如何".split())


_CN_DIGITS = {c: n for n, chars in enumerate("零〇 一 二两 三 四 五 六 七 八 九".split()) for c in chars}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}
_CN_NUMBER = re.compile(r"[零〇一二两三四五六七八九十百千万]+(?:点[零〇一二三四五六七八九]+)?")


def _cn_integer(text: str) -> int:
    """二〇一五 -> 2015 (digit by digit), 二百零五 -> 205, 十二 -> 12, 三万五千 -> 35000."""
    if not any(c in _CN_UNITS or c == "万" for c in text):
        return int("".join(str(_CN_DIGITS[c]) for c in text))
    total = section = digit = 0
    for c in text:
        if c in _CN_DIGITS:
            digit = _CN_DIGITS[c]
        elif c == "万":
            total += (section + digit) * 10000
            section = digit = 0
        else:
            section += (digit or 1) * _CN_UNITS[c]
            digit = 0
    return total + section + digit


def arabic_numerals(text: str) -> str:
    """Chinese numerals as digits (八 -> 8, 零点五 -> 0.5), so '8本书' and '八本书' share their evidence."""
    def convert(m: re.Match[str]) -> str:
        whole, _, decimals = m.group(0).partition("点")
        number = str(_cn_integer(whole))
        return f"{number}.{''.join(str(_CN_DIGITS[c]) for c in decimals)}" if decimals else number

    return _CN_NUMBER.sub(convert, text)


# A Chinese numeral that is a quantity: two characters or more (二十一, 两千六百八十), or one before a unit of measure
# or money (八本, 五元, 三个月); not 一卡通, 周二 or 第一.
_CN_QUANTITY = re.compile(
    r"(?<!第)(?<!周)(?<!星期)(?<!礼拜)(?:[零〇一二两三四五六七八九十百千万]{2,}(?:点[零〇一二三四五六七八九]+)?"
    r"|[一二两三四五六七八九十](?:点[零〇一二三四五六七八九]+)?(?=[个本元块次天年月日周岁人张件份台辆小分秒点层楼号米斤克名位枚间]))")


def digits_beside_numerals(text: str) -> str:
    """Chinese quantities followed by their digits in parentheses (两千六百八十元 -> 两千六百八十（2680）元), for a
    reader who answers in another language: the small model misreads Chinese numerals it has to translate."""
    def annotate(m: re.Match[str]) -> str:
        return f"{m.group(0)}（{arabic_numerals(m.group(0))}）"

    return _CN_QUANTITY.sub(annotate, text)


_EN_UNITS = {w: n for n, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_EN_TENS = {w: 10 * n for n, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split())
            if n > 1}
_EN_NUMBER = re.compile(rf"\b(?:({'|'.join(_EN_TENS)})(?:[- ]({'|'.join(list(_EN_UNITS)[1:10])}))?|"
                        rf"({'|'.join(_EN_UNITS)}))\b", re.IGNORECASE)


def english_numerals(text: str) -> str:
    """English number words as digits (five -> 5, ninety -> 90, twenty-five -> 25), so 'five teas' and
    '5 teas' share their evidence."""
    def convert(m: re.Match[str]) -> str:
        if m.group(3):
            return str(_EN_UNITS[m.group(3).lower()])
        return str(_EN_TENS[m.group(1).lower()] + (_EN_UNITS[m.group(2).lower()] if m.group(2) else 0))

    return _EN_NUMBER.sub(convert, text)


def evidence_tokens(text: str) -> set[str]:
    """Distinct content units for overlap checks: Latin words and numbers minus function words, and CJK
    character bigrams, with Chinese numerals read as digits. Bigrams, not jieba words, because jieba can
    cut the same name differently in two contexts (林晓雨 alone vs 由林晓雨于), which would hide real
    overlap."""
    units: set[str] = set()
    for run in _RUNS.findall(english_numerals(arabic_numerals(text))):
        if _IS_CJK.match(run):
            units.update(run[i:i + 2] for i in range(max(len(run) - 1, 1)))
        elif (word := run.lower()) not in STOPWORDS:
            units.add(word)
    return units
