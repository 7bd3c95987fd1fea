"""Upload jobs: a bounded queue in front of one ingest worker thread.

One worker because ingestion takes the data dir's write lock anyway and embedding already uses every core;
a bounded queue so that a flood of uploads is refused (503) instead of filling the disk. Jobs live in memory:
after a restart their ids are gone, but the documents they ingested are in the catalog.
"""

from __future__ import annotations

import logging
import shutil
import threading
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingest.pipeline import Ingestor
from ingest.sandbox import ParseWorker, SandboxLimits
from rag_service.catalog import KnowledgeBase
from rag_service.errors import BusyError, RagError
from rag_service.server.problems import JobNotFoundError
from rag_service.server.uploads import SavedFile
from rag_service.server.workspaces import Workspaces

log = logging.getLogger("rag_service.server.jobs")
RETAINED_JOBS = 1000
# Seconds a client is asked to wait when the queue is full: roughly one small job.
RETRY_AFTER = 30


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Job:
    id: str
    kb_id: str
    kb_name: str
    directory: Path
    files: list[SavedFile]
    replace: bool = False
    status: str = "queued"  # queued | running | succeeded | failed
    results: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    created: str = field(default_factory=_now)
    finished: str | None = None

    def to_json(self) -> dict[str, Any]:
        waiting = [{"source": f.source, "status": "pending"} for f in self.files[len(self.results):]]
        out: dict[str, Any] = {"id": self.id, "kb": self.kb_name, "kb_id": self.kb_id, "status": self.status,
                               "progress": round(len(self.results) / len(self.files), 3),
                               "files": [*self.results, *waiting], "created": self.created}
        if self.error is not None:
            out["error"] = self.error
        if self.finished is not None:
            out["finished"] = self.finished
        return out


class IngestJobs:
    def __init__(self, workspaces: Workspaces, queue_size: int, drain_s: float = 20.0) -> None:
        self.workspaces = workspaces
        self.capacity = queue_size
        self.drain_s = drain_s
        self._pending: deque[Job] = deque()
        self._reserved = 0  # uploads being received: they hold a place in the queue already
        self._stopping = False
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Condition()
        self._worker = threading.Thread(target=self._work, name="ingest-worker", daemon=True)
        # Uploaded files are parsed in a child process with CPU, memory and time limits (ingest.sandbox).
        self.parser = ParseWorker(SandboxLimits.of(workspaces.settings))

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        """Take no new uploads, give the queued jobs ``drain_s`` seconds to finish, and fail (and log) whatever
        is left: jobs live in this process's memory, so a job still queued at exit cannot run later. A file cut
        off mid-way is purged by the next ingest (crash-safe write order)."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        self._worker.join(timeout=self.drain_s)
        with self._lock:
            left = list(self._pending)
            self._pending.clear()
        self.parser.close()
        for job in left:
            names = ", ".join(f.source for f in job.files)
            log.warning("ingest job %s (%s) not run: the server stopped", job.id, names)
            self._set(job, status="failed", error="the server stopped before this job ran; upload the files again",
                      finished=_now())
            shutil.rmtree(job.directory, ignore_errors=True)

    def reserve(self) -> None:
        """Claim a place before an upload is received, counting uploads still in flight, so a burst of uploads
        is refused up front instead of being written to disk and then dropped."""
        with self._lock:
            if self._stopping:
                raise BusyError("the server is shutting down; retry on another replica or later", RETRY_AFTER)
            if len(self._pending) + self._reserved >= self.capacity:
                raise BusyError("the ingest queue is full; retry later", RETRY_AFTER)
            self._reserved += 1

    def release(self) -> None:
        """Give back a place whose upload failed before it became a job."""
        with self._lock:
            self._reserved -= 1

    def submit(self, kb: KnowledgeBase, job_id: str, directory: Path, files: list[SavedFile], *,
               replace: bool = False) -> Job:
        """Queue a received upload in the place ``reserve`` claimed for it."""
        job = Job(job_id, kb.id, kb.name, directory, files, replace)
        with self._lock:
            self._reserved -= 1
            self._pending.append(job)
            self._jobs[job.id] = job
            while len(self._jobs) > RETAINED_JOBS and next(iter(self._jobs.values())).finished:
                self._jobs.popitem(last=False)
            self._lock.notify()
        return job

    def get(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise JobNotFoundError(f"no job '{job_id}' (jobs are kept in memory until the server restarts)")
            return job.to_json()

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._stopping:
                    self._lock.wait()
                if not self._pending:
                    return
                job = self._pending.popleft()
            try:
                self._run(job)
            finally:
                shutil.rmtree(job.directory, ignore_errors=True)

    def _set(self, job: Job, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(job, name, value)

    def _run(self, job: Job) -> None:
        """Each file on its own (so progress moves and a KB deleted mid-job stops the job); a bad file fails
        the job with its reason while the other files are still ingested."""
        self._set(job, status="running")
        ws = self.workspaces.current()
        try:
            kb = ws.catalog.get_kb(job.kb_id)
            ingestor = Ingestor(ws, kb, replace=job.replace, parser=self.parser)
            for file in job.files:
                if ws.catalog.find_kb(kb.id) is None:
                    raise RagError(f"knowledge base '{kb.name}' was deleted during the upload")
                (result,) = ingestor.run([file.path])
                entry = {k: v for k, v in result.to_json().items() if k != "path"}  # path: a server temp file
                self._set(job, results=[*job.results, entry])
        except RagError as exc:
            self._set(job, error=str(exc))
        except Exception as exc:  # a store or library failure: the job reports it, the worker lives on
            log.exception("ingest job %s failed", job.id)
            self._set(job, error=f"internal error ({type(exc).__name__}); see the server log")
        failed = [r["error"] for r in job.results if r["status"] == "failed"]
        error = "; ".join([*failed, *([job.error] if job.error else [])]) or None
        self._set(job, status="failed" if error else "succeeded", error=error, finished=_now())
