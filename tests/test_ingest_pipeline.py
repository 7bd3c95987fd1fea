"""Splitter choice per KB and per ingest, title enhancement, parent-child retrieval, batches with bad files."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rag_service.retrieval.search import Retriever
from rag_service.settings import Settings
from rag_service.workspace import Workspace
from tests.conftest import rag_json, run_rag

HANDBOOK = """# Handbook

## Travel

The daily allowance is 45 euros. Hotels are booked ten days ahead.

## Security

Badges are yellow. Visitors wait at the desk.
"""

LONG_ZH = "".join(f"第{i}条：图书馆的第{i}项规定要求读者遵守秩序，保持安静，爱护图书。" for i in range(1, 41))


def _kb(ws: Workspace, name: str):
    return ws.catalog.get_kb(name)


@pytest.mark.slow
def test_splitter_is_stored_per_kb_and_overridable_per_ingest(tmp_path: Path) -> None:
    a = tmp_path / "a.txt"
    a.write_text(LONG_ZH, encoding="utf-8")
    b = tmp_path / "b.txt"
    b.write_text(LONG_ZH.replace("图书馆", "博物馆"), encoding="utf-8")
    data = tmp_path / "data"
    rag_json("ingest", "--kb", "zh", "--splitter", "sentence", "--chunk-size", "300", "--chunk-overlap", "0",
             str(a), data_dir=data)
    rag_json("ingest", "--kb", "zh", "--chunk-size", "120", "--chunk-overlap", "0", str(b), data_dir=data)
    kb = rag_json("kbs", data_dir=data)["kbs"][0]
    assert (kb["splitter"], kb["chunk_size"], kb["chunk_overlap"]) == ("sentence", 300, 0)

    ws = Workspace(Settings(data_dir=data))
    docs = {d.source: d for d in ws.catalog.documents(_kb(ws, "zh").id)}
    assert docs["b.txt"].chunks > docs["a.txt"].chunks  # the one-off smaller size applied to b only
    chunks = ws.catalog.ready_chunks(_kb(ws, "zh").id, ws.catalog.chunk_ids(_kb(ws, "zh").id, docs["a.txt"].id))
    assert all(len(c.text) <= 300 and c.text.endswith("。") for c in chunks.values())


def test_markdown_headings_are_kept_and_indexed(tmp_path: Path) -> None:
    doc = tmp_path / "handbook.md"
    doc.write_text(HANDBOOK, encoding="utf-8")
    data = tmp_path / "data"
    rag_json("ingest", "--kb", "md", "--splitter", "markdown", str(doc), data_dir=data)
    ws = Workspace(Settings(data_dir=data))
    hits = Retriever(ws, _kb(ws, "md")).search("security", mode="bm25")
    # "Security" is only in the heading: the heading path is prefixed to the indexed text.
    assert hits and hits[0].chunk.text.startswith("Badges are yellow")
    assert hits[0].chunk.metadata["headings"] == ["Handbook", "Security"]


def test_parent_child_hits_resolve_to_parents(tmp_path: Path) -> None:
    doc = tmp_path / "rules.txt"
    doc.write_text(LONG_ZH, encoding="utf-8")
    data = tmp_path / "data"
    out = rag_json("ingest", "--kb", "pc", "--splitter", "parent_child", "--chunk-size", "60",
                   "--chunk-overlap", "0", str(doc), data_dir=data)
    children = out["files"][0]["chunks"]
    ws = Workspace(Settings(data_dir=data))
    kb = _kb(ws, "pc")
    assert ws.vectors.count(kb.collection) == children  # parents are stored, not indexed
    hits = Retriever(ws, kb).search("第17项规定", k=3)
    top = hits[0]
    assert top.chunk.metadata["role"] == "parent" and top.matched is not None
    assert "第17项规定" in top.chunk.text and len(top.chunk.text) > 60
    assert len({h.chunk.id for h in hits}) == len(hits)


def test_batch_with_a_bad_file_ingests_the_good_ones(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.md").write_text(HANDBOOK, encoding="utf-8")
    (docs / "bad.txt").write_bytes(b"\x00\xff" * 500)
    (docs / "empty.txt").write_text("   \n", encoding="utf-8")
    data = tmp_path / "data"
    proc = run_rag("ingest", "--kb", "mix", "--json", str(docs), data_dir=data, check=False)
    assert proc.returncode == 1
    statuses = {Path(f["path"]).name: f["status"] for f in json.loads(proc.stdout)["files"]}
    assert statuses == {"good.md": "added", "bad.txt": "failed", "empty.txt": "failed"}
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("error: docs/") for e in errors)
    listed = rag_json("docs", "list", "--kb", "mix", data_dir=data)["documents"]
    assert [(d["source"], d["status"]) for d in listed] == [("docs/good.md", "ready")]


def test_bad_splitter_settings_create_nothing(tmp_path: Path) -> None:
    doc = tmp_path / "a.txt"
    doc.write_text("hello", encoding="utf-8")
    data = tmp_path / "data"
    proc = run_rag("ingest", "--kb", "x", "--splitter", "nope", str(doc), data_dir=data, check=False)
    assert proc.returncode == 1 and "unknown splitter 'nope'" in proc.stderr
    proc = run_rag("ingest", "--kb", "x", "--chunk-size", "50", "--chunk-overlap", "50", str(doc), data_dir=data,
                   check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("error: ")
    assert rag_json("kbs", data_dir=data) == {"kbs": []}


def test_pdf_chunks_carry_their_page(tmp_path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in ("The boiler room is in the basement.", "The roof garden opens in May."):
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    path = tmp_path / "building.pdf"
    pdf.output(str(path))
    data = tmp_path / "data"
    rag_json("ingest", "--kb", "pdf", "--splitter", "sentence", "--chunk-size", "40", "--chunk-overlap", "0",
             str(path), data_dir=data)
    ws = Workspace(Settings(data_dir=data))
    hits = Retriever(ws, _kb(ws, "pdf")).search("roof garden", mode="bm25", k=1)
    assert "roof garden" in hits[0].chunk.text and hits[0].chunk.metadata["page"] == 2
    hits = Retriever(ws, _kb(ws, "pdf")).search("boiler room basement", mode="bm25", k=1)
    assert hits[0].chunk.metadata["page"] == 1


def test_the_next_file_is_read_while_this_one_is_embedded(tmp_path: Path) -> None:
    """Loading (parsing) overlaps embedding: the second document is being read before the first one's last
    batch is embedded, in the loader thread; a file that fails to load fails alone and the rest go on."""
    from rag_service.errors import InvalidInputError
    from rag_service.ingestion.pipeline import Ingestor
    from rag_service.records import Document

    events: list[tuple[str, str, float]] = []
    ws = Workspace(Settings(data_dir=tmp_path / "data", embed_batch_size=2))
    try:
        ingestor, _ = Ingestor.open(ws, "overlap")
        ingestor.on_progress = lambda share: events.append(("embedded", f"{share:.2f}", time.perf_counter()))

        def loader(name: str, text: str | None) -> Callable[[], Document]:
            def load() -> Document:
                events.append(("load", name, time.perf_counter()))
                if text is None:
                    raise InvalidInputError(f"{name}: unreadable")
                digest = hashlib.sha256(text.encode()).hexdigest()
                return Document(id=digest, source=name, text=text, sha256=digest)
            return load

        first = LONG_ZH  # several chunks: several batches of 2
        results = ingestor._run([("a.txt", "a.txt", loader("a.txt", first)),
                                 ("bad.txt", "bad.txt", loader("bad.txt", None)),
                                 ("b.txt", "b.txt", loader("b.txt", LONG_ZH.replace("图书馆", "博物馆")))])
    finally:
        ws.close()
    assert [r.status for r in results] == ["added", "failed", "added"] and "unreadable" in (results[1].error or "")
    loads = {name: t for kind, name, t in events if kind == "load"}
    first_done = next(t for kind, share, t in events if kind == "embedded" and share == "1.00")
    assert loads["bad.txt"] < first_done  # read during a.txt's embedding, not after it
    assert [name for kind, name, _ in events if kind == "load"] == ["a.txt", "bad.txt", "b.txt"]
