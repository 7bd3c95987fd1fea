"""Turn a file's bytes into a cleaned ``Document``.

The foundation reads plain text and Markdown; the format is judged by content (no NUL bytes, decodes
as text), not by trusting the extension.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

from rag_service.errors import InvalidInputError
from rag_service.records import Document

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".text"}
_ENCODINGS = ("utf-8-sig", "gb18030")


def read_bytes(path: Path, max_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InvalidInputError(f"{path}: {size:,} bytes is over the {max_bytes:,}-byte limit")
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read ({exc.strerror or exc})") from None


def decode_text(raw: bytes, source: str) -> str:
    if b"\0" in raw[:8192]:
        raise InvalidInputError(f"{source}: looks binary, not text")
    for encoding in _ENCODINGS:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise InvalidInputError(f"{source}: not valid UTF-8 or GB18030 text")


def clean(text: str) -> str:
    """Normalise line ends and blank runs; keep full-width CJK punctuation as it is (NFC, not NFKC)."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def load(path: Path, source: str, raw: bytes) -> Document:
    if path.suffix.lower() not in TEXT_SUFFIXES:
        raise InvalidInputError(f"{source}: unsupported file type '{path.suffix or path.name}' (txt, md)")
    text = clean(decode_text(raw, source))
    if not text:
        raise InvalidInputError(f"{source}: no text in the file")
    sha = hashlib.sha256(raw).hexdigest()
    return Document(id=sha[:16], source=source, text=text, sha256=sha,
                    metadata={"format": path.suffix.lower().lstrip(".")})
