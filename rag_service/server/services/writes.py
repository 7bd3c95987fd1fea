"""REST writes that need the write lock (deletes of documents and knowledge bases).

An ingest can hold the lock for minutes. A request thread that waited for it without a deadline sat in the
thread pool every route shares: 45 concurrent deletes starved /healthz and the job routes. Here one request
waits, up to ``timeout`` seconds, and every other is answered 503 + Retry-After at once.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import TypeVar

from rag_service.errors import BusyError
from rag_service.workspace import Workspace

T = TypeVar("T")


class WriteGate:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._waiting = threading.Lock()

    def run(self, ws: Workspace, write: Callable[[Workspace, float], T]) -> T:
        """``write(ws, lock_timeout)`` unless another request is already waiting for the lock."""
        if not self._waiting.acquire(blocking=False):
            raise BusyError("another write is waiting for the data dir; retry later",
                            retry_after=max(1, math.ceil(self.timeout)))
        try:
            return write(ws, self.timeout)
        finally:
            self._waiting.release()
