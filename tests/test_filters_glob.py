"""A source glob means the same on both catalogs: PostgreSQL gets the glob as a POSIX regex (``glob_regex``), SQLite
evaluates GLOB itself. Checked against the real SQLite GLOB over awkward patterns and names."""

from __future__ import annotations

import re
import sqlite3

import pytest

from rag_service.errors import InvalidInputError
from rag_service.storage.filters import glob_regex

NAMES = ["handbook/a.md", "handbook/b.txt", "notes/c.md", "HANDBOOK/a.md", "a\\", "a", "]x", "[[:foo:]]", "f]",
         ":", "-", "x-y", "图书馆.md", "图.txt", "a.b", "a+b", "(x)", "a$b", "^a", "|", "😀.md", "b", "z", "\n"]
PATTERNS = ["*", "handbook/*", "*.md", "handbook/[a-b].???", "handbook/[^a]*", "[[:foo:]]*", "a\\", "]*", "[]]x",
            "[^]]*", "[a-]", "[-a]*", "*[一-龥]*", "图?.txt", "a.b", "a+b", "(x)", "a$b", "^a", "|", "[😀]*", "?",
            "[!x]*", "*\\*", "[.]*", "[\\]*", "x-y", "[a-c-e]", ""]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_the_regex_matches_what_sqlite_glob_matches(pattern: str) -> None:
    db = sqlite3.connect(":memory:")
    regex = re.compile(glob_regex(pattern), re.DOTALL)
    for name in NAMES:
        expected = db.execute("SELECT ? GLOB ?", (name, pattern)).fetchone()[0] == 1
        assert bool(regex.fullmatch(name)) == expected, (pattern, name, glob_regex(pattern))


@pytest.mark.parametrize(("pattern", "problem"), [("[z-a]*", "reversed"), ("x[", "not closed"), ("[^]*", "not closed"),
                                                   ("[abc", "not closed")])
def test_a_glob_sqlite_would_read_as_nothing_is_refused(pattern: str, problem: str) -> None:
    with pytest.raises(InvalidInputError, match=problem):
        glob_regex(pattern)


def test_no_character_of_the_pattern_reaches_the_regex_as_syntax() -> None:
    regex = glob_regex("a.b(c)|d$^e\\[x]{2}")
    assert re.fullmatch(r"[\^$.*\[\]0-9a-zA-Z\\u-]*", regex)  # letters, digits, \uXXXX escapes and our own syntax
    assert "(" not in regex and "|" not in regex and "{" not in regex
