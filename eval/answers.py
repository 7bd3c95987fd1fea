"""Answer evaluation through the real pipeline: every question goes through ``Answerer.ask`` (retrieval,
the refusal floor, packing, the LLM, citation validation) over an index built by the real ingestion
pipeline, and is scored from the returned ``Answer`` and its trace alone:

- answerable questions: exact match and token F1 against the reference answers (a refusal scores 0), and
  the answer rate (share not refused);
- unanswerable questions (no reference answer): refusal accuracy (share refused);
- faithfulness: the share of answer sentences supported by the packed passages;
- citation validity: the share of ``[n]`` markers in the returned answer whose passage supports their
  sentence; ``model_citation_validity`` does the same for the markers the model wrote, before validation;
- cost: prompt/completion tokens and seconds per stage, from the trace.

"Supported" is decided by a judge, given the question and the sentence. ``e5`` (default): their best cosine
similarity to a passage sentence, a pair of adjacent sentences or the whole passage is at least
``FAITHFUL_MIN_SIMILARITY``. ``llm``:
the bundled LLM answers yes/no with ``prompts/judge.<lang>.txt`` (slower, and a 0.5B judge is weak).
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from tqdm import tqdm

from eval.datasets import Dataset, EvalQuery
from eval.metrics import exact_match, mean, token_f1
from eval.record import run_record
from eval.retrieval import RetrievalConfig, build_index
from rag_service import prompts
from rag_service.catalog import KnowledgeBase
from rag_service.citations import marked_sentences, strip_markers
from rag_service.embeddings import get_embedder
from rag_service.errors import InvalidInputError
from rag_service.generation import Answerer, language
from rag_service.llm import LLM
from rag_service.records import Answer, Chunk
from rag_service.settings import load_settings
from rag_service.workspace import Workspace

# e5 cosine (passage-prefixed on both sides) between "question + answer sentence" and a passage unit
# from which the sentence counts as supported. The question is prepended because answers are often bare
# spans ("Mara Okafor."), which say little on their own. Calibrated on hand-made cases over the bundled
# samples (tests/test_eval_answers.py): supported answers 0.926-0.949, the same answer with another name
# or number 0.891-0.912, unsupported claims 0.785-0.859. A changed Chinese numeral still passes (0.95):
# embedding similarity cannot check numbers, which is what --judge llm is for.
FAITHFUL_MIN_SIMILARITY = 0.92

Judge = Literal["e5", "llm"]
_PASSAGE_SENTENCE = re.compile(r"(?<=[。！？!?])|(?<=\.)\s+|\n+")


class SupportJudge(Protocol):
    def supported(self, statement: str, passages: Sequence[str]) -> bool: ...


class E5Judge:
    """Embedding similarity: cheap, deterministic, blind to a changed number."""

    def __init__(self, threshold: float = FAITHFUL_MIN_SIMILARITY) -> None:
        self.threshold = threshold
        self._embedder = get_embedder("e5")
        self._units: dict[str, np.ndarray] = {}

    def _passage_units(self, passage: str) -> np.ndarray:
        if passage not in self._units:
            sentences = [s.strip() for s in _PASSAGE_SENTENCE.split(passage) if s and s.strip()]
            units = [*sentences, *(f"{a} {b}" for a, b in itertools.pairwise(sentences)), passage]
            self._units[passage] = self._embedder.embed_documents(list(dict.fromkeys(units)))
        return self._units[passage]

    def similarity(self, statement: str, passages: Sequence[str]) -> float:
        if not passages:
            return 0.0
        vector = self._embedder.embed_documents([statement])[0]
        return max(float(np.max(self._passage_units(p) @ vector)) for p in passages)

    def supported(self, statement: str, passages: Sequence[str]) -> bool:
        return self.similarity(statement, passages) >= self.threshold


class LLMJudge:
    """The answering model asked yes/no per sentence with a template from ``prompts/``."""

    def __init__(self, llm: LLM, prompts_dir: Path | None = None) -> None:
        self.llm = llm
        self.prompts_dir = prompts_dir

    def supported(self, statement: str, passages: Sequence[str]) -> bool:
        if not passages:
            return False
        lang = language(statement)
        template = prompts.load(f"judge.{lang}", self.prompts_dir)
        numbered = "\n\n".join(f"[{n}] {p}" for n, p in enumerate(passages, start=1))
        reply = self.llm.complete(template.messages(passages=numbered, statement=statement),
                                  max_tokens=4, temperature=0.0).text.strip().lower()
        return reply.startswith("是" if lang == "zh" else "yes")


@dataclass(frozen=True, slots=True)
class QuestionResult:
    id: str
    question: str
    answers: list[str]
    prediction: str
    refused: bool
    grounded: bool
    em: float
    f1: float
    sentences: int
    supported_sentences: int
    markers: int
    valid_markers: int
    model_markers: int
    valid_model_markers: int
    prompt_tokens: int
    completion_tokens: int
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


def select_questions(queries: Sequence[EvalQuery], limit: int | None) -> list[EvalQuery]:
    """The first ``limit`` questions, half answerable and half not when the data set has both kinds, so
    a short run still measures refusal."""
    if limit is None:
        return list(queries)
    answerable = [q for q in queries if q.answers]
    unanswerable = [q for q in queries if not q.answers]
    if not answerable or not unanswerable:
        return list(queries[:limit])
    half = min(limit - limit // 2, len(answerable))
    rest = min(limit - half, len(unanswerable))
    return answerable[: limit - rest] + unanswerable[:rest]


def _marked_sentences(text: str) -> list[tuple[str, list[int]]]:
    """(sentence without markers, its marker numbers) for each sentence of ``text`` that has content."""
    return [(body.strip(), marked) for _, body, marked in marked_sentences(text) if re.search(r"\w", body)]


def _valid(judge: SupportJudge, sentence: str, numbers: Sequence[int], passages: Sequence[str]) -> int:
    """How many of ``numbers`` name an existing passage that supports ``sentence``."""
    return sum(1 <= n <= len(passages) and judge.supported(sentence, [passages[n - 1]]) for n in numbers)


def score(query: EvalQuery, answer: Answer, packed: Sequence[Chunk], judge: SupportJudge) -> QuestionResult:
    """One question's scores, from the answer and its trace."""
    passages = [c.text for c in packed]

    def claim(sentence: str) -> str:
        return f"{query.text} {sentence}"

    prediction = strip_markers(answer.answer)
    sentences = [] if answer.refused else _marked_sentences(answer.answer)
    model_checks = [] if answer.refused else answer.trace.get("citation_checks", [])
    scored = bool(query.answers) and not answer.refused
    return QuestionResult(
        id=query.id, question=query.text, answers=list(query.answers), prediction=prediction,
        refused=answer.refused, grounded=answer.grounded,
        em=exact_match(prediction, query.answers) if scored else 0.0,
        f1=token_f1(prediction, query.answers) if scored else 0.0,
        sentences=len(sentences),
        supported_sentences=sum(judge.supported(claim(s), passages) for s, _ in sentences),
        markers=sum(len(ns) for _, ns in sentences),
        valid_markers=sum(_valid(judge, claim(s), ns, passages) for s, ns in sentences),
        model_markers=sum(len(c["marked"]) for c in model_checks),
        valid_model_markers=sum(_valid(judge, claim(c["sentence"]), c["marked"], passages)
                                for c in model_checks),
        prompt_tokens=answer.usage.prompt_tokens, completion_tokens=answer.usage.completion_tokens,
        timings=dict(answer.trace.get("timings", {})),
    )


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def summarise(results: Sequence[QuestionResult]) -> dict[str, Any]:
    """The ``rag eval answers --json`` shape (a public contract: extend, never break)."""
    answerable = [r for r in results if r.answerable]
    unanswerable = [r for r in results if not r.answerable]
    stages = sorted({k for r in results for k in r.timings})
    return {
        "questions": len(results),
        "answerable": {
            "count": len(answerable),
            "exact_match": round(mean(r.em for r in answerable), 4),
            "f1": round(mean(r.f1 for r in answerable), 4),
            "answer_rate": _share(sum(not r.refused for r in answerable), len(answerable)),
        },
        "unanswerable": {
            "count": len(unanswerable),
            "refusal_accuracy": _share(sum(r.refused for r in unanswerable), len(unanswerable)),
        },
        "faithfulness": _share(sum(r.supported_sentences for r in results), sum(r.sentences for r in results)),
        "citation_validity": _share(sum(r.valid_markers for r in results), sum(r.markers for r in results)),
        "model_citation_validity": _share(sum(r.valid_model_markers for r in results),
                                          sum(r.model_markers for r in results)),
        "grounded_rate": _share(sum(r.grounded for r in results if not r.refused),
                                sum(not r.refused for r in results)),
        "cost": {
            "prompt_tokens": round(mean(r.prompt_tokens for r in results), 1),
            "completion_tokens": round(mean(r.completion_tokens for r in results), 1),
            **{f"{stage}": round(mean(r.timings.get(stage, 0.0) for r in results), 3) for stage in stages},
        },
    }


@dataclass(frozen=True, slots=True)
class AnswerConfig:
    """The index (production defaults: the settings' splitter and chunk size) and the judge."""

    embedder: str = "e5"
    splitter: str | None = None
    chunk_size: int | None = None
    chunk_overlap: int | None = None
    judge: Judge = "e5"
    threshold: float = FAITHFUL_MIN_SIMILARITY

    def retrieval(self) -> RetrievalConfig:
        settings = load_settings()
        return RetrievalConfig(self.embedder, self.splitter or settings.splitter,
                               self.chunk_size or settings.chunk_size,
                               settings.chunk_overlap if self.chunk_overlap is None else self.chunk_overlap)


def make_judge(name: Judge, answerer: Answerer, threshold: float = FAITHFUL_MIN_SIMILARITY) -> SupportJudge:
    if name == "e5":
        return E5Judge(threshold)
    if name == "llm":
        return LLMJudge(answerer.llm, answerer.ws.settings.prompts_dir)
    raise InvalidInputError(f"unknown judge '{name}' (choose e5 or llm)")


def answer_all(ws: Workspace, kb: KnowledgeBase, questions: Sequence[EvalQuery], config: AnswerConfig, *,
               progress: bool = False) -> list[QuestionResult]:
    """Ask every question of ``kb`` on its own (a fresh session each) and score it."""
    answerer = Answerer(ws, kb)
    judge = make_judge(config.judge, answerer, config.threshold)
    results = []
    for query in tqdm(questions, desc="answering", unit="question", disable=not progress):
        answer = answerer.ask(query.text)
        ids = answer.trace.get("packed", [])
        chunks = ws.catalog.ready_chunks(kb.id, ids)
        results.append(score(query, answer, [chunks[i] for i in ids if i in chunks], judge))
        ws.sessions.delete(answer.session_id)
    return results


def report(results: Sequence[QuestionResult], seconds: float, **record: Any) -> dict[str, Any]:
    """Summary, run record and every question's result: the ``--json`` output."""
    return {**summarise(results), "record": run_record(**record, seconds=round(seconds, 1)),
            "results": [asdict(r) for r in results]}


def run_answers(dataset: Dataset, config: AnswerConfig = AnswerConfig(), cache_dir: Path | None = None, *,
                limit: int | None = None, corpus_limit: int | None = None,
                progress: bool = False) -> dict[str, Any]:
    """Index the data set's documents (cached; with ``corpus_limit``, the selected questions' own documents
    plus that many others), then answer and score the selected questions."""
    questions = select_questions(dataset.queries, limit)
    if not questions:
        raise InvalidInputError(f"data set '{dataset.name}' has no questions")
    dataset = dataset.restrict(questions, corpus_limit)
    retrieval = config.retrieval()
    index = build_index(dataset, retrieval, cache_dir, progress=progress)
    started = time.perf_counter()
    try:
        results = answer_all(index.ws, index.kb, questions, config, progress=progress)
    finally:
        index.ws.close()
    return report(results, time.perf_counter() - started, dataset=dataset.name,
                  dataset_sha256=dataset.content_hash, index=index.key, embedder=retrieval.embedder,
                  splitter=retrieval.splitter, chunk_size=retrieval.chunk_size,
                  chunk_overlap=retrieval.chunk_overlap, judge=config.judge, threshold=config.threshold)
