"""One checked answer, before and after issue 30, in one run: time to first token and to the checked answer, prompt
and generation rates, peak memory, and the answer evaluation's outcome on the same questions.

Two real ``rag serve`` processes answer the same 40 FAQ questions over HTTP (``eval/data/faq``: 20 English and 20
Chinese, 12 answerable and 8 unanswerable of each, picked evenly through the file), streaming with the trace on:

- **before**: the code of ``--baseline-ref`` (default: the last commit before issue 30, unpacked with ``git archive``)
  on the llama.cpp package in ``--baseline-llama`` (a directory holding the portable AVX2 build's ``llama_cpp``,
  e.g. ``pip install --target DIR --no-deps ~/.cache/rag-service/llama-wheels/<version>-<hash>/*.whl``; ``same``:
  the installed build, to compare code only);
- **after**: this checkout with the installed build and today's defaults.

Both start fresh from the same model cache, get the same documents uploaded, and answer the questions in turn, the
order alternating per question, so that load on a shared machine falls on both alike. Time to first token is
measured by the client, from sending the question to the first draft token (for a question refused before the model:
to the refusal); time to the checked answer, to the ``done`` event. Prompt tokens/s is the answer's prompt tokens over
the server's time from the gate to the first token (an effective rate: tokens served from a saved prompt state count
as evaluated), generation tokens/s the completion's tokens over its writing time. Correct: an answerable question
answered with its required items (the answer evaluation's rule, ``rag_service.eval.answers.score_policy``), an
unanswerable one refused. Peak RSS: each server's VmHWM at the end.

The last line: ``answer_latency_ratio`` (p50 time to the checked answer, after over before), ``ttft_ratio`` (p50 time
to first token), ``quality_delta`` (share of the 40 answered correctly or rightly refused, after minus before).

    .venv/bin/python bench/answer_latency.py --baseline-llama DIR [--baseline-ref REF] [--questions 40] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.scale_bench import (  # noqa: E402
    KEY,
    Processes,
    base_env,
    client,
    free_port,
    log,
    stream_chat,
    wait_http,
    wait_job,
)
from rag_service.eval.answers import answer_rule, score_policy  # noqa: E402
from rag_service.eval.datasets import EvalQuery  # noqa: E402

FAQ = ROOT / "eval" / "data" / "faq"
KB = "faq"
# The last commit before issue 30's changes to the code (its first commit changed only the llama.cpp build).
BASELINE_REF = "0f33ccd"
SIDES = ("before", "after")


@dataclass
class Outcome:
    side: str
    id: str
    lang: str
    answerable: bool
    ttft: float
    total: float
    refused: bool
    correct: bool
    prompt_tokens: int
    completion_tokens: int
    timings: dict[str, float] = field(default_factory=dict)
    answer: str = ""


class _NoJudge:
    """Correctness reads only the answer and the gold; the support judge feeds other scores, not read here."""

    def supported(self, statement: str, passages: Sequence[str]) -> bool:
        return False


def pick_questions(per_language: int) -> list[dict[str, Any]]:
    """``per_language`` questions of each language, 60 % answerable, spread evenly through the file (its domains)."""
    rows = [json.loads(line) for line in (FAQ / "questions.jsonl").read_text(encoding="utf-8").splitlines() if line]
    picked: list[dict[str, Any]] = []
    for lang in ("en", "zh"):
        for answerable, n in ((True, round(per_language * 0.6)), (False, per_language - round(per_language * 0.6))):
            pool = [r for r in rows if r["lang"] == lang and bool(r.get("answers")) == answerable]
            step = len(pool) / max(n, 1)
            picked += [pool[int(i * step)] for i in range(n)]
    return picked


def ask(url: str, side: str, row: dict[str, Any], timeout: float) -> Outcome:
    started, first, _, done = stream_chat(url, KB, row["question"], timeout)
    end = time.monotonic()
    query = EvalQuery(row["id"], row["question"], answers=row.get("answers") or [], required=row.get("required") or [])
    refused = bool(done.get("refused"))
    correct = score_policy(query, done.get("answer", ""), refused, [], _NoJudge(), answer_rule(query)).correct
    usage = done.get("usage") or {}
    return Outcome(side, row["id"], row["lang"], bool(query.answers), (first or end) - started, end - started, refused,
                   correct, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)),
                   (done.get("trace") or {}).get("timings", {}), done.get("answer", ""))


def baseline_tree(ref: str, dest: Path) -> Path:
    """The baseline commit's files (``git archive``: the checkout's .git is left alone)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def start_server(procs: Processes, side: str, code: Path, llama: Path | None, data: Path, args: argparse.Namespace
                 ) -> str:
    port = free_port()
    paths = [str(p) for p in (llama, code) if p is not None]
    # The defaults of each side (the e5 embedder, all cores), not the scale bench's light settings.
    env = {k: v for k, v in base_env().items() if k not in ("RAG_LLM_THREADS", "RAG_EMBEDDER")}
    env.update({"PYTHONPATH": ":".join(paths), "RAG_DATA_DIR": str(data / "data"),
                "RAG_UPLOAD_DIR": str(data / "uploads"), "RAG_API_KEY": KEY, "RAG_LLM": args.llm})
    proc = procs.start(side, [sys.executable, "-m", "rag_service.cli", "serve", "--host", "127.0.0.1", "--port",
                              str(port)], env, url=f"http://127.0.0.1:{port}")
    wait_http(proc.url + "/healthz", proc, timeout=600)
    with client(proc.url, timeout=120) as c:
        c.post("/v1/kbs", json={"name": KB}).raise_for_status()
        files = [("file", (p.name, p.read_bytes(), "text/plain")) for p in sorted((FAQ / "docs").iterdir())]
        job = wait_job(c, c.post(f"/v1/kbs/{KB}/documents", files=files).json()["job_id"], 900)
        if job.get("status") != "succeeded":
            raise RuntimeError(f"{side}: the upload ended {job.get('status')}: {job}")
    return proc.url


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def summarise(outcomes: list[Outcome]) -> dict[str, Any]:
    answered = [o for o in outcomes if o.timings.get("first_token_s")]
    prompt_s = sum(o.timings["first_token_s"] for o in answered)
    gen = [(o.completion_tokens, o.timings["generate_s"] - o.timings["first_token_s"]) for o in answered
           if "generate_s" in o.timings]
    answerable = [o for o in outcomes if o.answerable]
    unanswerable = [o for o in outcomes if not o.answerable]
    return {
        "n": len(outcomes),
        "ttft_p50": statistics.median(o.ttft for o in outcomes), "ttft_p90": pct([o.ttft for o in outcomes], 0.9),
        "total_p50": statistics.median(o.total for o in outcomes), "total_p90": pct([o.total for o in outcomes], 0.9),
        "prompt_tok_s": sum(o.prompt_tokens for o in answered) / prompt_s if prompt_s else float("nan"),
        "gen_tok_s": sum(t for t, _ in gen) / sum(s for _, s in gen) if gen else float("nan"),
        "answered_correctly": sum(o.correct for o in answerable) / len(answerable) if answerable else None,
        "refused_unanswerable": sum(o.refused for o in unanswerable) / len(unanswerable) if unanswerable else None,
        "correct": sum(o.correct for o in outcomes) / len(outcomes),
    }


def report(results: dict[str, Any]) -> str:
    rows = [("", "before", "after", "ratio")]
    s = {side: results["summary"][side] for side in SIDES}
    for key, label in (("ttft_p50", "time to first token p50 (s)"), ("ttft_p90", "time to first token p90 (s)"),
                       ("total_p50", "time to checked answer p50 (s)"), ("total_p90", "time to checked answer p90 (s)"),
                       ("prompt_tok_s", "prompt tokens/s (effective)"), ("gen_tok_s", "generation tokens/s"),
                       ("peak_rss_mb", "peak RSS of rag serve (MB)")):
        a, b = s["before"][key], s["after"][key]
        rows.append((label, f"{a:.2f}", f"{b:.2f}", f"{b / a:.2f}x" if a else "-"))
    for lang in ("en", "zh", "all"):
        for key, label in (("answered_correctly", "answered correctly"),
                           ("refused_unanswerable", "refused (unanswerable)")):
            a, b = results["by_language"][lang]["before"][key], results["by_language"][lang]["after"][key]
            if a is not None and b is not None:  # a short run may have no question of a kind
                rows.append((f"{label}, {lang}", f"{a:.3f}", f"{b:.3f}", f"{b - a:+.3f}"))
    width = max(len(r[0]) for r in rows)
    lines = [f"{r[0]:<{width}}  {r[1]:>8}  {r[2]:>8}  {r[3]:>8}" for r in rows]
    return "\n".join(lines)


def summary_line(results: dict[str, Any]) -> str:
    a, b = results["summary"]["before"], results["summary"]["after"]
    return (f"answer_latency_ratio={b['total_p50'] / a['total_p50']:.3f} "
            f"ttft_ratio={b['ttft_p50'] / a['ttft_p50']:.3f} quality_delta={b['correct'] - a['correct']:+.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-llama",
                        help="directory holding the baseline's llama_cpp package (the AVX2 build), or 'same'")
    parser.add_argument("--baseline-ref", default=BASELINE_REF,
                        help=f"git commit of the baseline (default {BASELINE_REF})")
    parser.add_argument("--questions", type=int, default=40,
                        help="questions in all, half of each language (default 40)")
    parser.add_argument("--llm", default="qwen2.5-coder-1.5b", help="bundled generator (default: the 1.5B default)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per answer")
    parser.add_argument("--out", type=Path, help="write every answer and the summary as JSON")
    parser.add_argument("--report", type=Path, help="print a saved --out file again, running nothing")
    args = parser.parse_args(argv)
    if args.report:
        results = json.loads(args.report.read_text())
        print(report(results))
        print(summary_line(results))
        return 0
    if not args.baseline_llama:
        parser.error("--baseline-llama DIR (or 'same') is needed to run")
    llama = None if args.baseline_llama == "same" else Path(args.baseline_llama).resolve()
    if llama is not None and not (llama / "llama_cpp").is_dir():
        parser.error(f"{llama} holds no llama_cpp package")
    questions = pick_questions(args.questions // 2)
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="answer-latency-") as tmp:
        root = Path(tmp)
        procs = Processes(root)
        try:
            code = {"before": baseline_tree(args.baseline_ref, root / "baseline"), "after": ROOT}
            urls, pids = {}, {}
            for side in SIDES:
                log(f"[{side}] starting rag serve and uploading {FAQ / 'docs'}")
                urls[side] = start_server(procs, side, code[side], llama if side == "before" else None,
                                          root / side, args)
                pids[side] = procs.procs[-1].pid
            for i, row in enumerate(questions):
                for side in (SIDES if i % 2 == 0 else SIDES[::-1]):
                    o = ask(urls[side], side, row, args.timeout)
                    outcomes.append(o)
                    log(f"  {i + 1:2d}/{len(questions)} {side:6s} ttft {o.ttft:6.2f} s  total {o.total:6.2f} s  "
                        f"{'refused' if o.refused else 'answered'} {'correct' if o.correct else 'WRONG'}  {row['id']}")
            rss = {side: peak_rss_mb(pids[side]) for side in SIDES}
        finally:
            procs.close()
    summary = {side: {**summarise([o for o in outcomes if o.side == side]), "peak_rss_mb": rss[side]}
               for side in SIDES}
    by_language = {lang: {side: summarise([o for o in outcomes if o.side == side and (lang == "all" or o.lang == lang)])
                          for side in SIDES} for lang in ("en", "zh", "all")}
    results = {"baseline_ref": args.baseline_ref, "baseline_llama": args.baseline_llama, "llm": args.llm,
               "summary": summary, "by_language": by_language, "outcomes": [asdict(o) for o in outcomes]}
    if args.out:
        args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1))
    print(report(results))
    print(summary_line(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
