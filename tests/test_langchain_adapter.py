"""RagRetriever inside real LangChain runnables: real e5 embedder, embedded Chroma, KB built by the CLI (no LLM)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.prompts import PromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

from rag_service.errors import InvalidInputError, KnowledgeBaseNotFoundError
from rag_service.retrieval.langchain_adapter import RagRetriever
from rag_service.settings import Settings
from rag_service.workspace import Workspace
from tests.conftest import run_rag

KB = "lc"
TRAVEL = """# Travel policy

## Meals

The daily meal allowance on business trips is 45 euros. Receipts are not needed for meals.

## Hotels

Hotel rooms are booked through the office manager, Petra Lind, at least one week ahead.
"""
GARDEN = ("The rooftop garden is watered every Thursday morning by Ines Varga. "
          "Visitors may pick herbs but never the tomatoes.")
LIBRARY = "城东图书馆每位读者最多可以借八本书，借期为三十天。逾期每天罚款五角。"

PROMPT = PromptTemplate.from_template("Answer from the context only.\n\nContext:\n{context}\n\nQuestion: {question}")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lc")
    docs = root / "docs"
    docs.mkdir()
    (docs / "travel.md").write_text(TRAVEL, encoding="utf-8")
    (docs / "garden.txt").write_text(GARDEN, encoding="utf-8")
    (docs / "library.txt").write_text(LIBRARY, encoding="utf-8")
    data = root / "data"
    run_rag("ingest", "--kb", KB, "--splitter", "markdown", str(docs), data_dir=data)
    return data


@pytest.fixture
def retriever(data_dir: Path) -> Iterator[RagRetriever]:
    r = RagRetriever(kb=KB, data_dir=data_dir, k=3)
    yield r
    r.close()


def format_docs(docs: list[Document]) -> str:
    return "\n\n".join(f"[{i}] {d.page_content}" for i, d in enumerate(docs, start=1))


@pytest.mark.parametrize(("question", "fact", "absent"), [
    ("What is the daily meal allowance on business trips?", "45 euros", "Ines Varga"),
    ("Who waters the rooftop garden?", "Ines Varga", "45 euros"),
    ("图书馆每人最多借几本书？", "八本书", "Ines Varga"),
])
def test_lcel_chain_puts_the_right_passage_in_the_prompt(data_dir: Path, question: str, fact: str,
                                                         absent: str) -> None:
    retriever = RagRetriever(kb=KB, data_dir=data_dir, k=1)
    chain = {"context": retriever | RunnableLambda(format_docs), "question": RunnablePassthrough()} | PROMPT
    prompt = chain.invoke(question).to_string()
    retriever.close()
    assert f"Question: {question}" in prompt
    assert fact in prompt
    assert absent not in prompt  # k=1: only the best passage reached the prompt


def test_invoke_returns_documents_with_metadata(retriever: RagRetriever) -> None:
    docs = retriever.invoke("daily meal allowance on business trips")
    assert 1 <= len(docs) <= 3
    assert all(isinstance(d, Document) for d in docs)
    top = docs[0]
    assert "45 euros" in top.page_content
    assert {"chunk_id", "doc_id", "source", "score"} <= set(top.metadata)
    assert top.metadata["source"] == "docs/travel.md"
    assert top.metadata["chunk_id"].startswith(top.metadata["doc_id"])
    assert top.id == top.metadata["chunk_id"]
    assert top.metadata["headings"] == ["Travel policy", "Meals"]  # markdown splitter's heading path
    assert "page" not in top.metadata  # only paged formats (PDF) have pages
    plain = [d for d in docs if d.metadata["source"].endswith(".txt")]
    assert all("headings" not in d.metadata for d in plain)
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)


def test_filter_by_source_and_doc_id(data_dir: Path, retriever: RagRetriever) -> None:
    garden_only = RagRetriever(kb=KB, data_dir=data_dir, filter={"source": "docs/garden.txt"})
    docs = garden_only.invoke("daily meal allowance on business trips")
    assert docs and {d.metadata["source"] for d in docs} == {"docs/garden.txt"}

    txt_only = RagRetriever(kb=KB, data_dir=data_dir, filter={"source": "*.txt"})
    assert {d.metadata["source"] for d in txt_only.invoke("meal allowance")} <= {"docs/garden.txt",
                                                                                  "docs/library.txt"}

    travel_id = retriever.invoke("meal allowance")[0].metadata["doc_id"]
    by_id = RagRetriever(kb=KB, data_dir=data_dir, filter={"doc_id": travel_id}, mode="bm25")
    docs = by_id.invoke("rooftop garden hotel")
    assert docs and {d.metadata["doc_id"] for d in docs} == {travel_id}

    nothing = RagRetriever(kb=KB, data_dir=data_dir, filter={"source": "nope/*"})
    assert nothing.invoke("meal allowance") == []
    for r in (garden_only, txt_only, by_id, nothing):
        r.close()


def test_batch_and_async_match_invoke(retriever: RagRetriever) -> None:
    questions = ["daily meal allowance", "Who waters the rooftop garden?", "借几本书", "hotel booking"]
    single = [[d.metadata["chunk_id"] for d in retriever.invoke(q)] for q in questions]
    batched = retriever.batch(questions, config={"max_concurrency": 4})
    assert [[d.metadata["chunk_id"] for d in docs] for docs in batched] == single
    assert "45 euros" in batched[0][0].page_content
    assert "Ines Varga" in batched[1][0].page_content
    assert "八本书" in batched[2][0].page_content
    assert "Petra Lind" in batched[3][0].page_content
    docs = asyncio.run(retriever.ainvoke(questions[1]))
    assert [d.metadata["chunk_id"] for d in docs] == single[1]


def test_from_workspace_uses_the_given_workspace(data_dir: Path) -> None:
    ws = Workspace(Settings(data_dir=data_dir))
    kb = ws.catalog.get_kb(KB)
    by_record = RagRetriever.from_workspace(ws, kb, k=2, mode="vector")
    by_name = RagRetriever.from_workspace(ws, KB, k=2, fusion="weighted")
    assert by_record.workspace is ws and by_name.workspace is ws
    assert by_record.kb == kb.id
    assert "45 euros" in by_record.invoke("how much money per day for food when travelling")[0].page_content
    assert len(by_name.invoke("Who waters the rooftop garden?")) == 2
    by_record.close()  # not ours to close: the caller's workspace stays usable
    assert ws.catalog.get_kb(KB).id == kb.id
    ws.close()


def test_data_dir_defaults_to_settings(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_DATA_DIR", str(data_dir))
    retriever = RagRetriever(kb=KB, k=1)
    assert "Ines Varga" in retriever.invoke("rooftop garden")[0].page_content
    retriever.close()


def test_errors(data_dir: Path) -> None:
    with pytest.raises(InvalidInputError):
        RagRetriever(kb=KB, data_dir=data_dir, filter={"not a key": 1})
    with pytest.raises(ValueError):
        RagRetriever(kb=KB, data_dir=data_dir, mode="fuzzy")
    missing = RagRetriever(kb="no-such-kb", data_dir=data_dir)
    with pytest.raises(KnowledgeBaseNotFoundError):
        missing.invoke("anything")
    missing.close()
