"""Rank fusion of several retrievers' ranked lists."""

from __future__ import annotations


def reciprocal_rank_fusion(ranked: dict[str, list[str]], k: int = 60) -> list[tuple[str, float]]:
    """Score each id by sum(1 / (k + rank)) over the lists it appears in (rank from 1), best first.

    Ties keep the order in which ids were first seen, so results are deterministic.
    """
    scores: dict[str, float] = {}
    for ids in ranked.values():
        for rank, item in enumerate(ids, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])
