"""Answers from the real bundled LLM. Few, short calls: the model is slow on 2 cores."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_service.answering.generation import Answerer
from rag_service.settings import Settings
from rag_service.workspace import Workspace
from tests.conftest import rag_json

pytestmark = pytest.mark.llm


def test_ask_json_contract_and_cited_fact(sample_dir: Path) -> None:
    out = rag_json("ask", "--kb", "samples",
                   "What is the daily meal allowance on business trips at Aurora Robotics?", data_dir=sample_dir)
    assert {"answer", "citations", "refused", "usage"} <= set(out)
    assert out["refused"] is False
    assert "45" in out["answer"]
    assert out["citations"], out["answer"]
    for c in out["citations"]:
        assert set(c) >= {"n", "chunk_id", "doc_id", "source", "text"}
        assert f"[{c['n']}]" in out["answer"]
    assert any("45 euros" in c["text"] for c in out["citations"])
    assert out["usage"]["prompt_tokens"] > 0 and out["usage"]["completion_tokens"] > 0


def test_ask_chinese_cites_the_fact(sample_dir: Path) -> None:
    ws = Workspace(Settings(data_dir=sample_dir))
    answer = Answerer(ws, ws.catalog.get_kb("samples")).ask("星河社区图书馆每人最多可以同时借阅几本书？")
    assert not answer.refused
    assert "八" in answer.answer or "8" in answer.answer
    assert any("八本书" in c.chunk.text for c in answer.citations), answer.answer
    assert answer.trace["language"] == "zh"
    assert answer.usage.prompt_tokens <= ws.settings.context_max_tokens + 400
