"""Durable ingest jobs: uploads wait in the database until a worker, in any process on any host, claims them.

An upload's files are stored in the job's own rows (``job_files.content``), written in the same transaction as
the job: every replica and worker can read them without a shared volume or an object store, and a job is
never visible without its files. Files are at most ``max_file_mb`` (50 MB by default) and a file's bytes are
dropped as soon as it is ingested, so the table holds only the backlog.

A worker claims the oldest claimable job (``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's
``BEGIN IMMEDIATE`` serialises claims) and holds a lease it renews every ``job_lease_s / 6`` seconds. A worker
that dies stops renewing; once its lease has run out another worker takes the job over (``job_max_attempts``
claims at most). A file is never ingested twice: each finished file's result is recorded, a retried job skips
those, and a file cut off mid-way is purged by the next ingest (crash-safe write order) and then ingested once;
a document already stored is recognised by its content hash ("unchanged").
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag_service.db import AddColumn, Database, Migration, now_text
from rag_service.errors import RagError
from rag_service.threads import ingesting, lower_thread_priority

if TYPE_CHECKING:
    from ingest.sandbox import ParseWorker
    from rag_service.workspace import Workspace

log = logging.getLogger("rag_service.jobs")
RETAINED_JOBS = 1000
RELEASE_WAIT_S = 5.0  # at a stop, how long handing a job back may take

MIGRATIONS = (
    Migration(1, "durable ingest jobs and their uploaded files", ("""
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kb_id TEXT NOT NULL,
    kb_name TEXT NOT NULL,
    replace_existing {bool} NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    error TEXT,
    created TEXT NOT NULL,
    started TEXT,
    finished TEXT,
    worker TEXT,
    lease_until {double},
    attempts INTEGER NOT NULL DEFAULT 0{rowid_column}
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
CREATE TABLE IF NOT EXISTS job_files (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    source TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    content {blob},
    result TEXT,
    PRIMARY KEY (job_id, position)
)""",)),
    Migration(2, "progress within the file in hand and the estimated time left", (
        AddColumn("jobs", "file_progress", "{double}"),
        AddColumn("jobs", "eta_s", "{double}"),
    )),
)
# The worker writes a job's progress at most this often (a row update per embedded batch would be wasteful).
PROGRESS_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """A received file on local disk, before it is stored with its job."""

    path: Path
    source: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: str
    kb_id: str
    kb_name: str
    replace: bool
    attempt: int


class JobStore:
    """The ``jobs`` and ``job_files`` tables (in the catalog's database)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        db.migrate("jobs", MIGRATIONS)

    def create(self, job_id: str, kb_id: str, kb_name: str, files: Sequence[UploadedFile], *,
               replace: bool = False) -> None:
        """The job and its files' bytes in one transaction: no job without its files, no files without a job."""
        with self._db.transaction() as tx:
            tx.execute("INSERT INTO jobs (id, kb_id, kb_name, replace_existing, status, created) "
                       "VALUES (?, ?, ?, ?, 'queued', ?)", (job_id, kb_id, kb_name, replace, now_text()))
            for position, file in enumerate(files):
                tx.execute("INSERT INTO job_files (job_id, position, source, sha256, size, content) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           (job_id, position, file.source, file.sha256, file.size, file.path.read_bytes()))
            # Keep the newest finished jobs for GET /v1/jobs/{id}; older ones go (files cascade).
            tx.execute("DELETE FROM jobs WHERE finished IS NOT NULL AND id NOT IN "
                       "(SELECT id FROM jobs ORDER BY {rowid} DESC LIMIT ?)", (RETAINED_JOBS,))

    def active(self) -> int:
        """Jobs queued or running, in every process: the queue's length for admission."""
        row = self._db.execute("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')").fetchone()
        return int(row[0])

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job as ``GET /v1/jobs/{id}`` shows it, or None."""
        job = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if job is None:
            return None
        files = self._db.execute("SELECT source, result FROM job_files WHERE job_id = ? ORDER BY position",
                                 (job_id,)).rows
        done = [json.loads(f["result"]) for f in files if f["result"] is not None]
        waiting = [{"source": f["source"], "status": "pending"} for f in files if f["result"] is None]
        within = float(job["file_progress"] or 0.0) if job["status"] == "running" and waiting else 0.0
        out: dict[str, Any] = {"id": job["id"], "kb": job["kb_name"], "kb_id": job["kb_id"], "status": job["status"],
                               "progress": round((len(done) + within) / len(files), 3) if files else 1.0,
                               "files": [*done, *waiting], "created": job["created"], "attempts": job["attempts"]}
        if job["status"] == "running" and job["eta_s"] is not None:
            out["eta_s"] = round(float(job["eta_s"]), 1)
        if job["error"] is not None:
            out["error"] = job["error"]
        if job["finished"] is not None:
            out["finished"] = job["finished"]
        return out

    def claim(self, worker: str, lease_s: float, max_attempts: int) -> ClaimedJob | None:
        """The oldest queued job, or one whose worker's lease ran out, now leased to ``worker``. A job whose
        workers died ``max_attempts`` times is failed instead of being tried again."""
        claimable = "WHERE status = 'queued' OR (status = 'running' AND lease_until < {now})"
        if self._db.execute(f"SELECT 1 FROM jobs {claimable} LIMIT 1").fetchone() is None:
            return None  # the idle poll: a read, not a write transaction every second
        with self._db.transaction() as tx:
            rows = tx.execute("SELECT id, kb_id, kb_name, replace_existing, status, attempts FROM jobs "
                              f"{claimable} ORDER BY {{rowid}} LIMIT 10 {{skip_locked}}").rows
            for row in rows:
                if row["status"] == "running" and row["attempts"] >= max_attempts:
                    tx.execute("UPDATE jobs SET status = 'failed', finished = ?, worker = NULL, error = ? "
                               "WHERE id = ?", (now_text(), f"the worker stopped during this job {row['attempts']} "
                                                "times; upload the files again or check the worker logs", row["id"]))
                    log.warning("ingest job %s failed: its worker died %d times", row["id"], row["attempts"])
                    continue
                tx.execute("UPDATE jobs SET status = 'running', worker = ?, lease_until = {now} + ?, "
                           "attempts = attempts + 1, started = COALESCE(started, ?) WHERE id = ?",
                           (worker, float(lease_s), now_text(), row["id"]))
                return ClaimedJob(row["id"], row["kb_id"], row["kb_name"], bool(row["replace_existing"]),
                                  int(row["attempts"]) + 1)
        return None

    def renew(self, job_id: str, worker: str, lease_s: float) -> bool:
        """Extend the lease; False when this worker no longer holds the job (another took it over)."""
        return self._db.execute("UPDATE jobs SET lease_until = {now} + ? WHERE id = ? AND worker = ? "
                                "AND status = 'running'", (float(lease_s), job_id, worker)).rowcount > 0

    def pending_files(self, job_id: str) -> list[tuple[int, str]]:
        """(position, source) of the files without a result yet, in upload order."""
        return [(r[0], r[1]) for r in self._db.execute(
            "SELECT position, source FROM job_files WHERE job_id = ? AND result IS NULL ORDER BY position",
            (job_id,))]

    def content(self, job_id: str, position: int) -> bytes:
        row = self._db.execute("SELECT content FROM job_files WHERE job_id = ? AND position = ?",
                               (job_id, position)).fetchone()
        if row is None or row[0] is None:
            raise RagError(f"the uploaded bytes of file {position} of job {job_id} are gone")
        return bytes(row[0])

    def file_done(self, job_id: str, worker: str, position: int, result: dict[str, Any]) -> bool:
        """Record a file's outcome and drop its bytes, if ``worker`` still holds the job."""
        with self._db.transaction() as tx:
            held = tx.execute("SELECT id FROM jobs WHERE id = ? AND worker = ? AND status = 'running' {lock_row}",
                              (job_id, worker)).fetchone()
            if held is None:
                return False
            tx.execute("UPDATE job_files SET result = ?, content = NULL WHERE job_id = ? AND position = ?",
                       (json.dumps(result, ensure_ascii=False), job_id, position))
            tx.execute("UPDATE jobs SET file_progress = 0 WHERE id = ?", (job_id,))
        return True

    def report_progress(self, job_id: str, worker: str, file_progress: float, eta_s: float | None) -> None:
        """How far the file in hand is, and the time left for the job, while ``worker`` holds it."""
        self._db.execute("UPDATE jobs SET file_progress = ?, eta_s = ? WHERE id = ? AND worker = ? "
                         "AND status = 'running'", (file_progress, eta_s, job_id, worker))

    def finish(self, job_id: str, worker: str, error: str | None) -> bool:
        """Succeeded or failed (``error``, with each failed file's reason), if ``worker`` still holds the job."""
        failed = [json.loads(r[0]).get("error") for r in self._db.execute(
            "SELECT result FROM job_files WHERE job_id = ? AND result IS NOT NULL ORDER BY position", (job_id,))]
        reasons = [e for e in failed if e] + ([error] if error else [])
        message = "; ".join(reasons) or None
        return self._db.execute(
            "UPDATE jobs SET status = ?, error = ?, finished = ?, worker = NULL, lease_until = NULL "
            "WHERE id = ? AND worker = ? AND status = 'running'",
            ("failed" if message else "succeeded", message, now_text(), job_id, worker)).rowcount > 0

    def release(self, worker: str) -> int:
        """Put the jobs ``worker`` holds back in the queue (a clean stop), so another worker need not wait for
        the lease to run out. Their finished files stay finished."""
        return self._db.execute("UPDATE jobs SET status = 'queued', worker = NULL, lease_until = NULL "
                                "WHERE worker = ? AND status = 'running'", (worker,)).rowcount


class _ProgressMeter:
    """Turns "this share of the file in hand is embedded" into the job's progress and an estimate of the time left
    (elapsed time in this attempt, scaled by the share of this attempt's files still to do), written at most every
    ``PROGRESS_EVERY_S``. Embedding dominates a file's time, so its batches are what moves the estimate."""

    def __init__(self, report: Callable[[float, float | None], None], files: int) -> None:
        self._report = report
        self._files = max(files, 1)
        self._done = 0
        self._started = time.monotonic()
        self._last = 0.0

    def file_progress(self, within: float) -> None:
        now = time.monotonic()
        if now - self._last < PROGRESS_EVERY_S:
            return
        self._last = now
        share = (self._done + within) / self._files
        eta = (now - self._started) * (1 - share) / share if share > 0 else None
        try:
            self._report(within, eta)
        except Exception:  # progress is a courtesy: a failed write must not fail the ingestion
            log.debug("could not record job progress", exc_info=True)

    def file_done(self) -> None:
        self._done += 1


def worker_name() -> str:
    """Unique per worker thread, readable in the jobs table: host, process, random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class JobWorker:
    """Claims and runs jobs until stopped: a thread of ``rag serve`` or of ``rag worker``."""

    def __init__(self, workspace: Callable[[], Workspace], parser: ParseWorker | None, *, lease_s: float,
                 poll_s: float, max_attempts: int, nice: int = 0) -> None:
        """``nice``: the worker thread's niceness (rag_service.threads), so chats in the process come first."""
        self.workspace = workspace
        self.nice = nice
        self.parser = parser
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.max_attempts = max_attempts
        self.name = worker_name()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.busy = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"ingest-worker-{self.name}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """A job was just queued here: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, drain_s: float) -> bool:
        """Claim nothing more; give the job in hand ``drain_s`` seconds, then hand it back to the queue.
        True when nothing was left running."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=drain_s)
        still = self._thread is not None and self._thread.is_alive()
        if still:  # hand the job back, but never hold up the stop for an unreachable database (the lease covers it)
            handing_back = threading.Thread(target=self._release, daemon=True)
            handing_back.start()
            handing_back.join(RELEASE_WAIT_S)
        return not still

    def _release(self) -> None:
        try:
            released = self.store().release(self.name)
            log.warning("ingest worker %s stopped mid-job; %d job(s) back in the queue", self.name, released)
        except Exception as exc:  # the database is unreachable: the lease runs out and another worker resumes
            log.warning("ingest worker %s stopped mid-job; could not hand the job back (%s): another worker "
                        "takes it over when its lease runs out", self.name, exc)

    def store(self) -> JobStore:
        return self.workspace().jobs

    def run(self) -> None:
        nice = lower_thread_priority(self.nice)
        log.info("ingest worker %s started (nice %d)", self.name, nice)
        while not self._stop.is_set():
            try:
                ran = self.run_once()
            except Exception:  # the database went away for a moment: log, wait, go on
                log.exception("ingest worker %s: claiming a job failed", self.name)
                ran = False
            if not ran:
                self._wake.wait(self.poll_s)
                self._wake.clear()

    def run_once(self) -> bool:
        """Claim one job and run it; False when there was none."""
        if self._stop.is_set():
            return False
        job = self.store().claim(self.name, self.lease_s, self.max_attempts)
        if job is None:
            return False
        self.busy = True
        lost = threading.Event()
        done = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(job, lost, done), daemon=True,
                                   name=f"lease-{job.id[:8]}")
        renewer.start()
        try:
            self._run(job, lost)
        finally:
            done.set()
            renewer.join()
            self.busy = False
        return True

    def _renew(self, job: ClaimedJob, lost: threading.Event, done: threading.Event) -> None:
        store = self.store()
        while not done.wait(self.lease_s / 6):
            try:
                if not store.renew(job.id, self.name, self.lease_s):
                    lost.set()
                    return
            except Exception:
                log.exception("ingest worker %s: renewing the lease of job %s failed", self.name, job.id)

    def _run(self, job: ClaimedJob, lost: threading.Event) -> None:
        with ingesting():  # the LLM of this process generates with fewer threads meanwhile (threads.py)
            self._ingest_files(job, lost)

    def _ingest_files(self, job: ClaimedJob, lost: threading.Event) -> None:
        """Each file on its own (so progress moves and a KB deleted mid-job stops the job); a bad file fails the
        job with its reason while the other files are still ingested."""
        from ingest.pipeline import Ingestor

        ws = self.workspace()
        store = ws.jobs
        error: str | None = None
        scratch = Path(tempfile.mkdtemp(prefix=f"rag-job-{job.id[:8]}-"))
        try:
            kb = ws.catalog.get_kb(job.kb_id)
            pending = store.pending_files(job.id)
            meter = _ProgressMeter(lambda within, eta: store.report_progress(job.id, self.name, within, eta),
                                   len(pending))
            ingestor = Ingestor(ws, kb, replace=job.replace, parser=self.parser, on_progress=meter.file_progress)
            for position, source in pending:
                if lost.is_set():
                    log.warning("ingest job %s: %s lost its lease; another worker continues", job.id, self.name)
                    return
                if ws.catalog.find_kb(kb.id) is None:
                    raise RagError(f"knowledge base '{kb.name}' was deleted during the upload")
                path = scratch / str(position) / source
                path.parent.mkdir()
                path.write_bytes(store.content(job.id, position))
                (result,) = ingestor.run([path])
                meter.file_done()
                path.unlink()
                entry = {k: v for k, v in result.to_json().items() if k != "path"}  # path: a temporary file
                if not store.file_done(job.id, self.name, position, entry):
                    log.warning("ingest job %s was taken over by another worker; %s stops", job.id, self.name)
                    return
        except RagError as exc:
            error = str(exc)
        except Exception as exc:  # a store or library failure: the job reports it, the worker lives on
            log.exception("ingest job %s failed", job.id)
            error = f"internal error ({type(exc).__name__}); see the worker's log"
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if not store.finish(job.id, self.name, error):
            log.warning("ingest job %s: finished by %s after another worker took it over", job.id, self.name)
