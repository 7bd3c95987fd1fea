"""Retrieval as ordered stages over typed options: each stage runs alone on the state the previous ones left, and
running them by hand is exactly what ``Retriever.run`` does (the real sample KB, real BM25, e5 and Chroma)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_service.answering.generation import PREPARE
from rag_service.errors import InvalidInputError
from rag_service.retrieval.search import STAGES, Retriever, SearchOptions
from rag_service.settings import Settings
from rag_service.workspace import Workspace

QUESTION = "How many books can a reader borrow at once?"


@pytest.fixture()
def retriever(sample_dir: Path) -> Retriever:
    ws = Workspace(Settings(data_dir=sample_dir))
    return Retriever(ws, ws.catalog.get_kb("samples"))


def test_the_stages_by_hand_are_the_search(retriever: Retriever) -> None:
    options = SearchOptions(k=3, mode="hybrid", explain=True)
    state = retriever.start(QUESTION, options)
    for stage in STAGES:
        stage(retriever, state)
    expected = retriever.run(QUESTION, options).hits
    assert [h.chunk.id for h in state.hits] == [h.chunk.id for h in expected] and len(expected) == 3
    assert [h.terms for h in state.hits] == [h.terms for h in expected]
    # keywords are the same options as the record
    assert [h.chunk.id for h in retriever.search(QUESTION, k=3, mode="hybrid")] == [h.chunk.id for h in expected]


def test_a_stage_alone_reads_and_extends_the_state(retriever: Retriever) -> None:
    state = retriever.start(QUESTION, SearchOptions(k=2, mode="hybrid"))
    Retriever.candidates(retriever, state)
    assert set(state.ranked) == {"bm25", "vector"} and state.query_vector is not None and not state.fused
    Retriever.fuse(retriever, state)
    ids = {c for lst in state.ranked.values() for c, _ in lst}
    assert state.fused and {c for c, _ in state.fused} == ids
    assert [s for _, s in state.fused] == sorted((s for _, s in state.fused), reverse=True)
    Retriever.to_hits(retriever, state)
    Retriever.parents(retriever, state)
    assert len(state.hits) == 2  # cut to k only by the parents stage


@pytest.mark.parametrize(("options", "message"), [
    (SearchOptions(mode="nope"), "unknown search mode 'nope'"),  # type: ignore[arg-type]
    (SearchOptions(fusion="max"), "unknown fusion 'max'"),  # type: ignore[arg-type]
    (SearchOptions(expand="all"), "unknown expansion 'all'"),  # type: ignore[arg-type]
    (SearchOptions(pseudo_feedback=51), "pseudo_feedback must be between 0 and 50"),
])
def test_options_outside_their_values_are_refused_before_any_search(options: SearchOptions, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        options.validated()


def test_the_answer_flow_is_declared_in_order() -> None:
    assert [step.__name__ for step in PREPARE] == ["condense", "retrieve", "prompt"]
    assert [stage.__name__ for stage in STAGES] == ["paraphrase", "candidates", "translate", "feedback", "hyde",
                                                    "fuse", "pseudo_feedback", "to_hits", "rerank", "parents",
                                                    "explain"]
