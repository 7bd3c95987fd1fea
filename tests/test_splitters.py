"""Splitters: exact offsets, size bounds, whole sentences, heading paths, topic breaks, parent/child links."""

from __future__ import annotations

import re
import zlib
from itertools import pairwise

import numpy as np
import pytest

from rag_service.errors import ConfigError
from rag_service.ingestion.splitters import SPLITTERS, Splitter, make_splitter, sentence_spans
from rag_service.records import Chunk, Document

ZH = ("公司的差旅政策适用于全体员工。出差前须在系统中提交申请并获得主管批准！机票应选择经济舱，特殊情况需另行说明。"
      "住宿标准按城市等级执行，一线城市每晚不超过六百元。餐费补贴为每天一百元，不需要提供发票？"
      "市内交通优先使用公共交通工具。出租车费用须附上行程单才能报销！报销申请应在返回后十个工作日内提交。"
      "逾期提交的申请将由财务部门单独审核。如有疑问，请联系人力资源部的差旅专员。")

LONG = "这是一个非常长的句子，没有任何句号，它一直在描述餐费的规则，包括早餐午餐和晚餐的不同标准" * 2

MIXED = f"""Intro before any heading. Pi is 3.14 and Dr. Smith agrees.

# Handbook

{ZH}

## Travel

Trains are booked by the office. Flights need approval! Is a taxi fine? Only at night.

```bash
# not a heading
echo "book"
```

### Meals

{LONG}

## Leave

Annual leave is twenty days.
"""

CATS = ["Cats sleep most of the day and cats purr.", "A cat chases mice, and cats love warm cat beds.",
        "Cats groom their cat fur every day.", "Kittens and cats play with cat toys."]
DATABASES = ["Databases store rows in database tables.", "A database index makes database queries fast.",
             "Databases replicate tables to database servers.", "SQL queries read database tables and rows."]


def fake_embed(texts: list[str]) -> np.ndarray:
    """Deterministic stand-in for an embedder: hashed bag of words (Latin) and characters (CJK), L2-normalised."""
    vectors = np.zeros((len(texts), 256), dtype=np.float32)
    for row, text in enumerate(texts):
        for token in re.findall(r"[a-z]+|[^\W\d_a-z]", text.lower()):
            vectors[row, zlib.crc32(token.encode()) % 256] += 1
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def doc(text: str, **metadata: object) -> Document:
    return Document(id="d1", source="test.md", text=text, sha256="0" * 64, metadata=dict(metadata))


def split(name: str, text: str, size: int, overlap: int, **kw: object) -> list[Chunk]:
    return make_splitter(name, size, overlap, embed=fake_embed, **kw).split(doc(text))


def indexed(chunks: list[Chunk]) -> list[Chunk]:
    return [c for c in chunks if c.metadata.get("role") != "parent"]


def ends_sentence(text: str, chunk: Chunk) -> bool:
    return chunk.end == len(text) or chunk.text[-1] in "。！？"


@pytest.mark.parametrize("name", sorted(SPLITTERS))
def test_every_splitter_keeps_the_chunk_contract(name: str) -> None:
    d = doc(MIXED, format="md", page_starts=[0, 500])
    splitter = make_splitter(name, 80, 20, embed=fake_embed)
    chunks = splitter.split(d)
    assert chunks and chunks == splitter.split(d)  # deterministic
    assert len({c.id for c in chunks}) == len(chunks)
    for c in chunks:
        assert d.text[c.start:c.end] == c.text and c.text == c.text.strip() and c.text
        assert (c.doc_id, c.source) == (d.id, d.source)
        assert c.metadata["format"] == "md" and "page_starts" not in c.metadata
    kids = indexed(chunks)
    assert [c.id for c in kids] == [f"d1:{i}" for i in range(len(kids))]
    assert [c.position for c in kids] == list(range(len(kids)))
    assert all(len(c.text) <= 80 for c in kids)
    assert [c.start for c in kids] == sorted(c.start for c in kids)


@pytest.mark.parametrize("name", sorted(SPLITTERS))
def test_blank_document_gives_no_chunks(name: str) -> None:
    assert split(name, " \n\n \u3000", 50, 10) == []


def test_sentence_segmentation_keeps_decimals_abbreviations_and_closing_quotes() -> None:
    text = '他说：“好的。”然后走了！价格是3.14元。Dr. Smith came at 3 p.m. today. He said "Stop." Then left!\n\nLast'
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "他说：“好的。”", "然后走了！", "价格是3.14元。", "Dr. Smith came at 3 p.m. today.", 'He said "Stop."',
        "Then left!", "Last"]


def test_sentence_splitter_never_cuts_a_chinese_sentence_and_overlaps_whole_sentences() -> None:
    sentences = {ZH[a:b] for a, b in sentence_spans(ZH)}
    starts = {a for a, _ in sentence_spans(ZH)}
    chunks = split("sentence", ZH, 50, 20)
    assert len(chunks) > 2
    overlaps = 0
    for prev, c in pairwise(chunks):
        assert c.start in starts and ends_sentence(ZH, c) and len(c.text) <= 50
        if c.start < prev.end:
            overlaps += 1
            repeated = ZH[c.start:prev.end]
            assert len(repeated) <= 20 and all(s in sentences for s in re.findall(r"[^。！？]+[。！？]", repeated))
    assert overlaps > 0
    assert any(c.text.endswith(("！", "？")) for c in chunks)  # not only 。 ends a sentence


def test_sentence_splitter_cuts_only_a_sentence_longer_than_the_chunk() -> None:
    long = "这是一个很长的句子，" * 12 + "到此结束。"
    text = f"短句一。{long}短句二。"
    chunks = split("sentence", text, 40, 10)
    long_start = text.index(long)
    inside = [c for c in chunks if c.start >= long_start and c.end <= long_start + len(long)]
    assert len(inside) >= 3 and all(len(c.text) <= 40 for c in chunks)
    assert chunks[0].text == "短句一。" and chunks[-1].text == "短句二。"


def test_recursive_splitter_prefers_chinese_full_stops() -> None:
    chunks = split("recursive", ZH, 60, 0)
    assert len(chunks) > 2 and all(c.text.endswith("。") for c in chunks)


def test_recursive_offsets_are_exact_when_text_repeats_and_sizes_are_not_characters() -> None:
    # LangChain's own start_index is off by whole sentences here (and -1 for some pieces).
    text = " ".join(f"Row {i % 3} is the same row." for i in range(30))
    chunks = make_splitter("recursive", 15, 8, length=lambda s: len(s.split())).split(doc(text))
    assert len(chunks) > 5 and all(text[c.start:c.end] == c.text for c in chunks)
    assert all(prev.start < c.start < prev.end for prev, c in pairwise(chunks))  # the overlap is where it was


@pytest.mark.parametrize("name", ["recursive", "sentence"])
def test_length_function_is_honoured(name: str) -> None:
    text = " ".join(f"Sentence number {i} has exactly seven words here." for i in range(12))

    def words(s: str) -> int:
        return len(s.split())

    by_words = make_splitter(name, 15, 0, length=words).split(doc(text))
    by_chars = make_splitter(name, 15, 0).split(doc(text))
    assert all(words(c.text) <= 15 for c in by_words) and max(len(c.text) for c in by_words) > 15
    assert len(by_words) < len(by_chars)


def test_markdown_heading_paths_and_code_fences() -> None:
    chunks = split("markdown", MIXED, 400, 40)
    starts = [([], "Intro"), (["Handbook"], ZH), (["Handbook", "Travel"], "Trains"),
              (["Handbook", "Travel", "Meals"], LONG), (["Handbook", "Leave"], "Annual")]
    assert len(chunks) == len(starts)
    for c, (headings, start) in zip(chunks, starts, strict=True):
        assert c.metadata["headings"] == headings and c.text.startswith(start)
    travel = chunks[2]
    assert "# not a heading" in travel.text and travel.text.endswith("```")
    assert not any(c.text.lstrip().startswith("#") for c in chunks)  # heading lines live in metadata only


def test_markdown_splits_a_big_section_by_sentences_under_one_heading() -> None:
    text = f"# Policy\n\n{ZH}\n\n## Other\n\nShort."
    chunks = split("markdown", text, 50, 0)
    policy = [c for c in chunks if c.metadata["headings"] == ["Policy"]]
    assert len(policy) > 2 and all(c.text[-1] in "。！？" for c in policy)
    assert chunks[-1].text == "Short." and chunks[-1].metadata["headings"] == ["Policy", "Other"]


def test_semantic_splitter_breaks_between_topics() -> None:
    calls: list[int] = []

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return fake_embed(texts)

    text = " ".join(CATS + DATABASES)
    chunks = make_splitter("semantic", 1000, 100, embed=embed).split(doc(text))
    assert calls == [8]  # one batch of all sentences
    boundary = text.index(DATABASES[0])
    assert all(c.end <= boundary or c.start >= boundary for c in chunks)
    assert any(c.end <= boundary for c in chunks) and any(c.start >= boundary for c in chunks)
    no_breaks = make_splitter("semantic", 1000, 100, embed=embed, breakpoint_percentile=0).split(doc(text))
    assert [c.text for c in no_breaks] == [text]


def test_semantic_splitter_is_size_bounded() -> None:
    chunks = split("semantic", " ".join(CATS * 3), 100, 0, breakpoint_percentile=0)
    assert len(chunks) > 1 and all(len(c.text) <= 100 and c.text.endswith(".") for c in chunks)


def test_parent_child_links_children_to_enclosing_parents() -> None:
    chunks = split("parent_child", MIXED, 60, 15, parent_size=200)
    parents = [c for c in chunks if c.metadata["role"] == "parent"]
    children = [c for c in chunks if c.metadata["role"] == "child"]
    assert len(parents) > 1 and len(children) > len(parents) and len(parents) + len(children) == len(chunks)
    assert [(p.id, p.position) for p in parents] == [(f"d1:p{k}", k) for k in range(len(parents))]
    assert all(len(p.text) <= 200 for p in parents)
    by_id = {p.id: p for p in parents}
    for child in children:
        parent = by_id[child.metadata["parent_id"]]
        assert parent.start <= child.start < child.end <= parent.end and len(child.text) <= 60
    assert all(by_id[c.metadata["parent_id"]].text for c in children)
    assert make_splitter("parent_child", 50, 10).parent_size == 200  # default: 4 x chunk_size


@pytest.mark.parametrize(("name", "size", "overlap", "params", "message"), [
    ("recursive", 0, 0, {}, "chunk_size"),
    ("sentence", 100, -1, {}, "chunk_overlap"),
    ("markdown", 100, 100, {}, "chunk_overlap"),
    ("semantic", 100, 10, {"breakpoint_percentile": 101}, "breakpoint_percentile"),
    ("parent_child", 100, 10, {"parent_size": 100}, "parent_size"),
    ("recursive", 100, 10, {"parent_size": 400}, "parent_size"),
    ("chapters", 100, 10, {}, "choose from markdown, parent_child, recursive, semantic, sentence"),
])
def test_bad_parameters_are_config_errors(name: str, size: int, overlap: int, params: dict[str, object],
                                          message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_splitter(name, size, overlap, embed=fake_embed, **params)


def test_semantic_splitter_needs_an_embedder() -> None:
    with pytest.raises(ConfigError, match="embed"):
        make_splitter("semantic", 100, 10)
    assert isinstance(make_splitter("sentence", 100, 10), Splitter)  # the others do not


SCRAPED_FAQ = """澄湾内部 FAQ

目录
💡 为什么RLHF之后模型话变多了?
💡 SFT 数据要准备多少条?
第二章 集群

💡 为什么RLHF之后模型话变多了?
做完 RLHF 以后回答明显变长，通常是下面几个因素叠加：
- 奖励模型本身偏爱长文本，分数和回答字数明显相关
- 标注员给详细的回答打了更高的分
- 红队数据里大量回答以免责声明开头
- 多轮对话样本只截取了最长的那几轮

💡 SFT 数据要准备多少条?
通用对话能力 2 万条左右就能拉起来。

第二章 集群
2.1 申请
1) 在资源平台提交工单
2) 组长审批后排队
"""


def test_structure_splitter_carries_the_question_into_every_chunk_of_its_answer() -> None:
    chunks = split("structure", SCRAPED_FAQ, 60, 0)
    by_text = {c.text: c.metadata.get("headings") for c in chunks}
    rlhf = [c for c in chunks if c.metadata.get("headings") == ["澄湾内部 FAQ", "为什么RLHF之后模型话变多了?"]]
    assert len(rlhf) >= 2  # the list did not fit in one chunk: every part still names its question
    assert any("红队数据" in c.text for c in rlhf) and all("为什么RLHF之后模型话变多了?" in c.index_text for c in rlhf)
    assert by_text["通用对话能力 2 万条左右就能拉起来。"] == ["澄湾内部 FAQ", "SFT 数据要准备多少条?"]
    assert by_text["1) 在资源平台提交工单\n2) 组长审批后排队"] == ["第二章 集群", "2.1 申请"]
    # The table of contents is in no chunk: it would match every question it lists.
    assert not any("目录" in c.text or "💡" in c.text for c in chunks) and len(chunks) == 4


def test_structure_splitter_reads_pdf_text_without_blank_lines_and_markdown_still_works() -> None:
    pdf_text = ("Admin Help\nContents\n1 Getting Started\nQ: How do I invite people?\n2 Billing\n"
                "Q: Why was my card declined?\n1 Getting Started\nQ: How do I invite people?\n"
                "Open Admin Console and paste the addresses.\n2 Billing\nQ: Why was my card declined?\n"
                "- The card has expired\n- The bank blocked it\n")
    chunks = split("structure", pdf_text, 200, 0)
    assert [(c.metadata.get("headings"), c.text) for c in chunks] == [
        (None, "Admin Help"),  # a title with no body of its own is kept, not dropped
        (["1 Getting Started", "Q: How do I invite people?"], "Open Admin Console and paste the addresses."),
        (["2 Billing", "Q: Why was my card declined?"], "- The card has expired\n- The bank blocked it"),
    ]
    md = split("structure", "# Guide\n\n## Setup\n\nRun the installer.\n", 200, 0)
    assert [(c.metadata.get("headings"), c.text) for c in md] == [(["Guide", "Setup"], "Run the installer.")]


def test_structure_splitter_loses_no_line_and_reads_no_code_as_structure() -> None:
    # Questions with no answer under them (a list of open questions) were in no chunk at all.
    questions = "Open questions\n\nWho owns the budget?\nWhen is the review?\n- next week\nWhy?\n"
    bare = split("structure", questions, 200, 0)
    assert [(c.metadata.get("headings"), c.text) for c in bare] == [
        (None, "Open questions"),  # followed by a question, not by content: not a heading
        (None, "Who owns the budget?"),
        (["When is the review?"], "- next week"),
        (None, "Why?"),
    ]
    # A '# comment' or a line ending in '?' inside fenced code opens no section.
    code = "Run this:\n```python\n# count the rows\nrows = query('any rows?')\n```\nThen restart."
    assert [(c.metadata.get("headings"), c.text) for c in split("structure", code, 200, 0)] == [(None, code)]
    # Every non-blank line outside a table of contents is in a chunk's text or its heading path.
    for text in (SCRAPED_FAQ, MIXED, ZH, "Q: a?\nQ: b?\n\n第一章 总则\n第二章 附则\n一、范围\n"):
        chunks = split("structure", text, 60, 0)
        indexed = "\n".join(c.index_text for c in chunks)
        toc = {"目录", "💡 为什么RLHF之后模型话变多了?", "💡 SFT 数据要准备多少条?", "第二章 集群"}
        for line in text.split("\n"):
            body = re.sub(r"^[#\s💡]+", "", line.strip())
            assert not body or line.strip() in toc or body[:12] in indexed, line


def test_structure_splitter_leaves_plain_prose_as_sentences() -> None:
    prose = "星河图书馆周一闭馆。其余每天九点开放，晚上八点关门。每位读者最多借八本书，借期三十天。"
    assert [c.text for c in split("structure", prose, 30, 0)] == [c.text for c in split("sentence", prose, 30, 0)]
