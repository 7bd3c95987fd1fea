"""Changing a knowledge base's glossary (the CLI and REST share this): under the write lock, with the KB's BM25
tokens re-tokenised right away. Apart from ``rag_service.index.glossary`` (the entries and the tokenizer every workspace
uses) because re-tokenising needs the workspace."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from rag_service.errors import InvalidInputError
from rag_service.index.glossary import (
    MAX_ENTRIES,
    MAX_TERMS,
    OPTION,
    GlossaryEntry,
    entries,
    normalise,
    parse_entry,
)
from rag_service.index.lexical import ensure_tokens
from rag_service.storage.catalog import KnowledgeBase
from rag_service.workspace import Workspace

MAX_ENTRY_ID = 64  # ids are made here (8 hex digits); an imported one may be longer, not unbounded


def checked(raw: Any) -> list[GlossaryEntry]:
    """A whole glossary as a KB's options store it (``[{"id", "terms"}]``), checked by the rules of an edit: each
    entry's terms as ``parse_entry`` takes them (whitespace tidied), ids unique, no term in two entries (``add``
    merges such entries into one), at most MAX_ENTRIES entries. The one check of a glossary as a whole: an edit's
    result and an import's glossary go through it."""
    if not isinstance(raw, list):
        raise InvalidInputError("a glossary is a list of entries")
    if len(raw) > MAX_ENTRIES:
        raise InvalidInputError(f"a glossary holds at most {MAX_ENTRIES} entries, got {len(raw)}")
    out: list[GlossaryEntry] = []
    owner: dict[str, str] = {}  # normalised term -> the id of its entry
    ids: set[str] = set()
    for n, item in enumerate(raw, 1):
        entry_id = item.get("id") if isinstance(item, dict) else None
        terms = item.get("terms") if isinstance(item, dict) else None
        if not isinstance(entry_id, str) or not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
            raise InvalidInputError(f"glossary entry {n}: not an object with an 'id' and a list of 'terms'")
        if not 0 < len(entry_id) <= MAX_ENTRY_ID or not entry_id.isprintable():
            raise InvalidInputError(f"glossary entry {n}: an id is 1-{MAX_ENTRY_ID} printable characters")
        if entry_id in ids:
            raise InvalidInputError(f"glossary entry {n}: id {entry_id!r} is used twice")
        ids.add(entry_id)
        if len(terms) > MAX_TERMS:  # before parse_entry, whose de-duplication is quadratic in the list's length
            raise InvalidInputError(f"glossary entry {entry_id}: at most {MAX_TERMS} terms, got {len(terms)}")
        try:
            parsed = parse_entry(terms)
        except InvalidInputError as exc:
            raise InvalidInputError(f"glossary entry {entry_id}: {exc}") from None
        for term in parsed:
            other = owner.setdefault(normalise(term), entry_id)
            if other != entry_id:
                raise InvalidInputError(f"glossary entries {other} and {entry_id} both name {term!r}: one concept "
                                        "is one entry")
        out.append(GlossaryEntry(entry_id, parsed))
    return out


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
        current = checked([e.to_json() for e in current])
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
