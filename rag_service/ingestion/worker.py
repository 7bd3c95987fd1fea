"""The ingest worker: claims durable jobs (``rag_service.storage.jobs``) and runs them through the ingest pipeline, a
thread of ``rag serve`` or of ``rag worker``. Kept apart from the job store so that the store (part of every
workspace) does not depend on the pipeline, which depends on the workspace."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag_service import metrics
from rag_service.errors import IngestCancelledError, RagError
from rag_service.ingestion.pipeline import Ingestor
from rag_service.storage.jobs import ClaimedJob, JobStore
from rag_service.threads import ingesting, lower_thread_priority

if TYPE_CHECKING:
    from rag_service.ingestion.sandbox import ParseWorker
    from rag_service.workspace import Workspace

log = logging.getLogger("rag_service.storage.jobs")

RELEASE_WAIT_S = 5.0  # at a stop, how long handing a job back may take
# The worker writes a job's progress at most this often (a row update per embedded batch would be wasteful).
PROGRESS_EVERY_S = 1.0
# Between two embedding batches the worker asks whether the job is still its own (cancelled? taken over?) at most
# this often: a cancelled job stops within about this long plus one batch.
CANCEL_CHECK_S = 1.0


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

    def _still_mine(self, store: JobStore, job: ClaimedJob, lost: threading.Event) -> Callable[[], bool]:
        """For the ingestor, between embedding batches: False once the job was cancelled or taken over (asked of
        the database at most every ``CANCEL_CHECK_S``; the lease renewer also sets ``lost``)."""
        checked = time.monotonic()

        def still_mine() -> bool:
            nonlocal checked
            now = time.monotonic()
            if not lost.is_set() and now - checked >= CANCEL_CHECK_S:
                checked = now
                try:
                    if not store.holds(job.id, self.name):
                        lost.set()
                except Exception:  # the database went away for a moment: carry on, the lease decides
                    log.debug("could not check whether job %s was cancelled", job.id, exc_info=True)
            return not lost.is_set()
        return still_mine

    def _ingest_files(self, job: ClaimedJob, lost: threading.Event) -> None:
        """Each file on its own (so progress moves and a cancel or a KB deleted mid-job stops the job); a bad file
        fails alone, with its reason, while the other files are still ingested."""
        ws = self.workspace()
        store = ws.jobs
        error: str | None = None
        started = time.monotonic()
        about: dict[str, Any] = {"job_id": job.id, "kb": job.kb_name, "kb_id": job.kb_id, "attempt": job.attempt,
                                 "worker": self.name}
        chunks = 0
        scratch = Path(tempfile.mkdtemp(prefix=f"rag-job-{job.id[:8]}-"))
        try:
            kb = ws.catalog.get_kb(job.kb_id)
            pending = store.pending_files(job.id)
            about["files"] = [source for _, source in pending]
            log.info("ingest job %s started: %d file(s) into '%s'", job.id, len(pending), job.kb_name,
                     extra=_fields(**about))
            meter = _ProgressMeter(lambda within, eta: store.report_progress(job.id, self.name, within, eta),
                                   len(pending))
            ingestor = Ingestor(ws, kb, replace=job.replace, parser=self.parser, on_progress=meter.file_progress,
                                carry_on=self._still_mine(store, job, lost))
            for position, source in pending:
                if lost.is_set():
                    raise IngestCancelledError(f"job {job.id} was cancelled or taken over")
                if ws.catalog.find_kb(kb.id) is None:
                    raise RagError(f"knowledge base '{kb.name}' was deleted during the upload")
                path = scratch / str(position) / source
                path.parent.mkdir()
                path.write_bytes(store.content(job.id, position))
                (result,) = ingestor.run([path])
                meter.file_done()
                path.unlink()
                entry = {k: v for k, v in result.to_json().items() if k != "path"}  # path: a temporary file
                metrics.observe_ingested_file(entry)
                if result.status in ("added", "replaced"):
                    chunks += result.chunks
                elif result.status == "failed":
                    log.warning("ingest job %s: file %s failed: %s", job.id, source, result.error,
                                extra=_fields(**{**about, "files": [source], "error": result.error}))
                if not store.file_done(job.id, self.name, position, entry):
                    raise IngestCancelledError(f"job {job.id} was cancelled or taken over")
        except IngestCancelledError:
            log.warning("ingest job %s was cancelled or taken over by another worker; %s stops", job.id, self.name,
                        extra=_fields(**about, outcome="cancelled", chunks=chunks))
            metrics.observe_job("cancelled")
            return
        except RagError as exc:
            error = str(exc)
        except Exception as exc:  # a store or library failure: the job reports it, the worker lives on
            log.exception("ingest job %s failed", job.id, extra=_fields(**about, error=type(exc).__name__))
            error = f"internal error ({type(exc).__name__}); see the worker's log"
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if not store.finish(job.id, self.name, error):
            log.warning("ingest job %s: finished by %s after another worker took it over", job.id, self.name,
                        extra=_fields(**about))
            return
        self._log_end(store, job.id, about, chunks, time.monotonic() - started, error)

    @staticmethod
    def _log_end(store: JobStore, job_id: str, about: dict[str, Any], chunks: int, seconds: float,
                 error: str | None) -> None:
        """The job's line as it ended: its status and, when it failed, the cause (each failed file's reason)."""
        try:
            ended = store.get(job_id) or {}
        except Exception:  # the line is a courtesy: the job itself is recorded
            log.debug("could not read job %s back", job_id, exc_info=True)
            ended = {}
        status = str(ended.get("status", "failed" if error else "succeeded"))
        metrics.observe_job(status)
        values = {**about, "outcome": status, "chunks": chunks, "duration_s": round(seconds, 2),
                  "error": ended.get("error", error)}
        if status == "succeeded":
            log.info("ingest job %s succeeded: %d chunk(s) in %.1f s", job_id, chunks, seconds,
                     extra=_fields(**values))
        else:
            log.warning("ingest job %s %s: %s", job_id, status, values["error"], extra=_fields(**values))


def _fields(**values: Any) -> dict[str, Any]:
    """``extra=`` of a log call: the line's fields (JSON members, ``key=value`` in text; rag_service.server.logs)."""
    return {"fields": values}
