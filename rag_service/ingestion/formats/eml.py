"""E-mail (.eml, RFC 5322/MIME): a header block (From, To, Cc, Date, Subject), the body, then each attachment as a
'# Attachment: <name>' section loaded like an uploaded file of its own.

The body is the text/plain part, or the text/html one rendered as text when the plain one is missing or empty; inline
text parts of a multipart/mixed follow in order. Inline images (a signature logo, an embedded screenshot) are not
read: only attachments with a file name are loaded, so an image is OCR'd when it is attached, not when it is inline.
An attachment that cannot be read is refused on its own (listed in metadata with the reason) and the mail still loads.
Declared charsets are trusted only if they decode; a broken or unknown one never raises (the text gets U+FFFD).
"""

from __future__ import annotations

import codecs
import email.header
import email.policy
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from functools import partial
from typing import Any

from rag_service.errors import InvalidInputError
from rag_service.ingestion.formats.common import LoadContext, Loaded, clean, reason
from rag_service.ingestion.formats.html import load_html
from rag_service.ingestion.formats.text import detect_encoding
from rag_service.text.language import has_words

# email's parser recurses once per nested multipart (about three frames each: a 1,000-deep one is a RecursionError,
# a 300-deep one takes 0.3 s) and spends ~0.2 ms per part (100,000 parts: 20 s); real mail stays far below both.
MAX_PARTS = 1000
MAX_DEPTH = 50
# Shorter texts (a header's encoded word) are too short for charset detection: four bytes "caf\xe9" guess UTF-16.
MIN_DETECT_BYTES = 256
MAX_ATTACHMENTS = 50  # each is a whole document of its own (a PDF with OCR); the rest are listed as refused
_HEADERS = (("From", "from"), ("To", "to"), ("Cc", "cc"), ("Date", "date"), ("Subject", "subject"),
            ("Message-ID", "message_id"))
_BOUNDARY = re.compile(rb'boundary(\*[0-9*]*)?\s*=\s*(?:"([^"\r\n]+)"|([^\s;"]+))?', re.IGNORECASE)
_DELIMITER = re.compile(rb"^--([^\r\n]*)", re.MULTILINE)
_MESSAGE_PART = re.compile(rb"^content-type:\s*message/", re.IGNORECASE | re.MULTILINE)
# Labels mailers use for a superset's subset: GBK text labelled gb2312 is the common Chinese case.
_CHARSETS = {
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "cp936": "gb18030", "euc-cn": "gb18030",
    "gb_2312-80": "gb18030", "big5": "big5hkscs", "ks_c_5601-1987": "cp949", "euc-kr": "cp949",
    "shift_jis": "cp932", "iso-8859-1": "cp1252", "us-ascii": "utf-8", "ascii": "utf-8",
}
_HEADING = re.compile(r"^(#{1,5}) ", re.MULTILINE)
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f]+")


def load_eml(raw: bytes, ctx: LoadContext) -> Loaded:
    """metadata: mail {from, to, cc, date, subject, message_id} and, when there are any, attachments
    [{name, status: ingested|refused, reason?}]."""
    source = ctx.source
    parts = _count_parts(raw)
    if parts > MAX_PARTS:
        raise InvalidInputError(f"{source}: {parts:,} MIME parts is over the {MAX_PARTS:,}-part limit")
    try:
        message = BytesParser(policy=email.policy.default).parsebytes(raw)
        depth, parts = _shape(message)
    except RecursionError:
        raise InvalidInputError(f"{source}: the mail's MIME parts are nested too deeply") from None
    except Exception as exc:  # the parser is lenient, but a defect in its header handling must not escape
        raise InvalidInputError(f"{source}: not a readable e-mail message ({reason(exc)})") from None
    if parts > MAX_PARTS:
        raise InvalidInputError(f"{source}: {parts:,} MIME parts is over the {MAX_PARTS:,}-part limit")
    if depth > MAX_DEPTH:
        raise InvalidInputError(f"{source}: the mail's MIME parts are nested more than {MAX_DEPTH} levels deep")
    mail = {key: _header(message, name) for name, key in _HEADERS}
    mail_parts = _MailParts(source)
    try:
        mail_parts.walk(message)
    except InvalidInputError:
        raise
    except Exception as exc:
        raise InvalidInputError(f"{source}: not a readable e-mail message ({reason(exc)})") from None
    attachments = [Attachment(name, partial(_payload, part), part.get_content_type().startswith("message/"))
                   for name, part in mail_parts.attachments]
    return mail_document(ctx, mail, mail_parts.body, attachments)


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file in a mail: its name, how to get its bytes (a failure there refuses only this one), whether it is a
    mail itself."""

    name: str
    data: Callable[[], bytes]
    is_mail: bool = False


def mail_document(ctx: LoadContext, mail: dict[str, str], body: list[str], attachments: list[Attachment]) -> Loaded:
    """The header block, the body texts, then each attachment loaded by ``ctx.nested`` under '# Attachment: <name>'
    with its headings one level down; a refused attachment is listed with its reason. Shared by .eml and .msg."""
    lines = [f"{name}: {mail[key]}" for name, key in _HEADERS[:5] if mail.get(key)]
    sections = ["\n".join(lines), *body]
    listed: list[dict[str, str]] = []
    for index, attachment in enumerate(attachments):
        status, text_or_reason = _open(ctx, attachment, index)
        if status == "ingested":
            listed.append({"name": attachment.name, "status": status})
            if text_or_reason:
                sections.append(f"# Attachment: {attachment.name}\n\n" + _HEADING.sub(r"#\1 ", text_or_reason))
        else:
            listed.append({"name": attachment.name, "status": status, "reason": text_or_reason})
    metadata: dict[str, Any] = {"mail": mail}
    if listed:
        metadata["attachments"] = listed
    return Loaded(clean("\n\n".join(s for s in sections if s.strip())), metadata)


def _count_parts(raw: bytes) -> int:
    """An upper bound on the parts, before parsing: every part starts after a line "--<boundary>" (a closing one
    ends in "--" too, and starts none), and every message/* part holds one more message. A boundary written in a form
    this scan does not decode (RFC 2231 ``boundary*=``, continuations) makes every "--" line count."""
    declared = _BOUNDARY.findall(raw)
    boundaries = None if any(extended or not (quoted or token) for extended, quoted, token in declared) \
        else {quoted or token for _, quoted, token in declared}
    delimiters = 0
    if boundaries is None or boundaries:
        for match in _DELIMITER.finditer(raw):
            line = match.group(1).rstrip(b" \t")
            if line in boundaries if boundaries is not None else not line.endswith(b"--"):
                delimiters += 1
    return 1 + delimiters + len(_MESSAGE_PART.findall(raw))


def _shape(message: Message) -> tuple[int, int]:
    """(deepest nesting, number of parts), walked without recursion."""
    deepest, count = 0, 0
    stack: list[tuple[Message, int]] = [(message, 1)]
    while stack:
        part, depth = stack.pop()
        count += 1
        deepest = max(deepest, depth)
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend((child, depth + 1) for child in payload if isinstance(child, Message))
    return deepest, count


class _MailParts:
    """The body texts and the attachments of a parsed message, in order."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.body: list[str] = []
        self.attachments: list[tuple[str, Message]] = []

    def walk(self, part: Message) -> None:
        content_type = part.get_content_type()
        if part.is_multipart() and not content_type.startswith("message/"):
            children = [c for c in part.get_payload() if isinstance(c, Message)]
            if content_type == "multipart/alternative":
                children = self._alternative(children)
            for child in children:
                self.walk(child)
            return
        filename = _filename(part)
        try:
            disposition = part.get_content_disposition()
        except Exception:  # a malformed Content-Disposition: read the part as if it had none
            disposition = None
        if content_type.startswith("message/"):  # an attached or forwarded mail
            self.attachments.append((filename or f"message-{len(self.attachments) + 1}.eml", part))
        elif disposition == "attachment" or (filename and part.get_content_maintype() != "text"):
            self.attachments.append((filename or f"attachment-{len(self.attachments) + 1}", part))
        elif content_type == "text/plain":
            self.body.append(clean(_text(part)))
        elif content_type == "text/html":
            self.body.append(load_html(_text(part), self.source).text)
        elif content_type.startswith("multipart/"):  # no boundary: the parser kept the body as one text
            self.body.append(clean(_text(part)))
        # anything else inline (an image in multipart/related, a calendar stub) is not read

    @staticmethod
    def _alternative(children: list[Message]) -> list[Message]:
        """The plain version when it has words, else the HTML (or a multipart/related holding it), else the last:
        the alternatives say the same thing, so only one is read."""
        by_type = {c.get_content_type(): c for c in reversed(children)}
        plain = by_type.get("text/plain")
        if plain is not None and has_words(_text(plain)):
            return [plain]
        for kind in ("text/html", "multipart/related", "multipart/mixed"):
            if kind in by_type:
                return [by_type[kind]]
        return children[-1:]


def _open(ctx: LoadContext, attachment: Attachment, index: int) -> tuple[str, str]:
    """("ingested", text) or ("refused", one-line reason)."""
    name = attachment.name
    if ctx.nested is None:
        return "refused", ("a mail inside an attachment is not opened"
                           if attachment.is_mail or name.lower().endswith((".eml", ".msg"))
                           else "the attachments of an attached mail are not opened")
    if index >= MAX_ATTACHMENTS:
        return "refused", f"only the first {MAX_ATTACHMENTS} attachments of a mail are opened"
    try:
        data = attachment.data()
        if not data.strip():
            return "refused", "the attachment is empty"
        return "ingested", ctx.nested(name, data).text
    except InvalidInputError as exc:
        message = str(exc)
        prefix = f"{ctx.source} › {name}: "
        return "refused", message.removeprefix(prefix) if message.startswith(prefix) else reason(exc)
    except Exception as exc:  # a loader's stray exception costs this attachment, not the mail
        return "refused", reason(exc)


def _payload(part: Message) -> bytes:
    """An attachment's bytes: transfer encoding undone; an attached mail written out again."""
    if part.get_content_type().startswith("message/"):
        inner = part.get_payload()
        return inner[0].as_bytes() if isinstance(inner, list) and inner and isinstance(inner[0], Message) else b""
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _filename(part: Message) -> str:
    try:
        name = part.get_filename() or ""
    except Exception:  # a malformed RFC 2231 parameter
        name = ""
    return safe_name(str(name))


def safe_name(name: str) -> str:
    """An attachment's file name without any directory or control characters (it becomes part of a source name)."""
    name = _UNSAFE_NAME.sub(" ", name).replace("\\", "/").rsplit("/", 1)[-1]
    return " ".join(name.split())[:200]


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else str(payload or "").encode("utf-8", "surrogateescape")
    return decode(data, part.get_content_charset())


def decode(data: bytes, charset: str | None) -> str:
    """The declared charset (or its superset) if it decodes strictly, else UTF-8, else a detected encoding (for a
    text long enough to guess from), else GB18030, else the declared one (or Windows-1252) with replacement
    characters: never an exception."""
    declared = None
    if charset:
        try:
            declared = codecs.lookup(_CHARSETS.get(charset.lower(), charset)).name
            return data.decode(declared)
        except (LookupError, UnicodeDecodeError):
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if len(data) >= MIN_DETECT_BYTES:
        try:
            return detect_encoding(data, "")[0]
        except InvalidInputError:
            pass
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError:
        return data.decode(declared or "cp1252", "replace")


def _header(message: Message, name: str) -> str:
    """A header's text with RFC 2047 encoded words decoded by ``decode`` (so a gb2312 label on GBK text and an
    unknown charset still read), and raw 8-bit headers decoded as a body would be. All To and Cc headers count."""
    values = [value for key, value in message.raw_items() if key.lower() == name.lower()]
    if name.lower() not in ("to", "cc"):
        values = values[:1]
    return ", ".join(v for v in (_decode_header(str(value)) for value in values) if v)


def _decode_header(raw: str) -> str:
    try:
        pieces = email.header.decode_header(raw)
    except Exception:  # a malformed encoded word: the header as written
        pieces = [(raw, None)]
    out = []
    for value, charset in pieces:
        if isinstance(value, bytes):
            out.append(decode(value, charset))
        else:
            try:  # 8-bit bytes in a header arrive as surrogate escapes
                out.append(decode(value.encode("ascii", "surrogateescape"), charset))
            except UnicodeEncodeError:
                out.append(value)
    return " ".join("".join(out).split())

