"""Feedback on answers: stored with the sessions, listed per knowledge base."""

from __future__ import annotations

from typing import Any

from rag_service.server.schemas import FeedbackIn
from rag_service.server.workspaces import Workspaces


class FeedbackService:
    def __init__(self, workspaces: Workspaces) -> None:
        self.workspaces = workspaces

    def create(self, body: FeedbackIn) -> dict[str, str]:
        ws = self.workspaces.current()
        kb = ws.catalog.get_kb(body.kb)
        item = ws.feedback.add(kb.id, body.question, body.answer, body.rating, comment=body.comment,
                               session_id=body.session_id, citations=body.citations or [])
        return {"id": item.id}

    def list(self, kb_ref: str) -> dict[str, Any]:
        ws = self.workspaces.current()
        kb = ws.catalog.get_kb(kb_ref)
        return {"feedback": [f.to_json(kb.name) for f in ws.feedback.for_kb(kb.id)]}
