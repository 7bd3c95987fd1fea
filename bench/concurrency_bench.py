"""Chat while documents index: one real ``rag serve``, a client asking questions one after another while another
uploads a 200-chunk document, against the same questions with no upload and the same upload with no chat, under
the old thread defaults and the new ones (rag_service/threads.py, README "Chat while documents index").

Per configuration, on a fresh data dir (e5 embedder, the bundled LLM named by ``--llm``):

1. **chat alone**, ``--rounds`` (default 3) times, each on a restarted server warmed up by one other question:
   ``--questions`` (default 10) questions over the sample documents, one after another, streamed (``POST
   /v1/kbs/{kb}/chat`` with ``stream=true``): time to first token (request sent -> first ``token`` event) and total
   (-> ``done`` event);
2. **ingest alone, then both**, ``--rounds`` times, each on a server restarted the same way: a generated English
   document of ~200 chunks uploaded alone (``POST /v1/kbs/{kb}/documents``, the job polled every 0.2 s: chunks/s
   from the upload to the job's ``succeeded``), then another one with the same questions asked from the moment it
   is sent.

Ratios: ``ttft_ratio`` = the median, over the questions *asked while a round's upload was being ingested* (they
started before its job finished; about 3 per round), of each one's time to first token over the same question's
median alone (paired: the questions differ threefold in time to first token, so an unpaired p50 of 3 of them
against the p50 of all 10 mostly measured which 3 fell inside the upload; it is still printed as
``ttft_ratio_unpaired``); ``ingest_ratio`` = the median over rounds of chunks/s during the chats over chunks/s
alone in the same round. Questions asked after an upload finished are reported but not in the ratio (they would
hide the contention).

Configurations: ``old`` = the OpenMP runtime's own wait policy, ingestion at the chat's priority and generation
on every LLM thread (``RAG_OMP_WAIT_POLICY=default RAG_INGEST_NICE=0
RAG_LLM_THREADS_INGESTING=64 RAG_LLM_CHECK_THREADS_INGESTING=64 RAG_LLM_PROMPT_CACHE_MB=0``: the state before
issue 16), ``new`` = the defaults.
The last line reads ``ttft_ratio=… ingest_ratio=…`` for the new defaults.

    PYTHONPATH=. .venv/bin/python bench/concurrency_bench.py [--configs new,old] [--questions 10]
        [--llm qwen2.5-coder-0.5b] [--pause 0] [--out FILE]

Each upload also reports where the machine's cores went while it ran (``CpuSample``, from ``/proc``): CPU seconds
of the server's niced threads (ingestion: the worker thread, the OpenMP threads it starts, its parser processes),
of its other threads (the chat, the HTTP server) and the machine's idle time, each over the upload's wall time.
An upload costs about the same CPU seconds either way, so ``ingest_ratio`` is about ingestion's cores during the
chats over its cores alone: the split shows whether a setting moved CPU between chat and ingestion or left cores
idle, and it does not drift with the machine's speed as chunks/s do. ``--pause S`` waits S seconds between an answer
and the next question, as a person reading the answers would (default 0: back to back).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.scale_bench import (  # noqa: E402
    CLK_TCK,
    KEY,
    Corpus,
    Proc,
    Processes,
    base_env,
    client,
    descendants,
    free_port,
    log,
    machine_busy,
    stream_chat,
    tree_cpu,
    wait_http,
)

KB = "chat"
SAMPLES = ROOT / "samples"
QUESTIONS = [
    "What are the core working hours at Aurora Robotics?",
    "How much is the daily meal allowance when travelling?",
    "Who founded the Greenleaf Tea Farm, and when?",
    "When does the spring harvest start at Greenleaf?",
    "What safety rules apply in the Lighthouse lab?",
    "青山咖啡烘焙坊是谁创办的？",
    "“晨雾”咖啡是什么烘焙程度？",
    "星河社区图书馆周几闭馆？",
    "每位读者最多可以同时借几本书？",
    "How did the tea farm cut its diesel use?",
]
CONFIGS: dict[str, dict[str, str]] = {
    "old": {"RAG_OMP_WAIT_POLICY": "default", "RAG_INGEST_NICE": "0", "RAG_LLM_THREADS_INGESTING": "64",
            "RAG_LLM_CHECK_THREADS_INGESTING": "64", "RAG_LLM_PROMPT_CACHE_MB": "0"},
    "new": {},
}


def config_env(name: str) -> dict[str, str]:
    """``old``, ``new``, ``niceN`` (the new defaults with ``RAG_INGEST_NICE=N``), ``genN`` (with
    ``RAG_LLM_THREADS_INGESTING=N``: generation threads while an upload is ingested), ``cacheN`` (with
    ``RAG_LLM_PROMPT_CACHE_MB=N``; 0: no saved prompt states) or ``promptN`` (with
    ``RAG_LLM_PROMPT_THREADS_INGESTING=N``: prompt-evaluation threads while an upload is ingested) or ``checkN``
    (with ``RAG_LLM_CHECK_THREADS_INGESTING=N``: the evidence checks' prompt threads then), to choose N."""
    for prefix, variable in (("nice", "RAG_INGEST_NICE"), ("gen", "RAG_LLM_THREADS_INGESTING"),
                             ("cache", "RAG_LLM_PROMPT_CACHE_MB"), ("prompt", "RAG_LLM_PROMPT_THREADS_INGESTING"),
                             ("check", "RAG_LLM_CHECK_THREADS_INGESTING")):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return {variable: name[len(prefix):]}
    if name not in CONFIGS:
        raise SystemExit(f"unknown configuration {name!r}: old, new, niceN, genN, cacheN, promptN or checkN")
    return CONFIGS[name]


@dataclass
class Question:
    question: str
    started: float
    ttft: float
    total: float
    tokens: int
    prompt_tokens: int = 0
    messages: list[dict[str, str]] = field(default_factory=list, repr=False)
    timings: dict[str, float] = field(default_factory=dict)  # the answer's trace: seconds per step on the server


@dataclass
class CpuSample:
    """CPU seconds used so far by a server's process tree (``scale_bench.tree_cpu``: reaped parser processes
    included), the part of it on threads niced above the server's main thread (ingest worker threads and the
    OpenMP threads and parser processes they start, ``RAG_INGEST_NICE``; live threads only, so a thread or
    parser process that ended between two samples counts as ``other``), and the machine's busy CPU seconds
    (``scale_bench.machine_busy``)."""

    at: float
    ingest: float
    total: float
    machine_busy: float

    @staticmethod
    def take(pid: int | None) -> CpuSample | None:
        if pid is None or not Path(f"/proc/{pid}").exists():
            return None
        base = os.getpriority(os.PRIO_PROCESS, pid)  # the server's main thread: the chat's niceness
        ingest = 0.0
        for proc in descendants([pid]):
            for task in Path(f"/proc/{proc}/task").glob("*/stat"):
                try:
                    t = task.read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue  # a thread that ended while being read
                if int(t[16]) > base:  # the thread's niceness
                    ingest += (int(t[11]) + int(t[12])) / CLK_TCK  # utime, stime
        return CpuSample(time.monotonic(), ingest, tree_cpu([pid]), machine_busy())

    def cores_since(self, start: CpuSample) -> dict[str, float]:
        """Average cores used between ``start`` and this sample: by ingestion, by the rest of the server, and
        left idle on the whole machine."""
        wall = self.at - start.at
        ingest = (self.ingest - start.ingest) / wall
        busy = (self.machine_busy - start.machine_busy) / wall
        return {"ingest": round(ingest, 2), "other": round((self.total - start.total) / wall - ingest, 2),
                "idle": round((os.cpu_count() or 1) - busy, 2)}


@dataclass
class Upload:
    chunks: int
    seconds: float
    started: float
    finished: float
    cores: dict[str, float] = field(default_factory=dict)  # CpuSample.cores_since over the upload

    @property
    def rate(self) -> float:
        return self.chunks / self.seconds


@dataclass
class Round:
    """One "both" round: an upload and the questions asked from the moment it was sent."""

    chat: list[Question] = field(default_factory=list)
    ingest: Upload | None = None


@dataclass
class ConfigResult:
    name: str
    env: dict[str, str]
    alone: list[list[Question]] = field(default_factory=list)  # the questions alone, one series per round
    ingest_alone: list[Upload] = field(default_factory=list)
    both: list[Round] = field(default_factory=list)

    @property
    def chat_alone(self) -> list[Question]:
        return [q for series in self.alone for q in series]

    def during(self) -> list[tuple[Question, float, float]]:
        """(question asked while a round's upload was ingested, the same question's median time to first token
        and total alone): the same question at the same place in a series on a server started the same way, so
        the pair differs only by the upload."""
        def alone(j: int, attr: str) -> float:
            return statistics.median(getattr(series[j], attr) for series in self.alone if j < len(series))

        return [(q, alone(j, "ttft"), alone(j, "total")) for r in self.both if r.ingest
                for j, q in enumerate(r.chat) if q.started < r.ingest.finished]

    def summary(self) -> dict[str, Any]:
        pairs = self.during()
        during = [q for q, _, _ in pairs]
        alone_ttft = p50([q.ttft for q in self.chat_alone])
        alone_rate = statistics.median(u.rate for u in self.ingest_alone) if self.ingest_alone else None
        both_rates = [r.ingest.rate for r in self.both if r.ingest]

        def spread(values: list[float]) -> tuple[float, float]:
            return p50(values), p95(values)

        out: dict[str, Any] = {
            "chat alone ttft p50/p95 s": spread([q.ttft for q in self.chat_alone]),
            "chat alone total p50/p95 s": spread([q.total for q in self.chat_alone]),
            "rounds": len(self.both),
            "during upload: questions": len(during),
            "during upload ttft p50/p95 s": spread([q.ttft for q in during]),
            "the same questions alone ttft p50 s": p50([a for _, a, _ in pairs]),
            "during upload total p50/p95 s": spread([q.total for q in during]),
            "the same questions alone total p50 s": p50([a for _, _, a in pairs]),
            "all 'both' questions ttft p50/p95 s": spread([q.ttft for r in self.both for q in r.chat]),
            "ingest alone chunks/s (per upload)": [round(u.rate, 2) for u in self.ingest_alone],
            "ingest during chats chunks/s (per round)": [round(x, 2) for x in both_rates],
            "cores during uploads alone (ingest / other / machine idle, median)": _median_cores(self.ingest_alone),
            "cores during uploads in chats": _median_cores([r.ingest for r in self.both if r.ingest]),
        }
        # Paired: each question asked during an upload against itself asked alone (questions differ threefold in
        # time to first token, and which of them fall inside the upload varies from run to run).
        out["ttft_ratio"] = round(statistics.median(q.ttft / a for q, a, _ in pairs), 2) if pairs else None
        out["ttft_ratio_unpaired"] = (round(p50([q.ttft for q in during]) / alone_ttft, 2)
                                      if during and alone_ttft else None)
        # Per round (each upload during the chats against the upload alone just before it), then the median.
        ratios = [r.ingest.rate / u.rate for r, u in zip(self.both, self.ingest_alone, strict=False) if r.ingest]
        out["ingest_ratio"] = round(statistics.median(ratios), 2) if ratios else None
        out["ingest_ratio (medians)"] = (round(statistics.median(both_rates) / alone_rate, 2)
                                         if both_rates and alone_rate else None)
        return out


def _median_cores(uploads: Sequence[Upload]) -> list[float]:
    keys = ("ingest", "other", "idle")
    return [round(statistics.median(u.cores[k] for u in uploads if u.cores), 2) if any(u.cores for u in uploads)
            else float("nan") for k in keys]


def p50(values: Sequence[float]) -> float:
    return round(statistics.median(values), 2) if values else float("nan")


def p95(values: Sequence[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 2)


def document(seed: int, chunks: int) -> bytes:
    """~``chunks`` paragraphs of 300-390 characters: one 400-character chunk each under the KB's defaults."""
    corpus = Corpus(seed)
    paragraphs: list[str] = []
    while len(paragraphs) < chunks:
        text = corpus.paragraph()
        while len(text) < 300:
            text += " " + corpus.paragraph()
        paragraphs.append(text[:390].rsplit(" ", 1)[0] + ".")
    return "\n\n".join(paragraphs).encode()


def wait_job(c: httpx.Client, job_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = c.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            if job["status"] == "failed":
                raise RuntimeError(f"upload job failed: {job}")
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} not done in {timeout} s")


def upload(url: str, name: str, data: bytes, timeout: float = 1800, pid: int | None = None) -> Upload:
    """Upload ``data`` and wait for its job; with the server's ``pid``, also where the cores went meanwhile."""
    with client(url, timeout=60) as c:
        cpu = CpuSample.take(pid)
        started = time.monotonic()
        resp = c.post(f"/v1/kbs/{KB}/documents", files=[("file", (name, data, "text/plain"))])
        resp.raise_for_status()
        job = wait_job(c, resp.json()["job_id"], timeout)
        finished = time.monotonic()
        after = CpuSample.take(pid)
        docs = c.get(f"/v1/kbs/{KB}/documents").json()["documents"]
        chunks = next(d["chunks"] for d in docs if d["source"] == name)
    cores = after.cores_since(cpu) if cpu and after else {}
    log(f"  upload {name}: {chunks} chunks in {finished - started:.1f} s (job {job['id'][:8]}), cores {cores}")
    return Upload(chunks, finished - started, started, finished, cores)


def upload_into(box: list[Upload], url: str, name: str, data: bytes, pid: int | None = None) -> None:
    """``upload`` for a thread: the result goes into ``box``."""
    box.append(upload(url, name, data, pid=pid))


def ask(url: str, question: str, timeout: float) -> Question:
    started, first, tokens, done = stream_chat(url, KB, question, timeout)
    end = time.monotonic()
    q = Question(question, started, (first or end) - started, end - started, tokens,
                 int(done.get("usage", {}).get("prompt_tokens", 0)), done.get("trace", {}).get("messages", []),
                 done.get("trace", {}).get("timings", {}))
    log(f"  ttft {q.ttft:6.2f} s  total {q.total:6.2f} s  {tokens:3d} tokens  {question}")
    return q


def chat_series(url: str, questions: Sequence[str], timeout: float, pause: float = 0.0) -> list[Question]:
    """The questions one after another, ``pause`` seconds between an answer's end and the next question (a
    person reading it; 0: back to back, the worst case for an upload beside the chat)."""
    out = []
    for i, q in enumerate(questions):
        if i and pause:
            time.sleep(pause)
        out.append(ask(url, q, timeout))
    return out


def run_config(name: str, env: dict[str, str], args: argparse.Namespace, root: Path) -> ConfigResult:
    import threading

    result = ConfigResult(name, env)
    procs = Processes(root / name)
    (root / name).mkdir(parents=True)
    try:
        port = free_port()
        full = {k: v for k, v in base_env().items() if k not in ("RAG_EMBEDDER", "RAG_LLM_THREADS", "OMP_WAIT_POLICY")}
        full.update({"RAG_DATA_DIR": str(root / name / "data"), "RAG_UPLOAD_DIR": str(root / name / "uploads"),
                     "RAG_API_KEY": KEY, "RAG_LLM": args.llm, "RAG_LLM_MAX_TOKENS": str(args.max_tokens), **env})
        if args.model_cache:
            full["RAG_MODEL_CACHE_DIR"] = args.model_cache
        serve = [str(Path(sys.executable).parent / "rag"), "serve", "--host", "127.0.0.1", "--port", str(port)]
        proc = procs.start("serve", serve, full, url=f"http://127.0.0.1:{port}")
        wait_http(proc.url + "/healthz", proc)
        log(f"[{name}] rag serve up ({env or 'defaults'}); ingesting the samples")
        with client(proc.url, timeout=60) as c:
            c.post("/v1/kbs", json={"name": KB}).raise_for_status()
            files = [("file", (p.name, p.read_bytes(), "text/plain")) for p in sorted(SAMPLES.rglob("*.*"))]
            wait_job(c, c.post(f"/v1/kbs/{KB}/documents", files=files).json()["job_id"], 600)
        questions = (QUESTIONS * 3)[: args.questions]

        def restart(label: str) -> Proc:
            """A fresh server, warmed up by one other question (the model, and the fixed system prompt's state,
            as in a running server). Every series runs on one: the same questions again would find their whole
            prompts among the saved prompt states (RAG_LLM_PROMPT_CACHE_MB) and skip the work measured."""
            nonlocal proc
            procs.stop(proc)
            proc = procs.start(label, serve, full, url=f"http://127.0.0.1:{port}")
            wait_http(proc.url + "/healthz", proc)
            ask(proc.url, "What does the handbook say about equipment?", args.timeout)
            return proc

        for r in range(args.rounds):
            restart(f"serve-alone-{r}")
            log(f"[{name}] chat alone, round {r + 1} of {args.rounds}")
            result.alone.append(chat_series(proc.url, questions, args.timeout, args.pause))
        # Each round uploads a document alone and then one during the chats, on the same restarted server: the
        # machine's speed drifts here (ingest alone 13.5-17 chunks/s on the same code in runs half an hour apart),
        # so the ratio is taken within each round.
        for r in range(args.rounds):
            restart(f"serve-both-{r}")
            log(f"[{name}] ingest alone, round {r + 1} of {args.rounds}")
            result.ingest_alone.append(upload(proc.url, f"alone-{r}.txt", document(100 + r, args.chunks),
                                              pid=proc.pid))
            log(f"[{name}] both, round {r + 1} of {args.rounds}")
            box: list[Upload] = []
            uploader = threading.Thread(target=upload_into, args=(box, proc.url, f"during-{r}.txt",
                                                                  document(200 + r, args.chunks), proc.pid))
            uploader.start()
            time.sleep(0.5)  # the upload is received and claimed before the first question
            chat = chat_series(proc.url, questions, args.timeout, args.pause)
            uploader.join()
            result.both.append(Round(chat, box[0] if box else None))
    finally:
        procs.close()
    return result


def bare_llama(questions: Sequence[Question], llm: str, model_cache: str | None) -> dict[str, Any]:
    """The same prompts (the messages each chat sent) through a bare ``llama_cpp.Llama`` with our thread count, one
    after another as the chats ran (the library's prefix cache at work, as in ``rag serve``) and each from an empty
    cache: time to first token and prompt tokens per second, to compare with the pipeline's."""
    import os

    from llama_cpp import Llama

    from rag_service.models.registry import resolve_generator
    from rag_service.settings import load_settings

    if model_cache:
        os.environ["RAG_MODEL_CACHE_DIR"] = model_cache
    else:
        os.environ.setdefault("RAG_MODEL_CACHE_DIR", str(ROOT / "data" / "models"))
    settings = load_settings(llm=llm)
    path = resolve_generator(settings).gguf(settings.models_dir)
    model = Llama(model_path=str(path), n_ctx=settings.llm_context_size, n_threads=settings.llm_threads,
                  verbose=False)
    prompts = [q for q in questions if q.messages]
    out: dict[str, Any] = {"prompts": len(prompts)}
    for label, reset in (("in sequence (prefix cache)", False), ("each from an empty cache", True)):
        ttfts = []
        for q in prompts:
            if reset:
                model.reset()
            started = time.monotonic()
            for _ in model.create_chat_completion(messages=q.messages, max_tokens=1, temperature=0.0,  # type: ignore[arg-type]
                                                  stream=True):
                break
            ttfts.append(time.monotonic() - started)
        tokens = [q.prompt_tokens for q in prompts]
        out[label] = {"ttft p50 s": p50(ttfts), "ttft p95 s": p95(ttfts),
                      "prompt tokens/s (p50 over prompts)": p50([t / s for t, s in zip(tokens, ttfts, strict=True)])}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="new,old", help="comma-separated: new, old, niceN (new with "
                        "RAG_INGEST_NICE=N), genN (RAG_LLM_THREADS_INGESTING=N), cacheN (RAG_LLM_PROMPT_CACHE_MB=N)")
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="uploads alone, and 'both' rounds (each on a "
                        "restarted server): about 3 of the 10 questions fall inside one upload")
    parser.add_argument("--chunks", type=int, default=200, help="chunks of each uploaded document")
    parser.add_argument("--llm", default="qwen2.5-coder-0.5b", help="bundled LLM (default: the small one)")
    parser.add_argument("--max-tokens", type=int, default=160, help="RAG_LLM_MAX_TOKENS for the answers")
    parser.add_argument("--timeout", type=float, default=900, help="seconds one question may take")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between an answer and the next question "
                        "(a reader's pause; default 0: back to back, the worst case for the upload)")
    parser.add_argument("--model-cache", help="RAG_MODEL_CACHE_DIR (default: data/models of the project)")
    parser.add_argument("--out", type=Path, help="write every measurement as JSON")
    parser.add_argument("--bare", action="store_true", help="also replay the chat-alone prompts through a bare "
                        "llama_cpp.Llama (prompt-evaluation rate of the pipeline vs the library)")
    args = parser.parse_args(argv)
    random.seed(0)
    results: list[ConfigResult] = []
    with tempfile.TemporaryDirectory(prefix="concurrency-bench-") as tmp:
        for name in args.configs.split(","):
            env = config_env(name)
            results.append(run_config(name, env, args, Path(tmp)))
            print(f"\n## {name}: {env or 'defaults'}")
            for key, value in results[-1].summary().items():
                print(f"- {key}: {value}")
            sys.stdout.flush()
    bare: dict[str, Any] = {}
    if args.bare:
        alone = next((r for r in results if r.name == "new"), results[-1]).alone[0]
        bare = bare_llama(alone, args.llm, args.model_cache)
        print(f"\n## the same prompts through a bare llama_cpp.Llama ({args.llm})")
        pipeline = [q for q in alone if q.messages]
        print(f"- pipeline (chat alone, new): ttft p50 {p50([q.ttft for q in pipeline])} s, prompt tokens p50 "
              f"{p50([q.prompt_tokens for q in pipeline])}, prompt tokens/s of TTFT p50 "
              f"{p50([q.prompt_tokens / q.ttft for q in pipeline])}")
        for key, value in bare.items():
            print(f"- bare, {key}: {value}")
    if args.out:
        args.out.write_text(json.dumps({"configs": [{**asdict(r), "summary": r.summary()} for r in results],
                                        "bare_llama": bare}, indent=2) + "\n")
    final = next((r for r in results if r.name == "new"), results[-1]).summary()
    print(f"\nttft_ratio={final['ttft_ratio']} ingest_ratio={final['ingest_ratio']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
