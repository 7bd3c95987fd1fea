"""``rag export`` / ``rag import`` end to end: the real CLI, bundled e5, embedded Chroma, SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag_service.admin import transfer
from rag_service.errors import InvalidInputError
from rag_service.retrieval.search import MODES, Retriever
from rag_service.settings import Settings
from rag_service.workspace import Workspace
from tests.conftest import SAMPLES, rag_json, run_rag

QUERIES = ("meal allowance", "图书馆每人最多借几本书")


def snapshot(data_dir: Path, kb_name: str, database_url: str | None = None) -> dict[str, Any]:
    """Everything an import must reproduce: KB settings, documents, every chunk (text, offsets, metadata, tokens,
    unindexed parents included) and the stored vectors. Not compared: ids of the KB, creation times."""
    ws = Workspace(Settings(data_dir=data_dir, database_url=database_url))
    try:
        kb = ws.catalog.get_kb(kb_name)
        docs = ws.catalog.documents(kb.id)
        chunks = {d.id: ws.catalog.document_chunks(kb.id, d.id) for d in docs}
        indexed = [c.id for rows in chunks.values() for c, tokens in rows if tokens is not None]
        vectors = ws.vectors.vectors(kb.collection, indexed)
        return {
            "kb": (kb.embedder, kb.dim, kb.splitter, kb.chunk_size, kb.chunk_overlap, kb.chunk_unit, kb.options),
            "documents": sorted((d.id, d.source, d.sha256, d.status, d.chunks, d.chars, d.created) for d in docs),
            "chunks": chunks,
            "indexed": len(indexed),
            "vector_count": ws.vectors.count(kb.collection),
            "vectors": vectors,
        }
    finally:
        ws.close()


def assert_same(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal, vectors up to float32 rounding: Chroma normalises cosine vectors again on insert, which may move an
    already unit-length vector by an ulp (the exported bytes are exactly what Chroma returned)."""
    assert {k: v for k, v in got.items() if k != "vectors"} == {k: v for k, v in expected.items() if k != "vectors"}
    assert got["vectors"].keys() == expected["vectors"].keys()
    for cid, vector in expected["vectors"].items():
        np.testing.assert_allclose(got["vectors"][cid], vector, rtol=0, atol=1e-6, err_msg=cid)


def top_hits(data_dir: Path, database_url: str | None = None) -> dict[tuple[str, str], list[str]]:
    """Chunk ids, in order, of a search for each query and mode, in this process (eighteen `rag search` processes
    cost most of this module's time; the CLI's search output is tested in test_ingest_search.py)."""
    ws = Workspace(Settings(data_dir=data_dir, database_url=database_url))
    try:
        retriever = Retriever(ws, ws.catalog.get_kb("samples"))
        return {(q, m): [h.chunk.id for h in retriever.search(q, mode=m)] for q in QUERIES for m in MODES}
    finally:
        ws.close()


def test_round_trip_sqlite_postgres_sqlite(sample_dir: Path, postgres_url: str, tmp_path: Path) -> None:
    original = snapshot(sample_dir, "samples")
    assert original["vector_count"] == original["indexed"] == sum(len(c) for c in original["chunks"].values())
    expected_hits = top_hits(sample_dir)
    assert all(expected_hits.values())
    counts = {"kb": "samples", "documents": len(original["documents"]),
              "chunks": sum(len(c) for c in original["chunks"].values())}

    first = tmp_path / "samples.jsonl.gz"
    assert rag_json("export", "--kb", "samples", str(first), data_dir=sample_dir) == {**counts, "file": str(first)}
    assert first.read_bytes()[:2] == b"\x1f\x8b"

    pg_dir, pg_env = tmp_path / "pg", {"RAG_DATABASE_URL": postgres_url}
    assert rag_json("import", str(first), data_dir=pg_dir, env=pg_env) == counts
    assert_same(snapshot(pg_dir, "samples", postgres_url), original)
    assert top_hits(pg_dir, postgres_url) == expected_hits

    second = tmp_path / "from-postgres.jsonl"  # gzip whatever the suffix
    run_rag("export", "--kb", "samples", str(second), data_dir=pg_dir, env=pg_env)
    back = tmp_path / "back"
    assert rag_json("import", str(second), data_dir=back) == counts
    assert_same(snapshot(back, "samples"), original)
    assert top_hits(back) == expected_hits


@pytest.mark.slow
def test_truncated_file_is_refused_and_changes_nothing(sample_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Chosen behaviour: all or nothing. The file is checked in full before anything is written, so a damaged file
    creates no KB and ``--replace`` keeps the existing one; a failure after that check deletes the new KB again."""
    good = tmp_path / "samples.jsonl.gz"
    run_rag("export", "--kb", "samples", str(good), data_dir=sample_dir)
    raw = good.read_bytes()
    text = gzip.decompress(raw).decode("utf-8")
    lines = text.split("\n")  # the file ends with a newline: the last item is empty
    bad = {
        "lines": gzip.compress("\n".join([*lines[:-4], ""]).encode()),  # whole lines lost, the end line with them
        "bytes": raw[: len(raw) // 2],  # the compressed stream cut short
        "mid-line": text[: len(text) - len(lines[-2]) - 40].encode(),  # plain JSON Lines cut inside a chunk
    }
    data = tmp_path / "data"
    for name, content in bad.items():
        path = tmp_path / f"cut-{name}.jsonl.gz"
        path.write_bytes(content)
        proc = run_rag("import", str(path), data_dir=data, check=False)
        assert proc.returncode != 0, name
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
        assert "truncated" in proc.stderr and str(path) in proc.stderr, proc.stderr
        assert rag_json("kbs", data_dir=data)["kbs"] == [], name

    rag_json("import", str(good), data_dir=data)
    proc = run_rag("import", "--replace", str(tmp_path / "cut-lines.jsonl.gz"), data_dir=data, check=False)
    assert proc.returncode != 0
    docs = rag_json("docs", "list", "--kb", "samples", data_dir=data)["documents"]
    assert len(docs) == 4 and {d["status"] for d in docs} == {"ready"}

    # The file changing between the check and the import (simulated by skipping the check): rolled back.
    monkeypatch.setattr(transfer, "_check", lambda *args, **kw: None)
    ws = Workspace(Settings(data_dir=data))
    try:
        with pytest.raises(InvalidInputError, match="truncated"):
            transfer.import_kb(ws, tmp_path / "cut-lines.jsonl.gz", name="half")
        assert [kb.name for kb in ws.catalog.list_kbs()] == ["samples"]
    finally:
        ws.close()


@pytest.mark.slow
def test_name_clash_and_parent_chunks(tmp_path: Path) -> None:
    docs, data = tmp_path / "docs", tmp_path / "data"
    docs.mkdir()
    shutil.copy(SAMPLES / "en" / "greenleaf-tea-farm.txt", docs)
    run_rag("ingest", "--kb", "pc", "--splitter", "parent_child", "--chunk-size", "120", "--chunk-overlap", "20",
            str(docs), data_dir=data)
    before = snapshot(data, "pc")
    parents = [c for rows in before["chunks"].values() for c, tokens in rows if tokens is None]
    assert parents and all(c.metadata["role"] == "parent" for c in parents)

    file = tmp_path / "pc.jsonl.gz"
    run_rag("export", "--kb", "pc", str(file), data_dir=data)
    clash = run_rag("import", str(file), data_dir=data, check=False)
    assert clash.returncode == 1
    assert "'pc' already exists" in clash.stderr and "--replace" in clash.stderr and "--kb" in clash.stderr

    total = sum(len(rows) for rows in before["chunks"].values())
    assert rag_json("import", "--kb", "pc copy", str(file), data_dir=data) == {"kb": "pc copy", "documents": 1,
                                                                               "chunks": total}
    assert_same(snapshot(data, "pc copy"), before)

    # Another tokenizer version in the file: tokens are made again here; a vector missing: embedded again.
    records = [json.loads(line) for line in gzip.decompress(file.read_bytes()).decode("utf-8").split("\n") if line]
    records[0]["kb"]["options"]["tokenizer"] = "0-older"
    dropped = next(r for r in records if r.get("type") == "chunk" and r["vector"] is not None)
    dropped["vector"] = None
    for r in records:
        if r.get("tokens") is not None:
            r["tokens"] = ["stale"]
    edited = tmp_path / "edited.jsonl"  # plain JSON Lines are read too
    edited.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    proc = run_rag("import", "--kb", "pc retok", str(edited), data_dir=data)
    assert "1 chunks came without a vector and were embedded again" in proc.stderr
    retok = snapshot(data, "pc retok")
    assert retok["chunks"] == before["chunks"] and retok["vector_count"] == before["indexed"]
    assert float(retok["vectors"][dropped["id"]] @ before["vectors"][dropped["id"]]) > 0.999

    old_id = {k["name"]: k["id"] for k in rag_json("kbs", data_dir=data)["kbs"]}["pc"]
    assert rag_json("import", "--replace", str(file), data_dir=data)["kb"] == "pc"
    kbs = {k["name"]: k["id"] for k in rag_json("kbs", data_dir=data)["kbs"]}
    assert set(kbs) == {"pc", "pc copy", "pc retok"} and kbs["pc"] != old_id
    assert_same(snapshot(data, "pc"), before)
