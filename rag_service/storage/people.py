"""People, their API keys, their grants on knowledge bases, and the audit trail, in the catalog database (any
``rag_service.storage.db`` backend, so every replica sees a revoked key at its next request).

Only rows live here; what a role or a grant allows, how a key is made and checked, and who may change what are
``rag_service.admin.access`` and ``rag_service.admin.people``. Keys are stored as an argon2 hash with the public
part (``rag_<id>``) beside it: the secret is shown once, at creation, and never stored.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from rag_service.storage.db import Database, Migration, now_text

Role = Literal["admin", "editor", "reader"]
Level = Literal["read", "write", "manage"]  # in order: each allows what the ones before it allow
ROLES: tuple[Role, ...] = get_args(Role)
LEVELS: tuple[Level, ...] = get_args(Level)

MIGRATIONS = (
    Migration(1, "users, API keys, grants on knowledge bases, audit trail", ("""
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'editor', 'reader')),
    disabled {bool} NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    prefix TEXT NOT NULL,
    hash TEXT NOT NULL,
    created TEXT NOT NULL,
    expires TEXT,
    revoked TEXT,
    last_used TEXT
);
CREATE INDEX IF NOT EXISTS api_keys_user ON api_keys (user_id);
CREATE TABLE IF NOT EXISTS grants (
    kb_id TEXT NOT NULL REFERENCES kbs(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    level TEXT NOT NULL CHECK (level IN ('read', 'write', 'manage')),
    created TEXT NOT NULL,
    PRIMARY KEY (kb_id, user_id)
);
CREATE INDEX IF NOT EXISTS grants_user ON grants (user_id);
CREATE TABLE IF NOT EXISTS audit (
    id TEXT PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    key_id TEXT,
    action TEXT NOT NULL,
    kb TEXT,
    target TEXT,
    detail TEXT NOT NULL DEFAULT '{}'{rowid_column}
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at)""",)),
)


@dataclass(frozen=True, slots=True)
class User:
    id: str
    name: str
    role: Role
    disabled: bool
    created: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "disabled": self.disabled, "created": self.created}


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    user: str
    prefix: str
    created: str
    expires: str | None = None
    revoked: str | None = None
    last_used: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key as authentication reads it: its hash, its state and its owner's."""

    key: ApiKey
    hash: str
    user: User


@dataclass(frozen=True, slots=True)
class Grant:
    kb_id: str
    user: str
    level: Level
    created: str

    def to_json(self, kb_name: str) -> dict[str, Any]:
        return {"kb": kb_name, "user": self.user, "level": self.level, "created": self.created}


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: str
    at: str
    actor: str
    action: str
    key_id: str | None = None
    kb: str | None = None
    target: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _user(row: Any, prefix: str = "") -> User:
    return User(row[f"{prefix}id"], row[f"{prefix}name"], row[f"{prefix}role"], bool(row[f"{prefix}disabled"]),
                row[f"{prefix}created"])


def _key(row: Any) -> ApiKey:
    return ApiKey(row["id"], row["user_name"], row["prefix"], row["created"], row["expires"], row["revoked"],
                  row["last_used"])


_KEY_SELECT = ("SELECT k.*, u.name AS user_name, u.id AS u_id, u.name AS u_name, u.role AS u_role, "
               "u.disabled AS u_disabled, u.created AS u_created FROM api_keys k JOIN users u ON u.id = k.user_id")


class PeopleStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        db.migrate("people", MIGRATIONS)

    # -- users -------------------------------------------------------------------------------------
    def add_user(self, name: str, role: Role) -> User:
        user = User(uuid.uuid4().hex, name, role, False, now_text())
        self._db.execute("INSERT INTO users (id, name, role, disabled, created) VALUES (?, ?, ?, ?, ?)",
                         (user.id, name, role, False, user.created))
        return user

    def find_user(self, name: str) -> User | None:
        row = self._db.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
        return _user(row) if row else None

    def users(self) -> list[User]:
        return [_user(r) for r in self._db.execute("SELECT * FROM users ORDER BY name")]

    def update_user(self, user_id: str, *, role: Role | None = None, disabled: bool | None = None) -> None:
        if role is not None:
            self._db.execute("UPDATE users SET role = ? WHERE id = ?", (role, user_id))
        if disabled is not None:
            self._db.execute("UPDATE users SET disabled = ? WHERE id = ?", (disabled, user_id))

    # -- keys --------------------------------------------------------------------------------------
    def add_key(self, key_id: str, user_id: str, prefix: str, hashed: str, expires: str | None) -> None:
        self._db.execute("INSERT INTO api_keys (id, user_id, prefix, hash, created, expires) VALUES (?, ?, ?, ?, ?, ?)",
                         (key_id, user_id, prefix, hashed, now_text(), expires))

    def key_record(self, key_id: str) -> KeyRecord | None:
        row = self._db.execute(f"{_KEY_SELECT} WHERE k.id = ?", (key_id,)).fetchone()
        return KeyRecord(_key(row), row["hash"], _user(row, "u_")) if row else None

    def keys(self, user_id: str | None = None) -> list[ApiKey]:
        where, args = ("WHERE k.user_id = ?", (user_id,)) if user_id is not None else ("", ())
        return [_key(r) for r in self._db.execute(f"{_KEY_SELECT} {where} ORDER BY k.created, k.id", args)]

    def any_key(self) -> bool:
        """Whether any key was ever created: from then on the API needs a key, even with none in the environment."""
        return self._db.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone() is not None

    def revoke_key(self, key_id: str) -> None:
        """Revoking a revoked key keeps its first revocation time."""
        self._db.execute("UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL", (now_text(), key_id))

    def touch_key(self, key_id: str, at: str) -> None:
        self._db.execute("UPDATE api_keys SET last_used = ? WHERE id = ?", (at, key_id))

    # -- grants ------------------------------------------------------------------------------------
    def grant(self, kb_id: str, user_id: str, level: Level) -> None:
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM grants WHERE kb_id = ? AND user_id = ?", (kb_id, user_id))
            tx.execute("INSERT INTO grants (kb_id, user_id, level, created) VALUES (?, ?, ?, ?)",
                       (kb_id, user_id, level, now_text()))

    def revoke_grant(self, kb_id: str, user_id: str) -> bool:
        return self._db.execute("DELETE FROM grants WHERE kb_id = ? AND user_id = ?", (kb_id, user_id)).rowcount > 0

    def grants(self, *, kb_id: str | None = None, user_id: str | None = None) -> list[Grant]:
        clauses, args = [], []
        for column, value in (("g.kb_id", kb_id), ("g.user_id", user_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute("SELECT g.kb_id, u.name, g.level, g.created FROM grants g JOIN users u "
                                f"ON u.id = g.user_id {where} ORDER BY u.name, g.kb_id", args)
        return [Grant(r["kb_id"], r["name"], r["level"], r["created"]) for r in rows]

    def levels(self, user_id: str) -> dict[str, Level]:
        """kb_id -> the user's granted level."""
        return {r["kb_id"]: r["level"] for r in self._db.execute(
            "SELECT kb_id, level FROM grants WHERE user_id = ?", (user_id,))}

    # -- audit -------------------------------------------------------------------------------------
    def record(self, event: AuditEvent) -> None:
        self._db.execute("INSERT INTO audit (id, at, actor, key_id, action, kb, target, detail) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (event.id, event.at, event.actor, event.key_id, event.action, event.kb, event.target,
                          json.dumps(event.detail, ensure_ascii=False)))

    def events(self, *, kb: str | None = None, actor: str | None = None, action: str | None = None,
               since: str | None = None, limit: int = 100) -> list[AuditEvent]:
        """Newest first. ``action`` matches itself or its family ('kb' matches 'kb.create' and 'kb.delete')."""
        clauses: list[str] = []
        args: list[Any] = []
        for clause, value in (("kb = ?", kb), ("actor = ?", actor), ("at >= ?", since)):
            if value is not None:
                clauses.append(clause)
                args.append(value)
        if action is not None:
            clauses.append("(action = ? OR action LIKE ?)")
            args += [action, action.replace("%", "").replace("_", "") + ".%"]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute(f"SELECT * FROM audit {where} ORDER BY at DESC, {{rowid}} DESC LIMIT ?",
                                [*args, limit])
        return [AuditEvent(r["id"], r["at"], r["actor"], r["action"], r["key_id"], r["kb"], r["target"],
                           json.loads(r["detail"])) for r in rows]


def new_event(actor: str, action: str, *, key_id: str | None = None, kb: str | None = None,
              target: str | None = None, detail: dict[str, Any] | None = None) -> AuditEvent:
    return AuditEvent(uuid.uuid4().hex[:16], now_text(), actor, action, key_id, kb, target, detail or {})

