"""Who a key is, in-process: the server's Authenticator over a real people store (SQLite in a temporary data dir).
The same rules over HTTP, on both catalogs, are in tests/test_teams.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rag_service.admin import people
from rag_service.admin.access import OPERATOR, local_operator
from rag_service.server.auth import MAX_FAILURES_PER_MINUTE, Authenticator
from rag_service.server.problems import UnauthorizedError
from rag_service.settings import load_settings
from rag_service.workspace import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace = Workspace(load_settings(data_dir=tmp_path))
    yield workspace
    workspace.close()


def bearer(key: str) -> str:
    return f"Bearer {key}"


def test_open_until_a_key_exists_then_keys_only(ws: Workspace) -> None:
    auth = Authenticator(frozenset(), lambda: ws.people)
    assert auth.authenticate(None) is OPERATOR and not auth.keyed()
    people.add_user(ws, local_operator(), "dana", "reader")
    key = people.create_key(ws, local_operator(), "dana")["key"]
    assert auth.keyed()
    with pytest.raises(UnauthorizedError):
        auth.authenticate(None)
    who = auth.authenticate(bearer(key))
    assert (who.name, who.role, who.key_id) == ("dana", "reader", key.split("_")[1])


def test_environment_keys_are_the_operator_and_user_keys_their_user(ws: Workspace) -> None:
    auth = Authenticator(frozenset({"ops-key"}), lambda: ws.people)
    assert auth.authenticate(bearer("ops-key")) is OPERATOR
    people.add_user(ws, local_operator(), "erin", "editor")
    key = people.create_key(ws, local_operator(), "erin")["key"]
    assert auth.authenticate(bearer(key)).name == "erin"
    for wrong in (None, "Bearer", bearer("ops-key2"), bearer(key[:-1]), bearer(key + "x"), f"Basic {key}",
                  bearer("rag_000000000000_x")):
        with pytest.raises(UnauthorizedError):
            auth.authenticate(wrong)
    assert people.keys(ws, local_operator(), "erin")[0].last_used is not None


def test_guessing_at_a_known_key_id_stops_costing_a_hash_but_not_its_owner(ws: Workspace) -> None:
    auth = Authenticator(frozenset(), lambda: ws.people)
    people.add_user(ws, local_operator(), "fay", "reader")
    key = people.create_key(ws, local_operator(), "fay")["key"]
    assert auth.authenticate(bearer(key)).name == "fay"  # verified once: remembered by this process
    guesses = [f"{key[:17]}guess{i}" for i in range(MAX_FAILURES_PER_MINUTE + 1)]
    for guess in guesses:
        with pytest.raises(UnauthorizedError):
            auth.authenticate(bearer(guess))
    assert auth._failures[key.split("_")[1]][1] == MAX_FAILURES_PER_MINUTE  # the last guess was not even hashed
    assert auth.authenticate(bearer(key)).name == "fay"
    fresh = Authenticator(frozenset(), lambda: ws.people)  # another process: the id is not locked there
    assert fresh.authenticate(bearer(key)).name == "fay"


def test_revoked_expired_and_disabled_are_refused_at_the_next_request(ws: Workspace) -> None:
    auth = Authenticator(frozenset(), lambda: ws.people)
    people.add_user(ws, local_operator(), "gus", "editor")
    made = people.create_key(ws, local_operator(), "gus")
    assert auth.authenticate(bearer(made["key"])).name == "gus"
    people.update_user(ws, local_operator(), "gus", disabled=True)
    with pytest.raises(UnauthorizedError, match="disabled"):
        auth.authenticate(bearer(made["key"]))
    people.update_user(ws, local_operator(), "gus", disabled=False)
    assert auth.authenticate(bearer(made["key"])).name == "gus"
    people.revoke_key(ws, local_operator(), made["id"])
    with pytest.raises(UnauthorizedError, match="revoked"):
        auth.authenticate(bearer(made["key"]))
    soon = people.create_key(ws, local_operator(), "gus", expires_days=1)
    ws.people._db.execute("UPDATE api_keys SET expires = ? WHERE id = ?", ("2000-01-01T00:00:00+00:00", soon["id"]))
    with pytest.raises(UnauthorizedError, match="expired"):
        auth.authenticate(bearer(soon["key"]))
