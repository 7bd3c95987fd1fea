"""Shared fixtures. Everything is real: the bundled models, embedded Chroma, the CLI as a process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
RAG = Path(sys.executable).with_name("rag")

os.environ["HF_HUB_OFFLINE"] = "1"
# The assembled GGUF is large: share one cache between test runs and the demo.
os.environ.setdefault("RAG_MODEL_CACHE_DIR", str(ROOT / "data" / "models"))
for var in ("RAG_EMBEDDER", "RAG_DATA_DIR", "RAG_CONFIG_FILE", "RAG_LLM_MODEL_PATH", "RAG_CHROMA_URL"):
    os.environ.pop(var, None)


def run_rag(*args: str, data_dir: Path, env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "RAG_DATA_DIR": str(data_dir), **(env or {})}
    proc = subprocess.run([str(RAG), *args], capture_output=True, text=True, env=full_env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"rag {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def rag_json(*args: str, data_dir: Path, **kw: object) -> dict:
    return json.loads(run_rag(*args, "--json", data_dir=data_dir, **kw).stdout)


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A data dir with the sample documents ingested into KB 'samples' through the real CLI."""
    data_dir = tmp_path_factory.mktemp("samples-data")
    run_rag("ingest", "--kb", "samples", str(SAMPLES), data_dir=data_dir)
    yield data_dir
    shutil.rmtree(data_dir, ignore_errors=True)
