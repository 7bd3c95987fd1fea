"""``rag eval matrix``: retrieval quality over a grid of chunkings (embedders x splitters x chunk sizes x
overlaps) in every search mode, so a chunking default is chosen from measurements rather than habit.

Every (embedder, splitter, size, overlap) index is built once through ``rag_service.eval.retrieval.build_index`` (cached
under the eval cache by its content hash) and evaluated in all modes by ``rag_service.eval.retrieval.evaluate``, whose
metrics are document-level, so chunkings are compared on the same gold. Each cell's results are cached
beside its index, keyed by the queries, k, the search settings and a hash of the code that searches and
scores, so re-running a config only re-renders the reports. The output directory gets ``results.json``
(config, run record, one row per index and mode, winners), ``report.md`` (with its plots as PNG files) and
``report.html`` (self-contained).
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import itertools
import json
import statistics
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rag_service.errors import ConfigError, InvalidInputError
from rag_service.eval import datasets
from rag_service.eval.datasets import Dataset, EvalQuery
from rag_service.eval.record import REPO, run_record, sha256_file
from rag_service.eval.retrieval import EMBEDDERS, RetrievalConfig, build_index, default_cache_dir, evaluate, plan_index
from rag_service.ingestion.splitters import SPLITTERS
from rag_service.retrieval.search import MODES, Mode
from rag_service.settings import chunking_problem, load_settings

SOURCES = ("beir", "squad", "clapnq", "jsonl")
_DATASET_KEYS = {*SOURCES, "split", "docs", "limit", "corpus_limit"}
_GRID_KEYS = {"embedders", "splitters", "chunk_sizes", "chunk_overlaps", "modes", "k"}
# Settings that do not change what a search returns, left out of the results cache key.
_NOT_SEARCH_SETTINGS = ("data_dir", "model_cache_dir", "embedder")
WINNER_METRICS = ("ndcg@10", "hit@1")
# The code a cell's numbers depend on: an edit here (committed or not) re-searches, an edit to a report does not.
SEARCH_CODE = ("rag_service/**/*.py",)
# ... except the evaluation harness, whose search-relevant part is these modules.
EVAL_CODE = ("datasets.py", "metrics.py", "retrieval.py")
Row = dict[str, Any]


# -- config ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DatasetSpec:
    source: str  # one of SOURCES
    path: Path
    split: str = "train"
    docs: Path | None = None  # jsonl: the folder whose files are the documents
    limit: int | None = None
    corpus_limit: int | None = None

    def load(self) -> Dataset:
        """The selected queries and documents, as ``rag eval retrieval --limit/--corpus-limit`` selects them."""
        loaders: dict[str, Callable[[], Dataset]] = {
            "beir": lambda: datasets.load_beir(self.path, self.split),
            "squad": lambda: datasets.load_squad(self.path),
            "clapnq": lambda: datasets.load_clapnq(self.path),
            "jsonl": lambda: datasets.load_jsonl(self.path, self.docs),
        }
        return loaders[self.source]().select(self.limit, self.corpus_limit)


@dataclass(frozen=True, slots=True)
class MatrixConfig:
    dataset: DatasetSpec
    indexes: tuple[RetrievalConfig, ...]  # the grid, one entry per index to build, each with every mode
    skipped: tuple[str, ...]  # grid points left out, with why
    raw: dict[str, Any] = field(default_factory=dict)  # the file as written, for results.json


def _fail(where: str, problem: str) -> InvalidInputError:
    return InvalidInputError(f"matrix config {where}: {problem}")


def _table(data: dict[str, Any], key: str, allowed: set[str], where: Path) -> dict[str, Any]:
    table = data.get(key)
    if not isinstance(table, dict):
        raise _fail(str(where), f"needs a [{key}] table")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise _fail(f"[{key}]", f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
    return table


def _int(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(where, f"must be an integer >= {minimum}, got {value!r}")
    return value


def _choices(grid: dict[str, Any], key: str, allowed: Sequence[str]) -> tuple[str, ...]:
    values = grid.get(key)
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise _fail(f"grid.{key}", f"must be a non-empty list of names from {', '.join(allowed)}")
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise _fail(f"grid.{key}", f"unknown {', '.join(map(repr, unknown))} (choose from {', '.join(allowed)})")
    return tuple(dict.fromkeys(values))


def _ints(grid: dict[str, Any], key: str, minimum: int) -> tuple[int, ...]:
    values = grid.get(key)
    if not isinstance(values, list) or not values:
        raise _fail(f"grid.{key}", f"must be a non-empty list of integers >= {minimum}")
    return tuple(dict.fromkeys(_int(v, f"grid.{key}", minimum) for v in values))


def _dataset(table: dict[str, Any], base: Path) -> DatasetSpec:
    sources = [s for s in SOURCES if s in table]
    if len(sources) != 1:
        raise _fail("[dataset]", f"needs exactly one of {', '.join(SOURCES)}")
    source = sources[0]
    path = base / Path(str(table[source])).expanduser()
    if not (path.is_dir() if source == "beir" else path.exists() if source == "clapnq" else path.is_file()):
        kind = "directory" if source == "beir" else "file"
        raise _fail(f"dataset.{source}", f"{path} does not exist or is not a {kind}")
    docs = None
    if source == "jsonl":
        if "docs" not in table:
            raise _fail("dataset.docs", "jsonl questions need a docs folder to index")
        docs = base / Path(str(table["docs"])).expanduser()
        if not docs.is_dir():
            raise _fail("dataset.docs", f"{docs} is not a directory")
    elif "docs" in table:
        raise _fail("dataset.docs", "only goes with jsonl")
    if "split" in table and source != "beir":
        raise _fail("dataset.split", "only goes with beir")
    limit = _int(table["limit"], "dataset.limit", 1) if "limit" in table else None
    corpus_limit = _int(table["corpus_limit"], "dataset.corpus_limit", 0) if "corpus_limit" in table else None
    return DatasetSpec(source, path, str(table.get("split", "train")), docs, limit, corpus_limit)


def load_config(path: Path) -> MatrixConfig:
    """Read and validate a matrix config (TOML, or JSON by its suffix): every name, number and path is
    checked here, so a typo fails in a second instead of after an hour of indexing. Relative data paths
    are relative to the config file."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"matrix config {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInputError(f"matrix config {path}: cannot parse it ({exc})") from None
    if not isinstance(data, dict):
        raise _fail(str(path), "must be a table with [dataset] and [grid]")
    unknown = sorted(set(data) - {"dataset", "grid"})
    if unknown:
        raise _fail(str(path), f"unknown section(s) {', '.join(unknown)} (expected [dataset] and [grid])")
    dataset = _dataset(_table(data, "dataset", _DATASET_KEYS, path), path.parent)
    grid = _table(data, "grid", _GRID_KEYS, path)
    embedders = _choices(grid, "embedders", EMBEDDERS)
    splitters = _choices(grid, "splitters", sorted(SPLITTERS))
    modes: tuple[Mode, ...] = _choices(grid, "modes", MODES)  # type: ignore[assignment]
    sizes, overlaps = _ints(grid, "chunk_sizes", 1), _ints(grid, "chunk_overlaps", 0)
    k = _int(grid.get("k", 10), "grid.k", 1)
    settings = load_settings()
    problems = {(s, o): chunking_problem(settings, s, o) for s, o in itertools.product(sizes, overlaps)}
    skipped = tuple(f"overlap {o} with chunk size {s}: {problem}" for (s, o), problem in problems.items() if problem)
    indexes = tuple(RetrievalConfig(e, sp, s, o, modes, k)
                    for e, sp, s, o in itertools.product(embedders, splitters, sizes, overlaps)
                    if not problems[s, o])
    if not indexes:
        raise _fail("[grid]", "no (chunk_size, chunk_overlap) pair is allowed: nothing to index")
    return MatrixConfig(dataset, indexes, skipped, data)


# -- running ---------------------------------------------------------------------------------------
def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _search_code_hash() -> str:
    harness = REPO / "rag_service" / "eval"
    files = sorted({f for pattern in SEARCH_CODE for f in REPO.glob(pattern)
                    if f.parent != harness or f.name in EVAL_CODE})
    return _digest({f.relative_to(REPO).as_posix(): sha256_file(f) for f in files})


def _queries_hash(queries: Sequence[EvalQuery]) -> str:
    return _digest([[q.id, q.text, q.gold, q.gold_substrings] for q in queries])


def _cell_fields(config: RetrievalConfig) -> Row:
    return {"embedder": config.embedder, "splitter": config.splitter, "chunk_size": config.chunk_size,
            "chunk_overlap": config.chunk_overlap}


def _run_cell(dataset: Dataset, config: RetrievalConfig, cache: Path, results_key: str) -> list[Row]:
    """One index in every mode: cached mode results are read, missing ones searched (building or
    reusing the index), and both are saved beside the index for the next run."""
    plan = plan_index(dataset, config)
    index_file = cache / plan.key / "matrix-index.json"
    results_file = cache / plan.key / "matrix" / f"{results_key}.json"
    saved: dict[str, Any] = json.loads(results_file.read_text()) if results_file.is_file() else {}
    missing = [m for m in config.modes if m not in saved]
    ingested = 0
    if missing:
        index = build_index(dataset, config, cache)
        try:
            fresh = evaluate(index.ws, index.kb, dataset.queries, missing, config.k, aliases=index.aliases)
            if index.ingested or not index_file.is_file():
                lengths = [len(c.text) for c in index.ws.catalog.indexed_chunks(index.kb.id)]
                built = index.ingest_seconds if index.ingested == index.documents else None
                known = json.loads(index_file.read_text()) if index_file.is_file() else {}
                index_file.write_text(json.dumps({
                    "documents": index.documents, "chunks": index.chunks,
                    "chunk_chars": statistics.fmean(lengths) if lengths else 0.0,
                    "build_seconds": built if built is not None else known.get("build_seconds")}) + "\n")
        finally:
            index.ws.close()
        ingested = index.ingested
        for mode, result in fresh.items():
            saved[mode] = {"metrics": result.metrics, "latency_ms": result.latency_ms,
                           "context_chars": result.context_chars, "per_query": result.per_query}
        results_file.parent.mkdir(parents=True, exist_ok=True)
        results_file.write_text(json.dumps(saved) + "\n")
    stats = json.loads(index_file.read_text())
    return [{**_cell_fields(config), "mode": mode, "index_key": plan.key, **stats, "ingested": ingested,
             "cached": mode not in missing, "queries": len(saved[mode]["per_query"]), **saved[mode]}
            for mode in config.modes]


def _name(row: Row) -> str:
    return f"{row['mode']} · {row['splitter']} {row['chunk_size']}/{row['chunk_overlap']} · {row['embedder']}"


def _winner(rows: Sequence[Row], metric: str) -> dict[str, Any] | None:
    """The best cell by ``metric`` (ties: the faster), its margin over the runner-up with the standard
    error of the paired per-query differences (is the margin more than noise?), and over the worst."""
    ranked = sorted((r for r in rows if "metrics" in r), key=lambda r: (-r["metrics"][metric], r["latency_ms"]))
    if not ranked:
        return None
    best, worst = ranked[0], ranked[-1]
    out: dict[str, Any] = {"metric": metric, "best": _name(best), "value": best["metrics"][metric],
                           "worst": _name(worst), "worst_value": worst["metrics"][metric],
                           "margin_over_worst": best["metrics"][metric] - worst["metrics"][metric]}
    if len(ranked) > 1:
        runner = ranked[1]
        diffs = [q[metric] - runner["per_query"][qid][metric] for qid, q in best["per_query"].items()]
        out |= {"runner_up": _name(runner), "runner_up_value": runner["metrics"][metric],
                "margin": best["metrics"][metric] - runner["metrics"][metric],
                "margin_se": statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0}
    return out


def run_matrix(config: MatrixConfig, out_dir: Path, cache_dir: Path | None = None, *,
               progress: bool = True) -> dict[str, Any]:
    """Evaluate the whole grid, write the reports into ``out_dir`` and return ``results.json``'s content.
    A cell that fails is recorded with its error and the grid goes on."""
    dataset = config.dataset.load()
    record = run_record(dataset=dataset.name, dataset_sha256=dataset.content_hash, queries=len(dataset.queries),
                        documents=len(dataset.docs))
    search_settings = {k: v for k, v in record["settings"].items() if k not in _NOT_SEARCH_SETTINGS}
    cache = cache_dir or default_cache_dir()
    code = _search_code_hash()
    rows: list[Row] = []
    bar = tqdm(config.indexes, desc="matrix", unit="index", disable=not progress)
    for index in bar:
        bar.set_postfix_str(f"{index.embedder} {index.splitter} {index.chunk_size}/{index.chunk_overlap}")
        results_key = _digest({"queries": _queries_hash(dataset.queries), "k": index.k, "settings": search_settings,
                               "code": code})[:16]
        try:
            rows += _run_cell(dataset, index, cache, results_key)
        except Exception as exc:  # one broken cell (a splitter bug, a full disk) must not cost an hour of others
            rows += [{**_cell_fields(index), "mode": mode, "error": f"{type(exc).__name__}: {exc}"}
                     for mode in index.modes]
    winners = {m: w for m in WINNER_METRICS if (w := _winner(rows, m)) is not None}
    results = {"config": config.raw, "record": record, "skipped": list(config.skipped), "winners": winners,
               "cells": [{k: v for k, v in row.items() if k != "per_query"} for row in rows]}
    write_reports(results, Path(out_dir))
    return results


# -- reports ---------------------------------------------------------------------------------------
def winner_lines(results: dict[str, Any]) -> list[str]:
    """One sentence per winner metric, for the reports and the terminal."""
    lines = []
    for metric, w in results["winners"].items():
        line = f"Best by {metric} on {results['record']['dataset']}: {w['best']} = {w['value']:.4f}"
        if "runner_up" in w:
            line += (f"; {w['margin']:+.4f} over the runner-up {w['runner_up']} ({w['runner_up_value']:.4f}, "
                     f"paired s.e. {w['margin_se']:.4f})")
        lines.append(line + f"; {w['margin_over_worst']:+.4f} over the worst {w['worst']} ({w['worst_value']:.4f}).")
    return lines


def _header(results: dict[str, Any]) -> list[str]:
    """The run record in a few lines; results.json holds all of it."""
    rec = results["record"]
    code = rec["code"]
    commit = (code["commit"][:12] + (" (uncommitted changes)" if code["dirty"] else "")) if code["commit"] else "?"
    models = "; ".join(f"{name}: {m.get('package')} {m.get('version')}, {m.get('file')} "
                       f"sha256 {m.get('sha256', '?')[:12]}" for name, m in rec["models"]["embedders"].items()
                       if any(r.get("embedder") == name for r in results["cells"]))
    s = rec["settings"]
    fusion = s["fusion"] or "by the KB's language (rag_service/retrieval/fusion.py)"
    return [
        f"Data: {rec['dataset']} (sha256 {rec['dataset_sha256'][:12]}): {rec['queries']} queries, "
        f"{rec['documents']} documents indexed; chunk sizes in {s['chunk_unit']}.",
        f"Run {rec['timestamp']}, code {commit}, Python {rec['python']}, chromadb {rec['packages']['chromadb']}, "
        f"sentence-transformers {rec['packages']['sentence-transformers']}.",
        f"Embedders: {models}.",
        f"Search: {s['search_candidates']} candidates per retriever, fusion {fusion} (rrf_k {s['rrf_k']}), "
        f"rerank {s['rerank']}; ranked 100 deep, scored per document (a document at its best chunk's rank).",
        "Context chars: characters of the top search_k hits (what the LLM would read); build s: index build time.",
    ]


def _metric_keys(rows: Sequence[Row]) -> list[str]:
    return list(next((r["metrics"] for r in rows if "metrics" in r), {}))


def _axes(rows: Sequence[Row], key: str) -> list[Any]:
    return list(dict.fromkeys(r[key] for r in rows))


def _tables(results: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows): an nDCG@10 overview (modes x sizes as columns), then every metric per mode."""
    rows: list[Row] = results["cells"]
    ok = [r for r in rows if "metrics" in r]
    modes, sizes = _axes(rows, "mode"), _axes(rows, "chunk_size")
    by_key = {(r["embedder"], r["splitter"], r["chunk_overlap"], r["mode"], r["chunk_size"]): r for r in ok}
    lines = list(dict.fromkeys((r["embedder"], r["splitter"], r["chunk_overlap"]) for r in rows))

    def cell(key: tuple[Any, ...]) -> str:
        row = by_key.get(key)
        return f"{row['metrics']['ndcg@10']:.4f}" if row else "–"

    overview = ("nDCG@10 by chunking", ["embedder", "splitter", "overlap", *(f"{m} {s}" for m in modes for s in sizes)],
                [[e, sp, str(o), *(cell((e, sp, o, m, s)) for m in modes for s in sizes)] for e, sp, o in lines])
    metrics = _metric_keys(rows)
    header = ["embedder", "splitter", "size", "overlap", "chunks", "chunk chars", *metrics, "latency ms",
              "context chars", "build s"]
    tables = [overview]
    for mode in modes:
        body = []
        for r in (r for r in ok if r["mode"] == mode):
            build = f"{r['build_seconds']:.0f}" if r["build_seconds"] is not None else "–"
            body.append([r["embedder"], r["splitter"], str(r["chunk_size"]), str(r["chunk_overlap"]), str(r["chunks"]),
                         f"{r['chunk_chars']:.0f}", *(f"{r['metrics'][m]:.4f}" for m in metrics),
                         f"{r['latency_ms']:.1f}", f"{r['context_chars']:.0f}", build])
        tables.append((f"{mode}: all metrics", header, body))
    return tables


def _notes(results: dict[str, Any]) -> list[str]:
    failed = [f"failed: {_name(r)}: {r['error']}" for r in results["cells"] if "error" in r]
    return [f"skipped: {s}" for s in results["skipped"]] + failed


def _plots(results: dict[str, Any]) -> dict[str, bytes]:
    """PNG plots: nDCG@10 against chunk size (a line per splitter, a panel per mode) and nDCG@10 against
    the two costs, context size and latency."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("the matrix report's charts need matplotlib: pip install 'rag-service[eval]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results["cells"] if "metrics" in r]
    if not ok:
        return {}
    modes, sizes = _axes(ok, "mode"), sorted(_axes(ok, "chunk_size"))
    overlaps = _axes(ok, "chunk_overlap")
    many_embedders, many_overlaps = len(_axes(ok, "embedder")) > 1, len(overlaps) > 1
    pngs: dict[str, bytes] = {}

    fig, axes = plt.subplots(1, len(modes), figsize=(4.2 * len(modes), 3.6), sharey=True, squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=True):
        for e, sp, o in dict.fromkeys((r["embedder"], r["splitter"], r["chunk_overlap"]) for r in ok):
            points = sorted((r["chunk_size"], r["metrics"]["ndcg@10"]) for r in ok
                            if (r["mode"], r["embedder"], r["splitter"], r["chunk_overlap"]) == (mode, e, sp, o))
            label = sp + (f" overlap {o}" if many_overlaps else "") + (f" {e}" if many_embedders else "")
            ax.plot(*zip(*points, strict=True), marker="o", linestyle=("-", "--", ":", "-.")[overlaps.index(o) % 4],
                    label=label)
        ax.set(title=mode, xlabel="chunk size", xscale="log", xticks=sizes)
        ax.set_xticklabels([str(s) for s in sizes])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("nDCG@10")
    axes[0][-1].legend(fontsize="small")
    fig.tight_layout()
    pngs["ndcg-vs-chunk-size.png"] = _png(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    markers = dict(zip(_axes(ok, "splitter"), "osD^v<>", strict=False))
    colours = dict(zip(modes, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    for ax, cost, label in zip(axes, ("context_chars", "latency_ms"),
                               ("context chars (top search_k hits)", "search latency (ms)"), strict=True):
        for r in ok:
            ax.scatter(r[cost], r["metrics"]["ndcg@10"], marker=markers[r["splitter"]], color=colours[r["mode"]],
                       s=20 + r["chunk_size"] / max(sizes) * 60, alpha=0.8)
        ax.set(xlabel=label, xlim=(0, None))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("nDCG@10")
    handles = [plt.Line2D([], [], color=c, marker="o", linestyle="", label=m) for m, c in colours.items()]
    handles += [plt.Line2D([], [], color="grey", marker=mk, linestyle="", label=sp) for sp, mk in markers.items()]
    axes[1].legend(handles=handles, fontsize="small", title="marker size: chunk size", title_fontsize="small")
    fig.tight_layout()
    pngs["ndcg-vs-cost.png"] = _png(fig)
    return pngs


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _markdown(results: dict[str, Any], plots: Sequence[str]) -> str:
    out = [f"# Chunking matrix: {results['record']['dataset']}", "", *(f"{line}  " for line in _header(results)), ""]
    out += [f"**{line}**\n" for line in winner_lines(results)]
    out += [f"![{name.removesuffix('.png')}]({name})" for name in plots] + [""]
    for title, header, body in _tables(results):
        out += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(row) + " |" for row in body] + [""]
    notes = _notes(results)
    if notes:
        out += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    return "\n".join(out)


def _html(results: dict[str, Any], plots: dict[str, bytes]) -> str:
    esc = html.escape
    title = f"Chunking matrix: {results['record']['dataset']}"
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>"
           "body{font-family:sans-serif;margin:2em;max-width:90em}table{border-collapse:collapse;margin:1em 0}"
           "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:right}td:nth-child(-n+2){text-align:left}"
           "th{background:#f0f0f0}img{max-width:100%}</style></head><body>", f"<h1>{esc(title)}</h1>"]
    out += [f"<p>{esc(line)}</p>" for line in _header(results)]
    out += [f"<p><b>{esc(line)}</b></p>" for line in winner_lines(results)]
    out += [f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" alt="{esc(name)}">'
            for name, png in plots.items()]
    for caption, header, body in _tables(results):
        out.append(f"<h2>{esc(caption)}</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        out += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in body]
        out.append("</table>")
    notes = _notes(results)
    if notes:
        out.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    return "\n".join([*out, "</body></html>\n"])


def write_reports(results: dict[str, Any], out_dir: Path) -> None:
    """``results.json``, ``report.md`` with its PNG plots beside it, and a self-contained ``report.html``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = _plots(results)
    for name, png in plots.items():
        (out_dir / name).write_bytes(png)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out_dir / "report.md").write_text(_markdown(results, list(plots)), encoding="utf-8")
    (out_dir / "report.html").write_text(_html(results, plots), encoding="utf-8")
