"""rag_service.eval.rgb_misses end to end on a tiny RGB-layout folder: real ingestion (e5), real search, the labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag_service.eval import rgb_misses

PASSAGES = {
    "p1": "2022年北京冬奥会于2月4日开幕，开幕式在国家体育场举行。",
    "p2": "北京冬奥会开幕式2月4日晚在鸟巢举行，张艺谋担任总导演。",
    "n1": "北京冬奥会的吉祥物冰墩墩受到各国运动员喜爱。",
    "p3": "谷爱凌在北京冬奥会自由式滑雪大跳台比赛中夺得金牌。",
    "n2": "谷爱凌出生于美国旧金山，母亲是中国人。",
    "x1": "今年春节期间，全国旅游出游人次同比增长。",
}
QUESTIONS = [
    {"id": "q1", "query": "北京冬奥会哪天开幕？", "answer": ["2月4日"], "positive": ["p1", "p2"], "negative": ["n1"]},
    {"id": "q2", "query": "谷爱凌在北京冬奥会获得了什么成绩？", "answer": ["金牌"], "positive": ["p3"],
     "negative": ["n2"]},
]


def _rgb_dir(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    with (root / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for pid, text in PASSAGES.items():
            f.write(json.dumps({"_id": pid, "title": "", "text": text}, ensure_ascii=False) + "\n")
    with (root / "queries.jsonl").open("w", encoding="utf-8") as f:
        for q in QUESTIONS:
            f.write(json.dumps({"_id": q["id"], "text": q["query"]}, ensure_ascii=False) + "\n")
    (root / "qrels" / "dev.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q['id']}\t{p}\t1\n" for q in QUESTIONS for p in q["positive"]),
        encoding="utf-8")
    with (root / "questions.jsonl").open("w", encoding="utf-8") as f:
        for q in QUESTIONS:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")
    return root


def test_every_top10_slot_is_labelled_by_its_relation_to_the_question(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RAG_EVAL_CACHE", str(tmp_path / "cache"))
    data, out = _rgb_dir(tmp_path / "rgb"), tmp_path / "top10.json"
    assert rgb_misses.main(["--data", str(data), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    # All six passages reach each question's top 10 (the vector list ranks every chunk), so the labels do not
    # depend on the order: q1 sees p1 p2 (its positives), n1 (its negative), p3 (q2's positive), n2 and x1;
    # q2 sees p3, n2, p1 p2 (q1's positives), n1 and x1 (listed for no question: counted with other negatives).
    assert "2 questions, 12 top-10 slots; 3 could hold a positive" in printed
    for line in ("| positive | 3 | 25.0% |", "| own negative | 2 | 16.7% |", "| other's positive | 3 | 25.0% |",
                 "| other's negative | 4 | 33.3% |"):
        assert line in printed
    rows = {r["id"]: {t["doc"]: t["label"] for t in r["top10"]} for r in json.loads(out.read_text(encoding="utf-8"))}
    assert rows["q1"] == {"p1": "positive", "p2": "positive", "n1": "own negative", "p3": "other's positive",
                          "n2": "other's negative", "x1": "other's negative"}
    assert rows["q2"]["p3"] == "positive" and rows["q2"]["n2"] == "own negative"
    assert rows["q2"]["p1"] == "other's positive"
