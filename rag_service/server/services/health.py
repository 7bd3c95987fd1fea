"""Readiness: models are loaded once in the background at start (the generator also evaluates the fixed beginning of
each language's answer prompt), stores are probed on each check.

``/healthz`` answers 200 only when a chat could be served now, so an orchestrator routes traffic to a
replica after its models are loaded, and away from it when Chroma or the LLM server is unreachable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import httpx

from rag_service.answering.calibration import calibration_status
from rag_service.answering.generation import warm_up
from rag_service.answering.verification import NO_FIT_WARNING
from rag_service.errors import RagError
from rag_service.models.embeddings import get_embedder
from rag_service.models.llm import get_llm
from rag_service.server.workspaces import Workspaces
from rag_service.workspace import canonical_embedder

log = logging.getLogger("rag_service.server.health")
PROBE_TIMEOUT_S = 2.0
OK = "ok"


class Readiness:
    def __init__(self, workspaces: Workspaces) -> None:
        self.workspaces = workspaces
        self.settings = workspaces.settings
        self._models = {"embedder": "loading", "llm": "loading"}
        self._calibrated: bool | None = None  # whether the generator's answer checks are fitted (None: not known yet)
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        threading.Thread(target=self._load_models, name="warm-up", daemon=True).start()

    def _load_models(self) -> None:
        for name, load in (("embedder", lambda: get_embedder(canonical_embedder(self.settings.embedder))),
                           ("llm", lambda: warm_up(get_llm(self.settings), self.settings))):
            try:
                load()
                state = OK
            except RagError as exc:
                log.warning("readiness: %s failed to load: %s", name, exc)
                state = f"error: {exc.code}"
            with self._lock:
                self._models[name] = state
        try:  # after the model: identifying a GGUF of one's own hashes it once
            calibrated = bool(calibration_status(self.settings)["fitted"])
        except RagError as exc:
            log.warning("readiness: cannot identify the generator: %s", exc)
            return
        if not calibrated:
            log.warning("%s", NO_FIT_WARNING)
        with self._lock:
            self._calibrated = calibrated

    def report(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            checks: dict[str, str] = dict(self._models)
        checks["catalog"] = self._probe(lambda: self.workspaces.current().catalog.list_kbs())
        if self.settings.chroma_url:
            checks["vector_store"] = self._get(self.settings.chroma_url.rstrip("/") + "/api/v2/heartbeat")
        if self.settings.llm_base_url and checks["llm"] == OK:
            checks["llm"] = self._get(self.settings.llm_base_url.rstrip("/") + "/models")
        ready = all(v == OK for v in checks.values())
        body: dict[str, Any] = {"status": "ready" if ready else "unavailable", "checks": checks}
        with self._lock:
            calibrated = self._calibrated
        if calibrated is not None:  # no details: /healthz is open
            body["answer_checks"] = {"calibrated": calibrated, **({} if calibrated else {"warning": NO_FIT_WARNING})}
        return ready, body

    @staticmethod
    def _probe(check: Callable[[], object]) -> str:
        try:
            check()
        except Exception as exc:  # any failure is the answer here; /healthz is open, so no details
            log.warning("readiness probe failed: %s", exc)
            return f"error: {exc.code if isinstance(exc, RagError) else 'unreachable'}"
        return OK

    def _get(self, url: str) -> str:
        return self._probe(lambda: httpx.get(url, timeout=PROBE_TIMEOUT_S).raise_for_status())
