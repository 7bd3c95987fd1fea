"""Multi-turn chat sessions: who asked what, and what was answered, per knowledge base (any ``rag_service.storage.db``
backend, so any replica continues any session). An answer is kept with its evidence (citations, claims, refusal,
related passages), so a reopened conversation shows what the live answer showed."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from rag_service.errors import InvalidInputError
from rag_service.storage.db import AddColumn, Database, Migration

MIGRATIONS = (
    Migration(1, "sessions and their messages", ("""
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, kb_id TEXT NOT NULL, created TEXT NOT NULL{rowid_column});
CREATE TABLE IF NOT EXISTS messages (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
)""",)),
    Migration(2, "session titles (web console)", (AddColumn("sessions", "title", "TEXT"),)),
    Migration(3, "the user a session belongs to (private to them; NULL: the operator's)", (
        AddColumn("sessions", "user_id", "TEXT"),)),
    Migration(4, "an answer's evidence beside its text (JSON; NULL for questions and older answers)", (
        AddColumn("messages", "answer", "TEXT"),)),
)

# What an assistant message keeps of its Answer's JSON (records.Answer.to_json): the text is ``content``; the trace
# (the prompt, every hit) is not kept, it is the size of the KB's passages and explains the moment of answering only.
ANSWER_FIELDS = ("citations", "claims", "refused", "grounded", "related", "policy", "usage")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


MAX_TITLE = 200


class SessionStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        db.migrate("sessions", MIGRATIONS)

    def for_kb(self, kb_id: str, user_id: str | None = None, *, everyone: bool = True) -> list[dict[str, Any]]:
        """The KB's sessions (``everyone``, else only ``user_id``'s), most recently active first, each with its
        title (or first question) and size."""
        mine = "" if everyone else " AND s.user_id = ?"
        rows = self._db.execute(
            "SELECT s.id, s.kb_id, s.created, s.title, COUNT(m.seq) AS messages, MAX(m.created) AS active, "
            "(SELECT content FROM messages WHERE session_id = s.id ORDER BY seq LIMIT 1) AS first "
            f"FROM sessions s LEFT JOIN messages m ON m.session_id = s.id WHERE s.kb_id = ?{mine} "
            "GROUP BY s.id ORDER BY COALESCE(MAX(m.created), s.created) DESC, s.{rowid} DESC",
            (kb_id,) if everyone else (kb_id, user_id))
        return [{"id": r["id"], "kb_id": r["kb_id"], "created": r["created"], "active": r["active"] or r["created"],
                 "title": r["title"] or (r["first"] or "")[:80], "messages": r["messages"]} for r in rows]

    def rename(self, session_id: str, title: str) -> bool:
        title = " ".join(title.split())
        if not title or len(title) > MAX_TITLE:
            raise InvalidInputError(f"a session title needs 1-{MAX_TITLE} characters")
        return self._db.execute("UPDATE sessions SET title = ? WHERE id = ?", (title, session_id)).rowcount > 0

    def open(self, kb_id: str, session_id: str | None, user_id: str | None = None) -> str:
        """An existing session of this KB, or a new one (``user_id``'s) when ``session_id`` is None."""
        if session_id is None:
            session_id = uuid.uuid4().hex
            self._db.execute("INSERT INTO sessions (id, kb_id, created, user_id) VALUES (?, ?, ?, ?)",
                             (session_id, kb_id, _now(), user_id))
            return session_id
        row = self._db.execute("SELECT kb_id FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            raise InvalidInputError(f"session '{session_id}' does not exist")
        if row[0] != kb_id:
            raise InvalidInputError(f"session '{session_id}' belongs to another knowledge base")
        return session_id

    def append(self, session_id: str, role: str, content: str, answer: Mapping[str, Any] | None = None) -> None:
        """A message at the end of the session; an assistant message's ``answer`` (an Answer's JSON) keeps its
        ``ANSWER_FIELDS``."""
        kept = None
        if answer is not None:
            if role != "assistant":
                raise ValueError("only an assistant message has an answer's evidence")
            kept = json.dumps({k: answer[k] for k in ANSWER_FIELDS if k in answer}, ensure_ascii=False)
        # The session row is locked first, so two replicas appending to one session number turns in order.
        with self._db.transaction() as tx:
            tx.execute("SELECT id FROM sessions WHERE id = ? {lock_row}", (session_id,))
            tx.execute(
                "INSERT INTO messages (session_id, seq, role, content, created, answer) "
                "SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ? FROM messages WHERE session_id = ?",
                (session_id, role, content, _now(), kept, session_id))

    def history(self, session_id: str) -> list[dict[str, str]]:
        return [{"role": r["role"], "content": r["content"]} for r in self._db.execute(
            "SELECT role, content FROM messages WHERE session_id = ? ORDER BY seq", (session_id,))]

    def get(self, session_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            return None
        # An answer's evidence beside its role, content and time (none for a question, nor for an answer written
        # before evidence was kept: those are plain text).
        messages = [{"role": r["role"], "content": r["content"], "created": r["created"],
                     **(json.loads(r["answer"]) if r["answer"] else {})} for r in self._db.execute(
            "SELECT role, content, created, answer FROM messages WHERE session_id = ? ORDER BY seq", (session_id,))]
        return {"id": row["id"], "kb_id": row["kb_id"], "created": row["created"], "title": row["title"],
                "user_id": row["user_id"], "messages": messages}

    def delete(self, session_id: str) -> bool:
        return self._db.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount > 0
