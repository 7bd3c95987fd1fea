"""Parsing untrusted files in a child process with CPU, memory and wall-clock limits.

PDF, DOCX and HTML parsers are large pure-Python (or C) code paths that a crafted file can drive into minutes of
CPU or gigabytes of memory; in ``rag serve`` that would hold the GIL the API needs. Here a long-lived child
process (``spawn``: no copy of the server's threads or models) loads one file at a time: RLIMIT_AS caps its
memory, RLIMIT_CPU its CPU seconds per file, and the parent kills it after ``timeout_s``. A killed or crashed
child fails that file with a clear error and is replaced for the next one. The CLI parses in-process: a person
at a terminal can stop it, and nothing else waits.

OCR is the one slow part a valid file can need (seconds per page): each page it finishes is reported to the parent,
which passes it on (an upload job's progress) and gives the next page a fresh CPU and wall-clock budget, so a long
scan is bounded per page and by ``max_ocr_pages`` rather than failed for being long.
"""

from __future__ import annotations

import multiprocessing
import resource
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from rag_service.errors import IngestCancelledError, InvalidInputError, RagError
from rag_service.ingestion.formats import preload
from rag_service.ingestion.loaders import LoadLimits, load, read_bytes
from rag_service.records import Document
from rag_service.settings import Settings

# How long a fresh child may take to start (a spawned interpreter importing the parsers: ~1 s idle, more on a busy
# machine). Not part of a file's ``timeout_s``: that budget is for parsing, so a restart never fails the next file.
STARTUP_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    cpu_s: int
    memory_mb: int
    timeout_s: float

    @classmethod
    def of(cls, settings: Settings) -> SandboxLimits:
        return cls(settings.parse_cpu_s, settings.parse_memory_mb, settings.parse_timeout_s)


class ParseWorker:
    """``load`` a file in the child; one file at a time (callers are the single ingest worker anyway)."""

    def __init__(self, limits: SandboxLimits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._proc: Any = None
        self._conn: Connection | None = None

    def load(self, path: Path, source: str, *, max_bytes: int, json_text_field: str, limits: LoadLimits,
             on_progress: Callable[[int, int], None] | None = None,
             carry_on: Callable[[], bool] | None = None) -> Document:
        """``on_progress(done, total)`` hears of each OCR page; ``carry_on`` is asked then, and False stops the
        parse (IngestCancelledError; the child is replaced)."""
        with self._lock:
            conn = self._connection()
            conn.send((str(path), source, max_bytes, json_text_field, limits))
            deadline = time.monotonic() + self.limits.timeout_s
            while True:
                if not conn.poll(max(deadline - time.monotonic(), 0)):
                    self._kill()
                    raise InvalidInputError(f"{source}: parsing took longer than {self.limits.timeout_s:g} s "
                                            "(parse_timeout_s); the file was not ingested")
                try:
                    status, payload = conn.recv()
                except (EOFError, OSError):
                    raise InvalidInputError(f"{source}: {self._death()}; the file was not ingested") from None
                if status != "progress":
                    break
                deadline = time.monotonic() + self.limits.timeout_s  # a fresh budget for the next page
                if on_progress is not None:
                    on_progress(*payload)
                if carry_on is not None and not carry_on():
                    self._kill()
                    raise IngestCancelledError("the ingest was cancelled")
            if status == "ok":
                assert isinstance(payload, Document)
                return payload
            raise InvalidInputError(str(payload))

    def close(self) -> None:
        """Stop the child; a load in progress sees it die and fails its file rather than delaying shutdown."""
        if self._lock.acquire(blocking=False):
            try:
                self._kill()
            finally:
                self._lock.release()
        elif (proc := self._proc) is not None:
            proc.kill()

    def _connection(self) -> Connection:
        if self._proc is None or not self._proc.is_alive() or self._conn is None:
            self._kill()
            ctx = multiprocessing.get_context("spawn")
            parent, child = ctx.Pipe()
            self._proc = ctx.Process(target=_serve, args=(child, self.limits), name="rag-parse", daemon=True)
            self._proc.start()
            child.close()
            self._conn = parent
            try:  # the child says when it can parse: its start-up is not charged to the file's time budget
                ready = parent.poll(STARTUP_TIMEOUT_S) and parent.recv() == "ready"
            except (EOFError, OSError):
                ready = False
            if not ready:
                self._kill()
                raise RagError(f"the parser process did not start (it ended, or took over {STARTUP_TIMEOUT_S:g} s)")
        return self._conn

    def _death(self) -> str:
        """Why the child ended mid-file, from its exit code."""
        self._proc.join(timeout=5)
        code = self._proc.exitcode
        self._kill()
        if code == -signal.SIGXCPU:
            return f"parsing used more than {self.limits.cpu_s} s of CPU (parse_cpu_s)"
        if code in (-signal.SIGKILL, -signal.SIGSEGV, -signal.SIGABRT):
            return f"the parser was stopped (memory above {self.limits.memory_mb} MB, parse_memory_mb, or a crash)"
        return f"the parser ended unexpectedly (exit code {code})"

    def _kill(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join(timeout=5)
            self._proc = None


def _serve(conn: Connection, limits: SandboxLimits) -> None:
    """The child: set the memory cap once, then one CPU budget per file, until the parent closes the pipe."""
    memory = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    _, cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)
    preload()
    conn.send("ready")
    while True:
        try:
            path, source, max_bytes, json_text_field, load_limits = conn.recv()
        except (EOFError, OSError):
            return
        def fresh_budget() -> None:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            budget = int(usage.ru_utime + usage.ru_stime) + limits.cpu_s + 1
            resource.setrlimit(resource.RLIMIT_CPU, (budget, cpu_hard))

        def progress(done: int, total: int) -> None:
            conn.send(("progress", (done, total)))
            fresh_budget()

        fresh_budget()
        try:
            raw = read_bytes(Path(path), max_bytes)
            reply: tuple[str, object] = ("ok", load(Path(path), source, raw, json_text_field=json_text_field,
                                                    limits=load_limits, progress=progress))
        except InvalidInputError as exc:
            reply = ("invalid", str(exc))
        except MemoryError:
            reply = ("invalid", f"{source}: parsing needed more than {limits.memory_mb} MB (parse_memory_mb)")
        except RecursionError:
            reply = ("invalid", f"{source}: the file nests too deeply to parse")
        except Exception as exc:  # a parser bug on a crafted file: that file fails, the child lives on
            reply = ("invalid", f"{source}: cannot parse ({type(exc).__name__})")
        conn.send(reply)
