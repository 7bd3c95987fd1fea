"""The ``rag`` command. Flags and ``--json`` shapes here are public contracts: extend, never break.

Errors print one line, ``error: ...``, on stderr and exit non-zero; no tracebacks unless RAG_DEBUG=1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag_service.cli.backup import add_backup_parsers
from rag_service.cli.common import audit, print_json, workspace
from rag_service.cli.people import add_people_parsers
from rag_service.errors import InvalidInputError, RagError
from rag_service.eval.cli import add_calibrate_parser, add_eval_parser

if TYPE_CHECKING:
    from rag_service.answering.generation import Answerer
    from rag_service.records import Answer
    from rag_service.workspace import Workspace


def _snippet(text: str, width: int = 160) -> str:
    return textwrap.shorten(" ".join(text.split()), width=width, placeholder=" …")


def cmd_ingest(args: argparse.Namespace) -> int:
    from rag_service.ingestion.pipeline import Ingestor, SplitOptions

    if not os.environ.get("RAG_DEBUG"):  # a file that fails is one "error:" line below; RAG_DEBUG=1 adds its traceback
        logging.getLogger("rag_service.ingestion.pipeline").addHandler(logging.NullHandler())
    ws = workspace(chunk_unit=args.chunk_unit)
    options = SplitOptions(args.splitter, args.chunk_size, args.chunk_overlap)
    ingestor, created = Ingestor.open(ws, args.kb, options, progress=not args.json and sys.stderr.isatty())
    kb = ingestor.kb
    if created:
        audit(ws, "kb.create", kb=kb.name, target=kb.id)
    held = {d.source: d.id for d in ws.catalog.documents(kb.id)}  # what a file of the same name replaces
    results = ingestor.run(Path(p) for p in args.paths)
    for r in results:
        if r.status in ("added", "replaced"):
            replaces = held.get(r.source) if r.status == "replaced" and r.source is not None else None
            audit(ws, f"document.{'replace' if r.status == 'replaced' else 'upload'}", kb=kb.name, target=r.doc_id,
                  detail={"source": r.source, **({"replaces": replaces} if replaces is not None else {})})
    failed = [r for r in results if r.status == "failed"]
    if args.json:
        print_json({"kb": kb.name, "created": created, "files": [r.to_json() for r in results]})
    else:
        counts = {s: sum(r.status == s for r in results) for s in ("added", "replaced", "unchanged", "failed")}
        chunks = sum(r.chunks for r in results if r.status in ("added", "replaced"))
        print(f"{'created' if created else 'updated'} knowledge base '{kb.name}': "
              + ", ".join(f"{n} {s}" for s, n in counts.items()) + f"; {chunks} new chunks")
    for r in failed:
        print(f"error: {r.error}", file=sys.stderr)
    return 1 if failed or not results else 0


def cmd_search(args: argparse.Namespace) -> int:
    from rag_service.retrieval.search import Retriever
    from rag_service.storage.filters import SearchFilter

    ws = workspace()
    result = Retriever(ws, ws.catalog.get_kb(args.kb)).run(
        args.query, k=args.k, mode=args.mode, fusion=args.fusion, filter=SearchFilter.parse(args.filter),
        expand=args.expand, rerank=args.rerank, pseudo_feedback=args.pseudo_feedback, explain=args.explain)
    if args.json:
        print_json(result.to_json(explain=args.explain))
        return 0
    if len(result.queries) > 1:
        print("searched also: " + " | ".join(result.queries[1:]))
    if args.explain and result.fusion is not None:
        f = result.fusion
        print(f"fusion: {f.method}" + (f" (bm25 weight {f.bm25_weight})" if f.method == "weighted" else "")
              + f"; KB language {f.language or 'unknown'}")
        if result.feedback_chunks:
            print(f"pseudo-relevance feedback: vector query moved towards {', '.join(result.feedback_chunks)} "
                  f"(weight {f.pseudo_feedback_weight})")
    if args.explain and result.expansions:
        print("glossary: " + "; ".join(f"{e.matched} -> {' = '.join(e.added)}" for e in result.expansions))
    if not result.hits:
        print("no matching passages")
    for i, h in enumerate(result.hits, start=1):
        print(f"{i}. [{h.score:.4f}] {h.chunk.source} ({h.chunk.id})\n   {_snippet(h.chunk.text)}")
        if args.explain:
            views = ", ".join(f"{name} #{h.ranks[name]} ({h.scores[name]:.4f})" for name in h.ranks)
            print(f"   {views}; terms: {' '.join(h.terms) or '-'}")
    return 0


def _print_answer(answer: Answer, *, streamed: bool, draft: str = "") -> None:
    """The checked answer, its sources, and, for a refusal, the passages closest to the question. After a
    streamed draft, the checked text is printed again only when verification changed it."""
    from rag_service.answering.citations import strip_markers

    if not streamed:
        print(answer.answer)
    else:
        print()
        changed = strip_markers(answer.answer) != strip_markers(draft)
        if answer.refused and changed:
            print(f"\n(withdrawn: the documents do not state this)\n{answer.answer}")
        elif changed and answer.trace.get("verification", {}).get("delivered_by") == "extract":
            print(f"\n(the draft was not supported; in the document's own words:)\n{answer.answer}")
        elif changed:
            print(f"\n(checked against the documents; unsupported sentences removed)\n{answer.answer}")
    unsupported = [c for c in answer.claims if not c.supported and not c.lead_in]
    if unsupported:
        print("\nNot stated by the cited passages (kept by policy 'lenient'):")
        for c in unsupported:
            print(f"  ! {c.text}")
    if answer.citations:
        print("\nSources:")
        for cited in answer.citations:
            page = f", page {cited.chunk.metadata['page']}" if "page" in cited.chunk.metadata else ""
            print(f"  [{cited.n}] {cited.chunk.source}{page}: {_snippet(cited.chunk.text, 120)}")
    elif answer.related:
        print("\nRelated passages (they do not answer the question):")
        for h in answer.related:
            print(f"  - {h.chunk.source}: {_snippet(h.chunk.text, 120)}")
    elif not answer.refused:
        print("\n(warning: the answer cites no passage; treat it as ungrounded)")


def _answer(answerer: Answerer, question: str, *, k: int | None, session: str | None,
            stream: bool) -> tuple[Answer, str]:
    """The answer, and the draft printed while it was generated ('' without streaming)."""
    if not stream:
        return answerer.ask(question, k=k, session_id=session), ""
    answer = None
    pieces: list[str] = []
    for item in answerer.stream(question, k=k, session_id=session):
        if isinstance(item, str):
            pieces.append(item)
            print(item, end="", flush=True)
        else:
            answer = item
    assert answer is not None
    return answer, "".join(pieces)


def cmd_ask(args: argparse.Namespace) -> int:
    from rag_service.answering.generation import Answerer

    ws = workspace()
    answerer = Answerer(ws, ws.catalog.get_kb(args.kb))
    stream = args.stream and not args.json
    answer, draft = _answer(answerer, args.question, k=args.k, session=args.session, stream=stream)
    if args.json:
        print_json(answer.to_json(with_trace=args.trace))
        return 0
    _print_answer(answer, streamed=stream, draft=draft)
    print(f"\n(session {answer.session_id}: continue with --session {answer.session_id})", file=sys.stderr)
    if args.trace:
        print_json(answer.trace)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from rag_service.answering.generation import Answerer

    ws = workspace()
    answerer = Answerer(ws, ws.catalog.get_kb(args.kb))
    session = args.session
    print(f"chatting with '{args.kb}' (empty line or Ctrl-D to quit)")
    while True:
        try:
            question = input("\n> ").strip()
        except EOFError:
            return 0
        if not question:
            return 0
        try:
            answer, draft = _answer(answerer, question, k=args.k, session=session, stream=True)
        except RagError as exc:
            print(f"error: {exc}", file=sys.stderr)
            continue
        session = answer.session_id
        _print_answer(answer, streamed=True, draft=draft)


def cmd_docs(args: argparse.Namespace) -> int:
    ws = workspace()
    kb = ws.catalog.get_kb(args.kb)
    if args.docs_cmd == "list":
        docs = ws.catalog.documents(kb.id)
        if args.json:
            print_json({"documents": [d.to_json() for d in docs]})
        else:
            for d in docs:
                pages = f"{d.pages:4} pages" if d.pages is not None else " " * 10
                ocr = f" ({d.ocr_pages} by OCR)" if d.ocr_pages else ""
                print(f"{d.id}  {d.status:7}  {d.chunks:5} chunks  {pages}  {d.format or '':5}  {d.source}{ocr}")
        return 0
    from rag_service.admin.documents import delete_document

    source = next((d.source for d in ws.catalog.documents(kb.id) if d.id == args.doc_id), None)
    delete_document(ws, kb, args.doc_id)
    audit(ws, "document.delete", kb=kb.name, target=args.doc_id, detail={"source": source})
    print(f"deleted document {args.doc_id} from '{kb.name}'")
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    """``rag feedback export``: the KB's ratings as a question file for ``rag eval answers --kb``."""
    from rag_service.storage.feedback import export_lines

    ws = workspace()
    kb = ws.catalog.get_kb(args.kb)
    lines = [line + "\n" for line in export_lines(ws.feedback.for_kb(kb.id))]
    if args.out:
        Path(args.out).write_text("".join(lines), encoding="utf-8")
        print(f"wrote {len(lines)} rated answers of '{kb.name}' to {args.out}", file=sys.stderr)
    else:
        sys.stdout.writelines(lines)
    return 0


def cmd_glossary(args: argparse.Namespace) -> int:
    """``rag glossary list|add|remove|suggest``: the KB's domain terms (docs/how-it-works.md, 'Retrieval')."""
    from rag_service.admin import glossary as glossary_edits
    from rag_service.errors import GlossaryEntryNotFoundError
    from rag_service.index import glossary

    ws = workspace()
    kb = ws.catalog.get_kb(args.kb)
    if args.glossary_cmd == "remove":
        if not glossary_edits.remove(ws, kb, args.entry_id):
            raise GlossaryEntryNotFoundError(f"knowledge base '{kb.name}' has no glossary entry '{args.entry_id}'")
        audit(ws, "glossary.remove", kb=kb.name, target=args.entry_id)
        print(f"removed glossary entry {args.entry_id} from '{kb.name}'")
        return 0
    if args.glossary_cmd == "suggest":
        found = glossary.suggest(ws.catalog, kb, args.limit, max_terms=ws.settings.glossary_max_terms)
        if args.accept and found:
            glossary_edits.add(ws, kb, [s.terms for s in found])
            audit(ws, "glossary.add", kb=kb.name, detail={"entries": [list(s.terms) for s in found], "suggested": True})
        if args.json:
            print_json({"suggestions": [s.to_json() for s in found], "accepted": bool(args.accept and found)})
            return 0
        for s in found:
            print(f"{' = '.join(s.terms)}    ({s.count}x, e.g. \u2026{s.example}\u2026)")
        if not found:
            print("no suggestions: the documents write out no new abbreviation-expansion pairs")
        elif args.accept:
            print(f"added {len(found)} entries to the glossary of '{kb.name}'")
        return 0
    if args.glossary_cmd == "add":
        new = [glossary.parse_entry(e, ws.settings) for e in args.entries]
        if args.file:
            new += glossary.read_file(Path(args.file), ws.settings)
        if not new:
            raise InvalidInputError("give entries ('SFT = 有监督微调 = supervised fine-tuning') or --file FILE")
        glossary_edits.add(ws, kb, new)
        audit(ws, "glossary.add", kb=kb.name, detail={"entries": [list(terms) for terms in new]})
        kb = ws.catalog.get_kb(kb.id)
    items = glossary.entries(kb)
    if args.json:
        print_json({"entries": [e.to_json() for e in items]})
    else:
        for e in items:
            print(f"{e.id}  {' = '.join(e.terms)}")
        if not items:
            print(f"the glossary of '{kb.name}' is empty")
    return 0


def cmd_kbs(args: argparse.Namespace) -> int:
    from rag_service.admin.documents import describe_kb

    ws = workspace()
    kbs = [describe_kb(ws, kb) for kb in ws.catalog.list_kbs()]
    if args.json:
        print_json({"kbs": kbs})
    else:
        for k in kbs:
            fusion = k["fusion"]["method"] + (f" {k['fusion']['bm25_weight']}" if k["fusion"]["method"] == "weighted"
                                              else "")
            if k["fusion"]["pseudo_feedback"]:
                fusion += f", pseudo-relevance feedback {k['fusion']['pseudo_feedback']}"
            print(f"{k['id']}  {k['name']}  (embedder {k['embedder']}, {k['splitter']} {k['chunk_size']}/"
                  f"{k['chunk_overlap']}, language {k['language'] or '-'}, fusion {fusion})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``rag export``: a knowledge base as one file, for a backup or for ``rag import`` on another deployment."""
    from rag_service.admin.transfer import export_kb

    ws = workspace()
    result = export_kb(ws, args.kb, Path(args.file), progress=not args.json and sys.stderr.isatty())
    if args.json:
        print_json({**result.to_json(), "file": args.file})
    else:
        print(f"exported knowledge base '{result.kb}' to {args.file}: {result.documents} documents, "
              f"{result.chunks} chunks")
    if result.missing_vectors:
        print(f"warning: {result.missing_vectors} chunks had no stored vector; `rag import` embeds them again",
              file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """``rag import``: a knowledge base from a ``rag export`` file, all or nothing."""
    from rag_service.admin.transfer import import_kb

    ws = workspace()
    before = {kb.id: kb.name for kb in ws.catalog.list_kbs()} if args.replace else {}
    try:
        result = import_kb(ws, Path(args.file), name=args.kb, replace=args.replace,
                           progress=not args.json and sys.stderr.isatty())
    finally:
        if before:  # --replace deletes the KB of that name once the file is known to be good, even if the import fails
            _audit_replaced(ws, before, args)
    made = ws.catalog.find_kb(result.kb)
    audit(ws, "kb.create", kb=result.kb, target=made.id if made is not None else None,
          detail={"imported_from": args.file})
    if args.json:
        print_json(result.to_json())
    else:
        print(f"imported knowledge base '{result.kb}' from {args.file}: {result.documents} documents, "
              f"{result.chunks} chunks")
    if result.missing_vectors:
        print(f"warning: {result.missing_vectors} chunks came without a vector and were embedded again",
              file=sys.stderr)
    return 0


def _audit_replaced(ws: Workspace, before: dict[str, str], args: argparse.Namespace) -> None:
    """A kb.delete event for the KB that ``rag import --replace`` deleted, if it did."""
    import contextlib

    from rag_service.admin.transfer import ExportReader, ImportLimits

    target = args.kb
    if target is None:  # the exported name, from the file's first line
        with contextlib.suppress(Exception), ExportReader(Path(args.file), ImportLimits.of(ws.settings)) as reader:
            target = reader.header.kb["name"]
    for kb_id, name in before.items():
        if name == (target or "").strip() and ws.catalog.find_kb(kb_id) is None:
            audit(ws, "kb.delete", kb=name, target=kb_id, detail={"replaced_by_import": args.file})


def cmd_config(args: argparse.Namespace) -> int:
    from rag_service.answering.calibration import calibration_status
    from rag_service.retrieval.fusion import LANGUAGE_DEFAULTS
    from rag_service.settings import SECTIONS, load_settings

    current = load_settings()
    values = {section: {name: _shown(name, getattr(current, name)) for name in model.model_fields}
              for section, model in SECTIONS.items()}
    try:
        status: dict[str, Any] = calibration_status(current)
    except RagError as exc:
        status = {"error": f"cannot identify the generator ({exc})"}
    if args.json:
        print_json({"settings": values, "language_defaults": {
            language: {"fusion": d.fusion, "bm25_weight": d.bm25_weight, "measured": d.evidence}
            for language, d in LANGUAGE_DEFAULTS.items()}, "answer_checks": status})
        return 0
    for section, model in SECTIONS.items():
        print(f"[{section}] {model.__doc__}")
        for name, field in model.model_fields.items():
            print(f"  RAG_{name.upper()}={values[section][name]}\n      {field.description}")
        print()
    print("Search defaults by the language of a KB's chunks (used where the settings above are unset):")
    for language, d in LANGUAGE_DEFAULTS.items():
        print(f"  {language}: fusion {d.fusion}, bm25 weight {d.bm25_weight}\n    measured: {d.evidence}")
    if "error" in status:
        print(f"\nAnswer checks: {status['error']}")
        return 0
    print(f"\nAnswer checks: generator {status['generator']} ({status['key']}), fit: {status['fit']}")
    if "warning" in status:
        print(f"warning: {status['warning']}", file=sys.stderr)
    return 0


def _shown(name: str, value: object) -> object:
    """A value as `rag config` prints it: secrets as set or not, a database URL without its password."""
    from pydantic import SecretStr

    from rag_service.storage.db import redact

    if isinstance(value, SecretStr):
        return redact(value.get_secret_value()) if name == "database_url" else "(set)"
    return str(value) if isinstance(value, Path) else value


def cmd_serve(args: argparse.Namespace) -> int:
    from rag_service.server import serve

    serve(args.host, args.port)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """``rag worker``: ingest upload jobs from the database, without the HTTP API, until stopped (SIGTERM or
    Ctrl-C: the job in hand gets ``--drain`` seconds, then goes back to the queue)."""
    import signal
    import threading

    from rag_service.ingestion.sandbox import ParseWorker, SandboxLimits
    from rag_service.ingestion.worker import JobWorker
    from rag_service.server import logs
    from rag_service.server.metrics import serve_worker_metrics
    from rag_service.server.workspaces import Workspaces
    from rag_service.settings import load_settings

    settings = load_settings()
    logs.configure(settings.log_format)  # text or JSON lines; the jobs' lines carry their id, KB, files and cause
    workspaces = Workspaces(settings)
    if settings.worker_metrics_listen:  # the store of this (main) thread's workspace, which nothing else uses
        jobs = workspaces.current().jobs
        serve_worker_metrics(settings.worker_metrics_listen, lambda: jobs)
    logging.getLogger("rag_service.worker").info("rag worker: %d worker(s) on %s", args.workers,
                                                 workspaces.current().backend.describe())
    parser = ParseWorker(SandboxLimits.of(settings))
    workers = [JobWorker(workspaces.current, parser, lease_s=settings.job_lease_s, poll_s=settings.job_poll_s,
                         max_attempts=settings.job_max_attempts, nice=settings.ingest_nice)
               for _ in range(args.workers)]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if args.once:  # until the queue is empty: batch use and tests
            while any(w.run_once() for w in workers):
                pass
        else:
            for worker in workers:
                worker.start()
            stop.wait()
    finally:
        for worker in workers:
            worker.stop(args.drain)
        parser.close()
        workspaces.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rag", description="Chat with your documents: ingest, search, ask.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("ingest", help="add files or directories to a knowledge base (created if new)")
    s.add_argument("--kb", required=True, help="knowledge base name")
    s.add_argument("--splitter", help="recursive | sentence | markdown | structure | semantic | parent_child; "
                   "stored with a new knowledge base, a one-off override for an existing one")
    s.add_argument("--chunk-size", type=int, help="chunk size (stored for a new KB, override for an existing one)")
    s.add_argument("--chunk-overlap", type=int, help="chunk overlap (same rule as --chunk-size)")
    s.add_argument("--chunk-unit", choices=["chars", "tokens"], help="unit of chunk sizes for a new KB")
    s.add_argument("--json", action="store_true", help="print a JSON report")
    s.add_argument("paths", nargs="+", metavar="PATH")
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("search", help="retrieve passages")
    s.add_argument("--kb", required=True)
    s.add_argument("--k", type=int, default=None, help="number of hits (default 5)")
    s.add_argument("--mode", choices=["bm25", "vector", "hybrid"], default="hybrid")
    s.add_argument("--fusion", choices=["rrf", "weighted"],
                   help="default: the KB's, else RAG_FUSION, else by the KB's language (rag config)")
    s.add_argument("--expand", choices=["multi", "hyde", "translate"],
                   help="LLM query expansion (slower): paraphrases, a hypothetical answer passage, or the question "
                   "translated into the KB's other language (answers do this on their own, RAG_TRANSLATE_QUERY)")
    s.add_argument("--rerank", help="none | e5 | path to a CrossEncoder model (default: RAG_RERANK)")
    s.add_argument("--pseudo-feedback", type=int, metavar="N", help="search the vectors again with the query "
                   "moved towards the first N results when they are close to each other; 0 off (default: "
                   "RAG_PSEUDO_FEEDBACK, 5 for e5 KBs)")
    s.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="doc_id=ID[,ID], source=GLOB or a metadata field (page=2); repeatable, all must hold")
    s.add_argument("--json", action="store_true")
    s.add_argument("--explain", action="store_true", help="per hit: bm25/vector rank and score, fused score, "
                   "matched terms")
    s.add_argument("query")
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("ask", help="answer a question from the knowledge base, with citations")
    s.add_argument("--kb", required=True)
    s.add_argument("--k", type=int, default=None, help="passages retrieved (default 5)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--trace", action="store_true", help="include the full trace (hits, prompt, timings)")
    s.add_argument("--session", help="continue a conversation (the id printed by an earlier ask)")
    s.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    s.add_argument("question")
    s.set_defaults(func=cmd_ask)

    s = sub.add_parser("chat", help="an interactive conversation with streaming answers")
    s.add_argument("--kb", required=True)
    s.add_argument("--k", type=int, default=None)
    s.add_argument("--session", help="continue an earlier conversation")
    s.set_defaults(func=cmd_chat)

    s = sub.add_parser("docs", help="list or delete documents")
    docs = s.add_subparsers(dest="docs_cmd", required=True)
    d = docs.add_parser("list")
    d.add_argument("--kb", required=True)
    d.add_argument("--json", action="store_true")
    d = docs.add_parser("delete")
    d.add_argument("--kb", required=True)
    d.add_argument("doc_id")
    s.set_defaults(func=cmd_docs)

    s = sub.add_parser("feedback", help="ratings given to answers (web console, POST /v1/feedback)")
    fb = s.add_subparsers(dest="feedback_cmd", required=True)
    f = fb.add_parser("export", help="as JSONL questions for `rag eval answers --dataset FILE --kb NAME`")
    f.add_argument("--kb", required=True)
    f.add_argument("--out", help="a file to write (default: standard output)")
    s.set_defaults(func=cmd_feedback)

    s = sub.add_parser("glossary", help="a knowledge base's domain terms and synonyms, kept whole by the "
                       "tokenizer and used to expand queries")
    gl = s.add_subparsers(dest="glossary_cmd", required=True)
    g = gl.add_parser("list")
    g.add_argument("--kb", required=True)
    g.add_argument("--json", action="store_true")
    g = gl.add_parser("add", help="entries such as 'SFT = 有监督微调 = supervised fine-tuning'")
    g.add_argument("--kb", required=True)
    g.add_argument("--file", help="a file of entries, one per line ('#' comments)")
    g.add_argument("--json", action="store_true")
    g.add_argument("entries", nargs="*", metavar="ENTRY")
    g = gl.add_parser("remove")
    g.add_argument("--kb", required=True)
    g.add_argument("entry_id")
    g = gl.add_parser("suggest", help="abbreviation-expansion pairs the documents write out, e.g. 有监督微调(SFT)")
    g.add_argument("--kb", required=True)
    g.add_argument("--limit", type=int, default=50)
    g.add_argument("--accept", action="store_true", help="add every suggestion to the glossary")
    g.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_glossary)

    s = sub.add_parser("kbs", help="list knowledge bases")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_kbs)

    s = sub.add_parser("export", help="write a knowledge base to one file (gzip JSON Lines), for a backup or "
                       "`rag import` elsewhere (e.g. from the embedded catalog to PostgreSQL)")
    s.add_argument("--kb", required=True, help="knowledge base name")
    s.add_argument("--json", action="store_true")
    s.add_argument("file", help="the file to write (gzip-compressed whatever its suffix; .jsonl.gz by convention)")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("import", help="create a knowledge base from a `rag export` file; all or nothing")
    s.add_argument("--kb", help="name of the new knowledge base (default: the exported name)")
    s.add_argument("--replace", action="store_true", help="delete an existing knowledge base of that name first "
                   "(only once the whole file has been checked)")
    s.add_argument("--json", action="store_true")
    s.add_argument("file", help="a file written by `rag export` (gzip or plain JSON Lines)")
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("config", help="show every setting by section, its current value and what it does")
    s.add_argument("--json", action="store_true", help="print {settings: {section: {name: value}}, "
                   "language_defaults, answer_checks}")
    s.set_defaults(func=cmd_config)

    s = sub.add_parser("serve", help="run the REST API (OpenAPI docs at /docs)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("worker", help="run ingest workers for uploaded files (no HTTP API); several processes "
                       "on several hosts may share one PostgreSQL database (RAG_DATABASE_URL)")
    s.add_argument("--workers", type=int, default=1, help="worker threads in this process (default 1)")
    s.add_argument("--once", action="store_true", help="exit when no job is left instead of waiting for more")
    s.add_argument("--drain", type=float, default=20.0, help="seconds the job in hand may still run at a stop "
                   "before it goes back to the queue (default 20)")
    s.set_defaults(func=cmd_worker)

    add_people_parsers(sub)
    add_backup_parsers(sub)
    add_calibrate_parser(sub)
    add_eval_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "k", None) is not None and args.k < 1:
        print("error: --k must be at least 1", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except RagError as exc:
        if os.environ.get("RAG_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into `head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
