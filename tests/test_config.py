"""One configuration story: every setting (server ones included) in one typed tree of sections, printed by
`rag config`, settable from rag.toml (flat or under its section), overridden by RAG_* variables."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from rag_service.errors import ConfigError
from rag_service.settings import SECTIONS, Settings, load_settings
from tests.conftest import run_rag
from tests.test_api import rag_server


def test_every_setting_is_declared_in_exactly_one_section() -> None:
    declared = [name for model in SECTIONS.values() for name in model.model_fields]
    assert len(declared) == len(set(declared))
    assert set(declared) == set(Settings.model_fields)
    assert {"chat_concurrency", "api_key", "max_request_kb", "trusted_hosts"} <= set(SECTIONS["server"].model_fields)


def test_rag_toml_sets_a_setting_flat_or_under_its_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "rag.toml"
    monkeypatch.setenv("RAG_CONFIG_FILE", str(config))
    config.write_text("[server]\nchat_concurrency = 2\n\n[retrieval]\nsearch_k = 7\n")
    settings = load_settings()
    assert (settings.chat_concurrency, settings.search_k) == (2, 7)
    config.write_text("chat_concurrency = 3\n")
    assert load_settings().chat_concurrency == 3
    monkeypatch.setenv("RAG_CHAT_CONCURRENCY", "4")  # the environment wins over the file
    assert load_settings().chat_concurrency == 4


@pytest.mark.parametrize(("text", "message"), [
    ("[server]\nsearch_k = 7\n", "'search_k' belongs in [retrieval], not [server]"),
    ("search_k = 3\n[retrieval]\nsearch_k = 7\n", "'search_k' is set twice"),
    ("[server]\nnope = 1\n", "[server] has no setting 'nope'"),
    ("chat_concurrency = 0\n", "chat_concurrency: Input should be greater than or equal to 1"),
    ("search_k = \n", "cannot read settings file"),
])
def test_a_bad_rag_toml_is_one_readable_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str,
                                              message: str) -> None:
    config = tmp_path / "rag.toml"
    config.write_text(text)
    monkeypatch.setenv("RAG_CONFIG_FILE", str(config))
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert message in str(err.value)


def test_rag_config_prints_every_section_with_server_settings_and_hides_secrets(tmp_path: Path) -> None:
    config = tmp_path / "rag.toml"
    config.write_text("[server]\nchat_concurrency = 2\n")
    env = {"RAG_CONFIG_FILE": str(config), "RAG_API_KEY": "sekret-123", "RAG_LLM_API_KEY": "other-456"}
    text = run_rag("config", data_dir=tmp_path, env=env).stdout
    assert [line.split("]")[0] + "]" for line in text.splitlines() if line.startswith("[")] == \
        [f"[{section}]" for section in SECTIONS]
    assert "  RAG_CHAT_CONCURRENCY=2\n" in text and "  RAG_API_KEY=(set)\n" in text
    assert "sekret-123" not in text and "other-456" not in text
    shown = json.loads(run_rag("config", "--json", data_dir=tmp_path, env=env).stdout)
    assert shown["settings"]["server"]["chat_concurrency"] == 2
    assert shown["settings"]["server"]["api_key"] == shown["settings"]["llm"]["llm_api_key"] == "(set)"
    assert set(shown["settings"]) == set(SECTIONS)
    assert sum(len(v) for v in shown["settings"].values()) == len(Settings.model_fields)


def test_rag_serve_takes_a_server_setting_from_rag_toml(tmp_path: Path) -> None:
    """The request-size limit set in the file, not the 1 MiB default, is what the running API enforces."""
    config = tmp_path / "rag.toml"
    config.write_text("[server]\nmax_request_kb = 1\n")
    with rag_server(tmp_path / "api", key=None, RAG_CONFIG_FILE=str(config)) as server:
        small = httpx.post(server.url + "/v1/kbs", json={"name": "a" * 10}, timeout=30)
        big = httpx.post(server.url + "/v1/kbs", json={"name": "b", "pad": "x" * 2048}, timeout=30)
    assert small.status_code == 201, small.text
    assert big.status_code == 413, big.text
