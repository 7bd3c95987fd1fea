"""kill -9 in the middle of a large ingest must leave catalog, BM25 and Chroma consistent."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from rag_service.retrieval.search import Retriever
from rag_service.settings import Settings
from rag_service.workspace import Workspace
from tests.conftest import RAG, run_rag

N_FILES = 12
SENTENCE = ("Section {j} of report {i} describes the maintenance schedule for pump station {i} and the "
            "inspection of valves, filters and pressure sensors by the night crew. ")


def _corpus(root: Path) -> Path:
    docs = root / "corpus"
    docs.mkdir()
    for i in range(N_FILES):
        body = "".join(SENTENCE.format(i=i, j=j) for j in range(25))
        (docs / f"report{i:02d}.txt").write_text(f"Marker zqx{i}word.\n\n{body}", encoding="utf-8")
    return docs


def _ready_count(data: Path) -> int:
    url = os.environ.get("RAG_DATABASE_URL")
    if url:  # PostgreSQL (on_each_catalog): read it directly, as the SQLite file is read below
        import psycopg

        with psycopg.connect(url) as con:
            try:
                row = con.execute("SELECT COUNT(*) FROM documents WHERE status = 'ready'").fetchone()
            except psycopg.errors.UndefinedTable:
                return 0
            return int(row[0]) if row else 0
    db = data / "catalog.sqlite3"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM documents WHERE status = 'ready'").fetchone()[0]
    except sqlite3.OperationalError:  # schema not written yet
        return 0


def _kill_after(data: Path, docs: Path, ready: int) -> None:
    env = {**os.environ, "RAG_DATA_DIR": str(data)}
    proc = subprocess.Popen([str(RAG), "ingest", "--kb", "big", str(docs)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while _ready_count(data) < ready and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "ingest finished before it could be killed: make the corpus bigger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _assert_consistent(data: Path) -> set[int]:
    """Every ready document is complete in the catalog, BM25 and Chroma; nothing else is searchable.
    Returns the report numbers that are searchable."""
    ws = Workspace(Settings(data_dir=data))
    kb = ws.catalog.get_kb("big")
    ready = ws.catalog.documents(kb.id, status="ready")
    for doc in ready:
        assert len(ws.catalog.chunk_ids(kb.id, doc.id)) == doc.chunks
    retriever = Retriever(ws, kb)
    found = set()
    for i in range(N_FILES):
        for mode in ("bm25", "vector", "hybrid"):
            hits = retriever.search(f"zqx{i}word", mode=mode, k=50)
            assert all(h.chunk.doc_id in {d.id for d in ready} for h in hits)
        if any(f"zqx{i}word" in h.chunk.text for h in retriever.search(f"zqx{i}word", mode="bm25")):
            found.add(i)
    assert len(found) == len(ready)
    ws.close()
    return found


@pytest.mark.usefixtures("on_each_catalog")
@pytest.mark.slow
def test_kill_9_mid_ingest_then_resume(tmp_path: Path) -> None:
    docs = _corpus(tmp_path)
    data = tmp_path / "data"

    _kill_after(data, docs, ready=2)
    first = _assert_consistent(data)
    assert 2 <= len(first) < N_FILES

    _kill_after(data, docs, ready=len(first) + 2)
    second = _assert_consistent(data)
    assert first <= second and len(second) < N_FILES

    run_rag("ingest", "--kb", "big", str(docs), data_dir=data)
    assert _assert_consistent(data) == set(range(N_FILES))
    ws = Workspace(Settings(data_dir=data))
    kb = ws.catalog.get_kb("big")
    docs_now = ws.catalog.documents(kb.id)
    assert all(d.status == "ready" for d in docs_now) and len(docs_now) == N_FILES
    assert ws.vectors.count(kb.collection) == sum(d.chunks for d in docs_now)
