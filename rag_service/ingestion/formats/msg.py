"""Outlook .msg (an OLE2 compound file of MAPI property streams): read like an .eml, a header block (From, To, Cc,
Date, Subject), the body, then each attachment as a '# Attachment: <name>' section (``eml.mail_document``).

Read with olefile (BSD); extract-msg would do more but is GPL. The plain-text body (PR_BODY) is used, else the HTML one
(PR_HTML) rendered as text; an RTF-only body (compressed RTF) is not read. Date and Message-ID come from the
transport headers the message was received with (a draft has none). An attached Outlook message is a storage, not a
file, and is not opened.
"""

from __future__ import annotations

import io
from email.parser import HeaderParser
from functools import partial

import olefile

from rag_service.errors import InvalidInputError
from rag_service.ingestion.formats.common import LoadContext, Loaded, reason
from rag_service.ingestion.formats.eml import Attachment, decode, mail_document, safe_name
from rag_service.ingestion.formats.html import load_html
from rag_service.text.language import has_words

MAX_ENTRIES = 20_000  # directory entries (streams and storages); a large real message has a few thousand
_SUBJECT, _SENDER_NAME, _SENDER_EMAIL, _SENDER_SMTP = "0037", "0C1A", "0C1F", "5D01"
_TO, _CC, _BODY, _HTML, _HEADERS, _MESSAGE_ID = "0E04", "0E03", "1000", "1013", "007D", "1035"
_ATTACH_DATA, _ATTACH_LONG_NAME, _ATTACH_NAME, _ATTACH_MESSAGE = "37010102", "3707", "3704", "3701000D"


def load_msg(raw: bytes, ctx: LoadContext) -> Loaded:
    """metadata as for .eml: mail {from, to, cc, date, subject, message_id}, attachments when there are any."""
    source = ctx.source
    try:
        # Always a file object: olefile takes a bytes argument shorter than 1,536 bytes for a path to open.
        with olefile.OleFileIO(io.BytesIO(raw)) as ole:
            if len(ole.direntries) > MAX_ENTRIES:
                raise InvalidInputError(f"{source}: {len(ole.direntries):,} streams is over the "
                                        f"{MAX_ENTRIES:,}-stream limit of an Outlook message")
            if not ole.exists(f"__substg1.0_{_SUBJECT}001F") and not ole.exists(f"__substg1.0_{_SUBJECT}001E") \
                    and not ole.exists("__properties_version1.0"):
                raise InvalidInputError(f"{source}: not an Outlook message (no MAPI properties)")
            return _Message(ole, ctx).load()
    except InvalidInputError:
        raise
    except RecursionError:
        raise InvalidInputError(f"{source}: the Outlook message's directory is nested too deeply") from None
    except Exception as exc:  # olefile raises OSError and assorted types on a damaged compound file
        raise InvalidInputError(f"{source}: not a valid Outlook message ({reason(exc)})") from None


class _Message:
    def __init__(self, ole: olefile.OleFileIO, ctx: LoadContext) -> None:
        self.ole = ole
        self.ctx = ctx

    def load(self) -> Loaded:
        transport = self.string("", _HEADERS)
        headers = HeaderParser().parsestr(transport) if transport else None
        sender_name = self.string("", _SENDER_NAME)
        sender_email = self.string("", _SENDER_SMTP) or self.string("", _SENDER_EMAIL)
        if "@" not in sender_email:
            sender_email = ""  # an Exchange X.500 address (/O=ORG/OU=...) says nothing to a reader
        sender = f"{sender_name} <{sender_email}>" if sender_name and sender_email else sender_name or sender_email
        mail = {
            "from": sender, "to": self.string("", _TO), "cc": self.string("", _CC),
            "date": _one_line(headers.get("Date", "")) if headers is not None else "",
            "subject": self.string("", _SUBJECT),
            "message_id": self.string("", _MESSAGE_ID)
            or (_one_line(headers.get("Message-ID", "")) if headers is not None else ""),
        }
        body = self.string("", _BODY)
        if not has_words(body):
            html = self.string("", _HTML) or decode(self.binary(f"__substg1.0_{_HTML}0102"), None)
            body = load_html(html, self.ctx.source).text if html else body
        attachments: list[Attachment] = []
        for storage in sorted({entry[0] for entry in self.ole.listdir(streams=True, storages=True)
                               if entry[0].startswith("__attach_version1.0_#")}):
            name = safe_name(self.string(storage, _ATTACH_LONG_NAME) or self.string(storage, _ATTACH_NAME))
            is_mail = self.ole.exists(f"{storage}/__substg1.0_{_ATTACH_MESSAGE}")
            name = name or f"attachment-{len(attachments) + 1}{'.msg' if is_mail else ''}"
            data = partial(self.binary, f"{storage}/__substg1.0_{_ATTACH_DATA}")
            attachments.append(Attachment(name, _embedded_message if is_mail else data, is_mail))
        return mail_document(self.ctx, mail, [body], attachments)

    def string(self, storage: str, prop: str) -> str:
        """A string property: UTF-16 (type 001F), or 8-bit (001E) in the message's code page, guessed by
        ``decode`` (the code page property is rarely needed: UTF-8 and GB18030 are tried strictly first)."""
        prefix = f"{storage}/" if storage else ""
        if self.ole.exists(f"{prefix}__substg1.0_{prop}001F"):
            text = self.binary(f"{prefix}__substg1.0_{prop}001F").decode("utf-16-le", "replace")
        elif self.ole.exists(f"{prefix}__substg1.0_{prop}001E"):
            text = decode(self.binary(f"{prefix}__substg1.0_{prop}001E"), None)
        else:
            return ""
        return text.rstrip("\0")

    def binary(self, path: str) -> bytes:
        if not self.ole.exists(path):
            return b""
        with self.ole.openstream(path) as stream:
            return bytes(stream.read())


def _embedded_message() -> bytes:
    raise InvalidInputError("an attached Outlook message is not opened")


def _one_line(value: str) -> str:
    return " ".join(str(value).split())
