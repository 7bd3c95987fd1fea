"""Retrieval features on the real stack: filters on both paths, fusions, incremental BM25, explain, rerank."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rag_service.index.bm25 import BM25Index
from rag_service.index.lexical import bm25_reader, index_dir
from rag_service.models.registry import minilm_path
from rag_service.retrieval.fusion import reciprocal_rank_fusion, weighted_fusion
from rag_service.retrieval.rerank import cross_encoder
from rag_service.retrieval.search import Retriever
from rag_service.settings import Settings
from rag_service.storage.filters import SearchFilter
from rag_service.workspace import Workspace
from tests.conftest import SAMPLES, rag_json, run_rag


@pytest.fixture()
def retriever(sample_dir: Path) -> Retriever:
    ws = Workspace(Settings(data_dir=sample_dir))
    return Retriever(ws, ws.catalog.get_kb("samples"))


def test_rrf_and_weighted_fusion_by_hand() -> None:
    fused = dict(reciprocal_rank_fusion({"a": ["x", "y"], "b": ["y", "z"]}, k=60))
    assert fused["y"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["x"] == pytest.approx(1 / 61) and fused["z"] == pytest.approx(1 / 62)
    w = dict(weighted_fusion({"bm25": [("x", 10.0), ("y", 5.0), ("z", 0.0)], "vector": [("y", 0.9), ("z", 0.5)]},
                             {"bm25": 0.3, "vector": 0.7}))
    assert w["x"] == pytest.approx(0.3) and w["y"] == pytest.approx(0.3 * 0.5 + 0.7) and w["z"] == 0.0


@pytest.mark.parametrize("exact_scope_max", [0, 2000], ids=["chroma-where", "exact-scoring"])
@pytest.mark.parametrize("mode", ["bm25", "vector", "hybrid"])
def test_filters_hold_on_every_path(retriever: Retriever, mode: str, exact_scope_max: int,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Narrow filters score their chunks' stored vectors directly, wide ones go through Chroma's where."""
    monkeypatch.setattr("rag_service.retrieval.search.EXACT_SCOPE_MAX", exact_scope_max)
    zh_only = retriever.search("图书馆 library 咖啡 coffee", mode=mode, k=10,
                               filter=SearchFilter.parse(["source=samples/zh/*"]))
    assert zh_only and all(h.chunk.source.startswith("samples/zh/") for h in zh_only)
    md_only = retriever.search("rules hours library", mode=mode, k=10, filter=SearchFilter.parse(["format=md"]))
    assert md_only and all(h.chunk.source.endswith(".md") for h in md_only)
    doc = zh_only[0].chunk.doc_id
    one = retriever.search("anything at all 图书馆", mode=mode, k=10, filter=SearchFilter.parse([f"doc_id={doc}"]))
    assert {h.chunk.doc_id for h in one} == {doc}
    assert retriever.search("library", mode=mode, filter=SearchFilter.parse(["format=pdf"])) == []


def test_exact_scope_scoring_ranks_like_chroma(retriever: Retriever, monkeypatch: pytest.MonkeyPatch) -> None:
    flt = SearchFilter.parse(["source=samples/en/*"])
    exact = retriever.search("tea farm tours", mode="vector", k=10, filter=flt)
    monkeypatch.setattr("rag_service.retrieval.search.EXACT_SCOPE_MAX", 0)
    walked = retriever.search("tea farm tours", mode="vector", k=10, filter=flt)
    assert [h.chunk.id for h in exact] == [h.chunk.id for h in walked]
    assert [h.score for h in exact] == pytest.approx([h.score for h in walked], abs=1e-5)


@pytest.mark.parametrize("fusion", ["rrf", "weighted"])
def test_both_fusions_find_the_fact(retriever: Retriever, fusion: str) -> None:
    hits = retriever.search("Who founded the Greenleaf Tea Farm?", fusion=fusion)
    assert "Mara Okafor" in hits[0].chunk.text
    assert set(hits[0].ranks) == {"bm25", "vector"}


def test_bad_options_are_clear_errors(retriever: Retriever) -> None:
    from rag_service.errors import InvalidInputError

    for kwargs in ({"mode": "magic"}, {"fusion": "sum"}, {"expand": "more"}, {"rerank": "/no/such/model"}):
        with pytest.raises(InvalidInputError):
            retriever.search("x", **kwargs)
    with pytest.raises(InvalidInputError, match="KEY=VALUE"):
        SearchFilter.parse(["page"])


@pytest.mark.slow
def test_incremental_add_and_delete_without_rebuild(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLES / "en", docs)
    data = tmp_path / "data"
    run_rag("ingest", "--kb", "inc", str(docs), data_dir=data)
    ws = Workspace(Settings(data_dir=data))
    kb = ws.catalog.get_kb("inc")
    with bm25_reader(ws, kb) as index:
        segments_before = len(index._segments)

    new = tmp_path / "new.txt"
    new.write_text("The quantum espresso machine is serviced every ninth day.", encoding="utf-8")
    doc_id = rag_json("ingest", "--kb", "inc", str(new), data_dir=data)["files"][0]["doc_id"]
    hits = Retriever(ws, kb).search("quantum espresso", mode="bm25")
    assert hits and hits[0].chunk.doc_id == doc_id
    with bm25_reader(ws, kb) as index:
        assert len(index._segments) == segments_before + 1  # appended, not rebuilt
        assert index.revision == ws.catalog.revision(kb.id)
    saved = BM25Index.load(index_dir(ws, kb))
    assert saved is not None and saved.revision == index.revision

    run_rag("docs", "delete", "--kb", "inc", doc_id, data_dir=data)
    assert Retriever(ws, kb).search("quantum espresso", mode="bm25") == []
    assert Retriever(ws, kb).search("quantum espresso", mode="vector", k=10)[0].chunk.doc_id != doc_id


def test_explain_json(sample_dir: Path) -> None:
    out = rag_json("search", "--kb", "samples", "--explain", "--k", "2", "daily meal allowance", data_dir=sample_dir)
    top = out["hits"][0]
    assert {"chunk_id", "doc_id", "source", "text", "score"} <= set(top)
    explain = top["explain"]
    assert explain["bm25"]["rank"] == 1 and explain["vector"]["rank"] >= 1
    assert explain["fused_score"] == top["score"]
    assert {"meal", "allow"} <= set(explain["matched_terms"])
    assert out["queries"] == ["daily meal allowance"]


def test_e5_rescoring_orders_by_stored_vectors(retriever: Retriever) -> None:
    hits = retriever.search("robot test arena safety badge", rerank="e5", k=5)
    scores = [h.scores["rerank"] for h in hits]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    assert "Lighthouse" in hits[0].chunk.text


def test_cross_encoder_hook_uses_the_models_scores(retriever: Retriever) -> None:
    # No cross-encoder ships with the project; a BERT checkpoint loads as one (with an untrained,
    # randomly initialised head), which is enough to prove the hook orders hits by the model's scores.
    path = str(minilm_path().resolve())
    hits = retriever.search("tea harvest", rerank=path, k=4)
    model = cross_encoder(path)._model  # the instance the search used
    expected = model.predict([("tea harvest", h.chunk.text) for h in hits], show_progress_bar=False)
    assert [h.scores["rerank"] for h in hits] == pytest.approx(sorted(expected.tolist(), reverse=True), abs=1e-5)


@pytest.mark.llm
def test_query_expansion_multi_and_hyde(retriever: Retriever) -> None:
    multi = retriever.run("When do tours of the tea farm happen?", expand="multi")
    assert len(multi.queries) >= 2 and multi.queries[0] == "When do tours of the tea farm happen?"
    assert "Saturdays" in multi.hits[0].chunk.text
    assert any(name.startswith("bm25#") for name in multi.hits[0].ranks)
    hyde = retriever.run("图书馆每人最多可以借几本书？", expand="hyde")
    assert hyde.hypothetical and "八本书" in hyde.hits[0].chunk.text
    assert "hyde" in hyde.hits[0].ranks
