"""Ingestion and retrieval end to end with the real e5 embedder and embedded Chroma (no LLM)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rag_service.errors import EmbedderMismatchError
from rag_service.retrieval.search import Retriever
from rag_service.settings import Settings
from rag_service.workspace import Workspace
from tests.conftest import SAMPLES, rag_json, run_rag


def test_search_json_contract_english(sample_dir: Path) -> None:
    out = rag_json("search", "--kb", "samples", "--k", "3", "daily meal allowance on business trips",
                   data_dir=sample_dir)
    hits = out["hits"]
    assert 1 <= len(hits) <= 3
    assert set(hits[0]) == {"chunk_id", "doc_id", "source", "text", "score", "headings"}
    assert "45 euros" in hits[0]["text"]
    assert hits[0]["headings"] == ["Aurora Robotics Employee Handbook", "Travel and expenses"]  # the section
    assert hits[0]["source"] == "samples/en/aurora-robotics-handbook.md"
    assert hits[0]["chunk_id"].startswith(hits[0]["doc_id"])


def test_search_chinese(sample_dir: Path) -> None:
    hits = rag_json("search", "--kb", "samples", "图书馆每人最多借几本书", data_dir=sample_dir)["hits"]
    assert "八本书" in hits[0]["text"]


@pytest.mark.parametrize("mode", ["bm25", "vector", "hybrid"])
def test_each_mode_finds_the_fact(sample_dir: Path, mode: str) -> None:
    ws = Workspace(Settings(data_dir=sample_dir))
    hits = Retriever(ws, ws.catalog.get_kb("samples")).search("Who founded the Greenleaf Tea Farm?", mode=mode)
    assert "Mara Okafor" in hits[0].chunk.text
    assert mode in hits[0].ranks or mode == "hybrid"


@pytest.mark.usefixtures("on_each_catalog")
def test_reingest_is_idempotent_and_changes_replace(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    note = docs / "note.txt"
    note.write_text("The blue door code is 7731. Visitors sign in at the front desk.", encoding="utf-8")
    data = tmp_path / "data"

    first = rag_json("ingest", "--kb", "k1", str(docs), data_dir=data)
    assert first["created"] is True and [f["status"] for f in first["files"]] == ["added"]
    again = rag_json("ingest", "--kb", "k1", str(docs), data_dir=data)
    assert [f["status"] for f in again["files"]] == ["unchanged"]

    note.write_text("The blue door code is 9150. Visitors sign in at the front desk.", encoding="utf-8")
    changed = rag_json("ingest", "--kb", "k1", str(docs), data_dir=data)
    assert [f["status"] for f in changed["files"]] == ["replaced"]

    ws = Workspace(Settings(data_dir=data))
    kb = ws.catalog.get_kb("k1")
    docs_now = ws.catalog.documents(kb.id)
    assert [(d.source, d.status) for d in docs_now] == [("docs/note.txt", "ready")]
    for mode in ("bm25", "vector"):
        texts = [h.chunk.text for h in Retriever(ws, kb).search("blue door code", mode=mode)]
        assert texts and all("9150" in t and "7731" not in t for t in texts)
    # Chroma holds exactly the new document's vectors, nothing stale.
    assert ws.vectors.count(kb.collection) == docs_now[0].chunks


def test_embedder_mismatch_is_refused(sample_dir: Path) -> None:
    proc = run_rag("search", "--kb", "samples", "meal allowance", data_dir=sample_dir,
                   env={"RAG_EMBEDDER": "minilm"}, check=False)
    assert proc.returncode == 1
    assert "built with embedder 'e5'" in proc.stderr and "'minilm'" in proc.stderr
    ws = Workspace(Settings(data_dir=sample_dir, embedder="minilm"))
    with pytest.raises(EmbedderMismatchError):
        Retriever(ws, ws.catalog.get_kb("samples"))


@pytest.mark.slow
def test_minilm_kb_works_end_to_end(tmp_path: Path) -> None:
    docs = tmp_path / "en"
    shutil.copytree(SAMPLES / "en", docs)
    data = tmp_path / "data"
    run_rag("ingest", "--kb", "mini", str(docs), data_dir=data, env={"RAG_EMBEDDER": "minilm"})
    kbs = rag_json("kbs", data_dir=data)["kbs"]
    assert [(k["name"], k["embedder"]) for k in kbs] == [("mini", "minilm")]
    # Later commands use the KB's own embedder without being told.
    hits = rag_json("search", "--kb", "mini", "--mode", "vector", "robot test arena badge",
                    data_dir=data)["hits"]
    assert "Lighthouse" in hits[0]["text"]


def test_bad_input_is_one_line_and_harms_nothing(sample_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.txt"
    junk.write_bytes(b"\x00\x01\x02binary\x00" * 100)
    before = rag_json("docs", "list", "--kb", "samples", data_dir=sample_dir)
    proc = run_rag("ingest", "--kb", "samples", str(empty), str(junk), str(tmp_path / "missing.md"),
                   data_dir=sample_dir, check=False)
    assert proc.returncode == 1
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("error: ") for line in errors)
    assert "Traceback" not in proc.stderr
    assert rag_json("docs", "list", "--kb", "samples", data_dir=sample_dir) == before


def test_unknown_kb(sample_dir: Path) -> None:
    proc = run_rag("search", "--kb", "nope", "x", data_dir=sample_dir, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: knowledge base 'nope' does not exist"


@pytest.mark.usefixtures("on_each_catalog")
@pytest.mark.slow
def test_docs_delete_removes_every_trace(tmp_path: Path) -> None:
    note = tmp_path / "n.md"
    note.write_text("Zebra crossings are painted white. 斑马线是白色的。", encoding="utf-8")
    data = tmp_path / "data"
    doc_id = rag_json("ingest", "--kb", "d", str(note), data_dir=data)["files"][0]["doc_id"]
    assert rag_json("search", "--kb", "d", "zebra", data_dir=data)["hits"]
    run_rag("docs", "delete", "--kb", "d", doc_id, data_dir=data)
    assert rag_json("docs", "list", "--kb", "d", data_dir=data) == {"documents": []}
    assert rag_json("search", "--kb", "d", "zebra", data_dir=data)["hits"] == []
    ws = Workspace(Settings(data_dir=data))
    assert ws.vectors.count(ws.catalog.get_kb("d").collection) == 0
