"""Where one answer's time goes, model call by model call: for FAQ questions answered in this process (the FAQ
documents ingested into a temporary workspace, the server's warm start done first), each call to the generator with
its kind, the prompt tokens llama.cpp evaluated (its own count: a prefix restored from a saved state is not evaluated
again), the tokens it generated and its seconds; then the totals per kind.

Kinds: ``complete`` (the query translation for a KB in two languages), ``yes_probability`` (the gate, asked before
the draft), ``stream`` (the draft), ``yes_probability+after`` (the checks after the draft: passage gates and evidence
checks).

    .venv/bin/python bench/answer_calls.py [--questions 8] [--llm qwen2.5-coder-1.5b]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAG_MODEL_CACHE_DIR", str(ROOT / "data" / "models"))

from rag_service.answering.generation import Answerer, warm_up  # noqa: E402
from rag_service.ingestion.pipeline import Ingestor  # noqa: E402
from rag_service.models.llm import LlamaCppLLM, get_llm  # noqa: E402
from rag_service.settings import Settings  # noqa: E402
from rag_service.workspace import Workspace  # noqa: E402

FAQ = ROOT / "eval" / "data" / "faq"


def instrument(llm: LlamaCppLLM, calls: list[tuple[str, int, int, float]]) -> None:
    """Record (kind, prompt tokens evaluated, tokens generated, seconds) for every call of ``llm``."""
    import llama_cpp

    def perf() -> tuple[int, int]:
        p = llama_cpp.llama_perf_context(llm._llama.ctx)
        return int(p.n_p_eval), int(p.n_eval)

    def wrap(name: str) -> None:
        original: Callable[..., Any] = getattr(llm, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            kind = name + ("+after" if kwargs.get("after_answer") else "")
            llama_cpp.llama_perf_context_reset(llm._llama.ctx)
            started = time.perf_counter()
            result = original(*args, **kwargs)
            if name != "stream":
                calls.append((kind, *perf(), time.perf_counter() - started))
                return result

            def pieces() -> Iterator[Any]:
                yield from result
                calls.append((kind, *perf(), time.perf_counter() - started))
            return pieces()

        setattr(llm, name, call)

    for name in ("complete", "yes_probability", "stream"):
        wrap(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=8, help="answerable FAQ questions, spread over the file")
    parser.add_argument("--llm", default="qwen2.5-coder-1.5b")
    args = parser.parse_args(argv)
    rows = [json.loads(line) for line in (FAQ / "questions.jsonl").read_text(encoding="utf-8").splitlines() if line]
    answerable = [r for r in rows if r.get("answers")]
    picked = answerable[:: max(1, len(answerable) // args.questions)][: args.questions]
    with tempfile.TemporaryDirectory(prefix="answer-calls-") as tmp:
        ws = Workspace(Settings(data_dir=Path(tmp), llm=args.llm))
        ingestor, _ = Ingestor.open(ws, "faq")
        ingestor.run([FAQ / "docs"])
        llm = get_llm(ws.settings)
        assert isinstance(llm, LlamaCppLLM), "the in-process llama.cpp generator is measured"
        warm_up(llm, ws.settings)
        calls: list[tuple[str, int, int, float]] = []
        instrument(llm, calls)
        answerer = Answerer(ws, ingestor.kb, llm)
        totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
        for row in picked:
            calls.clear()
            started = time.perf_counter()
            answerer.ask(row["question"])
            print(f"{row['id']}: {time.perf_counter() - started:.2f} s")
            for kind, evaluated, generated, seconds in calls:
                print(f"   {kind:<22} prompt tokens evaluated {evaluated:4d}  generated {generated:3d}  "
                      f"{seconds:5.2f} s")
                total = totals[kind]
                total[0] += 1
                total[1] += evaluated
                total[2] += generated
                total[3] += seconds
        ws.close()
    print(f"\nper kind over {len(picked)} questions: calls, prompt tokens evaluated, tokens generated, seconds")
    for kind, (n, tokens_in, tokens_out, spent) in totals.items():
        print(f"  {kind:<22} {int(n):3d} calls  {int(tokens_in):6d} evaluated  {int(tokens_out):5d} generated  "
              f"{spent:7.2f} s  ({spent / n:.2f} s per call)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
