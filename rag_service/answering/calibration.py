"""Which generator answers, and the fit of the answer checks that belongs to it.

The trust model (``verification.TrustModel``) reads the generator's own yes/no probabilities, so a fit holds for one
generator only. A generator is identified by what it is, not by what it is called: a GGUF file by its sha256, a
server by its URL and model name (``ModelIdentity``). ``rag calibrate`` fits the checks for the configured generator
and stores the fit under ``<data_dir>/calibration/<key>.json``; the bundled models' fits ship in
``calibrations/`` in the same format. ``calibration_for`` finds the fit for the current settings, in that
order; a generator with neither is judged by the conservative generic fit (``DEFAULT_FIT``) and every answer's
trace, ``rag config`` and ``/healthz`` say so.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rag_service.answering.verification import NO_FIT_WARNING, UNCALIBRATED, Calibration, TrustModel
from rag_service.errors import ConfigError
from rag_service.models.registry import BUNDLED_LLMS, resolve_generator
from rag_service.settings import Settings

SHIPPED_DIR = Path(__file__).with_name("calibrations")
_HASH_BLOCK = 8 << 20


@dataclass(frozen=True, slots=True)
class ModelIdentity:
    """``key`` names the generator's fit file (``gguf-<sha256 prefix>`` or ``server-<hash of URL and model>``);
    ``label`` is for people."""

    key: str
    label: str


def model_identity(settings: Settings) -> ModelIdentity:
    """The configured generator: an OpenAI-compatible server by URL and model name, a bundled model by its published
    sha256, any other GGUF by the sha256 of its bytes (hashed once, remembered by path, size and mtime)."""
    generator = resolve_generator(settings)
    if generator.base_url is not None:
        digest = hashlib.sha256(f"{generator.base_url}\n{generator.model}".encode()).hexdigest()
        return ModelIdentity(f"server-{digest[:16]}", f"model '{generator.model}' at {generator.base_url}")
    if generator.bundled is not None:
        model = BUNDLED_LLMS[generator.bundled]
        return ModelIdentity(f"gguf-{model.sha256[:16]}", f"{model.filename} (bundled {generator.bundled})")
    path = generator.gguf(settings.models_dir)
    return ModelIdentity(f"gguf-{_file_sha256(path, settings.data_dir / 'calibration')[:16]}", path.name)


def _file_sha256(path: Path, cache_dir: Path) -> str:
    stat = path.stat()
    seen = cache_dir / "hashes.json"
    stamp = f"{path.resolve()} {stat.st_size} {stat.st_mtime_ns}"
    known: dict[str, str] = {}
    if seen.is_file():
        try:
            known = json.loads(seen.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = {}
    if stamp in known:
        return known[stamp]
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    known[stamp] = digest.hexdigest()
    _write_json(seen, known)
    return known[stamp]


def _write_json(path: Path, data: Any) -> None:
    """Whole or not at all: a fit half written by a killed process must not be read as a fit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def fit_path(settings: Settings, identity: ModelIdentity) -> Path:
    return settings.data_dir / "calibration" / f"{identity.key}.json"


def write_fit(path: Path, identity: ModelIdentity, models: dict[str, TrustModel], report: dict[str, Any]) -> None:
    """A fit file: the generator it belongs to, when it was made, a trust model per language, how it scored."""
    _write_json(path, {"generator": {"key": identity.key, "label": identity.label},
                       "created": datetime.now(UTC).isoformat(timespec="seconds"),
                       "languages": {lang: m.to_json() for lang, m in sorted(models.items())}, "report": report})
    _cached.cache_clear()


def save_fit(settings: Settings, identity: ModelIdentity, models: dict[str, TrustModel],
             report: dict[str, Any]) -> Path:
    """Stores a fit for ``identity`` where ``calibration_for`` finds it first."""
    path = fit_path(settings, identity)
    write_fit(path, identity, models, report)
    return path


def load_fit(path: Path, label: str) -> Calibration:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        models = {lang: TrustModel.from_json(m) for lang, m in data["languages"].items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"calibration file {path} is unreadable ({exc}); run rag calibrate again") from exc
    return Calibration(f"{label} ({data.get('created', 'undated')})", models)


# The fit for a generator nobody fitted: `rag eval calibrate --generic` on the bundled models' runs (eval/README.md
# "Calibrating the checks"), also used for a language a generator's own fit lacks.
DEFAULT_FIT = SHIPPED_DIR / "default.json"


@functools.lru_cache(maxsize=1)
def default_fit() -> Calibration:
    if not DEFAULT_FIT.is_file():
        return UNCALIBRATED
    fit = load_fit(DEFAULT_FIT, "the generic default fit")
    return Calibration(f"none for this generator: {fit.label} (run rag calibrate)", fit.models, fitted=False)


@functools.lru_cache(maxsize=8)
def _cached(data_dir: Path, key: str, shipped_for: str | None) -> Calibration:
    own = data_dir / "calibration" / f"{key}.json"
    found = None
    if own.is_file():
        found = load_fit(own, f"fit {own}")
    elif (SHIPPED_DIR / f"{key}.json").is_file():
        found = load_fit(SHIPPED_DIR / f"{key}.json", f"shipped fit {key}.json")
    elif shipped_for is not None:  # a server said to run a bundled model (RAG_LLM names it): that model's fit
        bundled = SHIPPED_DIR / f"gguf-{BUNDLED_LLMS[shipped_for].sha256[:16]}.json"
        if bundled.is_file():
            found = load_fit(bundled, f"shipped fit of {shipped_for}, for the server")
    if found is None:
        return default_fit()
    return replace(found, fallback=default_fit().models)


def calibration_for(settings: Settings) -> Calibration:
    """The fit for the configured generator: its own (``rag calibrate``), else the shipped one of a bundled model,
    else, for a server whose ``RAG_LLM`` explicitly names the bundled model it runs, that model's; else none."""
    identity = model_identity(settings)
    named = settings.llm_base_url and "llm" in settings.model_fields_set and settings.llm in BUNDLED_LLMS
    return _cached(settings.data_dir.resolve(), identity.key, settings.llm if named else None)



def calibration_status(settings: Settings) -> dict[str, Any]:
    """For ``rag config``, ``/healthz`` and traces: the generator, the fit judging its answers, and a warning when
    there is none."""
    identity = model_identity(settings)
    fit = calibration_for(settings)
    status: dict[str, Any] = {"generator": identity.label, "key": identity.key, "fit": fit.label,
                              "fitted": fit.fitted}
    if not fit.fitted:
        status["warning"] = NO_FIT_WARNING
    return status
