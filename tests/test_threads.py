"""CPU sharing settings: the OpenMP wait policy is set before the engines load, ingestion threads run niced."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from rag_service.jobs import JobWorker
from rag_service.settings import Settings
from rag_service.threads import configure_openmp, lower_thread_priority
from rag_service.workspace import Workspace


def _policy_after_import(env: dict[str, str]) -> str:
    """OMP_WAIT_POLICY as a fresh interpreter sees it after importing rag_service (what the engines will read)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "RAG_OMP_WAIT_POLICY")}
    code = "import os, rag_service; print(os.environ.get('OMP_WAIT_POLICY', '<unset>'))"
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_importing_rag_service_sets_the_wait_policy_unless_given() -> None:
    assert _policy_after_import({}) == "PASSIVE"
    assert _policy_after_import({"RAG_OMP_WAIT_POLICY": "active"}) == "ACTIVE"
    assert _policy_after_import({"RAG_OMP_WAIT_POLICY": "default"}) == "<unset>"  # the runtime's own
    assert _policy_after_import({"OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"  # an operator's choice stands
    env: dict[str, str] = {"RAG_OMP_WAIT_POLICY": "bogus", "RAG_EMBED_THREADS": "0"}
    configure_openmp(env)
    assert "OMP_WAIT_POLICY" not in env and "OMP_NUM_THREADS" not in env  # Settings reports bad values
    env = {"RAG_EMBED_THREADS": "1"}
    configure_openmp(env)
    assert env == {"RAG_EMBED_THREADS": "1", "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    env = {"RAG_EMBED_THREADS": "1", "OMP_NUM_THREADS": "2"}
    configure_openmp(env)
    assert env["OMP_NUM_THREADS"] == "2"


def test_lower_thread_priority_is_per_thread_and_never_lowers() -> None:
    seen: dict[str, int] = {}

    def body() -> None:
        seen["set"] = lower_thread_priority(5)
        seen["again"] = lower_thread_priority(2)  # asking for less leaves it where it is
        seen["os"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen == {"set": 5, "again": 5, "os": 5}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == 0  # this thread untouched
    assert lower_thread_priority(0) == 0


def test_ingest_worker_thread_runs_at_the_configured_niceness(tmp_path: Path) -> None:
    ws = Workspace(Settings(data_dir=tmp_path))
    worker = JobWorker(lambda: ws, None, lease_s=30, poll_s=0.05, max_attempts=3, nice=Settings().ingest_nice)
    try:
        worker.start()
        assert worker._thread is not None
        deadline = time.monotonic() + 10
        nice = 0
        while time.monotonic() < deadline and nice == 0:
            tid = worker._thread.native_id
            assert tid is not None
            nice = os.getpriority(os.PRIO_PROCESS, tid)
            time.sleep(0.02)
        assert nice == Settings().ingest_nice > 0
    finally:
        worker.stop(5)
        ws.close()
