import pytest

from rag_service import prompts
from rag_service.answering.citations import validate
from rag_service.errors import ConfigError
from rag_service.records import Chunk


def test_bundled_templates_load_and_render() -> None:
    for lang in ("en", "zh"):
        t = prompts.load(f"answer.{lang}")
        assert t.variables == {"passages", "question"}
        msgs = t.messages(passages="[1] x", question="Q?")
        assert msgs[0]["role"] == "system" and msgs[-1]["role"] == "user"
        assert "Q?" in msgs[-1]["content"] and all("{{" not in m["content"] for m in msgs)
        assert prompts.load(f"refusal.{lang}").text()


def test_undeclared_variable_fails_at_load_time() -> None:
    text = "# variables: question\n=== user\n{{question}} {{pasages}}\n"
    with pytest.raises(ConfigError, match="undeclared pasages"):
        prompts.parse("bad", text)


def test_missing_declaration_fails() -> None:
    with pytest.raises(ConfigError, match="variables"):
        prompts.parse("bad", "=== user\n{{question}}\n")


def test_values_are_not_reparsed() -> None:
    t = prompts.parse("t", "# variables: a, b\n=== user\n{{a}} / {{b}}\n")
    assert t.text(a="{{b}}", b="x") == "{{b}} / x"


def test_override_dir_wins(tmp_path) -> None:
    (tmp_path / "refusal.en.txt").write_text("# variables:\n=== message\nNope.\n")
    assert prompts.load("refusal.en", tmp_path).text() == "Nope."


def _chunk(i: int, text: str) -> Chunk:
    return Chunk(id=f"d:{i}", doc_id="d", source="s.md", text=text, position=i, start=0, end=len(text))


PACKED = [
    _chunk(0, "The museum shop sells postcards and maps."),
    _chunk(1, "The museum opens at 9:00 and closes at 17:00, except Monday."),
    _chunk(2, "图书馆每人最多可以同时借阅八本书，借期为二十一天。"),
]


def test_valid_citation_is_kept() -> None:
    text, cites, checks = validate("The museum opens at 9:00 [2].", PACKED)
    assert text == "The museum opens at 9:00 [2]."
    assert [(c.n, c.chunk.id) for c in cites] == [(2, "d:1")]
    assert checks[0].how == "model"


def test_wrong_and_out_of_range_markers_are_corrected() -> None:
    text, cites, checks = validate("The shop sells maps [2][9]. 每人最多借阅八本书【1】。", PACKED)
    assert text == "The shop sells maps [1]. 每人最多借阅八本书[3]。"
    assert [c.n for c in cites] == [1, 3]
    assert [c.how for c in checks] == ["corrected", "corrected"]


def test_missing_marker_is_attributed_and_unsupported_claims_get_none() -> None:
    text, cites, checks = validate("The museum closes at 17:00. The capital of France is Paris [1].", PACKED)
    assert text == "The museum closes at 17:00 [2]. The capital of France is Paris."
    assert [c.n for c in cites] == [2]
    assert [c.how for c in checks] == ["attributed", "unsupported"]


def test_marker_written_after_the_full_stop_leaves_one_full_stop() -> None:
    text, _, _ = validate("The museum opens at 9:00. [2]. 每人最多借阅八本书。[3]。", PACKED)
    assert text == "The museum opens at 9:00 [2]. 每人最多借阅八本书[3]。"


def test_arabic_digits_are_supported_by_chinese_numerals() -> None:
    text, _, checks = validate("每人最多借阅8本书[3]。借期21天。", PACKED)
    assert text == "每人最多借阅8本书[3]。借期21天[3]。"
    assert [c.how for c in checks] == ["model", "attributed"]
