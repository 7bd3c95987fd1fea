"""Chat with a knowledge base through one bounded queue in front of the LLM, and the sessions it keeps.

Admission is decided before any work starts: at most ``concurrency`` chats generate and ``queue_size`` wait;
the next one gets 503 + Retry-After at once instead of a timeout. Each chat (condensing, retrieval,
generation, session writes) runs from start to finish on one executor thread with its own workspace, and
its events reach the event loop through an asyncio queue. A client that goes away stops its chat between
two tokens, so it never holds the single llama.cpp context; answers never mix because a chat's events only
ever go to its own queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from rag_service.admin.access import OPERATOR, Access, Principal
from rag_service.answering.generation import Answerer
from rag_service.errors import BusyError, InvalidInputError, LLMError
from rag_service.records import Answer
from rag_service.server import logs
from rag_service.server.limits import KeyLimits
from rag_service.server.metrics import ChatMeter
from rag_service.server.problems import SessionNotFoundError
from rag_service.server.workspaces import Workspaces
from rag_service.storage.catalog import KnowledgeBase
from rag_service.workspace import Workspace

Event = str | Answer
_END = object()


@dataclass(frozen=True, slots=True)
class ChatTurn:
    kb: KnowledgeBase
    question: str
    k: int | None = None
    session_id: str | None = None
    # Earlier turns sent by a stateless client (OpenAI style): replayed into a throwaway session.
    history: tuple[tuple[str, str], ...] | None = None
    # Who asks: a new session is theirs, and their key's chats are counted (RAG_KEY_CONCURRENT_CHATS).
    caller: Principal = OPERATOR


class ChatGate:
    """Counts admitted chats (running + waiting) and estimates when a refused client should retry."""

    def __init__(self, concurrency: int, queue_size: int) -> None:
        self.concurrency = concurrency
        self.capacity = concurrency + queue_size
        self._admitted = 0
        self._mean_s = 10.0  # until measured: a typical short answer on 2 CPU cores
        self._lock = threading.Lock()

    def admit(self) -> None:
        with self._lock:
            if self._admitted >= self.capacity:
                # A place opens when the next chat finishes: about one mean chat time per running slot.
                raise BusyError(f"{self._admitted} chats are running or waiting for the LLM; retry later",
                                max(1, math.ceil(self._mean_s / self.concurrency)))
            self._admitted += 1

    def release(self, seconds: float | None) -> None:
        """``seconds`` is how long the chat ran (None when it was abandoned before starting)."""
        with self._lock:
            self._admitted -= 1
            if seconds is not None:
                self._mean_s = 0.8 * self._mean_s + 0.2 * seconds

    @property
    def mean_s(self) -> float:
        """Seconds a chat took lately (a moving average)."""
        return self._mean_s

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"admitted": self._admitted, "capacity": self.capacity}


class ChatService:
    def __init__(self, workspaces: Workspaces, concurrency: int, queue_size: int, max_history: int = 64,
                 limits: KeyLimits | None = None) -> None:
        self.workspaces = workspaces
        self.max_history = max_history
        self.limits = limits or KeyLimits(0, 0)
        self.gate = ChatGate(concurrency, queue_size)
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="chat")

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def policy(self) -> str:
        """The grounding policy answers are checked under (Settings.grounding)."""
        return self.workspaces.current().settings.grounding

    @property
    def streams_drafts(self) -> bool:
        """Whether SSE clients get the model's text as it is written: always when nothing checks it (policy
        'off'), else unless RAG_STREAM_DRAFTS=false withholds the unchecked draft."""
        return self.workspaces.current().settings.stream_drafts or self.policy == "off"

    def resolve(self, who: Principal, kb_ref: str, session_id: str | None = None) -> KnowledgeBase:
        """The KB (one the caller may read), and the session when one is named (one of theirs): checked before a
        response starts, so a stream never begins with an error that could have been a plain 4xx."""
        ws = self.workspaces.current()
        kb = Access(ws).kb(who, kb_ref)
        if session_id is not None:
            session = self._own_session(ws, who, session_id)
            if session["kb_id"] != kb.id:
                raise InvalidInputError(f"session '{session_id}' belongs to another knowledge base")
        return kb

    async def open(self, turn: ChatTurn) -> AsyncIterator[Event]:
        """Admit the chat now (429 when the caller's key has its limit of chats, 503 when the queue is full) and
        return its events: text pieces, then the Answer."""
        self.limits.start_chat(turn.caller, retry_after=max(1, math.ceil(self.gate.mean_s)))
        try:
            self.gate.admit()
        except BaseException:
            self.limits.end_chat(turn.caller)
            raise
        meter = ChatMeter(logs.current())  # from admission: the queue wait counts in the time to first token
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(item: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the server is stopping
                loop.call_soon_threadsafe(events.put_nowait, item)

        try:
            self._executor.submit(self._produce, turn, emit, cancelled, meter)
        except RuntimeError:  # the executor was shut down
            self.gate.release(None)
            self.limits.end_chat(turn.caller)
            raise BusyError("the server is shutting down", 5) from None
        return self._consume(events, cancelled)

    async def ask(self, turn: ChatTurn) -> Answer:
        """The Answer, once the chat has ended: its place in the queue and its key's count of chats are given back
        before the client has the answer, so the same key's next chat is not refused for this one (429)."""
        answer = None
        async for item in await self.open(turn):
            if isinstance(item, Answer):
                answer = item
        if answer is None:
            raise LLMError("the chat ended without an answer")
        return answer

    @staticmethod
    async def _consume(events: asyncio.Queue[Any], cancelled: threading.Event) -> AsyncIterator[Event]:
        try:
            while (item := await events.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancelled.set()

    def _produce(self, turn: ChatTurn, emit: Callable[[object], None], cancelled: threading.Event,
                 meter: ChatMeter) -> None:
        started = time.perf_counter()
        ran = not cancelled.is_set()  # a client that left while its chat waited costs no LLM time

        def measured(item: object) -> None:
            meter.seen(item)  # before the client can have it: the request's log line is written after
            emit(item)

        try:
            if ran:
                self._generate(self.workspaces.current(), turn, measured, cancelled)
        except Exception as exc:
            meter.end("failed")
            emit(exc)
        finally:
            meter.end("abandoned")  # no answer and no error: the client left
            self.gate.release(time.perf_counter() - started if ran else None)
            self.limits.end_chat(turn.caller)
            emit(_END)

    @staticmethod
    def _generate(ws: Workspace, turn: ChatTurn, emit: Callable[[object], None], cancelled: threading.Event) -> None:
        session_id = turn.session_id
        if session_id is None:  # a new session, the caller's (a stateless client's is dropped at the end)
            session_id = ws.sessions.open(turn.kb.id, None, turn.caller.user_id)
        if turn.history is not None:
            for role, content in turn.history:
                ws.sessions.append(session_id, role, content)
        items: Generator[str | Answer, None, None] = Answerer(ws, turn.kb).stream(turn.question, k=turn.k,
                                                                                 session_id=session_id)
        try:
            for item in items:
                emit(item)
                if cancelled.is_set():
                    break
        finally:
            items.close()  # releases the LLM between two tokens when the client left
            if turn.history is not None:
                ws.sessions.delete(session_id)

    # -- sessions: each is its user's (admins see all); another's is 404, as if it did not exist ------
    @staticmethod
    def _own_session(ws: Workspace, who: Principal, session_id: str) -> dict[str, Any]:
        session = ws.sessions.get(session_id)
        if session is None or not who.owns(session.pop("user_id")):
            raise SessionNotFoundError(f"no session '{session_id}'")
        kb = ws.catalog.find_kb(session["kb_id"])
        if not who.is_admin and (kb is None or Access(ws).level(who, kb) is None):
            raise SessionNotFoundError(f"no session '{session_id}'")  # their own, in a KB they may no longer read
        return session

    def session(self, who: Principal, session_id: str) -> dict[str, Any]:
        return self._own_session(self.workspaces.current(), who, session_id)

    def sessions(self, who: Principal, kb_ref: str) -> dict[str, Any]:
        ws = self.workspaces.current()
        kb = Access(ws).kb(who, kb_ref)
        return {"sessions": ws.sessions.for_kb(kb.id, who.user_id, everyone=who.is_admin)}

    def rename_session(self, who: Principal, session_id: str, title: str) -> dict[str, Any]:
        ws = self.workspaces.current()
        self._own_session(ws, who, session_id)
        if not ws.sessions.rename(session_id, title):
            raise SessionNotFoundError(f"no session '{session_id}'")
        return self.session(who, session_id)

    def delete_session(self, who: Principal, session_id: str) -> None:
        ws = self.workspaces.current()
        self._own_session(ws, who, session_id)
        if not ws.sessions.delete(session_id):
            raise SessionNotFoundError(f"no session '{session_id}'")
