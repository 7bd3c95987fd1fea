"""Evaluation data sets behind one record shape, loaded read-only.

Every loader returns a ``Dataset``: documents to index and queries with their gold judgments (graded
document ids, reference answers, evidence substrings), plus a hash of the exact bytes read, so a result
can always be traced back to the data that produced it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rag_service.errors import InvalidInputError, RagError


@dataclass(frozen=True, slots=True)
class EvalDoc:
    id: str
    title: str
    text: str


@dataclass(frozen=True, slots=True)
class EvalQuery:
    """A question with whatever gold the data set has: ``gold`` maps document ids to graded relevance
    (0 = judged non-relevant), ``answers`` are reference answers (empty = unanswerable) and
    ``gold_substrings`` are evidence texts that mark a retrieved chunk as relevant on their own."""

    id: str
    text: str
    gold: dict[str, int] = field(default_factory=dict)
    answers: list[str] = field(default_factory=list)
    gold_substrings: list[str] = field(default_factory=list)
    passages: list[str] = field(default_factory=list)  # documents the data set pairs with it, relevant or not
    # Items a correct answer must contain: each inner list holds alternatives, one of which must appear
    # (RGB's rule). Empty: correctness is judged from ``answers``.
    required: list[list[str]] = field(default_factory=list)
    # The only documents this question may be answered from (RGB's negative setting, CMRC with the
    # question's own paragraph removed); None = the whole knowledge base.
    scope: tuple[str, ...] | None = None
    setting: str = ""  # which part of the data set the question belongs to (noisy, negative, removed, ...)

    @property
    def judged(self) -> bool:
        """Whether retrieval can be scored for this query (a relevant document or an evidence substring)."""
        return any(g > 0 for g in self.gold.values()) or bool(self.gold_substrings)


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str
    docs: list[EvalDoc]
    queries: list[EvalQuery]
    content_hash: str  # sha256 over the names and bytes of the files read

    def select(self, limit: int | None = None, corpus_limit: int | None = None) -> Dataset:
        """The first ``limit`` judged queries; with ``corpus_limit``, only their gold documents plus the
        first ``corpus_limit`` other documents (a small, deterministic corpus for quick runs)."""
        return self.restrict([q for q in self.queries if q.judged][:limit], corpus_limit)

    def restrict(self, queries: list[EvalQuery], corpus_limit: int | None = None) -> Dataset:
        """Only ``queries``; with ``corpus_limit``, only the documents they are judged against or paired
        with (ClapNQ's unanswerable questions come with passages that do not answer them) plus the first
        ``corpus_limit`` others."""
        docs = self.docs
        if corpus_limit is not None:
            own = {d for q in queries for d, grade in q.gold.items() if grade > 0} | {
                d for q in queries for d in q.passages} | {d for q in queries for d in q.scope or ()}
            others = [d for d in docs if d.id not in own][:corpus_limit]
            keep = own | {d.id for d in others}
            docs = [d for d in docs if d.id in keep]
        return replace(self, docs=docs, queries=queries)


# -- helpers ---------------------------------------------------------------------------------------
def _hash_files(files: Iterable[tuple[str, Path]]) -> str:
    """sha256 over (name, size, bytes) of each file, in the given order."""
    digest = hashlib.sha256()
    for name, path in files:
        data = path.read_bytes()
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def _require(path: Path, what: str, *, is_dir: bool = False) -> Path:
    ok = path.is_dir() if is_dir else path.is_file()
    if not ok:
        problem = "does not exist" if not path.exists() else f"is not a {'directory' if is_dir else 'file'}"
        raise InvalidInputError(f"{what} {path} {problem}")
    return path


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise InvalidInputError(f"{path}:{lineno}: expected a JSON object")
            yield lineno, row


def _field(row: dict[str, Any], key: str, where: str) -> Any:
    try:
        return row[key]
    except KeyError:
        raise InvalidInputError(f"{where}: missing field '{key}'") from None


def _unique(texts: Iterable[str]) -> list[str]:
    """Non-blank texts, first occurrence kept, order preserved."""
    return list(dict.fromkeys(t for t in texts if t.strip()))


def _content_id(prefix: str, *parts: str) -> str:
    """A stable id for data that has none: a hash of the content, so order changes do not move it."""
    return f"{prefix}{hashlib.sha256(chr(0).join(parts).encode()).hexdigest()[:16]}"


# -- BEIR --------------------------------------------------------------------------------------------
def load_beir(directory: Path, split: str = "test") -> Dataset:
    """A BEIR task directory: corpus.jsonl, queries.jsonl and qrels/<split>.tsv (graded relevance).
    Only queries with judgments in the split are kept."""
    directory = _require(Path(directory), "BEIR directory", is_dir=True)
    corpus = _require(directory / "corpus.jsonl", "BEIR corpus")
    queries_file = _require(directory / "queries.jsonl", "BEIR queries")
    qrels_file = directory / "qrels" / f"{split}.tsv"
    if not qrels_file.is_file():
        have = sorted(p.stem for p in (directory / "qrels").glob("*.tsv"))
        raise InvalidInputError(f"BEIR directory {directory} has no qrels for split '{split}' "
                                f"(available: {', '.join(have) or 'none'})")

    qrels: dict[str, dict[str, int]] = {}
    with qrels_file.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            cols = line.rstrip("\n").split("\t")
            if lineno == 1 and cols[0] == "query-id":
                continue
            if not line.strip():
                continue
            try:
                qid, did, grade = cols
                qrels.setdefault(qid, {})[did] = int(grade)
            except ValueError:
                raise InvalidInputError(f"{qrels_file}:{lineno}: expected 'query-id<TAB>corpus-id<TAB>score'") \
                    from None

    docs = [EvalDoc(str(_field(r, "_id", f"{corpus}:{n}")), str(r.get("title") or ""),
                    str(_field(r, "text", f"{corpus}:{n}"))) for n, r in _json_lines(corpus)]
    queries = []
    for n, r in _json_lines(queries_file):
        qid = str(_field(r, "_id", f"{queries_file}:{n}"))
        if qid in qrels:
            queries.append(EvalQuery(qid, str(_field(r, "text", f"{queries_file}:{n}")), gold=qrels[qid]))
    files = [("corpus.jsonl", corpus), ("queries.jsonl", queries_file), (f"qrels/{split}.tsv", qrels_file)]
    return Dataset(f"{directory.name}:{split}", docs, queries, _hash_files(files))


# -- SQuAD-style reading comprehension ------------------------------------------------------------------
def load_squad(path: Path) -> Dataset:
    """SQuAD v1/v2-style JSON (CMRC 2018 uses it): each paragraph is a document, titled by its article,
    and is the gold document of its own questions. Unanswerable v2 questions get no answers."""
    path = _require(Path(path), "SQuAD file")
    try:
        articles = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{path}: not SQuAD-style JSON ({type(exc).__name__}: {exc})") from None
    docs: list[EvalDoc] = []
    queries: list[EvalQuery] = []
    try:
        for article in articles:
            title = str(article.get("title") or "")
            for paragraph in article["paragraphs"]:
                context = str(paragraph["context"])
                doc_id = str(paragraph.get("id") or _content_id("p", title, context))
                docs.append(EvalDoc(doc_id, title, context))
                queries.extend(EvalQuery(str(qa["id"]), str(qa["question"]), gold={doc_id: 1},
                                         answers=_unique(str(a["text"]) for a in qa.get("answers", [])))
                               for qa in paragraph["qas"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise InvalidInputError(f"{path}: not SQuAD-style JSON (missing or malformed {exc})") from None
    return Dataset(path.stem, docs, queries, _hash_files([(path.name, path)]))


def without_own_paragraph(dataset: Dataset, limit: int | None = None) -> Dataset:
    """SQuAD-style questions turned unanswerable: each may search every paragraph but its own, so the right
    reply is a refusal. Only questions none of whose reference answers appears in any other paragraph are
    kept (otherwise the knowledge base could still answer them). Questions are ``<id>:removed`` with
    setting ``removed``; with ``limit``, the first that many."""
    text = {d.id: d.text for d in dataset.docs}
    out: list[EvalQuery] = []
    for q in dataset.queries:
        if limit is not None and len(out) >= limit:
            break
        own = next(iter(q.gold), None)
        if own is None or not q.answers:
            continue
        if any(a in body for doc_id, body in text.items() if doc_id != own for a in q.answers):
            continue
        out.append(EvalQuery(f"{q.id}:removed", q.text, passages=[own], setting="removed",
                             scope=tuple(d for d in text if d != own)))
    return replace(dataset, queries=out)


def load_squad_settings(path: Path, setting: str = "both", limit: int | None = None) -> Dataset:
    """CMRC 2018 for answers: ``normal`` (the whole KB), ``removed`` (the question's own paragraph taken
    away: must refuse) or ``both``: the same questions in each setting. ``limit`` counts questions per
    setting; the questions are those that qualify for ``removed``."""
    if setting not in ("normal", "removed", "both"):
        raise InvalidInputError(f"unknown CMRC setting '{setting}' (choose normal, removed or both)")
    base = load_squad(path)
    removed = without_own_paragraph(base, limit)
    ids = {q.id.removesuffix(":removed") for q in removed.queries}
    normal = [replace(q, setting="normal") for q in base.queries if q.id in ids]
    queries = {"normal": normal, "removed": removed.queries, "both": normal + removed.queries}[setting]
    return replace(base, name=f"{base.name}:{setting}", queries=queries)


# -- RGB ---------------------------------------------------------------------------------------------
def load_rgb(directory: Path, setting: str = "both") -> Dataset:
    """RGB (Chen et al. 2024), BEIR layout plus ``questions.jsonl``. ``noisy``: every passage pooled in one
    knowledge base, correct when the answer holds every required item; ``negative``: the question may
    search only its own negative passages, correct when refused; ``both``: each question in each setting
    (the negative copy is ``<id>:negative``)."""
    if setting not in ("noisy", "negative", "both"):
        raise InvalidInputError(f"unknown RGB setting '{setting}' (choose noisy, negative or both)")
    directory = _require(Path(directory), "RGB directory", is_dir=True)
    corpus = _require(directory / "corpus.jsonl", "RGB corpus")
    questions = _require(directory / "questions.jsonl", "RGB questions")
    docs = [EvalDoc(str(_field(r, "_id", f"{corpus}:{n}")), str(r.get("title") or ""),
                    str(_field(r, "text", f"{corpus}:{n}"))) for n, r in _json_lines(corpus)]
    noisy: list[EvalQuery] = []
    negative: list[EvalQuery] = []
    for n, r in _json_lines(questions):
        where = f"{questions}:{n}"
        qid, text = str(_field(r, "id", where)), str(_field(r, "query", where))
        required = [[str(a) for a in item] if isinstance(item, list) else [str(item)]
                    for item in _field(r, "answer", where)]
        positive = [str(p) for p in r.get("positive") or []]
        noisy.append(EvalQuery(qid, text, gold=dict.fromkeys(positive, 1), answers=[alts[0] for alts in required],
                               required=required, setting="noisy"))
        negative.append(EvalQuery(f"{qid}:negative", text, setting="negative",
                                  scope=tuple(str(p) for p in r.get("negative") or [])))
    queries = {"noisy": noisy, "negative": negative, "both": noisy + negative}[setting]
    files = [("corpus.jsonl", corpus), ("questions.jsonl", questions)]
    return Dataset(f"rgb:{directory.name}:{setting}", docs, queries, _hash_files(files))


# -- ClapNQ -----------------------------------------------------------------------------------------
def load_clapnq(path: Path) -> Dataset:
    """ClapNQ JSONL (one file, or a directory of them): each question's passage is a document (id derived
    from its content, so a passage shared by several questions is one document); answerable questions
    have that passage as gold, their human answers and the selected evidence sentences; unanswerable
    ones have no answers and no gold document, and their passages stay in the corpus as distractors."""
    path = Path(path)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [_require(path, "ClapNQ file")]
    if not files:
        raise InvalidInputError(f"ClapNQ directory {path} holds no .jsonl files")
    docs: dict[str, EvalDoc] = {}
    queries: list[EvalQuery] = []
    for file in files:
        for lineno, row in _json_lines(file):
            where = f"{file}:{lineno}"
            outputs = _field(row, "output", where)
            answers = _unique(str(o.get("answer") or "") for o in outputs)
            gold: dict[str, int] = {}
            paired: list[str] = []
            for passage in _field(row, "passages", where):
                title, text = str(passage.get("title") or ""), str(_field(passage, "text", where))
                doc = EvalDoc(_content_id("c", title, text), title, text)
                docs.setdefault(doc.id, doc)
                paired.append(doc.id)
                if answers:
                    gold[doc.id] = 1
            evidence = _unique(str(s) for o in outputs for s in o.get("selected_sentences") or [])
            queries.append(EvalQuery(str(_field(row, "id", where)), str(_field(row, "input", where)), gold=gold,
                                     setting="answerable" if answers else "unanswerable",
                                     answers=answers, gold_substrings=evidence, passages=paired))
    name = f"clapnq:{path.name}" if path.is_dir() else path.stem
    return Dataset(name, list(docs.values()), queries, _hash_files((f.name, f) for f in files))


# -- our own format --------------------------------------------------------------------------------
def _strings(row: dict[str, Any], key: str, where: str) -> list[str]:
    value = row.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInputError(f"{where}: '{key}' must be a list of strings")
    return value


def load_jsonl(path: Path, docs_dir: Path | None = None) -> Dataset:
    """Our question file: one JSON object per line, ``{"id"?, "question", "answers": [...],
    "gold_doc_ids"?: [...], "gold_substrings"?: [...]}`` (see eval/README.md). With ``docs_dir``, the
    documents are that folder's files, loaded by the ingestion loaders and named as ``rag ingest`` names
    them (the folder's own name, then the path inside it), which is what ``gold_doc_ids`` refer to.
    Without it the questions are meant for an existing knowledge base."""
    path = _require(Path(path), "question file")
    queries = []
    for lineno, row in _json_lines(path):
        where = f"{path}:{lineno}"
        question = row.get("question")
        if not isinstance(question, str) or not question.strip():
            raise InvalidInputError(f"{where}: 'question' must be a non-empty string")
        required = row.get("required", [])
        if not isinstance(required, list) or not all(
                isinstance(item, list) and item and all(isinstance(a, str) for a in item) for item in required):
            raise InvalidInputError(f"{where}: 'required' must be a list of lists of strings (alternatives)")
        queries.append(EvalQuery(str(row.get("id", f"q{lineno}")), question,
                                 gold=dict.fromkeys(_strings(row, "gold_doc_ids", where), 1),
                                 answers=_strings(row, "answers", where),
                                 gold_substrings=_unique(_strings(row, "gold_substrings", where)),
                                 required=required, setting=str(row.get("kind", ""))))
    if not queries:
        raise InvalidInputError(f"{path}: no questions")
    files = [(path.name, path)]
    docs: list[EvalDoc] = []
    if docs_dir is not None:
        docs, doc_files = _folder_docs(_require(Path(docs_dir), "documents folder", is_dir=True))
        files += doc_files
    return Dataset(path.stem, docs, queries, _hash_files(files))


def _folder_docs(folder: Path) -> tuple[list[EvalDoc], list[tuple[str, Path]]]:
    """Every file of ``folder`` through the same discovery and loaders as ``rag ingest``."""
    from rag_service.ingestion.loaders import load
    from rag_service.ingestion.pipeline import discover

    docs, files = [], []
    for file, source in discover([folder]):
        try:
            loaded = load(file, source, file.read_bytes())
        except RagError as exc:
            raise InvalidInputError(f"documents folder: {exc}") from None
        docs.append(EvalDoc(source, "", loaded.text))
        files.append((source, file))
    if not docs:
        raise InvalidInputError(f"documents folder {folder} holds no files")
    return docs, files


def load_answer_dataset(path: Path, docs: Path | None, setting: str | None = None,
                    limit: int | None = None) -> Dataset:
    """The format of ``--dataset`` by its shape: RGB (a BEIR folder with questions.jsonl), SQuAD JSON (CMRC
    2018), a ClapNQ file or folder, or our question JSONL."""
    if path.is_dir() and (path / "corpus.jsonl").is_file():
        if (path / "questions.jsonl").is_file():
            return load_rgb(path, setting or "both")
        raise InvalidInputError(f"{path} is a BEIR retrieval task: it has no reference answers "
                                "(use rag eval retrieval --beir)")
    if path.suffix == ".json":
        if setting is None:
            return load_squad(path)
        return load_squad_settings(path, setting, limit)
    if setting is not None:
        raise InvalidInputError("--setting applies to RGB (noisy, negative, both) and SQuAD-style JSON such as "
                                "CMRC 2018 (normal, removed, both)")
    first = ""
    if path.is_file():
        with path.open(encoding="utf-8") as handle:
            first = next((line for line in handle if line.strip()), "")
    if path.is_dir() or '"passages"' in first:
        return load_clapnq(path)
    return load_jsonl(path, docs)
