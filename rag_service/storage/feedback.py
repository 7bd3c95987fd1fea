"""Thumbs up/down on answers, kept in the sessions database, and exported as questions to re-check.

This closes the loop from use back to evaluation: ``rag feedback export`` writes the ratings as a question file
that ``rag eval answers --dataset FILE --kb NAME`` reads. An up-voted answer becomes a reference answer the
system should keep giving; a down-voted one becomes a question with no reference answer (scored as "should
refuse" until someone writes the right answer into ``answers``), carrying the rejected answer and the comment.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from rag_service.storage.db import AddColumn, Database, Migration

Rating = Literal["up", "down"]
MIGRATIONS = (
    Migration(1, "ratings of answers", ("""
CREATE TABLE IF NOT EXISTS feedback (
    id TEXT PRIMARY KEY,
    kb_id TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    comment TEXT,
    session_id TEXT,
    citations TEXT NOT NULL DEFAULT '[]',
    created TEXT NOT NULL{rowid_column}
);
CREATE INDEX IF NOT EXISTS feedback_kb ON feedback (kb_id, created)""",)),
    Migration(2, "the user who rated (their own ratings are theirs to list; NULL: the operator's)", (
        AddColumn("feedback", "user_id", "TEXT"),)),
)


@dataclass(frozen=True, slots=True)
class Feedback:
    id: str
    kb_id: str
    question: str
    answer: str
    rating: Rating
    comment: str | None = None
    session_id: str | None = None
    citations: list[dict[str, Any]] = field(default_factory=list)
    created: str = ""

    def to_json(self, kb_name: str) -> dict[str, Any]:
        out = asdict(self)
        del out["kb_id"]
        return {"id": out.pop("id"), "kb": kb_name, **out}

    def as_eval_question(self) -> dict[str, Any]:
        """One line of the question file ``rag eval answers`` reads (rag_service.eval.datasets.load_jsonl)."""
        return {"id": f"feedback-{self.id}", "question": self.question,
                "answers": [self.answer] if self.rating == "up" else [],
                "gold_doc_ids": sorted({str(c["doc_id"]) for c in self.citations if c.get("doc_id")}),
                "kind": f"feedback-{self.rating}", "rated_answer": self.answer, "comment": self.comment,
                "created": self.created}


class FeedbackStore:
    """In the sessions database (``<data_dir>/sessions.sqlite3`` when embedded): feedback belongs with the chats."""

    def __init__(self, db: Database) -> None:
        self._db = db
        db.migrate("feedback", MIGRATIONS)

    def add(self, kb_id: str, question: str, answer: str, rating: Rating, *, comment: str | None = None,
            session_id: str | None = None, citations: Iterable[dict[str, Any]] = (),
            user_id: str | None = None) -> Feedback:
        item = Feedback(uuid.uuid4().hex[:16], kb_id, question, answer, rating, comment or None, session_id,
                        list(citations), datetime.now(UTC).isoformat(timespec="seconds"))
        self._db.execute("INSERT INTO feedback (id, kb_id, question, answer, rating, comment, session_id, "
                         "citations, created, user_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (item.id, kb_id, question, answer, rating, item.comment, session_id,
                          json.dumps(item.citations, ensure_ascii=False), item.created, user_id))
        return item

    def for_kb(self, kb_id: str, user_id: str | None = None, *, everyone: bool = True) -> list[Feedback]:
        """The KB's ratings, oldest first: everyone's, or (not ``everyone``) only ``user_id``'s."""
        mine = "" if everyone else " AND user_id = ?"
        rows = self._db.execute(f"SELECT * FROM feedback WHERE kb_id = ?{mine} ORDER BY created, {{rowid}}",
                                (kb_id,) if everyone else (kb_id, user_id))
        return [Feedback(r["id"], r["kb_id"], r["question"], r["answer"], r["rating"], r["comment"],
                         r["session_id"], json.loads(r["citations"]), r["created"]) for r in rows]


def export_lines(items: Iterable[Feedback]) -> Iterator[str]:
    for item in items:
        yield json.dumps(item.as_eval_question(), ensure_ascii=False)
