"""Knowledge bases: create (with their splitter and embedder fixed for life), list, inspect, delete; each as the
caller may (``admin.access``), with the caller's level on it in ``access``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rag_service.admin import people
from rag_service.admin.access import Access, Principal
from rag_service.admin.documents import delete_kb, describe_kb
from rag_service.errors import ConfigError, InvalidInputError, KnowledgeBaseExistsError
from rag_service.ingestion.pipeline import Ingestor, SplitOptions
from rag_service.server.services.writes import WriteGate
from rag_service.server.workspaces import Workspaces
from rag_service.storage.catalog import KnowledgeBase
from rag_service.workspace import Workspace


class KnowledgeBaseService:
    def __init__(self, workspaces: Workspaces, writes: WriteGate) -> None:
        self.workspaces = workspaces
        self.writes = writes

    def create(self, who: Principal, name: str, *, splitter: str | None = None, chunk_size: int | None = None,
               chunk_overlap: int | None = None, chunk_unit: str | None = None,
               embedder: str | None = None) -> dict[str, Any]:
        """The same path as ``rag ingest`` into a new KB, so the splitter settings are validated the same way."""
        Access.require_creator(who)
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
        people.creator_grant(ws, who, ingestor.kb.id)
        people.audit(ws, who, "kb.create", kb=ingestor.kb.name, target=ingestor.kb.id)
        return {**describe_kb(ws, ingestor.kb), "access": "manage"}

    def models(self, who: Principal) -> list[dict[str, Any]]:
        """The readable KBs as OpenAI models (``GET /v1/models``): clients list them before they chat."""
        return [_model(kb) for kb, _ in Access(self.workspaces.current()).kbs(who)]

    def model(self, who: Principal, ref: str) -> dict[str, Any]:
        return _model(Access(self.workspaces.current()).kb(who, ref))

    def list(self, who: Principal) -> dict[str, Any]:
        ws = self.workspaces.current()
        return {"kbs": [{**describe_kb(ws, kb), "access": level} for kb, level in Access(ws).kbs(who)]}

    def get(self, who: Principal, ref: str) -> dict[str, Any]:
        ws = self.workspaces.current()
        access = Access(ws)
        kb = access.kb(who, ref)
        return {**describe_kb(ws, kb, counts=True), "access": access.level(who, kb)}

    def delete(self, who: Principal, ref: str) -> None:
        ws = self.workspaces.current()
        kb = Access(ws).kb(who, ref, "manage")
        self.writes.run(ws, lambda w, timeout: delete_kb(w, kb, lock_timeout=timeout))
        people.audit(ws, who, "kb.delete", kb=kb.name, target=kb.id)


def _model(kb: KnowledgeBase) -> dict[str, Any]:
    return {"id": kb.name, "object": "model", "created": int(datetime.fromisoformat(kb.created).timestamp()),
            "owned_by": "rag-service"}
