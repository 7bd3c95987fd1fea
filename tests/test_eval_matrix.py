"""The chunking matrix end to end: a 2 splitters x 2 sizes x 3 modes grid on a SciFact subset with minilm
(real ingestion and search), its reports, its caches, and config validation before any indexing."""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from rag_service.errors import InvalidInputError
from rag_service.eval.matrix import load_config, run_matrix
from tests.conftest import ROOT, run_rag

SCIFACT = ROOT.parent / "shared" / "eval-data" / "scifact"
METRICS = {"ndcg@10", "recall@10", "recall@100", "mrr@10", "hit@1", "hit@5"}
GRID = """
[dataset]
beir = "{beir}"
split = "train"
limit = 10
corpus_limit = 20

[grid]
embedders = ["minilm"]
splitters = {splitters}
chunk_sizes = [400, 800]
chunk_overlaps = [0]
modes = ["bm25", "vector", "hybrid"]
"""


def write_config(folder: Path, splitters: str = '["recursive", "sentence"]', beir: Path = SCIFACT) -> Path:
    path = folder / "small.toml"
    path.write_text(GRID.format(beir=beir, splitters=splitters), encoding="utf-8")
    return path


def tiny_beir(folder: Path) -> Path:
    """A two-document BEIR task: enough for config validation, which must not need the shared data."""
    beir = folder / "tiny-beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text('{"_id": "d1", "title": "", "text": "tea grows on hills"}\n'
                                       '{"_id": "d2", "title": "", "text": "coffee needs shade"}\n')
    (beir / "queries.jsonl").write_text('{"_id": "q1", "text": "where does tea grow"}\n')
    (beir / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return beir


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, Path, Path, float]:
    """(results, config file, cache dir, report dir, seconds) of the first, index-building run."""
    folder = tmp_path_factory.mktemp("matrix")
    config, cache, out = write_config(folder), folder / "cache", folder / "report"
    started = time.perf_counter()
    results = run_matrix(load_config(config), out, cache, progress=False)
    return results, config, cache, out, time.perf_counter() - started


@pytest.mark.skipif(not SCIFACT.is_dir(), reason=f"{SCIFACT} is not available")
@pytest.mark.slow
def test_grid_results_and_record(run: tuple[dict[str, Any], Path, Path, Path, float]) -> None:
    results, _, _, out, _ = run
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    cells = results["cells"]
    assert len(cells) == 2 * 2 * 3 and not any("error" in c for c in cells)
    assert {(c["splitter"], c["chunk_size"], c["mode"]) for c in cells} == {
        (s, n, m) for s in ("recursive", "sentence") for n in (400, 800) for m in ("bm25", "vector", "hybrid")}
    for cell in cells:
        assert cell["metrics"].keys() >= METRICS
        assert all(0.0 <= v <= 1.0 for v in cell["metrics"].values()), cell
        assert cell["queries"] == 10 and cell["ingested"] == cell["documents"] > 0 and not cell["cached"]
        assert cell["chunks"] >= cell["documents"] and cell["latency_ms"] > 0 and cell["context_chars"] > 0
        assert cell["build_seconds"] > 0 and "per_query" not in cell
    small = next(c for c in cells if c["splitter"] == "recursive" and c["chunk_size"] == 400)
    large = next(c for c in cells if c["splitter"] == "recursive" and c["chunk_size"] == 800)
    assert small["chunks"] > large["chunks"] and small["chunk_chars"] < large["chunk_chars"]
    record = results["record"]
    assert len(record["dataset_sha256"]) == 64 and record["dataset"] == "scifact:train"
    assert "commit" in record["code"] and len(record["models"]["embedders"]["minilm"]["sha256"]) == 64
    assert record["models"]["llm"]["sha256"] and not any("api_key" in key for key in record["settings"])
    best = results["winners"]["ndcg@10"]
    assert best["value"] == max(c["metrics"]["ndcg@10"] for c in cells) >= best["runner_up_value"]
    assert best["margin_se"] >= 0


@pytest.mark.skipif(not SCIFACT.is_dir(), reason=f"{SCIFACT} is not available")
@pytest.mark.slow
def test_reports(run: tuple[dict[str, Any], Path, Path, Path, float]) -> None:
    results, _, _, out, _ = run
    markdown = (out / "report.md").read_text()
    assert "| embedder | splitter | overlap | bm25 400 | bm25 800 |" in markdown
    assert "## hybrid: all metrics" in markdown and markdown.count("| minilm | sentence |") == 1 + 3 * 2
    assert f"Best by ndcg@10 on scifact:train: {results['winners']['ndcg@10']['best']}" in markdown
    assert "![ndcg-vs-chunk-size](ndcg-vs-chunk-size.png)" in markdown
    assert (out / "ndcg-vs-chunk-size.png").read_bytes().startswith(b"\x89PNG")
    page = (out / "report.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == 2
    assert page.count("<table>") == 4 and "Best by hit@1" in page


@pytest.mark.skipif(not SCIFACT.is_dir(), reason=f"{SCIFACT} is not available")
@pytest.mark.slow
def test_second_run_through_the_cli_reuses_indexes_and_results(
        run: tuple[dict[str, Any], Path, Path, Path, float], tmp_path: Path) -> None:
    first, config, cache, _, seconds = run
    started = time.perf_counter()
    proc = run_rag("eval", "matrix", "--config", str(config), "--out", str(tmp_path / "again"), "--cache-dir",
                   str(cache), "--json", "--quiet", data_dir=tmp_path)
    again = json.loads(proc.stdout)
    assert time.perf_counter() - started < seconds
    assert all(c["ingested"] == 0 and c["cached"] for c in again["cells"])
    assert [c["metrics"] for c in again["cells"]] == [c["metrics"] for c in first["cells"]]
    assert (tmp_path / "again" / "report.html").is_file() and not (tmp_path / "eval-cache").exists()


def test_config_errors_come_before_any_indexing(tmp_path: Path) -> None:
    beir = tiny_beir(tmp_path)
    bad = write_config(tmp_path, '["recursive", "sentance"]', beir)
    with pytest.raises(InvalidInputError, match=r"grid\.splitters: unknown 'sentance' \(choose from .*recursive"):
        load_config(bad)
    proc = run_rag("eval", "matrix", "--config", str(bad), "--cache-dir", str(tmp_path / "cache"), "--out",
                   str(tmp_path / "out"), data_dir=tmp_path, check=False)
    assert proc.returncode != 0 and proc.stderr.startswith("error: matrix config grid.splitters: unknown 'sentance'")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()

    good = write_config(tmp_path, beir=beir).read_text()
    cases = [
        (good.replace("chunk_overlaps = [0]", "chunk_overlaps = [800, 900]"), "nothing to index"),
        (good + "chunk_size = 3\n", r"\[grid\]: unknown key\(s\) chunk_size"),
        (good.replace("limit = 10", "limit = 0"), r"dataset\.limit: must be an integer >= 1"),
        (good.replace(str(beir), str(tmp_path / "nowhere")), r"dataset\.beir: .*nowhere does not exist"),
    ]
    for text, message in cases:
        bad.write_text(text)
        with pytest.raises(InvalidInputError, match=message):
            load_config(bad)
    bad.write_text(good.replace("chunk_overlaps = [0]", "chunk_overlaps = [0, 300]"))
    config = load_config(bad)
    assert len(config.indexes) == 2 * 3  # (400, 300) is skipped: an overlap may be at most half the size
    assert config.skipped == ("overlap 300 with chunk size 400: chunk_overlap must be between 0 and half of "
                              "chunk_size (200), got 300",)
    as_json = tmp_path / "small.json"
    as_json.write_text(json.dumps(tomllib.loads(bad.read_text())), encoding="utf-8")
    assert load_config(as_json).indexes == config.indexes
