import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from rag_service.bm25 import BM25Index
from rag_service.tokenize import tokenize

CORPUS = [
    "the cat sat on the mat",
    "the dog chased the cat around the garden",
    "a quick brown fox jumps over the lazy dog",
    "the mat was red and the cat was black",
    "dogs and cats living together",
    "星河社区图书馆每人最多可以借阅八本书",
    "图书馆周一闭馆，用于整理书架",
    "青山咖啡烘焙坊只使用云南咖啡豆",
]


@pytest.mark.parametrize("query", [
    "the cat", "cat cat mat", "lazy fox", "unknown words only", "图书馆 借阅", "咖啡 the dog",
])
def test_scores_equal_rank_bm25(query: str) -> None:
    docs = [tokenize(t) for t in CORPUS]
    oracle = BM25Okapi(docs)
    index = BM25Index().build((str(i), d) for i, d in enumerate(docs))
    q = tokenize(query)
    np.testing.assert_allclose(index.scores(q), oracle.get_scores(q), atol=1e-6)


def test_negative_idf_is_floored_like_rank_bm25() -> None:
    # "the" is in more than half of the documents: rank_bm25 replaces its negative idf by eps * mean idf.
    docs = [t.split() for t in CORPUS[:5]]
    oracle = BM25Okapi(docs)
    index = BM25Index().build((str(i), d) for i, d in enumerate(docs))
    assert oracle.idf["the"] > 0
    np.testing.assert_allclose(index.scores(["the"]), oracle.get_scores(["the"]), atol=1e-9)


def test_top_returns_only_matches_best_first() -> None:
    docs = [tokenize(t) for t in CORPUS]
    index = BM25Index().build((f"d{i}", d) for i, d in enumerate(docs))
    top = index.top(tokenize("图书馆"), 10)
    assert [doc for doc, _ in top] == ["d6", "d5"] or [doc for doc, _ in top] == ["d5", "d6"]
    assert top[0][1] >= top[1][1]
    assert index.top(tokenize("zebra"), 5) == []


def test_empty_index() -> None:
    index = BM25Index().build([])
    assert index.top(["cat"], 5) == []


def test_tiny_corpus_still_matches_despite_non_positive_idf() -> None:
    # With one or two documents every idf is <= 0 (rank_bm25's formula); a matching document must
    # still be returned, and one without the term must not.
    index = BM25Index().build([("a", ["blue", "door"]), ("b", ["red", "car"])])
    assert [doc for doc, _ in index.top(["door"], 5)] == ["a"]
    assert BM25Index().build([("a", ["blue"])]).top(["blue"], 5)[0][0] == "a"
