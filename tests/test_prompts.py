import pytest

from rag_service import prompts
from rag_service.errors import ConfigError
from rag_service.generation import parse_citations
from rag_service.records import Chunk


def test_bundled_templates_load_and_render() -> None:
    for lang in ("en", "zh"):
        t = prompts.load(f"answer.{lang}")
        assert t.variables == {"passages", "question"}
        msgs = t.messages(passages="[1] x", question="Q?")
        assert [m["role"] for m in msgs] == ["system", "user"]
        assert "Q?" in msgs[1]["content"] and "{{" not in msgs[1]["content"]
        assert prompts.load(f"refusal.{lang}").render()["message"]


def test_undeclared_variable_fails_at_load_time() -> None:
    text = "# variables: question\n=== user\n{{question}} {{pasages}}\n"
    with pytest.raises(ConfigError, match="undeclared pasages"):
        prompts.parse("bad", text)


def test_missing_declaration_fails() -> None:
    with pytest.raises(ConfigError, match="variables"):
        prompts.parse("bad", "=== user\n{{question}}\n")


def test_values_are_not_reparsed() -> None:
    t = prompts.parse("t", "# variables: a, b\n=== user\n{{a}} / {{b}}\n")
    assert t.render(a="{{b}}", b="x")["user"] == "{{b}} / x"


def test_override_dir_wins(tmp_path) -> None:
    (tmp_path / "refusal.en.txt").write_text("# variables:\n=== message\nNope.\n")
    assert prompts.load("refusal.en", tmp_path).render()["message"] == "Nope."


def _chunk(i: int) -> Chunk:
    return Chunk(id=f"d:{i}", doc_id="d", source="s.md", text=f"text {i}", position=i, start=0, end=6)


def test_citations_keep_valid_markers_and_drop_the_rest() -> None:
    packed = [_chunk(0), _chunk(1)]
    text, cites = parse_citations("A is true [2]. B too [1, 7]. C【3】.", packed)
    assert text == "A is true [2]. B too [1]. C."
    assert [(c.n, c.chunk.id) for c in cites] == [(2, "d:1"), (1, "d:0")]
