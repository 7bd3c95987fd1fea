"""Upload jobs for the REST API: admission (a bounded queue), storage in the database, status, and the ingest
workers this process runs (``RAG_SERVE_WORKERS``, default 1; 0 for API replicas beside ``rag worker``).

The jobs themselves are durable (``rag_service.storage.jobs``): any replica answers ``GET /v1/jobs/{id}``, before and
after a restart, and any worker on the same database may run them.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from rag_service.admin.access import Access, Principal, allows
from rag_service.errors import BusyError, ForbiddenError
from rag_service.ingestion.sandbox import ParseWorker, SandboxLimits
from rag_service.ingestion.worker import JobWorker
from rag_service.server.problems import JobNotFoundError
from rag_service.server.workspaces import Workspaces
from rag_service.storage.catalog import KnowledgeBase
from rag_service.storage.jobs import UploadedFile
from rag_service.storage.people import Level
from rag_service.workspace import Workspace

log = logging.getLogger("rag_service.server.jobs")
# Seconds a client is asked to wait when the queue is full: roughly one small job.
RETRY_AFTER = 30


class IngestJobs:
    def __init__(self, workspaces: Workspaces, queue_size: int, drain_s: float = 20.0, workers: int = 1) -> None:
        self.workspaces = workspaces
        self.capacity = queue_size
        self.drain_s = drain_s
        self._reserved = 0  # uploads being received here: they hold a place in the queue already
        self._stopping = False
        self._lock = threading.Lock()
        settings = workspaces.settings
        # Uploaded files are parsed in a child process with CPU, memory and time limits (rag_service.ingestion.sandbox).
        self.parser = ParseWorker(SandboxLimits.of(settings)) if workers else None
        self.workers = [JobWorker(workspaces.current, self.parser, lease_s=settings.job_lease_s,
                                  poll_s=settings.job_poll_s, max_attempts=settings.job_max_attempts,
                                  nice=settings.ingest_nice)
                        for _ in range(workers)]

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def stop(self) -> None:
        """Take no new uploads and give the job in hand ``drain_s`` seconds. Queued jobs stay queued in the
        database for the next start or another worker; a job cut off mid-way goes back to the queue."""
        with self._lock:
            self._stopping = True
        for worker in self.workers:
            worker.stop(self.drain_s)
        if self.parser is not None:
            self.parser.close()

    def reserve(self) -> None:
        """Claim a place before an upload is received, counting the jobs waiting in the database (from every
        replica) and the uploads still in flight here, so a burst is refused up front instead of being written
        to disk and then dropped."""
        with self._lock:
            if self._stopping:
                raise BusyError("the server is shutting down; retry on another replica or later", RETRY_AFTER)
            if self.workspaces.current().jobs.active() + self._reserved >= self.capacity:
                raise BusyError("the ingest queue is full; retry later", RETRY_AFTER)
            self._reserved += 1

    def release(self) -> None:
        """Give back a place whose upload failed before it became a job."""
        with self._lock:
            self._reserved -= 1

    def submit(self, kb: KnowledgeBase, job_id: str, files: Sequence[UploadedFile], *, replace: bool = False) -> str:
        """Store the received files with a new job, in the place ``reserve`` claimed for it; returns its status."""
        self.workspaces.current().jobs.create(job_id, kb.id, kb.name, files, replace=replace)
        self.release()  # the job now counts in the database (on failure the caller releases the place)
        for worker in self.workers[:1]:
            worker.wake()
        return "queued"

    def get(self, who: Principal, job_id: str) -> dict[str, Any]:
        """A job of a KB the caller may read (any other is 404, as if it did not exist)."""
        ws = self.workspaces.current()
        job = ws.jobs.get(job_id)
        if job is None or not (who.is_admin or self._level(ws, who, job["kb_id"]) is not None):
            raise JobNotFoundError(f"no job '{job_id}'")
        return job

    def cancel(self, who: Principal, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job (its worker stops within a second or so, between two embedding batches);
        the job afterwards. A job that had ended is answered as it ended: cancelling is idempotent. Needs write
        access to its KB."""
        ws = self.workspaces.current()
        seen = self.get(who, job_id)
        if not who.is_admin and not allows(self._level(ws, who, seen["kb_id"]), "write"):
            raise ForbiddenError(f"you may read job '{job_id}' but not cancel it")
        job = ws.jobs.cancel(job_id, "cancelled at the client's request")
        if job is None:
            raise JobNotFoundError(f"no job '{job_id}'")
        return job

    @staticmethod
    def _level(ws: Workspace, who: Principal, kb_id: str) -> Level | None:
        kb = ws.catalog.find_kb(kb_id)
        return None if kb is None else Access(ws).level(who, kb)

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex
