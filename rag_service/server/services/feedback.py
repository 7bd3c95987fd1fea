"""Feedback on answers: stored with the sessions and its author, listed per knowledge base: a KB's managers see
everyone's ratings, everyone else their own."""

from __future__ import annotations

from typing import Any

from rag_service.admin.access import Access, Principal
from rag_service.server.schemas import FeedbackIn
from rag_service.server.workspaces import Workspaces


class FeedbackService:
    def __init__(self, workspaces: Workspaces) -> None:
        self.workspaces = workspaces

    def create(self, who: Principal, body: FeedbackIn) -> dict[str, str]:
        ws = self.workspaces.current()
        kb = Access(ws).kb(who, body.kb)
        item = ws.feedback.add(kb.id, body.question, body.answer, body.rating, comment=body.comment,
                               session_id=body.session_id, citations=body.citations or [], user_id=who.user_id)
        return {"id": item.id}

    def list(self, who: Principal, kb_ref: str) -> dict[str, Any]:
        ws = self.workspaces.current()
        access = Access(ws)
        kb = access.kb(who, kb_ref)
        everyone = access.level(who, kb) == "manage"
        return {"feedback": [f.to_json(kb.name) for f in ws.feedback.for_kb(kb.id, who.user_id, everyone=everyone)]}
