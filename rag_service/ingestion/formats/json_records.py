"""JSON, JSON arrays and JSON Lines: the text field of each object is one record."""

from __future__ import annotations

import json
from typing import Any

from rag_service.errors import InvalidInputError
from rag_service.ingestion.formats.common import LoadContext, Loaded, clean, reason


def _json_error(exc: ValueError | RecursionError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    return "nested too deeply" if isinstance(exc, RecursionError) else reason(exc)


def parse_json(text: str, source: str) -> list[Any]:
    """A whole JSON document (array or single value), or else JSON Lines when the first line parses on its own."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        whole_error = _json_error(exc)
    else:
        return data if isinstance(data, list) else [data]
    records: list[Any] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except (ValueError, RecursionError) as exc:
            if records:
                raise InvalidInputError(f"{source}: line {n} is not valid JSON ({_json_error(exc)})") from None
            break
    if not records:
        raise InvalidInputError(f"{source}: not valid JSON ({whole_error})")
    return records


def load_json(text: str, ctx: LoadContext) -> Loaded:
    source, field = ctx.source, ctx.json_text_field
    objects = [r for r in parse_json(text, source) if isinstance(r, dict)]
    if not objects:
        raise InvalidInputError(f"{source}: expected a JSON object, an array of objects or JSON Lines of objects")
    values = (o.get(field) for o in objects)
    records = [clean(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)) for v in values if v is not None]
    records = [r for r in records if r]
    if not records:
        keys = list(dict.fromkeys(k for o in objects for k in o))
        shown = ", ".join(keys[:20]) + (", ..." if len(keys) > 20 else "")
        raise InvalidInputError(f"{source}: no record has a non-empty '{field}' field (keys found: {shown or 'none'})")
    return Loaded("\n\n".join(records), {"records": len(records)})
