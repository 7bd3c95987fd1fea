"""Who may do what: roles, grants on knowledge bases, and the one rule every route and command asks.

- ``admin``: everything, on every knowledge base, including people, keys and the audit trail.
- ``editor``: creates knowledge bases (and manages the ones they create); reads, writes or manages others as granted.
- ``reader``: asks and searches the knowledge bases granted to them; a grant above ``read`` counts as ``read``.

A knowledge base the caller may not read does not exist for them: the same 404, with the same message, as a name
nobody uses, so a key cannot probe for names. One they may read but not change answers 403.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Any

from rag_service.errors import ForbiddenError, KnowledgeBaseNotFoundError
from rag_service.storage.catalog import KnowledgeBase
from rag_service.storage.people import LEVELS, Level, Role
from rag_service.workspace import Workspace

# The highest level a role reaches on a KB it holds a grant on (admins reach "manage" everywhere without one).
ROLE_CEILING: dict[Role, Level] = {"admin": "manage", "editor": "manage", "reader": "read"}
# Roles that may create knowledge bases (the creator gets "manage" on it).
CREATORS: frozenset[Role] = frozenset({"admin", "editor"})
# A name no user may take: the actor of keys from the environment and of a server without keys.
OPERATOR_NAME = "operator"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request or command."""

    name: str
    role: Role
    user_id: str | None = None  # None: the operator (an environment key, a server without keys, the CLI)
    key_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_user(self) -> bool:
        """A person from the database, whose keys have limits and whose sessions are private."""
        return self.user_id is not None

    def owns(self, user_id: str | None) -> bool:
        """Whether a session or rating made by ``user_id`` is this caller's to see: their own; admins see all."""
        return self.is_admin or (self.user_id is not None and self.user_id == user_id)

    def to_json(self) -> dict[str, Any]:
        return {"user": self.name, "role": self.role, "key_id": self.key_id, "admin": self.is_admin,
                "can_create_kbs": self.role in CREATORS}


# Keys from RAG_API_KEY / RAG_API_KEYS_FILE, and every request to a server that has no keys at all.
OPERATOR = Principal(OPERATOR_NAME, "admin")


def local_operator() -> Principal:
    """The person at the terminal: the CLI reads and writes the data dir directly, so it acts as an admin, and the
    audit trail names the account it ran under."""
    try:
        account = getpass.getuser()
    except (KeyError, OSError):
        account = "unknown"
    return Principal(f"cli:{account}", "admin")


def allows(have: Level | None, need: Level) -> bool:
    return have is not None and LEVELS.index(have) >= LEVELS.index(need)


def _capped(level: Level | None, role: Role) -> Level | None:
    if level is None:
        return None
    ceiling = ROLE_CEILING[role]
    return level if allows(ceiling, level) else ceiling


class Access:
    """The access rule over one workspace's catalog and grants."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    def level(self, who: Principal, kb: KnowledgeBase) -> Level | None:
        """What ``who`` may do with ``kb``: None (it does not exist for them), read, write or manage."""
        if who.is_admin:
            return "manage"
        if who.user_id is None:
            return None
        return _capped(self.ws.people.levels(who.user_id).get(kb.id), who.role)

    def kb(self, who: Principal, ref: str, need: Level = "read") -> KnowledgeBase:
        """The KB named (or with id) ``ref``, if ``who`` may ``need`` it: 404 when they may not read it (exactly as
        for a name nobody uses), 403 when they may read it but not this."""
        kb = self.ws.catalog.find_kb(ref)
        level = None if kb is None else self.level(who, kb)
        if kb is None or level is None:
            raise KnowledgeBaseNotFoundError(f"knowledge base '{ref}' does not exist")
        if not allows(level, need):
            raise ForbiddenError(f"you may {_VERBS[level]} knowledge base '{kb.name}' but not {_VERBS[need]} it")
        return kb

    def kbs(self, who: Principal) -> list[tuple[KnowledgeBase, Level]]:
        """Every KB ``who`` may read, with their level, by name."""
        everything = self.ws.catalog.list_kbs()
        if who.is_admin:
            return [(kb, "manage") for kb in everything]
        granted = self.ws.people.levels(who.user_id) if who.user_id is not None else {}
        out = []
        for kb in everything:
            level = _capped(granted.get(kb.id), who.role)
            if level is not None:
                out.append((kb, level))
        return out

    @staticmethod
    def require_creator(who: Principal) -> None:
        if who.role not in CREATORS:
            raise ForbiddenError(f"a {who.role} cannot create knowledge bases (editors and admins can)")

    @staticmethod
    def require_admin(who: Principal, what: str) -> None:
        if not who.is_admin:
            raise ForbiddenError(f"only an admin may {what}")


_VERBS: dict[Level, str] = {"read": "read", "write": "write to", "manage": "manage"}
