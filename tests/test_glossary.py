"""A knowledge base's domain glossary: terms kept whole, queries expanded on the BM25 side (and shown), entries
mined from the documents, the same use cases from the CLI and REST."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_service.errors import InvalidInputError
from rag_service.index.glossary import GlossaryEntry, GlossaryTokenizer, parse_entry, read_file
from rag_service.ingestion.pipeline import Ingestor, SplitOptions
from rag_service.settings import Settings
from rag_service.text.tokenize import get_tokenizer
from rag_service.workspace import Workspace
from tests.conftest import rag_json, run_rag

FAQ = """大模型训练常见问题

💡 为什么RLHF之后模型话变多了?
- 奖励模型偏爱详细、礼貌的回答
- 长回答在人工打分中得分更高

💡 有监督微调(SFT)需要多少数据?
- 通常几千到几万条高质量指令数据即可
- 数据质量比数量更重要

💡 什么是KYC流程?
- 开户时核验客户身份与资料
"""
OTHER = """模型部署说明

- 推理服务应当部署在离用户较近的机房
- 模型回答变长时，延迟也会上升，应当设置最大输出长度
- 人类标注员需要接受培训，反馈表格统一使用模板
"""


def test_entries_are_parsed_and_checked(tmp_path: Path) -> None:
    assert parse_entry(" SFT =有监督微调 = supervised  fine-tuning ") == ("SFT", "有监督微调", "supervised fine-tuning")
    assert parse_entry(["RLHF", "rlhf", "人类反馈强化学习"]) == ("RLHF", "人类反馈强化学习")  # case-insensitive dups
    with pytest.raises(InvalidInputError, match="2-12 different terms"):
        parse_entry("SFT")
    with pytest.raises(InvalidInputError, match="at most 64"):
        parse_entry(["x" * 65, "y"])
    path = tmp_path / "terms.txt"
    entries = "# domain terms\nSFT = 有监督微调\n\nKYC = know your customer  # banking\n"
    path.write_text(entries + "broken\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"terms\.txt:5"):
        read_file(path)
    path.write_text(entries, encoding="utf-8")
    assert read_file(path) == [("SFT", "有监督微调"), ("KYC", "know your customer")]


def test_terms_stay_whole_and_queries_are_expanded() -> None:
    base = get_tokenizer()
    tok = GlossaryTokenizer(base, [GlossaryEntry("a", ("SFT", "有监督微调", "supervised fine-tuning")),
                                   GlossaryEntry("b", ("RLHF", "人类反馈强化学习"))])
    assert "有监督微调" not in base("有监督微调需要多少数据")  # jieba alone cuts it into pieces
    assert "有监督微调" in tok("有监督微调需要多少数据")
    assert "supervised fine tuning" in tok("How much data does Supervised  Fine-Tuning need?")
    # hyphens join words as spaces do, both ways: one whole-term token for every spelling
    assert "supervised fine tuning" in tok("supervised fine tuning") and "sft" in tok.query_tokens(
        "how long does supervised-fine-tuning take")
    assert [e.matched for e in tok.expand("supervised fine–tuning")] == ["supervised fine-tuning"]
    assert "sft" not in tok("upload it over SFTP")  # Latin terms only at word boundaries
    assert tok.version != base.version and GlossaryTokenizer(base, []).version == base.version
    expansions = tok.expand("做完人类反馈强化学习以后，模型为什么更啰嗦了？")
    assert [(e.matched, e.added) for e in expansions] == [("人类反馈强化学习", ("RLHF",))]
    assert tok.expansion_tokens(expansions) == ["rlhf"]
    assert tok.expand("什么是 SFT") and not tok.expand("nothing relevant")


@pytest.mark.slow
def test_a_paraphrase_finds_its_answer_once_the_glossary_names_the_abbreviation(tmp_path: Path) -> None:
    data = tmp_path / "data"
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "faq.txt").write_text(FAQ, encoding="utf-8")
    (docs / "deploy.txt").write_text(OTHER, encoding="utf-8")
    ws = Workspace(Settings(data_dir=data))
    try:  # in this process (what `rag ingest` runs): the glossary commands and searches below are the CLI under test
        ingestor, _ = Ingestor.open(ws, "g", SplitOptions(chunk_size=60, chunk_overlap=0))
        assert [r.status for r in ingestor.run([docs])] == ["added", "added"]
    finally:
        ws.close()
    question = "做完人类反馈强化学习以后，模型为什么更啰嗦了？"

    def top(mode: str = "bm25") -> tuple[str, dict]:
        out = rag_json("search", "--kb", "g", "--mode", mode, "--explain", question, data_dir=data)
        if not out["hits"]:
            return "", out
        best = out["hits"][0]  # the question line is the section's heading path: part of what was found
        return "\n".join([*best.get("headings", []), best["text"]]), out

    before, out = top()
    assert "RLHF" not in before and out["expansions"] == []

    added = rag_json("glossary", "add", "--kb", "g", "RLHF = 人类反馈强化学习", data_dir=data)["entries"]
    assert [e["terms"] for e in added] == [["RLHF", "人类反馈强化学习"]]
    after, out = top()
    assert "RLHF" in after
    assert out["expansions"] == [{"matched": "人类反馈强化学习", "added": ["RLHF"]}]
    assert "rlhf" in out["hits"][0]["explain"]["matched_terms"]
    assert "RLHF" in top("hybrid")[0]
    text = run_rag("search", "--kb", "g", "--explain", question, data_dir=data).stdout
    assert "glossary: 人类反馈强化学习 -> RLHF" in text

    # Mined from the documents: 有监督微调(SFT) becomes a suggestion, accepted on request; merged, not duplicated.
    suggested = rag_json("glossary", "suggest", "--kb", "g", data_dir=data)
    assert [s["terms"] for s in suggested["suggestions"]] == [["SFT", "有监督微调"]]
    assert rag_json("glossary", "suggest", "--kb", "g", "--accept", data_dir=data)["accepted"]
    assert rag_json("glossary", "suggest", "--kb", "g", data_dir=data)["suggestions"] == []
    merged = rag_json("glossary", "add", "--kb", "g", "SFT = supervised fine-tuning", data_dir=data)["entries"]
    assert sorted(e["terms"] for e in merged) == [["RLHF", "人类反馈强化学习"],
                                                  ["SFT", "有监督微调", "supervised fine-tuning"]]
    entry = next(e for e in merged if e["terms"][0] == "RLHF")
    run_rag("glossary", "remove", "--kb", "g", entry["id"], data_dir=data)
    assert "RLHF" not in top()[0]  # re-tokenised without the entry: back to where it started
    missing = run_rag("glossary", "remove", "--kb", "g", "nope", data_dir=data, check=False)
    assert missing.returncode != 0 and "no glossary entry 'nope'" in missing.stderr
