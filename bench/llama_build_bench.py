"""Prompt evaluation and generation speed of two llama.cpp builds, in one run (issue 30 item 1).

The build installed in the virtualenv (scripts/setup.sh picks AVX-512 on CPUs that have it) against another copy of
the ``llama_cpp`` package given by ``--baseline`` (a directory holding a ``llama_cpp`` package, e.g. a copy of the
AVX2 build's). Each round runs both builds in fresh processes, alternating which goes first, on the same prompts: an
English and a Chinese passage-style prompt (a few hundred tokens each; the output prints their counts), evaluated
cold, then up to 48 tokens generated greedily. The last line prints the ratios of the medians.

    .venv/bin/python bench/llama_build_bench.py --baseline /tmp/llama_avx2 [--rounds 3] [--llm qwen2.5-coder-1.5b]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

PASSAGE_EN = ("Employees travelling on business receive a daily meal allowance of 45 euros. Taxi rides are "
              "reimbursed only between 22:00 and 06:00, and receipts must be submitted within 30 days. ")
PASSAGE_ZH = ("员工出差期间每天可获得四十五欧元的餐费补贴。"
              "出租车费用仅在晚上十点至早上六点之间报销，收据须在三十天内提交。")

CHILD = r"""
import json, os, sys, time, contextlib
from llama_cpp import Llama, llama_print_system_info
path, threads, prompts = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
    llm = Llama(model_path=path, n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
out = {"avx512": "AVX512 = 1" in llama_print_system_info().decode()}
for name, text in prompts.items():
    tokens = llm.tokenize(text.encode(), add_bos=True)
    llm.reset()
    started = time.perf_counter()
    llm.eval(tokens)
    prompt_s = time.perf_counter() - started
    generated = 0
    started = time.perf_counter()
    for token in llm.generate([], temp=0.0, reset=False):
        generated += 1
        if generated == 48 or token == llm.token_eos():
            break
    out[name] = {"tokens": len(tokens), "prompt_tps": len(tokens) / prompt_s,
                 "gen_tps": generated / (time.perf_counter() - started)}
print(json.dumps(out))
"""


def run(python_path: str | None, model: Path, threads: int, prompts: dict[str, str]) -> dict[str, object]:
    env = dict(os.environ)
    if python_path:
        env["PYTHONPATH"] = python_path
    done = subprocess.run([sys.executable, "-c", CHILD, str(model), str(threads), json.dumps(prompts)],
                          capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="a directory holding the other build's llama_cpp package")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--llm", default=None, help="a bundled model name or GGUF path (default: RAG_LLM)")
    args = parser.parse_args()

    from rag_service.models.registry import generator_named, resolve_generator
    from rag_service.settings import load_settings

    settings = load_settings()
    generator = generator_named(args.llm) if args.llm else resolve_generator(settings)
    model = generator.gguf(settings.models_dir)
    threads = os.cpu_count() or 2
    prompts = {"en": "Passages:\n" + PASSAGE_EN * 14 + "\nQuestion: What is the daily meal allowance?\nAnswer:",
               "zh": "段落：\n" + PASSAGE_ZH * 14 + "\n问题：每天的餐费补贴是多少？\n回答："}
    results: dict[str, list[dict[str, object]]] = {"installed": [], "baseline": []}
    for n in range(args.rounds):
        order = ["installed", "baseline"] if n % 2 == 0 else ["baseline", "installed"]
        for build in order:
            results[build].append(run(None if build == "installed" else args.baseline, model, threads, prompts))
    print(f"model {model.name}, {threads} threads, {args.rounds} rounds; installed AVX512: "
          f"{results['installed'][0]['avx512']}, baseline AVX512: {results['baseline'][0]['avx512']}")
    print(f"{'prompt':6} {'tokens':>6} {'build':10} {'prompt tok/s':>13} {'gen tok/s':>10}")
    ratios = {}
    for name in prompts:
        medians = {}
        for build, runs in results.items():
            rows = [r[name] for r in runs]  # type: ignore[index]
            medians[build] = (statistics.median(r["prompt_tps"] for r in rows),  # type: ignore[index]
                              statistics.median(r["gen_tps"] for r in rows))  # type: ignore[index]
            print(f"{name:6} {rows[0]['tokens']:>6} {build:10} {medians[build][0]:>13.1f} "  # type: ignore[index]
                  f"{medians[build][1]:>10.1f}")
        ratios[name] = (medians["installed"][0] / medians["baseline"][0],
                        medians["installed"][1] / medians["baseline"][1])
    print(" ".join(f"prompt_ratio_{n}={p:.2f} gen_ratio_{n}={g:.2f}" for n, (p, g) in ratios.items()))


if __name__ == "__main__":
    main()
