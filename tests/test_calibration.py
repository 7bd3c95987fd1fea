"""Fits of the answer checks per generator: who the generator is, where its fit is found, and `rag calibrate`
writing one that the next answer uses (the real 0.5B model on a tiny labelled set)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from rag_service.answering.calibration import (
    calibration_for,
    calibration_status,
    default_fit,
    fit_path,
    load_fit,
    model_identity,
    save_fit,
)
from rag_service.answering.generation import Answerer
from rag_service.answering.verification import DEFAULT_TRUST, NO_FIT_WARNING, TrustModel
from rag_service.errors import ConfigError
from rag_service.ingestion.pipeline import Ingestor
from rag_service.models.registry import BUNDLED_LLMS
from rag_service.settings import Settings
from rag_service.workspace import Workspace
from tests.conftest import SAMPLES, rag_json, run_rag

FIT = TrustModel(-1.0, {"gate": 2.0, "quote": 1.0}, 0.4, quote_min_evidence=0.8, extract_min_evidence=0.9)


def test_a_generator_is_known_by_what_it_is(tmp_path: Path) -> None:
    bundled = model_identity(Settings(data_dir=tmp_path, llm="qwen2.5-coder-0.5b"))
    assert bundled.key == "gguf-" + BUNDLED_LLMS["qwen2.5-coder-0.5b"].sha256[:16]
    own = tmp_path / "mine.gguf"
    own.write_bytes(b"not really a model")
    assert model_identity(Settings(data_dir=tmp_path, llm=str(own))).key == \
        "gguf-" + hashlib.sha256(b"not really a model").hexdigest()[:16]
    a = model_identity(Settings(data_dir=tmp_path, llm_base_url="http://a:8080/v1", llm_model="m"))
    b = model_identity(Settings(data_dir=tmp_path, llm_base_url="http://b:8080/v1/", llm_model="m"))
    assert a.key.startswith("server-") and a.key != b.key and "http://a:8080/v1" in a.label


def test_the_generator_s_own_fit_comes_first_then_the_shipped_one_then_none(tmp_path: Path) -> None:
    bundled = Settings(data_dir=tmp_path, llm="qwen2.5-coder-1.5b")
    assert calibration_for(bundled).fitted and calibration_for(bundled).label.startswith("shipped fit")
    path = save_fit(bundled, model_identity(bundled), {"en": FIT}, {"sets": {}})
    own = calibration_for(bundled)
    assert path == fit_path(bundled, model_identity(bundled)) and str(path) in own.label
    assert own.model("en") == FIT  # a language the fit lacks: the generic default's, else the gate alone
    assert own.model("zh") == default_fit().model("zh") and own.model("xx") == DEFAULT_TRUST
    server = Settings(data_dir=tmp_path, llm_base_url="http://127.0.0.1:9/v1")
    assert not calibration_for(server).fitted
    assert calibration_status(server)["warning"] == NO_FIT_WARNING
    named = Settings(data_dir=tmp_path, llm_base_url="http://127.0.0.1:9/v1", llm="qwen2.5-coder-1.5b")
    assert calibration_for(named).label.startswith("shipped fit of qwen2.5-coder-1.5b")  # as documented


def test_a_broken_fit_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "fit.json"
    bad.write_text('{"languages": {"en": {"intercept": 0, "weights": {"colour": 1}, "threshold": 0.5}}}')
    with pytest.raises(ConfigError, match="unknown trust features"):
        load_fit(bad, "fit")


def test_rag_config_warns_when_the_generator_has_no_fit(tmp_path: Path) -> None:
    proc = run_rag("config", data_dir=tmp_path, env={"RAG_LLM_BASE_URL": "http://127.0.0.1:9/v1"})
    assert "Answer checks: generator model 'default' at http://127.0.0.1:9/v1" in proc.stdout
    assert NO_FIT_WARNING in proc.stderr
    assert "warning" not in run_rag("config", data_dir=tmp_path).stderr  # the bundled default has its fit


@pytest.mark.llm
def test_rag_calibrate_writes_a_fit_that_the_next_answer_uses(tmp_path: Path) -> None:
    questions = tmp_path / "tiny.jsonl"
    rows = [("What is the daily meal allowance on business trips?", ["45 euros"]),
            ("星河社区图书馆每人最多可以同时借阅几本书？", ["八本"]),
            ("How many teas are tasted at the end of a tour?", ["five"]),
            ("What is the Wi-Fi password of the Lighthouse lab?", []),
            ("星河社区图书馆的馆长叫什么名字？", []),
            ("How much does a parking permit at Aurora Robotics cost?", [])]
    questions.write_text("".join(json.dumps({"question": q, "answers": a}, ensure_ascii=False) + "\n"
                                 for q, a in rows), encoding="utf-8")
    env = {"RAG_LLM": "qwen2.5-coder-0.5b", "RAG_EVAL_CACHE": str(tmp_path / "cache")}
    data = tmp_path / "data"
    out = rag_json("calibrate", "--dataset", str(questions), "--docs", str(SAMPLES), "--quiet", data_dir=data,
                   env=env)
    key = "gguf-" + BUNDLED_LLMS["qwen2.5-coder-0.5b"].sha256[:16]
    path = data / "calibration" / f"{key}.json"
    assert out["key"] == key and Path(out["path"]) == path and path.is_file()
    assert set(json.loads(path.read_text())["languages"]) <= {"en", "zh"}
    # The next answer, in this process (`rag ask` would pay another start of torch, e5 and the model).
    ws = Workspace(Settings(data_dir=data, llm="qwen2.5-coder-0.5b"))
    try:
        ingestor, _ = Ingestor.open(ws, "samples")
        assert all(r.status == "added" for r in ingestor.run([SAMPLES]))
        answer = Answerer(ws, ws.catalog.get_kb("samples")).ask("What is the daily meal allowance on business trips?")
    finally:
        ws.close()
    assert answer.trace["verification"]["calibration"].startswith(f"fit {path}"), answer.trace["verification"]
    assert "warnings" not in answer.trace
