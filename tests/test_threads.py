"""CPU sharing and prompt reuse: the wait policy set before the engines load, ingestion niced, fewer generation
threads while ingesting, saved prompt states."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rag_service import prompts
from rag_service.answering.generation import warm_up
from rag_service.ingestion.worker import JobWorker
from rag_service.models.llm import LlamaCppLLM, get_llm
from rag_service.settings import Settings
from rag_service.storage.jobs import UploadedFile
from rag_service.threads import configure_openmp, ingest_active, ingesting, lower_thread_priority
from rag_service.workspace import Workspace


def _policy_after_import(env: dict[str, str]) -> str:
    """OMP_WAIT_POLICY as a fresh interpreter sees it after importing rag_service (what the engines will read)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "RAG_OMP_WAIT_POLICY")}
    code = "import os, rag_service; print(os.environ.get('OMP_WAIT_POLICY', '<unset>'))"
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_importing_rag_service_sets_the_wait_policy_unless_given() -> None:
    assert _policy_after_import({}) == "PASSIVE"
    assert _policy_after_import({"RAG_OMP_WAIT_POLICY": "active"}) == "ACTIVE"
    assert _policy_after_import({"RAG_OMP_WAIT_POLICY": "default"}) == "<unset>"  # the runtime's own
    assert _policy_after_import({"OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"  # an operator's choice stands
    env: dict[str, str] = {"RAG_OMP_WAIT_POLICY": "bogus", "RAG_EMBED_THREADS": "0"}
    configure_openmp(env)
    assert "OMP_WAIT_POLICY" not in env and "OMP_NUM_THREADS" not in env  # Settings reports bad values
    env = {"RAG_EMBED_THREADS": "1"}
    configure_openmp(env)
    assert env == {"RAG_EMBED_THREADS": "1", "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    env = {"RAG_EMBED_THREADS": "1", "OMP_NUM_THREADS": "2"}
    configure_openmp(env)
    assert env["OMP_NUM_THREADS"] == "2"


def test_lower_thread_priority_is_per_thread_and_never_lowers() -> None:
    seen: dict[str, int] = {}

    def body() -> None:
        seen["set"] = lower_thread_priority(5)
        seen["again"] = lower_thread_priority(2)  # asking for less leaves it where it is
        seen["os"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen == {"set": 5, "again": 5, "os": 5}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == 0  # this thread untouched
    assert lower_thread_priority(0) == 0


def test_ingest_worker_thread_runs_at_the_configured_niceness(tmp_path: Path) -> None:
    ws = Workspace(Settings(data_dir=tmp_path))
    worker = JobWorker(lambda: ws, None, lease_s=30, poll_s=0.05, max_attempts=3, nice=Settings().ingest_nice)
    try:
        worker.start()
        assert worker._thread is not None
        deadline = time.monotonic() + 10
        nice = 0
        while time.monotonic() < deadline and nice == 0:
            tid = worker._thread.native_id
            assert tid is not None
            nice = os.getpriority(os.PRIO_PROCESS, tid)
            time.sleep(0.02)
        assert nice == Settings().ingest_nice > 0
    finally:
        worker.stop(5)
        ws.close()


@pytest.mark.llm
def test_generation_uses_fewer_threads_while_this_process_ingests() -> None:
    """llama.cpp's own thread counts, read back from its context: all threads for prompts always (unless
    configured), the ingesting count for generated tokens and checks after the answer only while an upload job of
    this process runs."""
    import llama_cpp

    llm = get_llm(Settings(llm="qwen2.5-coder-0.5b", llm_threads=2, llm_threads_ingesting=1))
    assert isinstance(llm, LlamaCppLLM)
    messages = [{"role": "user", "content": "Reply with one word: hello."}]

    def ask() -> tuple[int, int]:
        list(llm.stream(messages, max_tokens=2, temperature=0.0))
        ctx = llm._llama.ctx
        return llama_cpp.llama_n_threads(ctx), llama_cpp.llama_n_threads_batch(ctx)

    assert ask() == (2, 2) and not ingest_active()
    with ingesting():
        assert ingest_active() and ask() == (1, 2)
    assert ask() == (2, 2)
    # RAG_LLM_PROMPT_THREADS_INGESTING: prompts yield a core too.
    both = get_llm(Settings(llm="qwen2.5-coder-0.5b", llm_threads=2, llm_threads_ingesting=1,
                            llm_prompt_threads_ingesting=1))
    assert isinstance(both, LlamaCppLLM) and both is not llm
    llm = both
    with ingesting():
        assert ask() == (1, 1)
    assert ask() == (2, 2)
    # RAG_LLM_CHECK_THREADS_INGESTING (default 1): the checks after an answer yield a core; its prompt keeps all.
    llm = get_llm(Settings(llm="qwen2.5-coder-0.5b", llm_threads=2, llm_threads_ingesting=1))

    def check(after_answer: bool) -> tuple[int, int]:
        llm.yes_probability(messages, after_answer=after_answer)
        return llama_cpp.llama_n_threads(llm._llama.ctx), llama_cpp.llama_n_threads_batch(llm._llama.ctx)

    with ingesting():
        assert check(True) == (1, 1) and ask() == (1, 2) and check(False) == (1, 2) and check(True) == (1, 1)
    assert check(True) == (2, 2)
    llm = get_llm(Settings(llm="qwen2.5-coder-0.5b", llm_threads=2, llm_threads_ingesting=1,
                           llm_check_threads_ingesting=2))
    with ingesting():
        assert check(True) == (1, 2)


def test_an_upload_job_marks_the_process_as_ingesting(tmp_path: Path) -> None:
    """While the worker ingests a job, ``ingest_active()`` holds (the LLM reads it); before and after, not."""
    ws = Workspace(Settings(data_dir=tmp_path))
    seen: list[bool] = []
    try:
        kb = ws.create_kb("jobs", splitter="recursive", chunk_size=400, chunk_overlap=60)
        upload = tmp_path / "rules.txt"
        upload.write_text("".join(f"第{i}条：读者借书需要出示校园卡，每次最多借十本。" for i in range(50)),
                          encoding="utf-8")
        data = upload.read_bytes()
        ws.jobs.create("job1", kb.id, kb.name,
                       [UploadedFile(upload, "rules.txt", hashlib.sha256(data).hexdigest(), len(data))])
        worker = JobWorker(lambda: ws, None, lease_s=30, poll_s=0.05, max_attempts=3, nice=0)
        watcher_stop = threading.Event()

        def watch() -> None:
            while not watcher_stop.is_set():
                seen.append(ingest_active())
                time.sleep(0.01)

        watcher = threading.Thread(target=watch)
        assert not ingest_active()
        watcher.start()
        assert worker.run_once()
        watcher_stop.set()
        watcher.join()
        assert ws.jobs.get("job1")["status"] == "succeeded"  # type: ignore[index]
    finally:
        ws.close()
    assert any(seen) and not ingest_active()


def evaluated(llm: LlamaCppLLM, messages: list[dict[str, str]]) -> int:
    """Prompt tokens llama.cpp evaluated (its own count) for a one-token answer to ``messages``."""
    import llama_cpp

    llama_cpp.llama_perf_context_reset(llm._llama.ctx)
    list(llm.stream(messages, max_tokens=1, temperature=0.0))
    return int(llama_cpp.llama_perf_context(llm._llama.ctx).n_p_eval)


@pytest.mark.llm
def test_warm_up_evaluates_each_languages_fixed_prompt_before_the_first_question() -> None:
    """What a server does at start (healthz says 'loading' until it is done): the first question in either language
    then evaluates its passages and question only, not the answer template's system prompt and examples."""
    questions = {"en": ("[1] The shed opens at 9.", "When does the shed open?"),
                 "zh": ("[1] 工具棚早上九点开门。", "工具棚几点开门？")}
    counts = {}
    for warm in (True, False):
        settings = Settings(llm="qwen2.5-coder-0.5b", llm_prompt_cache_mb=32 if warm else 16)
        llm = get_llm(settings)
        assert isinstance(llm, LlamaCppLLM)
        if warm:
            warm_up(llm, settings)
        for lang, (passages, question) in questions.items():
            messages = prompts.load(f"answer.{lang}", settings.prompts_dir).messages(passages=passages,
                                                                                    question=question)
            counts[warm, lang] = evaluated(llm, messages)
    assert counts[True, "en"] < 40 and counts[True, "zh"] < 40, counts
    assert counts[False, "en"] > 200 and counts[False, "zh"] > 200, counts  # the fixed part, without the warm-up


@pytest.mark.llm
def test_a_question_after_other_prompts_starts_from_the_saved_state_of_the_fixed_prompt() -> None:
    """The evidence checks put prompts of their own into the one llama.cpp context between two answers; with the
    prompt cache the next answer still evaluates only what follows the fixed system prompt (llama.cpp's own count
    of evaluated prompt tokens), without it the whole prompt again."""
    fixed = [{"role": "system", "content": "Answer from the numbered passages only. " * 40}]

    counts = {}
    for mb in (64, 0):
        llm = get_llm(Settings(llm="qwen2.5-coder-0.5b", llm_prompt_cache_mb=mb))
        assert isinstance(llm, LlamaCppLLM)
        first = evaluated(llm, [*fixed, {"role": "user", "content": "Passages: [1] The shed opens at 9.\nQuestion: "
                                                                     "When does the shed open?"}])
        evaluated(llm, [{"role": "user", "content": "Is the sky green? Reply yes or no."}])
        second = evaluated(llm, [*fixed, {"role": "user", "content": "Passages: [1] Bees need a permit.\nQuestion: "
                                                                      "Can I keep bees?"}])
        counts[mb] = (first, second)
        if mb:
            # A saved state is the context's KV cache: not also a copy of the library's logits rows (512 x the
            # vocabulary, 297 MB each for Qwen), which nothing reads without logits_all.
            states = list(llm._llama.cache.cache_state.values())  # type: ignore[union-attr]
            row = 4 * llm._llama.n_vocab()
            assert len(states) == 3 and all(s.scores.nbytes <= row for s in states), [s.scores.shape for s in states]
    (first, second), (_, second_off) = counts[64], counts[0]
    assert first > 300 and second < 60, counts  # only the question's own turn was evaluated
    assert second_off > 300, counts  # without the cache the fixed part is evaluated again
