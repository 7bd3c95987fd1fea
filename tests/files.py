"""Loading a file's bytes as an upload would, for the loader tests of every format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rag_service.errors import InvalidInputError
from rag_service.ingestion.loaders import load, read_bytes
from rag_service.records import Document


def load_file(tmp_path: Path, name: str, raw: bytes, **kwargs: Any) -> Document:
    path = tmp_path / name
    path.write_bytes(raw)
    return load(path, name, read_bytes(path, 10_000_000), **kwargs)


def load_error(tmp_path: Path, name: str, raw: bytes, **kwargs: Any) -> str:
    """Every user-caused failure must be one line that starts with the source name, whatever the parser raised."""
    with pytest.raises(InvalidInputError) as info:
        load_file(tmp_path, name, raw, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{name}: ")
    return message
