"""``rag users|keys|grants|audit`` and the audit events of the CLI's other write commands, end to end: the real CLI as
a process, on embedded SQLite (one data dir for the whole module, so each test names its own users).

The commands call the same use cases as the REST routes (``rag_service.admin.people``), and those run on PostgreSQL
over HTTP in tests/test_teams.py; a CLI process costs a second or two, so this module runs on one catalog."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rag_service.admin.access import local_operator
from rag_service.admin.people import ACTIONS, verify_key
from rag_service.settings import Settings
from rag_service.workspace import Workspace
from tests.conftest import ROOT, rag_json, run_rag

KB = "handbook"
CLI = local_operator().name  # cli:<this account>; the CLI processes run under the same one
KEY_FIELDS = {"id", "user", "prefix", "created", "expires", "revoked", "last_used"}


@pytest.fixture(scope="module")
def catalog_env() -> dict[str, str]:
    """The embedded catalog only (overrides tests/conftest.py's SQLite + PostgreSQL parametrisation here)."""
    return {}


@pytest.fixture(scope="module")
def data(catalog_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A data dir holding KB 'handbook' (one small document), made once per backend: loading the embedder is the
    slow part of everything here."""
    data_dir = tmp_path_factory.mktemp("people-data")
    note = data_dir.parent / f"{data_dir.name}-meals.txt"
    note.write_text("The meal allowance on business trips is 45 euros a day.", encoding="utf-8")
    run_rag("ingest", "--kb", KB, str(note), data_dir=data_dir, env=catalog_env)
    yield data_dir


def fails(*args: str, data_dir: Path) -> str:
    """The one ``error:`` line of a command that must fail with exit code 1."""
    proc = run_rag(*args, data_dir=data_dir, check=False)
    assert proc.returncode == 1, (args, proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stderr.removeprefix("error: ").strip()


def trail(data_dir: Path, *filters: str) -> list[dict[str, Any]]:
    return rag_json("audit", "--limit", "10000", *filters, data_dir=data_dir)["events"]


def summary(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(actor, action, kb, target, detail) per event, newest first; ids and times vary."""
    return [(e["actor"], e["action"], e["kb"], e["target"], e["detail"]) for e in events]


def test_the_new_commands_keep_rag_help_free_of_storage_and_models() -> None:
    """Registering the commands imports nothing heavy: the core is imported by the command that runs (the roles and
    levels come from the one module that declares them, which needs no database driver)."""
    code = ("import sys; from rag_service.cli.main import build_parser; build_parser()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'argon2', 'pydantic', 'sqlite3', "
            "'psycopg') or m.startswith(('rag_service.storage', 'rag_service.admin', 'rag_service.workspace'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "['rag_service.storage', 'rag_service.storage.db', 'rag_service.storage.people']"


@pytest.mark.slow  # CLI processes, a second or two each: make test only
@pytest.mark.usefixtures("on_each_catalog")
def test_users_add_list_role_disable_enable(data: Path) -> None:
    for name, role in (("ada", "admin"), ("eddie", "editor"), ("rea", "reader")):
        user = rag_json("users", "add", name, "--role", role, data_dir=data)
        assert set(user) == {"name", "role", "disabled", "created"}
        assert (user["name"], user["role"], user["disabled"]) == (name, role, False)
    assert fails("users", "add", "eddie", "--role", "reader", data_dir=data) == "user 'eddie' already exists"
    assert "invalid user name 'operator'" in fails("users", "add", "operator", "--role", "admin", data_dir=data)
    assert "invalid user name 'cli:x'" in fails("users", "add", "cli:x", "--role", "admin", data_dir=data)
    assert fails("users", "disable", "nobody", data_dir=data) == "no user 'nobody'"
    bad_role = run_rag("users", "add", "zed", "--role", "owner", data_dir=data, check=False)
    assert bad_role.returncode == 2 and "invalid choice: 'owner'" in bad_role.stderr

    listed = {u["name"]: u for u in rag_json("users", "list", data_dir=data)["users"]}
    assert {n: (u["role"], u["disabled"], u["keys"]) for n, u in listed.items() if n in ("ada", "eddie", "rea")} == {
        "ada": ("admin", False, 0), "eddie": ("editor", False, 0), "rea": ("reader", False, 0)}
    assert "zed" not in listed

    assert rag_json("users", "disable", "rea", data_dir=data)["disabled"] is True
    text = run_rag("users", "list", data_dir=data).stdout.splitlines()
    assert any(re.fullmatch(r"rea  reader  \(disabled\)  0 keys  created \S+", line) for line in text), text
    assert rag_json("users", "enable", "rea", data_dir=data)["disabled"] is False
    out = run_rag("users", "role", "rea", "--role", "editor", data_dir=data).stdout
    assert out == "user 'rea' is now an editor\n"
    assert {u["name"]: (u["role"], u["disabled"]) for u in rag_json("users", "list", data_dir=data)["users"]}[
        "rea"] == ("editor", False)

    events = [e for e in trail(data, "--action", "user", "--user", CLI) if e["target"] in ("ada", "eddie", "rea")]
    assert summary(events) == [
        (CLI, "user.update", None, "rea", {"role": "editor"}),
        (CLI, "user.update", None, "rea", {"disabled": False}),
        (CLI, "user.update", None, "rea", {"disabled": True}),
        (CLI, "user.add", None, "rea", {"role": "reader"}),
        (CLI, "user.add", None, "eddie", {"role": "editor"}),
        (CLI, "user.add", None, "ada", {"role": "admin"}),
    ]  # the refused adds left nothing


@pytest.mark.slow  # CLI processes, a second or two each: make test only
@pytest.mark.usefixtures("on_each_catalog")
def test_keys_create_list_expire_revoke(data: Path) -> None:
    run_rag("users", "add", "kim", "--role", "editor", data_dir=data)
    before = datetime.now(UTC)
    created = rag_json("keys", "create", "--user", "kim", data_dir=data)
    contract = {"id", "key", "user", "expires"}
    assert contract <= set(created) and set(created) - contract == {"prefix", "created"}, created
    key_id, key = created["id"], created["key"]
    assert re.fullmatch(r"[0-9a-f]{12}", key_id)
    assert re.fullmatch(rf"rag_{key_id}_[A-Za-z0-9_-]{{43}}", key), key
    assert (created["user"], created["expires"], created["prefix"]) == ("kim", None, f"rag_{key_id}")

    dated = rag_json("keys", "create", "--user", "kim", "--expires", "30", data_dir=data)
    expires = datetime.fromisoformat(dated["expires"])
    assert expires.tzinfo is not None
    assert before + timedelta(days=30) - timedelta(seconds=2) <= expires <= datetime.now(UTC) + timedelta(days=30)

    plain = run_rag("keys", "create", "--user", "kim", data_dir=data)  # without --json: the key alone on stdout
    plain_key = plain.stdout.strip()
    assert plain.stdout == plain_key + "\n" and re.fullmatch(r"rag_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", plain_key)
    assert "only time it is shown" in plain.stderr and plain_key not in plain.stderr
    plain_id = plain_key[4:16]

    ws = Workspace(Settings(data_dir=data))
    try:  # what is stored verifies the key shown, and nothing else
        for shown, kid in ((key, key_id), (plain_key, plain_id)):
            record = ws.people.key_record(kid)
            assert record is not None and record.user.name == "kim"
            assert record.hash.startswith("$argon2id$") and shown not in record.hash
            assert verify_key(record.hash, shown)
            assert not verify_key(record.hash, shown[:-1] + ("A" if shown[-1] != "A" else "B"))
    finally:
        ws.close()

    listing = run_rag("keys", "list", "--user", "kim", "--json", data_dir=data).stdout
    for secret in (key, plain_key, dated["key"]):
        assert secret not in listing and secret.rsplit("_", 1)[1] not in listing
    keys = {k["id"]: k for k in json.loads(listing)["keys"]}
    assert set(keys) == {key_id, dated["id"], plain_id}
    assert all(set(k) == KEY_FIELDS for k in keys.values())
    assert keys[key_id] | {"created": None} == {"id": key_id, "user": "kim", "prefix": f"rag_{key_id}",
                                                "created": None, "expires": None, "revoked": None, "last_used": None}
    assert keys[dated["id"]]["expires"] == dated["expires"]
    text = run_rag("keys", "list", "--user", "kim", data_dir=data).stdout
    assert key not in text and f"{key_id}  rag_{key_id}  kim  created " in text

    revoked = rag_json("keys", "revoke", key_id, data_dir=data)
    assert set(revoked) == KEY_FIELDS and revoked["id"] == key_id and revoked["revoked"] is not None
    assert datetime.fromisoformat(revoked["revoked"]) >= before - timedelta(seconds=1)
    after = {k["id"]: k["revoked"] for k in rag_json("keys", "list", data_dir=data)["keys"]}
    assert after[key_id] == revoked["revoked"] and after[plain_id] is None and after[dated["id"]] is None
    assert {u["name"]: u["keys"] for u in rag_json("users", "list", data_dir=data)["users"]}["kim"] == 2

    assert fails("keys", "revoke", "ffffffffffff", data_dir=data) == "no key 'ffffffffffff'"
    assert fails("keys", "create", "--user", "nobody", data_dir=data) == "no user 'nobody'"
    assert "expires after 0-3650 days" in fails("keys", "create", "--user", "kim", "--expires", "0", data_dir=data)
    assert fails("keys", "list", "--user", "nobody", data_dir=data) == "no user 'nobody'"

    events = [e for e in trail(data, "--action", "key") if e["target"] in keys or e["target"] == "ffffffffffff"]
    assert summary(events) == [
        (CLI, "key.revoke", None, key_id, {"user": "kim"}),
        (CLI, "key.create", None, plain_id, {"user": "kim", "expires": None}),
        (CLI, "key.create", None, dated["id"], {"user": "kim", "expires": dated["expires"]}),
        (CLI, "key.create", None, key_id, {"user": "kim", "expires": None}),
    ]
    assert all(e["key_id"] is None for e in events)  # the CLI holds no key


@pytest.mark.slow  # CLI processes, a second or two each: make test only
@pytest.mark.usefixtures("on_each_catalog")
def test_grants_add_list_remove(data: Path) -> None:
    for name, role in (("gina", "editor"), ("rory", "reader")):
        run_rag("users", "add", name, "--role", role, data_dir=data)
    made = rag_json("grants", "add", "--kb", KB, "--user", "gina", "--level", "write", data_dir=data)
    assert set(made) == {"kb", "user", "level", "created"}
    assert (made["kb"], made["user"], made["level"]) == (KB, "gina", "write")
    assert fails("grants", "add", "--kb", KB, "--user", "rory", "--level", "write", data_dir=data) == (
        "'rory' is a reader: readers can only be granted read (make them an editor first)")
    out = run_rag("grants", "add", "--kb", KB, "--user", "rory", "--level", "read", data_dir=data).stdout
    assert out == f"'rory' may now read knowledge base '{KB}'\n"
    assert fails("grants", "add", "--kb", "nope", "--user", "rory", "--level", "read", data_dir=data) == (
        "knowledge base 'nope' does not exist")
    assert fails("grants", "add", "--kb", KB, "--user", "nobody", "--level", "read", data_dir=data) == (
        "no user 'nobody'")

    listed = rag_json("grants", "list", "--kb", KB, data_dir=data)["grants"]
    assert [(g["kb"], g["user"], g["level"]) for g in listed if g["user"] in ("gina", "rory")] == [
        (KB, "gina", "write"), (KB, "rory", "read")]
    assert [(g["kb"], g["level"]) for g in rag_json("grants", "list", "--user", "rory", data_dir=data)["grants"]] == [
        (KB, "read")]
    assert fails("grants", "list", "--kb", "nope", data_dir=data) == "knowledge base 'nope' does not exist"

    assert run_rag("grants", "remove", "--kb", KB, "--user", "rory", data_dir=data).returncode == 0
    assert fails("grants", "remove", "--kb", KB, "--user", "rory", data_dir=data) == (
        f"'rory' has no grant on knowledge base '{KB}'")
    assert rag_json("grants", "list", "--user", "rory", data_dir=data)["grants"] == []
    text = run_rag("grants", "list", "--kb", KB, data_dir=data).stdout
    assert re.search(rf"^{KB}  gina  write  since \S+$", text, re.M) and "rory" not in text

    events = [e for e in trail(data, "--action", "grant", "--kb", KB) if e["target"] in ("gina", "rory")]
    assert summary(events) == [
        (CLI, "grant.remove", KB, "rory", {}),
        (CLI, "grant.add", KB, "rory", {"level": "read"}),
        (CLI, "grant.add", KB, "gina", {"level": "write"}),
    ]
    assert trail(data, "--action", "grant", "--kb", "nope") == []


@pytest.mark.slow  # CLI processes, a second or two each: make test only
@pytest.mark.usefixtures("on_each_catalog")
def test_the_write_commands_of_the_cli_leave_audit_events(data: Path, tmp_path: Path) -> None:
    """Ingest (KB created, file added, file replaced), docs delete, glossary add/remove, import (KB created) and
    import --replace (KB deleted, then created): who did what to which KB, filtered by KB and by action."""
    created = trail(data, "--kb", KB, "--action", "kb")
    kb_id = {k["name"]: k["id"] for k in rag_json("kbs", data_dir=data)["kbs"]}[KB]
    assert summary(created) == [(CLI, "kb.create", KB, kb_id, {})]  # by the module's `rag ingest`

    kb = "audited"
    doc = tmp_path / "rules.txt"
    doc.write_text("Visitors sign in at the front desk before 9 am.", encoding="utf-8")
    first = rag_json("ingest", "--kb", kb, str(doc), data_dir=data)
    unchanged = rag_json("ingest", "--kb", kb, str(doc), data_dir=data)  # nothing stored: no event
    doc.write_text("Visitors sign in at the front desk before 10 am.", encoding="utf-8")
    second = rag_json("ingest", "--kb", kb, str(doc), data_dir=data)
    assert [f["status"] for f in (*first["files"], *unchanged["files"], *second["files"])] == [
        "added", "unchanged", "replaced"]
    old, new = first["files"][0]["doc_id"], second["files"][0]["doc_id"]
    entries = rag_json("glossary", "add", "--kb", kb, "SFT = supervised fine-tuning", data_dir=data)["entries"]
    run_rag("glossary", "remove", "--kb", kb, entries[0]["id"], data_dir=data)
    assert fails("glossary", "remove", "--kb", kb, "00000000", data_dir=data).endswith("no glossary entry '00000000'")
    export = tmp_path / "audited.jsonl.gz"
    run_rag("export", "--kb", kb, str(export), data_dir=data)
    copy = rag_json("import", "--kb", "audited-copy", str(export), data_dir=data)
    assert copy == {"kb": "audited-copy", "documents": 1, "chunks": 1}  # the --json contract, unchanged
    kbs = {k["name"]: k["id"] for k in rag_json("kbs", data_dir=data)["kbs"]}
    out = run_rag("docs", "delete", "--kb", kb, new, data_dir=data).stdout
    assert out == f"deleted document {new} from '{kb}'\n"
    run_rag("import", "--replace", str(export), data_dir=data)  # the exported name: 'audited' is replaced
    replaced_id = {k["name"]: k["id"] for k in rag_json("kbs", data_dir=data)["kbs"]}[kb]
    assert replaced_id != kbs[kb]

    ours = trail(data, "--kb", kb)
    assert {e["actor"] for e in ours} == {CLI} and all(e["key_id"] is None for e in ours)
    assert summary(ours) == [
        (CLI, "kb.create", kb, replaced_id, {"imported_from": str(export)}),
        (CLI, "kb.delete", kb, kbs[kb], {"replaced_by_import": str(export)}),
        (CLI, "document.delete", kb, new, {"source": "rules.txt"}),
        (CLI, "glossary.remove", kb, entries[0]["id"], {}),
        (CLI, "glossary.add", kb, None, {"entries": [["SFT", "supervised fine-tuning"]]}),
        (CLI, "document.replace", kb, new, {"source": "rules.txt", "replaces": old}),
        (CLI, "document.upload", kb, old, {"source": "rules.txt"}),
        (CLI, "kb.create", kb, kbs[kb], {}),
    ]
    assert summary(trail(data, "--kb", "audited-copy")) == [
        (CLI, "kb.create", "audited-copy", kbs["audited-copy"], {"imported_from": str(export)})]
    assert [e["action"] for e in trail(data, "--kb", kb, "--action", "document")] == [
        "document.delete", "document.replace", "document.upload"]
    assert [e["action"] for e in trail(data, "--kb", kb, "--action", "glossary.add")] == ["glossary.add"]
    assert len(trail(data, "--kb", kb, "--limit", "2")) == 2

    # the text form: one line per event (time, actor, action, kb, target, short detail), newest first
    lines = run_rag("audit", "--kb", kb, "--action", "document", data_dir=data).stdout.splitlines()
    assert len(lines) == 3
    assert re.fullmatch(rf"\S+  {re.escape(CLI)}  document\.delete  {kb}  {new}  \{{\"source\":\"rules\.txt\"\}}",
                        lines[0]), lines[0]
    assert all(datetime.fromisoformat(line.split("  ")[0]).tzinfo is not None for line in lines)
    assert {e["action"] for e in trail(data)} <= set(ACTIONS)

    # --since: events at or after the time; a bad one is an error; an unknown action too
    newest = ours[0]["at"]
    assert [e["action"] for e in trail(data, "--kb", kb, "--since", newest)] == [
        e["action"] for e in ours if e["at"] >= newest]
    future = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert trail(data, "--since", future) == []
    assert fails("audit", "--since", "yesterday", data_dir=data) == "since must be an ISO date or time, not 'yesterday'"
    assert fails("audit", "--action", "bogus", data_dir=data).startswith("unknown action 'bogus'")
    with gzip.open(export, "rt", encoding="utf-8") as f:
        assert json.loads(f.readline())["kb"]["name"] == kb  # the name --replace took: the exported one
