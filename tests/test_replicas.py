"""Several hosts' worth of processes on one PostgreSQL and one Chroma server: two API replicas (no in-process
worker) and a separate `rag worker`. Uploads, jobs, sessions and searches cross replicas; a worker killed with
SIGKILL mid-job is replaced and the job completes once; every process restarts and nothing is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import httpx
import pytest

from rag_service.settings import Settings
from rag_service.workspace import Workspace
from tests.conftest import RAG
from tests.postgres import PostgresServer, database_name
from tests.test_api import KEY, LIBRARY, TRAVEL, free_port, upload, wait_http, wait_job
from tests.test_api_deploy import CHROMA

pytestmark = pytest.mark.postgres

N_REPORTS = 8
SENTENCE = ("Paragraph {j} of site report {i} records the inspection of turbine {i}, its gearbox, the blade "
            "bearings and the tower bolts, with the torque values the crew measured. ")


class Cluster:
    """The processes, each restartable; every one gets the same database and Chroma server, and its own data dir."""

    def __init__(self, root: Path, database_url: str) -> None:
        self.root = root
        self.database_url = database_url
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.urls: dict[str, str] = {}
        self.chroma_port = free_port()
        self.env = {**os.environ, "RAG_DATABASE_URL": database_url,
                    "RAG_CHROMA_URL": f"http://127.0.0.1:{self.chroma_port}", "RAG_API_KEY": KEY,
                    "RAG_JOB_LEASE_S": "4", "RAG_JOB_POLL_S": "0.2"}

    def _spawn(self, name: str, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        log = self.root / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                    env={**self.env, "RAG_DATA_DIR": str(self.root / name), **env})
        self.procs[name] = proc
        return proc

    def start_chroma(self) -> None:
        proc = self._spawn("chroma", [str(CHROMA), "run", "--path", str(self.root / "chroma-data"), "--host",
                                      "127.0.0.1", "--port", str(self.chroma_port)])
        wait_http(f"http://127.0.0.1:{self.chroma_port}/api/v2/heartbeat", proc, self.root / "chroma.log", 60)

    def start_api(self, name: str) -> None:
        port = free_port()
        proc = self._spawn(name, [str(RAG), "serve", "--host", "127.0.0.1", "--port", str(port)],
                           RAG_SERVE_WORKERS="0")
        self.urls[name] = f"http://127.0.0.1:{port}"
        wait_http(self.urls[name] + "/healthz", proc, self.root / f"{name}.log")

    def start_worker(self, name: str = "worker") -> None:
        self._spawn(name, [str(RAG), "worker"])

    def client(self, name: str) -> httpx.Client:
        return httpx.Client(base_url=self.urls[name], headers={"Authorization": f"Bearer {KEY}"}, timeout=180)

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for name in [n for n in self.procs if n != "chroma"] + (["chroma"] if "chroma" in self.procs else []):
            self.stop(name)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")[-3000:]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer) -> Iterator[Cluster]:
    name = database_name("replicas")
    c = Cluster(tmp_path_factory.mktemp("replicas"), postgres_server.new_database(name))
    try:
        c.start_chroma()
        c.start_api("a")
        c.start_api("b")
        c.start_worker()
        yield c
    finally:
        c.stop_all()
        postgres_server.drop_database(name)


def _search(client: httpx.Client, kb: str, query: str, mode: str = "hybrid", k: int = 5) -> list[dict[str, Any]]:
    resp = client.post(f"/v1/kbs/{kb}/search", json={"query": query, "mode": mode, "k": k})
    assert resp.status_code == 200, resp.text
    hits: list[dict[str, Any]] = resp.json()["hits"]
    return hits


def test_upload_on_one_replica_poll_and_search_on_the_other(cluster: Cluster) -> None:
    with cluster.client("a") as a, cluster.client("b") as b:
        assert a.post("/v1/kbs", json={"name": "shared"}).status_code == 201
        resp = upload(a, "shared", ("travel.txt", TRAVEL), ("library.txt", LIBRARY))
        assert resp.status_code == 202, resp.text
        job = wait_job(b, resp.json()["job_id"])  # replica B never saw the upload
        assert job["status"] == "succeeded" and job["attempts"] == 1, job
        assert [f["status"] for f in job["files"]] == ["added", "added"]
        for mode in ("bm25", "vector", "hybrid"):
            assert _search(b, "shared", "每位读者可以借几本书", mode)[0]["source"] == "library.txt"
        assert _search(b, "shared", "meal allowance", "bm25")[0]["source"] == "travel.txt"
        assert [d["source"] for d in b.get("/v1/kbs/shared/documents").json()["documents"]] == \
            [d["source"] for d in a.get("/v1/kbs/shared/documents").json()["documents"]]


@pytest.mark.llm
def test_a_chat_session_continues_on_the_other_replica(cluster: Cluster) -> None:
    with cluster.client("a") as a, cluster.client("b") as b:
        if b.get("/v1/kbs/shared").status_code == 404:
            pytest.skip("needs the KB of the test before")
        first = a.post("/v1/kbs/shared/chat", json={"question": "What is the daily meal allowance?"})
        assert first.status_code == 200, first.text
        session = first.json()["session_id"]
        second = b.post("/v1/kbs/shared/chat", json={"question": "And for taxis?", "session_id": session})
        assert second.status_code == 200, second.text
        assert second.json()["session_id"] == session
        messages = a.get(f"/v1/sessions/{session}").json()["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
        assert [m["content"] for m in messages[::2]] == ["What is the daily meal allowance?", "And for taxis?"]


def _reports() -> list[tuple[str, bytes]]:
    return [(f"site-report-{i:02d}.txt",
             (f"Marker turbine{i}zq.\n\n" + "".join(SENTENCE.format(i=i, j=j) for j in range(30))).encode())
            for i in range(N_REPORTS)]


def test_a_worker_killed_mid_job_is_replaced_and_the_job_completes_once(cluster: Cluster) -> None:
    with cluster.client("a") as a, cluster.client("b") as b:
        assert a.post("/v1/kbs", json={"name": "turbines", "chunk_size": 300, "chunk_overlap": 0}).status_code == 201
        job_id = upload(a, "turbines", *_reports()).json()["job_id"]
        deadline = time.monotonic() + 300
        while (job := b.get(f"/v1/jobs/{job_id}").json())["progress"] == 0:
            assert time.monotonic() < deadline and job["status"] in ("queued", "running"), job
            time.sleep(0.05)
        assert job["status"] == "running" and job["progress"] < 1, "the job finished before the kill: more files"
        cluster.kill("worker")
        done_before = sum(f["status"] != "pending" for f in job["files"])
        cluster.start_worker("worker-2")
        job = wait_job(b, job_id, timeout=300)
        assert job["status"] == "succeeded", (job, cluster.log("worker-2"))
        assert job["attempts"] == 2  # the second worker took over after the first one's lease ran out
        assert len(job["files"]) == N_REPORTS and all(f["status"] in ("added", "unchanged") for f in job["files"])
        assert sum(f["status"] == "added" for f in job["files"]) >= done_before

        # Exactly once: one document per file; catalog = Chroma = BM25.
        docs = b.get("/v1/kbs/turbines/documents").json()["documents"]
        assert sorted(d["source"] for d in docs) == [name for name, _ in _reports()]
        assert all(d["status"] == "ready" for d in docs)
        kb = b.get("/v1/kbs/turbines").json()
        chroma = chromadb.HttpClient(host="127.0.0.1", port=cluster.chroma_port)
        assert chroma.get_collection(f"kb_{kb['id']}").count() == sum(d["chunks"] for d in docs)
        ws = Workspace(Settings(data_dir=cluster.root / "check", database_url=cluster.database_url,
                                chroma_url=cluster.env["RAG_CHROMA_URL"]))
        try:
            for d in docs:
                assert len(ws.catalog.chunk_ids(kb["id"], d["id"])) == d["chunks"]
        finally:
            ws.close()
        for i in range(N_REPORTS):
            hits = _search(b, "turbines", f"turbine{i}zq", "bm25", k=50)
            assert {h["source"] for h in hits if f"turbine{i}zq" in h["text"]} == {f"site-report-{i:02d}.txt"}
            assert len([h for h in hits if f"turbine{i}zq" in h["text"]]) == 1


def test_restarting_every_process_keeps_jobs_sessions_and_queued_uploads(cluster: Cluster) -> None:
    with cluster.client("a") as a:
        kb = "restart"
        assert a.post("/v1/kbs", json={"name": kb}).status_code == 201
        done = wait_job(a, upload(a, kb, ("travel.txt", TRAVEL)).json()["job_id"])
    for name in [n for n in list(cluster.procs) if n.startswith("worker")]:
        cluster.stop(name)
    with cluster.client("a") as a:  # no worker now: this upload waits in the database
        queued = upload(a, kb, ("library.txt", LIBRARY)).json()["job_id"]
        assert a.get(f"/v1/jobs/{queued}").json()["status"] == "queued"
        if a.get("/v1/kbs/shared").status_code == 404:
            pytest.skip("needs the KB of the tests before")
        if not a.get("/v1/sessions?kb=shared").json()["sessions"]:  # the chat test (llm) did not run: one by hand
            ws = Workspace(Settings(data_dir=cluster.root / "by-hand", database_url=cluster.database_url))
            try:
                session_id = ws.sessions.open(a.get("/v1/kbs/shared").json()["id"], None)
                ws.sessions.append(session_id, "user", "What is the daily meal allowance?")
                ws.sessions.append(session_id, "assistant", "It is 45 euros [1].")
            finally:
                ws.close()
        sessions = a.get("/v1/sessions?kb=shared").json()["sessions"]
        assert sessions, "the chat test before (or the session by hand) left a session"
    cluster.stop("a")
    cluster.stop("b")
    cluster.start_api("a")
    cluster.start_api("b")
    with cluster.client("b") as b:
        assert b.get(f"/v1/jobs/{done['id']}").json()["status"] == "succeeded"
        assert b.get(f"/v1/jobs/{queued}").json()["status"] == "queued"
        assert b.get("/v1/sessions?kb=shared").json()["sessions"] == sessions
        cluster.start_worker("worker-3")
        assert wait_job(b, queued)["status"] == "succeeded"
        assert _search(b, kb, "每位读者可以借几本书", "bm25")[0]["source"] == "library.txt"
