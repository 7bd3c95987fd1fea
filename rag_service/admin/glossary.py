"""Changing a knowledge base's glossary (the CLI and REST share this): under the write lock, with the KB's BM25
tokens re-tokenised right away. Apart from ``rag_service.index.glossary`` (the entries and the tokenizer every workspace
uses) because re-tokenising needs the workspace."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from rag_service.errors import InvalidInputError
from rag_service.index.glossary import MAX_ENTRIES, MAX_TERMS, OPTION, GlossaryEntry, entries, normalise
from rag_service.index.lexical import ensure_tokens
from rag_service.storage.catalog import KnowledgeBase
from rag_service.workspace import Workspace


def _store(ws: Workspace, kb: KnowledgeBase, items: list[GlossaryEntry]) -> None:
    ws.catalog.set_kb_option(kb.id, OPTION, [e.to_json() for e in items])


def add(ws: Workspace, kb: KnowledgeBase, new: Iterable[tuple[str, ...]], *,
        lock_timeout: float | None = None) -> list[GlossaryEntry]:
    """Add entries (an entry sharing a term with an existing one is merged into it); returns the glossary. Under
    the write lock: the KB's BM25 tokens are re-tokenised with the new terms right away (the CLI and REST share
    this)."""
    with ws.write_lock(lock_timeout):
        current = entries(ws.catalog.get_kb(kb.id))
        for terms in new:
            keys = {normalise(t) for t in terms}
            overlapping = [e for e in current if keys & {normalise(t) for t in e.terms}]
            if overlapping:  # one concept: fold the entries that share a term into the first of them
                merged: dict[str, str] = {}  # first spelling of each term, in order
                for term in [*(t for e in overlapping for t in e.terms), *terms]:
                    merged.setdefault(normalise(term), term)
                current = [e for e in current if e not in overlapping] + [
                    GlossaryEntry(overlapping[0].id, tuple(merged.values())[:MAX_TERMS])]
            else:
                current.append(GlossaryEntry(uuid.uuid4().hex[:8], terms))
        if len(current) > MAX_ENTRIES:
            raise InvalidInputError(f"a glossary holds at most {MAX_ENTRIES} entries")
        _store(ws, kb, current)
        ensure_tokens(ws, ws.catalog.get_kb(kb.id))
    return current


def remove(ws: Workspace, kb: KnowledgeBase, entry_id: str, *, lock_timeout: float | None = None) -> bool:
    """Remove one entry by id; False when there is none (the KB is re-tokenised without its terms)."""
    with ws.write_lock(lock_timeout):
        current = entries(ws.catalog.get_kb(kb.id))
        kept = [e for e in current if e.id != entry_id]
        if len(kept) == len(current):
            return False
        _store(ws, kb, kept)
        ensure_tokens(ws, ws.catalog.get_kb(kb.id))
    return True
