"""Loaders on the shared, read-only evaluation data, and our own question format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag_service.errors import InvalidInputError
from rag_service.eval.datasets import (
    Dataset,
    EvalDoc,
    EvalQuery,
    load_beir,
    load_clapnq,
    load_jsonl,
    load_rgb,
    load_squad,
    load_squad_settings,
)
from tests.conftest import ROOT

EVAL_DATA = ROOT.parent / "shared" / "eval-data"
pytestmark = pytest.mark.skipif(not EVAL_DATA.is_dir(), reason=f"{EVAL_DATA} is not available")


def test_scifact_train_counts_match_the_readme() -> None:
    data = load_beir(EVAL_DATA / "scifact", split="train")
    assert len(data.docs) == 5183
    assert len({d.id for d in data.docs}) == 5183
    assert len(data.queries) == 809  # every claim has train judgments
    assert sum(len(q.gold) for q in data.queries) == 919
    assert all(grade == 1 for q in data.queries for grade in q.gold.values())
    doc_ids = {d.id for d in data.docs}
    assert all(set(q.gold) <= doc_ids for q in data.queries)
    first = data.queries[0]
    assert (first.id, first.text, first.gold) == ("0", "0-dimensional biomaterials lack inductive properties.",
                                                  {"31715818": 1})
    assert all(d.title and d.text for d in data.docs)
    assert len(data.content_hash) == 64
    assert load_beir(EVAL_DATA / "scifact", split="train").content_hash == data.content_hash


def test_cmrc_dev_paragraphs_and_questions() -> None:
    data = load_squad(EVAL_DATA / "cmrc2018" / "squad-style-data" / "cmrc2018_dev.json")
    assert (len(data.docs), len(data.queries)) == (848, 3219)
    docs = {d.id: d for d in data.docs}
    assert len(docs) == 848
    first = data.queries[0]
    assert first.text == "《战国无双3》是由哪两个公司合作开发的？"
    assert first.gold == {"DEV_0": 1}
    assert first.answers == ["光荣和ω-force"]  # three identical references, kept once
    assert docs["DEV_0"].title == "战国无双3"
    for q in data.queries:
        (gold,) = q.gold
        # Annotators sometimes retyped an answer, but at least one reference is a span of its paragraph.
        assert any(a in docs[gold].text for a in q.answers)


def test_rgb_noisy_and_negative_settings() -> None:
    data = load_rgb(EVAL_DATA / "rgb_zh_dev")
    noisy = [q for q in data.queries if q.setting == "noisy"]
    negative = [q for q in data.queries if q.setting == "negative"]
    assert len(noisy) == len(negative) == 240 and len(data.docs) == 5847
    first = noisy[0]
    assert (first.id, first.text, first.required) == ("60", "B站2021财年总营收是多少？", [["193.8亿", "194亿"]])
    assert negative[0].id == "60:negative" and not negative[0].answers and negative[0].scope
    doc_ids = {d.id for d in data.docs}
    assert all(set(q.scope or ()) <= doc_ids and not set(q.scope or ()) & set(p.gold)
               for q, p in zip(negative, noisy, strict=True))
    assert len(load_rgb(EVAL_DATA / "rgb_zh_dev", "negative").queries) == 240
    with pytest.raises(InvalidInputError, match="unknown RGB setting"):
        load_rgb(EVAL_DATA / "rgb_zh_dev", "noisey")


def test_cmrc_with_the_own_paragraph_removed() -> None:
    data = load_squad_settings(EVAL_DATA / "cmrc2018" / "squad-style-data" / "cmrc2018_dev.json", "both", 50)
    normal = [q for q in data.queries if q.setting == "normal"]
    removed = [q for q in data.queries if q.setting == "removed"]
    assert len(normal) == len(removed) == 50
    assert [q.id + ":removed" for q in normal] == [q.id for q in removed]
    text = {d.id: d.text for d in data.docs}
    for q, r in zip(normal, removed, strict=True):
        (own,) = q.gold
        assert own not in r.scope and len(r.scope) == len(text) - 1 and not r.answers
        # No other paragraph holds a reference answer: the knowledge base without its own cannot answer.
        assert not any(a in text[d] for d in r.scope for a in q.answers)


def test_clapnq_answerable_and_unanswerable() -> None:
    data = load_clapnq(EVAL_DATA / "clapnq_dev")
    answerable = [q for q in data.queries if q.answers]
    unanswerable = [q for q in data.queries if not q.answers]
    assert (len(answerable), len(unanswerable)) == (300, 300)
    assert all(len(q.gold) == 1 for q in answerable)
    assert sum(not q.gold_substrings for q in answerable) == 1  # one answer was written without marked evidence
    assert all(not q.gold and not q.gold_substrings and not q.judged for q in unanswerable)
    assert all(len(q.passages) == 1 for q in data.queries)
    small = data.restrict(unanswerable[:3], corpus_limit=0)  # their distractor passages stay
    assert {d.id for d in small.docs} == {p for q in unanswerable[:3] for p in q.passages}
    docs = {d.id: d for d in data.docs}
    assert len(docs) == len(data.docs) == 597  # 3 passages serve two answerable questions each
    for q in answerable:
        (gold,) = q.gold
        assert not q.gold_substrings or any(s in docs[gold].text for s in q.gold_substrings)
    only = load_clapnq(EVAL_DATA / "clapnq_dev" / "clapnq_dev_unanswerable.jsonl")
    assert len(only.queries) == 300 and not any(q.answers for q in only.queries)


def test_own_jsonl_with_a_documents_folder(tmp_path: Path) -> None:
    docs = tmp_path / "handbook"
    docs.mkdir()
    (docs / "travel.md").write_text("# Travel\n\nThe meal allowance is 40 euros per day.\n", encoding="utf-8")
    (docs / "leave.txt").write_text("Annual leave is 25 days.\n", encoding="utf-8")
    questions = tmp_path / "questions.jsonl"
    rows = [{"question": "What is the meal allowance?", "answers": ["40 euros per day"],
             "gold_doc_ids": ["handbook/travel.md"]},
            {"id": "leave", "question": "How much annual leave?", "answers": ["25 days"],
             "gold_substrings": ["25 days"]},
            {"question": "Who is the CEO?", "answers": []}]
    questions.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")

    data = load_jsonl(questions, docs)
    assert data.name == "questions"
    assert sorted(d.id for d in data.docs) == ["handbook/leave.txt", "handbook/travel.md"]
    q1, q2, q3 = data.queries
    assert (q1.id, q1.gold, q1.answers) == ("q1", {"handbook/travel.md": 1}, ["40 euros per day"])
    assert (q2.id, q2.gold, q2.gold_substrings) == ("leave", {}, ["25 days"])
    assert q1.judged and q2.judged and not q3.judged
    assert load_jsonl(questions).docs == []  # for an existing knowledge base
    before = data.content_hash
    (docs / "leave.txt").write_text("Annual leave is 26 days.\n", encoding="utf-8")
    assert load_jsonl(questions, docs).content_hash != before  # the documents are part of the hash


@pytest.mark.parametrize(("line", "message"), [
    ('{"answers": []}', "'question' must be a non-empty string"),
    ('{"question": "q", "answers": "yes"}', "'answers' must be a list of strings"),
    ("not json", "invalid JSON"),
])
def test_own_jsonl_errors_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "fine", "answers": []}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=f"q.jsonl:2: .*{message}"):
        load_jsonl(path)


def test_missing_or_invalid_paths_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"^BEIR directory .*nowhere does not exist$"):
        load_beir(tmp_path / "nowhere")
    with pytest.raises(InvalidInputError, match="has no qrels for split 'test' \\(available: train\\)"):
        load_beir(EVAL_DATA / "scifact", split="test")
    with pytest.raises(InvalidInputError, match="is not a file"):
        load_squad(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [{"paragraphs": [{"qas": []}]}]}', encoding="utf-8")
    with pytest.raises(InvalidInputError, match="not SQuAD-style JSON"):
        load_squad(bad)
    with pytest.raises(InvalidInputError, match=r"holds no \.jsonl files"):
        load_clapnq(tmp_path)


def test_select_limits_queries_and_corpus() -> None:
    docs = [EvalDoc(f"d{i}", "", f"text {i}") for i in range(10)]
    queries = [EvalQuery("unjudged", "?"), EvalQuery("q1", "?", gold={"d7": 1, "d2": 0}),
               EvalQuery("q2", "?", gold={"d9": 2}), EvalQuery("q3", "?", gold={"d1": 1})]
    data = Dataset("toy", docs, queries, "hash")
    small = data.select(limit=2, corpus_limit=3)
    assert [q.id for q in small.queries] == ["q1", "q2"]  # judged queries only, in order
    # gold d7 and d9 (d2 is graded 0, not gold) plus the first three others, in corpus order
    assert [d.id for d in small.docs] == ["d0", "d1", "d2", "d7", "d9"]
    assert small.content_hash == "hash"
    assert len(data.select(limit=2).docs) == 10  # without corpus_limit the whole corpus is indexed
