"""People, keys, grants and the audit trail: the use cases behind ``rag users|keys|grants|audit`` and
``/v1/users``, ``/v1/keys``, ``/v1/kbs/{kb}/grants``, ``/v1/audit``. Each checks who may do it and leaves an audit
event; the CLI acts as an admin (``access.local_operator``), REST as the key's owner.

Keys are ``rag_<id>_<secret>``: ``id`` (12 hex digits) is public (listed, revoked by it, shown as the prefix
``rag_<id>``), ``secret`` is 32 bytes from ``secrets`` (256 bits). Only an argon2id hash of the whole key is
stored (argon2-cffi; OWASP's minimum parameters, m=19 MiB t=2 p=1: ~26 ms to verify on this machine, and a server
verifies each key once per process, see ``server.auth``).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from rag_service.admin.access import OPERATOR_NAME, Access, Principal
from rag_service.errors import (
    GrantNotFoundError,
    InvalidInputError,
    KeyNotFoundError,
    UniqueViolationError,
    UserExistsError,
    UserNotFoundError,
)
from rag_service.storage.people import LEVELS, ROLES, ApiKey, AuditEvent, Grant, Level, Role, User, new_event
from rag_service.workspace import Workspace

KEY_PREFIX = "rag_"
_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
MAX_USER_NAME = 64
MAX_KEY_DAYS = 3650

# Every audited action, by family: what the trail can hold and what `rag audit --action` accepts.
ACTIONS = ("kb.create", "kb.delete", "document.upload", "document.replace", "document.delete", "glossary.add",
           "glossary.remove", "grant.add", "grant.remove", "key.create", "key.revoke", "user.add", "user.update")


# -- keys ---------------------------------------------------------------------------------------------
def new_key() -> tuple[str, str]:
    """(id, key): a fresh key and its public id."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def key_id_of(token: str) -> str | None:
    """The public id inside a key of ours, or None for anything else."""
    if not token.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = token[len(KEY_PREFIX):].partition("_")
    if not sep or len(key_id) != 12 or not secret or any(c not in "0123456789abcdef" for c in key_id):
        return None
    return key_id


def verify_key(hashed: str, token: str) -> bool:
    try:
        return _HASHER.verify(hashed, token)
    except (VerificationError, InvalidHashError):
        return False


def expired(key: ApiKey, now: datetime | None = None) -> bool:
    return key.expires is not None and datetime.fromisoformat(key.expires) <= (now or datetime.now(UTC))


def audit(ws: Workspace, who: Principal, action: str, *, kb: str | None = None, target: str | None = None,
          detail: dict[str, Any] | None = None) -> None:
    """One event in the trail, naming its actor (a user, ``operator`` for an environment key, ``cli:<account>``)."""
    assert action in ACTIONS, action
    ws.people.record(new_event(who.name, action, key_id=who.key_id, kb=kb, target=target, detail=detail))


# -- users ----------------------------------------------------------------------------------------------
def _role(role: str) -> Role:
    if role not in ROLES:
        raise InvalidInputError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    return role


def user(ws: Workspace, name: str) -> User:
    found = ws.people.find_user(name)
    if found is None:
        raise UserNotFoundError(f"no user '{name}'")
    return found


def add_user(ws: Workspace, who: Principal, name: str, role: str) -> User:
    Access.require_admin(who, "add users")
    name = name.strip()
    if not name or len(name) > MAX_USER_NAME or not name.isprintable() or name == OPERATOR_NAME \
            or name.startswith("cli:"):
        raise InvalidInputError(f"invalid user name {name!r}: 1-{MAX_USER_NAME} printable characters, not "
                                f"'{OPERATOR_NAME}' or 'cli:...'")
    try:
        created = ws.people.add_user(name, _role(role))
    except UniqueViolationError:
        raise UserExistsError(f"user '{name}' already exists") from None
    audit(ws, who, "user.add", target=name, detail={"role": created.role})
    return created


def update_user(ws: Workspace, who: Principal, name: str, *, role: str | None = None,
                disabled: bool | None = None) -> User:
    """A new role, or disabled/enabled: a disabled user's keys stop working at their next request."""
    Access.require_admin(who, "change users")
    if role is None and disabled is None:
        raise InvalidInputError("nothing to change: give a role, or disabled true/false")
    found = user(ws, name)
    ws.people.update_user(found.id, role=_role(role) if role is not None else None, disabled=disabled)
    changes = {k: v for k, v in {"role": role, "disabled": disabled}.items() if v is not None}
    audit(ws, who, "user.update", target=name, detail=changes)
    return user(ws, name)


def users(ws: Workspace, who: Principal) -> list[dict[str, Any]]:
    Access.require_admin(who, "list users")
    keys = ws.people.keys()
    return [{**u.to_json(), "keys": sum(1 for k in keys if k.user == u.name and k.revoked is None and not expired(k))}
            for u in ws.people.users()]


# -- keys -----------------------------------------------------------------------------------------------
def create_key(ws: Workspace, who: Principal, user_name: str, expires_days: float | None = None) -> dict[str, Any]:
    """``{"id", "key", "user", "expires", "prefix", "created"}``: the only time the key itself is shown."""
    Access.require_admin(who, "create keys")
    owner = user(ws, user_name)
    if expires_days is not None and not 0 < expires_days <= MAX_KEY_DAYS:
        raise InvalidInputError(f"a key expires after 0-{MAX_KEY_DAYS} days, not {expires_days}")
    expires = None if expires_days is None else \
        (datetime.now(UTC) + timedelta(days=expires_days)).isoformat(timespec="seconds")
    key_id, key = new_key()
    ws.people.add_key(key_id, owner.id, f"{KEY_PREFIX}{key_id}", _HASHER.hash(key), expires)
    audit(ws, who, "key.create", target=key_id, detail={"user": owner.name, "expires": expires})
    record = ws.people.key_record(key_id)
    assert record is not None
    return {"id": key_id, "key": key, "user": owner.name, "expires": expires, "prefix": record.key.prefix,
            "created": record.key.created}


def keys(ws: Workspace, who: Principal, user_name: str | None = None) -> list[ApiKey]:
    Access.require_admin(who, "list keys")
    return ws.people.keys(user(ws, user_name).id if user_name is not None else None)


def revoke_key(ws: Workspace, who: Principal, key_id: str) -> ApiKey:
    Access.require_admin(who, "revoke keys")
    before = ws.people.key_record(key_id)
    if before is None:
        raise KeyNotFoundError(f"no key '{key_id}'")
    if before.key.revoked is None:  # revoking again changes nothing and is not a new event
        ws.people.revoke_key(key_id)
        audit(ws, who, "key.revoke", target=key_id, detail={"user": before.user.name})
    record = ws.people.key_record(key_id)
    assert record is not None
    return record.key


# -- grants ---------------------------------------------------------------------------------------------
def _level(level: str) -> Level:
    if level not in LEVELS:
        raise InvalidInputError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    return level


def grant(ws: Workspace, who: Principal, kb_ref: str, user_name: str, level: str) -> dict[str, Any]:
    """Give ``user_name`` ``level`` on a KB (replacing what they had); the caller must manage the KB."""
    kb = Access(ws).kb(who, kb_ref, "manage")
    grantee = user(ws, user_name)
    wanted = _level(level)
    if grantee.role == "reader" and wanted != "read":
        raise InvalidInputError(f"'{grantee.name}' is a reader: readers can only be granted read (make them an "
                                "editor first)")
    ws.people.grant(kb.id, grantee.id, wanted)
    audit(ws, who, "grant.add", kb=kb.name, target=grantee.name, detail={"level": wanted})
    return next(g.to_json(kb.name) for g in ws.people.grants(kb_id=kb.id, user_id=grantee.id))


def revoke_grant(ws: Workspace, who: Principal, kb_ref: str, user_name: str) -> None:
    kb = Access(ws).kb(who, kb_ref, "manage")
    grantee = user(ws, user_name)
    if not ws.people.revoke_grant(kb.id, grantee.id):
        raise GrantNotFoundError(f"'{grantee.name}' has no grant on knowledge base '{kb.name}'")
    audit(ws, who, "grant.remove", kb=kb.name, target=grantee.name)


def grants(ws: Workspace, who: Principal, kb_ref: str | None = None, user_name: str | None = None) -> list[
        dict[str, Any]]:
    """A KB's grants (its managers may see them), or every grant (admins), optionally of one user."""
    access = Access(ws)
    if kb_ref is None:
        Access.require_admin(who, "list the grants of every knowledge base")
    kb = access.kb(who, kb_ref, "manage") if kb_ref is not None else None
    names = {k.id: k.name for k in ws.catalog.list_kbs()}
    found = ws.people.grants(kb_id=kb.id if kb else None,
                             user_id=user(ws, user_name).id if user_name is not None else None)
    return [g.to_json(names.get(g.kb_id, g.kb_id)) for g in found]


def creator_grant(ws: Workspace, who: Principal, kb_id: str) -> None:
    """The person who created a KB manages it (admins and the operator need no grant)."""
    if who.user_id is not None and not who.is_admin:
        ws.people.grant(kb_id, who.user_id, "manage")


# -- the trail ------------------------------------------------------------------------------------------
def events(ws: Workspace, who: Principal, *, kb: str | None = None, actor: str | None = None,
           action: str | None = None, since: str | None = None, limit: int = 100) -> list[AuditEvent]:
    Access.require_admin(who, "read the audit trail")
    if action is not None and action not in ACTIONS and action not in {a.split(".")[0] for a in ACTIONS}:
        raise InvalidInputError(f"unknown action {action!r}: one of {', '.join(ACTIONS)}, or a family such as 'kb'")
    if since is not None:
        try:
            parsed = datetime.fromisoformat(since)
        except ValueError:
            raise InvalidInputError(f"since must be an ISO date or time, not {since!r}") from None
        since = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC).isoformat(
            timespec="seconds")
    return ws.people.events(kb=kb, actor=actor, action=action, since=since, limit=limit)


__all__ = ["ACTIONS", "Grant", "add_user", "audit", "create_key", "events", "grant", "grants", "keys", "revoke_grant",
           "revoke_key", "update_user", "users"]
