"""Answer evaluation through the real pipeline: every question goes through ``Answerer.ask`` (retrieval,
the refusal floor, packing, the LLM, citation validation, claim verification) over an index built by the
real ingestion pipeline, and is scored from the returned ``Answer`` and its trace alone.

One run scores every grounding policy: the trace holds what ``strict``, ``lenient`` and ``off`` would each
deliver (the checks run once), so the gain of verification is measured on identical generations.

Per policy:

- answerable questions: **answered correctly**, by the data set's rule: every required item in the answer
  (RGB, our FAQ set; an item with alternatives needs one of them), a reference answer contained in it
  (CMRC), or answered with every sentence supported by the packed passages (ClapNQ's long-form answers);
  also exact match and token F1 against the references, and the answer rate;
- unanswerable questions: **refused** (the share refused);
- **faithfulness**: the share of delivered sentences supported by the packed passages;
- **uncited answers**: delivered answers (not refusals) that carry no valid citation;
- citation validity of the delivered markers, and of the model's own markers before validation;
- cost: prompt and completion tokens, seconds per stage and time to first token.

Every figure is also given per language (``zh`` when the question has CJK characters) and per setting
(RGB noisy / negative, CMRC normal / removed, ClapNQ answerable / unanswerable, the FAQ set's kinds).

"Supported" is decided by a judge, given the question and the sentence. ``e5`` (default): their best cosine
similarity to a passage sentence, a pair of adjacent sentences or the whole passage is at least
``FAITHFUL_MIN_SIMILARITY``. ``llm``: the bundled LLM answers yes/no with ``rag_service/prompts/judge.<lang>.txt``.
The judge is independent of the pipeline's own claim check, which it is meant to measure.
"""

from __future__ import annotations

import itertools
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from tqdm import tqdm

from rag_service import prompts
from rag_service.answering.calibration import calibration_for
from rag_service.answering.citations import Aligner, marked_sentences, strip_markers, validate
from rag_service.answering.generation import Answerer
from rag_service.answering.verification import QUOTE_MIN, TrustModel, Verification, trust_features
from rag_service.errors import InvalidInputError
from rag_service.eval.datasets import Dataset, EvalQuery
from rag_service.eval.llm_cache import CachedLLM
from rag_service.eval.metrics import contains_any, exact_match, has_required, mean, token_f1
from rag_service.eval.record import run_record
from rag_service.eval.retrieval import EvalIndex, RetrievalConfig, build_index, default_cache_dir
from rag_service.models.embeddings import get_embedder, similarity
from rag_service.models.llm import LLM, get_llm
from rag_service.records import Answer, Chunk, Citation
from rag_service.settings import POLICIES, load_settings
from rag_service.storage.catalog import KnowledgeBase
from rag_service.storage.filters import SearchFilter
from rag_service.text.language import query_language
from rag_service.workspace import Workspace

# e5 cosine (passage-prefixed on both sides) between "question + answer sentence" and a passage unit
# from which the sentence counts as supported. The question is prepended because answers are often bare
# spans ("Mara Okafor."), which say little on their own. Calibrated on hand-made cases over the bundled
# samples (tests/test_eval_answers.py): supported answers score above it, the same answer with another name or
# number and unsupported claims below (docs/evaluation.md "Calibrated constants"). A changed Chinese numeral still
# passes: embedding similarity cannot check numbers, which is what --judge llm is for.
FAITHFUL_MIN_SIMILARITY = 0.92

# How deep a second search looks for the gold passage: a question whose gold passage is not in it counts as lost to
# retrieval, one whose gold passage is there but not packed as lost to packing (the fused candidates per retriever).
RETRIEVED_DEPTH = 30

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
    """The answering model asked yes/no per sentence with a template from ``rag_service/prompts/``."""

    def __init__(self, llm: LLM, prompts_dir: Path | None = None) -> None:
        self.llm = llm
        self.prompts_dir = prompts_dir

    def supported(self, statement: str, passages: Sequence[str]) -> bool:
        if not passages:
            return False
        lang = query_language(statement)
        template = prompts.load(f"judge.{lang}", self.prompts_dir)
        numbered = "\n\n".join(f"[{n}] {p}" for n, p in enumerate(passages, start=1))
        reply = self.llm.complete(template.messages(passages=numbered, statement=statement),
                                  max_tokens=4, temperature=0.0).text.strip().lower()
        return reply.startswith("是" if lang == "zh" else "yes")


# -- one question ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PolicyResult:
    """What one grounding policy delivered for one question, and how it scores."""

    prediction: str  # the delivered answer without markers ('' when refused)
    refused: bool
    correct: bool  # answerable: answered correctly by the data set's rule; unanswerable: refused
    em: float
    f1: float
    sentences: int
    supported_sentences: int
    markers: int
    valid_markers: int
    cited: bool  # delivered with at least one valid citation (refusals: False)


@dataclass(frozen=True, slots=True)
class QuestionResult:
    id: str
    question: str
    answers: list[str]
    prediction: str  # under the run's policy (the settings' grounding), as before policies were scored
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
    lang: str = "en"
    setting: str = ""
    policies: dict[str, PolicyResult] = field(default_factory=dict)
    early_refusal: bool = False
    gold_packed: bool | None = None  # a gold document was among the packed passages (None: no gold)
    claims: list[dict[str, Any]] = field(default_factory=list)  # the verifier's verdicts (all sentences)
    passages: list[str] = field(default_factory=list)  # the packed passages as the model read them
    signals: dict[str, Any] = field(default_factory=dict)  # the model's own judgements (gate, refusal start)
    trust: float | None = None  # the calibrated trust score of the answer, when one was computed
    # Where the gold passage stood: its rank in a search RETRIEVED_DEPTH deep (None: not there, or no gold), whether
    # it was among the answer's hits (what a refusal's related passages come from) and among the related passages.
    gold_rank: int | None = None
    gold_hit: bool | None = None
    gold_related: bool | None = None
    related_first: bool | None = None  # the first related passage is a gold one
    trust_threshold: float | None = None
    delivered_by: str | None = None  # what delivered the run policy's answer: trust | quote | extract (None: refused)
    outcomes: dict[str, Any] = field(default_factory=dict)  # what other fits would deliver (``outcomes``)

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


def _languages_in_turn(queries: Sequence[EvalQuery]) -> list[EvalQuery]:
    by_lang: dict[str, list[EvalQuery]] = {}
    for q in queries:
        by_lang.setdefault(query_language(q.text), []).append(q)
    turns = itertools.zip_longest(*by_lang.values())
    return [q for turn in turns for q in turn if q is not None]


def select_questions(queries: Sequence[EvalQuery], limit: int | None) -> list[EvalQuery]:
    """The first ``limit`` questions, half answerable and half not when the data set has both kinds, so
    a short run still measures refusal; the languages of a bilingual set take turns, so a short run measures
    both (the first 64 of our FAQ file would be 60 Chinese ones)."""
    if limit is None:
        return list(queries)
    queries = _languages_in_turn(queries)
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


Rule = Literal["required", "contains", "faithful"]


def answer_rule(query: EvalQuery, dataset_rule: Rule | None = None) -> Rule:
    """How an answer to ``query`` is judged correct: its required items when it has them, else the data
    set's rule, else containment of a reference answer."""
    if query.required:
        return "required"
    return dataset_rule or "contains"


def score_policy(query: EvalQuery, delivered: str, refused: bool, packed: Sequence[Chunk], judge: SupportJudge,
                 rule: Rule, align: Aligner | None = None) -> PolicyResult:
    """One policy's delivered answer, scored. ``cited``: the answer keeps at least one citation that passes
    the documented citation rule (``citations.validate``) against the packed passages."""
    passages = [c.text for c in packed]

    def claim(sentence: str) -> str:
        return f"{query.text} {sentence}"

    sentences = [] if refused else _marked_sentences(delivered)
    supported = sum(judge.supported(claim(s), passages) for s, _ in sentences)
    valid = sum(_valid(judge, claim(s), ns, passages) for s, ns in sentences)
    prediction = "" if refused else strip_markers(delivered)
    answerable = bool(query.answers)
    if not answerable:
        correct = refused
    elif refused:
        correct = False
    elif rule == "required":
        correct = has_required(prediction, query.required)
    elif rule == "faithful":
        correct = bool(sentences) and supported == len(sentences)
    else:
        correct = contains_any(prediction, query.answers)
    scored = answerable and not refused
    return PolicyResult(
        prediction=prediction, refused=refused, correct=correct,
        em=exact_match(prediction, query.answers) if scored else 0.0,
        f1=token_f1(prediction, query.answers) if scored else 0.0,
        sentences=len(sentences), supported_sentences=supported,
        markers=sum(len(ns) for _, ns in sentences), valid_markers=valid,
        cited=not refused and bool(validate(delivered, list(packed), query.text, align=align)[1]))


def outcomes(query: EvalQuery, answer: Answer, packed: Sequence[Chunk], judge: SupportJudge,
             rule: Rule, align: Aligner | None = None) -> dict[str, Any]:
    """What the run's checks would deliver under other fits (``Verification.decide`` replayed on the trace), scored:
    ``features`` of the trust model (None when no sentence passed the rules); ``trust``: the answer delivered as a
    trusted one; ``quotes``: [evidence level, the answer of the quotes kept from that level]; ``extract``: [P(yes)
    of the best evidence unit, the extract]. Each answer is True (correct), False (wrong) or None (nothing
    delivered). rag_service/eval/calibrate.py fits thresholds on these without asking the model again."""
    data = answer.trace.get("verification")
    if not data:
        return {}
    citations = {n: Citation(n, c) for n, c in enumerate(packed, start=1)}
    never = 2.0  # a threshold no score reaches

    def delivered(model: TrustModel) -> bool | None:
        verification = Verification.from_json(data, citations)
        verification.decide(model)
        text, _, refused, _ = verification.apply("strict")
        return None if refused else score_policy(query, text, False, packed, judge, rule, align).correct

    verification = Verification.from_json(data, citations)
    passed = [c for c in verification.claims if not c.lead_in and (c.supported or c.reason == "not-stated")]
    levels = sorted({c.evidence_p for c in passed if c.evidence_p is not None and (c.quote or 0.0) >= QUOTE_MIN})
    best = max((u.p for u in verification.units), default=None)
    return {"features": trust_features(verification.signals, passed) if passed else None,
            "trust": delivered(TrustModel(0.0, {}, 0.0)),
            "quotes": [[level, delivered(TrustModel(0.0, {}, never, quote_min_evidence=level))] for level in levels],
            "extract": None if best is None else [best, delivered(TrustModel(0.0, {}, never,
                                                                             extract_min_evidence=0.0))]}


def score(query: EvalQuery, answer: Answer, packed: Sequence[Chunk], judge: SupportJudge, *,
          rule: Rule = "contains", policy: str = "strict", gold_doc_ids: set[str] | None = None,
          timing: dict[str, float] | None = None, retrieved: Sequence[Chunk] = (),
          align: Aligner | None = None) -> QuestionResult:
    """One question's scores under every policy, from the answer and its trace; ``retrieved`` is a deeper search
    for the same question (RETRIEVED_DEPTH), which tells a passage never found from one found and not packed."""
    passages = [c.text for c in packed]

    def gold(doc_id: str, text: str) -> bool:
        return doc_id in gold_doc_ids if gold_doc_ids else _contains(text, query.gold_substrings)

    judged = bool(gold_doc_ids or query.gold_substrings)
    hits = [(h["doc_id"], h["text"]) for h in answer.trace.get("hits", [])]
    related = [(h.chunk.doc_id, h.chunk.text) for h in answer.related]
    rank = next((i for i, c in enumerate(retrieved, start=1) if gold(c.doc_id, c.text)), None) if judged else None
    views = answer.trace.get("policy_views")
    if views is None:  # refused before the LLM: every policy refuses
        views = {p: {"answer": "", "refused": True} for p in POLICIES}
    results = {p: score_policy(query, "" if v["refused"] else v["answer"], v["refused"], packed, judge, rule, align)
               for p, v in views.items()}
    own = results.get(policy) or next(iter(results.values()))
    model_checks = answer.trace.get("citation_checks", [])
    model_refused = answer.trace.get("verification", {}).get("model_refused", True)
    checks = [] if model_refused else model_checks
    timings = dict(answer.trace.get("timings", {}))
    if timing and timing.get("cached"):  # only retrieval and packing were measured in this run
        timings = {k: v for k, v in timings.items() if k in ("retrieve_s", "pack_s", "condense_s")}
        timings["cached"] = 1.0
    return QuestionResult(
        id=query.id, question=query.text, answers=list(query.answers), prediction=own.prediction,
        refused=own.refused, grounded=own.cited, em=own.em, f1=own.f1, sentences=own.sentences,
        supported_sentences=own.supported_sentences, markers=own.markers, valid_markers=own.valid_markers,
        model_markers=sum(len(c["marked"]) for c in checks),
        valid_model_markers=sum(_valid(judge, f"{query.text} {c['sentence']}", c["marked"], passages)
                                for c in checks),
        prompt_tokens=answer.usage.prompt_tokens, completion_tokens=answer.usage.completion_tokens,
        timings=timings, lang=query_language(query.text), setting=query.setting, policies=results,
        early_refusal=bool(answer.trace.get("refused_before_llm")),
        gold_packed=any(gold(c.doc_id, c.text) for c in packed) if judged else None,
        gold_rank=rank, gold_hit=any(gold(*h) for h in hits) if judged else None,
        gold_related=any(gold(*h) for h in related) if judged and answer.refused else None,
        related_first=gold(*related[0]) if judged and related else None,
        trust_threshold=answer.trace.get("verification", {}).get("trust_threshold"),
        delivered_by=None if answer.refused else answer.trace.get("verification", {}).get("delivered_by", "trust"),
        outcomes=outcomes(query, answer, packed, judge, rule, align),
        claims=list(answer.trace.get("verification", {}).get("claims", [])),
        passages=passages, signals=dict(answer.trace.get("verification", {}).get("signals", {})),
        trust=answer.trace.get("verification", {}).get("trust"),
    )


def _contains(text: str, needles: Sequence[str]) -> bool:
    hay = " ".join(text.split()).casefold()
    return any(" ".join(n.split()).casefold() in hay for n in needles)


# -- where answers are lost --------------------------------------------------------------------------
# The stages an answerable question can be lost at, in pipeline order (``loss_stage``).
LOSS_STAGES = ("not-retrieved", "not-packed", "reading", "model-refused", "rule:no-content", "rule:no-answer",
               "rule:uncited", "rule:off-question", "gate", "evidence", "trust", "list-truncation", "checks")


def loss_stage(r: QuestionResult, policy: str = "strict") -> str | None:
    """Where an answerable question that ``policy`` did not answer correctly was lost: its gold passage not in a
    RETRIEVED_DEPTH-deep search (``not-retrieved``) or found and not packed (``not-packed``, also a refusal before
    the model); the model's own reading (``reading``: wrong with the checks off; ``model-refused``); a sentence rule
    (``rule:<reason>``); the trust score (``gate`` or ``evidence`` when that signal was below one half, else
    ``trust``); or a delivered answer the checks cut short (``list-truncation``). None: answered correctly, or
    unanswerable. Questions without gold passages skip the first two stages."""
    view = r.policies.get(policy)
    if not r.answerable or view is None or view.correct:
        return None
    if r.gold_packed is False:
        return "not-retrieved" if r.gold_rank is None else "not-packed"
    if r.early_refusal:
        return "not-packed"
    off = r.policies.get("off")
    if off is not None and not off.correct:
        return "model-refused" if off.refused else "reading"
    if not view.refused:
        return "list-truncation"
    reasons = [c.get("reason") for c in r.claims if not c.get("lead_in")]
    if "not-stated" in reasons:  # a sentence passed every rule and the trust score withdrew it
        if (r.signals.get("gate") or 1.0) < 0.5:
            return "gate"
        if r.signals.get("evidence") is not None and r.signals["evidence"] < 0.5:
            return "evidence"
        return "trust"
    reason = next((x for x in reasons if x), None)
    return f"rule:{reason}" if reason else "checks"


def losses(results: Sequence[QuestionResult], policy: str = "strict") -> dict[str, Any]:
    """Per stage, how many answerable questions were lost there (``loss_stage``); and each unanswerable question
    ``policy`` answered anyway, with the signals that let it through."""
    stages: dict[str, int] = {}
    for r in results:
        stage = loss_stage(r, policy)
        if stage is not None:
            stages[stage] = stages.get(stage, 0) + 1
    leaked = [{"id": r.id, "question": r.question, "answer": r.policies[policy].prediction,
               "delivered_by": r.delivered_by, "trust": r.trust, "trust_threshold": r.trust_threshold,
               "signals": r.signals,
               "claims": [{k: c.get(k) for k in ("text", "citations", "supported", "reason", "anchoring", "quote")}
                          for c in r.claims]}
              for r in results if not r.answerable and policy in r.policies and not r.policies[policy].refused]
    return {"answerable_lost": {s: stages[s] for s in sorted(stages, key=_stage_order)},
            "unanswerable_answered": leaked}


def _stage_order(stage: str) -> int:
    return LOSS_STAGES.index(stage) if stage in LOSS_STAGES else len(LOSS_STAGES)


def related_recall(results: Sequence[QuestionResult], policy: str = "strict") -> dict[str, Any]:
    """Over answerable questions ``policy`` refused although a gold passage was among the hits: how often a gold
    passage is among the related passages the refusal shows, and first among them."""
    eligible = [r for r in results if r.answerable and policy in r.policies and r.policies[policy].refused
                and r.gold_hit]
    return {"refused_with_gold_hit": len(eligible),
            "gold_in_related": _share(sum(bool(r.gold_related) for r in eligible), len(eligible)),
            "gold_first": _share(sum(bool(r.related_first) for r in eligible), len(eligible))}


# -- summaries ---------------------------------------------------------------------------------------
def _share(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def _policy_summary(results: Sequence[QuestionResult], policy: str) -> dict[str, Any]:
    views = [(r, r.policies[policy]) for r in results if policy in r.policies]
    answerable = [v for r, v in views if r.answerable]
    unanswerable = [v for r, v in views if not r.answerable]
    delivered = [v for _, v in views if not v.refused]
    return {
        "answered_correctly": _share(sum(v.correct for v in answerable), len(answerable)),
        "answer_rate": _share(sum(not v.refused for v in answerable), len(answerable)),
        # answerable questions answered, but not correctly: worse than a refusal with the passage in related
        "wrong_answers": _share(sum(not v.refused and not v.correct for v in answerable), len(answerable)),
        "refused": _share(sum(v.refused for v in unanswerable), len(unanswerable)),
        "faithfulness": _share(sum(v.supported_sentences for v in delivered), sum(v.sentences for v in delivered)),
        "uncited_answers": sum(not v.cited for v in delivered),
        "exact_match": round(mean(v.em for v in answerable), 4),
        "f1": round(mean(v.f1 for v in answerable), 4),
        "citation_validity": _share(sum(v.valid_markers for v in delivered), sum(v.markers for v in delivered)),
    }


def _cost(results: Sequence[QuestionResult]) -> dict[str, Any]:
    """Tokens over every question; seconds over the questions whose model calls were measured in this run
    (not answered from the LLM cache); the time to first token over those that called the model."""
    measured = [r for r in results if "cached" not in r.timings]
    stages = sorted({k for r in measured for k in r.timings})
    asked = [r.timings["first_token_s"] for r in measured if "first_token_s" in r.timings]
    return {
        "prompt_tokens": round(mean(r.prompt_tokens for r in results), 1),
        "completion_tokens": round(mean(r.completion_tokens for r in results), 1),
        **{stage: round(mean(r.timings.get(stage, 0.0) for r in measured), 3) for stage in stages},
        "first_token_s_p50": round(statistics.median(asked), 3) if asked else None,
        "timed_questions": len(measured),
    }


def _group(results: Sequence[QuestionResult], key: Callable[[QuestionResult], str]) -> dict[str, Any]:
    groups: dict[str, list[QuestionResult]] = {}
    for r in results:
        groups.setdefault(key(r), []).append(r)
    return {name: {"questions": len(rs), "answerable": sum(r.answerable for r in rs),
                   "unanswerable": sum(not r.answerable for r in rs),
                   "policies": {p: _policy_summary(rs, p) for p in POLICIES if any(p in r.policies for r in rs)},
                   "cost": _cost(rs)}
            for name, rs in sorted(groups.items())}


def summarise(results: Sequence[QuestionResult], policy: str = "strict") -> dict[str, Any]:
    """The ``rag eval answers --json`` shape (a public contract: extend, never break). The top-level
    figures are the run's policy; ``policies``, ``by_language`` and ``by_setting`` add every policy."""
    answerable = [r for r in results if r.answerable]
    unanswerable = [r for r in results if not r.answerable]
    stages = sorted({k for r in results for k in r.timings})
    own = _policy_summary(results, policy) if any(policy in r.policies for r in results) else {}
    return {
        "questions": len(results),
        "answerable": {
            "count": len(answerable),
            "exact_match": round(mean(r.em for r in answerable), 4),
            "f1": round(mean(r.f1 for r in answerable), 4),
            "answer_rate": _share(sum(not r.refused for r in answerable), len(answerable)),
            **({"answered_correctly": own["answered_correctly"]} if own else {}),
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
        "uncited_answers": sum(not r.refused and not r.grounded for r in results),
        "cost": {
            "prompt_tokens": round(mean(r.prompt_tokens for r in results), 1),
            "completion_tokens": round(mean(r.completion_tokens for r in results), 1),
            **{f"{stage}": round(mean(r.timings.get(stage, 0.0) for r in results), 3) for stage in stages},
        },
        "policy": policy,
        "policies": {p: _policy_summary(results, p) for p in POLICIES if any(p in r.policies for r in results)},
        "by_language": _group(results, lambda r: r.lang),
        "by_setting": _group(results, lambda r: r.setting or ("answerable" if r.answerable else "unanswerable")),
        "losses": losses(results, policy),
        "related": related_recall(results, policy),
    }


# -- runs --------------------------------------------------------------------------------------------
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
               index: EvalIndex | None = None, rule: Rule | None = None, llm_cache: Path | None = None,
               progress: bool = False) -> list[QuestionResult]:
    """Ask every question of ``kb`` on its own (a fresh session each, searching only its ``scope`` when it
    has one) and score it. With ``llm_cache``, model calls are answered from that file when they were
    made before with the same prompt."""
    llm: LLM | None = None
    cached: CachedLLM | None = None
    if llm_cache is not None:
        cached = CachedLLM(get_llm(ws.settings), llm_cache)
        llm = cached
    # The fit of the user's own settings (their data dir's, else the shipped one), not of the index's workspace.
    answerer = Answerer(ws, kb, llm, calibration=calibration_for(load_settings()))
    judge = make_judge(config.judge, answerer, config.threshold)
    # The citation rule as the product applies it, sentences in another language matched by meaning included.
    align = similarity(answerer.retriever.embedder) if answerer.retriever.embedder.multilingual else None
    doc_ids = index.doc_id_map() if index is not None else {}

    def catalog_ids(dataset_ids: Sequence[str]) -> list[str]:
        return list(dict.fromkeys(doc_ids[i] for i in dataset_ids if i in doc_ids))

    results = []
    try:
        for query in tqdm(questions, desc="answering", unit="question", disable=not progress):
            scope = None
            if query.scope is not None:
                if index is None:
                    raise InvalidInputError(f"question {query.id} is scoped to data set documents: it needs an "
                                            "index built from the data set")
                scope = SearchFilter(doc_ids=tuple(catalog_ids(query.scope)) or ("\0none",))
            if cached is not None:
                cached.reset()
            answer = answerer.ask(query.text, filter=scope)
            gold = set(catalog_ids([d for d, g in query.gold.items() if g > 0])) if query.gold else None
            # Model stages timed from the cache are not this run's: they are left out of the cost figures.
            timing = {"cached": 1.0} if cached is not None and cached.hit_since_reset else None
            retrieved = [h.chunk for h in answerer.retriever.search(
                answer.trace.get("standalone_question", query.text), k=RETRIEVED_DEPTH, filter=scope,
                expand="translate" if ws.settings.translate_query else None)]
            result = score(query, answer, answer.packed, judge,
                           rule=answer_rule(query, rule), policy=ws.settings.grounding, gold_doc_ids=gold,
                           timing=timing, retrieved=retrieved, align=align)
            results.append(result)
            if answer.session_id is not None:
                ws.sessions.delete(answer.session_id)
    finally:
        if cached is not None:
            cached.close()
    return results


def report(results: Sequence[QuestionResult], seconds: float, policy: str = "strict", **record: Any) -> dict[str, Any]:
    """Summary, run record and every question's result: the ``--json`` output."""
    return {**summarise(results, policy), "record": run_record(**record, seconds=round(seconds, 1)),
            "results": [asdict(r) for r in results]}


def dataset_rule(dataset: Dataset) -> Rule | None:
    """ClapNQ's references are long-form answers: a correct answer is a faithful one."""
    return "faithful" if dataset.name.startswith("clapnq") else None


def run_answers(dataset: Dataset, config: AnswerConfig = AnswerConfig(), cache_dir: Path | None = None, *,
                limit: int | None = None, corpus_limit: int | None = None, llm_cache: bool = True,
                progress: bool = False) -> dict[str, Any]:
    """Index the data set's documents (cached; with ``corpus_limit``, the selected questions' own documents
    plus that many others), then answer and score the selected questions. Model calls are cached beside
    the indexes (``llm-cache.sqlite3``) unless ``llm_cache`` is False."""
    questions = select_questions(dataset.queries, limit)
    if not questions:
        raise InvalidInputError(f"data set '{dataset.name}' has no questions")
    dataset = dataset.restrict(questions, corpus_limit)
    retrieval = config.retrieval()
    index = build_index(dataset, retrieval, cache_dir, progress=progress)
    cache_file = (cache_dir or default_cache_dir()) / "llm-cache.sqlite3" if llm_cache else None
    started = time.perf_counter()
    try:
        results = answer_all(index.ws, index.kb, questions, config, index=index, rule=dataset_rule(dataset),
                             llm_cache=cache_file, progress=progress)
        settings = index.ws.settings
    finally:
        index.ws.close()
    return report(results, time.perf_counter() - started, settings.grounding, dataset=dataset.name,
                  dataset_sha256=dataset.content_hash, index=index.key, embedder=retrieval.embedder,
                  splitter=retrieval.splitter, chunk_size=retrieval.chunk_size,
                  chunk_overlap=retrieval.chunk_overlap, judge=config.judge, threshold=config.threshold,
                  llm=settings.llm, grounding=settings.grounding)
