"""The storage interfaces: the same catalog behaviour on SQLite and PostgreSQL, versioned migrations (old files
upgraded, concurrent starts migrating once), and the write lock on each backend."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from rag_service.errors import BusyError, InvalidInputError, KnowledgeBaseExistsError
from rag_service.records import Chunk
from rag_service.settings import Settings
from rag_service.storage.catalog import MIGRATIONS, Catalog
from rag_service.storage.db import Backend, open_backend
from rag_service.storage.db.postgres import PostgresBackend
from rag_service.storage.feedback import FeedbackStore
from rag_service.storage.jobs import JobStore, UploadedFile
from rag_service.storage.sessions import MIGRATIONS as SESSION_MIGRATIONS
from rag_service.storage.sessions import SessionStore

# The catalog schema as the first release wrote it: no schema_migrations table, none of the later columns.
FIRST_RELEASE_SCHEMA = """
CREATE TABLE kbs (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, embedder TEXT NOT NULL, dim INTEGER NOT NULL,
    splitter TEXT NOT NULL, chunk_size INTEGER NOT NULL, chunk_overlap INTEGER NOT NULL, created TEXT NOT NULL,
    revision INTEGER NOT NULL DEFAULT 0);
CREATE TABLE documents (kb_id TEXT NOT NULL REFERENCES kbs(id) ON DELETE CASCADE, id TEXT NOT NULL,
    source TEXT NOT NULL, sha256 TEXT NOT NULL, status TEXT NOT NULL, chunks INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL, PRIMARY KEY (kb_id, id));
CREATE TABLE chunks (kb_id TEXT NOT NULL, id TEXT NOT NULL, doc_id TEXT NOT NULL, source TEXT NOT NULL,
    position INTEGER NOT NULL, text TEXT NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL,
    tokens TEXT NOT NULL, metadata TEXT NOT NULL, PRIMARY KEY (kb_id, id));
CREATE TABLE changes (kb_id TEXT NOT NULL, revision INTEGER NOT NULL, doc_id TEXT NOT NULL, op TEXT NOT NULL,
    PRIMARY KEY (kb_id, revision));
INSERT INTO kbs VALUES ('old1', 'legacy', 'e5', 384, 'recursive', 400, 60, '2026-01-01T00:00:00+00:00', 3);
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    settings = Settings(data_dir=tmp_path, database_url=SecretStr(url) if url else None)
    b = open_backend(settings)
    assert b.name == request.param
    yield b
    b.close()


def _chunk(doc: str, n: int, source: str, **meta: object) -> Chunk:
    return Chunk(id=f"{doc}:{n}", doc_id=doc, source=source, text=f"text {n} of {source}", position=n, start=n * 10,
                 end=n * 10 + 9, metadata=dict(meta))


def test_the_catalog_behaves_the_same_on_every_backend(backend: Backend) -> None:
    catalog = Catalog(backend.database("catalog"))
    kb = catalog.create_kb("contract", embedder="e5", dim=384, splitter="recursive", chunk_size=400,
                           chunk_overlap=60)
    with pytest.raises(KnowledgeBaseExistsError):  # the database's unique key, as a core error on every backend
        catalog.create_kb("contract", embedder="e5", dim=384, splitter="recursive", chunk_size=400, chunk_overlap=60)
    files = {"d1": "handbook/a.md", "d2": "handbook/b.txt", "d3": "notes/c.md", "d4": "handbook/d.txt"}
    for doc, source in files.items():
        chunks = [_chunk(doc, 0, source, page=1, draft=False, score=0.5, lang="en"),
                  _chunk(doc, 1, source, page=2, draft=True, score=1.5, lang="zh")]
        catalog.add_pending_document(kb.id, doc, source, doc * 8, chunks, [["alpha"], None], chars=42)
    assert catalog.revision(kb.id) == 0 and catalog.filtered_doc_ids(kb.id, None, None) == []  # pending: hidden
    for doc in files:
        catalog.set_status(kb.id, doc, "ready")
    catalog.delete_document(kb.id, "d4")
    assert catalog.revision(kb.id) == 5
    assert catalog.changes_since(kb.id, 3) == [(4, "d4", "add"), (5, "d4", "del")]

    def docs(doc_ids: list[str] | None, glob: str | None) -> list[str]:
        return sorted(catalog.filtered_doc_ids(kb.id, doc_ids, glob))

    assert docs(None, "handbook/*") == ["d1", "d2"]
    assert docs(None, "*.md") == ["d1", "d3"]
    assert docs(None, "handbook/[a-b].???") == ["d2"]  # '?' is one character, [a-b] a class
    assert docs(None, "handbook/[^a]*") == ["d2"]
    assert docs(None, "HANDBOOK/*") == [] and docs(None, "handbook.a.md") == []  # case-sensitive; '.' literal
    assert docs([], None) == [] and docs(["d1", "d9"], "*") == ["d1"]

    def chunks(**meta: object) -> list[str]:
        return sorted(catalog.filtered_chunk_ids(kb.id, None, list(meta.items())))

    # Only indexed chunks (position 0: position 1 has no tokens) match; typed values compare as typed.
    assert chunks(page=1) == ["d1:0", "d2:0", "d3:0"] and chunks(page=2) == []
    assert chunks(draft=False, lang="en") == ["d1:0", "d2:0", "d3:0"] and chunks(draft=True) == []
    assert chunks(score=0.5) == ["d1:0", "d2:0", "d3:0"] and chunks(lang="zh") == []
    assert chunks(page="1") == []  # the text "1" is not the number 1
    assert [c for _, c, _ in catalog.ready_chunk_tokens(kb.id)] == ["d1:0", "d2:0", "d3:0"]
    assert sorted(catalog.ready_chunks(kb.id, ["d1:0", "d1:1", "d4:0"])) == ["d1:0", "d1:1"]
    got = catalog.chunks_at(kb.id, "d1", [0, 1])[1]
    assert (got.text, got.start, got.end, got.metadata) == ("text 1 of handbook/a.md", 10, 19,
                                                            {"page": 2, "draft": True, "score": 1.5, "lang": "zh"})
    assert catalog.get_document(kb.id, "d1").to_json()["chars"] == 42  # type: ignore[union-attr]
    catalog.delete_kb(kb.id)
    assert catalog.find_kb("contract") is None


def test_sessions_and_feedback_on_every_backend(backend: Backend) -> None:
    store = SessionStore(backend.database("sessions"))
    sid = store.open("kb1", None)
    store.append(sid, "user", "hi")
    store.append(sid, "assistant", "hello [1]")
    assert store.history(sid) == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello [1]"}]
    assert store.get(sid)["kb_id"] == "kb1" and len(store.get(sid)["messages"]) == 2  # type: ignore[index]
    assert store.rename(sid, "  Greetings  ") and store.for_kb("kb1")[0]["title"] == "Greetings"
    with pytest.raises(InvalidInputError, match="another knowledge base"):
        store.open("kb2", sid)
    feedback = FeedbackStore(backend.database("sessions"))
    feedback.add("kb1", "q?", "a.", "down", comment="wrong", session_id=sid, citations=[{"doc_id": "d1"}])
    rated = [(f.rating, f.comment, f.citations) for f in feedback.for_kb("kb1")]
    assert rated == [("down", "wrong", [{"doc_id": "d1"}])]
    assert store.delete(sid) and store.get(sid) is None


def test_an_answer_is_kept_with_its_evidence_and_older_answers_read_as_plain_text(backend: Backend) -> None:
    """A session written before evidence was kept (migrations 1-3, rows as that release inserted them) is upgraded
    in place: its messages read as before, and a new answer beside them keeps what the chat returned but its
    trace."""
    db = backend.database("sessions")
    db.migrate("sessions", SESSION_MIGRATIONS[:3])
    db.execute("INSERT INTO sessions (id, kb_id, created) VALUES ('old', 'kb1', '2026-01-01T00:00:00+00:00')")
    for seq, role, content in ((1, "user", "hi"), (2, "assistant", "hello [1]")):
        db.execute("INSERT INTO messages VALUES ('old', ?, ?, ?, '2026-01-01T00:00:00+00:00')", (seq, role, content))
    store = SessionStore(db)
    citation = {"n": 1, "chunk_id": "d1:0", "doc_id": "d1", "source": "a.md", "text": "Hello, 世界.", "page": 2}
    answer = {"answer": "Hello [1].", "citations": [citation], "refused": False, "grounded": True,
              "usage": {"prompt_tokens": 90, "completion_tokens": 4}, "related": [], "policy": "strict",
              "claims": [{"text": "Hello.", "citations": [1], "supported": True, "evidence": "Hello, 世界."}],
              "session_id": "old", "trace": {"messages": ["the prompt"]}}
    refusal = {**answer, "answer": "Not found.", "citations": [], "claims": [], "refused": True, "grounded": False,
               "related": [{"chunk_id": "d1:0", "doc_id": "d1", "source": "a.md", "text": "Hello.", "score": 0.5}]}
    store.append("old", "user", "and now?")
    store.append("old", "assistant", "Hello [1].", answer=answer)
    store.append("old", "user", "and then?")
    store.append("old", "assistant", "Not found.", answer=refusal)
    with pytest.raises(ValueError):
        store.append("old", "user", "q", answer=answer)
    messages = store.get("old")["messages"]  # type: ignore[index]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "hi"), ("assistant", "hello [1]"), ("user", "and now?"), ("assistant", "Hello [1]."),
        ("user", "and then?"), ("assistant", "Not found.")]
    assert all(set(m) == {"role", "content", "created"} for m in messages[:3] + messages[4:5])
    kept = {k: v for k, v in answer.items() if k not in ("answer", "session_id", "trace")}
    assert {k: v for k, v in messages[3].items() if k not in ("role", "content", "created")} == kept
    assert messages[5]["refused"] is True and messages[5]["related"] == refusal["related"]
    assert store.history("old")[3] == {"role": "assistant", "content": "Hello [1]."}  # what condensing reads
    assert store.for_kb("kb1")[0]["messages"] == 6


def test_an_old_sqlite_catalog_is_upgraded_in_place(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "catalog.sqlite3") as db:
        db.executescript(FIRST_RELEASE_SCHEMA)
        for doc, text in (("d1", "检索增强生成把检索到的段落交给模型。"),
                          ("d2", "Retrieval hands passages to the model.")):
            db.execute("INSERT INTO documents VALUES ('old1', ?, ?, 'x', 'ready', 2, '2026-01-01T00:00:00+00:00')",
                       (doc, f"{doc}.txt"))
            for position in range(2):
                db.execute("INSERT INTO chunks VALUES ('old1', ?, ?, ?, ?, ?, 0, 1, '', '{}')",
                           (f"{doc}-{position}", doc, f"{doc}.txt", position, text))
    backend = open_backend(Settings(data_dir=tmp_path))
    catalog = Catalog(backend.database("catalog"))
    kb = catalog.get_kb("legacy")
    assert (kb.revision, kb.chunk_unit, kb.options) == (3, "chars", {})
    # Documents from before language detection get theirs from their stored chunks.
    assert {d.id: d.language for d in catalog.documents("old1")} == {"d1": "zh", "d2": "en"}
    Catalog(backend.database("catalog"))  # opening again applies nothing twice
    backend.close()
    with sqlite3.connect(tmp_path / "catalog.sqlite3") as db:
        applied = db.execute("SELECT version FROM schema_migrations WHERE store = 'catalog'").fetchall()
        columns = {r[1] for r in db.execute("PRAGMA table_info(chunks)")}
    assert sorted(v for (v,) in applied) == [m.version for m in MIGRATIONS]
    assert "indexed" in columns


def test_processes_starting_together_migrate_once(postgres_url: str) -> None:
    """Replicas start at the same moment: the migration lock makes one of them create the schema."""
    errors: list[BaseException] = []

    def start() -> None:
        backend = PostgresBackend(postgres_url, pool_size=2)  # a pool each, as separate processes have
        try:
            Catalog(backend.database("catalog"))
        except BaseException as exc:
            errors.append(exc)
        finally:
            backend.close()

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    backend = PostgresBackend(postgres_url, pool_size=1)
    rows = backend.database("catalog").execute("SELECT version FROM schema_migrations WHERE store = 'catalog'").rows
    backend.close()
    assert sorted(r[0] for r in rows) == [m.version for m in MIGRATIONS]


def test_the_write_lock_admits_one_writer(backend: Backend) -> None:
    other = open_backend(Settings(data_dir=Path(getattr(backend, "data_dir", "/nonexistent")),
                                  database_url=SecretStr(backend.url) if isinstance(backend, PostgresBackend)
                                  else None))
    try:
        with backend.write_lock(None):
            started = time.monotonic()
            with pytest.raises(BusyError), other.write_lock(0.3):
                pass
            assert 0.3 <= time.monotonic() - started < 2
        with other.write_lock(0.3):  # released
            pass
    finally:
        other.close()  # PostgreSQL: the same shared pool, counted twice (locks are per connection)


HOLD_THE_LOCK = """
import sys, time
from rag_service.storage.db.postgres import PostgresBackend
backend = PostgresBackend(sys.argv[1], pool_size=1)
with backend.write_lock(None):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_writer_killed_holding_the_postgres_lock_releases_it(postgres_url: str) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, postgres_url], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        backend = PostgresBackend(postgres_url, pool_size=1)
        with pytest.raises(BusyError), backend.write_lock(0.2):
            pass
        holder.kill()
        holder.wait()
        with backend.write_lock(5):  # the database ended the dead writer's session, and its lock
            pass
        backend.close()
    finally:
        holder.kill()


@pytest.mark.usefixtures("on_each_catalog")
@pytest.mark.slow
def test_rag_worker_once_ingests_what_was_queued_and_exits(tmp_path: Path) -> None:
    """`rag worker` needs no HTTP API: jobs queued in the database (by any replica) are claimed and run."""
    from rag_service.storage.jobs import UploadedFile
    from rag_service.workspace import Workspace
    from tests.conftest import run_rag

    ws = Workspace(Settings(data_dir=tmp_path / "data"))
    kb = ws.create_kb("queued", splitter="recursive", chunk_size=400, chunk_overlap=0)
    note = tmp_path / "note.txt"
    note.write_text("The night ferry leaves the harbour at 23:40 on weekdays.", encoding="utf-8")
    ws.jobs.create("job1", kb.id, kb.name, [UploadedFile(note, "note.txt", "0" * 64, note.stat().st_size)])
    assert ws.jobs.get("job1")["status"] == "queued"  # type: ignore[index]
    proc = run_rag("worker", "--once", data_dir=tmp_path / "data")
    assert "1 worker(s) on " in proc.stderr
    job = ws.jobs.get("job1")
    assert job is not None and (job["status"], job["attempts"], job["progress"]) == ("succeeded", 1, 1.0)
    assert [f["status"] for f in job["files"]] == ["added"]
    assert [d.source for d in ws.catalog.documents(kb.id, status="ready")] == ["note.txt"]
    assert run_rag("worker", "--once", data_dir=tmp_path / "data").returncode == 0  # nothing left: exits at once
    ws.close()


def test_a_running_job_reports_progress_within_its_file_and_time_left(tmp_path: Path) -> None:
    """One big file: the job's progress moves with its embedded batches, with an estimate of the time left."""
    from rag_service.ingestion.worker import JobWorker
    from rag_service.storage.jobs import UploadedFile
    from rag_service.workspace import Workspace

    ws = Workspace(Settings(data_dir=tmp_path / "data", embed_batch_size=2))
    kb = ws.create_kb("big", splitter="recursive", chunk_size=100, chunk_overlap=0)
    doc = tmp_path / "big.txt"
    doc.write_text("\n\n".join(f"Paragraph {i}: the ferry number {i} leaves pier {i % 7} at {i % 24}:15 daily."
                               for i in range(30)), encoding="utf-8")
    ws.jobs.create("big1", kb.id, kb.name, [UploadedFile(doc, "big.txt", "0" * 64, doc.stat().st_size)])
    worker = JobWorker(lambda: ws, None, lease_s=30, poll_s=0.05, max_attempts=3)
    runner = threading.Thread(target=worker.run_once)
    runner.start()
    seen: list[tuple[float, float | None]] = []
    while runner.is_alive():
        job = ws.jobs.get("big1")
        if job is not None and job["status"] == "running":
            seen.append((job["progress"], job.get("eta_s")))
        time.sleep(0.05)
    runner.join()
    moving = [(p, eta) for p, eta in seen if 0 < p < 1]
    assert moving, f"no progress inside the file was reported: {seen[:5]}...{seen[-5:]}"
    assert all(eta is not None and eta >= 0 for _, eta in moving)
    assert [p for p, _ in moving] == sorted(p for p, _ in moving)  # never goes backwards
    job = ws.jobs.get("big1")
    assert job is not None and (job["status"], job["progress"], "eta_s" in job) == ("succeeded", 1.0, False)
    ws.close()


# -- upload jobs: no bytes kept once a job ends, cancelling (issue 29 items 6 and 9) --------------------------------
def _job_with_files(store: JobStore, tmp_path: Path, job_id: str, kb_id: str = "kb1", files: int = 2,
                    size: int = 1 << 20) -> None:
    uploads = []
    for n in range(files):
        path = tmp_path / f"{job_id}-{n}.txt"
        path.write_bytes(b"x" * size)
        uploads.append(UploadedFile(path, path.name, "0" * 64, size))
    store.create(job_id, kb_id, "kb-one", uploads)


def _bytes_kept(backend: Backend, job_id: str) -> int:
    row = backend.database("catalog").execute(
        "SELECT COUNT(*) FROM job_files WHERE job_id = ? AND content IS NOT NULL", (job_id,)).fetchone()
    return int(row[0])


def test_a_job_that_ends_keeps_no_bytes_however_it_ends(backend: Backend, tmp_path: Path) -> None:
    """Failed (a KB deleted before the job ran, a file that failed, workers that kept dying) or succeeded: the
    job's files keep their names and results, never their bytes (a failed job used to keep every byte)."""
    store = JobStore(backend.database("catalog"))
    _job_with_files(store, tmp_path, "failed")
    assert store.claim("w1", 30, 3) is not None and _bytes_kept(backend, "failed") == 2
    assert store.finish("failed", "w1", "knowledge base 'kb-one' does not exist")
    assert _bytes_kept(backend, "failed") == 0
    job = store.get("failed")
    assert job is not None and job["status"] == "failed" and [f["source"] for f in job["files"]] == [
        "failed-0.txt", "failed-1.txt"]

    _job_with_files(store, tmp_path, "half")
    assert store.claim("w1", 30, 3) is not None
    assert store.file_done("half", "w1", 0, {"source": "half-0.txt", "status": "failed", "error": "bad"})
    assert _bytes_kept(backend, "half") == 1
    assert not store.finish("half", "w2", None)  # not the worker holding it: nothing changes
    assert _bytes_kept(backend, "half") == 1
    assert store.finish("half", "w1", None) and _bytes_kept(backend, "half") == 0

    _job_with_files(store, tmp_path, "dying")
    assert store.claim("w1", -1, 1) is not None  # a lease that has already run out: w1 "died"
    assert store.claim("w2", 30, 1) is None  # one attempt allowed: the job fails instead of running again
    assert store.get("dying")["status"] == "failed" and _bytes_kept(backend, "dying") == 0  # type: ignore[index]


def test_a_cancelled_job_ends_at_once_and_is_never_run_again(backend: Backend, tmp_path: Path) -> None:
    store = JobStore(backend.database("catalog"))
    assert store.cancel("nope", "x") is None
    _job_with_files(store, tmp_path, "queued")
    job = store.cancel("queued", "cancelled at the client's request")
    assert job is not None and (job["status"], job["error"]) == ("cancelled", "cancelled at the client's request")
    assert "finished" in job and [f["status"] for f in job["files"]] == ["cancelled", "cancelled"]
    assert _bytes_kept(backend, "queued") == 0 and store.active() == 0
    assert store.claim("w1", 30, 3) is None

    _job_with_files(store, tmp_path, "running")
    assert store.claim("w1", 30, 3) is not None and store.holds("running", "w1")
    assert store.file_done("running", "w1", 0, {"source": "running-0.txt", "status": "added", "chunks": 3})
    assert store.cancel("running", "stop")["status"] == "cancelled"  # type: ignore[index]
    assert not store.holds("running", "w1") and not store.renew("running", "w1", 30)
    assert _bytes_kept(backend, "running") == 0
    # The file w1 was finishing as the cancel came is recorded (it is in the KB); w1 is told to stop.
    assert not store.file_done("running", "w1", 1, {"source": "running-1.txt", "status": "added", "chunks": 1})
    assert not store.finish("running", "w1", None)
    assert store.release("w1") == 0  # a restart does not put it back in the queue
    assert store.claim("w2", 30, 3) is None
    job = store.get("running")
    assert job is not None and job["status"] == "cancelled" and job["error"] == "stop"
    assert [f["status"] for f in job["files"]] == ["added", "added"]

    _job_with_files(store, tmp_path, "done", files=1)
    assert store.claim("w1", 30, 3) is not None and store.finish("done", "w1", None)
    assert store.cancel("done", "too late")["status"] == "succeeded"  # type: ignore[index]
    assert store.cancel("queued", "again")["error"] == "cancelled at the client's request"  # type: ignore[index]


def test_deleting_a_kb_cancels_its_jobs_and_drops_their_bytes(backend: Backend, tmp_path: Path) -> None:
    store = JobStore(backend.database("catalog"))
    _job_with_files(store, tmp_path, "a1", kb_id="a")
    _job_with_files(store, tmp_path, "a2", kb_id="a")
    _job_with_files(store, tmp_path, "b1", kb_id="b")
    assert store.claim("w1", 30, 3) is not None  # a1 runs
    assert store.cancel_kb("a", "knowledge base 'a' was deleted") == 2
    assert [store.get(j)["status"] for j in ("a1", "a2", "b1")] == ["cancelled", "cancelled", "queued"]  # type: ignore[index]
    assert (_bytes_kept(backend, "a1"), _bytes_kept(backend, "a2"), _bytes_kept(backend, "b1")) == (0, 0, 2)
    assert store.claim("w2", 30, 3).id == "b1"  # type: ignore[union-attr]


def _big_job(ws: Any, tmp_path: Path, job_id: str) -> Any:
    """A KB and a job of two files, the first one a few hundred embedding batches long."""
    kb = ws.create_kb(f"kb-{job_id}", splitter="recursive", chunk_size=100, chunk_overlap=0)
    big, small = tmp_path / "big.txt", tmp_path / "small.txt"
    big.write_text("\n\n".join(f"Paragraph {i}: the ferry number {i} leaves pier {i % 7} at {i % 24}:15 daily."
                               for i in range(600)), encoding="utf-8")
    small.write_text("The night ferry leaves the harbour at 23:40 on weekdays.", encoding="utf-8")
    ws.jobs.create(job_id, kb.id, kb.name, [UploadedFile(p, p.name, "0" * 64, p.stat().st_size) for p in (big, small)])
    return kb


def _run_until_embedding(ws: Any, job_id: str) -> tuple[Any, threading.Thread]:
    from rag_service.ingestion.worker import JobWorker

    worker = JobWorker(lambda: ws, None, lease_s=30, poll_s=0.05, max_attempts=3)
    runner = threading.Thread(target=worker.run_once)
    runner.start()
    deadline = time.monotonic() + 120
    while (job := ws.jobs.get(job_id))["progress"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job["status"] == "running" and 0 < job["progress"] < 0.5, job
    return worker, runner


@pytest.mark.usefixtures("on_each_catalog")
@pytest.mark.parametrize("how", ["cancel", "delete the kb"])
def test_a_cancelled_job_stops_between_embedding_batches(tmp_path: Path, how: str) -> None:
    """The worker stops within about a second (CANCEL_CHECK_S) plus one batch, not after the file (minutes for a big
    one), stores nothing of the file in hand, never reaches the next file, and the job is not run again."""
    from rag_service.admin.documents import delete_kb
    from rag_service.workspace import Workspace

    ws = Workspace(Settings(data_dir=tmp_path / "data", embed_batch_size=2))
    job_id = "big-" + how.replace(" ", "-")  # one PostgreSQL database for the module: names of its own
    kb = _big_job(ws, tmp_path, job_id)
    worker, runner = _run_until_embedding(ws, job_id)
    started = time.monotonic()
    if how == "cancel":
        assert ws.jobs.cancel(job_id, "cancelled at the client's request")["status"] == "cancelled"
    else:
        delete_kb(ws, kb)
    runner.join(timeout=60)
    stopped_in = time.monotonic() - started
    assert not runner.is_alive() and stopped_in < 10, stopped_in  # sanity bound, 10x the target
    job = ws.jobs.get(job_id)
    assert job is not None and job["status"] == "cancelled" and job["progress"] < 0.5
    assert job["error"] == ("cancelled at the client's request" if how == "cancel"
                            else f"knowledge base 'kb-{job_id}' was deleted")
    assert [f["status"] for f in job["files"]] == ["cancelled", "cancelled"]
    assert _bytes_kept(ws.backend, job_id) == 0
    if how == "cancel":
        assert ws.catalog.documents(kb.id) == []  # nothing of the file in hand, not even a pending leftover
    assert worker.run_once() is False  # not claimable any more
    ws.close()
