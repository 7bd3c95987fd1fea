"""``rag users|keys|grants|audit``: people, their API keys, their grants on knowledge bases and the audit trail
(README "Teams"), through the same use cases as ``/v1/users``, ``/v1/keys``, ``/v1/kbs/{kb}/grants`` and
``/v1/audit`` (``rag_service.admin.people``). The CLI reads and writes the data dir directly, so it acts as an admin;
the trail names it ``cli:<account>``.

``--json`` shapes are public contracts (extend, never break), the same as the REST answers:
``users list`` ``{"users": [{"name", "role", "disabled", "created", "keys"}]}``; ``users add|enable|disable|role``
the user; ``keys create`` ``{"id", "key", "user", "expires", "prefix", "created"}`` (the only time the key is shown);
``keys list`` ``{"keys": [{"id", "user", "prefix", "created", "expires", "revoked", "last_used"}]}``; ``keys revoke``
that key; ``grants add`` ``{"kb", "user", "level", "created"}``; ``grants list`` ``{"grants": [...]}``; ``audit``
``{"events": [{"id", "at", "actor", "key_id", "action", "kb", "target", "detail"}]}``, newest first.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Callable
from typing import Any

from rag_service.cli.common import operator, print_json, workspace
from rag_service.storage.people import LEVELS, ROLES  # a light module: the rows' types, no database driver

MAX_AUDIT_LIMIT = 10_000  # as GET /v1/audit
_VERBS = {"read": "read", "write": "read and write to", "manage": "manage"}


def _user_line(u: dict[str, Any]) -> str:
    keys = f"  {u['keys']} key{'s' if u['keys'] != 1 else ''}" if "keys" in u else ""
    return f"{u['name']}  {u['role']}{'  (disabled)' if u['disabled'] else ''}{keys}  created {u['created']}"


def cmd_users(args: argparse.Namespace) -> int:
    from rag_service.admin import people

    ws, who = workspace(), operator()
    if args.users_cmd == "list":
        found = people.users(ws, who)
        if args.json:
            print_json({"users": found})
        else:
            for u in found:
                print(_user_line(u))
            if not found:
                print("no users yet: add one with `rag users add NAME --role admin|editor|reader`")
        return 0
    if args.users_cmd == "add":
        user = people.add_user(ws, who, args.name, args.role)
        message = f"added user '{user.name}' ({user.role}); give them a key with `rag keys create --user {user.name}`"
    elif args.users_cmd == "role":
        user = people.update_user(ws, who, args.name, role=args.role)
        message = f"user '{user.name}' is now {'an' if user.role[0] in 'ae' else 'a'} {user.role}"
    else:  # enable | disable
        user = people.update_user(ws, who, args.name, disabled=args.users_cmd == "disable")
        message = (f"disabled user '{user.name}': their keys stop working at their next request"
                   if user.disabled else f"enabled user '{user.name}': their keys work again")
    if args.json:
        print_json(user.to_json())
    else:
        print(message)
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from rag_service.admin import people

    ws, who = workspace(), operator()
    if args.keys_cmd == "create":
        created = people.create_key(ws, who, args.user, args.expires)
        if args.json:
            print_json(created)
        else:
            print(created["key"])
            expiry = f"expires {created['expires']}" if created["expires"] else "never expires"
            print(f"key {created['id']} for user '{created['user']}' ({expiry}): this is the only time it is shown; "
                  "store it now (lost: revoke it and create another)", file=sys.stderr)
        return 0
    if args.keys_cmd == "revoke":
        key = people.revoke_key(ws, who, args.key_id)
        if args.json:
            print_json(key.to_json())
        else:
            print(f"revoked key {key.id} of user '{key.user}' (since {key.revoked})")
        return 0
    found = people.keys(ws, who, args.user)
    if args.json:
        print_json({"keys": [k.to_json() for k in found]})
        return 0
    for k in found:
        print(f"{k.id}  {k.prefix}  {k.user}  created {k.created}  expires {k.expires or 'never'}  "
              f"{f'revoked {k.revoked}' if k.revoked else 'not revoked'}  last used {k.last_used or 'never'}")
    if not found:
        print("no keys" + (f" of user '{args.user}'" if args.user else ""))
    return 0


def cmd_grants(args: argparse.Namespace) -> int:
    from rag_service.admin import people

    ws, who = workspace(), operator()
    if args.grants_cmd == "add":
        made = people.grant(ws, who, args.kb, args.user, args.level)
        if args.json:
            print_json(made)
        else:
            print(f"'{made['user']}' may now {_VERBS[made['level']]} knowledge base '{made['kb']}'")
        return 0
    if args.grants_cmd == "remove":
        people.revoke_grant(ws, who, args.kb, args.user)
        print(f"removed the grant of '{args.user}' on knowledge base '{args.kb}'")
        return 0
    found = people.grants(ws, who, args.kb, args.user)
    if args.json:
        print_json({"grants": found})
        return 0
    for g in found:
        print(f"{g['kb']}  {g['user']}  {g['level']}  since {g['created']}")
    if not found:
        print("no grants")
    return 0


def _detail(detail: dict[str, Any], width: int = 80) -> str:
    if not detail:
        return ""
    text = json.dumps(detail, ensure_ascii=False, separators=(",", ":"))
    return textwrap.shorten(text, width=width, placeholder=" …")


def cmd_audit(args: argparse.Namespace) -> int:
    from rag_service.admin import people

    found = people.events(workspace(), operator(), kb=args.kb, actor=args.user, action=args.action,
                          since=args.since, limit=args.limit)
    if args.json:
        print_json({"events": [e.to_json() for e in found]})
        return 0
    for e in found:
        print("  ".join([e.at, e.actor, e.action, e.kb or "-", e.target or "-", _detail(e.detail)]).rstrip())
    if not found:
        print("no events")
    return 0


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
        if not low <= n <= high:
            raise argparse.ArgumentTypeError(f"must be {low}-{high}")
        return n

    return parse


def _days(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {value!r}") from None


def add_people_parsers(sub: Any) -> None:
    """``rag users``, ``rag keys``, ``rag grants`` and ``rag audit`` on the top-level subparsers."""
    s = sub.add_parser("users", help="people who use the REST API with their own keys (admins, editors, readers)")
    us = s.add_subparsers(dest="users_cmd", required=True)
    u = us.add_parser("list", help="every user, with their number of working keys")
    u.add_argument("--json", action="store_true")
    u = us.add_parser("add", help="a new user: admin (everything), editor (creates KBs, others as granted) or "
                      "reader (reads the KBs granted)")
    u.add_argument("--role", required=True, choices=ROLES)
    u.add_argument("--json", action="store_true")
    u.add_argument("name")
    for verb, what in (("disable", "their keys stop working at their next request"),
                       ("enable", "their keys work again")):
        u = us.add_parser(verb, help=f"{verb} a user: {what}")
        u.add_argument("--json", action="store_true")
        u.add_argument("name")
    u = us.add_parser("role", help="change a user's role")
    u.add_argument("--role", required=True, choices=ROLES)
    u.add_argument("--json", action="store_true")
    u.add_argument("name")
    s.set_defaults(func=cmd_users)

    s = sub.add_parser("keys", help="users' API keys (stored hashed: a key is shown once, when created)")
    ks = s.add_subparsers(dest="keys_cmd", required=True)
    k = ks.add_parser("create", help="a new key for a user, printed once")
    k.add_argument("--user", required=True)
    k.add_argument("--expires", type=_days, metavar="DAYS", help="expire after DAYS days (default: never)")
    k.add_argument("--json", action="store_true", help='print {"id", "key", "user", "expires", "prefix", "created"}')
    k = ks.add_parser("list", help="keys without the keys themselves: id, prefix, user, dates, revoked, last use")
    k.add_argument("--user", help="only this user's")
    k.add_argument("--json", action="store_true")
    k = ks.add_parser("revoke", help="refuse a key from its next request on")
    k.add_argument("--json", action="store_true")
    k.add_argument("key_id", metavar="ID", help="the key's id (the 12 hex digits after 'rag_')")
    s.set_defaults(func=cmd_keys)

    s = sub.add_parser("grants", help="who may read, write or manage a knowledge base")
    gs = s.add_subparsers(dest="grants_cmd", required=True)
    g = gs.add_parser("add", help="grant a user a level on a KB, replacing what they had (readers: read only)")
    g.add_argument("--kb", required=True)
    g.add_argument("--user", required=True)
    g.add_argument("--level", required=True, choices=LEVELS)
    g.add_argument("--json", action="store_true")
    g = gs.add_parser("list")
    g.add_argument("--kb", help="only this knowledge base's")
    g.add_argument("--user", help="only this user's")
    g.add_argument("--json", action="store_true")
    g = gs.add_parser("remove", help="take a user's access to a KB away")
    g.add_argument("--kb", required=True)
    g.add_argument("--user", required=True)
    s.set_defaults(func=cmd_grants)

    s = sub.add_parser("audit", help="the audit trail, newest first: KBs created or deleted, documents, glossary "
                       "edits, grants, keys, users; who did it (a user, 'operator', 'cli:<account>') and when")
    s.add_argument("--kb", help="a knowledge base name")
    s.add_argument("--user", metavar="ACTOR", help="the actor: a user, 'operator' or 'cli:<account>'")
    s.add_argument("--action", help="an action such as grant.add, or a family: kb, document, glossary, grant, key, "
                   "user")
    s.add_argument("--since", metavar="ISO", help="an ISO date or time (UTC unless it says)")
    s.add_argument("--limit", type=_int_between(1, MAX_AUDIT_LIMIT), default=100, help="at most N events "
                   "(default 100)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_audit)
