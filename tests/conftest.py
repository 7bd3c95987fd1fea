"""Shared fixtures and the test tiers. Everything is real (the bundled models, embedded Chroma, the CLI as a process)
except the scripted generator of the fast tier (tests/fakes.py).

Tiers (Makefile): ``make check`` runs ``-m "not llm and not postgres and not slow"``, ``make test`` runs everything.
``llm`` and ``slow`` are set by hand; ``postgres`` is set here on every test that needs the PostgreSQL server, however
it asks for it (``pytest_collection_modifyitems``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
RAG = Path(sys.executable).with_name("rag")

os.environ["HF_HUB_OFFLINE"] = "1"
# The assembled GGUF is large: share one cache between test runs and the demo.
os.environ.setdefault("RAG_MODEL_CACHE_DIR", str(ROOT / "data" / "models"))
for var in ("RAG_EMBEDDER", "RAG_DATA_DIR", "RAG_CONFIG_FILE", "RAG_LLM_MODEL_PATH", "RAG_CHROMA_URL",
            "RAG_DATABASE_URL"):
    os.environ.pop(var, None)


def run_rag(*args: str, data_dir: Path, env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "RAG_DATA_DIR": str(data_dir), **(env or {})}
    proc = subprocess.run([str(RAG), *args], capture_output=True, text=True, env=full_env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"rag {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def rag_json(*args: str, data_dir: Path, **kw: Any) -> dict:
    return json.loads(run_rag(*args, "--json", data_dir=data_dir, **kw).stdout)


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A data dir with the sample documents ingested into KB 'samples' through the real CLI."""
    data_dir = tmp_path_factory.mktemp("samples-data")
    run_rag("ingest", "--kb", "samples", str(SAMPLES), data_dir=data_dir)
    yield data_dir
    shutil.rmtree(data_dir, ignore_errors=True)


# --- PostgreSQL: one throwaway server per session, a fresh database per test (see tests/postgres.py) ---
from tests.postgres import PostgresServer, PostgresUnavailable, database_name, start_postgres  # noqa: E402


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A brand-new cluster on a private Unix socket for the whole session; skips (saying what to install) when the
    machine has no PostgreSQL server binaries."""
    try:
        server = start_postgres(tmp_path_factory.mktemp("postgres"))
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL tests need a server: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of an empty database of this test's own (named after it), dropped afterwards to keep /tmp small."""
    name = database_name(request.node.name)
    url = postgres_server.new_database(name)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def catalog_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The RAG_* settings that select a catalog backend: a module (or test) using this runs once on embedded SQLite
    and once on PostgreSQL (a database of its own)."""
    if request.param == "sqlite":
        yield {}
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = database_name(request.module.__name__.rsplit(".", 1)[-1])
    yield {"RAG_DATABASE_URL": server.new_database(name)}
    server.drop_database(name)


@pytest.fixture
def on_each_catalog(catalog_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """``catalog_env`` in this process's environment, so the CLI processes and in-process Settings see it."""
    monkeypatch.delenv("RAG_DATABASE_URL", raising=False)
    for key, value in catalog_env.items():
        monkeypatch.setenv(key, value)
    return catalog_env


@pytest.hookimpl(tryfirst=True)  # before -m selects on the markers set here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks ``postgres`` every test that uses the PostgreSQL server: through its fixtures, or as the 'postgresql'
    run of a parametrised catalog (``catalog_env``, a backend fixture), which asks for the server at run time. A test
    marked ``llm`` is not run on PostgreSQL: what it tests is the model's answer, not the catalog (sessions on each
    catalog are tested without the model), and every run of the model costs seconds."""
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and "postgresql" in callspec.params.values()
        if on_postgres and item.get_closest_marker("llm") is not None:
            dropped.append(item)
            continue
        if on_postgres or "postgres_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
