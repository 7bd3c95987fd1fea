"""Language detection and the search defaults that follow a KB's language, on the real stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_service.ingestion.pipeline import Ingestor
from rag_service.retrieval.fusion import LANGUAGE_DEFAULTS, weighted_fusion
from rag_service.retrieval.search import Retriever, fusion_choice
from rag_service.settings import Settings
from rag_service.text.language import detect_language, majority_language
from rag_service.workspace import Workspace
from tests.conftest import SAMPLES, rag_json, run_rag


@pytest.mark.parametrize(("text", "language"), [
    ("为什么RLHF之后模型话变多了？", "zh"),
    ("报销需要提供发票原件，差旅补贴按天计算。", "zh"),
    ("SFT (supervised fine-tuning) 是有监督微调，常用 LoRA。", "zh"),  # Chinese quoting English terms
    ("The meal allowance is paid per day of travel.", "en"),
    ("Set RAG_FUSION=weighted; see 检索 in the glossary for the Chinese term.", "en"),  # one Chinese word
    ("Числа 2024 и 2025", "en"),  # not CJK: the Snowball path
    ("", "en"),
    ("12345 ... !!!", "en"),
])
def test_detect_language_by_script(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_majority_language_counts_chunks_and_ignores_unknown() -> None:
    assert majority_language({"zh": 30, "en": 10}) == "zh"
    assert majority_language({"zh": 5, "en": 10, None: 100}) == "en"
    assert majority_language({"zh": 7, "en": 7}) == "en"  # a tie keeps the en defaults
    assert majority_language({}) is None and majority_language({None: 3}) is None


@pytest.mark.slow
def test_fusion_follows_the_kb_language_unless_set(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ws = Workspace(Settings(data_dir=data))
    try:  # in this process (what `rag ingest` runs); the CLI is tested where it changes the KB from outside, below
        for name in ("zh", "en"):
            assert all(r.status == "added" for r in Ingestor.open(ws, name)[0].run([SAMPLES / name]))
    finally:
        ws.close()
    kbs = {k["name"]: k for k in rag_json("kbs", data_dir=data)["kbs"]}
    zh, en = LANGUAGE_DEFAULTS["zh"], LANGUAGE_DEFAULTS["en"]
    assert kbs["zh"]["language"] == "zh" and kbs["en"]["language"] == "en"
    prf = {"pseudo_feedback": 5, "pseudo_feedback_weight": 1.0, "pseudo_feedback_min_coherence": 0.92}  # e5
    assert kbs["zh"]["fusion"] == {"method": zh.fusion, "bm25_weight": zh.bm25_weight} | prf
    assert kbs["en"]["fusion"] == {"method": en.fusion, "bm25_weight": en.bm25_weight} | prf
    assert (zh.fusion, zh.bm25_weight) != (en.fusion, en.bm25_weight)  # else this test proves nothing

    # A zh search with no fusion named ranks exactly as the zh default named explicitly, and says so.
    query = "图书馆几点开门"
    out = rag_json("search", "--kb", "zh", "--explain", "--k", "5", query, data_dir=data)
    assert out["fusion"] == {"method": zh.fusion, "bm25_weight": zh.bm25_weight, "kb_language": "zh"} | prf
    ws = Workspace(Settings(data_dir=data))
    try:
        kb = ws.catalog.get_kb("zh")
        retriever = Retriever(ws, kb)
        default = [h.chunk.id for h in retriever.search(query, k=5)]
        assert default == [h.chunk.id for h in retriever.search(query, k=5, fusion=zh.fusion)]
        assert [h["chunk_id"] for h in out["hits"]] == default
        assert fusion_choice(ws, kb, "rrf").method == "rrf"  # a request's own choice wins
        # ... and is the weighted fusion of the two lists a fusion study reads (rag_service/eval/fusion_study.py).
        lists = retriever.candidate_lists(query, 30)
        assert set(lists) == {"bm25", "vector"} and all(lists.values())
        by_hand = weighted_fusion(lists, {"bm25": zh.bm25_weight, "vector": 1 - zh.bm25_weight})
        assert [c for c, _ in by_hand[:5]] == default
    finally:
        ws.close()

    # The KB's language follows its documents: English added and the Chinese deleted, it becomes en (the per-process
    # cache is keyed by the KB's revision, so a long-lived process sees the change too).
    ws = Workspace(Settings(data_dir=data))
    try:
        kb = ws.catalog.get_kb("zh")
        assert ws.catalog.kb_language(kb) == "zh"
        run_rag("ingest", "--kb", "zh", str(SAMPLES / "en"), data_dir=data)
        for doc in rag_json("docs", "list", "--kb", "zh", data_dir=data)["documents"]:
            assert doc["language"] in ("zh", "en")
            if doc["language"] == "zh":
                run_rag("docs", "delete", "--kb", "zh", doc["id"], data_dir=data)
        assert ws.catalog.kb_language(ws.catalog.get_kb("zh")) == "en"
    finally:
        ws.close()

    # An explicit RAG_FUSION / RAG_BM25_WEIGHT wins over the language default.
    zh_kb = rag_json("kbs", data_dir=data, env={"RAG_FUSION": "rrf"})["kbs"][1]
    assert (zh_kb["name"], zh_kb["fusion"]["method"]) == ("zh", "rrf")
    zh_kb = rag_json("kbs", data_dir=data, env={"RAG_BM25_WEIGHT": "0.9"})["kbs"][1]
    assert zh_kb["fusion"] == {"method": "weighted", "bm25_weight": 0.9} | prf
    env = {"RAG_FUSION": "weighted", "RAG_BM25_WEIGHT": "0.8", "RAG_PSEUDO_FEEDBACK": "4"}
    fusion = {k["name"]: k["fusion"] for k in rag_json("kbs", data_dir=data, env=env)["kbs"]}
    assert fusion == {name: prf | {"method": "weighted", "bm25_weight": 0.8, "pseudo_feedback": 4}
                      for name in ("en", "zh")}


def test_rag_config_prints_the_language_table(tmp_path: Path) -> None:
    out = run_rag("config", data_dir=tmp_path).stdout
    assert "Search defaults by the language" in out
    for language, d in LANGUAGE_DEFAULTS.items():
        assert f"  {language}: fusion {d.fusion}, bm25 weight {d.bm25_weight}" in out
