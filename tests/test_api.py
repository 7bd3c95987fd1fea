"""The REST API over real HTTP: `rag serve` in a subprocess on a free port, the bundled models, embedded Chroma.

One server (API key, default limits) per catalog. The few LLM calls are marked ``llm``, use tiny documents and run
on SQLite only (tests/conftest.py). The chat plumbing (events, OpenAI shapes, sessions on each catalog, the full
queue) and the upload limit are tested on a server with a scripted generator in test_api_chat.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RAG, SAMPLES

KEY = "test-key-0123456789"
PROBLEM = "application/problem+json"
# Tiny documents for the LLM tests: short prompts are what keeps a CPU-only answer fast.
TRAVEL = (b"Aurora Robotics travel policy: the daily meal allowance on business trips is 45 euros. "
          b"Taxi rides are reimbursed only between 22:00 and 06:00.")
LIBRARY = "星河社区图书馆借阅规则：每位读者最多可以同时借阅八本书，借期为三十天。".encode()
LIGHTHOUSE = b"The Lighthouse lab is open to staff from 07:30 to 19:00 on weekdays. Visitors sign in at the front desk."


# -- a real server ---------------------------------------------------------------------------------
@dataclass
class Server:
    url: str
    data_dir: Path
    upload_dir: Path
    log: Path
    key: str | None

    def client(self, key: str | None = "default", **kw: Any) -> httpx.Client:
        key = self.key if key == "default" else key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, **{"timeout": 180, **kw})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    """Until ``url`` answers 200; fails early, with the process's log, if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} not ready after {timeout}s:\n{log.read_text()[-3000:]}")


@contextmanager
def process(args: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def rag_server(root: Path, key: str | None = KEY, ready: Callable[..., None] | None = None,
               **env: str) -> Iterator[Server]:
    """``rag serve`` with its own data dir; RAG_* settings come in as ``env``; ``ready(url, proc, log)`` waits
    until it may be used (default: /healthz answers 200)."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = Server(f"http://127.0.0.1:{port}", root / "data", root / "uploads", root / "server.log", key)
    env = {"RAG_DATA_DIR": str(server.data_dir), "RAG_UPLOAD_DIR": str(server.upload_dir), **env}
    if key:
        env["RAG_API_KEY"] = key
    with process([str(RAG), "serve", "--host", "127.0.0.1", "--port", str(port)], server.log, env) as proc:
        (ready or (lambda url, p, log: wait_http(url + "/healthz", p, log)))(server.url, proc, server.log)
        yield server


# -- helpers ---------------------------------------------------------------------------------------
def upload(client: httpx.Client, kb: str, *files: tuple[str, bytes], replace: bool = False) -> httpx.Response:
    return client.post(f"/v1/kbs/{kb}/documents", files=[("file", (name, data)) for name, data in files],
                       params={"replace": "true"} if replace else None)


def wait_job(client: httpx.Client, job_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").raise_for_status().json()
        assert job["status"] in ("queued", "running", "succeeded", "failed", "cancelled")
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} unfinished after {timeout}s")


def ingest(client: httpx.Client, kb: str, *files: tuple[str, bytes]) -> dict[str, Any]:
    """Create ``kb`` if needed, upload, and wait for a successful job."""
    if client.get(f"/v1/kbs/{kb}").status_code == 404:
        client.post("/v1/kbs", json={"name": kb}).raise_for_status()
    resp = upload(client, kb, *files)
    assert resp.status_code == 202, resp.text
    assert resp.headers["Location"] == f"/v1/jobs/{resp.json()['job_id']}"
    job = wait_job(client, resp.json()["job_id"])
    assert job["status"] == "succeeded", job
    return job


def assert_problem(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM
    body = resp.json()
    assert body["status"] == status and body["code"] == code
    assert body["title"] and body["detail"] and body["type"]
    return body


def sse_events(lines: Iterable[str]) -> list[tuple[str | None, str]]:
    """(event, data) per Server-Sent Event, as a browser's EventSource would split them."""
    events: list[tuple[str | None, str]] = []
    event, data = None, []
    for line in lines:
        if not line:
            if data:
                events.append((event, "\n".join(data)))
            event, data = None, []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    return events


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, catalog_env: dict[str, str]) -> Iterator[Server]:
    """Every test of this server runs twice: on the embedded SQLite catalog and on PostgreSQL (llm tests: SQLite)."""
    with rag_server(tmp_path_factory.mktemp("api"), **catalog_env) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def handbook(client: httpx.Client) -> dict[str, Any]:
    """The four sample documents (English and Chinese) in KB 'handbook'."""
    ingest(client, "handbook", *[(p.name, p.read_bytes()) for p in sorted(SAMPLES.rglob("*.*"))])
    return client.get("/v1/kbs/handbook").json()


@pytest.fixture(scope="module")
def facts(client: httpx.Client) -> dict[str, Any]:
    ingest(client, "facts", ("travel.txt", TRAVEL), ("library.txt", LIBRARY))
    return client.get("/v1/kbs/facts").json()


# -- health, auth, docs ----------------------------------------------------------------------------
def test_healthz_is_open_and_reports_readiness(server: Server) -> None:
    resp = httpx.get(server.url + "/healthz")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"embedder": "ok", "llm": "ok", "catalog": "ok"}
    assert body["chat_queue"] == {"admitted": 0, "capacity": 9}


def test_every_v1_route_needs_the_key(server: Server) -> None:
    with server.client(key=None) as anonymous, server.client(key="wrong-key") as wrong:
        for c in (anonymous, wrong):
            body = assert_problem(c.get("/v1/kbs"), 401, "unauthorized")
            assert "Bearer" in body["detail"]
            assert c.get("/v1/kbs").headers["www-authenticate"].startswith("Bearer")
            assert_problem(c.post("/v1/kbs/x/search", json={"query": "q"}), 401, "unauthorized")
            assert_problem(c.post("/v1/chat/completions", json={}), 401, "unauthorized")
        assert anonymous.get("/docs").status_code == 200
    with server.client() as c:
        assert c.get("/v1/kbs").status_code == 200


def test_openapi_lists_every_route(server: Server) -> None:
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    expected = {
        "/healthz": {"get"}, "/v1/kbs": {"get", "post"}, "/v1/kbs/{kb}": {"get", "delete"},
        "/v1/kbs/{kb}/documents": {"get", "post"}, "/v1/kbs/{kb}/documents/{doc_id}": {"delete"},
        "/v1/jobs/{job_id}": {"get", "delete"}, "/v1/kbs/{kb}/search": {"post"}, "/v1/kbs/{kb}/chat": {"post"},
        "/v1/chat/completions": {"post"}, "/v1/sessions/{session_id}": {"get", "delete", "patch"},
        "/v1/sessions": {"get"}, "/v1/feedback": {"get", "post"}, "/v1/reports": {"get"},
        "/v1/reports/{report_id}/{fmt}": {"get"}, "/v1/kbs/{kb}/glossary": {"get", "post"},
        "/v1/kbs/{kb}/glossary/{entry_id}": {"delete"}, "/v1/kbs/{kb}/glossary/suggestions": {"get"},
        "/v1/models": {"get"}, "/v1/models/{model}": {"get"}, "/v1/embeddings": {"post"}, "/v1/me": {"get"},
        "/v1/users": {"get", "post"},
        "/v1/users/{name}": {"patch"}, "/v1/keys": {"get", "post"}, "/v1/keys/{key_id}": {"delete"},
        "/v1/kbs/{kb}/grants": {"get", "post"}, "/v1/kbs/{kb}/grants/{user}": {"delete"}, "/v1/audit": {"get"},
    }
    assert {p: set(ops) for p, ops in paths.items()} == expected
    for path, ops in paths.items():  # every answer has a declared shape (204s have none)
        for method, op in ops.items():
            ok = {code: r for code, r in op["responses"].items() if code.startswith("2") and code != "204"}
            assert ok or "204" in op["responses"], (method, path)
            for response in ok.values():
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if path not in ("/healthz", "/v1/reports/{report_id}/{fmt}"):
                    assert schema and schema != {}, (method, path, response)
    feedback = paths["/v1/feedback"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    assert feedback == {"$ref": "#/components/schemas/FeedbackCreated"}
    for method in ("get", "delete"):
        job = paths["/v1/jobs/{job_id}"][method]["responses"]["200"]["content"]["application/json"]["schema"]
        assert job == {"$ref": "#/components/schemas/JobOut"}
    search = paths["/v1/kbs/{kb}/search"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert search == {"$ref": "#/components/schemas/SearchOut"}
    upload_body = paths["/v1/kbs/{kb}/documents"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload_body


# -- knowledge bases -------------------------------------------------------------------------------
def test_kb_create_list_get_delete(server: Server, client: httpx.Client) -> None:
    resp = client.post("/v1/kbs", json={"name": "lifecycle", "chunk_size": 300, "chunk_overlap": 30})
    assert resp.status_code == 201, resp.text
    kb = resp.json()
    assert kb["name"] == "lifecycle" and kb["embedder"] == "e5" and kb["chunk_size"] == 300 and kb["id"]
    assert_problem(client.post("/v1/kbs", json={"name": "lifecycle"}), 409, "kb_exists")
    assert_problem(client.post("/v1/kbs", json={"name": "bad", "splitter": "nope"}), 400, "invalid_input")
    assert_problem(client.post("/v1/kbs", json={"name": "bad", "chunk_size": 50, "chunk_overlap": 80}),
                   400, "invalid_input")
    assert_problem(client.post("/v1/kbs", json={"name": "bad", "colour": "red"}), 422, "validation_error")
    assert "lifecycle" in [k["name"] for k in client.get("/v1/kbs").json()["kbs"]]
    by_name, by_id = client.get("/v1/kbs/lifecycle").json(), client.get(f"/v1/kbs/{kb['id']}").json()
    assert by_name == by_id and by_name["documents"] == 0

    ingest(client, "lifecycle", ("note.txt", LIGHTHOUSE))
    assert client.get("/v1/kbs/lifecycle").json()["chunks"] >= 1
    bm25_dir = server.data_dir / "bm25" / kb["id"]
    client.post("/v1/kbs/lifecycle/search", json={"query": "lighthouse"}).raise_for_status()
    assert bm25_dir.is_dir()

    assert client.delete("/v1/kbs/lifecycle").status_code == 204
    assert_problem(client.get("/v1/kbs/lifecycle"), 404, "kb_not_found")
    assert_problem(client.post(f"/v1/kbs/{kb['id']}/search", json={"query": "lighthouse"}), 404, "kb_not_found")
    assert not bm25_dir.exists()
    assert "lifecycle" not in [k["name"] for k in client.get("/v1/kbs").json()["kbs"]]


# -- documents and jobs ----------------------------------------------------------------------------
def test_good_file_succeeds_bad_file_fails_alone(client: httpx.Client) -> None:
    client.post("/v1/kbs", json={"name": "uploads"}).raise_for_status()
    resp = upload(client, "uploads", ("good.md", b"# Bees\n\nThe apiary holds twelve hives of Carniolan bees."))
    assert resp.status_code == 202 and resp.headers["location"] == f"/v1/jobs/{resp.json()['job_id']}"
    doc = resp.json()["documents"][0]
    assert doc["source"] == "good.md" and doc["status"] == "queued" and len(doc["sha256"]) == 64
    job = wait_job(client, resp.json()["job_id"])
    assert job["status"] == "succeeded" and job["progress"] == 1.0 and "error" not in job
    assert job["files"] == [{"status": "added", "doc_id": doc["id"], "source": "good.md", "chunks": 1}]

    # A PNG that calls itself text, and a readable file beside it in the same upload.
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    resp = upload(client, "uploads", ("photo.txt", png), ("other.txt", b"Hive inspections happen every Tuesday."))
    job = wait_job(client, resp.json()["job_id"])
    assert job["status"] == "failed"
    assert "photo.txt: not a readable PNG image (damaged or truncated data)" in job["error"]
    assert [f["status"] for f in job["files"]] == ["failed", "added"]

    docs = client.get("/v1/kbs/uploads/documents").json()["documents"]
    assert sorted(d["source"] for d in docs) == ["good.md", "other.txt"]
    assert all(set(d) >= {"id", "source", "sha256", "chunks", "status"} and d["status"] == "ready" for d in docs)


def test_a_lone_surrogate_in_json_is_replaced_and_the_upload_succeeds(client: httpx.Client) -> None:
    """``"\\ud83d"`` is valid JSON but no text encoding takes it: it used to fail the whole job with "internal error
    (TypeError)" and leave both files pending. It becomes U+FFFD (as a broken byte sequence would)."""
    client.post("/v1/kbs", json={"name": "surrogates"}).raise_for_status()
    resp = upload(client, "surrogates", ("cats.json", b'{"text": "cats \\ud83d alone in the garden shed"}'),
                  ("dogs.txt", b"Dogs sleep by the stove in winter."))
    job = wait_job(client, resp.json()["job_id"])
    assert job["status"] == "succeeded", job
    assert [(f["source"], f["status"]) for f in job["files"]] == [("cats.json", "added"), ("dogs.txt", "added")]
    hits = client.post("/v1/kbs/surrogates/search", json={"query": "cats garden shed"}).json()["hits"]
    assert "cats \ufffd alone" in hits[0]["text"]


def test_a_job_can_be_cancelled(client: httpx.Client) -> None:
    """DELETE /v1/jobs/{id}: the job is cancelled at once, its worker stops between two embedding batches (the next
    upload does not wait for the cancelled file, several minutes of embedding), and it keeps no bytes."""
    assert_problem(client.delete("/v1/jobs/nope"), 404, "job_not_found")
    client.post("/v1/kbs", json={"name": "cancelling"}).raise_for_status()
    big = "\n\n".join(f"Paragraph {i}: the ferry number {i} leaves pier {i % 7} at {i % 24}:15 every day of the week."
                      for i in range(5000)).encode()
    job_id = upload(client, "cancelling", ("big.txt", big), ("small.txt", LIGHTHOUSE)).json()["job_id"]
    cancelled = client.delete(f"/v1/jobs/{job_id}").raise_for_status().json()
    assert cancelled["status"] == "cancelled" and cancelled["error"] == "cancelled at the client's request"
    assert [f["status"] for f in cancelled["files"]] == ["cancelled", "cancelled"] and "finished" in cancelled
    assert client.get(f"/v1/jobs/{job_id}").json() == cancelled
    assert client.delete(f"/v1/jobs/{job_id}").json() == cancelled  # idempotent

    started = time.monotonic()
    after = ingest(client, "cancelling", ("after.txt", b"Owls hunt at night in the old orchard."))
    assert time.monotonic() - started < 60  # the worker was free within a second or two, not after the big file
    assert client.delete(f"/v1/jobs/{after['id']}").json() == after  # a finished job is answered as it ended
    assert [d["source"] for d in client.get("/v1/kbs/cancelling/documents").json()["documents"]] == ["after.txt"]


def test_deleting_a_kb_cancels_its_jobs(client: httpx.Client) -> None:
    client.post("/v1/kbs", json={"name": "doomed"}).raise_for_status()
    big = "\n\n".join(f"Line {i}: the tram number {i} stops at {i % 9} past the hour." for i in range(5000)).encode()
    job_id = upload(client, "doomed", ("big.txt", big)).json()["job_id"]
    assert client.delete("/v1/kbs/doomed").status_code == 204
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "cancelled" and job["error"] == "knowledge base 'doomed' was deleted", job
    ingest(client, "after-doomed", ("after.txt", b"Owls hunt at night in the old orchard."))  # the worker is free


@pytest.mark.parametrize("name", ["../../etc/x.txt", "..\\..\\etc\\x.txt", "/etc/x.txt"])
def test_upload_names_are_reduced_to_base_names(server: Server, client: httpx.Client, name: str) -> None:
    if client.get("/v1/kbs/names").status_code == 404:
        client.post("/v1/kbs", json={"name": "names"}).raise_for_status()
    # Each case is a different x.txt: replace=true, or the second would be a 409 (a name collision).
    resp = upload(client, "names", (name, f"Sanitised as {name!r}: the file keeps only its base name.".encode()),
                  replace=True)
    assert resp.status_code == 202, resp.text
    assert resp.json()["documents"][0]["source"] == "x.txt"
    job = wait_job(client, resp.json()["job_id"])
    assert job["status"] == "succeeded" and job["files"][0]["source"] == "x.txt"
    assert not (server.upload_dir / "etc").exists() and not (server.data_dir.parent / "etc").exists()
    assert {d["source"] for d in client.get("/v1/kbs/names/documents").json()["documents"]} == {"x.txt"}


def test_long_names_are_shortened_keeping_the_suffix(client: httpx.Client) -> None:
    client.post("/v1/kbs", json={"name": "long-names"})
    resp = upload(client, "long-names", ("长" * 150 + ".md", "# 标题\n\n很长的文件名。".encode()))
    source = resp.json()["documents"][0]["source"]
    assert source.endswith(".md") and source.startswith("长") and len(source.encode()) <= 200
    assert wait_job(client, resp.json()["job_id"])["status"] == "succeeded"


def test_upload_errors_are_problems(client: httpx.Client) -> None:
    assert_problem(upload(client, "no-such-kb", ("a.txt", b"text")), 404, "kb_not_found")
    client.post("/v1/kbs", json={"name": "upload-errors"})
    resp = client.post("/v1/kbs/upload-errors/documents", json={"file": "not multipart"})
    assert_problem(resp, 400, "invalid_input")
    resp = client.post("/v1/kbs/upload-errors/documents", files=[("attachment", ("a.txt", b"text"))])
    assert "'file'" in assert_problem(resp, 400, "invalid_input")["detail"]
    resp = upload(client, "upload-errors", ("a.txt", b"one"), ("a.txt", b"two"))
    assert "two files named" in assert_problem(resp, 400, "invalid_input")["detail"]
    assert client.get("/v1/kbs/upload-errors/documents").json() == {"documents": []}


def test_delete_document(client: httpx.Client) -> None:
    job = ingest(client, "deletions", ("keep.txt", b"Owls hunt at night in the old orchard."),
                 ("drop.txt", b"Zebra finches nest in the greenhouse rafters."))
    drop = next(f["doc_id"] for f in job["files"] if f["source"] == "drop.txt")
    assert client.delete(f"/v1/kbs/deletions/documents/{drop}").status_code == 204
    assert [d["source"] for d in client.get("/v1/kbs/deletions/documents").json()["documents"]] == ["keep.txt"]
    hits = client.post("/v1/kbs/deletions/search", json={"query": "zebra finches greenhouse"}).json()["hits"]
    assert all(h["doc_id"] != drop for h in hits)
    assert_problem(client.delete(f"/v1/kbs/deletions/documents/{drop}"), 404, "document_not_found")


def test_unknown_things_are_problem_404s(client: httpx.Client) -> None:
    assert_problem(client.get("/v1/kbs/nope"), 404, "kb_not_found")
    assert_problem(client.get("/v1/jobs/nope"), 404, "job_not_found")
    assert_problem(client.get("/v1/sessions/nope"), 404, "session_not_found")
    assert_problem(client.delete("/v1/sessions/nope"), 404, "session_not_found")
    assert_problem(client.get("/v1/nothing-here"), 404, "not_found")
    assert_problem(client.put("/v1/kbs"), 405, "method_not_allowed")


# -- search ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("flt", [{"source": "nope.txt"}, {"doc_id": "0000000000000000"}, {"doc_id": []},
                                 {"doc_id": ""}, {"source": "[[:foo:]]*"}, {"source": "a\\"}, {"source": "]*"}])
def test_a_filter_that_names_no_document_finds_nothing(client: httpx.Client, handbook: dict[str, Any],
                                                       flt: dict[str, Any]) -> None:
    """On both catalogs: 200 with no hits (PostgreSQL used to fail on `IN ()` and on its regex syntax)."""
    for mode in ("hybrid", "bm25", "vector"):
        resp = client.post("/v1/kbs/handbook/search", json={"query": "allowance", "filter": flt, "mode": mode})
        assert resp.status_code == 200, resp.text
        assert resp.json()["hits"] == []


@pytest.mark.parametrize("glob", ["[z-a]*", "x[", "[^]*", "[abc"])
def test_a_malformed_source_glob_is_a_400(client: httpx.Client, handbook: dict[str, Any], glob: str) -> None:
    resp = client.post("/v1/kbs/handbook/search", json={"query": "allowance", "filter": {"source": glob}})
    assert_problem(resp, 400, "invalid_input")
    assert "source glob" in resp.json()["detail"]


def test_search_english_and_chinese(client: httpx.Client, handbook: dict[str, Any]) -> None:
    en = client.post("/v1/kbs/handbook/search", json={"query": "daily meal allowance on business trips", "k": 3})
    hits = en.json()["hits"]
    assert en.status_code == 200 and 1 <= len(hits) <= 3
    # the `rag search --json` shape; "headings": the section's heading path (absent when the chunk has none)
    assert set(hits[0]) == {"chunk_id", "doc_id", "source", "text", "score", "headings"}
    assert "45 euros" in hits[0]["text"] and hits[0]["headings"][-1] == "Travel and expenses"

    zh = client.post("/v1/kbs/handbook/search", json={"query": "图书馆每人最多可以借几本书", "k": 3}).json()["hits"]
    assert "八本书" in zh[0]["text"] and zh[0]["source"] == "xinghe-library.md"

    explained = client.post("/v1/kbs/handbook/search", json={"query": "借阅", "mode": "bm25", "explain": True})
    body = explained.json()
    assert body["queries"] == ["借阅"] and body["hits"] and "bm25" in body["hits"][0]["explain"]
    # the declared response model keeps the shape: explain's keys only with explain, no key added as null
    assert set(body) == {"hits", "queries", "expansions", "fusion", "pseudo_feedback"}
    assert set(body["fusion"]) == {"method", "bm25_weight", "kb_language", "pseudo_feedback",
                                   "pseudo_feedback_weight", "pseudo_feedback_min_coherence"}
    # on by default for e5, but BM25 alone has no query vector to move: nothing considered, nothing moved
    assert body["pseudo_feedback"] == [] and body["fusion"]["pseudo_feedback"] == 5
    refined = client.post("/v1/kbs/handbook/search", json={"query": "借阅", "explain": True, "pseudo_feedback": 2})
    assert refined.status_code == 200 and refined.json()["fusion"]["pseudo_feedback"] == 2
    assert 0 < refined.json()["pseudo_feedback_coherence"] <= 1  # two results: their cosine
    assert_problem(client.post("/v1/kbs/handbook/search", json={"query": "借阅", "pseudo_feedback": 51}), 422,
                   "validation_error")
    assert set(body["hits"][0]["explain"]) >= {"bm25", "fused_score", "matched_terms"}

    only = client.post("/v1/kbs/handbook/search",
                       json={"query": "allowance", "filter": {"source": "*.txt"}, "fusion": "weighted"}).json()
    assert only["hits"] and all(h["source"].endswith(".txt") for h in only["hits"])
    assert_problem(client.post("/v1/kbs/handbook/search", json={"query": "x", "k": 0}), 422, "validation_error")
    assert_problem(client.post("/v1/kbs/handbook/search", json={"query": "x", "filter": {"a b": 1}}),
                   400, "invalid_input")


def test_kb_isolation(client: httpx.Client) -> None:
    a = ingest(client, "iso-a", ("secret.txt", b"Project Zorblax ships quantum marmalade to the moon colony."))
    b = ingest(client, "iso-b", ("tea.txt", b"The tea farm harvests its first flush in April."),
               ("bees.txt", b"Bees from the farm pollinate the marmalade oranges."))
    a_doc = a["files"][0]["doc_id"]
    b_docs = {f["doc_id"] for f in b["files"]}
    for mode in ("bm25", "vector", "hybrid"):
        hits = client.post("/v1/kbs/iso-b/search",
                           json={"query": "Zorblax quantum marmalade moon", "mode": mode, "k": 10}).json()["hits"]
        assert hits and {h["doc_id"] for h in hits} <= b_docs, mode
        assert all("Zorblax" not in h["text"] and h["doc_id"] != a_doc for h in hits)
    hits = client.post("/v1/kbs/iso-a/search", json={"query": "Zorblax", "k": 10}).json()["hits"]
    assert [h["doc_id"] for h in hits] == [a_doc]


# -- chat with the real LLM ------------------------------------------------------------------------
@pytest.mark.llm
def test_chat_json_and_its_session(client: httpx.Client, facts: dict[str, Any]) -> None:
    resp = client.post("/v1/kbs/facts/chat",
                       json={"question": "What is the daily meal allowance on business trips at Aurora Robotics?"})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert {"answer", "citations", "refused", "usage", "session_id", "related", "claims", "policy"} <= set(out)
    assert not out["refused"] and "45" in out["answer"] and out["citations"]
    assert any("45 euros" in c["text"] for c in out["citations"])
    assert out["usage"]["prompt_tokens"] > 0 and out["usage"]["completion_tokens"] > 0
    assert out["policy"] == "strict" and out["related"] == []
    assert out["claims"] and all(c["supported"] and c["citations"] for c in out["claims"])

    session = client.get(f"/v1/sessions/{out['session_id']}").json()
    assert session["kb_id"] == facts["id"]
    assert [(m["role"], m["content"]) for m in session["messages"]] == [
        ("user", "What is the daily meal allowance on business trips at Aurora Robotics?"),
        ("assistant", out["answer"])]
    client.post("/v1/kbs", json={"name": "not-the-session-kb"})
    assert_problem(client.post("/v1/kbs/not-the-session-kb/chat",
                               json={"question": "q", "session_id": out["session_id"]}), 400, "invalid_input")
    assert client.delete(f"/v1/sessions/{out['session_id']}").status_code == 204
    assert_problem(client.get(f"/v1/sessions/{out['session_id']}"), 404, "session_not_found")


@pytest.mark.llm
def test_an_answer_the_documents_do_not_state_is_a_refusal_with_related_passages(
        client: httpx.Client, facts: dict[str, Any]) -> None:
    out = client.post("/v1/kbs/facts/chat",
                      json={"question": "How much is the hotel allowance per night at Aurora Robotics?"}).json()
    assert out["refused"] is True and out["answer"] == "I cannot find the answer in the provided documents."
    assert out["citations"] == [] and out["claims"] == [] and not out["grounded"]
    assert 1 <= len(out["related"]) <= 3
    assert set(out["related"][0]) >= {"chunk_id", "doc_id", "source", "text", "score"}
    assert any("travel" in r["source"] for r in out["related"])


@pytest.mark.llm
def test_chat_streams_server_sent_events(client: httpx.Client, facts: dict[str, Any]) -> None:
    body = {"question": "星河社区图书馆每人最多可以同时借阅几本书？"}
    with client.stream("POST", "/v1/kbs/facts/chat", json=body, headers={"Accept": "text/event-stream"}) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = sse_events(resp.iter_lines())
    kinds = [e for e, _ in events]
    assert kinds[-1] == "done" and set(kinds[:-1]) == {"token"} and len(kinds) > 2
    streamed = "".join(json.loads(d)["text"] for e, d in events if e == "token")
    final = json.loads(events[-1][1])
    assert not final["refused"] and final["session_id"] and final["usage"]["completion_tokens"] > 0
    assert "八" in final["answer"] or "8" in final["answer"]
    assert "八" in streamed or "8" in streamed
    assert any("八本书" in c["text"] for c in final["citations"])
    assert final["claims"] and final["related"] == [] and final["policy"] == "strict"


@pytest.mark.llm
def test_openai_compatible_completion(client: httpx.Client, facts: dict[str, Any]) -> None:
    resp = client.post("/v1/chat/completions", json={
        "model": facts["id"], "temperature": 0,
        "messages": [{"role": "system", "content": "You are helpful."},
                     {"role": "user", "content": "Between which hours are taxi rides reimbursed at Aurora Robotics?"}]})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["object"] == "chat.completion" and out["id"].startswith("chatcmpl-")
    assert out["model"] == facts["id"] and isinstance(out["created"], int)
    (choice,) = out["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop" and choice["message"]["role"] == "assistant"
    assert "22:00" in choice["message"]["content"]
    usage = out["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert out["citations"] and out["refused"] is False
    assert out["related"] == [] and out["claims"] and all(c["supported"] for c in out["claims"])
    assert_problem(client.post("/v1/chat/completions", json={"model": "nope", "messages": [
        {"role": "user", "content": "hi"}]}), 404, "kb_not_found")
    assert_problem(client.post("/v1/chat/completions", json={"model": "facts", "messages": [
        {"role": "assistant", "content": "hi"}]}), 400, "invalid_input")


def test_feedback_sessions_reports_and_offline_docs_over_http(server: Server, client: httpx.Client,
                                                              facts: dict[str, Any]) -> None:
    body = {"kb": "facts", "question": "What is the meal allowance?", "answer": "It is 45 euros [1].",
            "rating": "up", "citations": [{"n": 1, "doc_id": "abc", "source": "travel.txt"}]}
    created = client.post("/v1/feedback", json=body)
    assert created.status_code == 201 and set(created.json()) == {"id"}
    listed = client.get("/v1/feedback", params={"kb": facts["id"]}).json()["feedback"]
    assert [(f["id"], f["kb"], f["rating"], f["comment"]) for f in listed] == [
        (created.json()["id"], "facts", "up", None)]
    assert listed[0]["citations"] == body["citations"] and listed[0]["created"]
    assert_problem(client.post("/v1/feedback", json={**body, "rating": "meh"}), 422, "validation_error")
    assert_problem(client.post("/v1/feedback", json={**body, "kb": "nope"}), 404, "kb_not_found")
    assert_problem(client.get("/v1/feedback", params={"kb": "nope"}), 404, "kb_not_found")
    assert client.get("/v1/sessions", params={"kb": "facts"}).status_code == 200
    assert_problem(client.patch("/v1/sessions/nope", json={"title": "x"}), 404, "session_not_found")

    reports = client.get("/v1/reports").json()["reports"]
    cmrc = next(r for r in reports if r["id"] == "docs/cmrc")
    assert set(cmrc["formats"]) == {"html", "md", "json"}
    page = client.get("/v1/reports/docs/cmrc/html")
    assert page.status_code == 200 and "Chunking matrix" in page.text
    assert_problem(client.get("/v1/reports/docs/../../etc/html"), 404, "not_found")
    with server.client(key=None) as anonymous:
        assert anonymous.get("/v1/reports").status_code == 401
        docs = anonymous.get("/docs")
        assert docs.status_code == 200 and "/static/swagger/swagger-ui-bundle.js" in docs.text
        assert "cdn" not in docs.text.lower()
        assert anonymous.get("/static/swagger/swagger-ui-bundle.js").status_code == 200
        console = anonymous.get("/")
        assert console.status_code == 200 and '<script type="module" src="/ui/js/app.js">' in console.text
        assert anonymous.get("/ui/js/chat.js").headers["content-type"].startswith(("text/javascript",
                                                                                   "application/javascript"))


def test_glossary_over_http(client: httpx.Client) -> None:
    faq = "💡 为什么RLHF之后模型话变多了?\n- 奖励模型偏爱详细的回答\n\n有监督微调(SFT)需要几千条数据。"
    ingest(client, "terms", ("faq.txt", faq.encode()))
    assert client.get("/v1/kbs/terms/glossary").json() == {"entries": []}
    suggested = client.get("/v1/kbs/terms/glossary/suggestions").json()["suggestions"]
    assert [s["terms"] for s in suggested] == [["SFT", "有监督微调"]] and suggested[0]["count"] == 1
    added = client.post("/v1/kbs/terms/glossary", json={"entries": ["RLHF = 人类反馈强化学习", ["SFT", "有监督微调"]]})
    assert added.status_code == 200, added.text
    entries = added.json()["entries"]
    assert sorted(e["terms"] for e in entries) == [["RLHF", "人类反馈强化学习"], ["SFT", "有监督微调"]]
    found = client.post("/v1/kbs/terms/search", json={"query": "人类反馈强化学习之后为什么啰嗦", "mode": "bm25",
                                                      "explain": True}).json()
    assert found["expansions"] == [{"matched": "人类反馈强化学习", "added": ["RLHF"]}]
    assert found["hits"][0]["headings"] == ["为什么RLHF之后模型话变多了?"] and "奖励模型" in found["hits"][0]["text"]
    assert_problem(client.post("/v1/kbs/terms/glossary", json={"entries": ["lonely"]}), 400, "invalid_input")
    assert client.delete(f"/v1/kbs/terms/glossary/{entries[0]['id']}").status_code == 204
    assert_problem(client.delete(f"/v1/kbs/terms/glossary/{entries[0]['id']}"), 404, "glossary_entry_not_found")
    assert len(client.get("/v1/kbs/terms/glossary").json()["entries"]) == 1
