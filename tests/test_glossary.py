"""A knowledge base's domain glossary: terms kept whole, queries expanded on the BM25 side (and shown), entries
mined from the documents, the same use cases from the CLI and REST."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rag_service.admin import glossary as glossary_edits
from rag_service.errors import InvalidInputError
from rag_service.index.glossary import (
    GlossaryEntry,
    GlossaryTokenizer,
    check_glossary,
    entries,
    normalise,
    parse_entry,
    read_file,
)
from rag_service.ingestion.pipeline import Ingestor, SplitOptions
from rag_service.settings import Settings
from rag_service.text.tokenize import get_tokenizer
from rag_service.workspace import Workspace
from tests.conftest import rag_json, run_rag
from tests.glossary_reference import RegexGlossaryTokenizer, large_glossary, long_query, merge_reference

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


SETTINGS = Settings()


def test_entries_are_parsed_and_checked(tmp_path: Path) -> None:
    assert parse_entry(" SFT =有监督微调 = supervised  fine-tuning ", SETTINGS) == (
        "SFT", "有监督微调", "supervised fine-tuning")
    assert parse_entry(["RLHF", "rlhf", "人类反馈强化学习"], SETTINGS) == ("RLHF", "人类反馈强化学习")  # any case
    with pytest.raises(InvalidInputError, match="2-12 different terms"):
        parse_entry("SFT", SETTINGS)
    with pytest.raises(InvalidInputError, match="at most 64"):
        parse_entry(["x" * 65, "y"], SETTINGS)
    with pytest.raises(InvalidInputError, match="not only hyphens"):  # it would match everywhere, as nothing
        parse_entry(["-", "dash"], SETTINGS)
    path = tmp_path / "terms.txt"
    lines = "# domain terms\nSFT = 有监督微调\n\nKYC = know your customer  # banking\n"
    path.write_text(lines + "broken\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"terms\.txt:5"):
        read_file(path, SETTINGS)
    path.write_text(lines, encoding="utf-8")
    assert read_file(path, SETTINGS) == [("SFT", "有监督微调"), ("KYC", "know your customer")]


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


# Characters that reach every matching rule: case, with re's odd pairs (ſ and s, ı and i, İ, the Kelvin sign, ς and
# σ); CJK terms, which match inside words; digits and underscores at a Latin term's edges; every kind of joiner.
_LATIN = "aAbBsSſiIıİKkσςΣ0_"
_CJK = "模型微调学"
_JOINERS = (" ", "  ", "-", "\u2010", "\u2013", "\t", "\n", " - ", "\u3000")


def _random_term(rng: random.Random) -> str:
    alphabet = _LATIN + _CJK if rng.random() < 0.4 else _LATIN
    words = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(1, 3))]
    return "".join(w + rng.choice((" ", "-", "")) for w in words[:-1]) + words[-1]


def _random_text(rng: random.Random, terms: list[str]) -> str:
    parts = []
    for _ in range(rng.randint(1, 25)):
        roll = rng.random()
        if roll < 0.3:  # a term as a document might write it: other case, other joiners
            words = normalise(rng.choice(terms)).split()
            parts.append("".join(w + rng.choice(_JOINERS) for w in words[:-1]) + words[-1])
            if rng.random() < 0.5:
                parts[-1] = parts[-1].upper()
        elif roll < 0.6:
            parts.append(rng.choice(_JOINERS))
        else:
            parts.append("".join(rng.choice(_LATIN + _CJK + ".(，") for _ in range(rng.randint(1, 4))))
    return "".join(parts)


def test_matching_agrees_with_the_regex_it_replaced() -> None:
    """The hash-lookup matcher finds what the regex alternation of every term found (tests/glossary_reference.py):
    same spans, tokens, query tokens and expansions, on 600 random glossaries and texts."""
    base = get_tokenizer()
    rng = random.Random(29)
    matched = 0
    for _ in range(600):
        items = [GlossaryEntry(f"e{n}", tuple(_random_term(rng) for _ in range(rng.randint(2, 4))))
                 for n in range(rng.randint(1, 6))]
        new, old = GlossaryTokenizer(base, items), RegexGlossaryTokenizer(base, items)
        for _ in range(5):
            text = _random_text(rng, [t for e in items for t in e.terms])
            spans = new.matcher.spans(text)
            assert spans == old.spans(text), (items, text)
            assert new(text) == old(text), (items, text)
            assert new.query_tokens(text) == old.query_tokens(text), (items, text)
            assert new.expand(text) == old.expand(text), (items, text)
            matched += bool(spans)
    assert matched > 1000  # the texts do name terms, in all their spellings


def test_a_glossary_at_its_limits_tokenises_a_long_query_in_bounded_time() -> None:
    """2,000 entries of 12 terms (24,000, the default cap): the regex alternation took 56 s for a 4,000-character
    query, and minutes here; the bound is far above what the matcher takes (docs/benchmarks.md 'A large glossary')."""
    items = large_glossary(2000, 12)
    start = time.perf_counter()
    tok = GlossaryTokenizer(get_tokenizer(), items)
    for language in ("zh", "en"):
        query = long_query(language, 4000, items)
        assert tok.expand(query) and tok.query_tokens(query) and tok(query)
    assert time.perf_counter() - start < 5


def test_adding_merges_as_before() -> None:
    """Entries sharing a term are merged as the pairwise comparison merged them (tests/glossary_reference.py), now
    with a term -> entry lookup: same entries, ids, order and spellings on 500 random edits."""
    rng = random.Random(7)
    words = ["SFT", "sft", "S-F-T", "s f t", "RLHF", "KYC", "有监督微调", "微调", "know your customer",
             "Know-Your Customer", "RAG", "检索增强", "x", "y", "z"]

    def batch() -> list[tuple[str, ...]]:
        return [tuple(dict.fromkeys(rng.sample(words, rng.randint(2, 4)))) for _ in range(rng.randint(1, 4))]

    def ids(first: int) -> Callable[[], str]:
        numbers = itertools.count(first)
        return lambda: f"e{next(numbers)}"

    for _ in range(500):
        current, new = glossary_edits.merge([], batch(), 3, ids(0)), batch()
        assert glossary_edits.merge(current, new, 3, ids(100)) == merge_reference(list(current), new, 3, ids(100))


def test_the_glossary_limits_are_settings_and_an_edit_past_them_stores_nothing(tmp_path: Path) -> None:
    small = Settings(data_dir=tmp_path, glossary_max_total_terms=5, glossary_max_entries=3)
    ok = [{"id": "a", "terms": ["SFT", "有监督微调"]}, {"id": "b", "terms": ["KYC", "know your customer", "开户核验"]}]
    assert [e.terms for e in check_glossary(small, ok)] == [("SFT", "有监督微调"),
                                                            ("KYC", "know your customer", "开户核验")]
    for bad, problem in (
            ([*ok, {"id": "c", "terms": ["RAG", "检索增强生成"]}], "at most 5 terms in all"),
            ([{"id": str(n), "terms": ["x", "y"]} for n in range(4)], "at most 3 entries"),
            ([ok[0], {"id": "a", "terms": ["x", "y"]}], "'a' is used twice"),
            ([{"id": "a", "terms": ["SFT", "sft", "x"]}], "repeated"),
            ([{"id": "a", "terms": ["SFT"]}], "2-12 different terms"),
            ([{"id": "a", "terms": "SFT = x"}], "expected"),
            ({"id": "a"}, "a list of entries")):
        with pytest.raises(InvalidInputError, match=problem):
            check_glossary(small, bad)
    ws = Workspace(small)
    try:
        kb = ws.catalog.create_kb("limits", embedder="e5", dim=384, splitter="recursive", chunk_size=400,
                                  chunk_overlap=0)
        glossary_edits.add(ws, kb, [("SFT", "有监督微调"), ("KYC", "know your customer", "开户核验")])
        with pytest.raises(InvalidInputError, match="at most 5 terms in all"):
            glossary_edits.add(ws, kb, [("RAG", "检索增强生成")])
        with pytest.raises(InvalidInputError, match="at most 5 terms in all"):  # merged into an entry: as many terms
            glossary_edits.add(ws, kb, [("SFT", "supervised fine-tuning")])
        assert [e.terms for e in entries(ws.catalog.get_kb(kb.id))] == [
            ("SFT", "有监督微调"), ("KYC", "know your customer", "开户核验")]
    finally:
        ws.close()


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
