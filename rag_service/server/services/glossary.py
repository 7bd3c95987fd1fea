"""A knowledge base's glossary over REST: the same use cases as ``rag glossary`` (glossary, glossary_edits)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rag_service.admin import glossary as glossary_edits
from rag_service.admin import people
from rag_service.admin.access import Access, Principal
from rag_service.errors import GlossaryEntryNotFoundError
from rag_service.index import glossary
from rag_service.server.services.writes import WriteGate
from rag_service.server.workspaces import Workspaces


class GlossaryService:
    def __init__(self, workspaces: Workspaces, writes: WriteGate) -> None:
        self.workspaces = workspaces
        self.writes = writes

    def list_entries(self, who: Principal, kb_ref: str) -> dict[str, Any]:
        kb = Access(self.workspaces.current()).kb(who, kb_ref)
        return {"entries": [e.to_json() for e in glossary.entries(kb)]}

    def add(self, who: Principal, kb_ref: str, items: Sequence[str | list[str]]) -> dict[str, Any]:
        ws = self.workspaces.current()
        kb = Access(ws).kb(who, kb_ref, "write")
        parsed = [glossary.parse_entry(item, ws.settings) for item in items]  # all checked before anything is stored
        stored = self.writes.run(ws, lambda w, timeout: glossary_edits.add(w, kb, parsed, lock_timeout=timeout))
        people.audit(ws, who, "glossary.add", kb=kb.name, detail={"entries": [list(terms) for terms in parsed]})
        return {"entries": [e.to_json() for e in stored]}

    def remove(self, who: Principal, kb_ref: str, entry_id: str) -> None:
        ws = self.workspaces.current()
        kb = Access(ws).kb(who, kb_ref, "write")
        if not self.writes.run(ws, lambda w, timeout: glossary_edits.remove(w, kb, entry_id, lock_timeout=timeout)):
            raise GlossaryEntryNotFoundError(f"knowledge base '{kb.name}' has no glossary entry '{entry_id}'")
        people.audit(ws, who, "glossary.remove", kb=kb.name, target=entry_id)

    def suggestions(self, who: Principal, kb_ref: str, limit: int) -> dict[str, Any]:
        ws = self.workspaces.current()
        kb = Access(ws).kb(who, kb_ref)
        return {"suggestions": [s.to_json() for s in glossary.suggest(ws.catalog, kb, limit,
                                                                 max_terms=ws.settings.glossary_max_terms)]}
