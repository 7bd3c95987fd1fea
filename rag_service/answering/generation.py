"""Grounded answers: (condense a follow-up) → retrieve → refuse early or pack passages under a token
budget → prompt the LLM → validate citations. ``ask`` returns an Answer; ``stream`` yields text
pieces as the model writes them and then the same Answer (whose text, with validated citation
markers, is authoritative)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypedDict, Unpack, get_args

from rag_service import prompts
from rag_service.answering.calibration import calibration_for
from rag_service.answering.citations import strip_markers
from rag_service.answering.passages import complete_lists, is_question_list, with_neighbours
from rag_service.answering.verification import (
    NO_FIT_WARNING,
    Calibration,
    Signals,
    Verification,
    Verifier,
    constraints_met,
)
from rag_service.models.embeddings import similarity
from rag_service.models.llm import LLM, Completion, get_llm
from rag_service.records import Answer, Chunk, Citation, Claim, Hit, Usage
from rag_service.retrieval.search import Retriever
from rag_service.settings import POLICIES, Policy, Settings
from rag_service.storage.catalog import KnowledgeBase
from rag_service.storage.filters import SearchFilter
from rag_service.text.language import Language, detect_language, query_language
from rag_service.text.tokenize import digits_beside_numerals
from rag_service.workspace import Workspace

# Best e5 cosine below which a question with no BM25 match is refused without calling the LLM: on the bundled
# samples, the floor between off-topic questions that share no keyword with the documents and answerable ones. The
# one answerable question below it shares keywords with its passage, hence the BM25 condition (docs/evaluation.md
# "Calibrated constants"). Other embedders have no default because their scores live in other bands.
REFUSAL_MIN_SIMILARITY = {"e5": 0.82}
# How far below the best vector similarity a hybrid hit may score and still be packed. e5 cosines of
# passages that answer a question sit within a few hundredths of each other; passages further below were
# topical neighbours that cost prompt tokens and pulled the small model off the answer (docs/evaluation.md
# "Calibrated constants").
CONTEXT_VECTOR_MARGIN = {"e5": 0.03}
# Passages offered beside a refusal, closest first.
RELATED_MAX = 3


def _normalise(text: str) -> str:
    return re.sub(r"[\W_]+", "", text).lower()


class AskArgs(TypedDict, total=False):
    """The options of one question as keyword arguments (``Answerer.ask(question, k=3)``)."""

    k: int | None
    session_id: str | None
    filter: SearchFilter | None


@dataclass(frozen=True, slots=True)
class AskOptions:
    """What one question asks for: hits to consider (default ``search_k``), the chat session, a search filter."""

    k: int | None = None
    session_id: str | None = None
    filter: SearchFilter | None = None


@dataclass
class _Turn:
    """Everything the steps of one question hand each other; ``early`` is set when no LLM call is needed."""

    session_id: str
    question: str
    standalone: str
    refusal: str
    language: Language  # the question's: answers and prompts follow it
    options: AskOptions = field(default_factory=AskOptions)
    started: float = 0.0  # when the gate was asked: the time to first token counts from here
    packed: list[Chunk] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)
    early: str | None = None
    hits: list[Hit] = field(default_factory=list)
    trace: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


class Answerer:
    def __init__(self, ws: Workspace, kb: KnowledgeBase, llm: LLM | None = None,
                 calibration: Calibration | None = None) -> None:
        self.ws = ws
        self.kb = kb
        self.retriever = Retriever(ws, kb, lambda: self.llm)  # one generator for translation and answer
        self._llm = llm
        self._calibration = calibration  # None: the fit for the workspace's settings (calibration_for)

    @property
    def llm(self) -> LLM:
        if self._llm is None:
            self._llm = get_llm(self.ws.settings)
        return self._llm

    def _template(self, name: str) -> prompts.Template:
        return prompts.load(name, self.ws.settings.prompts_dir)

    # -- public API -------------------------------------------------------------------------------
    def ask(self, question: str, options: AskOptions | None = None, **given: Unpack[AskArgs]) -> Answer:
        answer = None
        for item in self.stream(question, options, **given):
            if isinstance(item, Answer):
                answer = item
        assert answer is not None
        return answer

    def stream(self, question: str, options: AskOptions | None = None,
               **given: Unpack[AskArgs]) -> Generator[str | Answer, None, None]:
        """Text pieces as the model writes them (a draft), then the Answer: its text is what verification
        let through under the grounding policy, and is the one to show and keep. The flow, in order: the
        ``PREPARE`` steps (any may refuse before the model), the gate, the draft, the checks, the delivery."""
        turn = self._open(question, replace(options or AskOptions(), **given))
        for step in PREPARE:
            step(self, turn)
            if turn.early is not None:
                yield turn.early
                yield self._finish(turn, turn.early, Usage(), refused=True)
                return
        signals = self.ask_gate(turn)
        completion = yield from self.draft(turn)
        verification = self.check(turn, completion, signals)
        yield self.deliver(turn, verification, Usage(completion.prompt_tokens, completion.completion_tokens))

    # -- after the prompt: gate, draft, checks, delivery ------------------------------------------
    def ask_gate(self, turn: _Turn) -> Signals:
        """The gate's P(yes) before the draft (policy 'off': no gate). The time to first token counts it."""
        turn.started = time.perf_counter()
        if self.ws.settings.grounding == "off":
            return Signals()
        signals = Signals(gate=self.gate(turn))
        turn.timings["gate_s"] = time.perf_counter() - turn.started
        return signals

    def draft(self, turn: _Turn) -> Generator[str, None, Completion]:
        """The model's answer, piece by piece as it streams; returns the whole completion."""
        settings = self.ws.settings
        completion: Completion | None = None
        for item in self.llm.stream(turn.messages, max_tokens=settings.llm_max_tokens,
                                    temperature=settings.llm_temperature, watch=(turn.refusal,)):
            if isinstance(item, Completion):
                completion = item
            else:
                turn.timings.setdefault("first_token_s", time.perf_counter() - turn.started)
                yield item
        assert completion is not None
        turn.timings["generate_s"] = time.perf_counter() - turn.started
        turn.trace["raw_completion"] = completion.text
        return completion

    def check(self, turn: _Turn, completion: Completion, signals: Signals) -> Verification:
        """The draft (lists completed from their passages) through the claim rules, the evidence checks and
        the trust model of the grounding policy."""
        policy = self.ws.settings.grounding
        t1 = time.perf_counter()
        signals = replace(signals, refusal_start=completion.watched)
        draft = complete_lists(completion.text, turn.packed)
        if draft != completion.text:
            turn.trace["list_completed"] = draft
        verification = self.verifier(policy, turn).verify(
            turn.standalone, draft, turn.packed,
            model_refused=self._model_refused(turn, completion.text), signals=signals)
        turn.timings["verify_s"] = time.perf_counter() - t1
        turn.trace["citation_checks"] = [asdict(c) for c in verification.checks]
        turn.trace["verification"] = verification.to_json()
        if not verification.calibrated and policy != "off":
            turn.trace["warnings"] = [NO_FIT_WARNING]
        turn.trace["policy_views"] = {p: _view(verification.apply(p)) for p in POLICIES}
        return verification

    def deliver(self, turn: _Turn, verification: Verification, usage: Usage) -> Answer:
        """What the policy lets through, or the refusal with the passages likely to answer first."""
        text, citations, refused, claims = verification.apply(self.ws.settings.grounding)
        if refused:
            turn.hits = _answering_first(turn.hits, turn.packed, verification)
            return self._finish(turn, turn.refusal, usage, refused=True)
        return self._finish(turn, text, usage, refused=False, citations=citations, claims=claims)

    def gate(self, turn: _Turn) -> float:
        """P(yes) to "do the passages above state the answer?", asked before the answer after the same
        prompt: llama.cpp keeps the prompt's KV cache for both."""
        gate = self._template(f"gate.{turn.language}").messages()
        return self.llm.yes_probability([*turn.messages, *gate])

    def verifier(self, policy: Policy, turn: _Turn | None = None) -> Verifier:
        """The checks for ``policy``: none beyond citation markers with 'off'; otherwise the claim rules and
        the trust model fitted for this generator (``calibration.calibration_for``; threshold overridable)."""
        settings = self.ws.settings
        calibration = self._calibration or calibration_for(settings)
        if turn is None or policy == "off":
            return Verifier(calibration, check=policy != "off", trust_min=settings.trust_min)
        lang = turn.language
        gate, check = self._template(f"gate_passage.{lang}"), self._template(f"check_evidence.{lang}")

        def passage_gate(n: int) -> float:  # asked after the answer prompt: its KV cache is reused
            return self.llm.yes_probability([*turn.messages, *gate.messages(n=str(n))], after_answer=True)

        def evidence_check(sentence: str, n: int) -> float:
            # The sentence with where it stands (file name, the passage's first line: a title, a heading or
            # the FAQ question it answers), so "the allowance is 45 euros" can answer a question that names
            # the company the handbook is about; nothing else of the passage.
            chunk = turn.packed[n - 1] if 1 <= n <= len(turn.packed) else None
            opening = chunk.text.strip().splitlines()[0].strip()[:160] if chunk and chunk.text.strip() else ""
            return self.llm.yes_probability(check.messages(
                sentence=sentence, question=turn.standalone,
                source=chunk.source.rsplit("/", 1)[-1] if chunk else "",
                opening="" if not opening or opening in sentence or sentence in opening else opening),
                after_answer=True)

        embedder = self.retriever.embedder
        return Verifier(calibration, trust_min=settings.trust_min, passage_gate=passage_gate,
                        evidence_check=evidence_check, align=similarity(embedder) if embedder.multilingual else None)

    def _model_refused(self, turn: _Turn, completion: str) -> bool:
        """The model's refusal sentence, or nothing but markers and punctuation ('[1] [2]。')."""
        text = _normalise(strip_markers(completion))
        return _normalise(turn.refusal) in _normalise(completion) or not text

    # -- before the prompt: the PREPARE steps --------------------------------------------------------
    def _open(self, question: str, options: AskOptions) -> _Turn:
        sid = self.ws.sessions.open(self.kb.id, options.session_id)
        lang = query_language(question)
        return _Turn(sid, question, question, self._template(f"refusal.{lang}").text(), lang, options)

    def condense(self, turn: _Turn) -> None:
        """A follow-up rewritten as a standalone question from the session's history."""
        lang = turn.language
        t0 = time.perf_counter()
        history = self._history(turn.session_id)
        if history:
            condensed = self.llm.complete(
                self._template(f"condense.{lang}").messages(history=history, question=turn.question),
                max_tokens=96, temperature=0.0).text.strip()
            turn.standalone = condensed.splitlines()[0].strip() if condensed else turn.question
            turn.timings["condense_s"] = time.perf_counter() - t0
        turn.trace.update(question=turn.question, standalone_question=turn.standalone, language=lang,
                          session_id=turn.session_id)

    def retrieve(self, turn: _Turn) -> None:
        """The hits for the standalone question (and its translation over a KB in the other language); too weak
        a best hit refuses here."""
        t1 = time.perf_counter()
        found = self.retriever.run(turn.standalone, k=turn.options.k, filter=turn.options.filter,
                                   expand="translate" if self.ws.settings.translate_query else None)
        hits = found.hits
        if found.translation is not None:
            turn.trace["translation"] = found.translation
        turn.timings["retrieve_s"] = time.perf_counter() - t1
        turn.hits = hits
        turn.trace["hits"] = [{**h.to_json(), "ranks": h.ranks, "scores": h.scores} for h in hits]
        if self._too_weak(hits):
            turn.early = turn.refusal
            turn.trace["refused_before_llm"] = True

    def prompt(self, turn: _Turn) -> None:
        """The passages that fit the budget, packed into the answer prompt; none left refuses here."""
        settings = self.ws.settings
        t2 = time.perf_counter()
        template = self._template(f"answer.{turn.language}")
        overhead = sum(self.llm.count_tokens(m["content"])
                       for m in template.messages(passages="", question=turn.standalone))
        budget = min(settings.context_max_tokens,
                     settings.llm_context_size - overhead - settings.llm_max_tokens - 32)
        turn.packed, passages = self.pack(self.relevant(on_question(turn.standalone, turn.hits), turn.standalone),
                                          budget, turn.standalone)
        turn.timings["pack_s"] = time.perf_counter() - t2
        turn.trace["packed"] = [c.id for c in turn.packed]
        if not turn.packed:  # every hit was a list of questions (a table of contents): nothing states anything
            turn.early = turn.refusal
            turn.trace["refused_before_llm"] = True
            return
        turn.messages = template.messages(passages=passages, question=turn.standalone)
        turn.trace["messages"] = turn.messages

    def _history(self, session_id: str) -> str:
        """The latest turns that fit ``history_max_tokens``, oldest first, as 'role: text' lines."""
        budget = self.ws.settings.history_max_tokens
        lines: list[str] = []
        for message in reversed(self.ws.sessions.history(session_id)):
            line = f"{message['role']}: {message['content']}"
            cost = self.llm.count_tokens(line)
            if cost > budget:
                break
            budget -= cost
            lines.append(line)
        return "\n".join(reversed(lines))

    def _too_weak(self, hits: list[Hit]) -> bool:
        """No hit at all, or no keyword match and vector evidence below the calibrated floor for this
        KB's embedder. A BM25 match keeps the question (the early refusal has no second chance, the
        prompt's refusal instruction does)."""
        if not hits:
            return True
        floor = self.ws.settings.refusal_min_similarity
        if floor is None:
            floor = REFUSAL_MIN_SIMILARITY.get(self.kb.embedder)
        if floor is None or not any(_vector_score(h) is not None for h in hits):
            return False
        best = max(_vector_score(h) or -1.0 for h in hits)
        keyword_match = any(name.startswith("bm25") for h in hits for name in h.ranks)
        return best < floor and not keyword_match

    def relevant(self, hits: list[Hit], question: str = "") -> list[Hit]:
        """Hits worth prompt tokens. Every packed passage costs prefill time on a small CPU, and weak
        ones invite the model to wander. With fused (hybrid) results: the best hit, then those whose
        reciprocal-rank score is within ``context_min_relative_score`` of the best one and whose vector
        similarity is within ``context_vector_margin`` of the best. The gate reads each hit's ranks, not its
        fused score, so it keeps its calibrated meaning whichever fusion ordered the hits (a chunk only one
        retriever ranked falls below a chunk both ranked). Single-retriever results are left alone.
        Each searched form of the question (the question, its translation, paraphrases) is judged in its own lists:
        a hit passes when it passes in one of them. A passage in the KB's other language ranks high in the
        translation's lists and nowhere in the question's; judged form by form, the passage that answers is kept
        for more of our FAQ set's questions (docs/evaluation.md "Questions in the other language").
        The best vector hit written in another language than ``question`` is always kept: BM25 cannot match
        it, so its rank score says nothing ("How many books can I borrow?" over a Chinese rule whose English
        neighbour says "booked")."""
        if not hits or len(hits[0].ranks) < 2:
            return hits
        settings = self.ws.settings
        margin = settings.context_vector_margin
        if margin is None:
            margin = CONTEXT_VECTOR_MARGIN.get(self.kb.embedder)
        forms = {_form(name) for h in hits for name in h.ranks}

        def rank_score(h: Hit, form: str) -> float:
            return sum(1.0 / (settings.rrf_k + r) for name, r in h.ranks.items() if _form(name) == form)

        def vector(h: Hit, form: str) -> float:
            return max((s for name, s in h.scores.items() if name.startswith("vector") and _form(name) == form),
                       default=-1.0)

        best = {f: (max(rank_score(h, f) for h in hits), max(vector(h, f) for h in hits)) for f in forms}

        def passes(h: Hit, form: str) -> bool:
            top_rank, top_vector = best[form]
            return (rank_score(h, form) >= settings.context_min_relative_score * top_rank
                    and (margin is None or vector(h, form) >= top_vector - margin))

        best_vector = max((_vector_score(h) or -1.0 for h in hits), default=-1.0)
        foreign = next((h for h in hits if _vector_score(h) == best_vector), None) if question else None
        if foreign is not None and detect_language(foreign.chunk.text) == query_language(question):
            foreign = None
        return [hits[0]] + [h for h in hits[1:] if h is foreign or any(passes(h, f) for f in forms)]

    def pack(self, hits: list[Hit], budget: int, question: str = "") -> tuple[list[Chunk], str]:
        """Best-ranked passages first, each whole or not at all, within ``budget`` tokens. A list of
        questions (a table of contents, a question line on its own) is no evidence and is left out; a passage whose
        list starts or continues in a neighbouring chunk gets those lines, a section its heading path
        (``passages.with_neighbours``); of two near-duplicates the longer one stays, where the first was. For a
        question not asked in Chinese, a Chinese passage shows its quantities in digits too (两千六百八十（2680）元)."""
        passage = self._template("passage")
        chosen: list[Chunk] = []
        for hit in hits:
            if is_question_list(hit.chunk.text, hit.chunk.metadata.get("headings") or ()):
                continue
            chunk = self._with_neighbours(hit.chunk)
            same = next((i for i, c in enumerate(chosen) if _near_duplicate(chunk.text, c.text)), None)
            if same is None:
                chosen.append(chunk)
            elif len(chunk.text) > len(chosen[same].text):  # the fuller one ("**9. …？" and its answer) stays
                chosen[same] = chunk
        packed: list[Chunk] = []
        rendered: list[str] = []
        used = 0
        for chunk in chosen:
            # The file name is label enough for the model (citations carry the full source): a long
            # path costs a dozen prompt tokens per passage.
            name = chunk.source.rsplit("/", 1)[-1]
            source = name + (f", page {chunk.metadata['page']}" if "page" in chunk.metadata else "")
            body = chunk.text
            if question and query_language(question) != "zh" and detect_language(body) == "zh":
                body = digits_beside_numerals(body)
            text = passage.text(n=str(len(packed) + 1), source=source, text=body)
            cost = self.llm.count_tokens(text + "\n\n")
            if used + cost > budget:
                continue
            packed.append(chunk)
            rendered.append(text)
            used += cost
        return packed, "\n\n".join(rendered)

    def _with_neighbours(self, chunk: Chunk) -> Chunk:
        if chunk.metadata.get("role"):  # parent-child sections are whole already
            return chunk
        near = self.ws.catalog.chunks_at(self.kb.id, chunk.doc_id, (chunk.position - 1, chunk.position + 1))
        return with_neighbours(chunk, near.get(chunk.position - 1), near.get(chunk.position + 1))

    def _finish(self, turn: _Turn, text: str, usage: Usage, *, refused: bool,
                citations: list[Citation] | None = None, claims: list[Claim] | None = None) -> Answer:
        turn.trace["timings"] = {k: round(v, 4) for k, v in turn.timings.items()}
        answer = Answer(answer=text, citations=citations or [], refused=refused, usage=usage,
                        grounded=bool(citations), trace=turn.trace, session_id=turn.session_id,
                        related=turn.hits[:RELATED_MAX] if refused else [], claims=claims or [],
                        policy=self.ws.settings.grounding, packed=turn.packed)
        # The answer is kept with its evidence (citations, claims, refusal, related passages): a reopened session
        # shows what this one showed.
        sessions = self.ws.sessions
        sessions.append(turn.session_id, "user", turn.question)
        sessions.append(turn.session_id, "assistant", text, answer=answer.to_json())
        return answer


def warm_up(llm: LLM, settings: Settings) -> None:
    """Evaluate the fixed beginning of each language's answer prompt (system prompt and examples) before the first
    question, which would otherwise pay for it (the gate and the answer share it; ``RAG_LLM_PROMPT_CACHE_MB`` keeps
    its state for the questions after)."""
    for language in get_args(Language):
        llm.prefill(prompts.load(f"answer.{language}", settings.prompts_dir).messages(passages="", question=""))


def on_question(question: str, hits: list[Hit]) -> list[Hit]:
    """The hits that name what the question names (its numbers, acronyms and, in a Chinese question, its Latin-script
    names: ``verification.constraints_met``, in the text or the heading path), when some do: a passage about another
    year, model or organisation can only lead the model to a wrong answer that the checks then withdraw ("Fernhill
    Works 有哪几种会员方案？" beside a gym's membership cards)."""
    named = [h for h in hits if constraints_met(question, h.chunk.index_text)]
    return named or hits


def _answering_first(hits: list[Hit], packed: list[Chunk], verification: Verification) -> list[Hit]:
    """The hits with those the checks found likely to answer first (a refusal shows the first RELATED_MAX): the
    passages of the evidence units the model judged more likely than not to answer, best first, then the rest in
    rank order. When a draft is withdrawn although it was right, its passage is there; a wrong draft's passage
    (judged not to answer) is not promoted."""
    order = [packed[u.passage - 1].id for u in sorted(verification.units, key=lambda u: -u.p)
             if u.p >= 0.5 and 1 <= u.passage <= len(packed)]
    rank = {chunk_id: i for i, chunk_id in enumerate(dict.fromkeys(order))}
    return sorted(hits, key=lambda h: rank.get(h.chunk.id, len(rank)))


def _form(list_name: str) -> str:
    """Which searched form of the question a ranked list belongs to: '' for the question itself ('bm25', 'vector',
    'feedback'), else the suffix ('vector#t' for its translation, 'bm25#1' for the first paraphrase)."""
    return list_name.partition("#")[2]


def _vector_score(hit: Hit) -> float | None:
    """The hit's best vector similarity, to the question or to its translation (None: no vector list found it)."""
    return max((s for name, s in hit.scores.items() if name.startswith("vector")), default=None)


def _view(applied: tuple[str, list[Citation], bool, list[Claim]]) -> dict[str, Any]:
    """What one policy would deliver, for the trace (the evaluation scores every policy from one run)."""
    text, citations, refused, claims = applied
    return {"answer": text, "refused": refused, "citations": [c.n for c in citations],
            "claims": [c.to_json() for c in claims]}


def _near_duplicate(a: str, b: str) -> bool:
    """Overlapping chunks (splitter overlap, the same paragraph in two files): most of the shorter
    one's character trigrams appear in the other."""
    def grams(t: str) -> set[str]:
        t = re.sub(r"\s+", " ", t)
        return {t[i:i + 3] for i in range(max(len(t) - 2, 1))}

    ga, gb = grams(a), grams(b)
    return len(ga & gb) / max(min(len(ga), len(gb)), 1) > 0.8


Step = Callable[[Answerer, _Turn], None]
# Before the model writes anything, in order; a step that sets ``turn.early`` ends the question with that refusal.
PREPARE: tuple[Step, ...] = (Answerer.condense, Answerer.retrieve, Answerer.prompt)
