"""A scripted generator for the fast tier: the one stand-in the tests allow (everything else is real).

``ScriptedLLM`` implements ``rag_service.models.llm.LLM``. It plays back the replies a test scripted (in order, or
by a pattern of the question), answers each yes/no check with a scripted probability, and records every call with
what kind of call it was, told apart by the bundled prompt templates. So a test can script "the model drafts X,
the gate says no" and then assert which checks ran, in which order, with which prompts, in milliseconds.

``ScriptedServer`` puts one behind an OpenAI-compatible HTTP endpoint, for a real ``rag serve`` process to use as
its generator (``RAG_LLM_BASE_URL``): the API's chat plumbing (server-sent events, the OpenAI formats, sessions, the
chat queue) is then tested over HTTP with no model either.

A call nothing was scripted for fails the test (``Unscripted``) instead of inventing an answer.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

from rag_service import prompts
from rag_service.models.llm import LLM, Completion

Kind = Literal["answer", "condense", "translate", "gate", "passage_gate", "evidence", "other"]
# A scripted probability: one value for every call of a kind, one per call in order, or a function of the call.
Probability = float | Sequence[float] | Callable[["Call"], float]
LANGUAGES = ("en", "zh")


class Unscripted(AssertionError):
    """The code under test asked the fake something the test did not script."""


@dataclass(frozen=True)
class Call:
    """One call the code made: ``text`` is the last message's content (the question, the check's wording)."""

    kind: Kind
    messages: list[dict[str, str]]
    after_answer: bool = False
    watch: tuple[str, ...] = ()
    max_tokens: int | None = None
    temperature: float | None = None

    @property
    def text(self) -> str:
        return self.messages[-1]["content"] if self.messages else ""


def _first(name: str, role: str) -> str:
    """The content of a bundled template's first ``role`` message, with empty values: what identifies its calls."""
    template = prompts.load(name)
    return next(m["content"] for m in template.messages(**dict.fromkeys(template.variables, ""))
                if m["role"] == role)


@dataclass(frozen=True)
class _Signatures:
    """How each kind of call looks, from the bundled templates (so a reworded prompt does not break the fake)."""

    answer: frozenset[str]
    condense: frozenset[str]
    translate: frozenset[str]
    evidence: frozenset[str]
    gate: frozenset[str]
    passage_gate: tuple[re.Pattern[str], ...]

    @classmethod
    def load(cls) -> _Signatures:
        def passage_pattern(lang: str) -> re.Pattern[str]:
            template = prompts.load(f"gate_passage.{lang}")
            text = template.messages(n="\0")[-1]["content"]
            return re.compile(re.escape(text).replace("\0", r"\d+"))

        return cls(answer=frozenset(_first(f"answer.{lang}", "system") for lang in LANGUAGES),
                   condense=frozenset(_first(f"condense.{lang}", "system") for lang in LANGUAGES),
                   translate=frozenset(_first(f"translate.{lang}", "system") for lang in LANGUAGES),
                   evidence=frozenset(_first(f"check_evidence.{lang}", "system") for lang in LANGUAGES),
                   gate=frozenset(_first(f"gate.{lang}", "user") for lang in LANGUAGES),
                   passage_gate=tuple(passage_pattern(lang) for lang in LANGUAGES))

    def kind(self, messages: list[dict[str, str]]) -> Kind:
        last = messages[-1]["content"] if messages else ""
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
        if last in self.gate:
            return "gate"
        if any(p.fullmatch(last) for p in self.passage_gate):
            return "passage_gate"
        if system in self.evidence:
            return "evidence"
        if system in self.condense:
            return "condense"
        if system in self.translate:
            return "translate"
        if system in self.answer:
            return "answer"
        return "other"


@dataclass
class ScriptedLLM(LLM):
    """``answers``: replies to answer prompts, played in order; ``answer_for``: (regex, reply) pairs tried first
    against the question (the answer prompt's last message); ``condensed``: replies to follow-up rewrites and
    ``translations`` to query translations (mixed-language KBs), in order; ``yes``: the probability per check kind
    ("gate", "passage_gate", "evidence"); ``refusal_start``: what the completion reports for the watched refusal
    sentence (``Completion.watched``); ``hold``: when given, an answer waits for it to be set before its first piece
    (a chat that keeps its place in the queue for as long as the test needs)."""

    answers: Sequence[str] = ()
    answer_for: Sequence[tuple[str, str]] = ()
    condensed: Sequence[str] = ()
    translations: Sequence[str] = ()
    yes: Mapping[str, Probability] = field(default_factory=dict)
    refusal_start: float | None = None
    hold: threading.Event | None = None
    name: str = "scripted"
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._signatures = _Signatures.load()
        self._played: dict[str, int] = {}
        self._asked: dict[str, int] = {}

    # -- what the tests read ---------------------------------------------------------------------
    def kinds(self) -> list[Kind]:
        return [c.kind for c in self.calls]

    def of(self, kind: Kind) -> list[Call]:
        return [c for c in self.calls if c.kind == kind]

    # -- the LLM interface -------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """About three UTF-8 bytes a token, as the HTTP backend estimates: deterministic and on the safe side."""
        return len(text.encode("utf-8")) // 3 + 1

    def stream(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float,
               watch: tuple[str, ...] = ()) -> Iterator[str | Completion]:
        call = Call(self._signatures.kind(messages), list(messages), watch=watch, max_tokens=max_tokens,
                    temperature=temperature)
        self.calls.append(call)
        reply = self._reply(call)
        if call.kind == "answer" and self.hold is not None and not self.hold.wait(60):
            raise Unscripted("an answer was held for 60 s and never released")
        pieces = re.findall(r"\S+\s*|\s+", reply)
        yield from pieces
        prompt = sum(self.count_tokens(m["content"]) for m in messages)
        yield Completion(reply, prompt, len(pieces), self.refusal_start if watch else None)

    def yes_probability(self, messages: list[dict[str, str]], *, after_answer: bool = False) -> float:
        call = Call(self._signatures.kind(messages), list(messages), after_answer=after_answer)
        self.calls.append(call)
        if call.kind not in self.yes:
            raise Unscripted(f"no probability scripted for a {call.kind} check: {call.text[:200]!r}")
        scripted = self.yes[call.kind]
        if callable(scripted):
            return scripted(call)
        if isinstance(scripted, Sequence):
            i = self._asked.get(call.kind, 0)
            if i >= len(scripted):
                raise Unscripted(f"only {len(scripted)} {call.kind} probabilities scripted; call {i + 1}")
            self._asked[call.kind] = i + 1
            return scripted[i]
        return float(scripted)

    def _reply(self, call: Call) -> str:
        scripts = {"answer": self.answers, "condense": self.condensed, "translate": self.translations}
        if call.kind not in scripts:
            raise Unscripted(f"a {call.kind} generation was not expected: {call.text[:200]!r}")
        question = call.text.rpartition("\n")[2]
        if call.kind == "answer":
            for pattern, reply in self.answer_for:
                if re.search(pattern, question):
                    return reply
        played = self._played.get(call.kind, 0)
        if played >= len(scripts[call.kind]):
            raise Unscripted(f"no {call.kind} reply scripted for {question!r}")
        self._played[call.kind] = played + 1
        return scripts[call.kind][played]


class ScriptedServer:
    """An OpenAI-compatible ``/v1/chat/completions`` (and ``/v1/models``) on a free local port, answered by ``llm``
    (replace it between chats to script the next one): streamed completions for drafts, condensing and translation;
    for yes/no checks (one token asked, with log-probabilities) the scripted P(yes) as the top log-probabilities of
    "yes" and "no", which the HTTP client turns back into the same probability. A call the script lacks is answered
    418, which the service reports as an LLM error, and is kept in ``errors``."""

    def __init__(self, llm: ScriptedLLM | None = None) -> None:
        self.llm = llm or ScriptedLLM()
        self.errors: list[str] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="scripted-llm", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def reply(self, body: dict[str, Any]) -> tuple[int, list[bytes]]:
        """(status, body parts) for one request body."""
        messages = body.get("messages") or []
        try:
            if not body.get("stream"):
                if body.get("max_tokens") != 1 or not body.get("logprobs"):
                    raise Unscripted(f"a non-streamed completion was not expected: {body}")
                p = self.llm.yes_probability(messages)
                top = [{"token": "yes", "logprob": math.log(max(p, 1e-12))},
                       {"token": "no", "logprob": math.log(max(1 - p, 1e-12))}]
                choice = {"index": 0, "message": {"role": "assistant", "content": "yes" if p >= 0.5 else "no"},
                          "logprobs": {"content": [{"token": top[0]["token"], "top_logprobs": top}]}}
                return 200, [json.dumps({"choices": [choice]}).encode()]
            parts = []
            for item in self.llm.stream(messages, max_tokens=int(body.get("max_tokens") or 0),
                                        temperature=float(body.get("temperature") or 0.0)):
                if isinstance(item, str):
                    event: dict[str, Any] = {"choices": [{"index": 0, "delta": {"content": item}}]}
                else:
                    event = {"choices": [], "usage": {"prompt_tokens": item.prompt_tokens,
                                                      "completion_tokens": item.completion_tokens}}
                parts.append(f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode())
            return 200, [*parts, b"data: [DONE]\n\n"]
        except Unscripted as exc:
            self.errors.append(str(exc))
            return 418, [str(exc).encode()]


def _handler(server: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            """``/models``: what a readiness probe asks an OpenAI-compatible server."""
            if not self.path.endswith("/models"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps({"object": "list", "data": [{"id": server.llm.name, "object": "model"}]})
                             .encode())

        def do_POST(self) -> None:
            if not self.path.endswith("/chat/completions"):
                self.send_error(404)
                return
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            status, parts = server.reply(body)
            self.send_response(status)
            self.send_header("Content-Type", "text/event-stream" if body.get("stream") and status == 200
                             else "application/json")
            self.end_headers()
            for part in parts:  # HTTP/1.0: the body ends when the connection closes
                self.wfile.write(part)
                self.wfile.flush()

        def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures, not requests
            pass

    return Handler
