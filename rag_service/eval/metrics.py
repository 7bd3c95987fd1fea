"""Retrieval and answer metrics as pure functions, defined as the reference tools define them, so our
numbers can be put next to published ones.

Retrieval (BEIR / trec_eval): ``ranking`` is a list of distinct document ids, best first; ``gold`` maps
judged ids to graded relevance. A grade of 0 or less is non-relevant for hit, recall and MRR and adds
no gain to nDCG.

- hit@k: 1 if any relevant document is in the top k;
- recall@k: |relevant ∩ top k| / |relevant|;
- mrr@k: 1 / rank of the first relevant document in the top k, else 0;
- ndcg@k: trec_eval's ``ndcg_cut``: DCG = Σ_{i≤k} grade_i / log2(i + 1) with the grade itself as the
  (linear) gain, divided by the DCG of the judged grades sorted from best to worst.

A query with no relevant document scores 0 on every retrieval metric (callers evaluate judged queries only).

Answers: exact match and token F1, each the maximum over the reference answers.

- Text without CJK: the SQuAD script: lower-case, drop ASCII punctuation, drop the articles a/an/the,
  split on whitespace; F1 over the bag of tokens.
- Text with CJK (in the prediction or the reference): the CMRC 2018 script: lower-case, drop
  punctuation, then every CJK character is a token and every run of other non-space characters (Latin
  words, numbers) is one token; F1 from the *longest common substring* of the two token sequences
  (precision = its length / prediction tokens, recall = its length / reference tokens); EM compares the
  punctuation-free strings. CMRC strips a fixed list of punctuation marks; we strip that list and
  every Unicode punctuation character (so ASCII and full-width ``.,()"`` are stripped too), and split
  Latin runs on whitespace where CMRC calls NLTK's tokenizer (identical once punctuation is gone).
- No reference answers (unanswerable): as SQuAD v2 scores it, EM = F1 = 1 for an empty prediction and 0
  otherwise.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from rag_service.text.tokenize import has_cjk

Gold = Mapping[str, int]


# -- retrieval ---------------------------------------------------------------------------------------
def _relevant(gold: Gold) -> set[str]:
    return {doc for doc, grade in gold.items() if grade > 0}


def hit_at_k(ranking: Sequence[str], gold: Gold, k: int) -> float:
    relevant = _relevant(gold)
    return float(any(doc in relevant for doc in ranking[:k]))


def recall_at_k(ranking: Sequence[str], gold: Gold, k: int) -> float:
    relevant = _relevant(gold)
    return len(relevant.intersection(ranking[:k])) / len(relevant) if relevant else 0.0


def mrr_at_k(ranking: Sequence[str], gold: Gold, k: int) -> float:
    relevant = _relevant(gold)
    return next((1.0 / rank for rank, doc in enumerate(ranking[:k], start=1) if doc in relevant), 0.0)


def _dcg(grades: Iterable[int]) -> float:
    return sum(grade / math.log2(rank + 1) for rank, grade in enumerate(grades, start=1) if grade > 0)


def ndcg_at_k(ranking: Sequence[str], gold: Gold, k: int) -> float:
    ideal = _dcg(sorted(gold.values(), reverse=True)[:k])
    return _dcg(gold.get(doc, 0) for doc in ranking[:k]) / ideal if ideal > 0 else 0.0


def retrieval_metrics(ranking: Sequence[str], gold: Gold, k: int = 10) -> dict[str, float]:
    """The metric set a retrieval run reports: the fixed BEIR-style cut-offs plus the same at ``k``."""
    out = {
        "ndcg@10": ndcg_at_k(ranking, gold, 10),
        "recall@10": recall_at_k(ranking, gold, 10),
        "recall@100": recall_at_k(ranking, gold, 100),
        "mrr@10": mrr_at_k(ranking, gold, 10),
        "hit@1": hit_at_k(ranking, gold, 1),
        "hit@5": hit_at_k(ranking, gold, 5),
    }
    for name, fn in (("ndcg", ndcg_at_k), ("recall", recall_at_k), ("mrr", mrr_at_k), ("hit", hit_at_k)):
        out.setdefault(f"{name}@{k}", fn(ranking, gold, k))
    return out


# -- aggregation -------------------------------------------------------------------------------------
def mean(values: Iterable[float]) -> float:
    """Arithmetic mean; 0.0 for no values (an empty run has nothing to average, not an error)."""
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def mean_metrics(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per-key means over per-query metric dicts that share their keys."""
    return {key: mean(row[key] for row in rows) for key in (rows[0] if rows else {})}


# -- answers ---------------------------------------------------------------------------------------
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ASCII_PUNCTUATION = frozenset(string.punctuation)
# The CMRC 2018 script's list (it also holds symbols such as + = ^ ~ that are not Unicode punctuation).
_CMRC_PUNCTUATION = frozenset("-:_*^/\\~`+=，。：？！“”；’《》…·、「」（）－～『』")


def _squad_tokens(text: str) -> list[str]:
    text = "".join(ch for ch in text.lower() if ch not in _ASCII_PUNCTUATION)
    return _ARTICLES.sub(" ", text).split()


def _is_cmrc_punctuation(ch: str) -> bool:
    return ch in _CMRC_PUNCTUATION or unicodedata.category(ch).startswith("P")


def _cmrc_strip(text: str) -> str:
    return "".join(ch for ch in text.lower().strip() if not _is_cmrc_punctuation(ch))


def _cmrc_tokens(text: str) -> list[str]:
    tokens: list[str] = []
    run = ""
    for ch in _cmrc_strip(text):
        if has_cjk(ch) or ch.isspace():
            if run:
                tokens.append(run)
                run = ""
            if not ch.isspace():
                tokens.append(ch)
        else:
            run += ch
    return [*tokens, run] if run else tokens


def _longest_common_substring(a: Sequence[str], b: Sequence[str]) -> int:
    best = 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def _f1(common: int, predicted: int, reference: int) -> float:
    if predicted == 0 or reference == 0:
        return float(predicted == reference)
    if common == 0:
        return 0.0
    precision, recall = common / predicted, common / reference
    return 2 * precision * recall / (precision + recall)


def _pair_f1(prediction: str, reference: str) -> float:
    if has_cjk(prediction) or has_cjk(reference):
        p, r = _cmrc_tokens(prediction), _cmrc_tokens(reference)
        return _f1(_longest_common_substring(p, r), len(p), len(r))
    p, r = _squad_tokens(prediction), _squad_tokens(reference)
    return _f1(sum((Counter(p) & Counter(r)).values()), len(p), len(r))


def _pair_em(prediction: str, reference: str) -> float:
    if has_cjk(prediction) or has_cjk(reference):
        return float(_cmrc_strip(prediction) == _cmrc_strip(reference))
    return float(_squad_tokens(prediction) == _squad_tokens(reference))


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    return max(_pair_em(prediction, a) for a in answers or [""])


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    return max(_pair_f1(prediction, a) for a in answers or [""])


def _contained_form(text: str) -> str:
    """Lower-case, punctuation and spaces dropped, Chinese numerals as digits, thousands separators
    dropped: '1,850 metres' and '1850米' compare by their content."""
    from rag_service.text.tokenize import arabic_numerals

    text = re.sub(r"(?<=\d),(?=\d{3})", "", arabic_numerals(text))
    return "".join(ch for ch in text.lower() if not ch.isspace() and not _is_cmrc_punctuation(ch))


def contains_any(prediction: str, alternatives: Sequence[str]) -> bool:
    """Whether one of ``alternatives`` appears in ``prediction`` (RGB's accuracy rule for one item)."""
    hay = _contained_form(prediction)
    return any(_contained_form(a) and _contained_form(a) in hay for a in alternatives)


def has_required(prediction: str, required: Sequence[Sequence[str]]) -> bool:
    """RGB's rule: every required item appears (an item with alternatives: any one of them)."""
    return bool(required) and all(contains_any(prediction, item) for item in required)
