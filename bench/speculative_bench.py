"""Whether speculative decoding or flash attention would pay on this machine (issue 30): the measurements behind not
adopting them (docs/benchmarks.md "Answer latency").

1. Batch cost: the time llama.cpp takes to evaluate 1, 2, 4, 8 and 11 tokens at a 600-token context (what verifying a
   draft of n-1 tokens costs), and the 600-token prompt's rate; with ``--flash-attn`` also with flash attention on.
2. Prompt-lookup decoding: FAQ answer prompts (the questions' real prompts: FAQ documents ingested into a temporary
   workspace, retrieval and packing as in an answer) decoded greedily plainly and with llama-cpp-python's
   ``LlamaPromptLookupDecoding`` for each ``--drafts`` size: generation tokens/s and how many answers are identical
   to plain decoding. The library's draft path asks logits for every prompt token; here only draft batches get them
   (what an adoption would have done).

    .venv/bin/python bench/speculative_bench.py [--prompts 10] [--drafts 3,6] [--flash-attn]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAG_MODEL_CACHE_DIR", str(ROOT / "data" / "models"))

import numpy as np  # noqa: E402
from llama_cpp import Llama  # noqa: E402
from llama_cpp.llama_speculative import LlamaPromptLookupDecoding  # noqa: E402

from rag_service.answering.generation import PREPARE, Answerer, AskOptions  # noqa: E402
from rag_service.ingestion.pipeline import Ingestor  # noqa: E402
from rag_service.models.registry import resolve_generator  # noqa: E402
from rag_service.settings import Settings  # noqa: E402
from rag_service.workspace import Workspace  # noqa: E402

FAQ = ROOT / "eval" / "data" / "faq"
DRAFT_BATCH_MAX = 16  # a batch this short is a draft being verified: it gets logits for every token


class DraftLlama(Llama):
    """Logits for every token only of short (draft) batches, none copied into ``scores``: the sampler reads the
    context's own, and the library's default would compute the vocabulary's logits for every prompt token."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scores = np.zeros((DRAFT_BATCH_MAX, self.n_vocab()), dtype=np.single)

    def eval(self, tokens: Sequence[int]) -> None:
        self._ctx.kv_cache_seq_rm(-1, self.n_tokens, -1)
        for i in range(0, len(tokens), self.n_batch):
            batch = tokens[i: i + self.n_batch]
            n_past = self.n_tokens
            self._batch.set_batch(batch=batch, n_past=n_past, logits_all=len(tokens) <= DRAFT_BATCH_MAX)
            self._ctx.decode(self._batch)
            self.input_ids[n_past: n_past + len(batch)] = batch
            self.n_tokens += len(batch)


def batch_costs(path: str, flash: bool) -> None:
    llm = Llama(model_path=path, n_ctx=4096, n_threads=os.cpu_count() or 1, n_threads_batch=os.cpu_count() or 1,
                verbose=False, flash_attn=flash)
    text = "Employees travelling on business receive a daily meal allowance of 45 euros. " * 60
    tokens = llm.tokenize(text.encode())[:600]
    started = time.perf_counter()
    llm.eval(tokens)
    seconds = time.perf_counter() - started
    print(f"flash attention {'on' if flash else 'off'}: 600-token prompt {600 / seconds:.1f} tokens/s")
    base = llm.n_tokens
    for size in (1, 2, 4, 8, 11):
        times = []
        for _ in range(8):
            llm.n_tokens = base
            started = time.perf_counter()
            llm.eval(tokens[100:100 + size])
            times.append(time.perf_counter() - started)
        print(f"  batch of {size:2d} tokens: {1000 * statistics.median(times):6.1f} ms")


def answer_prompts(n: int, llm_name: str) -> list[list[dict[str, str]]]:
    rows = [json.loads(line) for line in (FAQ / "questions.jsonl").read_text(encoding="utf-8").splitlines() if line]
    answerable = [r for r in rows if r.get("answers")]
    prompts: list[list[dict[str, str]]] = []
    with tempfile.TemporaryDirectory(prefix="speculative-") as tmp:
        ws = Workspace(Settings(data_dir=Path(tmp), llm=llm_name))
        ingestor, _ = Ingestor.open(ws, "faq")
        ingestor.run([FAQ / "docs"])
        answerer = Answerer(ws, ingestor.kb)
        for row in answerable[:: max(1, len(answerable) // n)]:
            turn = answerer._open(row["question"], AskOptions())
            for step in PREPARE:
                step(answerer, turn)
                if turn.early is not None:
                    break
            if turn.early is None:
                prompts.append(turn.messages)
            if len(prompts) == n:
                break
        ws.close()
    return prompts


def decode(llm: Llama, messages: list[dict[str, str]]) -> tuple[str, float, int]:
    """(text, seconds from the first piece to the end, pieces)."""
    first = None
    pieces: list[str] = []
    chunks: Any = llm.create_chat_completion(messages=cast(Any, messages), max_tokens=384, temperature=0.0, seed=0,
                                             stream=True)
    for chunk in chunks:
        piece: str | None = chunk["choices"][0]["delta"].get("content")
        if piece:
            first = first or time.perf_counter()
            pieces.append(piece)
    return "".join(pieces), time.perf_counter() - (first or time.perf_counter()), len(pieces)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--drafts", default="3,6", help="draft sizes to try (comma-separated)")
    parser.add_argument("--flash-attn", action="store_true", help="also measure the batch costs with flash attention")
    parser.add_argument("--llm", default="qwen2.5-coder-1.5b")
    args = parser.parse_args(argv)
    settings = Settings(llm=args.llm)
    path = str(resolve_generator(settings).gguf(settings.models_dir))
    for flash in (False, True) if args.flash_attn else (False,):
        batch_costs(path, flash)
    prompts = answer_prompts(args.prompts, args.llm)
    sizes = [0] + [int(d) for d in args.drafts.split(",") if d.strip()]
    threads = os.cpu_count() or 1
    models = {d: DraftLlama(model_path=path, n_ctx=4096, n_threads=threads, n_threads_batch=threads, verbose=False,
                            **({"draft_model": LlamaPromptLookupDecoding(num_pred_tokens=d)} if d else {}))
              for d in sizes}
    results: dict[int, list[tuple[str, float, int]]] = {d: [] for d in sizes}
    for i, messages in enumerate(prompts):
        for d in sizes:  # the same prompt with each draft size in turn: load drift falls on all alike
            results[d].append(decode(models[d], messages))
        print(f"prompt {i + 1}: " + "  ".join(f"draft {d}: {results[d][-1][2]} pieces {results[d][-1][1]:.2f} s"
                                               for d in sizes), flush=True)
    for d in sizes:
        seconds = sum(r[1] for r in results[d])
        same = sum(r[0] == p[0] for r, p in zip(results[d], results[0], strict=True))
        print(f"draft {d:2d}: {sum(r[2] for r in results[d]) / seconds:5.1f} pieces/s, identical to plain {same}/"
              f"{len(prompts)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
