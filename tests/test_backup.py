"""``rag backup`` / ``rag restore`` of the embedded default, with the real CLI as processes: a backup taken while an
ingest runs restores to an instance that returns the same search hits, with its people and sessions; a restore
checks itself and refuses to pass when the vectors were tampered with."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from rag_service.settings import load_settings
from rag_service.workspace import Workspace
from tests.conftest import RAG, SAMPLES, rag_json, run_rag

pytestmark = pytest.mark.slow  # CLI processes and an ingest of their own
QUERIES = ("daily meal allowance on business trips", "图书馆借书规则", "how many books can a reader borrow")


def search(kb: str, query: str, data_dir: Path) -> list[str]:
    return [h["chunk_id"] for h in rag_json("search", "--kb", kb, "--k", "5", query, data_dir=data_dir)["hits"]]


def ready_documents(data_dir: Path, kb: str) -> int:
    listed = run_rag("docs", "list", "--kb", kb, "--json", data_dir=data_dir, check=False)
    return len(json.loads(listed.stdout)["documents"]) if listed.returncode == 0 else 0


def test_a_backup_during_an_ingest_restores_to_the_same_hits(tmp_path: Path) -> None:
    source, restored, copy = tmp_path / "source", tmp_path / "restored", tmp_path / "backup"
    run_rag("ingest", "--kb", "handbook", str(SAMPLES), data_dir=source)
    run_rag("users", "add", "ann", "--role", "admin", data_dir=source)
    ws = Workspace(load_settings(data_dir=source))
    try:  # a conversation, as a chat leaves one (the sessions store is the real one; no model is needed)
        session = ws.sessions.open(ws.catalog.get_kb("handbook").id, None)
        ws.sessions.append(session, "user", "What is the meal allowance?")
        ws.sessions.append(session, "assistant", "45 euros a day [1].")
    finally:
        ws.close()
    before = {q: search("handbook", q, source) for q in QUERIES}
    files = tmp_path / "many"
    files.mkdir()
    for i in range(40):  # one small document each: the ingest takes the write lock once per document
        (files / f"note-{i:02d}.txt").write_text(f"Note {i}: the lighthouse lab opens at {7 + i % 5}:30 on weekdays "
                                                 f"and room {100 + i} keeps the spare keys. " * 4, encoding="utf-8")
    with (tmp_path / "ingest.log").open("wb") as log:
        ingest = subprocess.Popen([str(RAG), "ingest", "--kb", "notes", str(files)], stdout=log,
                                  stderr=subprocess.STDOUT, env={**_env(source)})
    try:
        deadline = time.monotonic() + 120
        while ready_documents(source, "notes") < 2:  # the ingest is under way
            assert ingest.poll() is None and time.monotonic() < deadline, (tmp_path / "ingest.log").read_text()
            time.sleep(0.2)
        made = rag_json("backup", str(copy), data_dir=source)
        assert ingest.poll() is None, "the ingest ended before the backup: the test needs a slower ingest"
    finally:
        assert ingest.wait(timeout=300) == 0, (tmp_path / "ingest.log").read_text()
    kbs = {k["name"]: k for k in made["kbs"]}
    assert kbs["handbook"]["documents"] == 4 and kbs["handbook"]["vectors"] == kbs["handbook"]["chunks"]
    assert 2 <= kbs["notes"]["documents"] < 40  # a copy from the middle of the ingest, at a document's end
    assert kbs["notes"]["vectors"] == kbs["notes"]["chunks"] and kbs["notes"]["probe_hits"]
    assert sorted(p.name for p in copy.iterdir()) == ["catalog.sqlite3", "manifest.json", "sessions.sqlite3",
                                                      "vectors"]

    out = rag_json("restore", str(copy), data_dir=restored)  # checks counts and the probe searches itself
    assert [k["name"] for k in out["kbs"]] == [k["name"] for k in made["kbs"]]
    assert {q: search("handbook", q, restored) for q in QUERIES} == before
    assert ready_documents(restored, "notes") == kbs["notes"]["documents"]
    assert [u["name"] for u in rag_json("users", "list", data_dir=restored)["users"]] == ["ann"]
    ws = Workspace(load_settings(data_dir=restored))
    try:
        assert [m["content"] for m in ws.sessions.history(session)] == ["What is the meal allowance?",
                                                                        "45 euros a day [1]."]
    finally:
        ws.close()
    for query in ("spare keys room", "lighthouse lab opening time"):  # the half-ingested KB answers as copied
        hits = search("notes", query, restored)
        assert hits and all(h.split(":")[0] in _doc_ids(restored, "notes") for h in hits)

    again = run_rag("restore", str(copy), data_dir=restored, check=False)
    assert again.returncode == 1 and "restore into an empty data dir" in again.stderr
    refused = run_rag("backup", str(copy), data_dir=source, check=False)
    assert refused.returncode == 1 and "is not an empty directory" in refused.stderr


def test_a_restore_that_does_not_match_its_backup_fails(tmp_path: Path) -> None:
    source, copy = tmp_path / "source", tmp_path / "backup"
    run_rag("ingest", "--kb", "handbook", str(SAMPLES), data_dir=source)
    made = rag_json("backup", str(copy), data_dir=source)
    vectors = next((copy / "vectors").iterdir())
    saved = np.load(vectors)
    rng = np.random.default_rng(0)  # every vector replaced by a random unit vector: the probe's hits change
    noise = rng.normal(size=saved["vectors"].shape).astype(np.float32)
    np.savez(vectors, ids=saved["ids"], vectors=noise / np.linalg.norm(noise, axis=1, keepdims=True))
    failed = run_rag("restore", str(copy), data_dir=tmp_path / "restored", check=False)
    assert failed.returncode == 1 and "differs from the backup" in failed.stderr and "probe search" in failed.stderr
    shutil.copy(copy / "manifest.json", tmp_path / "manifest.json")
    (copy / "manifest.json").write_text("{}", encoding="utf-8")
    bad = run_rag("restore", str(copy), data_dir=tmp_path / "other", check=False)
    assert bad.returncode == 1 and "is not a rag-service-backup version 1 backup" in bad.stderr
    assert made["kbs"][0]["probe_query"]


def _doc_ids(data_dir: Path, kb: str) -> set[str]:
    return {d["id"] for d in rag_json("docs", "list", "--kb", kb, data_dir=data_dir)["documents"]}


def _env(data_dir: Path) -> dict[str, str]:
    import os

    return {**os.environ, "RAG_DATA_DIR": str(data_dir)}
