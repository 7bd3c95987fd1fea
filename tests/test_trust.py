"""Trust with the real default model on a short, FAQ-style document: a question that only its table of contents
names is refused with related passages; an answerable one gets a cited, full-sentence answer; a list answer
keeps its items. What each policy does with a given draft, and which checks run, is pinned with a scripted
generator in tests/test_answer_flow.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag_service.answering.generation import Answerer
from rag_service.ingestion.pipeline import Ingestor
from rag_service.settings import Settings
from rag_service.workspace import Workspace

pytestmark = pytest.mark.llm

FAQ = """Harbour Allotments - member FAQ
Posted by admin on 2024-03-02 | Share | Print

Contents
1. How much does a plot cost?
2. Can I keep bees on my plot?
3. What tools can I borrow?
4. Are bonfires allowed?

1. How much does a plot cost?
A full plot costs 60 euros a year and a half plot costs 35 euros a year, payable every March.

3. What tools can I borrow?
The tool shed lends members these tools:
- wheelbarrows
- a petrol strimmer
- a rotavator, booked on the sheet in the pavilion

4. Are bonfires allowed?
No. Bonfires are not allowed anywhere on the site; green waste goes to the compost bays by the gate.

Back to top
"""

FAQ_ZH = """港湾社区菜园 · 常见问题
目录
1. 一块地一年多少钱？
2. 可以在地里养蜂吗？
3. 可以借哪些工具？

1. 一块地一年多少钱？
整块地每年 600 元，半块地每年 350 元，每年三月缴纳。

3. 可以借哪些工具？
工具房可以借用：
- 手推车
- 汽油割草机
- 旋耕机（需在凉亭登记）

4. 菜地生虫了有哪些办法？
- 在地边种万寿菊
- 挂黄色粘虫板
- 用防虫网把菜畦罩起来
"""


@pytest.fixture(scope="module")
def faq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Answerer]:
    folder = tmp_path_factory.mktemp("faq")
    (folder / "allotments.txt").write_text(FAQ, encoding="utf-8")
    (folder / "菜园.txt").write_text(FAQ_ZH, encoding="utf-8")
    ws = Workspace(Settings(data_dir=folder / "data"))
    ingestor, _ = Ingestor.open(ws, "faq")  # in this process: the CLI is not what these tests test
    assert [r.status for r in ingestor.run([folder / "allotments.txt", folder / "菜园.txt"])] == ["added", "added"]
    yield Answerer(ws, ws.catalog.get_kb("faq"))
    ws.close()


@pytest.mark.parametrize(("question", "refusal"), [
    ("Are members allowed to keep beehives on their allotment?", "I cannot find the answer"),
    ("菜园里允许养蜜蜂吗？", "无法回答"),
])
def test_a_question_only_the_contents_name_is_refused_with_related_passages(
        faq: Answerer, question: str, refusal: str) -> None:
    answer = faq.ask(question)
    assert answer.refused and refusal in answer.answer, answer.trace.get("raw_completion")
    assert not answer.citations and not answer.claims and not answer.grounded
    assert 1 <= len(answer.related) <= 3
    assert answer.to_json()["related"][0].keys() >= {"chunk_id", "doc_id", "source", "text", "score"}


def test_an_answerable_question_gets_a_cited_full_sentence(faq: Answerer) -> None:
    answer = faq.ask("What does a full plot cost per year?")
    assert not answer.refused and "60" in answer.answer, answer.trace.get("raw_completion")
    assert answer.citations and all(f"[{c.n}]" in answer.answer for c in answer.citations)
    prose = re.sub(r"\s*\[\d+\]", "", answer.answer)
    assert len(prose.split()) >= 5 and "plot" in prose.lower(), prose  # reads without the question
    assert all(c.supported for c in answer.claims)


def test_a_list_answer_keeps_its_items(faq: Answerer) -> None:
    answer = faq.ask("Which tools can members borrow from the shed?")
    assert not answer.refused, answer.trace.get("raw_completion")
    text = answer.answer.lower()
    assert all(item in text for item in ("wheelbarrow", "strimmer", "rotavator")), answer.answer
    assert answer.citations


def test_a_list_under_a_question_line_is_delivered_with_its_items(faq: Answerer) -> None:
    """Items with no lead-in, only the question line above them: judged as a list under that line."""
    answer = faq.ask("菜地里的虫子怎么防治？")
    assert not answer.refused, (answer.trace.get("raw_completion"), answer.trace.get("verification"))
    assert sum(item in answer.answer for item in ("万寿菊", "粘虫板", "防虫网")) >= 2, answer.answer
    assert answer.citations and all(c.supported for c in answer.claims if not c.lead_in)


def test_an_english_question_over_a_chinese_passage_is_answered_in_english(sample_dir: Path) -> None:
    """The sample KB holds the library's rules in Chinese only: the question is also searched in Chinese, and the
    English answer is matched to its Chinese passage by meaning."""
    ws = Workspace(Settings(data_dir=sample_dir))
    try:
        answer = Answerer(ws, ws.catalog.get_kb("samples")).ask("How many books can a reader borrow at once?")
    finally:
        ws.close()
    assert not answer.refused, (answer.trace.get("raw_completion"), answer.trace.get("verification"))
    assert re.search(r"\b(8|eight)\b", answer.answer.lower()), answer.answer
    assert not re.search(r"[\u4e00-\u9fff]", answer.answer), answer.answer  # English, not a Chinese quote
    assert [c.chunk.source.rsplit("/", 1)[-1] for c in answer.citations] == ["xinghe-library.md"]
    assert answer.trace["translation"] and re.search(r"[\u4e00-\u9fff]", answer.trace["translation"])
