"""Search filters, applied identically on the BM25 and the vector path.

``doc_id`` (one or more ids, comma-separated), ``source`` (a glob over source names, e.g.
``handbook/*.md``) and any chunk metadata field by equality (``page=2``, ``format=pdf``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rag_service.errors import InvalidInputError

Scalar = str | int | float | bool
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _typed(value: str) -> Scalar:
    """'2' is the integer 2 and 'true' the boolean, as stored in chunk metadata; the rest stays text."""
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    if re.fullmatch(r"-?\d+\.\d*", value):
        return float(value)
    return {"true": True, "false": False}.get(value.lower(), value)


@dataclass(frozen=True, slots=True)
class SearchFilter:
    doc_ids: tuple[str, ...] = ()
    source: str | None = None
    metadata: tuple[tuple[str, Scalar], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.doc_ids or self.source or self.metadata)

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
        doc_ids: list[str] = []
        source = None
        metadata: list[tuple[str, Scalar]] = []
        for key, value in (pairs.items() if isinstance(pairs, Mapping) else pairs):
            if key == "doc_id":
                values = value if isinstance(value, list) else str(value).split(",")
                doc_ids.extend(v.strip() for v in values if str(v).strip())
            elif key == "source":
                source = str(value)
            elif not _KEY.match(key):
                raise InvalidInputError(f"filter key {key!r} must be a metadata field name")
            elif isinstance(value, str):
                metadata.append((key, _typed(value)))
            elif isinstance(value, int | float | bool):
                metadata.append((key, value))
            else:
                raise InvalidInputError(f"filter {key!r}: only text, number or boolean values")
        return cls(tuple(doc_ids), source, tuple(metadata))

    def chroma_where(self, doc_ids: list[str] | None) -> dict[str, Any] | None:
        """Chroma ``where`` for this filter; ``doc_ids`` are the ids a source glob resolved to."""
        clauses: list[dict[str, Any]] = [{key: value} for key, value in self.metadata]
        if doc_ids is not None:
            clauses.append({"doc_id": {"$in": doc_ids}})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}
