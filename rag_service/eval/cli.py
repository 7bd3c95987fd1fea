"""``rag eval ...``: the evaluation harness on the command line.

``rag eval retrieval --json`` prints ``{"<mode>": {"ndcg@10", "recall@10", "recall@100", "mrr@10", "hit@5",
...}}``: a public contract like every other ``--json`` shape of ``rag`` (extend, never break).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rag_service.errors import InvalidInputError

if TYPE_CHECKING:  # the heavy modules are imported by the command, so `rag --help` stays fast
    from rag_service.eval.datasets import Dataset


def _modes(value: str) -> tuple[str, ...]:
    """A comma-separated mode list; names are checked by RetrievalConfig, before anything is indexed."""
    return tuple(dict.fromkeys(m.strip() for m in value.split(",") if m.strip()))


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        n = int(value)
        if n < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return n

    return parse


def _load_dataset(args: argparse.Namespace) -> Dataset:
    from rag_service.eval import datasets

    if args.beir:
        return datasets.load_beir(args.beir, args.split)
    if args.squad:
        return datasets.load_squad(args.squad)
    if args.clapnq:
        return datasets.load_clapnq(args.clapnq)
    return datasets.load_jsonl(args.jsonl, args.docs)


def _table(rows: dict[str, dict[str, float | int]]) -> str:
    """Modes as rows, metrics as columns, aligned."""
    metrics = [key for key in next(iter(rows.values())) if key != "queries"]
    lines = [f"{'mode':8}" + "".join(f"{m:>12}" for m in metrics)]
    for mode, values in rows.items():
        lines.append(f"{mode:8}" + "".join(f"{values[m]:>12.4f}" if m != "latency_ms" else f"{values[m]:>12.1f}"
                                           for m in metrics))
    return "\n".join(lines)


def cmd_eval_retrieval(args: argparse.Namespace) -> int:
    if (args.docs or args.kb) and not args.jsonl:
        raise InvalidInputError("--docs and --kb go with --jsonl")
    if args.jsonl and bool(args.docs) == bool(args.kb):
        raise InvalidInputError("--jsonl needs either --docs DIR (index that folder) or --kb NAME (an existing "
                                "knowledge base)")
    dataset = _load_dataset(args).select(args.limit, args.corpus_limit)
    from rag_service.eval.retrieval import RetrievalConfig, evaluate, run_retrieval  # heavy: after the cheap checks

    progress = not args.quiet
    config = RetrievalConfig(args.embedder, args.splitter, args.chunk_size, args.chunk_overlap, args.modes, args.k)
    if args.kb:
        from rag_service.models.registry import force_offline
        from rag_service.settings import load_settings
        from rag_service.workspace import Workspace

        force_offline()
        ws = Workspace(load_settings())
        try:
            results = evaluate(ws, ws.catalog.get_kb(args.kb), dataset.queries, config.modes, config.k,
                               progress=progress)
        finally:
            ws.close()
        rows = {mode: result.to_json() for mode, result in results.items()}
        header = f"{dataset.name} ({dataset.content_hash[:12]}) against knowledge base '{args.kb}'"
    else:
        report = run_retrieval(dataset, config, args.cache_dir, progress=progress)
        rows = report.to_json()
        index = report.index
        header = (f"{dataset.name} ({dataset.content_hash[:12]}): {index.documents} documents, {index.chunks} "
                  f"chunks, embedder {config.embedder}, {config.splitter} {config.chunk_size}/"
                  f"{config.chunk_overlap}; index {index.key} "
                  + (f"built in {index.ingest_seconds:.0f}s" if index.ingested else "reused from cache"))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    queries = next(iter(rows.values()))["queries"]
    print(f"{header}\n{queries} queries, k={args.k}\n\n{_table(rows)}")
    return 0


def cmd_eval_matrix(args: argparse.Namespace) -> int:
    from rag_service.eval.matrix import load_config, run_matrix, winner_lines

    config = load_config(args.config)  # validated before anything is loaded or indexed
    out = args.out or Path("eval-reports") / args.config.stem
    results = run_matrix(config, out, args.cache_dir, progress=not args.quiet)
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return 0
    cells = results["cells"]
    failed = sum("error" in c for c in cells)
    print(f"{len(cells)} cells ({failed} failed), {len(results['skipped'])} grid points skipped")
    print("\n".join(winner_lines(results)))
    print(f"wrote {out / 'report.md'}, {out / 'report.html'}, {out / 'results.json'}")
    return 0


def cmd_eval_answers(args: argparse.Namespace) -> int:
    if not args.dataset.exists():
        raise InvalidInputError(f"data set {args.dataset} does not exist")
    from rag_service.eval.datasets import load_answer_dataset

    dataset = load_answer_dataset(args.dataset, args.docs, args.setting, args.limit)
    if not dataset.docs and not args.kb:
        raise InvalidInputError("these questions come without documents: add --docs DIR or --kb NAME")
    from rag_service.eval.answers import (
        FAITHFUL_MIN_SIMILARITY,
        AnswerConfig,
        answer_all,
        report,
        run_answers,
        select_questions,
    )

    threshold = FAITHFUL_MIN_SIMILARITY if args.threshold is None else args.threshold
    config = AnswerConfig(args.embedder, args.splitter, args.chunk_size, args.chunk_overlap, args.judge, threshold)
    if args.kb:
        import time

        from rag_service.models.registry import force_offline
        from rag_service.settings import load_settings
        from rag_service.workspace import Workspace

        force_offline()
        ws = Workspace(load_settings())
        started = time.perf_counter()
        try:
            kb = ws.catalog.get_kb(args.kb)
            results = answer_all(ws, kb, select_questions(dataset.queries, args.limit), config,
                                 progress=not args.quiet)
        finally:
            ws.close()
        out = report(results, time.perf_counter() - started, ws.settings.grounding, dataset=dataset.name,
                     dataset_sha256=dataset.content_hash, kb=kb.name, judge=config.judge, threshold=config.threshold)
    else:
        out = run_answers(dataset, config, args.cache_dir, limit=args.limit, corpus_limit=args.corpus_limit,
                          llm_cache=not args.no_llm_cache, progress=not args.quiet)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps({k: v for k, v in out.items() if k != "results"}, indent=2, ensure_ascii=False))
        return 0
    print(_answer_summary(out))
    return 0


def _answer_summary(out: dict) -> str:
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}%"

    a, u, cost = out["answerable"], out["unanswerable"], out["cost"]
    record = out["record"]
    stages = ", ".join(f"{k} {v:.2f}s" for k, v in cost.items() if k.endswith("_s"))
    lines = [
        f"{record['dataset']} ({record['dataset_sha256'][:12]}), {out['questions']} questions, judge "
        f"{record['judge']}, policy {out.get('policy', 'strict')}",
        f"answerable   {a['count']:>4}  EM {a['exact_match']:.3f}  F1 {a['f1']:.3f}  answered {pct(a['answer_rate'])}",
        f"unanswerable {u['count']:>4}  refused {pct(u['refusal_accuracy'])}",
        f"faithfulness {pct(out['faithfulness'])}  citation validity {pct(out['citation_validity'])} "
        f"(model's own markers {pct(out['model_citation_validity'])})  grounded {pct(out['grounded_rate'])}",
        f"cost per question: {cost['prompt_tokens']:.0f} prompt + {cost['completion_tokens']:.0f} completion "
        f"tokens; {stages}",
        "",
        f"{'language':9}{'policy':9}{'answerable':>11}{'correct':>9}{'unanswerable':>13}{'refused':>9}"
        f"{'faithful':>9}{'uncited':>8}{'prompt tok':>11}{'TTFT p50':>9}",
    ]
    for lang, group in out.get("by_language", {}).items():
        for policy, p in group["policies"].items():
            ttft = group["cost"].get("first_token_s_p50")
            lines.append(f"{lang:9}{policy:9}{group['answerable']:>11}{pct(p['answered_correctly']):>9}"
                         f"{group['unanswerable']:>13}{pct(p['refused']):>9}{pct(p['faithfulness']):>9}"
                         f"{p['uncited_answers']:>8}{group['cost']['prompt_tokens']:>11.0f}"
                         f"{'n/a' if ttft is None else f'{ttft:.1f}s':>9}")
    lost = out.get("losses", {})
    if lost.get("answerable_lost"):
        lines += ["", f"answerable questions lost, by stage ({out.get('policy', 'strict')}):"]
        lines += [f"  {stage:18}{n:>5}" for stage, n in lost["answerable_lost"].items()]
    if lost.get("unanswerable_answered"):
        lines += ["", "unanswerable questions answered, and what let them through:"]
        for leak in lost["unanswerable_answered"]:
            signals = ", ".join(f"{k} {v:.2f}" for k, v in (leak.get("signals") or {}).items() if v is not None)
            trust = "n/a" if leak.get("trust") is None else f"{leak['trust']:.2f}"
            lines.append(f"  {leak['id']}: by {leak.get('delivered_by')}, trust {trust} ({signals}): "
                         f"{leak['answer'][:80]!r}")
    related = out.get("related", {})
    if related.get("refused_with_gold_hit"):
        lines += ["", f"refused answerable questions with the answering passage among the hits: "
                      f"{related['refused_with_gold_hit']}; it is in related {pct(related['gold_in_related'])}, "
                      f"first {pct(related['gold_first'])}"]
    return "\n".join(lines)


def cmd_eval_calibrate(args: argparse.Namespace) -> int:
    from rag_service.eval.calibrate import GENERIC, Procedure, run

    for path in args.runs:
        if not path.is_file():
            raise InvalidInputError(f"run file {path} does not exist (write one with rag eval answers --out)")
    out = run(args.runs, GENERIC if args.generic else Procedure())
    if args.save or args.write:
        from rag_service.answering.calibration import fit_path, model_identity, save_fit, write_fit
        from rag_service.answering.verification import TrustModel
        from rag_service.settings import load_settings

        settings = load_settings()
        identity = model_identity(settings)
        models = {lang: TrustModel.from_json(f["model"]) for lang, f in out.items() if f.get("model")}
        report = {"runs": [str(p) for p in args.runs], "fits": out}
        if args.save:
            save_fit(settings, identity, models, report)
            print(f"fit for {identity.label} stored in {fit_path(settings, identity)}", file=sys.stderr)
        if args.write:
            write_fit(args.write, identity, models, report)
            print(f"fit for {identity.label} written to {args.write}", file=sys.stderr)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(calibration_table(out))
    return 0


def calibration_table(out: dict) -> str:
    """Per language: the fitted model, then each data set's rates in sample and left out of the fit."""
    lines = []
    for lang, fit in out.items():
        model = fit["model"]
        if model is None:
            lines.append(f"{lang}: {fit['questions']} questions, no answer passed the rules: no fit")
            continue
        weights = ", ".join(f"{k} {v:+.3f}" for k, v in model["weights"].items())
        lines += [f"{lang}: {fit['questions']} questions, {fit['candidates']} answers scored; intercept "
                  f"{model['intercept']:+.3f}, {weights}; threshold {model['threshold']}, quote level "
                  f"{model['quote_min_evidence']}, extract level {model['extract_min_evidence']}",
                  f"  {'data set':28}{'off':>7}{'correct':>9}{'wrong':>8}{'refused':>9}   "
                  f"{'left out: correct':>18}{'wrong':>8}{'refused':>9}"]
        for group, r in fit["in_sample"].items():
            held = fit["leave_one_out"].get(group, {})

            def cell(v: float | None) -> str:
                return "n/a" if v is None or v != v else f"{v:.3f}"

            lines.append(f"  {group:28}{cell(r.get('off_correctly')):>7}{cell(r['answered_correctly']):>9}"
                         f"{cell(r['wrong']):>8}{cell(r['refused']):>9}   {cell(held.get('answered_correctly')):>18}"
                         f"{cell(held.get('wrong')):>8}{cell(held.get('refused')):>9}")
    return "\n".join(lines)


def _default_eval_data() -> Path | None:
    """``RAG_EVAL_DATA``, else ``shared/eval-data`` beside the checkout when it is there."""
    import os

    explicit = os.environ.get("RAG_EVAL_DATA")
    if explicit:
        return Path(explicit)
    beside = Path(__file__).resolve().parents[3] / "shared" / "eval-data"
    return beside if beside.is_dir() else None


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``rag calibrate``: answer the labelled sets with the configured generator, fit its answer checks and store the
    fit where answering finds it."""
    import sys
    import time

    from rag_service.answering.calibration import model_identity, save_fit
    from rag_service.answering.verification import TrustModel
    from rag_service.eval.answers import AnswerConfig, run_answers
    from rag_service.eval.calibrate import CalibrationSet, calibration_sets, fit_runs
    from rag_service.eval.datasets import load_answer_dataset
    from rag_service.models.registry import force_offline
    from rag_service.settings import load_settings

    force_offline()
    eval_data = args.eval_data or _default_eval_data()
    if args.eval_data is not None and not args.eval_data.is_dir():
        raise InvalidInputError(f"--eval-data {args.eval_data} is not a directory")
    sets = calibration_sets(eval_data)
    if args.dataset is not None:  # the user's own labelled questions instead of the shipped sets
        if not args.dataset.exists():
            raise InvalidInputError(f"data set {args.dataset} does not exist")
        sets = [CalibrationSet(args.dataset.stem, args.dataset, args.docs)]
    elif args.docs is not None:
        raise InvalidInputError("--docs goes with --dataset")
    if args.sets:
        wanted = [n.strip() for n in args.sets.split(",") if n.strip()]
        unknown = set(wanted) - {s.name for s in sets}
        if unknown:
            raise InvalidInputError(f"unknown or missing set(s) {', '.join(sorted(unknown))}; available: "
                                    f"{', '.join(s.name for s in sets)}")
        sets = [s for s in sets if s.name in wanted]
    settings = load_settings()
    identity = model_identity(settings)
    loaded = [(s, load_answer_dataset(s.path, s.docs, s.setting, args.limit or s.limit)) for s in sets]
    total = sum(min(len(d.queries), args.limit or s.limit or len(d.queries)) for s, d in loaded)
    print(f"calibrating the answer checks of {identity.label} on {len(sets)} set(s), {total} questions "
          f"(model calls are cached: an interrupted run resumes where it stopped)", file=sys.stderr)
    runs, done, started = [], 0, time.perf_counter()
    work = settings.data_dir / "calibration" / "runs" / identity.key
    for i, (s, dataset) in enumerate(loaded, start=1):
        eta = "" if not done else f", about {(time.perf_counter() - started) / done * (total - done) / 60:.0f} min left"
        print(f"[{i}/{len(loaded)}] {s.name}: {done} of {total} questions done{eta}", file=sys.stderr)
        out = run_answers(dataset, AnswerConfig(), args.cache_dir, limit=args.limit or s.limit,
                          progress=not args.quiet)
        work.mkdir(parents=True, exist_ok=True)
        (work / f"{s.name}.json").write_text(json.dumps(out, ensure_ascii=False) + "\n", encoding="utf-8")
        runs.append((s.name, out))
        done += out["questions"]
    fits = fit_runs(runs)
    models = {lang: TrustModel.from_json(f["model"]) for lang, f in fits.items() if f.get("model")}
    if not models:
        raise InvalidInputError("no answer passed the rules in these questions: nothing to fit (use more questions)")
    path = save_fit(settings, identity, models, {"sets": {s.name: d.name for s, d in loaded},
                                                 "limit": args.limit, "fits": fits})
    if args.json:
        print(json.dumps({"generator": identity.label, "key": identity.key, "path": str(path), "fits": fits},
                         indent=2, ensure_ascii=False))
        return 0
    print(calibration_table(fits))
    print(f"\nfit stored in {path}: answers of {identity.label} use it from now on (rag config shows it)")
    return 0


def add_calibrate_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``rag calibrate`` on the ``rag`` parser."""
    c = subparsers.add_parser(
        "calibrate", help="fit the answer checks to the configured generator (local GGUF or RAG_LLM_BASE_URL)",
        description="Answers the labelled sets (ours: FAQ pages in both languages and asked across languages; "
        "RGB zh dev, ClapNQ dev and CMRC 2018 dev from --eval-data when present) with the configured generator, "
        "fits the trust model of the answer checks to its yes/no answers and stores the fit in "
        "<data_dir>/calibration/, keyed by the model's identity (GGUF sha256, or server URL + model name). "
        "Answering uses it automatically. Prints each set's rates in sample and left out of the fit.")
    c.add_argument("--sets", metavar="A,B", help="only these sets (default: all available)")
    c.add_argument("--dataset", type=Path, metavar="PATH",
                   help="your own labelled questions instead (any format rag eval answers --dataset takes)")
    c.add_argument("--docs", type=Path, metavar="DIR", help="the documents --dataset is asked of")
    c.add_argument("--limit", type=_int_at_least(2), metavar="N",
                   help="questions per set (half unanswerable where the set has both; default: ours whole, the "
                   "public sets 200)")
    c.add_argument("--eval-data", type=Path, metavar="DIR",
                   help="folder holding rgb_zh_dev/, clapnq_dev/, cmrc2018/ (default RAG_EVAL_DATA, else "
                   "../shared/eval-data beside the checkout when present)")
    c.add_argument("--cache-dir", type=Path, metavar="DIR",
                   help="indexes and model calls cache (default RAG_EVAL_CACHE, else <RAG_DATA_DIR>/eval-cache)")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    c.add_argument("--json", action="store_true", help="print the fits and where they were stored as JSON")
    c.set_defaults(func=cmd_calibrate)


def add_eval_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``rag eval`` and its subcommands on the ``rag`` parser."""
    p = subparsers.add_parser("eval", help="evaluate retrieval on a benchmark or your own questions")
    sub = p.add_subparsers(dest="eval_cmd", required=True)

    s = sub.add_parser("retrieval", help="nDCG, recall, MRR and hit rate of bm25 / vector / hybrid search",
                       description="Index a data set through the real ingestion pipeline (cached) and score "
                       "every judged query in each search mode.")
    source = s.add_mutually_exclusive_group(required=True)
    source.add_argument("--beir", type=Path, metavar="DIR", help="a BEIR task directory (corpus, queries, qrels)")
    source.add_argument("--squad", type=Path, metavar="FILE", help="SQuAD-style JSON, e.g. CMRC 2018")
    source.add_argument("--clapnq", type=Path, metavar="PATH", help="ClapNQ JSONL file or directory")
    source.add_argument("--jsonl", type=Path, metavar="FILE", help="your questions (see eval/README.md)")
    s.add_argument("--docs", type=Path, metavar="DIR", help="with --jsonl: the documents to index")
    s.add_argument("--kb", help="with --jsonl: evaluate an existing knowledge base instead (RAG_DATA_DIR)")
    s.add_argument("--split", default="train", help="BEIR qrels split (default train)")
    s.add_argument("--embedder", choices=["e5", "minilm"], default="e5")
    s.add_argument("--modes", type=_modes, default="bm25,vector,hybrid", help="comma-separated subset of "
                   "bm25,vector,hybrid (default all three)")
    s.add_argument("--k", type=int, default=10, help="extra cut-off reported as ndcg@k, hit@k... (default 10)")
    s.add_argument("--limit", type=_int_at_least(1), metavar="N", help="evaluate the first N judged queries")
    s.add_argument("--corpus-limit", type=_int_at_least(0), metavar="M",
                   help="index only the selected queries' gold documents plus the first M others")
    s.add_argument("--splitter", default="sentence", help="splitter for the index (default sentence)")
    s.add_argument("--chunk-size", type=_int_at_least(1), default=4000, help="default 4000: one chunk per abstract")
    s.add_argument("--chunk-overlap", type=_int_at_least(0), default=0)
    s.add_argument("--cache-dir", type=Path, metavar="DIR",
                   help="where indexes are cached (default RAG_EVAL_CACHE, else <RAG_DATA_DIR>/eval-cache)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.add_argument("--json", action="store_true", help="print {mode: {metric: value}}")
    s.set_defaults(func=cmd_eval_retrieval)

    a = sub.add_parser("answers", help="answer quality: EM/F1, refusals, faithfulness, citation validity, cost",
                       description="Index a data set's documents (cached) and answer every selected question "
                       "through the real pipeline and LLM; scores come from each answer and its trace.")
    a.add_argument("--dataset", type=Path, required=True, metavar="PATH",
                   help="SQuAD-style JSON (CMRC 2018), a ClapNQ JSONL file or folder, or your questions JSONL")
    a.add_argument("--docs", type=Path, metavar="DIR", help="with your JSONL: the documents to index")
    a.add_argument("--setting", help="RGB: noisy | negative | both (default both); CMRC (SQuAD JSON): normal | "
                   "removed | both: the question's own paragraph taken out of reach, so it must be refused")
    a.add_argument("--no-llm-cache", action="store_true",
                   help="call the model for every question (default: reuse answers to identical prompts from "
                   "<cache-dir>/llm-cache.sqlite3, timings as first measured)")
    a.add_argument("--kb", help="with your JSONL: answer from an existing knowledge base (RAG_DATA_DIR)")
    a.add_argument("--limit", type=_int_at_least(1), metavar="N",
                   help="the first N questions (half unanswerable when the data set has both kinds)")
    a.add_argument("--corpus-limit", type=_int_at_least(0), metavar="M",
                   help="index only the selected questions' own documents plus the first M others")
    a.add_argument("--embedder", choices=["e5", "minilm"], default="e5")
    a.add_argument("--splitter", help="splitter for the index (default: RAG_SPLITTER, as for a new KB)")
    a.add_argument("--chunk-size", type=_int_at_least(1), help="default: RAG_CHUNK_SIZE")
    a.add_argument("--chunk-overlap", type=_int_at_least(0), help="default: RAG_CHUNK_OVERLAP")
    a.add_argument("--judge", choices=["e5", "llm"], default="e5",
                   help="what decides that a passage supports a sentence (default e5 similarity)")
    a.add_argument("--threshold", type=float, default=None, metavar="COS",
                   help="e5 judge: similarity from which a sentence is supported (default calibrated)")
    a.add_argument("--cache-dir", type=Path, metavar="DIR",
                   help="where indexes are cached (default RAG_EVAL_CACHE, else <RAG_DATA_DIR>/eval-cache)")
    a.add_argument("--out", type=Path, metavar="FILE", help="also write the full report with every question")
    a.add_argument("--quiet", action="store_true", help="no progress bars")
    a.add_argument("--json", action="store_true", help="print the summary and run record as JSON")
    a.set_defaults(func=cmd_eval_answers)

    c = sub.add_parser("calibrate", help="fit the trust model of the answer checks from rag eval answers runs",
                       description="Fit the trust model, its threshold and the quote and extract levels per language "
                       "from the --out files of rag eval answers runs made with one generator "
                       "(rag_service.eval.calibrate); prints each data set's rates in sample and left out of the fit.")
    c.add_argument("runs", type=Path, nargs="+", metavar="RUN.json", help="files written by rag eval answers --out")
    c.add_argument("--json", action="store_true")
    c.add_argument("--save", action="store_true", help="store the fit for the configured generator where answering "
                   "finds it (<data_dir>/calibration/, as rag calibrate does)")
    c.add_argument("--write", type=Path, metavar="FILE", help="also write the fit to FILE (the same format; the "
                   "bundled models' fits are such files in rag_service/answering/calibrations/)")
    c.add_argument("--generic", action="store_true", help="fit the default for generators without a fit: a wrong "
                   "answer costing as much as a right one is worth (rag_service/answering/calibrations/default.json is "
                   "written this way)")
    c.set_defaults(func=cmd_eval_calibrate)

    m = sub.add_parser("matrix", help="retrieval metrics over a grid of splitters, chunk sizes, overlaps and modes",
                       description="Build one cached index per (embedder, splitter, chunk size, overlap) of the "
                       "config's grid, score it in every mode and write results.json, report.md and report.html. "
                       "The config format is in eval/README.md; eval/matrix.sample.toml is an example.")
    m.add_argument("--config", type=Path, required=True, metavar="FILE", help="the grid, TOML (or .json)")
    m.add_argument("--out", type=Path, metavar="DIR", help="report directory (default eval-reports/<config name>)")
    m.add_argument("--cache-dir", type=Path, metavar="DIR",
                   help="where indexes are cached (default RAG_EVAL_CACHE, else <RAG_DATA_DIR>/eval-cache)")
    m.add_argument("--quiet", action="store_true", help="no progress bar")
    m.add_argument("--json", action="store_true", help="print results.json")
    m.set_defaults(func=cmd_eval_matrix)

