import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from rag_service.index.bm25 import BM25Index
from rag_service.text.tokenize import tokenize

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
    index = BM25Index().build((str(i), str(i), d) for i, d in enumerate(docs))
    q = tokenize(query)
    np.testing.assert_allclose(index.scores(q), oracle.get_scores(q), atol=1e-6)


def test_negative_idf_is_floored_like_rank_bm25() -> None:
    # "the" is in more than half of the documents: rank_bm25 replaces its negative idf by eps * mean idf.
    docs = [t.split() for t in CORPUS[:5]]
    oracle = BM25Okapi(docs)
    index = BM25Index().build((str(i), str(i), d) for i, d in enumerate(docs))
    assert oracle.idf["the"] > 0
    np.testing.assert_allclose(index.scores(["the"]), oracle.get_scores(["the"]), atol=1e-9)


def test_top_returns_only_matches_best_first() -> None:
    docs = [tokenize(t) for t in CORPUS]
    index = BM25Index().build((f"d{i}", f"d{i}", d) for i, d in enumerate(docs))
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
    index = BM25Index().build([("a", "a", ["blue", "door"]), ("b", "b", ["red", "car"])])
    assert [doc for doc, _ in index.top(["door"], 5)] == ["a"]
    assert BM25Index().build([("a", "a", ["blue"])]).top(["blue"], 5)[0][0] == "a"


def _oracle_top(docs: dict[str, list[str]], query: list[str]) -> dict[str, float]:
    ids = list(docs)
    scores = BM25Okapi([docs[i] for i in ids]).get_scores(query)
    return dict(zip(ids, scores, strict=True))


def test_incremental_add_and_remove_equal_a_fresh_build(tmp_path) -> None:
    docs = {f"c{i}": tokenize(t) for i, t in enumerate(CORPUS)}
    index = BM25Index()
    index.add([("d0", "c0", docs["c0"]), ("d0", "c1", docs["c1"])])
    for i in range(2, len(CORPUS)):
        index.add([(f"d{i}", f"c{i}", docs[f"c{i}"])])
    assert index.top(["cat"], 3)  # a query first: its cached per-row normalisation must not outlive the removals
    index.remove_document("d0")  # removes c0 and c1 together
    index.remove(["c5"])
    live = {k: v for k, v in docs.items() if k not in ("c0", "c1", "c5")}
    for query in (["cat"], tokenize("图书馆 借阅"), ["the", "dog"]):
        expected = _oracle_top(live, query)
        got = dict(zip(sorted(index.live_ids(), key=lambda c: int(c[1:])), index.scores(query), strict=True))
        assert got.keys() == expected.keys()
        np.testing.assert_allclose([got[k] for k in expected], list(expected.values()), atol=1e-6)
    # Compaction and a save/load round trip change nothing.
    before = index.top(["cat", "dog"], 10)
    index.compact()
    assert index.top(["cat", "dog"], 10) == before
    index.add([("d9", "c9", ["cat"])])
    index.revision, index.tokenizer = 7, "t"
    index.save(tmp_path)
    loaded = BM25Index.load(tmp_path)
    assert loaded is not None and (loaded.revision, loaded.tokenizer) == (7, "t")
    assert loaded.top(["cat", "dog"], 10) == index.top(["cat", "dog"], 10)
    loaded.remove_document("d9")
    assert "c9" not in loaded and "c9" in index


def test_allowed_rows_filter_and_matched_terms() -> None:
    index = BM25Index().build([("a", "a1", ["cat", "mat"]), ("b", "b1", ["cat", "dog"]), ("c", "c1", ["dog"])])
    allowed = index.allowed_rows(["b1", "c1"])
    assert [cid for cid, _ in index.top(["cat"], 5, allowed)] == ["b1"]
    assert index.matched_terms(["cat", "dog", "zebra"], "b1") == ["cat", "dog"]
