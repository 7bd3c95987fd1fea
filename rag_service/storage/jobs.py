"""Durable ingest jobs: uploads wait in the database until a worker, in any process on any host, claims them.

An upload's files are stored in the job's own rows (``job_files.content``), written in the same transaction as
the job: every replica and worker can read them without a shared volume or an object store, and a job is
never visible without its files. Files are at most ``max_file_mb`` (50 MB by default); a file's bytes are dropped
as soon as it is ingested, and every byte of a job when it ends however it ends (succeeded, failed, cancelled), so
the table holds only the backlog. SQLite reuses the freed pages for the next uploads (the file is as large as the
largest backlog was; docs/benchmarks.md "Upload bytes").

A worker claims the oldest claimable job (``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's
``BEGIN IMMEDIATE`` serialises claims) and holds a lease it renews every ``job_lease_s / 6`` seconds. A worker
that dies stops renewing; once its lease has run out another worker takes the job over (``job_max_attempts``
claims at most). A file is never ingested twice: each finished file's result is recorded, a retried job skips
those, and a file cut off mid-way is purged by the next ingest (crash-safe write order) and then ingested once;
a document already stored is recognised by its content hash ("unchanged").

A job is cancelled (``DELETE /v1/jobs/{id}``, or its knowledge base deleted) in the database: it ends at once, its
bytes go, and it is never claimed or re-queued again. Its worker notices within a second (``holds``) and stops
between two embedding batches; the files it had finished stay ingested and listed. A cancelled job is stored as
``status = 'failed'`` with ``cancelled`` set (the first schema's CHECK names four states, and changing a CHECK
means rebuilding the table on SQLite); ``get`` shows it as ``cancelled``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_service.errors import RagError
from rag_service.storage.db import AddColumn, Database, Executor, Migration, now_text

log = logging.getLogger("rag_service.storage.jobs")
RETAINED_JOBS = 1000

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
    Migration(3, "cancelled jobs; no bytes kept for jobs that ended", (
        AddColumn("jobs", "cancelled", "{bool}"),
        "UPDATE job_files SET content = NULL WHERE content IS NOT NULL AND job_id IN "
        "(SELECT id FROM jobs WHERE finished IS NOT NULL)",
    )),
)


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

    def stats(self) -> tuple[dict[str, int], str | None]:
        """(jobs by state as ``get`` names them, ``created`` of the oldest queued job or None): for the metrics.
        Finished jobs are counted as far as they are kept (``RETAINED_JOBS``)."""
        counts: dict[str, int] = {}
        for row in self._db.execute("SELECT status, cancelled, COUNT(*) FROM jobs GROUP BY status, cancelled"):
            state = "cancelled" if row[1] else str(row[0])
            counts[state] = counts.get(state, 0) + int(row[2])
        oldest = self._db.execute("SELECT MIN(created) FROM jobs WHERE status = 'queued'").fetchone()
        return counts, None if oldest is None or oldest[0] is None else str(oldest[0])

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job as ``GET /v1/jobs/{id}`` shows it, or None."""
        job = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if job is None:
            return None
        files = self._db.execute("SELECT source, result FROM job_files WHERE job_id = ? ORDER BY position",
                                 (job_id,)).rows
        status = "cancelled" if job["cancelled"] else job["status"]
        done = [json.loads(f["result"]) for f in files if f["result"] is not None]
        not_reached = "cancelled" if status == "cancelled" else "pending"
        waiting = [{"source": f["source"], "status": not_reached} for f in files if f["result"] is None]
        within = float(job["file_progress"] or 0.0) if status == "running" and waiting else 0.0
        out: dict[str, Any] = {"id": job["id"], "kb": job["kb_name"], "kb_id": job["kb_id"], "status": status,
                               "progress": round((len(done) + within) / len(files), 3) if files else 1.0,
                               "files": [*done, *waiting], "created": job["created"], "attempts": job["attempts"]}
        if status == "running" and job["eta_s"] is not None:
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
                    _drop_bytes(tx, row["id"])
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

    def holds(self, job_id: str, worker: str) -> bool:
        """Whether ``worker`` still runs the job: False once it was cancelled or taken over by another worker."""
        return self._db.execute("SELECT 1 FROM jobs WHERE id = ? AND worker = ? AND status = 'running'",
                                (job_id, worker)).fetchone() is not None

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
        """Record a file's outcome and drop its bytes, if ``worker`` still holds the job; True when it may go on.
        A file finished just as the job was cancelled is recorded too (it is in the KB), and the worker stops."""
        with self._db.transaction() as tx:
            held = tx.execute("SELECT status FROM jobs WHERE id = ? AND worker = ? "
                              "AND (status = 'running' OR cancelled = {true}) {lock_row}", (job_id, worker)).fetchone()
            if held is None:
                return False
            tx.execute("UPDATE job_files SET result = ?, content = NULL WHERE job_id = ? AND position = ?",
                       (json.dumps(result, ensure_ascii=False), job_id, position))
            tx.execute("UPDATE jobs SET file_progress = 0 WHERE id = ?", (job_id,))
        return bool(held["status"] == "running")

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
        with self._db.transaction() as tx:
            if tx.execute("UPDATE jobs SET status = ?, error = ?, finished = ?, worker = NULL, lease_until = NULL "
                          "WHERE id = ? AND worker = ? AND status = 'running'",
                          ("failed" if message else "succeeded", message, now_text(), job_id, worker)).rowcount == 0:
                return False  # another worker holds it now, and needs its bytes
            _drop_bytes(tx, job_id)
        return True

    def cancel(self, job_id: str, reason: str) -> dict[str, Any] | None:
        """End a queued or running job as cancelled and drop its bytes; the job as ``get`` shows it afterwards
        (a job that had ended already is left as it ended), or None for an unknown id. Its worker, if any, sees
        the job is no longer its own (``holds``) and stops."""
        with self._db.transaction() as tx:
            row = tx.execute("SELECT status FROM jobs WHERE id = ? {lock_row}", (job_id,)).fetchone()
            if row is None:
                return None
            if row["status"] in ("queued", "running"):
                self._cancel(tx, "id = ?", job_id, reason)
        return self.get(job_id)

    def cancel_kb(self, kb_id: str, reason: str) -> int:
        """Cancel every queued or running job of a knowledge base (it is being deleted); how many."""
        with self._db.transaction() as tx:
            return self._cancel(tx, "kb_id = ?", kb_id, reason)

    @staticmethod
    def _cancel(tx: Executor, where: str, key: str, reason: str) -> int:
        """The worker column stays: the worker may still record a file it was finishing (``file_done``)."""
        cancelled = tx.execute(f"UPDATE jobs SET status = 'failed', cancelled = {{true}}, error = ?, finished = ?, "
                               f"lease_until = NULL, eta_s = NULL, file_progress = 0 "
                               f"WHERE {where} AND status IN ('queued', 'running')",
                               (reason, now_text(), key)).rowcount
        tx.execute(f"UPDATE job_files SET content = NULL WHERE content IS NOT NULL AND job_id IN "
                   f"(SELECT id FROM jobs WHERE {where} AND finished IS NOT NULL)", (key,))
        return cancelled

    def release(self, worker: str) -> int:
        """Put the jobs ``worker`` holds back in the queue (a clean stop), so another worker need not wait for
        the lease to run out. Their finished files stay finished."""
        return self._db.execute("UPDATE jobs SET status = 'queued', worker = NULL, lease_until = NULL "
                                "WHERE worker = ? AND status = 'running'", (worker,)).rowcount


def _drop_bytes(tx: Executor, job_id: str) -> None:
    """A job that ended keeps its files' names and results, never their bytes."""
    tx.execute("UPDATE job_files SET content = NULL WHERE job_id = ? AND content IS NOT NULL", (job_id,))
