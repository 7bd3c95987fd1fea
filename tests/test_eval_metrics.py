"""Metric definitions against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from rag_service.eval.metrics import (
    exact_match,
    hit_at_k,
    mean,
    mean_metrics,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
    retrieval_metrics,
    token_f1,
)

GOLD = {"a": 2, "b": 1, "c": 0}  # c is judged non-relevant
RANKING = ["c", "b", "x", "a"]


def test_hit_recall_mrr_on_a_small_ranking() -> None:
    assert hit_at_k(RANKING, GOLD, 1) == 0.0  # c has grade 0: not a hit
    assert hit_at_k(RANKING, GOLD, 2) == 1.0
    assert recall_at_k(RANKING, GOLD, 1) == 0.0
    assert recall_at_k(RANKING, GOLD, 2) == 0.5  # b of {a, b}
    assert recall_at_k(RANKING, GOLD, 10) == 1.0
    assert mrr_at_k(RANKING, GOLD, 10) == 0.5  # first relevant at rank 2
    assert mrr_at_k(RANKING, GOLD, 1) == 0.0
    assert mrr_at_k(["x", "y", "a"], GOLD, 10) == pytest.approx(1 / 3)


def test_graded_ndcg_by_hand() -> None:
    # DCG@10  = 0/log2(2) [c] + 1/log2(3) [b] + 0 [x] + 2/log2(5) [a] = 0.630930 + 0.861353 = 1.492283
    # IDCG@10 = 2/log2(2) + 1/log2(3) + 0/log2(4)                    = 2 + 0.630930      = 2.630930
    # nDCG@10 = 1.492283 / 2.630930 = 0.567207
    assert ndcg_at_k(RANKING, GOLD, 10) == pytest.approx(0.567207, abs=1e-6)
    # @2: DCG = 1/log2(3) = 0.630930, IDCG = 2.630930 -> 0.239812
    assert ndcg_at_k(RANKING, GOLD, 2) == pytest.approx(0.239812, abs=1e-6)
    assert ndcg_at_k(["a", "b"], GOLD, 10) == pytest.approx(1.0)
    # Linear gain, not 2^rel - 1: one grade-2 document alone at rank 2 scores 2/log2(3) / 2.
    assert ndcg_at_k(["x", "a"], {"a": 2}, 10) == pytest.approx(1 / math.log2(3))


def test_no_relevant_document_scores_zero() -> None:
    assert ndcg_at_k(["a"], {"a": 0}, 10) == 0.0
    assert recall_at_k(["a"], {}, 10) == 0.0
    assert hit_at_k([], {"a": 1}, 5) == 0.0


def test_retrieval_metric_set_and_mean() -> None:
    row = retrieval_metrics(RANKING, GOLD, k=3)
    assert {"ndcg@10", "recall@10", "recall@100", "mrr@10", "hit@1", "hit@5", "ndcg@3", "hit@3"} <= row.keys()
    assert row["recall@3"] == 0.5
    assert mean_metrics([{"hit@1": 1.0}, {"hit@1": 0.0}, {"hit@1": 0.5}]) == {"hit@1": 0.5}
    assert mean([]) == 0.0


def test_english_exact_match_and_f1_normalise_like_squad() -> None:
    assert exact_match("The cat sat on the mat.", ["a cat sat on a mat"]) == 1.0
    assert token_f1("The cat sat on the mat.", ["a cat sat on a mat"]) == 1.0
    # [big, cat] vs [cat]: P = 1/2, R = 1 -> F1 = 2/3
    assert exact_match("the big cat", ["cat"]) == 0.0
    assert token_f1("the big cat", ["cat"]) == pytest.approx(2 / 3)
    # bag of tokens: order does not matter for English F1
    assert token_f1("mat the on sat cat", ["The cat sat on the mat"]) == 1.0


def test_max_over_gold_answers() -> None:
    assert token_f1("the big cat", ["dog", "cat", "big cat!"]) == 1.0
    assert exact_match("Paris", ["London", "paris"]) == 1.0
    assert token_f1("big cat", ["dog", "cat"]) == pytest.approx(2 / 3)


def test_chinese_character_level_like_cmrc() -> None:
    # pred: 光 荣 和 ωforce 公 司 (6 tokens; '-' is stripped, the Latin run stays one token)
    # gold: 光 荣 和 ωforce       (4 tokens); longest common substring 4 -> P = 4/6, R = 4/4 -> F1 = 0.8
    assert token_f1("光荣和ω-force公司", ["光荣和ω-force"]) == pytest.approx(0.8)
    assert exact_match("光荣和ω-force公司", ["光荣和ω-force"]) == 0.0
    # Punctuation does not count: 《》 and full-width marks are stripped.
    assert exact_match("《战国无双3》", ["战国无双3"]) == 1.0
    # Longest common *substring*, not a bag of characters: 北京大学 vs 大学北京 share only 北京 in a row
    # -> P = R = 2/4 -> F1 = 0.5 (a bag-of-characters F1 would give 1.0).
    assert token_f1("北京大学", ["大学北京"]) == pytest.approx(0.5)
    assert token_f1("1998年", ["1998年", "一九九八年"]) == 1.0


def test_unanswerable_scores_like_squad_v2() -> None:
    assert exact_match("", []) == 1.0
    assert token_f1("", []) == 1.0
    assert token_f1("some answer", []) == 0.0
