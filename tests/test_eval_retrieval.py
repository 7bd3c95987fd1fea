"""The retrieval runner end to end: real ingestion, the default embedder (e5), real search, the CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from rag_service.eval.datasets import Dataset, EvalQuery, load_beir, load_jsonl
from rag_service.eval.retrieval import RetrievalConfig, RetrievalReport, judge, run_retrieval
from rag_service.records import Chunk, Hit
from tests.conftest import ROOT, run_rag

SCIFACT = ROOT.parent / "shared" / "eval-data" / "scifact"
CONTRACT = {"ndcg@10", "recall@10", "recall@100", "mrr@10", "hit@5"}
SUBSET = ("--limit", "10", "--corpus-limit", "60")
pytestmark = pytest.mark.skipif(not SCIFACT.is_dir(), reason=f"{SCIFACT} is not available")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("eval-cache")


@pytest.fixture(scope="module")
def subset() -> Dataset:
    """10 claims, their gold abstracts and 60 other abstracts: what ``--limit 10 --corpus-limit 60`` selects."""
    return load_beir(SCIFACT, "train").select(limit=10, corpus_limit=60)


@pytest.fixture(scope="module")
def first_run(subset: Dataset, cache_dir: Path) -> RetrievalReport:
    return run_retrieval(subset, RetrievalConfig(), cache_dir)


@pytest.mark.slow
def test_scifact_subset_in_every_mode(first_run: RetrievalReport, subset: Dataset) -> None:
    assert len(subset.queries) == 10
    assert first_run.index.ingested == first_run.index.documents == len(subset.docs)
    assert first_run.index.chunks >= len(subset.docs)
    assert list(first_run.results) == ["bm25", "vector", "hybrid"]
    for mode, result in first_run.results.items():
        row = result.to_json()
        assert CONTRACT | {"hit@1", "latency_ms", "queries"} <= row.keys(), mode
        assert row["queries"] == 10
        assert all(0.0 <= row[key] <= 1.0 for key in CONTRACT | {"hit@1"}), (mode, row)
        assert row["hit@1"] <= row["hit@5"] and row["recall@10"] <= row["recall@100"]
        assert row["latency_ms"] > 0
    assert first_run.results["bm25"].metrics["ndcg@10"] > 0.3
    assert first_run.results["hybrid"].metrics["ndcg@10"] > 0.3


@pytest.mark.slow
def test_second_run_reuses_the_cached_index(first_run: RetrievalReport, subset: Dataset, cache_dir: Path) -> None:
    started = time.perf_counter()
    second = run_retrieval(subset, RetrievalConfig(modes=("bm25",)), cache_dir)
    assert second.index.key == first_run.index.key
    assert second.index.ingested == 0 and second.index.documents == len(subset.docs)
    assert second.results["bm25"].metrics == first_run.results["bm25"].metrics
    assert time.perf_counter() - started < 30  # searching only; ingesting 70 abstracts with e5 takes longer


@pytest.mark.slow
def test_cli_json_contract(first_run: RetrievalReport, cache_dir: Path, tmp_path: Path) -> None:
    proc = run_rag("eval", "retrieval", "--beir", str(SCIFACT), *SUBSET, "--cache-dir", str(cache_dir), "--json",
                   data_dir=tmp_path)
    out = json.loads(proc.stdout)
    assert list(out) == ["bm25", "vector", "hybrid"]
    for mode, row in out.items():
        assert row.keys() >= CONTRACT
        for key in CONTRACT:
            assert row[key] == pytest.approx(first_run.results[mode].metrics[key]), (mode, key)
    assert not (tmp_path / "eval-cache").exists()  # the index came from --cache-dir, not re-built


@pytest.mark.slow
def test_cli_table_with_the_cache_from_the_environment(cache_dir: Path, first_run: RetrievalReport,
                                                       tmp_path: Path) -> None:
    proc = run_rag("eval", "retrieval", "--beir", str(SCIFACT), *SUBSET, "--modes", "bm25", "--quiet",
                   data_dir=tmp_path, env={"RAG_EVAL_CACHE": str(cache_dir)})
    lines = proc.stdout.splitlines()
    assert "reused from cache" in lines[0] and "10 queries" in lines[1]
    header, row = lines[-2].split(), lines[-1].split()
    assert header[:3] == ["mode", "ndcg@10", "recall@10"] and row[0] == "bm25"
    assert float(row[1]) == pytest.approx(first_run.results["bm25"].metrics["ndcg@10"], abs=1e-4)
    assert proc.stderr == ""


def test_own_questions_by_document_and_by_substring(tmp_path: Path, cache_dir: Path) -> None:
    docs = tmp_path / "handbook"
    docs.mkdir()
    (docs / "travel.md").write_text("# Travel\n\nThe meal allowance on business trips is 40 euros per day. Hotel "
                                    "costs are reimbursed up to 120 euros per night.\n", encoding="utf-8")
    (docs / "leave.md").write_text("Annual leave is 25 days per year. Unused leave days expire at the end of "
                                   "March of the following year.\n", encoding="utf-8")
    (docs / "it.md").write_text("Laptops are replaced every four years. Password resets go through the "
                                "service desk.\n", encoding="utf-8")
    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(json.dumps(r) for r in [
        {"question": "What is the meal allowance on business trips?", "answers": ["40 euros per day"],
         "gold_doc_ids": ["handbook/travel.md"]},
        {"question": "When do unused leave days expire?", "answers": ["at the end of March"],
         "gold_substrings": ["end of\nMarch"]},  # matching ignores whitespace and case
        {"question": "Who founded the company?", "answers": []},  # no gold: not scored
    ]), encoding="utf-8")

    report = run_retrieval(load_jsonl(questions, docs), RetrievalConfig(modes=("bm25", "vector")), cache_dir)
    assert report.skipped == 1
    for result in report.results.values():
        assert result.to_json()["queries"] == 2
        assert result.metrics["hit@1"] == 1.0

    # The same questions against an existing knowledge base: the index just built is one.
    proc = run_rag("eval", "retrieval", "--jsonl", str(questions), "--kb", "eval", "--modes", "bm25", "--json",
                   "--quiet", data_dir=cache_dir / report.index.key)
    assert json.loads(proc.stdout)["bm25"]["hit@1"] == 1.0


def test_judge_ranks_documents_by_their_best_chunk() -> None:
    def hit(source: str, text: str = "") -> Hit:
        return Hit(Chunk(f"{source}:{text}", f"id-{source}", source, text, 0, 0, len(text)), 1.0)

    hits = [hit("a", "first"), hit("b"), hit("a", "second"), hit("c", "the End of March")]
    ranking, gold = judge(EvalQuery("q", "?", gold={"c": 1}), hits, {"b": ["b", "b-copy"]})
    assert ranking == ["a", "b", "b-copy", "c"] and gold == {"c": 1}
    ranking, gold = judge(EvalQuery("q", "?", gold_substrings=["end of march"]), hits, {})
    assert ranking.index(next(iter(gold))) == 2  # a, b, then the chunk holding the evidence


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    proc = run_rag("eval", "retrieval", "--beir", str(tmp_path / "missing"), data_dir=tmp_path, check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip() == f"error: BEIR directory {tmp_path / 'missing'} does not exist"
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "?", "answers": []}\n', encoding="utf-8")
    proc = run_rag("eval", "retrieval", "--jsonl", str(questions), data_dir=tmp_path, check=False)
    assert proc.returncode != 0 and proc.stderr.startswith("error: --jsonl needs either --docs")
