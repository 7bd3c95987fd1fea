"""The official OpenAI Python SDK (``openai``, pinned as a dev dependency) against a real `rag serve` whose LLM is the
scripted generator (tests/fakes.py): what an existing OpenAI client sees with a reader's key. Models are the KBs
the key may read; a chat completion is the checked answer, whole or streamed; an unreadable KB is the SDK's
NotFoundError and a revoked key its AuthenticationError, each with the problem's detail as the SDK's message (the
problem body carries an OpenAI-style "error" member on the OpenAI routes for that).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.fakes import ScriptedLLM, ScriptedServer
from tests.test_api import KEY, LIGHTHOUSE, TRAVEL, Server, ingest, rag_server
from tests.test_api_chat import CONFIDENT, MEAL, MEAL_ANSWER

QUESTION: list[ChatCompletionMessageParam] = [{"role": "system", "content": "You are helpful."},
                                              {"role": "user", "content": MEAL}]


@dataclass
class Setup:
    server: Server
    generator: ScriptedServer
    key: str  # the reader's
    key_id: str

    def sdk(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.server.url}/v1", api_key=key or self.key, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """KBs 'shared' (the reader may read it) and 'secret' (it may not), one tiny document each."""
    llm = ScriptedLLM(answer_for=[(".", MEAL_ANSWER)], yes=CONFIDENT)
    with ScriptedServer(llm) as generator, \
            rag_server(tmp_path_factory.mktemp("sdk"), KEY, None, RAG_LLM_BASE_URL=generator.url,
                       RAG_TRANSLATE_QUERY="false") as server, server.client(timeout=60) as op:
        ingest(op, "shared", ("travel.txt", TRAVEL))
        ingest(op, "secret", ("lighthouse.txt", LIGHTHOUSE))
        op.post("/v1/users", json={"name": "reader", "role": "reader"}).raise_for_status()
        made = op.post("/v1/keys", json={"user": "reader"}).raise_for_status().json()
        op.post("/v1/kbs/shared/grants", json={"user": "reader", "level": "read"}).raise_for_status()
        yield Setup(server, generator, made["key"], made["id"])


def test_models_are_the_readable_knowledge_bases(setup: Setup) -> None:
    client = setup.sdk()
    models = list(client.models.list())
    assert [m.id for m in models] == ["shared"]
    assert models[0].object == "model" and models[0].owned_by == "rag-service" and models[0].created > 0
    assert sorted(m.id for m in setup.sdk(KEY).models.list()) == ["secret", "shared"]  # the operator's
    shared = client.models.retrieve("shared")
    assert (shared.id, shared.created) == ("shared", models[0].created)
    for name in ("secret", "nowhere"):  # unreadable and missing: the same error
        with pytest.raises(openai.NotFoundError) as caught:
            client.models.retrieve(name)
        error = caught.value
        assert error.status_code == 404 and error.code == "kb_not_found"
        assert error.message == f"Error code: 404 - knowledge base '{name}' does not exist"
        problem = error.response.json()  # the problem document is all there beside the OpenAI member
        assert (problem["status"], problem["code"], problem["detail"]) == (
            404, "kb_not_found", f"knowledge base '{name}' does not exist")
        assert problem["error"] == {"message": problem["detail"], "type": "kb_not_found", "code": "kb_not_found"}


def test_a_completion_whole_and_streamed(setup: Setup) -> None:
    client = setup.sdk()
    completion = client.chat.completions.create(model="shared", messages=QUESTION)
    (choice,) = completion.choices
    assert choice.message.content == MEAL_ANSWER and choice.message.role == "assistant"
    assert choice.finish_reason == "stop" and completion.model == "shared" and completion.id.startswith("chatcmpl-")
    assert completion.usage is not None and completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens) > 0
    extra = completion.model_extra or {}
    assert extra["refused"] is False and [c["source"] for c in extra["citations"]] == ["travel.txt"]

    chunks = list(client.chat.completions.create(model="shared", messages=QUESTION, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == MEAL_ANSWER
    assert chunks[-1].choices[0].finish_reason == "stop" and len({c.id for c in chunks}) == 1


def test_errors_carry_the_problem_detail(setup: Setup) -> None:
    client = setup.sdk()
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="secret", messages=QUESTION)
    assert caught.value.message == "Error code: 404 - knowledge base 'secret' does not exist"
    assert caught.value.code == "kb_not_found" and caught.value.type == "kb_not_found"
    with pytest.raises(openai.NotFoundError):  # refused before a stream starts
        client.chat.completions.create(model="secret", messages=QUESTION, stream=True)
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="shared", messages=[{"role": "assistant", "content": "hi"}])
    assert bad.value.code == "invalid_input" and "the last message must be a non-empty user message" in str(bad.value)
    with pytest.raises(openai.UnprocessableEntityError) as invalid:
        client.chat.completions.create(model="shared", messages=[])
    assert invalid.value.code == "validation_error" and "messages" in invalid.value.message

    # a generator failure after the stream began: the SDK raises the error chunk's message
    setup.generator.llm = ScriptedLLM(yes=CONFIDENT)  # the gate is scripted, the draft is not
    try:
        with pytest.raises(openai.APIError) as failed:
            list(client.chat.completions.create(model="shared", messages=QUESTION, stream=True))
    finally:
        setup.generator.llm = ScriptedLLM(answer_for=[(".", MEAL_ANSWER)], yes=CONFIDENT)
    assert failed.value.code == "llm_error" and "the language model failed" in failed.value.message
    assert "127.0.0.1" not in failed.value.message


def test_a_revoked_key_is_an_authentication_error(setup: Setup) -> None:
    with setup.server.client(timeout=60) as op:
        made = op.post("/v1/keys", json={"user": "reader"}).raise_for_status().json()
        client = setup.sdk(made["key"])
        assert [m.id for m in client.models.list()] == ["shared"]
        op.delete(f"/v1/keys/{made['id']}").raise_for_status()
    for call in (client.models.list, lambda: client.chat.completions.create(model="shared", messages=QUESTION)):
        with pytest.raises(openai.AuthenticationError) as caught:
            call()
        assert caught.value.status_code == 401 and caught.value.code == "unauthorized"
        assert caught.value.message == f"Error code: 401 - API key rag_{made['id']} was revoked"
    with pytest.raises(openai.AuthenticationError) as unknown:
        setup.sdk("not-a-key").models.list()
    assert "missing or invalid API key" in unknown.value.message
    assert [m.id for m in setup.sdk().models.list()] == ["shared"]  # the reader's first key still works


def test_embeddings_by_a_readable_kb_or_a_bundled_embedder(setup: Setup) -> None:
    """The SDK asks for base64 by default; the vectors are e5's own, as a question (default) or as a passage."""
    import httpx
    import numpy as np

    from rag_service.models.embeddings import get_embedder

    e5 = get_embedder("e5")
    texts = ["What is the daily meal allowance?", "每位读者最多可以借几本书？"]
    client = setup.sdk()
    made = client.embeddings.create(model="shared", input=texts)
    assert [d.index for d in made.data] == [0, 1] and made.model == "shared"
    got = np.array([d.embedding for d in made.data], dtype=np.float32)
    assert got.shape == (2, e5.dim)
    assert np.allclose(got, np.stack([e5.embed_query(t) for t in texts]), atol=1e-5)
    assert made.usage.prompt_tokens == made.usage.total_tokens == sum(e5.count_tokens(t) for t in texts)
    passage = client.embeddings.create(model="e5", input=texts[0], extra_body={"input_type": "passage"})
    assert np.allclose(passage.data[0].embedding, e5.embed_documents([texts[0]])[0], atol=1e-5)
    assert not np.allclose(passage.data[0].embedding, got[0], atol=1e-3)  # a passage is embedded differently
    with httpx.Client(base_url=setup.server.url, headers={"Authorization": f"Bearer {setup.key}"}) as http:
        plain = http.post("/v1/embeddings", json={"model": "default", "input": texts[1]}).raise_for_status().json()
        assert np.allclose(plain["data"][0]["embedding"], got[1], atol=1e-5)  # floats, the configured embedder
        too_many = http.post("/v1/embeddings", json={"model": "e5", "input": ["x"] * 2049})
        assert too_many.status_code == 400 and "RAG_MAX_EMBEDDING_INPUTS" in too_many.json()["error"]["message"]
        too_long = http.post("/v1/embeddings", json={"model": "e5", "input": ["meal allowance " * 2000] * 3})
        assert too_long.status_code == 400 and "RAG_MAX_EMBEDDING_TOKENS" in too_long.json()["error"]["message"]
    with pytest.raises(openai.NotFoundError) as hidden:
        client.embeddings.create(model="secret", input="x")
    assert hidden.value.message == "Error code: 404 - knowledge base 'secret' does not exist"
    for bad, words in (([[1, 2, 3]], "token arrays"), ("", "non-empty")):
        with pytest.raises(openai.BadRequestError) as refused:
            client.embeddings.create(model="e5", input=bad)  # type: ignore[arg-type]
        assert words in refused.value.message
    with pytest.raises(openai.BadRequestError, match="384-dimensional"):
        client.embeddings.create(model="e5", input="x", dimensions=256)
