"""Knowledge bases: create (with their splitter and embedder fixed for life), list, inspect, delete."""

from __future__ import annotations

from typing import Any

from rag_service.admin.documents import delete_kb, describe_kb
from rag_service.errors import ConfigError, InvalidInputError, KnowledgeBaseExistsError
from rag_service.ingestion.pipeline import Ingestor, SplitOptions
from rag_service.server.services.writes import WriteGate
from rag_service.server.workspaces import Workspaces
from rag_service.workspace import Workspace


class KnowledgeBaseService:
    def __init__(self, workspaces: Workspaces, writes: WriteGate) -> None:
        self.workspaces = workspaces
        self.writes = writes

    def create(self, name: str, *, splitter: str | None = None, chunk_size: int | None = None,
               chunk_overlap: int | None = None, chunk_unit: str | None = None,
               embedder: str | None = None) -> dict[str, Any]:
        """The same path as ``rag ingest`` into a new KB, so the splitter settings are validated the same way."""
        ws = self.workspaces.current()
        if ws.catalog.find_kb(name.strip()) is not None:
            raise KnowledgeBaseExistsError(f"knowledge base '{name.strip()}' already exists")
        overrides = {k: v for k, v in {"embedder": embedder, "chunk_unit": chunk_unit}.items() if v is not None}
        scoped = Workspace(ws.settings.model_copy(update=overrides)) if overrides else ws
        try:
            ingestor, _ = Ingestor.open(scoped, name, SplitOptions(splitter, chunk_size, chunk_overlap))
        except ConfigError as exc:  # the splitter settings came from this request, not from the server's config
            raise InvalidInputError(str(exc)) from None
        finally:
            if scoped is not ws:
                scoped.close()
        return describe_kb(ws, ingestor.kb)

    def list(self) -> dict[str, Any]:
        ws = self.workspaces.current()
        return {"kbs": [describe_kb(ws, kb) for kb in ws.catalog.list_kbs()]}

    def get(self, ref: str) -> dict[str, Any]:
        ws = self.workspaces.current()
        return describe_kb(ws, ws.catalog.get_kb(ref), counts=True)

    def delete(self, ref: str) -> None:
        ws = self.workspaces.current()
        kb = ws.catalog.get_kb(ref)
        self.writes.run(ws, lambda w, timeout: delete_kb(w, kb, lock_timeout=timeout))
