"""Teams over real HTTP: users, roles, API keys, grants on knowledge bases, private sessions and feedback, the audit
trail and per-key limits (the contract: README "Teams"), against `rag serve` on each catalog (SQLite and
PostgreSQL) with a scripted generator (tests/fakes.py) as its LLM.

The module's server is set up through REST with the operator's key (RAG_API_KEY): users admin1 (admin), ed1 and ed2
(editors), rd1 and rd2 (readers) and spare (a reader that grants and keys are made for), each with a key; KBs
'shared' and 'secret' with one tiny document each; rd1 reads, ed1 writes and ed2 manages 'shared'; nobody but the
admins may use 'secret'; ed1 creates 'ed1-own' and manages it. The access matrix then sends every /v1 route as
every principal (and as no key, a garbage key and a forged one) and checks the exact status and problem code.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes import ScriptedLLM, ScriptedServer
from tests.test_api import (
    KEY,
    LIGHTHOUSE,
    PROBLEM,
    TRAVEL,
    Server,
    assert_problem,
    ingest,
    rag_server,
    sse_events,
    upload,
    wait_job,
)
from tests.test_api_chat import CONFIDENT, MEAL, MEAL_ANSWER

USERS = {"admin1": "admin", "ed1": "editor", "ed2": "editor", "rd1": "reader", "rd2": "reader", "spare": "reader"}
ROLES = {"operator": "admin", **USERS}
ADMINS = ("operator", "admin1")
# The grants the setup makes ('secret' has none: only the admins reach it).
GRANTED: dict[str, dict[str, str]] = {"shared": {"rd1": "read", "ed1": "write", "ed2": "manage"}, "secret": {}}
LEVELS = ("read", "write", "manage")
# Who the matrix sends each request as: the operator (RAG_API_KEY), five users, and three callers without a valid
# key: none at all, something that is not a key, and a real key id with a wrong secret.
PRINCIPALS = ("operator", "admin1", "ed1", "ed2", "rd1", "rd2", "anonymous", "garbage", "forged")
UNAUTHENTICATED = ("anonymous", "garbage", "forged")
# A KB name nobody uses, as long as 'secret' (so the two 404s can be compared byte for byte, length included),
# and a job id nobody has, as long as a real one.
ABSENT = "absent"
ABSENT_JOB = "0" * 32
SETUP_DOCS = {"shared": ("travel.txt", TRAVEL), "secret": ("lighthouse.txt", LIGHTHOUSE)}


@pytest.fixture(scope="module")
def generator() -> Iterator[ScriptedServer]:
    """Every question gets the meal-allowance answer, every check says yes, every follow-up is condensed to MEAL."""
    with ScriptedServer(ScriptedLLM(answer_for=[(".", MEAL_ANSWER)], condensed=[MEAL] * 100, yes=CONFIDENT)) as g:
        yield g


@dataclass
class Team:
    server: Server
    clients: dict[str, httpx.Client]  # principal -> a client sending its key
    keys: dict[str, str]  # user -> its key (the text)
    key_ids: dict[str, str]  # user -> its key's public id
    docs: dict[str, str]  # kb -> the setup document's id
    jobs: dict[str, str]  # kb -> the setup upload's job id
    entries: dict[str, str]  # kb -> the setup glossary entry's id
    kb_ids: dict[str, str]
    uploads: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # (who, kb) -> (job, doc)
    feedback: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (who, kb) -> ids they posted

    @property
    def op(self) -> httpx.Client:
        return self.clients["operator"]

    def key_client(self, key: str | None) -> httpx.Client:
        return self.server.client(key=key, timeout=60)


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, catalog_env: dict[str, str],
         generator: ScriptedServer) -> Iterator[Team]:
    env = {"RAG_LLM_BASE_URL": generator.url, "RAG_TRANSLATE_QUERY": "false", **catalog_env}
    with rag_server(tmp_path_factory.mktemp("teams"), KEY, None, **env) as server, \
            server.client(timeout=60) as op:
        keys, key_ids = {}, {}
        for name, role in USERS.items():
            made = op.post("/v1/users", json={"name": name, "role": role})
            assert made.status_code == 201, made.text
            assert made.json() | {"created": None} == {"name": name, "role": role, "disabled": False, "created": None}
            resp = op.post("/v1/keys", json={"user": name})
            assert resp.status_code == 201, resp.text
            key = resp.json()
            assert key["user"] == name and key["expires"] is None and key["prefix"] == f"rag_{key['id']}"
            assert key["key"].startswith(f"rag_{key['id']}_") and len(key["key"]) > 40
            keys[name], key_ids[name] = key["key"], key["id"]
        assert_problem(op.post("/v1/users", json={"name": "rd1", "role": "reader"}), 409, "user_exists")

        docs, jobs, entries, kb_ids = {}, {}, {}, {}
        for kb, file in SETUP_DOCS.items():
            job = ingest(op, kb, file)
            jobs[kb], docs[kb] = job["id"], job["files"][0]["doc_id"]
            kb_ids[kb] = op.get(f"/v1/kbs/{kb}").json()["id"]
            added = op.post(f"/v1/kbs/{kb}/glossary", json={"entries": [[f"{kb}-term-a", f"{kb}-term-b"]]})
            assert added.status_code == 200, added.text
            entries[kb] = added.json()["entries"][0]["id"]
        for user, level in GRANTED["shared"].items():
            resp = op.post("/v1/kbs/shared/grants", json={"user": user, "level": level})
            assert resp.status_code == 200, resp.text
            assert resp.json() | {"created": None} == {"kb": "shared", "user": user, "level": level, "created": None}
        assert_problem(op.post("/v1/kbs/shared/grants", json={"user": "rd2", "level": "write"}), 400,
                       "invalid_input")  # a reader can only be granted read

        clients = {p: server.client(key=keys[p], timeout=60) for p in USERS}
        clients["operator"] = op
        clients["anonymous"] = server.client(key=None, timeout=60)
        clients["garbage"] = server.client(key="not-a-key-at-all", timeout=60)
        clients["forged"] = server.client(key=f"rag_{key_ids['rd1']}_{'x' * 43}", timeout=60)
        made = clients["ed1"].post("/v1/kbs", json={"name": "ed1-own"})
        assert made.status_code == 201 and made.json()["access"] == "manage", made.text
        kb_ids["ed1-own"] = made.json()["id"]
        try:
            yield Team(server, clients, keys, key_ids, docs, jobs, entries, kb_ids)
        finally:
            for name, c in clients.items():
                if name != "operator":
                    c.close()


def test_setup_roles_and_what_each_key_sees(team: Team) -> None:
    """/v1/me names the key's owner; GET /v1/kbs lists exactly the readable KBs with the caller's level (ed1 manages
    the KB it created, by the grant its creation made)."""
    expected = {"operator": {"shared": "manage", "secret": "manage", "ed1-own": "manage"},
                "admin1": {"shared": "manage", "secret": "manage", "ed1-own": "manage"},
                "ed1": {"shared": "write", "ed1-own": "manage"}, "ed2": {"shared": "manage"},
                "rd1": {"shared": "read"}, "rd2": {}}
    for who, levels in expected.items():
        client = team.clients[who]
        me = client.get("/v1/me").json()
        assert me == {"user": who, "role": ROLES[who], "key_id": team.key_ids.get(who), "admin": who in ADMINS,
                      "can_create_kbs": ROLES[who] != "reader"}, who
        listed = {k["name"]: k["access"] for k in client.get("/v1/kbs").json()["kbs"]
                  if not k["name"].startswith(("made-", "throw-", "audit-"))}
        assert listed == levels, who
    grants = team.op.get("/v1/kbs/ed1-own/grants").json()["grants"]
    assert [(g["kb"], g["user"], g["level"]) for g in grants] == [("ed1-own", "ed1", "manage")]
    shared = team.clients["ed2"].get("/v1/kbs/shared/grants").json()["grants"]  # a manager's view
    assert all(set(g) == {"kb", "user", "level", "created"} for g in shared)
    assert {(g["kb"], g["user"], g["level"]) for g in shared} == {
        ("shared", user, lv) for user, lv in GRANTED["shared"].items()}
    users = {u["name"]: u for u in team.op.get("/v1/users").json()["users"]}
    assert {n: (u["role"], u["disabled"]) for n, u in users.items() if n in USERS} == {
        n: (r, False) for n, r in USERS.items()}
    assert all(users[n]["keys"] >= 1 for n in USERS)


# -- the access matrix --------------------------------------------------------------------------------------
Call = Callable[[Team, str, str, bool], httpx.Response]
Check = Callable[[Team, str, str, httpx.Response], str | None]


@dataclass(frozen=True)
class Route:
    """One route of the contract's table. ``need``: any, admin, create (admins and editors), or the level the KB
    route needs; ``call(team, who, kb, allowed)`` sends it (``allowed``: the caller is expected to succeed, so a
    destructive route acts on a throwaway target); ``check`` looks at a success."""

    name: str
    need: str
    ok: int
    call: Call
    kbs: tuple[str, ...] = ()
    missing: str = "kb_not_found"
    check: Check | None = None


def secret_of(key: str) -> str:
    """The secret part of a key ``rag_<id>_<secret>`` (the secret itself may hold underscores)."""
    return key.split("_", 2)[2]


def level(who: str, kb: str) -> str | None:
    return "manage" if who in ADMINS else GRANTED[kb].get(who)


def expected(route: Route, who: str, kb: str) -> tuple[int, str | None]:
    if who in UNAUTHENTICATED:
        return 401, "unauthorized"
    if route.need == "any":
        return route.ok, None
    if route.need == "admin":
        return (route.ok, None) if who in ADMINS else (403, "forbidden")
    if route.need == "create":
        return (route.ok, None) if ROLES[who] != "reader" else (403, "forbidden")
    have = level(who, kb)
    if have is None:
        return 404, route.missing
    return (route.ok, None) if LEVELS.index(have) >= LEVELS.index(route.need) else (403, "forbidden")


def readable(team: Team, who: str) -> set[str]:
    if who in ADMINS:
        return {k["name"] for k in team.op.get("/v1/kbs").json()["kbs"]}
    return {kb for kb in GRANTED if level(who, kb)} | ({"ed1-own"} if who == "ed1" else set())


def _c(team: Team, who: str) -> httpx.Client:
    return team.clients[who]


def _job(team: Team, kb: str) -> str:
    return team.jobs.get(kb, ABSENT_JOB)


def _upload(team: Team, who: str, kb: str, allowed: bool) -> httpx.Response:
    text = f"Archive note by {who} for {kb}: the {who} shelf of the {kb} archive holds {len(who) * 7} boxes."
    resp = upload(_c(team, who), kb, (f"{who}-{kb}.txt", text.encode()))
    if resp.status_code == 202:
        team.uploads[(who, kb)] = (resp.json()["job_id"], resp.json()["documents"][0]["id"])
    return resp


def _delete_document(team: Team, who: str, kb: str, allowed: bool) -> httpx.Response:
    """Allowed: the document this caller uploaded into the KB; otherwise the setup's document."""
    doc = team.uploads[(who, kb)][1] if allowed else team.docs.get(kb, team.docs["secret"])
    return _c(team, who).delete(f"/v1/kbs/{kb}/documents/{doc}")


def _delete_kb(team: Team, who: str, kb: str, allowed: bool) -> httpx.Response:
    """Allowed: a throwaway KB on which the caller has the level it has on ``kb``; otherwise ``kb`` itself."""
    if not allowed:
        return _c(team, who).delete(f"/v1/kbs/{kb}")
    throwaway = f"throw-{kb}-{who}"
    team.op.post("/v1/kbs", json={"name": throwaway}).raise_for_status()
    if who not in ADMINS:
        team.op.post(f"/v1/kbs/{throwaway}/grants", json={"user": who, "level": level(who, kb)}).raise_for_status()
    return _c(team, who).delete(f"/v1/kbs/{throwaway}")


def _deleted_kb(team: Team, who: str, kb: str, resp: httpx.Response) -> str | None:
    gone = team.op.get(f"/v1/kbs/throw-{kb}-{who}")
    return None if gone.status_code == 404 else f"throw-{kb}-{who} still answers {gone.status_code}"


def _add_glossary(team: Team, who: str, kb: str, allowed: bool) -> httpx.Response:
    return _c(team, who).post(f"/v1/kbs/{kb}/glossary", json={"entries": [[f"{who}-{kb}-a", f"{who}-{kb}-b"]]})


def _added_glossary(team: Team, who: str, kb: str, resp: httpx.Response) -> str | None:
    terms = [e["terms"] for e in resp.json()["entries"]]
    return None if [f"{who}-{kb}-a", f"{who}-{kb}-b"] in terms else f"entry missing from {terms}"


def _remove_glossary(team: Team, who: str, kb: str, allowed: bool) -> httpx.Response:
    if not allowed:
        return _c(team, who).delete(f"/v1/kbs/{kb}/glossary/{team.entries.get(kb, team.entries['secret'])}")
    added = team.op.post(f"/v1/kbs/{kb}/glossary", json={"entries": [[f"gone-{who}-a", f"gone-{who}-b"]]})
    entry = next(e["id"] for e in added.json()["entries"] if f"gone-{who}-a" in e["terms"])
    return _c(team, who).delete(f"/v1/kbs/{kb}/glossary/{entry}")


def _remove_grant(team: Team, who: str, kb: str, allowed: bool) -> httpx.Response:
    if allowed:
        team.op.post(f"/v1/kbs/{kb}/grants", json={"user": "spare", "level": "read"}).raise_for_status()
    return _c(team, who).delete(f"/v1/kbs/{kb}/grants/spare")


def _revoke_key(team: Team, who: str, kb: str, allowed: bool) -> httpx.Response:
    """Allowed: a fresh key of spare's; otherwise spare's own key (which must survive: checked after the matrix)."""
    key_id = team.op.post("/v1/keys", json={"user": "spare"}).json()["id"] if allowed else team.key_ids["spare"]
    return _c(team, who).delete(f"/v1/keys/{key_id}")


def _chat(team: Team, who: str, kb: str, allowed: bool) -> httpx.Response:
    return _c(team, who).post(f"/v1/kbs/{kb}/chat", json={"question": MEAL})


def _completion(team: Team, who: str, kb: str, allowed: bool) -> httpx.Response:
    return _c(team, who).post("/v1/chat/completions", json={"model": kb, "messages": [
        {"role": "user", "content": MEAL}]})


def _post_feedback(team: Team, who: str, kb: str, allowed: bool) -> httpx.Response:
    resp = _c(team, who).post("/v1/feedback", json={"kb": kb, "question": MEAL, "answer": MEAL_ANSWER,
                                                     "rating": "up"})
    if resp.status_code == 201:
        team.feedback.setdefault((who, kb), []).append(resp.json()["id"])
    return resp


def _expect(condition: bool, message: str) -> str | None:
    return None if condition else message


def _check_me(team: Team, who: str, kb: str, resp: httpx.Response) -> str | None:
    me = resp.json()
    return _expect(me["user"] == who and me["role"] == ROLES[who] and me["admin"] == (who in ADMINS), str(me))


def _check_kbs(team: Team, who: str, kb: str, resp: httpx.Response) -> str | None:
    names = {k["name"] for k in resp.json()["kbs"]}
    return _expect(names == readable(team, who), f"listed {sorted(names)}")


def _check_models(team: Team, who: str, kb: str, resp: httpx.Response) -> str | None:
    body = resp.json()
    ids = {m["id"] for m in body["data"]}
    return _expect(body["object"] == "list" and ids == readable(team, who)
                   and all(m["object"] == "model" and m["owned_by"] == "rag-service" for m in body["data"]),
                   f"models {body}")


def _check_answer(team: Team, who: str, kb: str, resp: httpx.Response) -> str | None:
    body = resp.json()
    text = body["answer"] if "answer" in body else body["choices"][0]["message"]["content"]
    return _expect(text == MEAL_ANSWER if kb == "shared" else bool(text), f"answer {text!r}")


def _check_search(team: Team, who: str, kb: str, resp: httpx.Response) -> str | None:
    hits = resp.json()["hits"]
    return _expect(bool(hits) and all(h["source"].endswith(".txt") for h in hits)
                   and SETUP_DOCS[kb][0] in {h["source"] for h in hits}, f"hits {hits}")


def _check_kb(team: Team, who: str, kb: str, resp: httpx.Response) -> str | None:
    body = resp.json()
    return _expect(body["name"] == kb and body["access"] == level(who, kb) and body["documents"] >= 1, str(body))


def _check_documents(team: Team, who: str, kb: str, resp: httpx.Response) -> str | None:
    return _expect(team.docs[kb] in {d["id"] for d in resp.json()["documents"]}, resp.text)


def _check_grants(team: Team, who: str, kb: str, resp: httpx.Response) -> str | None:
    held = {(g["user"], g["level"]) for g in resp.json()["grants"]}
    return _expect(set(GRANTED[kb].items()) <= held, f"grants {held}")


def _check_revoked(team: Team, who: str, kb: str, resp: httpx.Response) -> str | None:
    return _expect(resp.json()["revoked"] is not None and resp.json()["user"] == "spare", resp.text)


def _check_new_key(team: Team, who: str, kb: str, resp: httpx.Response) -> str | None:
    body = resp.json()
    return _expect(body["user"] == "spare" and body["key"].startswith(f"rag_{body['id']}_"), resp.text)


def _check_job(team: Team, who: str, kb: str, resp: httpx.Response) -> str | None:
    body = resp.json()
    return _expect(body["id"] == team.jobs[kb] and body["status"] == "succeeded" and body["kb"] == kb, resp.text)


KB_PAIR = ("shared", "secret")
OPENAI_ROUTES = ("GET /v1/models", "GET /v1/models/{kb}", "POST /v1/chat/completions", "POST /v1/embeddings")
# In the table's order; the rows after the upload wait for its jobs (PHASE_TWO).
ROUTES = (
    Route("GET /v1/me", "any", 200, lambda t, w, kb, a: _c(t, w).get("/v1/me"), check=_check_me),
    Route("GET /v1/kbs", "any", 200, lambda t, w, kb, a: _c(t, w).get("/v1/kbs"), check=_check_kbs),
    Route("GET /v1/models", "any", 200, lambda t, w, kb, a: _c(t, w).get("/v1/models"), check=_check_models),
    Route("GET /v1/models/{kb}", "read", 200, lambda t, w, kb, a: _c(t, w).get(f"/v1/models/{kb}"), KB_PAIR,
          check=lambda t, w, kb, r: _expect(r.json()["id"] == kb, r.text)),
    Route("POST /v1/kbs", "create", 201, lambda t, w, kb, a: _c(t, w).post("/v1/kbs", json={"name": f"made-{w}"}),
          check=lambda t, w, kb, r: _expect(r.json()["name"] == f"made-{w}" and r.json()["access"] == "manage",
                                            r.text)),
    Route("GET /v1/kbs/{kb}", "read", 200, lambda t, w, kb, a: _c(t, w).get(f"/v1/kbs/{kb}"), KB_PAIR,
          check=_check_kb),
    Route("DELETE /v1/kbs/{kb}", "manage", 204, _delete_kb, KB_PAIR, check=_deleted_kb),
    Route("GET /v1/kbs/{kb}/documents", "read", 200, lambda t, w, kb, a: _c(t, w).get(f"/v1/kbs/{kb}/documents"),
          KB_PAIR, check=_check_documents),
    Route("POST /v1/kbs/{kb}/documents", "write", 202, _upload, KB_PAIR),
    Route("GET /v1/jobs/{id}", "read", 200, lambda t, w, kb, a: _c(t, w).get(f"/v1/jobs/{_job(t, kb)}"), KB_PAIR,
          missing="job_not_found", check=_check_job),
    Route("DELETE /v1/jobs/{id}", "write", 200, lambda t, w, kb, a: _c(t, w).delete(f"/v1/jobs/{_job(t, kb)}"),
          KB_PAIR, missing="job_not_found", check=_check_job),
    Route("POST /v1/kbs/{kb}/search", "read", 200, lambda t, w, kb, a: _c(t, w).post(
        f"/v1/kbs/{kb}/search", json={"query": "meal allowance lighthouse", "filter": {"source": "*.txt"}}),
          KB_PAIR, check=_check_search),
    Route("POST /v1/kbs/{kb}/chat", "read", 200, _chat, KB_PAIR, check=_check_answer),
    Route("POST /v1/chat/completions", "read", 200, _completion, KB_PAIR, check=_check_answer),
    Route("POST /v1/embeddings", "read", 200, lambda t, w, kb, a: _c(t, w).post(
        "/v1/embeddings", json={"model": kb, "input": "meal allowance"}), KB_PAIR,
          check=lambda t, w, kb, r: _expect(r.json()["model"] == kb and len(r.json()["data"][0]["embedding"]) == 384,
                                            r.text[:200])),
    Route("GET /v1/sessions?kb=", "read", 200, lambda t, w, kb, a: _c(t, w).get("/v1/sessions", params={"kb": kb}),
          KB_PAIR),
    Route("POST /v1/feedback", "read", 201, _post_feedback, KB_PAIR),
    Route("GET /v1/feedback?kb=", "read", 200, lambda t, w, kb, a: _c(t, w).get("/v1/feedback", params={"kb": kb}),
          KB_PAIR),
    Route("GET /v1/kbs/{kb}/glossary", "read", 200, lambda t, w, kb, a: _c(t, w).get(f"/v1/kbs/{kb}/glossary"),
          KB_PAIR, check=lambda t, w, kb, r: _expect(t.entries[kb] in {e["id"] for e in r.json()["entries"]},
                                                     r.text)),
    Route("GET /v1/kbs/{kb}/glossary/suggestions", "read", 200,
          lambda t, w, kb, a: _c(t, w).get(f"/v1/kbs/{kb}/glossary/suggestions"), KB_PAIR),
    Route("POST /v1/kbs/{kb}/glossary", "write", 200, _add_glossary, KB_PAIR, check=_added_glossary),
    Route("DELETE /v1/kbs/{kb}/glossary/{entry}", "write", 204, _remove_glossary, KB_PAIR),
    Route("GET /v1/kbs/{kb}/grants", "manage", 200, lambda t, w, kb, a: _c(t, w).get(f"/v1/kbs/{kb}/grants"),
          KB_PAIR, check=_check_grants),
    Route("POST /v1/kbs/{kb}/grants", "manage", 200, lambda t, w, kb, a: _c(t, w).post(
        f"/v1/kbs/{kb}/grants", json={"user": "spare", "level": "read"}), KB_PAIR,
          check=lambda t, w, kb, r: _expect(r.json()["kb"] == kb and r.json()["user"] == "spare", r.text)),
    Route("DELETE /v1/kbs/{kb}/grants/{user}", "manage", 204, _remove_grant, KB_PAIR),
    Route("GET /v1/reports", "admin", 200, lambda t, w, kb, a: _c(t, w).get("/v1/reports"),
          check=lambda t, w, kb, r: _expect("docs/cmrc" in {x["id"] for x in r.json()["reports"]}, r.text)),
    Route("GET /v1/reports/{id}/{fmt}", "admin", 200, lambda t, w, kb, a: _c(t, w).get("/v1/reports/docs/cmrc/md"),
          check=lambda t, w, kb, r: _expect("cmrc" in r.text.lower(), r.text[:200])),
    Route("GET /v1/users", "admin", 200, lambda t, w, kb, a: _c(t, w).get("/v1/users"),
          check=lambda t, w, kb, r: _expect(set(USERS) <= {u["name"] for u in r.json()["users"]}, r.text)),
    Route("POST /v1/users", "admin", 201, lambda t, w, kb, a: _c(t, w).post(
        "/v1/users", json={"name": f"new-{w}", "role": "reader"}),
          check=lambda t, w, kb, r: _expect(r.json()["name"] == f"new-{w}", r.text)),
    Route("PATCH /v1/users/{name}", "admin", 200, lambda t, w, kb, a: _c(t, w).patch(
        "/v1/users/spare", json={"role": "reader"}),
          check=lambda t, w, kb, r: _expect(r.json()["name"] == "spare" and not r.json()["disabled"], r.text)),
    Route("GET /v1/keys", "admin", 200, lambda t, w, kb, a: _c(t, w).get("/v1/keys"),
          check=lambda t, w, kb, r: _expect(set(t.key_ids.values()) <= {k["id"] for k in r.json()["keys"]},
                                            r.text)),
    Route("POST /v1/keys", "admin", 201, lambda t, w, kb, a: _c(t, w).post("/v1/keys", json={"user": "spare"}),
          check=_check_new_key),
    Route("DELETE /v1/keys/{id}", "admin", 200, _revoke_key, check=_check_revoked),
    Route("GET /v1/audit", "admin", 200, lambda t, w, kb, a: _c(t, w).get("/v1/audit"),
          check=lambda t, w, kb, r: _expect(bool(r.json()["events"]), r.text)),
)
PHASE_TWO = (
    Route("DELETE /v1/kbs/{kb}/documents/{doc_id}", "write", 204, _delete_document, KB_PAIR),
)


def _same_answer(secret: httpx.Response, absent: httpx.Response, secret_ref: str, absent_ref: str) -> bool:
    """The 404 for an unreadable thing is the 404 for a name nobody uses: status, headers and body, byte for byte
    (with the one name swapped; X-Request-ID is each request's own)."""
    def headers(r: httpx.Response) -> dict[str, str]:
        return {k: v for k, v in r.headers.items() if k not in ("date", "content-length", "x-request-id")}

    return (secret.status_code == absent.status_code and headers(secret) == headers(absent)
            and absent.content.replace(absent_ref.encode(), secret_ref.encode()) == secret.content)


def _run(team: Team, routes: tuple[Route, ...]) -> list[str]:
    failures = []
    for route in routes:
        for kb in route.kbs or ("",):
            for who in PRINCIPALS:
                status, code = expected(route, who, kb)
                resp = route.call(team, who, kb, status < 300)
                where = f"{who} {route.name}" + (f" kb={kb}" if kb else "")
                got = resp.status_code, resp.json().get("code") if resp.status_code >= 400 else None
                if got != (status, code):
                    failures.append(f"{where}: got {got[0]} {got[1]} expected {status} {code}: {resp.text[:300]}")
                    continue
                if status >= 400:
                    if resp.headers["content-type"] != PROBLEM or not resp.json()["detail"]:
                        failures.append(f"{where}: not a problem document: {resp.headers} {resp.text[:300]}")
                    # the OpenAI routes' problems also carry OpenAI's "error" object (what the SDKs read)
                    openai_error = {"message": resp.json()["detail"], "type": code, "code": code}
                    if resp.json().get("error") != (openai_error if route.name in OPENAI_ROUTES else None):
                        failures.append(f"{where}: wrong OpenAI error member: {resp.text[:300]}")
                    if status == 401 and not resp.headers.get("www-authenticate", "").startswith("Bearer"):
                        failures.append(f"{where}: 401 without WWW-Authenticate")
                    if status == 404 and kb == "secret":
                        absent = route.call(team, who, ABSENT, False)
                        secret_ref, absent_ref = (("secret", ABSENT) if route.missing == "kb_not_found"
                                                  else (team.jobs["secret"], ABSENT_JOB))
                        if not _same_answer(resp, absent, secret_ref, absent_ref):
                            failures.append(f"{where}: the 404 differs from a missing one's: {resp.headers} "
                                            f"{resp.text} / {absent.headers} {absent.text}")
                elif route.check is not None and (problem := route.check(team, who, kb, resp)):
                    failures.append(f"{where}: {problem}")
    return failures


def _shape(method: str, path: str) -> tuple[str, str]:
    return method.upper(), re.sub(r"\{[^}]*\}", "{}", path.split("?")[0])


def test_every_route_answers_each_principal_exactly(team: Team) -> None:
    """Allowed -> 2xx; a KB the caller may not read -> 404 kb_not_found (for 'secret' the very answer a missing KB
    gets); readable but not allowed -> 403 forbidden; admin-only -> 403 for the rest; no key, a garbage key or a
    forged one (a real key id, a wrong secret) -> 401. Destructive routes succeed on throwaway targets."""
    served = {_shape(method, path) for path, ops in httpx.get(f"{team.server.url}/openapi.json").json()["paths"].items()
              if path.startswith("/v1/") for method in ops}
    by_session = {_shape(m, "/v1/sessions/{id}") for m in ("GET", "PATCH", "DELETE")}  # whose: the next test
    assert {_shape(*r.name.split(" ")) for r in (*ROUTES, *PHASE_TWO)} | by_session == served
    failures = _run(team, ROUTES)
    for (who, kb), (job_id, _) in sorted(team.uploads.items()):
        job = wait_job(team.op, job_id, timeout=60)
        assert job["status"] == "succeeded", (who, kb, job)
    assert sorted(team.uploads) == sorted([(w, "shared") for w in ("operator", "admin1", "ed1", "ed2")]
                                          + [(w, "secret") for w in ADMINS])
    failures += _run(team, PHASE_TWO)
    assert not failures, "\n".join(failures)

    # Nothing a refused request asked for happened.
    op = team.op
    for kb, (source, _) in SETUP_DOCS.items():
        assert [d["source"] for d in op.get(f"/v1/kbs/{kb}/documents").json()["documents"]] == [source]
        assert [e["id"] for e in op.get(f"/v1/kbs/{kb}/glossary").json()["entries"]
                if e["terms"][0].startswith(kb)] == [team.entries[kb]]
        assert [g["user"] for g in op.get(f"/v1/kbs/{kb}/grants").json()["grants"]] == sorted(GRANTED[kb])
    assert {u["name"] for u in op.get("/v1/users").json()["users"]} == {*USERS, "new-operator", "new-admin1"}
    kbs = {k["name"] for k in op.get("/v1/kbs").json()["kbs"]}
    assert kbs == {"shared", "secret", "ed1-own", "made-operator", "made-admin1", "made-ed1", "made-ed2"}
    with team.key_client(team.keys["spare"]) as spare:  # its key survived the refused revocations
        assert spare.get("/v1/me").status_code == 200
    # the refused uploads never became jobs: six accepted, each audited once
    uploads = op.get("/v1/audit", params={"action": "document.upload", "limit": 1000}).json()["events"]
    assert sorted((e["actor"], e["kb"]) for e in uploads if e["detail"]["source"] != SETUP_DOCS[e["kb"]][0]) == \
        sorted(team.uploads)


# -- private sessions and feedback -------------------------------------------------------------------------
def test_sessions_are_private_and_feedback_is_each_one_s_own(team: Team) -> None:
    op, rd1, rd2, ed2 = team.op, team.clients["rd1"], team.clients["rd2"], team.clients["ed2"]
    op.post("/v1/kbs/shared/grants", json={"user": "rd2", "level": "read"}).raise_for_status()
    try:
        resp = rd1.post("/v1/kbs/shared/chat", json={"question": MEAL})
        assert resp.status_code == 200, resp.text
        assert resp.json()["answer"] == MEAL_ANSWER and not resp.json()["refused"]
        session = resp.json()["session_id"]
        missing = "f" * len(session)

        def ids(client: httpx.Client) -> list[str]:
            listed = client.get("/v1/sessions", params={"kb": "shared"})
            assert listed.status_code == 200, listed.text
            return [s["id"] for s in listed.json()["sessions"]]

        assert session in ids(rd1) and session not in ids(rd2) and session not in ids(ed2)
        assert session in ids(op) and session in ids(team.clients["admin1"])
        for client in (rd2, ed2):  # another reader; a manager of the KB who is no admin
            for method, body in (("GET", None), ("PATCH", {"title": "mine now"}), ("DELETE", None)):
                theirs = client.request(method, f"/v1/sessions/{session}", json=body)
                nobody = client.request(method, f"/v1/sessions/{missing}", json=body)
                assert_problem(theirs, 404, "session_not_found")
                assert _same_answer(theirs, nobody, session, missing), (method, theirs.text, nobody.text)
            hijack = client.post("/v1/kbs/shared/chat", json={"question": "And taxis?", "session_id": session})
            assert_problem(hijack, 404, "session_not_found")
            with client.stream("POST", "/v1/kbs/shared/chat", json={"question": "And taxis?", "session_id": session,
                                                                    "stream": True}) as streamed:
                assert streamed.status_code == 404  # refused before the stream starts
        own = rd1.get(f"/v1/sessions/{session}").json()
        assert [(m["role"], m["content"]) for m in own["messages"]] == [("user", MEAL), ("assistant", MEAL_ANSWER)]
        assert own["title"] is None  # nobody else renamed it
        follow_up = rd1.post("/v1/kbs/shared/chat", json={"question": "And taxis?", "session_id": session})
        assert follow_up.status_code == 200 and follow_up.json()["session_id"] == session, follow_up.text
        renamed = rd1.patch(f"/v1/sessions/{session}", json={"title": "meals"})
        assert renamed.status_code == 200 and renamed.json()["title"] == "meals"
        seen = team.clients["admin1"].get(f"/v1/sessions/{session}")
        assert seen.status_code == 200 and len(seen.json()["messages"]) == 4

        # rd2's own session, in a KB it then loses: gone for rd2, still there for an admin
        rd2_session = rd2.post("/v1/kbs/shared/chat", json={"question": MEAL}).json()["session_id"]
        assert rd2.get(f"/v1/sessions/{rd2_session}").status_code == 200
        assert rd2_session not in ids(rd1)

        # feedback: each lists only their own, the KB's manager (and an admin) everyone's
        posted = {}
        for who, client in (("rd1", rd1), ("rd2", rd2)):
            resp = client.post("/v1/feedback", json={"kb": "shared", "question": f"{who} asks", "answer": "x",
                                                     "rating": "down", "comment": f"from {who}"})
            assert resp.status_code == 201, resp.text
            posted[who] = resp.json()["id"]

        def feedback(client: httpx.Client) -> set[str]:
            resp = client.get("/v1/feedback", params={"kb": "shared"})
            assert resp.status_code == 200, resp.text
            return {f["id"] for f in resp.json()["feedback"]}

        assert feedback(rd1) == {posted["rd1"], *team.feedback.get(("rd1", "shared"), [])}
        assert feedback(rd2) == {posted["rd2"]}
        everyone = {*posted.values(), *(i for (_, kb), got in team.feedback.items() if kb == "shared" for i in got)}
        assert feedback(ed2) == feedback(op) == feedback(team.clients["admin1"]) >= everyone
        assert posted["rd1"] not in feedback(team.clients["ed1"])  # write is not manage
    finally:
        op.delete("/v1/kbs/shared/grants/rd2")
    assert_problem(rd2.get(f"/v1/sessions/{rd2_session}"), 404, "session_not_found")
    assert_problem(rd2.get("/v1/sessions", params={"kb": "shared"}), 404, "kb_not_found")
    assert op.get(f"/v1/sessions/{rd2_session}").status_code == 200
    assert rd1.delete(f"/v1/sessions/{session}").status_code == 204
    assert_problem(rd1.get(f"/v1/sessions/{session}"), 404, "session_not_found")


# -- keys: revoked, expired, disabled, last use ---------------------------------------------------------------
def test_revoked_expired_and_disabled_keys_stop_at_once(team: Team) -> None:
    op = team.op
    made = op.post("/v1/keys", json={"user": "rd2"}).json()
    with team.key_client(made["key"]) as second:
        assert second.get("/v1/me").json()["key_id"] == made["id"]  # verified once: the cache is warm
        revoked = op.delete(f"/v1/keys/{made['id']}")
        assert revoked.status_code == 200 and revoked.json()["revoked"] is not None, revoked.text
        body = assert_problem(second.get("/v1/me"), 401, "unauthorized")
        assert "revoked" in body["detail"] and made["key"] not in body["detail"]
        assert_problem(second.post("/v1/kbs/shared/search", json={"query": "meal"}), 401, "unauthorized")
    assert team.clients["rd2"].get("/v1/me").status_code == 200  # the user's other key still works
    assert_problem(op.delete("/v1/keys/000000000000"), 404, "key_not_found")

    short = op.post("/v1/keys", json={"user": "rd1", "expires_days": 0.00003})  # about 2.6 s
    assert short.status_code == 201, short.text
    expires = datetime.fromisoformat(short.json()["expires"])
    with team.key_client(short.json()["key"]) as brief:
        resp = brief.get("/v1/me")
        assert resp.status_code == 200 and time.time() < expires.timestamp(), resp.text
        time.sleep(max(0.0, expires.timestamp() - time.time()) + 1.2)
        body = assert_problem(brief.get("/v1/me"), 401, "unauthorized")
        assert "expired" in body["detail"]
    assert_problem(op.post("/v1/keys", json={"user": "rd1", "expires_days": 0}), 422, "validation_error")
    assert_problem(op.post("/v1/keys", json={"user": "nobody"}), 404, "user_not_found")

    rd1 = team.clients["rd1"]
    assert rd1.get("/v1/kbs/shared").status_code == 200
    disabled = op.patch("/v1/users/rd1", json={"disabled": True})
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True, disabled.text
    try:
        body = assert_problem(rd1.get("/v1/kbs/shared"), 401, "unauthorized")
        assert "disabled" in body["detail"]
        assert_problem(rd1.post("/v1/chat/completions", json={"model": "shared", "messages": [
            {"role": "user", "content": MEAL}]}), 401, "unauthorized")
    finally:
        op.patch("/v1/users/rd1", json={"disabled": False}).raise_for_status()
    assert rd1.get("/v1/kbs/shared").status_code == 200
    assert_problem(op.patch("/v1/users/nobody", json={"disabled": True}), 404, "user_not_found")

    unused = op.post("/v1/keys", json={"user": "spare"}).json()
    listing = op.get("/v1/keys")
    keys = {k["id"]: k for k in listing.json()["keys"]}
    assert keys[team.key_ids["rd1"]]["last_used"] is not None and keys[unused["id"]]["last_used"] is None
    assert keys[made["id"]]["revoked"] is not None and keys[team.key_ids["rd1"]]["revoked"] is None
    assert all(set(k) == {"id", "user", "prefix", "created", "expires", "revoked", "last_used"} for k in keys.values())
    for key in (*team.keys.values(), made["key"], short.json()["key"], unused["key"]):
        assert secret_of(key) not in listing.text
    only = op.get("/v1/keys", params={"user": "rd2"}).json()["keys"]
    assert {k["user"] for k in only} == {"rd2"} and made["id"] in {k["id"] for k in only}
    counts = {u["name"]: u["keys"] for u in op.get("/v1/users").json()["users"]}
    assert counts["rd2"] == 1 and counts["rd1"] == 1  # revoked and expired keys are not counted


def test_a_reader_s_grant_counts_as_read_whatever_it_says(team: Team) -> None:
    """An editor made a reader keeps its grants' rows, but a reader's level is capped at read: ed1 may then only
    read 'shared' (granted write) and 'ed1-own' (manage, as its creator), and writes again once an editor."""
    op, ed1 = team.op, team.clients["ed1"]
    assert op.patch("/v1/users/ed1", json={"role": "reader"}).json()["role"] == "reader"
    try:
        assert {k["name"]: k["access"] for k in ed1.get("/v1/kbs").json()["kbs"]
                if k["name"] in ("shared", "ed1-own")} == {"shared": "read", "ed1-own": "read"}
        assert ed1.get("/v1/me").json()["can_create_kbs"] is False
        assert ed1.post("/v1/kbs/shared/search", json={"query": "meal"}).status_code == 200
        assert_problem(upload(ed1, "shared", ("demoted.txt", b"Written by a reader.")), 403, "forbidden")
        assert_problem(ed1.post("/v1/kbs/ed1-own/glossary", json={"entries": ["p = q"]}), 403, "forbidden")
        assert_problem(ed1.get("/v1/kbs/ed1-own/grants"), 403, "forbidden")
        assert_problem(ed1.delete("/v1/kbs/ed1-own"), 403, "forbidden")
        assert_problem(ed1.post("/v1/kbs", json={"name": "by-a-reader"}), 403, "forbidden")
        held = {g["user"]: g["level"] for g in op.get("/v1/kbs/shared/grants").json()["grants"]}
        assert held["ed1"] == "write"  # the row is kept, for when the role comes back
    finally:
        op.patch("/v1/users/ed1", json={"role": "editor"}).raise_for_status()
    assert ed1.get("/v1/kbs/shared").json()["access"] == "write"
    assert ed1.get("/v1/kbs/ed1-own/grants").status_code == 200


# -- the audit trail -------------------------------------------------------------------------------------------
def test_every_write_is_in_the_audit_trail_with_its_actor(team: Team) -> None:
    op, ed1, ed2, admin1 = team.op, team.clients["ed1"], team.clients["ed2"], team.clients["admin1"]
    before = {e["id"] for e in op.get("/v1/audit", params={"limit": 10_000}).json()["events"]}
    resp = upload(ed1, "shared", ("audit-note.txt", b"Audit note: the archive room key hangs by the door."))
    assert resp.status_code == 202, resp.text
    first = resp.json()["documents"][0]["id"]
    assert wait_job(op, resp.json()["job_id"], timeout=60)["status"] == "succeeded"
    resp = upload(ed2, "shared", ("audit-note.txt", b"Audit note: the archive room key now hangs in the safe."),
                  replace=True)
    assert resp.status_code == 202, resp.text
    doc = resp.json()["documents"][0]["id"]
    assert wait_job(op, resp.json()["job_id"], timeout=60)["status"] == "succeeded"
    assert ed1.delete(f"/v1/kbs/shared/documents/{doc}").status_code == 204
    entries = ed2.post("/v1/kbs/shared/glossary", json={"entries": ["audit-x = audit-y"]}).json()["entries"]
    entry = next(e["id"] for e in entries if "audit-x" in e["terms"])
    assert ed2.delete(f"/v1/kbs/shared/glossary/{entry}").status_code == 204
    assert ed2.post("/v1/kbs/shared/grants", json={"user": "spare", "level": "read"}).status_code == 200
    assert ed2.delete("/v1/kbs/shared/grants/spare").status_code == 204
    key = admin1.post("/v1/keys", json={"user": "spare"}).json()["id"]
    assert admin1.delete(f"/v1/keys/{key}").status_code == 200
    assert admin1.post("/v1/users", json={"name": "audited", "role": "reader"}).status_code == 201
    assert admin1.patch("/v1/users/audited", json={"role": "editor"}).status_code == 200
    assert ed1.post("/v1/kbs", json={"name": "audit-kb"}).status_code == 201
    assert ed1.delete("/v1/kbs/audit-kb").status_code == 204

    events = op.get("/v1/audit", params={"limit": 10_000}).json()["events"]
    assert all(set(e) == {"id", "at", "actor", "key_id", "action", "kb", "target", "detail"} for e in events)
    assert [e["at"] for e in events] == sorted((e["at"] for e in events), reverse=True)  # newest first

    def one(action: str, actor: str, setup: bool = False, **match: Any) -> dict[str, Any]:
        """The one event of this action by this actor (among this test's own, unless ``setup``)."""
        found = [e for e in events if e["action"] == action and e["actor"] == actor and (setup or e["id"] not in before)
                 and all(e[k] == v for k, v in match.items())]
        assert len(found) == 1, (action, actor, match, [e for e in events if e["action"] == action])
        key_id = None if actor == "operator" else team.key_ids[actor]
        assert found[0]["key_id"] == key_id, found[0]
        return found[0]

    one("kb.create", "operator", True, kb="shared", target=team.kb_ids["shared"])
    one("kb.create", "operator", True, kb="secret", target=team.kb_ids["secret"])
    one("kb.create", "ed1", True, kb="ed1-own", target=team.kb_ids["ed1-own"])
    one("kb.create", "ed1", kb="audit-kb")
    one("kb.delete", "ed1", kb="audit-kb")
    setup_upload = one("document.upload", "operator", True, kb="shared", target=team.docs["shared"])
    assert setup_upload["detail"]["source"] == "travel.txt" and setup_upload["detail"]["job_id"] == team.jobs["shared"]
    assert one("document.upload", "ed1", target=first)["detail"]["source"] == "audit-note.txt"
    replaced = one("document.replace", "ed2", kb="shared", target=doc)["detail"]
    assert (replaced["source"], replaced["replaces"]) == ("audit-note.txt", first)
    assert one("document.delete", "ed1", target=doc)["detail"] == {"source": "audit-note.txt"}
    assert one("glossary.add", "ed2", kb="shared")["detail"] == {"entries": [["audit-x", "audit-y"]]}
    one("glossary.remove", "ed2", kb="shared", target=entry)
    assert one("grant.add", "ed2", kb="shared", target="spare")["detail"] == {"level": "read"}
    one("grant.remove", "ed2", kb="shared", target="spare")
    for user, level_ in GRANTED["shared"].items():
        assert one("grant.add", "operator", True, kb="shared", target=user)["detail"] == {"level": level_}
    assert one("key.create", "admin1", target=key)["detail"] == {"user": "spare", "expires": None}
    one("key.revoke", "admin1", target=key)
    one("key.create", "operator", True, target=team.key_ids["rd1"])
    assert one("user.add", "admin1", target="audited")["detail"] == {"role": "reader"}
    assert one("user.update", "admin1", target="audited")["detail"] == {"role": "editor"}
    one("user.add", "operator", True, target="rd1")
    assert len(events) - len(before) == 13  # this test's thirteen writes, and nothing else
    assert all(e["kb"] is None for e in events if e["action"].startswith(("key.", "user.")))
    assert not any(secret_of(team.keys[u]) in json.dumps(events) for u in USERS)

    def filtered(**params: Any) -> list[dict[str, Any]]:
        resp = op.get("/v1/audit", params={"limit": 10_000, **params})
        assert resp.status_code == 200, resp.text
        return resp.json()["events"]

    grants = filtered(action="grant")
    assert grants and {e["action"] for e in grants} == {"grant.add", "grant.remove"}
    assert [e["id"] for e in grants] == [e["id"] for e in events if e["action"].startswith("grant.")]
    assert {e["action"] for e in filtered(action="key.revoke")} == {"key.revoke"}
    shared = filtered(kb="shared")
    assert [e["id"] for e in shared] == [e["id"] for e in events if e["kb"] == "shared"]
    assert {"kb.create", "document.upload", "document.replace", "document.delete", "glossary.add", "grant.add"} <= {
        e["action"] for e in shared}
    by_ed1 = filtered(user="ed1")
    assert [e["id"] for e in by_ed1] == [e["id"] for e in events if e["actor"] == "ed1"]
    assert {e["key_id"] for e in by_ed1} == {team.key_ids["ed1"]} and len(by_ed1) >= 5
    both = filtered(user="ed2", action="grant", kb="shared")
    assert [e["id"] for e in both] == [e["id"] for e in grants if e["actor"] == "ed2" and e["kb"] == "shared"]
    assert [e["action"] for e in both[:2]] == ["grant.remove", "grant.add"]
    assert filtered(since="2999-01-01") == [] and len(filtered(limit=2)) == 2
    assert_problem(op.get("/v1/audit", params={"action": "bogus"}), 400, "invalid_input")
    assert_problem(op.get("/v1/audit", params={"since": "yesterday"}), 400, "invalid_input")
    for who in ("ed1", "ed2", "rd1", "rd2"):
        assert_problem(team.clients[who].get("/v1/audit"), 403, "forbidden")


# -- per-key limits ------------------------------------------------------------------------------------------
@pytest.mark.slow  # a server of its own
def test_a_user_key_is_rate_limited_and_holds_one_chat_at_a_time(tmp_path: Path) -> None:
    """RAG_KEY_REQUESTS_PER_MINUTE=5: a user's 6th request within the minute is 429 with Retry-After, another user's
    key and the operator's are not affected. RAG_KEY_CONCURRENT_CHATS=1: while one chat of a key is held (the
    scripted answer waits), its second chat is 429; once the first ends the key chats again, and two chats of one
    key back to back are both answered."""
    release = threading.Event()
    env = {"RAG_KEY_REQUESTS_PER_MINUTE": "5", "RAG_KEY_CONCURRENT_CHATS": "1", "RAG_TRANSLATE_QUERY": "false"}
    with ScriptedServer(ScriptedLLM(answer_for=[(".", MEAL_ANSWER)], yes=CONFIDENT)) as generator, \
            rag_server(tmp_path, KEY, None, RAG_LLM_BASE_URL=generator.url, **env) as server, \
            server.client(timeout=60) as op:
        ingest(op, "facts", ("travel.txt", TRAVEL))
        keys = {}
        for name in ("busy", "chatty", "other"):
            op.post("/v1/users", json={"name": name, "role": "reader"}).raise_for_status()
            keys[name] = op.post("/v1/keys", json={"user": name}).json()["key"]
            op.post("/v1/kbs/facts/grants", json={"user": name, "level": "read"}).raise_for_status()
        with server.client(key=keys["busy"]) as busy, server.client(key=keys["other"]) as other:
            for _ in range(5):
                assert busy.get("/v1/me").status_code == 200
            refused = busy.get("/v1/me")
            body = assert_problem(refused, 429, "rate_limited")
            assert "RAG_KEY_REQUESTS_PER_MINUTE" in body["detail"]
            assert 1 <= int(refused.headers["retry-after"]) <= 12  # 5 a minute: a token every 12 s
            assert_problem(busy.post("/v1/kbs/facts/search", json={"query": "meal"}), 429, "rate_limited")
            assert other.get("/v1/me").status_code == 200  # per key
            for _ in range(20):  # the operator's key has no limit
                assert op.get("/v1/me").status_code == 200

        question = {"model": "facts", "messages": [{"role": "user", "content": MEAL}]}
        with server.client(key=keys["chatty"]) as chatty:
            generator.llm = ScriptedLLM(answer_for=[(".", MEAL_ANSWER)], yes=CONFIDENT, hold=release)
            try:
                with chatty.stream("POST", "/v1/chat/completions", json={**question, "stream": True}) as held:
                    assert held.status_code == 200
                    lines = held.iter_lines()
                    first = next(lines)  # the role chunk: the chat is admitted and counted
                    second = chatty.post("/v1/kbs/facts/chat", json={"question": MEAL})
                    body = assert_problem(second, 429, "rate_limited")
                    assert "RAG_KEY_CONCURRENT_CHATS" in body["detail"] and int(second.headers["retry-after"]) >= 1
                    assert_problem(chatty.post("/v1/chat/completions", json=question), 429, "rate_limited")
                    release.set()
                    events = sse_events([first, *lines])
            finally:
                release.set()
            assert events[-1][1] == "[DONE]"
            assert "".join(json.loads(d)["choices"][0]["delta"].get("content", "") for _, d in events[:-1]
                           if d.startswith("{")) == MEAL_ANSWER
            generator.llm = ScriptedLLM(answer_for=[(".", MEAL_ANSWER)], yes=CONFIDENT)
            # back to back: a chat's place is given back before its answer is sent (requests 4 and 5 of 5)
            for _ in range(2):
                again = chatty.post("/v1/chat/completions", json=question)
                assert again.status_code == 200, again.text
                assert again.json()["choices"][0]["message"]["content"] == MEAL_ANSWER
