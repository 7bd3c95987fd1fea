"""Answer evaluation: the e5 faithfulness judge's calibration, the summary arithmetic, question selection,
and `rag eval answers` end to end with the real model on the bundled samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.answers import FAITHFUL_MIN_SIMILARITY, E5Judge, QuestionResult, select_questions, summarise
from eval.datasets import EvalQuery
from tests.conftest import ROOT, run_rag

SAMPLES = ROOT / "samples"


@pytest.fixture(scope="module")
def judge() -> E5Judge:
    return E5Judge()


@pytest.mark.parametrize(("question", "answer", "file", "supported"), [
    ("How much is the daily meal allowance?", "45 euros.", "en/aurora-robotics-handbook.md", True),
    ("Who founded the Greenleaf Tea Farm?", "Mara Okafor.", "en/greenleaf-tea-farm.txt", True),
    ("Which helpdesk extension should broken equipment be reported to?", "Extension 4417.",
     "en/aurora-robotics-handbook.md", True),
    ("每人最多可以同时借阅几本书？", "八本。", "zh/xinghe-library.md", True),
    ("How much is the daily meal allowance?", "80 euros.", "en/aurora-robotics-handbook.md", False),
    ("Who founded the Greenleaf Tea Farm?", "John Smith.", "en/greenleaf-tea-farm.txt", False),
    ("Which helpdesk extension should broken equipment be reported to?", "Extension 1234.",
     "en/aurora-robotics-handbook.md", False),
    ("Which robot vacuum should I buy?", "The robot vacuum should be purchased from the Lighthouse lab.",
     "en/aurora-robotics-handbook.md", False),
    ("What is the capital of France?", "Paris.", "en/aurora-robotics-handbook.md", False),
])
def test_e5_judge_separates_supported_from_unsupported_answers(
        judge: E5Judge, question: str, answer: str, file: str, supported: bool) -> None:
    passage = (SAMPLES / file).read_text(encoding="utf-8")
    similarity = judge.similarity(f"{question} {answer}", [passage])
    assert (similarity >= FAITHFUL_MIN_SIMILARITY) is supported, similarity


def _result(answers: list[str], *, refused: bool = False, f1: float = 0.0, em: float = 0.0, sentences: int = 0,
            supported: int = 0, markers: int = 0, valid: int = 0, model: int = 0, model_valid: int = 0,
            grounded: bool = False, prompt: int = 0) -> QuestionResult:
    return QuestionResult("q", "Q?", answers, "", refused, grounded, em, f1, sentences, supported, markers, valid,
                          model, model_valid, prompt, 3 if prompt else 0, {"retrieve_s": 0.5})


def test_summary_by_hand() -> None:
    results = [
        _result(["a"], f1=1.0, em=1.0, sentences=1, supported=1, markers=1, valid=1, model=2, model_valid=1,
                grounded=True, prompt=100),
        _result(["b"], f1=0.5, sentences=2, supported=1, markers=2, valid=1, model=1, grounded=True, prompt=200),
        _result(["c"], refused=True, prompt=150),  # answerable but refused: scores 0, lowers the answer rate
        _result([], refused=True),  # unanswerable, refused early (no tokens)
        _result([], sentences=1, markers=0, prompt=150),  # unanswerable, answered anyway, no citation
    ]
    out = summarise(results)
    assert out["questions"] == 5
    assert out["answerable"] == {"count": 3, "exact_match": round(1 / 3, 4), "f1": 0.5,
                                 "answer_rate": round(2 / 3, 4)}
    assert out["unanswerable"] == {"count": 2, "refusal_accuracy": 0.5}
    assert out["faithfulness"] == 0.5  # 2 of 4 sentences
    assert out["citation_validity"] == round(2 / 3, 4)
    assert out["model_citation_validity"] == round(1 / 3, 4)
    assert out["grounded_rate"] == round(2 / 3, 4)  # of the 3 answers given
    assert out["cost"] == {"prompt_tokens": 120.0, "completion_tokens": 2.4, "retrieve_s": 0.5}


def test_selection_keeps_both_kinds_of_question() -> None:
    queries = [EvalQuery(f"a{i}", "q", answers=["x"]) for i in range(5)] + [EvalQuery("u", "q")]
    assert [q.id for q in select_questions(queries, 4)] == ["a0", "a1", "a2", "u"]
    assert [q.id for q in select_questions(queries[:5], 2)] == ["a0", "a1"]
    assert len(select_questions(queries, None)) == 6


def test_a_retrieval_only_data_set_is_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d", "text": "x"}\n')
    proc = run_rag("eval", "answers", "--dataset", str(tmp_path), data_dir=tmp_path / "data", check=False)
    assert proc.returncode != 0 and "no reference answers" in proc.stderr


@pytest.mark.llm
def test_eval_answers_on_the_samples(tmp_path: Path) -> None:
    questions = tmp_path / "questions.jsonl"
    rows = [{"question": "Who founded the Greenleaf Tea Farm?", "answers": ["Mara Okafor"]},
            {"question": "持有读者证的居民每人最多可以同时借阅几本书？", "answers": ["八本"]},
            {"question": "Who won the 2018 football World Cup?", "answers": []}]
    questions.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    report = tmp_path / "report.json"
    proc = run_rag("eval", "answers", "--dataset", str(questions), "--docs", str(SAMPLES), "--json", "--quiet",
                   "--out", str(report), "--cache-dir", str(tmp_path / "cache"), data_dir=tmp_path / "data")
    out = json.loads(proc.stdout)
    assert out["answerable"]["count"] == 2 and out["answerable"]["f1"] > 0.5
    assert out["answerable"]["answer_rate"] == 1.0
    assert out["unanswerable"] == {"count": 1, "refusal_accuracy": 1.0}
    assert out["citation_validity"] is not None and out["faithfulness"] is not None
    assert out["cost"]["prompt_tokens"] > 0 and out["cost"]["generate_s"] > 0
    assert out["record"]["dataset_sha256"] and out["record"]["code"]
    assert "results" not in out
    full = json.loads(report.read_text(encoding="utf-8"))
    assert [r["refused"] for r in full["results"]] == [False, False, True]
    assert "Mara Okafor" in full["results"][0]["prediction"] and "[" not in full["results"][0]["prediction"]
