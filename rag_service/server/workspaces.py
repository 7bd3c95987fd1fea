"""One ``Workspace`` per thread.

A workspace's SQLite connections run one transaction at a time; sharing one between the request threads,
the ingest worker and the chat thread would interleave their transactions. Separate connections give each
thread its own (WAL: readers never wait for the writer). Models and the BM25 cache are process-wide anyway.
"""

from __future__ import annotations

import threading

from rag_service.settings import Settings
from rag_service.workspace import Workspace


class Workspaces:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._local = threading.local()
        self._opened: list[Workspace] = []
        self._lock = threading.Lock()

    def current(self) -> Workspace:
        ws: Workspace | None = getattr(self._local, "ws", None)
        if ws is None:
            ws = self._local.ws = Workspace(self.settings)
            with self._lock:
                self._opened.append(ws)
        return ws

    def close(self) -> None:
        with self._lock:
            for ws in self._opened:
                ws.close()
            self._opened.clear()
