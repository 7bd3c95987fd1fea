"""Plain text and Markdown, and the decoding every text format shares."""

from __future__ import annotations

import codecs
import unicodedata

from charset_normalizer import from_bytes

from rag_service.errors import InvalidInputError
from rag_service.ingestion.formats.common import CONTROL_BYTES, LoadContext, Loaded, clean

# Longest first: the UTF-32-LE mark begins with the UTF-16-LE one.
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)
_CHINESE_CODECS = {"gb2312", "gbk", "gb18030", "hz", "big5", "big5hkscs", "cp950"}


def looks_binary(raw: bytes) -> bool:
    """NUL bytes or many C0 controls mean binary; BOM-marked UTF-16/32 is text despite its NULs."""
    if raw.startswith(tuple(bom for bom, _ in BOMS)):
        return False
    sample = raw[:8192]
    controls = len(sample) - len(sample.translate(None, CONTROL_BYTES))
    return b"\0" in sample or controls > len(sample) // 20


def detect_encoding(raw: bytes, source: str) -> tuple[str, str]:
    """(text, codec name). Byte-order marks and strict UTF-8 are certain, so they go first; charset-normalizer
    confuses short GBK and Big5, so for a Chinese guess GB18030 then Big5 are tried strictly and the first decoding
    without private-use or unassigned characters wins (a wrong CJK codec produces those)."""
    for bom, encoding in BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(encoding), encoding
            except UnicodeDecodeError as exc:
                raise InvalidInputError(f"{source}: not valid {encoding} text despite its byte-order mark "
                                        f"({exc.reason} at byte {exc.start})") from None
    if looks_binary(raw):
        raise InvalidInputError(f"{source}: looks binary, not text")
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    best = from_bytes(raw).best()
    guess = codecs.lookup(best.encoding).name if best is not None else None
    candidates = ["gb18030", "big5"]
    if guess in _CHINESE_CODECS:
        candidates.append(guess)
    elif guess is not None:
        candidates.insert(0, guess)
    for encoding in dict.fromkeys(candidates):
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        if _plausible(text):
            return text, encoding
    raise InvalidInputError(f"{source}: cannot detect the text encoding (tried UTF-8, GB18030, Big5, others)")


def _plausible(text: str) -> bool:
    sample = text[:65536]
    bad = sum(
        1 for ch in sample
        if unicodedata.category(ch) in ("Co", "Cn", "Cs") or ch == "\ufffd"
        or (unicodedata.category(ch) == "Cc" and ch not in "\t\n\v\f\r\x1b")
    )
    return bad <= len(sample) // 100


def load_text(text: str, ctx: LoadContext) -> Loaded:
    return Loaded(clean(text))
