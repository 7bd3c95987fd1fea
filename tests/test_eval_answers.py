"""Answer evaluation: the e5 faithfulness judge's calibration, the summary arithmetic, question selection,
and `rag eval answers` end to end with the real model on the bundled samples."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from rag_service.answering.verification import FEATURES
from rag_service.eval.answers import (
    FAITHFUL_MIN_SIMILARITY,
    E5Judge,
    PolicyResult,
    QuestionResult,
    score_policy,
    select_questions,
    summarise,
)
from rag_service.eval.calibrate import TRUST_FEATURES, Example, Procedure, calibrate, choose, evaluate, fit_model
from rag_service.eval.datasets import EvalQuery, load_jsonl
from rag_service.eval.metrics import has_required
from tests.conftest import ROOT, run_rag

SAMPLES = ROOT / "samples"
FAQ = ROOT / "eval" / "data" / "faq"


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
    bilingual = ([EvalQuery(f"zh{i}", "几点开门？", answers=["x"]) for i in range(4)]
                 + [EvalQuery(f"en{i}", "When?", answers=["x"]) for i in range(4)])
    assert [q.id for q in select_questions(bilingual, 4)] == ["zh0", "en0", "zh1", "en1"]  # languages take turns


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
    # answers are full sentences now, so span F1 is low by design; correctness is the reference in the answer
    assert out["answerable"]["count"] == 2 and out["answerable"]["answered_correctly"] == 1.0
    assert 0 < out["answerable"]["f1"] < 1
    assert out["answerable"]["answer_rate"] == 1.0
    assert out["unanswerable"] == {"count": 1, "refusal_accuracy": 1.0}
    assert out["citation_validity"] is not None and out["faithfulness"] is not None
    assert out["cost"]["prompt_tokens"] > 0 and out["cost"]["generate_s"] > 0
    assert out["record"]["dataset_sha256"] and out["record"]["code"]
    assert "results" not in out
    full = json.loads(report.read_text(encoding="utf-8"))
    assert [r["refused"] for r in full["results"]] == [False, False, True]
    assert "Mara Okafor" in full["results"][0]["prediction"] and "[" not in full["results"][0]["prediction"]


def test_our_faq_set_loads_with_required_items_and_its_documents() -> None:
    data = load_jsonl(FAQ / "questions.jsonl", FAQ / "docs")
    answerable = [q for q in data.queries if q.answers]
    assert len(data.queries) >= 120 and len(data.docs) == 8
    assert all(q.required for q in answerable) and not any(q.required for q in data.queries if not q.answers)
    assert {q.setting for q in data.queries} >= {"list", "toc_only", "near_miss", "off_topic"}
    text = {d.id: d.text for d in data.docs}
    for q in answerable:  # the reference answer meets its own rule, and its evidence is in the documents
        assert has_required(q.answers[0], q.required), q.id
        assert any(s in t for s in q.gold_substrings for t in text.values()), q.id


@pytest.mark.parametrize(("prediction", "required", "correct"), [
    ("营收达 193.8 亿元[1]。", [["193.8亿", "194亿"]], True),
    ("The flag bearers were Guo Yujie [1].", [["Guo Yujie"], ["Wang Zhidong"]], False),  # every item is needed
    ("借期为三十天[1]。", [["30天"]], True),  # numerals are read as digits
    ("It costs 1,850 euros.", [["1850"]], True),
])
def test_answered_correctly_by_required_items(prediction: str, required: list[list[str]], correct: bool) -> None:
    query = EvalQuery("q", "question?", answers=["x"], required=required)
    result = score_policy(query, prediction, False, [], _NoJudge(), "required")
    assert result.correct is correct and not result.refused


class _NoJudge:
    def supported(self, statement: str, passages: object) -> bool:
        return False


def test_every_policy_is_summarised_per_language_and_setting() -> None:
    def result(lang: str, setting: str, answerable: bool, views: dict[str, tuple[bool, bool, bool]]) -> QuestionResult:
        policies = {p: PolicyResult("x", refused, correct, 0.0, 0.0, 1, 1, 1, int(cited), cited)
                    for p, (refused, correct, cited) in views.items()}
        return QuestionResult("q", "Q?", ["a"] if answerable else [], "x", False, True, 0.0, 0.0, 1, 1, 1, 1, 0, 0,
                              100, 5, {"first_token_s": 2.0}, lang=lang, setting=setting, policies=policies)

    results = [result("zh", "noisy", True, {"strict": (False, True, True), "off": (False, True, True)}),
               result("zh", "negative", False, {"strict": (True, True, False), "off": (False, False, False)}),
               result("en", "answerable", True, {"strict": (True, False, False), "off": (False, False, True)})]
    out = summarise(results)
    zh = out["by_language"]["zh"]["policies"]
    assert zh["strict"]["answered_correctly"] == 1.0 and zh["strict"]["refused"] == 1.0
    assert zh["off"]["refused"] == 0.0 and zh["off"]["uncited_answers"] == 1
    assert out["by_setting"]["negative"]["unanswerable"] == 1
    assert out["policies"]["strict"]["uncited_answers"] == 0
    assert out["by_language"]["en"]["cost"]["first_token_s_p50"] == 2.0


def _example(group: str, answerable: bool, good: bool, gate: float, rng: random.Random) -> Example:
    features = np.array([gate, *(rng.gauss(0, 1) for _ in FEATURES[1:-2]), rng.random(), 0.0])
    return Example(group, "zh", answerable, features, good if answerable else False, (), None)


@pytest.mark.slow
def test_calibration_separates_right_from_wrong_answers() -> None:
    """A synthetic run where the gate tells right answers from wrong ones: the fitted model leans on the gate
    and its threshold keeps most right answers while refusing most unanswerable questions, also on each data set
    left out of the fit."""
    rng = random.Random(0)
    items = []
    for i in range(400):
        answerable = i % 2 == 0
        good = answerable and rng.random() < 0.9
        items.append(_example(f"set{i % 3}", answerable, good, rng.gauss(2.5 if good else -1.0, 1.0), rng))
    fit = calibrate(items)
    weights = fit["model"]["weights"]
    assert set(weights) == set(TRUST_FEATURES) and weights["gate"] > 1.0
    everything = calibrate(items, Procedure(FEATURES))["model"]["weights"]  # noise gets little weight
    assert set(everything) == set(FEATURES) and abs(everything["refusal_start"]) < 0.3 * everything["gate"]
    assert set(fit["leave_one_out"]) == {"set0", "set1", "set2"}
    for rates in (*fit["in_sample"].values(), *fit["leave_one_out"].values()):
        assert rates["answered_correctly"] > 0.75 and rates["refused"] > 0.75 and rates["wrong"] < 0.1


def test_the_threshold_weighs_every_data_set_alike() -> None:
    """A small data set whose right answers score lower than a large one's must not be outvoted: the
    threshold maximises answered-correctly + refused averaged over the data sets, not pooled."""
    # set a: 200 questions, right answers at 0.7, half the unanswerable ones at 0.4; set b: 40 questions,
    # its right answers at 0.4. Pooled, refusing everything at 0.4 wins; per data set, keeping set b's does.
    def example(group: str, answerable: bool, good: bool) -> Example:
        return Example(group, "zh", answerable, np.zeros(len(FEATURES)), good, (), None)

    items = [example("a", i % 2 == 0, i % 4 == 0) for i in range(200)]
    scores = [0.7 if i % 4 == 0 else 0.5 if i % 2 == 0 else 0.4 if i % 4 == 1 else 0.1 for i in range(200)]
    items += [example("b", i % 2 == 0, i % 2 == 0) for i in range(40)]
    scores += [0.4 if i % 2 == 0 else 0.1 for i in range(40)]
    threshold, _, _ = choose(items, np.array(scores))
    assert 0.1 < threshold <= 0.4  # keeps the small set's right answers; pooled, 0.7 wins


def test_quotes_and_extracts_are_kept_where_the_score_cannot_tell() -> None:
    """Answers the trust score cannot separate (every feature alike), whose quotes are right when the model judged
    their evidence at 0.9 and wrong at 0.55: the fit keeps quotes from a level between the two and refuses the
    rest, so right quotes are delivered and unanswerable questions stay refused."""
    items = []
    for i in range(300):
        answerable = i % 3 != 0
        level, right = (0.9, True) if answerable else (0.55, False)
        items.append(Example(f"set{i % 2}", "zh", answerable, np.zeros(len(FEATURES)), answerable and i % 2 == 0,
                             ((level, right),), None))
    model = fit_model(items)
    assert model.quote_min_evidence is not None and 0.55 < model.quote_min_evidence <= 0.9
    for rates in evaluate(model, items).values():
        assert rates["answered_correctly"] == 1.0 and rates["refused"] == 1.0


def test_rag_eval_calibrate_writes_a_fit_file_and_the_generic_one_ignores_the_refusal_start(tmp_path: Path) -> None:
    """A run file of synthetic outcomes: the fit file holds a model per language; --generic leaves out the signal a
    server cannot give and counts a wrong answer as much as a right one."""
    rng = random.Random(1)
    results = []
    for i in range(120):
        answerable = i % 2 == 0
        good = answerable and rng.random() < 0.8
        gate = rng.gauss(2.0 if good else -1.0, 1.0)
        results.append({"lang": "en", "answers": ["x"] if answerable else [],
                        "outcomes": {"features": {"gate": gate, "refusal_start": rng.gauss(0, 1)},
                                     "trust": good if answerable else False, "quotes": [], "extract": None}})
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"record": {"dataset": "synthetic"}, "results": results}))
    out = tmp_path / "fit.json"
    fits = json.loads(run_rag("eval", "calibrate", str(run), "--generic", "--write", str(out), "--json",
                              data_dir=tmp_path).stdout)
    fit = json.loads(out.read_text())
    assert set(fit["languages"]) == {"en"} and fit["generator"]["key"].startswith("gguf-")
    assert "refusal_start" not in fit["languages"]["en"]["weights"] and fit["languages"]["en"]["weights"]["gate"] > 0
    assert fits["en"]["in_sample"]["synthetic/en"]["refused"] > 0.7
