"""Multipart uploads streamed straight to disk.

Starlette's form parser spools a whole file before the handler sees it, so a size limit there comes too
late; here python-multipart's callbacks count and write each part as it arrives and stop at the limit.
File names are reduced to a plain base name: they become the document's source name, never a path.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from rag_service.errors import InvalidInputError
from rag_service.server.problems import PayloadTooLargeError, RequestTimeoutError
from rag_service.storage.jobs import UploadedFile

FIELD = "file"
MAX_NAME_BYTES = 200
# Room for multipart boundaries and part headers when judging a request by its Content-Length.
_ENVELOPE = 64 * 1024


@dataclass(frozen=True, slots=True)
class SavedFile(UploadedFile):
    """A received file in the upload's private directory, until it is stored with its job."""

    @property
    def doc_id(self) -> str:
        """The id ingestion will assign: the sha256 prefix."""
        return self.sha256[:16]

    def to_json(self) -> dict[str, Any]:
        """What the upload answers before ingestion."""
        return {"id": self.doc_id, "source": self.source, "sha256": self.sha256, "bytes": self.size}


def safe_filename(raw: str) -> str:
    """The base name of a client-supplied name (either slash), without control characters; '' and '..'
    are refused. ``../../etc/x.txt`` becomes ``x.txt``."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if name in ("", ".", ".."):
        raise InvalidInputError(f"unusable file name {raw!r}")
    if len(name.encode()) > MAX_NAME_BYTES:  # file systems allow 255 bytes; keep the suffix, it names the format
        stem, dot, suffix = name.rpartition(".")
        if not dot or len(suffix) > 16:
            stem, dot, suffix = name, "", ""
        room = MAX_NAME_BYTES - len((dot + suffix).encode())
        name = stem.encode()[:room].decode("utf-8", "ignore") + dot + suffix
    return name


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.3g} MB"


class _Receiver:
    """python-multipart callbacks: every part must be a file in field ``file``; bytes go to disk as they come."""

    def __init__(self, directory: Path, max_bytes: int, max_files: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.files: list[SavedFile] = []
        self._header = self._value = self._disposition = b""
        self._out: BinaryIO | None = None
        self._source = ""
        self._hash = hashlib.sha256()
        self._size = 0

    def callbacks(self) -> dict[str, Any]:
        return {"on_part_begin": self.on_part_begin, "on_header_field": self.on_header_field,
                "on_header_value": self.on_header_value, "on_header_end": self.on_header_end,
                "on_headers_finished": self.on_headers_finished, "on_part_data": self.on_part_data,
                "on_part_end": self.on_part_end}

    def on_part_begin(self) -> None:
        self._header = self._value = self._disposition = b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        if self._header.strip().lower() == b"content-disposition":
            self._disposition = self._value
        self._header = self._value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if options.get(b"name") != FIELD.encode() or b"filename" not in options:
            raise InvalidInputError(f"send each document as a file in the multipart field '{FIELD}'")
        if len(self.files) >= self.max_files:
            raise InvalidInputError(f"at most {self.max_files} files per upload")
        self._source = safe_filename(options[b"filename"].decode("utf-8", "replace"))
        if any(f.source == self._source for f in self.files):
            raise InvalidInputError(f"two files named '{self._source}' in one upload")
        self._out = (self.directory / self._source).open("xb")
        self._hash = hashlib.sha256()
        self._size = 0

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        assert self._out is not None
        self._size += end - start
        if self._size > self.max_bytes:
            raise PayloadTooLargeError(f"{self._source}: larger than the {_mb(self.max_bytes)} upload limit")
        self._hash.update(data[start:end])
        self._out.write(data[start:end])

    def on_part_end(self) -> None:
        assert self._out is not None
        self._out.close()
        self._out = None
        self.files.append(SavedFile(self.directory / self._source, self._source, self._hash.hexdigest(), self._size))

    @property
    def receiving(self) -> bool:
        """A file part has begun and not ended."""
        return self._out is not None

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


@dataclass(frozen=True, slots=True)
class Pace:
    """How slowly an upload may arrive: nothing for ``idle_s`` seconds, or on average under ``min_rate`` bytes
    per second once ``idle_s`` has passed, ends it with 408 (the place it holds in the queue is given back)."""

    idle_s: float
    min_rate: float

    async def chunks(self, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        started = time.monotonic()
        received = 0
        iterator = aiter(stream)
        while True:
            wait = self.idle_s
            if self.min_rate > 0:  # the moment by which ``received`` bytes (and more) keep the average rate
                wait = min(wait, started + self.idle_s + received / self.min_rate - time.monotonic())
            try:
                chunk = await asyncio.wait_for(anext(iterator), timeout=max(wait, 0.0))
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise RequestTimeoutError(
                    f"the upload stalled: {received} bytes in {time.monotonic() - started:.0f} s (at least "
                    f"{self.min_rate / 1024:g} KiB/s, and no pause over {self.idle_s:g} s)") from None
            received += len(chunk)
            yield chunk


async def save_uploads(request: Request, directory: Path, *, max_bytes: int, max_files: int,
                       pace: Pace | None = None) -> list[SavedFile]:
    """Stream the request's files into ``directory`` (created here, removed again on any failure)."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or not params.get(b"boundary"):
        raise InvalidInputError(f"upload documents as multipart/form-data in the field '{FIELD}'")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_files * max_bytes + _ENVELOPE:
        raise PayloadTooLargeError(f"the upload exceeds {max_files} files of {_mb(max_bytes)}")
    directory.mkdir(parents=True)
    receiver = _Receiver(directory, max_bytes, max_files)
    try:
        try:
            parser = MultipartParser(params[b"boundary"], cast(Any, receiver.callbacks()))
            stream = request.stream() if pace is None else pace.chunks(request.stream())
            async for chunk in stream:
                parser.write(chunk)
            parser.finalize()
        except MultipartParseError as exc:
            raise InvalidInputError(f"malformed multipart body: {exc}") from None
        if receiver.receiving:
            raise InvalidInputError("the multipart body ended in the middle of a file")
        if not receiver.files:
            raise InvalidInputError(f"no file in the upload (multipart field '{FIELD}')")
    except BaseException:
        receiver.close()
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return receiver.files
