"""What a user's API key costs a request, against the operator's key in the same run (issue 32).

A real ``rag serve`` (no LLM is needed: only ``GET /v1/me`` and ``GET /v1/kbs`` are timed) on a fresh data dir, with an
operator key (RAG_API_KEY) and a user made with ``rag users add`` / ``rag keys create``. Each request of a user's key
reads the key's row (revocation holds at the next request) and, once per process, verifies its argon2id hash; the
operator's key is compared in memory. Requests alternate between the two keys so both see the same machine load.

    .venv/bin/python bench/auth_bench.py [--requests 300] [--catalog-url postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
RAG = Path(sys.executable).with_name("rag")
OPERATOR_KEY = "bench-operator-key-0123456789"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="timed requests per key and route")
    parser.add_argument("--port", type=int, default=8771)
    parser.add_argument("--catalog-url", default=None, help="RAG_DATABASE_URL (default: embedded SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="auth-bench-") as tmp:
        env = {**os.environ, "RAG_DATA_DIR": str(Path(tmp) / "data"), "RAG_API_KEY": OPERATOR_KEY,
               "RAG_KEY_REQUESTS_PER_MINUTE": "0"}
        if args.catalog_url:
            env["RAG_DATABASE_URL"] = args.catalog_url
        subprocess.run([str(RAG), "users", "add", "bench", "--role", "reader"], env=env, check=True,
                       capture_output=True)
        made = json.loads(subprocess.run([str(RAG), "keys", "create", "--user", "bench", "--json"], env=env,
                                         check=True, capture_output=True, text=True).stdout)
        log = (Path(tmp) / "serve.log").open("wb")
        server = subprocess.Popen([str(RAG), "serve", "--port", str(args.port)], env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{args.port}"
        try:
            clients = {name: httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
                       for name, key in (("operator", OPERATOR_KEY), ("user", made["key"]))}
            deadline = time.monotonic() + 300
            while True:  # until the models are loaded too: their loading would share the cores with the timing
                try:
                    if httpx.get(f"{base}/healthz", timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("rag serve did not start")
                time.sleep(0.3)
            t0 = time.perf_counter()
            first = clients["user"].get("/v1/me")
            first_ms = (time.perf_counter() - t0) * 1000
            assert first.json()["user"] == "bench", first.text
            results: dict[str, dict[str, float]] = {}
            for route in ("/v1/me", "/v1/kbs"):
                times: dict[str, list[float]] = {"operator": [], "user": []}
                for _ in range(args.requests):
                    for name, client in clients.items():
                        t0 = time.perf_counter()
                        client.get(route).raise_for_status()
                        times[name].append((time.perf_counter() - t0) * 1000)
                results[route] = {name: statistics.median(values) for name, values in times.items()}
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"catalog: {'postgresql' if args.catalog_url else 'sqlite'}; {args.requests} requests per key and route")
    print(f"a user key's first request in this process (argon2id verify included): {first_ms:.1f} ms")
    print("| route | operator key p50 ms | user key p50 ms | ratio |")
    print("|---|---:|---:|---:|")
    for route, p50 in results.items():
        print(f"| GET {route} | {p50['operator']:.2f} | {p50['user']:.2f} | {p50['user'] / p50['operator']:.2f}x |")


if __name__ == "__main__":
    main()
