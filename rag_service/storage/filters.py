"""Search filters, applied identically on the BM25 and the vector path.

``doc_id`` (one or more ids, comma-separated), ``source`` (a glob over source names, e.g.
``handbook/*.md``) and any chunk metadata field by equality (``page=2``, ``format=pdf``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rag_service.errors import InvalidInputError

if TYPE_CHECKING:
    from rag_service.settings import Settings

Scalar = str | int | float | bool
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# Chunk metadata is stored as SQLite/Chroma 64-bit integers: a larger number can match nothing, and binding it
# raised OverflowError (a 500) before this check.
_INT64 = (-(2**63), 2**63 - 1)


def _number(key: str, value: int | float) -> int | float:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
        raise InvalidInputError(f"filter {key!r}: {str(value)[:20]}... is out of the 64-bit integer range")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInputError(f"filter {key!r}: the number must be finite")
    return value


def _typed(key: str, value: str) -> Scalar:
    """'2' is the integer 2 and 'true' the boolean, as stored in chunk metadata; the rest stays text. Length is
    checked before conversion: int() of a 5,000-digit string raises (Python's digit limit)."""
    if re.fullmatch(r"-?\d{1,20}", value):
        return _number(key, int(value))
    if re.fullmatch(r"-?\d{1,20}\.\d{0,20}", value):
        return _number(key, float(value))
    if re.fullmatch(r"-?\d+(\.\d*)?", value):
        raise InvalidInputError(f"filter {key!r}: {value[:20]}... has too many digits")
    return {"true": True, "false": False}.get(value.lower(), value)


def glob_regex(pattern: str) -> str:
    """A source glob as an anchored POSIX regular expression that means what SQLite's GLOB means: ``*`` any text,
    ``?`` one character, ``[...]`` / ``[^...]`` a class (a ``]`` first in it is literal, ``a-z`` a range), every
    other character itself, case-sensitive. Every character is written as a ``\\uXXXX`` escape or a letter or
    digit, so no pattern can produce regex syntax of its own. A glob SQLite would silently read as matching
    nothing (an unclosed class, a reversed range) is an InvalidInputError, on every backend."""
    out, i = ["^"], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            body, i = _glob_class(pattern, i + 1)
            out.append(body)
            continue
        else:
            out.append(_literal(ch))
        i += 1
    return "".join(out) + "$"


def _glob_class(pattern: str, i: int) -> tuple[str, int]:
    """The class starting at ``pattern[i]`` (just after its ``[``) as a bracket expression, and the index after its
    closing ``]``."""
    negate = i < len(pattern) and pattern[i] == "^"
    i += negate
    parts: list[str] = []
    first = True
    while i < len(pattern) and (first or pattern[i] != "]"):
        low = pattern[i]
        if i + 2 < len(pattern) and pattern[i + 1] == "-" and pattern[i + 2] != "]":
            high = pattern[i + 2]
            if high < low:
                raise InvalidInputError(f"source glob {pattern!r}: the range {low}-{high} is reversed")
            parts.append(f"{_literal(low, escape_all=True)}-{_literal(high, escape_all=True)}")
            i += 3
        else:
            parts.append(_literal(low, escape_all=True))
            i += 1
        first = False
    if i >= len(pattern):
        raise InvalidInputError(f"source glob {pattern!r}: a '[' class is not closed with ']'")
    return "[" + ("^" if negate else "") + "".join(parts) + "]", i + 1


def _literal(ch: str, *, escape_all: bool = False) -> str:
    if ch.isascii() and ch.isalnum() and not escape_all:
        return ch
    code = ord(ch)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """``doc_ids`` None: any document; an empty tuple (``doc_id: []`` or ``""``): no document. ``source`` None:
    any source; ``""`` matches no stored source. A filter that names nothing finds nothing, never everything."""

    doc_ids: tuple[str, ...] | None = None
    source: str | None = None
    metadata: tuple[tuple[str, Scalar], ...] = ()

    def __bool__(self) -> bool:
        return self.doc_ids is not None or self.source is not None or bool(self.metadata)

    def check(self, settings: Settings) -> None:
        """Refuse a filter beyond the configured sizes (a 400, not a slow query or a database error)."""
        fields = len(self.metadata) + (self.doc_ids is not None) + (self.source is not None)
        if fields > settings.max_filter_keys:
            raise InvalidInputError(f"a filter may have at most {settings.max_filter_keys} fields, not {fields}")
        if self.doc_ids is not None and len(self.doc_ids) > settings.max_filter_doc_ids:
            raise InvalidInputError(f"filter doc_id: at most {settings.max_filter_doc_ids} ids, not "
                                    f"{len(self.doc_ids)}")
        texts = [*(self.doc_ids or ()), *([self.source] if self.source is not None else []),
                 *(v for _, v in self.metadata if isinstance(v, str))]
        longest = max(map(len, texts), default=0)
        if longest > settings.max_filter_value_chars:
            raise InvalidInputError(f"a filter value may have at most {settings.max_filter_value_chars} "
                                    f"characters, not {longest}")
        if self.source is not None:
            glob_regex(self.source)  # a malformed glob is a 400 here, on every backend

    @classmethod
    def parse(cls, items: Iterable[str]) -> SearchFilter:
        """From CLI ``KEY=VALUE`` strings."""
        pairs = []
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise InvalidInputError(f"filter {item!r} is not KEY=VALUE")
            pairs.append((key.strip(), value.strip()))
        return cls.from_mapping(pairs)

    @classmethod
    def from_mapping(cls, pairs: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> SearchFilter:
        """From JSON-like key/value pairs (a REST body); string values are typed like CLI values."""
        doc_ids: list[str] | None = None
        source = None
        metadata: list[tuple[str, Scalar]] = []
        for key, value in (pairs.items() if isinstance(pairs, Mapping) else pairs):
            if key == "doc_id":
                values = value if isinstance(value, list) else str(value).split(",")
                doc_ids = (doc_ids or []) + [str(v).strip() for v in values if str(v).strip()]
            elif key == "source":
                source = str(value)
            elif not isinstance(key, str) or not _KEY.match(key):
                raise InvalidInputError(f"filter key {str(key)[:80]!r} must be a metadata field name")
            elif isinstance(value, str):
                metadata.append((key, _typed(key, value)))
            elif isinstance(value, int | float | bool):
                metadata.append((key, _number(key, value)))
            else:
                raise InvalidInputError(f"filter {key!r}: only text, number or boolean values")
        return cls(None if doc_ids is None else tuple(doc_ids), source, tuple(metadata))
