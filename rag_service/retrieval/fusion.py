"""Fusion of several retrievers' ranked lists into one, and the fusion each language gets by default.

Defaults chosen by language apply only where nothing more specific is set: a search's own ``fusion``, then the
KB's stored option, then an explicit ``RAG_FUSION`` / ``RAG_BM25_WEIGHT``.
"""

from __future__ import annotations

from dataclasses import dataclass

from rag_service.settings import Fusion
from rag_service.text.language import Language


def reciprocal_rank_fusion(ranked: dict[str, list[str]], k: int = 60) -> list[tuple[str, float]]:
    """Score each id by sum(1 / (k + rank)) over the lists it appears in (rank from 1), best first.

    Ties keep the order in which ids were first seen, so results are deterministic.
    """
    scores: dict[str, float] = {}
    for ids in ranked.values():
        for rank, item in enumerate(ids, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def weighted_fusion(scored: dict[str, list[tuple[str, float]]],
                    weights: dict[str, float]) -> list[tuple[str, float]]:
    """Min-max normalise each list's scores to [0, 1], then sum them with the lists' weights.

    Normalising per list is what makes BM25's unbounded scores and cosine similarities comparable;
    an id missing from a list gets 0 from it. A list whose scores are all equal counts as 1.
    """
    fused: dict[str, float] = {}
    for name, items in scored.items():
        if not items:
            continue
        values = [s for _, s in items]
        lo, hi = min(values), max(values)
        for item, score in items:
            norm = (score - lo) / (hi - lo) if hi > lo else 1.0
            fused[item] = fused.get(item, 0.0) + weights.get(name, 1.0) * norm
    return sorted(fused.items(), key=lambda kv: -kv[1])


@dataclass(frozen=True, slots=True)
class LanguageDefaults:
    """Fusion used for a KB of this language unless something more specific is set, with the measurement behind
    it (reproduce with the command in ``evidence``)."""

    fusion: Fusion
    bm25_weight: float
    evidence: str


LANGUAGE_DEFAULTS: dict[Language, LanguageDefaults] = {
    # Weighted fusion of min-max-normalised scores beat reciprocal-rank fusion on every data set measured, and the
    # best BM25 weight leans towards whichever list is stronger in the language (docs/evaluation.md "Fusion by
    # language", with each figure's command).
    # Chinese: the vector list is the stronger one (jieba's BM25 splits news text into short words that match
    # distractors), so BM25 gets less than half: 0.3 is the peak of RGB's curve and also beat RRF on CMRC and the
    # structure benchmark.
    "zh": LanguageDefaults("weighted", 0.3, "python -m rag_service.eval.fusion_study "
                           "--beir ../shared/eval-data/rgb_zh_dev --split dev"),
    # English: BM25 is the stronger list on SciFact's abstracts, and a higher BM25 weight than Chinese gets won on
    # ClapNQ too. 0.5 is the even split, kept over a marginally better 0.6 rather than a tuned decimal.
    "en": LanguageDefaults("weighted", 0.5, "python -m rag_service.eval.fusion_study "
                           "--beir ../shared/eval-data/scifact --split train"),
}
# A KB with no detected language yet (empty, or documents ingested before detection) uses these.
FALLBACK: Language = "en"


def defaults_for(language: Language | None) -> LanguageDefaults:
    return LANGUAGE_DEFAULTS[language or FALLBACK]
