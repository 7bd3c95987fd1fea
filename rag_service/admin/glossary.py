"""Changing a knowledge base's glossary (the CLI and REST share this), with the KB's BM25 tokens re-tokenised right
away. Apart from ``rag_service.index.glossary`` (the entries and the tokenizer every workspace uses) because
re-tokenising needs the workspace.

Re-tokenising (every chunk through jieba and the glossary matcher) is the slow part of an edit, and a search that
finds the glossary newer than the tokens waits for the write lock. So the new tokens are computed before the lock
is taken, and stored under it together with the glossary when nothing changed meanwhile; after a concurrent edit or
ingest the edit is done again under the lock, as it always was."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterable

from rag_service.index.glossary import OPTION, GlossaryEntry, check_glossary, entries, normalise, tokenizer_with
from rag_service.index.lexical import ensure_tokens
from rag_service.storage.catalog import KnowledgeBase
from rag_service.workspace import Workspace

Change = Callable[[list[GlossaryEntry]], list[GlossaryEntry] | None]  # the new glossary; None: nothing to change


def _edit(ws: Workspace, kb: KnowledgeBase, change: Change, lock_timeout: float | None) -> list[GlossaryEntry] | None:
    """Store ``change(glossary)`` (checked against the limits) and the KB's BM25 tokens for it."""
    before = ws.catalog.get_kb(kb.id)
    updated = change(entries(before))
    if updated is None:
        return None
    stored = [e.to_json() for e in updated]
    check_glossary(ws.settings, stored)  # past a limit: nothing is stored
    tokenizer = tokenizer_with(ws.tokenizer, {OPTION: stored})
    revision = ws.catalog.revision(kb.id)
    tokens = None if before.options.get("tokenizer") == tokenizer.version else \
        [(c.id, tokenizer(c.index_text)) for c in ws.catalog.indexed_chunks(kb.id)]
    with ws.write_lock(lock_timeout):
        fresh = ws.catalog.get_kb(kb.id)
        if (fresh.options.get(OPTION, []) == before.options.get(OPTION, []) and ws.catalog.revision(kb.id) == revision
                and fresh.options.get("tokenizer") == before.options.get("tokenizer")
                and (tokens is None or [c.id for c in ws.catalog.indexed_chunks(kb.id)] == [i for i, _ in tokens])):
            ws.catalog.set_kb_option(kb.id, OPTION, stored)
            if tokens is not None:
                ws.catalog.set_tokens(kb.id, tokens)
                ws.catalog.set_kb_option(kb.id, "tokenizer", tokenizer.version)
            return updated
        updated = change(entries(fresh))  # changed meanwhile: all again, under the lock
        if updated is None:
            return None
        stored = [e.to_json() for e in updated]
        check_glossary(ws.settings, stored)
        ws.catalog.set_kb_option(kb.id, OPTION, stored)
        ensure_tokens(ws, ws.catalog.get_kb(kb.id))
    return updated


def merge(current: list[GlossaryEntry], new: Iterable[tuple[str, ...]], max_terms: int,
          new_id: Callable[[], str] = lambda: uuid.uuid4().hex[:8]) -> list[GlossaryEntry]:
    """``current`` with ``new`` added: an entry sharing a term with existing ones is merged into the first of them
    (first spellings kept, at most ``max_terms``), which moves to the end; any other is appended. A term's entry is
    looked up, not searched for: adding 2,000 entries to 2,000 compared every pair (minutes)."""
    glossary = {e.id: e for e in current}  # in order
    place = {e.id: n for n, e in enumerate(current)}
    later = itertools.count(len(current))
    owner = {normalise(t): e.id for e in current for t in e.terms}  # a term -> its entry (check_glossary: one)
    for terms in new:
        overlapping = sorted({owner[k] for k in map(normalise, terms) if k in owner}, key=place.__getitem__)
        if overlapping:
            merged: dict[str, str] = {}  # first spelling of each term, in order
            for term in [*(t for i in overlapping for t in glossary[i].terms), *terms]:
                merged.setdefault(normalise(term), term)
            for i in overlapping:
                for key in map(normalise, glossary.pop(i).terms):
                    owner.pop(key, None)
            entry = GlossaryEntry(overlapping[0], tuple(merged.values())[:max_terms])
        else:
            entry = GlossaryEntry(new_id(), tuple(terms))
        glossary[entry.id] = entry
        place[entry.id] = next(later)
        owner.update((normalise(t), entry.id) for t in entry.terms)
    return list(glossary.values())


def add(ws: Workspace, kb: KnowledgeBase, new: Iterable[tuple[str, ...]], *,
        lock_timeout: float | None = None) -> list[GlossaryEntry]:
    """Add entries (``merge``); returns the glossary. The KB's BM25 tokens are re-tokenised with the new terms right
    away (the CLI and REST share this)."""
    new = list(new)
    return _edit(ws, kb, lambda current: merge(current, new, ws.settings.glossary_max_terms), lock_timeout) or []


def remove(ws: Workspace, kb: KnowledgeBase, entry_id: str, *, lock_timeout: float | None = None) -> bool:
    """Remove one entry by id; False when there is none (the KB is re-tokenised without its terms)."""
    def change(current: list[GlossaryEntry]) -> list[GlossaryEntry] | None:
        kept = [e for e in current if e.id != entry_id]
        return kept if len(kept) < len(current) else None

    return _edit(ws, kb, change, lock_timeout) is not None
