"""Fusion of several retrievers' ranked lists into one."""

from __future__ import annotations

from typing import Literal

Fusion = Literal["rrf", "weighted"]
FUSIONS: tuple[Fusion, ...] = ("rrf", "weighted")


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
