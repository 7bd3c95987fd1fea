"""Grounded answers against LangChain's "stuff" chain: prompt tokens, time to first token, total time
and answer F1 on the same hits and the same model instance.

The sample documents (``samples/``, English and Chinese) are ingested with the real pipeline into a
temporary data dir. For each question our ``Retriever`` runs once; both pipelines get those very hits:

- ours: ``Answerer.stream`` (refusal floor, token-budget packing, the answer template, citation
  validation), its retriever swapped for one that returns the precomputed hits;
- LangChain: ``create_stuff_documents_chain`` (LCEL) with LangChain's default QA prompt (the classic
  ``question_answering`` stuff prompt), documents as ``page_content`` joined by "\\n\\n", and our LLM
  (``get_llm``: the same loaded llama.cpp model) wrapped as a streaming runnable.

Both use the same ``max_tokens`` and temperature 0. Prompt tokens come from the ``Completion`` the LLM
yields on both sides (ours through ``Answer.usage``), so the accounting is identical and includes the
chat template (for the LangChain prompt, which has no system message, that means Qwen's default system
prompt). Time to first token and total time are measured from handing the question and hits to the
pipeline to its first text piece and to its end (retrieval excluded on both sides). F1 is
``rag_service.eval.metrics.token_f1`` (SQuAD tokens for English, CMRC 2018 characters for Chinese), after
removing ``[n]`` citation markers, which only our answers carry.

KV cache: llama.cpp reuses the longest common prompt prefix with the previous call, which would favour
whichever pipeline ran just before itself. The cache is therefore cleared before every pipeline call
(both pay for their whole prompt; ``--keep-cache`` disables this) and the order alternates per question
(ours first on odd-numbered questions, LangChain first on even ones) so that load drift on a shared
machine hits both alike. After each question our exact prompt (``--raw-eval both``: both prompts) is
evaluated once more with bare ``Llama.eval`` from an empty cache: the model's raw prompt-eval rate in
the same run, for the issue's "time to first token within 1.2x of prompt tokens / raw rate" target.

    .venv/bin/python bench/answer_bench.py [--questions FILE] [--limit N] [--k 5] [--verbose] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))
# The assembled GGUF is large: share the checkout's cache, as the tests and the demo do.
os.environ.setdefault("RAG_MODEL_CACHE_DIR", str(ROOT / "data" / "models"))

from langchain_core.documents import Document  # noqa: E402
from langchain_core.prompt_values import PromptValue  # noqa: E402
from langchain_core.runnables import Runnable, RunnableGenerator  # noqa: E402

from rag_service.answering.citations import strip_markers  # noqa: E402
from rag_service.answering.generation import Answerer  # noqa: E402
from rag_service.eval.metrics import token_f1  # noqa: E402
from rag_service.ingestion.pipeline import Ingestor  # noqa: E402
from rag_service.models.llm import LLM, Completion, get_llm  # noqa: E402
from rag_service.models.registry import force_offline  # noqa: E402
from rag_service.records import Answer, Hit  # noqa: E402
from rag_service.retrieval.langchain_adapter import to_document  # noqa: E402
from rag_service.retrieval.search import Retriever  # noqa: E402
from rag_service.settings import Settings  # noqa: E402
from rag_service.text.language import query_language  # noqa: E402
from rag_service.workspace import Workspace  # noqa: E402

try:  # LangChain's own stuff chain and default QA prompt
    from langchain_classic.chains.combine_documents import create_stuff_documents_chain
    from langchain_classic.chains.question_answering.stuff_prompt import PROMPT as LANGCHAIN_QA_PROMPT
    LANGCHAIN_SOURCE = "langchain_classic"
except ImportError:  # langchain_classic not installed: the same chain and prompt text, reproduced verbatim
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import PromptTemplate, format_document
    from langchain_core.runnables import RunnablePassthrough

    LANGCHAIN_QA_PROMPT = PromptTemplate.from_template(
        "Use the following pieces of context to answer the question at the end. If you don't know the answer, "
        "just say that you don't know, don't try to make up an answer.\n\n{context}\n\nQuestion: {question}\n"
        "Helpful Answer:")
    LANGCHAIN_SOURCE = "reproduced (langchain_classic not installed)"

    def create_stuff_documents_chain(llm: Any, prompt: Any) -> Runnable:  # type: ignore[misc]
        doc_prompt = PromptTemplate.from_template("{page_content}")
        return (RunnablePassthrough.assign(context=lambda x: "\n\n".join(format_document(d, doc_prompt)
                                                                        for d in x["context"]))
                | prompt | llm | StrOutputParser())

QUESTIONS = ROOT / "bench" / "answer_questions.jsonl"
SAMPLES = ROOT / "samples"
KB_NAME = "bench"
_ROLES = {"human": "user", "ai": "assistant", "system": "system"}
PROMPT_TOKEN_TARGET = 0.6
TTFT_RAW_TARGET = 1.2


# -- the two pipelines ----------------------------------------------------------------------------
@dataclass
class Run:
    """One pipeline's answer to one question."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float | None  # None when no text came out at all
    total_s: float
    f1: float = 0.0
    parts: dict[str, int] = field(default_factory=dict)  # prompt tokens by part (approximate, see prompt_parts)
    raw_eval_s: float | None = None  # bare Llama.eval of the same prompt tokens from an empty cache
    note: str = ""


class FixedHits:
    """Stands in for ``Answerer.retriever``: returns the hits retrieved once for both pipelines."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []

    def search(self, query: str, **_: Any) -> list[Hit]:
        return list(self.hits)


class LangChainModel:
    """Our LLM as the stuff chain's model: a streaming runnable that turns the prompt value into
    ``[{"role", "content"}]`` messages and streams through ``LLM.stream``, keeping the Completion."""

    def __init__(self, llm: LLM, *, max_tokens: int, temperature: float) -> None:
        self.llm = llm
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.messages: list[dict[str, str]] = []
        self.completion: Completion | None = None

    def _transform(self, values: Iterator[PromptValue]) -> Iterator[str]:
        for value in values:
            self.messages = [{"role": _ROLES.get(m.type, m.type), "content": str(m.content)}
                             for m in value.to_messages()]
            for item in self.llm.stream(self.messages, max_tokens=self.max_tokens, temperature=self.temperature):
                if isinstance(item, Completion):
                    self.completion = item
                else:
                    yield item

    def runnable(self) -> Runnable:
        return RunnableGenerator(self._transform, name="rag_service_llm")


def prompt_parts(llm: LLM, messages: list[dict[str, str]], passages: list[str], question: str,
                 prompt_tokens: int) -> dict[str, int]:
    """Where a prompt's tokens go: system message, few-shot turns, passage texts, the question, the
    framing around them in the last message (numbers, sources, labels, instructions there) and what the
    chat template adds. Counted piecewise, so parts may be off by a token or two at the seams."""
    count = [llm.count_tokens(m["content"]) for m in messages]
    system = count[0] if messages[0]["role"] == "system" and len(messages) > 1 else 0
    example = sum(count[1 if system else 0:-1])
    text = sum(llm.count_tokens(p) for p in passages)
    q = llm.count_tokens(question)
    return {"system": system, "example": example, "passages": text, "question": q,
            "framing": count[-1] - text - q, "chat_template": prompt_tokens - sum(count)}


def _llama(llm: LLM) -> Any:
    return getattr(llm, "_llama", None)  # the in-process llama.cpp model; None for an HTTP backend


def clear_cache(llm: LLM) -> None:
    llama = _llama(llm)
    if llama is not None:
        with llm._lock:  # type: ignore[attr-defined]
            llama.reset()


def prompt_ids(llm: LLM, prompt_tokens: int) -> list[int]:
    """The prompt tokens of the call that just finished (the context holds prompt + answer)."""
    llama = _llama(llm)
    return [] if llama is None else llama.input_ids[:prompt_tokens].tolist()


def raw_eval_seconds(llm: LLM, ids: list[int]) -> float | None:
    """Bare prompt evaluation of ``ids`` from an empty KV cache (no sampling, no Python streaming)."""
    llama = _llama(llm)
    if llama is None or not ids:
        return None
    with llm._lock:  # type: ignore[attr-defined]
        llama.reset()
        t0 = time.perf_counter()
        llama.eval(ids)
        seconds = time.perf_counter() - t0
        llama.reset()
    return seconds


def run_ours(answerer: Answerer, question: str, k: int) -> tuple[Run, Answer]:
    t0 = time.perf_counter()
    ttft = None
    answer: Answer | None = None
    for item in answerer.stream(question, k=k):
        if isinstance(item, Answer):
            answer = item
        elif ttft is None and item:
            ttft = time.perf_counter() - t0
    total = time.perf_counter() - t0
    assert answer is not None
    note = ("refused before the LLM" if answer.trace.get("refused_before_llm")
            else "refused" if answer.refused else "" if answer.grounded else "no valid citation")
    return Run(answer.answer, answer.usage.prompt_tokens, answer.usage.completion_tokens, ttft, total,
               note=note), answer


def run_langchain(chain: Runnable, model: LangChainModel, question: str, docs: list[Document]) -> Run:
    model.completion = None
    t0 = time.perf_counter()
    ttft = None
    pieces: list[str] = []
    for piece in chain.stream({"context": docs, "question": question}):
        if ttft is None and piece:
            ttft = time.perf_counter() - t0
        pieces.append(piece)
    total = time.perf_counter() - t0
    completion = model.completion
    assert completion is not None
    return Run("".join(pieces), completion.prompt_tokens, completion.completion_tokens, ttft, total)


# -- the run --------------------------------------------------------------------------------------
def hit_record(llm: LLM, hit: Hit, answers: list[str]) -> dict[str, Any]:
    text = hit.chunk.text
    return {"chunk_id": hit.chunk.id, "source": hit.chunk.source, "tokens": llm.count_tokens(text),
            "fused": round(hit.score, 5), "vector": round(hit.scores.get("vector", float("nan")), 4),
            "bm25_rank": hit.ranks.get("bm25"), "gold": any(a.lower() in text.lower() for a in answers)}


def load_questions(path: Path) -> list[dict[str, Any]]:
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            row = json.loads(line)
            rows.append({"id": row.get("id", f"q{i}"), "question": row["question"], "answers": row["answers"]})
    return rows


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else 0.0


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def _short(text: str, n: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _ttft(run: Run) -> str:
    return f"{run.ttft_s:6.2f}" if run.ttft_s is not None else "     -"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=Path, default=QUESTIONS, help="JSON lines: question, answers[, id]")
    ap.add_argument("--limit", type=int, default=None, help="only the first N questions")
    ap.add_argument("--k", type=int, default=5, help="hits retrieved once and given to both pipelines")
    ap.add_argument("--verbose", action="store_true", help="per-question table and both answers")
    ap.add_argument("--keep-cache", action="store_true", help="do not clear the KV cache before each call")
    ap.add_argument("--raw-eval", choices=("ours", "both", "none"), default="ours",
                    help="whose exact prompts to re-evaluate with bare Llama.eval for the raw prompt-eval rate")
    ap.add_argument("--json", type=Path, default=None, help="also write every record to this file")
    ap.add_argument("--report", type=Path, default=None, help="only print the report of a saved --json file")
    args = ap.parse_args()
    if args.report is not None:
        report(json.loads(args.report.read_text(encoding="utf-8")), args.verbose)
        return
    force_offline()
    questions = load_questions(args.questions)[: args.limit]

    with tempfile.TemporaryDirectory(prefix="answer-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", llm_temperature=0.0)
        ws = Workspace(settings)
        try:
            ingestor, _ = Ingestor.open(ws, KB_NAME)
            results = ingestor.run([SAMPLES])
            failed = [r for r in results if r.status == "failed"]
            if failed:
                raise SystemExit(f"bench ingest failed: {failed[0].error}")
            kb = ingestor.kb
            chunks = sum(d.chunks for d in ws.catalog.documents(kb.id))
            llm = get_llm(settings)
            llm.complete([{"role": "user", "content": "Hi"}], max_tokens=1, temperature=0.0)  # page the weights in

            answerer = Answerer(ws, kb, llm)
            fixed = FixedHits()
            answerer.retriever = fixed  # type: ignore[assignment]
            retriever = Retriever(ws, kb)
            model = LangChainModel(llm, max_tokens=settings.llm_max_tokens, temperature=settings.llm_temperature)
            chain = create_stuff_documents_chain(model.runnable(), LANGCHAIN_QA_PROMPT)

            print(f"KB: {len(results)} sample files, {chunks} chunks ({kb.splitter} {kb.chunk_size}/"
                  f"{kb.chunk_overlap} {kb.chunk_unit}, embedder {kb.embedder}); model {llm.name}, "
                  f"{settings.llm_threads} threads, max_tokens {settings.llm_max_tokens}, temperature "
                  f"{settings.llm_temperature}; k={args.k}; LangChain stuff chain + QA prompt from {LANGCHAIN_SOURCE}")
            print("KV cache " + ("kept between calls" if args.keep_cache else "cleared before every pipeline call")
                  + "; order alternates per question (ours first on odd-numbered questions)", flush=True)

            records = []
            for i, q in enumerate(questions, start=1):
                hits = retriever.search(q["question"], k=args.k)
                fixed.hits = hits
                docs = [to_document(h) for h in hits]
                runs: dict[str, Run] = {}
                for name in (("ours", "langchain") if i % 2 else ("langchain", "ours")):
                    if not args.keep_cache:
                        clear_cache(llm)
                    if name == "ours":
                        run, answer = run_ours(answerer, q["question"], args.k)
                        ours_ids = prompt_ids(llm, run.prompt_tokens)
                        messages = answer.trace.get("messages", [])  # exactly what was sent
                        ids = set(answer.trace.get("packed", []))
                        packed = [h.chunk.text for h in hits if h.chunk.id in ids]
                    else:
                        run = run_langchain(chain, model, q["question"], docs)
                        lc_ids = prompt_ids(llm, run.prompt_tokens)
                        messages, packed = model.messages, [d.page_content for d in docs]
                    if run.prompt_tokens and messages:
                        run.parts = prompt_parts(llm, messages, packed, q["question"], run.prompt_tokens)
                    run.f1 = token_f1(strip_markers(run.text), q["answers"])
                    runs[name] = run
                if args.raw_eval != "none":
                    runs["ours"].raw_eval_s = raw_eval_seconds(llm, ours_ids)
                if args.raw_eval == "both":
                    runs["langchain"].raw_eval_s = raw_eval_seconds(llm, lc_ids)
                record = {"id": q["id"], "language": query_language(q["question"]), "question": q["question"],
                          "answers": q["answers"], "hits": [hit_record(llm, h, q["answers"]) for h in hits],
                          **{name: asdict(run) for name, run in runs.items()}}
                records.append(record)
                o, lc = runs["ours"], runs["langchain"]
                print(f"[{i}/{len(questions)}] {q['id']}: tokens {o.prompt_tokens}/{lc.prompt_tokens} "
                      f"ttft {_ttft(o).strip()}/{_ttft(lc).strip()} s f1 {o.f1:.2f}/{lc.f1:.2f} (ours/langchain)",
                      file=sys.stderr, flush=True)
        finally:
            ws.close()

    report(records, args.verbose)
    if args.json is not None:
        args.json.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")


def report(records: list[dict[str, Any]], verbose: bool) -> None:
    if not records:
        print("no questions")
        return
    pipes = ("ours", "langchain")
    if verbose:
        print()
        print(f"{'question':<16} {'lang':<4} {'prompt tok':>11} {'ttft s':>13} {'total s':>13} {'F1':>11}  note")
        print(f"{'':<16} {'':<4} {'ours':>5} {'lc':>5} {'ours':>6} {'lc':>6} {'ours':>6} {'lc':>6} "
              f"{'ours':>5} {'lc':>5}")
        for r in records:
            o, lc = (Run(**r[p]) for p in pipes)
            print(f"{r['id']:<16} {r['language']:<4} {o.prompt_tokens:>5} {lc.prompt_tokens:>5} {_ttft(o)} {_ttft(lc)} "
                  f"{o.total_s:6.2f} {lc.total_s:6.2f} {o.f1:5.2f} {lc.f1:5.2f}  {o.note}")
        print()
        for r in records:
            print(f"{r['id']}: {r['question']}  gold: {' | '.join(r['answers'])}")
            for p in pipes:
                print(f"    {p:<9} {_short(r[p]['text'], 150)}")

    runs = {p: [Run(**r[p]) for r in records] for p in pipes}
    tokens = {p: _mean([x.prompt_tokens for x in runs[p]]) for p in pipes}
    f1 = {p: _mean([x.f1 for x in runs[p]]) for p in pipes}
    ttft = {p: _mean([x.ttft_s for x in runs[p] if x.ttft_s is not None]) for p in pipes}
    total = {p: _mean([x.total_s for x in runs[p]]) for p in pipes}
    completion = {p: _mean([x.completion_tokens for x in runs[p]]) for p in pipes}
    token_ratio = _ratio(tokens["ours"], tokens["langchain"])
    ttft_ratio = _ratio(ttft["ours"], ttft["langchain"])

    print()
    n = len(records)
    print(f"{n} questions ({sum(r['language'] == 'en' for r in records)} en, "
          f"{sum(r['language'] == 'zh' for r in records)} zh), both pipelines on the same hits and model")
    print(f"{'':<28} {'ours':>9} {'langchain':>10}")
    print(f"{'prompt tokens (mean)':<28} {tokens['ours']:>9.1f} {tokens['langchain']:>10.1f}   ratio "
          f"{token_ratio:.3f} (target <= {PROMPT_TOKEN_TARGET})")
    print(f"{'completion tokens (mean)':<28} {completion['ours']:>9.1f} {completion['langchain']:>10.1f}")
    print(f"{'answer F1 (mean)':<28} {f1['ours']:>9.3f} {f1['langchain']:>10.3f}   target: ours >= langchain")
    for lang in ("en", "zh"):
        sel = [i for i, r in enumerate(records) if r["language"] == lang]
        if sel:
            print(f"{'  F1 ' + lang:<28} {_mean([runs['ours'][i].f1 for i in sel]):>9.3f} "
                  f"{_mean([runs['langchain'][i].f1 for i in sel]):>10.3f}")
    print(f"{'time to first token s':<28} {ttft['ours']:>9.2f} {ttft['langchain']:>10.2f}   ratio {ttft_ratio:.3f}")
    print(f"{'total time s':<28} {total['ours']:>9.2f} {total['langchain']:>10.2f}   ratio "
          f"{_ratio(total['ours'], total['langchain']):.3f}")

    called = [i for i, r in enumerate(records) if r["ours"]["prompt_tokens"] and r["langchain"]["prompt_tokens"]]
    if len(called) < n:  # ours answered some without the LLM (refusal floor): compare the others like for like
        sub = {p: [runs[p][i] for i in called] for p in pipes}
        st = {p: _mean([x.prompt_tokens for x in sub[p]]) for p in pipes}
        sf = {p: _mean([x.ttft_s for x in sub[p] if x.ttft_s is not None]) for p in pipes}
        print(f"on the {len(called)} questions where both called the LLM: prompt tokens {st['ours']:.1f} vs "
              f"{st['langchain']:.1f} (ratio {_ratio(st['ours'], st['langchain']):.3f}), TTFT {sf['ours']:.2f} vs "
              f"{sf['langchain']:.2f} s (ratio {_ratio(sf['ours'], sf['langchain']):.3f}), F1 "
              f"{_mean([x.f1 for x in sub['ours']]):.3f} vs {_mean([x.f1 for x in sub['langchain']]):.3f}")
    raw = [(x.prompt_tokens, x.raw_eval_s) for p in pipes for x in runs[p] if x.raw_eval_s]
    if raw:
        rate = sum(t for t, _ in raw) / sum(s for _, s in raw)
        print(f"raw prompt eval (bare Llama.eval of the same prompt tokens, empty cache): {rate:.1f} tokens/s")
        for p in pipes:
            timed = [runs[p][i] for i in called if runs[p][i].ttft_s is not None]
            got = _mean([x.ttft_s for x in timed])  # type: ignore[misc]
            expected = _mean([x.prompt_tokens for x in timed]) / rate
            print(f"  {p:<9} mean TTFT / (mean prompt tokens / raw rate) = {got:.2f} / {expected:.2f} = "
                  f"{_ratio(got, expected):.3f}" + (f" (target <= {TTFT_RAW_TARGET})" if p == "ours" else ""))
    gold_tokens = _mean([sum(h["tokens"] for h in r["hits"] if h["gold"]) for r in records])
    other_tokens = _mean([sum(h["tokens"] for h in r["hits"] if not h["gold"]) for r in records])
    first = [next((j for j, h in enumerate(r["hits"], 1) if h["gold"]), None) for r in records]
    print(f"hits given to both: {_mean([len(r['hits']) for r in records]):.1f} per question, "
          f"{_mean([sum(h['gold'] for h in r['hits']) for r in records]):.2f} containing a gold answer, the first "
          f"at mean rank {_mean([j for j in first if j]):.2f} ({first.count(None)} questions without one); "
          f"passage-text tokens in hits with / without a gold answer: {gold_tokens:.1f} / {other_tokens:.1f}")
    notes = [f"{r['id']}: {r['ours']['note']}" for r in records if r["ours"]["note"]]
    if notes:
        print("ours, flagged: " + "; ".join(notes))

    print("prompt tokens by part (mean; piecewise counts, +-1-2 at the seams):")
    keys = ("system", "example", "passages", "framing", "question", "chat_template")
    print(f"  {'':<10}" + "".join(f"{k:>14}" for k in keys))
    for p in pipes:
        parted = [x.parts for x in runs[p] if x.parts]
        print(f"  {p:<10}" + "".join(f"{_mean([d[k] for d in parted]):>14.1f}" for k in keys))
    print(f"prompt_token_ratio={token_ratio:.3f} f1_ours={f1['ours']:.3f} f1_langchain={f1['langchain']:.3f} "
          f"ttft_ratio={ttft_ratio:.3f}")


if __name__ == "__main__":
    main()
