"""Pseudo-relevance feedback: the vector query moved towards the first fused results, on the real stack."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag_service.errors import InvalidInputError
from rag_service.retrieval.search import Retriever
from rag_service.settings import Settings
from rag_service.storage.filters import SearchFilter
from rag_service.workspace import Workspace
from tests.conftest import rag_json

QUERIES = ["图书馆每人最多可以借几本书", "How long does the robot battery last?", "咖啡豆怎么保存",
           "tea harvest season"]


def test_feedback_searches_again_with_the_moved_query_vector(sample_dir: Path) -> None:
    ws = Workspace(Settings(data_dir=sample_dir, pseudo_feedback_min_coherence=-1))  # no floor: always acts
    try:
        kb = ws.catalog.get_kb("samples")
        retriever = Retriever(ws, kb)
        changed = 0
        for query in QUERIES:
            plain = retriever.run(query, k=10, pseudo_feedback=0, explain=True)
            assert plain.feedback_chunks == [] and plain.feedback_coherence is None
            refined = retriever.run(query, k=10, pseudo_feedback=3, explain=True)
            # The feedback is the first three results of the ordinary search (no parents among the samples) ...
            assert refined.feedback_chunks == [h.chunk.id for h in plain.hits[:3]]
            # ... and the vector list is a search with q + mean(their vectors), normalised, computed here by hand.
            stored = ws.vectors.vectors(kb.collection, refined.feedback_chunks)
            moved = retriever.embedder.embed_query(query) + np.mean([stored[c] for c in refined.feedback_chunks],
                                                                     axis=0)
            expected = ws.vectors.query(kb.collection, retriever.embedder.name,
                                        (moved / np.linalg.norm(moved)).astype(np.float32), 30)
            ranks = {h.chunk.id: h.ranks["vector"] for h in refined.hits if "vector" in h.ranks}
            assert ranks == {c: i for i, (c, _) in enumerate(expected, start=1) if c in ranks}
            assert ranks and refined.fusion is not None and refined.fusion.pseudo_feedback == 3
            changed += [h.chunk.id for h in plain.hits] != [h.chunk.id for h in refined.hits]
        assert changed, "feedback changed no ranking: the test would prove nothing"

        # A filter holds for the feedback and the second vector search alike.
        scoped = retriever.run("library opening hours", k=10, pseudo_feedback=5,
                               filter=SearchFilter.parse(["source=*.txt"]))
        assert scoped.hits and all(h.chunk.source.endswith(".txt") for h in scoped.hits)
        assert scoped.feedback_chunks
        assert all(ws.catalog.ready_chunks(kb.id, [c])[c].source.endswith(".txt") for c in scoped.feedback_chunks)

        # The coherence reported is the mean pairwise cosine of the feedback vectors.
        last = np.stack([stored[c] for c in refined.feedback_chunks])
        pairwise = (last @ last.T)[~np.eye(3, dtype=bool)].mean()
        assert refined.feedback_coherence == pytest.approx(float(pairwise), abs=1e-5)

        # BM25 alone has no vectors to move: the option changes nothing there.
        assert [h.chunk.id for h in retriever.search("图书馆", mode="bm25", pseudo_feedback=5)] == \
            [h.chunk.id for h in retriever.search("图书馆", mode="bm25")]
        with pytest.raises(InvalidInputError, match="between 0 and 50"):
            retriever.search("tea", pseudo_feedback=51)
    finally:
        ws.close()


def test_feedback_acts_only_on_close_results(sample_dir: Path) -> None:
    """The coherence floor decides: just above a query's coherence nothing moves, just below it does."""
    ws = Workspace(Settings(data_dir=sample_dir))
    try:
        retriever = Retriever(ws, ws.catalog.get_kb("samples"))
        for query in QUERIES:
            default = retriever.run(query, k=5, explain=True)
            assert default.fusion is not None and default.fusion.pseudo_feedback == 5  # on by default for e5
            assert default.fusion.pseudo_feedback_min_coherence == 0.92
            coherence = default.feedback_coherence
            assert coherence is not None
            assert bool(default.feedback_chunks) == (coherence >= 0.92)
            plain = [h.chunk.id for h in retriever.search(query, k=10, pseudo_feedback=0)]
            for floor, acts in ((coherence + 1e-4, False), (coherence - 1e-4, True)):
                other = Workspace(Settings(data_dir=sample_dir, pseudo_feedback_min_coherence=floor))
                try:
                    gated = Retriever(other, retriever.kb).run(query, k=10, explain=True)
                finally:
                    other.close()
                assert bool(gated.feedback_chunks) == acts
                if not acts:
                    assert [h.chunk.id for h in gated.hits] == plain
    finally:
        ws.close()


@pytest.mark.slow
def test_cli_and_settings_turn_feedback_on(sample_dir: Path) -> None:
    query = "咖啡豆怎么保存"
    always = {"RAG_PSEUDO_FEEDBACK_MIN_COHERENCE": "-1"}
    off = rag_json("search", "--kb", "samples", "--explain", "--k", "5", "--pseudo-feedback", "0", query,
                   data_dir=sample_dir)
    by_flag = rag_json("search", "--kb", "samples", "--explain", "--k", "5", "--pseudo-feedback", "2", query,
                       data_dir=sample_dir, env=always)
    by_env = rag_json("search", "--kb", "samples", "--explain", "--k", "5", query, data_dir=sample_dir,
                      env=always | {"RAG_PSEUDO_FEEDBACK": "2"})
    assert off["pseudo_feedback"] == [] and off["fusion"]["pseudo_feedback"] == 0
    assert by_flag["pseudo_feedback"] == [h["chunk_id"] for h in off["hits"][:2]]
    assert by_flag == by_env and by_flag["fusion"]["pseudo_feedback"] == 2
    # the flag wins over the setting, 0 included
    again = rag_json("search", "--kb", "samples", "--explain", "--k", "5", "--pseudo-feedback", "0", query,
                     data_dir=sample_dir, env=always | {"RAG_PSEUDO_FEEDBACK": "2"})
    assert again == off | {"fusion": off["fusion"] | {"pseudo_feedback_min_coherence": -1.0}}
