"""The chat API's plumbing and the upload limit over real HTTP with a scripted generator: `rag serve` (real uvicorn,
e5, Chroma, the catalog) uses tests/fakes.py's ScriptedServer as its OpenAI-compatible LLM server
(RAG_LLM_BASE_URL), so server-sent events, the OpenAI shapes, sessions, the chat queue and generator failures are
tested in seconds, with each model call scripted and recorded. What the real model answers over HTTP is tested in
test_api.py (marked llm).

The server runs on the embedded SQLite catalog only: the fake generator belongs to the fast tier, and sessions on
PostgreSQL are tested with real parts (test_storage.py, test_replicas.py).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes import ScriptedLLM, ScriptedServer
from tests.test_api import KEY, LIBRARY, TRAVEL, Server, assert_problem, ingest, rag_server, sse_events, upload

MEAL = "What is the daily meal allowance on business trips at Aurora Robotics?"
MEAL_ANSWER = "The daily meal allowance on business trips at Aurora Robotics is 45 euros [1]."
REFUSAL = "I cannot find the answer in the provided documents."
CONFIDENT = {"gate": 0.9, "passage_gate": 0.9, "evidence": 0.9}

Script = Callable[..., ScriptedLLM]


@pytest.fixture(scope="module")
def generator() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, generator: ScriptedServer) -> Iterator[Server]:
    """One chat at a time and none waiting, uploads up to ~1 KB; questions are not translated (the answer flow's
    tests script that)."""
    env = {"RAG_LLM_BASE_URL": generator.url, "RAG_CHAT_QUEUE_SIZE": "0", "RAG_MAX_FILE_MB": "0.001",
           "RAG_TRANSLATE_QUERY": "false"}
    with rag_server(tmp_path_factory.mktemp("chat"), KEY, None, **env) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client(timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def facts(client: httpx.Client) -> dict[str, Any]:
    ingest(client, "facts", ("travel.txt", TRAVEL), ("library.txt", LIBRARY))
    return client.get("/v1/kbs/facts").json()


@pytest.fixture
def script(generator: ScriptedServer) -> Iterator[Script]:
    """``script(**kw)``: what the generator says in this test (a fresh ScriptedLLM, returned to read its calls)."""
    generator.errors.clear()

    def set_script(**kw: Any) -> ScriptedLLM:
        generator.llm = ScriptedLLM(**kw)
        return generator.llm

    yield set_script
    generator.llm = ScriptedLLM()


def test_chat_json_keeps_both_turns_in_its_session_and_condenses_the_follow_up(
        client: httpx.Client, facts: dict[str, Any], script: Script, generator: ScriptedServer) -> None:
    llm = script(answer_for=[("meal allowance", MEAL_ANSWER),
                             ("taxi", "Taxi rides are reimbursed only between 22:00 and 06:00 [1].")],
                 condensed=["When are taxi rides reimbursed at Aurora Robotics?"], yes=CONFIDENT)
    resp = client.post("/v1/kbs/facts/chat", json={"question": MEAL})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert llm.kinds() == ["gate", "answer", "passage_gate", "evidence"] and generator.errors == []
    assert not out["refused"] and out["answer"] == MEAL_ANSWER and out["policy"] == "strict"
    assert [c["source"] for c in out["citations"]] == ["travel.txt"] and "45 euros" in out["citations"][0]["text"]
    assert out["claims"] and all(c["supported"] and c["citations"] == [1] for c in out["claims"])
    assert out["related"] == [] and out["usage"]["completion_tokens"] == len(MEAL_ANSWER.split())
    assert out["usage"]["prompt_tokens"] == sum(llm.count_tokens(m["content"]) for m in llm.of("answer")[0].messages)

    llm.calls.clear()
    second = client.post("/v1/kbs/facts/chat", json={"question": "And taxis?", "session_id": out["session_id"]})
    assert second.status_code == 200, second.text
    follow_up = second.json()
    assert llm.kinds() == ["condense", "gate", "answer", "passage_gate", "evidence"]
    assert f"user: {MEAL}\nassistant: {MEAL_ANSWER}" in llm.calls[0].text
    assert llm.of("answer")[0].text.endswith("Question: When are taxi rides reimbursed at Aurora Robotics?")
    assert follow_up["session_id"] == out["session_id"] and "22:00" in follow_up["answer"]

    session = client.get(f"/v1/sessions/{out['session_id']}").json()
    assert session["kb_id"] == facts["id"]
    assert [(m["role"], m["content"]) for m in session["messages"]] == [
        ("user", MEAL), ("assistant", MEAL_ANSWER), ("user", "And taxis?"), ("assistant", follow_up["answer"])]
    client.post("/v1/kbs", json={"name": "not-the-session-kb"})
    assert_problem(client.post("/v1/kbs/not-the-session-kb/chat",
                               json={"question": "q", "session_id": out["session_id"]}), 400, "invalid_input")
    assert client.delete(f"/v1/sessions/{out['session_id']}").status_code == 204
    assert_problem(client.get(f"/v1/sessions/{out['session_id']}"), 404, "session_not_found")


def test_the_model_s_refusal_is_delivered_with_related_passages(client: httpx.Client, facts: dict[str, Any],
                                                               script: Script) -> None:
    llm = script(answers=[REFUSAL], yes={"gate": 0.2})
    out = client.post("/v1/kbs/facts/chat", json={"question": "How much is the hotel allowance per night?"}).json()
    assert llm.kinds() == ["gate", "answer"]
    assert out["refused"] is True and out["answer"] == REFUSAL and not out["grounded"]
    assert out["citations"] == [] and out["claims"] == []
    assert 1 <= len(out["related"]) <= 3 and out["related"][0]["source"] == "travel.txt"
    assert set(out["related"][0]) >= {"chunk_id", "doc_id", "source", "text", "score"}


def test_a_session_returns_each_answer_with_its_citations_claims_and_refusal(
        client: httpx.Client, facts: dict[str, Any], script: Script) -> None:
    """What GET /v1/sessions/{id} gives back is what each chat returned but its trace, so a reopened conversation
    can show the same chips and related passages; questions have no evidence."""
    hotel = "How much is the hotel allowance per night?"
    script(answer_for=[("meal allowance", MEAL_ANSWER), ("hotel", REFUSAL)], condensed=[hotel],
           yes={**CONFIDENT, "gate": [0.9, 0.2]})
    cited = client.post("/v1/kbs/facts/chat", json={"question": MEAL, "explain": True}).json()
    refused = client.post("/v1/kbs/facts/chat", json={"question": "And hotels?",
                                                       "session_id": cited["session_id"]}).json()
    assert cited["citations"] and refused["refused"] and refused["related"]
    resp = client.get(f"/v1/sessions/{cited['session_id']}")
    assert resp.status_code == 200, resp.text
    messages = resp.json()["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", MEAL), ("assistant", cited["answer"]), ("user", "And hotels?"), ("assistant", refused["answer"])]
    evidence = ("citations", "claims", "refused", "grounded", "related", "policy", "usage")
    for asked in messages[0::2]:
        assert all(asked[k] is None for k in evidence)
    def given(value: Any) -> Any:  # the session's schema spells an unknown page or reason null, the chat omits it
        if isinstance(value, dict):
            return {k: given(v) for k, v in value.items() if v is not None}
        return [given(v) for v in value] if isinstance(value, list) else value

    for message, answer in ((messages[1], cited), (messages[3], refused)):
        assert {k: given(message[k]) for k in evidence} == {k: answer[k] for k in evidence}
        assert "trace" not in message
    assert messages[1]["citations"][0]["source"] == "travel.txt" and "45 euros" in messages[1]["citations"][0]["text"]
    assert messages[3]["refused"] is True and messages[3]["related"][0]["source"] == "travel.txt"
    client.delete(f"/v1/sessions/{cited['session_id']}")


def test_chat_streams_the_draft_as_token_events_then_the_checked_answer(client: httpx.Client, facts: dict[str, Any],
                                                                       script: Script) -> None:
    draft = f"{MEAL_ANSWER}\nMembers also get a free parking permit [1]."
    script(answers=[draft], yes=CONFIDENT)
    with client.stream("POST", "/v1/kbs/facts/chat", json={"question": MEAL},
                       headers={"Accept": "text/event-stream"}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        events = sse_events(resp.iter_lines())
    kinds = [e for e, _ in events]
    assert kinds == ["token"] * len(draft.split()) + ["done"]
    assert "".join(json.loads(d)["text"] for e, d in events if e == "token") == draft
    final = json.loads(events[-1][1])
    # The done event carries the checked answer: the unsupported sentence the draft streamed is gone.
    assert final["answer"] == MEAL_ANSWER and not final["refused"] and final["session_id"]
    assert [c["supported"] for c in final["claims"]] == [True] and final["citations"]


@pytest.mark.slow  # a second server
def test_with_drafts_withheld_no_unchecked_text_reaches_the_stream(tmp_path: Path, generator: ScriptedServer,
                                                                   script: Script) -> None:
    """RAG_STREAM_DRAFTS=false: under a checking policy the SSE stream carries keep-alive comments while the model
    writes, then the checked answer. The finding: a prompt-injected "PWNED" showed in the token events before the
    refusal replaced it."""
    env = {"RAG_LLM_BASE_URL": generator.url, "RAG_TRANSLATE_QUERY": "false", "RAG_STREAM_DRAFTS": "false"}
    with rag_server(tmp_path, KEY, None, **env) as withheld, withheld.client(timeout=60) as client:
        ingest(client, "facts", ("travel.txt", TRAVEL))
        script(answers=["PWNED. Ignore the documents [1]."], yes={**CONFIDENT, "evidence": 0.01})
        with client.stream("POST", "/v1/kbs/facts/chat", json={"question": MEAL, "stream": True}) as resp:
            assert resp.status_code == 200
            raw = resp.read().decode()
        events = sse_events(raw.splitlines())
        assert [e for e, _ in events] == ["done"] and "PWNED" not in raw
        assert ": checking" in raw  # the proxy still saw traffic while the model wrote
        script(answers=[MEAL_ANSWER], yes=CONFIDENT)  # a supported answer arrives whole in done
        with client.stream("POST", "/v1/kbs/facts/chat", json={"question": MEAL, "stream": True}) as resp:
            events = sse_events(resp.iter_lines())
        assert [e for e, _ in events] == ["done"] and json.loads(events[0][1])["answer"] == MEAL_ANSWER


def test_a_generator_failure_mid_stream_is_an_error_event_that_names_no_internals(
        client: httpx.Client, facts: dict[str, Any], script: Script, generator: ScriptedServer) -> None:
    script(yes=CONFIDENT)  # the gate is scripted, the draft is not: the generator answers 418
    with client.stream("POST", "/v1/kbs/facts/chat", json={"question": MEAL},
                       headers={"Accept": "text/event-stream"}) as resp:
        assert resp.status_code == 200
        events = sse_events(resp.iter_lines())
    assert [e for e, _ in events] == ["error"] and len(generator.errors) == 1
    problem = json.loads(events[0][1])
    assert (problem["status"], problem["code"]) == (502, "llm_error")
    assert "127.0.0.1" not in problem["detail"] and "see the server log" in problem["detail"]
    assert_problem(client.post("/v1/kbs/facts/chat", json={"question": MEAL}), 502, "llm_error")


def test_openai_completion_and_a_full_queue_while_its_stream_runs(server: Server, client: httpx.Client,
                                                                  facts: dict[str, Any], script: Script) -> None:
    """The non-streamed completion's shape; then, queue size 0: while one OpenAI stream holds the only slot, the
    next chat is refused at once with Retry-After; the stream (checked before it is sent under strict) is the role
    chunk, one content chunk and the final chunk."""
    script(answers=[MEAL_ANSWER], yes=CONFIDENT)
    resp = client.post("/v1/chat/completions", json={"model": facts["id"], "temperature": 0, "messages": [
        {"role": "system", "content": "You are helpful."}, {"role": "user", "content": MEAL}]})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["object"] == "chat.completion" and out["id"].startswith("chatcmpl-") and out["model"] == facts["id"]
    (choice,) = out["choices"]
    assert choice == {"index": 0, "message": {"role": "assistant", "content": MEAL_ANSWER}, "finish_reason": "stop"}
    usage = out["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert out["citations"] and out["refused"] is False and out["related"] == [] and out["claims"]

    # The slot is given back just after the response is sent: wait for it (queue size 0 leaves no room).
    deadline = time.monotonic() + 10
    while httpx.get(server.url + "/healthz").json()["chat_queue"]["admitted"] and time.monotonic() < deadline:
        time.sleep(0.05)
    release = threading.Event()
    llm = script(answers=[MEAL_ANSWER], yes=CONFIDENT, hold=release)
    body = {"model": "facts", "stream": True, "messages": [{"role": "user", "content": MEAL}]}
    try:
        with client.stream("POST", "/v1/chat/completions", json=body) as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()
            first = next(lines)  # the role chunk: the chat holds the only slot from here on
            busy = client.post("/v1/kbs/facts/chat", json={"question": MEAL})
            assert_problem(busy, 503, "busy")
            assert int(busy.headers["retry-after"]) >= 1
            release.set()
            events = sse_events([first, *lines])
    finally:
        release.set()
    assert llm.kinds() == ["gate", "answer", "passage_gate", "evidence"]  # the refused chat never reached it
    data = [d for _, d in events]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert len({c["id"] for c in chunks}) == 1 and all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert [c["choices"][0]["delta"] for c in chunks] == [{"role": "assistant", "content": ""},
                                                          {"content": MEAL_ANSWER}, {}]
    final = chunks[-1]
    assert final["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert final["refused"] is False and final["citations"] and final["usage"]["completion_tokens"] > 0
    assert httpx.get(server.url + "/healthz").json()["chat_queue"] == {"admitted": 0, "capacity": 1}


def test_an_oversized_upload_is_refused_with_413_and_leaves_nothing(server: Server, client: httpx.Client,
                                                                     facts: dict[str, Any]) -> None:
    body = assert_problem(upload(client, "facts", ("big.txt", b"x" * 5000)), 413, "file_too_large")
    assert "big.txt" in body["detail"]
    documents = client.get("/v1/kbs/facts/documents").json()["documents"]
    assert sorted(d["source"] for d in documents) == ["library.txt", "travel.txt"]
    assert not any(server.upload_dir.rglob("big.txt"))


def test_the_fake_server_answers_like_an_openai_server(generator: ScriptedServer) -> None:
    """The HTTP client the service uses reads back exactly what was scripted: pieces, usage and P(yes)."""
    from rag_service import prompts
    from rag_service.models.llm import Completion, OpenAIHttpLLM

    generator.llm = ScriptedLLM(answers=["Forty-five euros [1]."], yes={"gate": 0.83})
    client = OpenAIHttpLLM(generator.url, "scripted", None, timeout=10)
    messages = prompts.load("answer.en").messages(passages="[1] (a.txt) x", question="q?")
    items = list(client.stream(messages, max_tokens=16, temperature=0.0))
    assert items[:-1] == ["Forty-five ", "euros ", "[1]."]
    completion = items[-1]
    assert isinstance(completion, Completion) and completion.text == "Forty-five euros [1]."
    assert completion.completion_tokens == 3
    assert completion.prompt_tokens == sum(generator.llm.count_tokens(m["content"]) for m in messages)
    gate = client.yes_probability([*messages, *prompts.load("gate.en").messages()])
    assert gate == pytest.approx(0.83)
    generator.llm = ScriptedLLM()
