"""Hybrid retrieval: BM25 and vector candidates under the same filter, optionally expanded by the LLM,
fused (RRF or weighted), optionally re-scored, resolved to ready chunks and to parent sections."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypedDict, Unpack

import numpy as np

from rag_service.errors import InvalidInputError
from rag_service.index.glossary import Expansion, GlossaryTokenizer
from rag_service.index.lexical import bm25_reader
from rag_service.models.llm import LLM, get_llm
from rag_service.records import Hit
from rag_service.retrieval.expansion import EXPANSIONS, Expand, QueryExpander
from rag_service.retrieval.feedback_boost import boosted_chunks
from rag_service.retrieval.fusion import defaults_for, reciprocal_rank_fusion, weighted_fusion
from rag_service.retrieval.rerank import E5Rescorer, Reranker, cross_encoder
from rag_service.settings import FUSIONS, Fusion
from rag_service.storage.catalog import KnowledgeBase
from rag_service.storage.filters import SearchFilter
from rag_service.storage.vectorstore import VectorFilter
from rag_service.text.language import LANGUAGES, Language, has_words, query_language
from rag_service.workspace import Workspace

Mode = Literal["bm25", "vector", "hybrid"]
MODES: tuple[Mode, ...] = ("bm25", "vector", "hybrid")
Ranked = dict[str, list[tuple[str, float]]]
# Filters allowing at most this many chunks are searched by scoring their stored vectors directly.
EXACT_SCOPE_MAX = 2000
# Weighted fusion: the feedback list's weight (the retrievers' weights sum to 1): a nudge, not a takeover.
FEEDBACK_WEIGHT = 0.2
# Weighted fusion: the lists of the question translated into a mixed KB's other language count this much of the
# question's own (expand="translate"). A question asked in the other language then finds its passage several times
# as often as without the translation; full weight found a few more of those but pushed down the answers to
# questions asked in the documents' language, and half weight lost cross-lingual hits (docs/evaluation.md
# "Questions in the other language").
TRANSLATION_WEIGHT = 0.75
TRANSLATED = "#t"  # suffix of the translated question's lists
# A language is searched in translation only when it holds at least this share of the KB's chunks: a few stray
# passages detected as the other language (as in RGB zh dev's news) must not cost every question a translation
# (docs/evaluation.md "Questions in the other language").
TRANSLATE_MIN_SHARE = 0.05
PSEUDO_FEEDBACK_MAX = 50  # results a pseudo-relevance feedback may average (Settings.pseudo_feedback's bound too)
# Pseudo-relevance feedback acts only when the results it would average are at least this close to each other
# (mean pairwise cosine under the KB's embedder). The e5 floor is the one that kept feedback on for news questions,
# whose first results are several reports of one event, and off for most FAQ questions, whose first results are
# neighbouring sections: it keeps most of the news gain and costs FAQ-like text little (docs/evaluation.md
# "Pseudo-relevance feedback"). For an embedder not listed feedback is off unless asked for (a search's
# pseudo_feedback or RAG_PSEUDO_FEEDBACK), and then it always acts.
PSEUDO_FEEDBACK_MIN_COHERENCE = {"e5": 0.92}


@dataclass(frozen=True, slots=True)
class FusionChoice:
    """How one search fused its lists, and the KB language that chose it when nothing else did."""

    method: Fusion
    bm25_weight: float
    language: Language | None
    pseudo_feedback: int  # first fused results the vector query moves towards (0: none)
    pseudo_feedback_weight: float
    pseudo_feedback_min_coherence: float  # ... when they are at least this close to each other

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "bm25_weight": self.bm25_weight, "kb_language": self.language,
                "pseudo_feedback": self.pseudo_feedback, "pseudo_feedback_weight": self.pseudo_feedback_weight,
                "pseudo_feedback_min_coherence": self.pseudo_feedback_min_coherence}


def fusion_choice(ws: Workspace, kb: KnowledgeBase, requested: Fusion | None = None,
                  pseudo_feedback: int | None = None) -> FusionChoice:
    """The fusion a search uses: the request's, else the KB's stored option, else ``RAG_FUSION``, else the default
    for the KB's language; the BM25 weight from ``RAG_BM25_WEIGHT``, else the language default; pseudo-relevance
    feedback as requested, else ``RAG_PSEUDO_FEEDBACK`` when set, else on (5) where the KB's embedder has a
    calibrated coherence floor and off elsewhere."""
    language = ws.catalog.kb_language(kb)
    defaults = defaults_for(language)
    settings = ws.settings
    method = requested or kb.options.get("fusion") or settings.fusion or defaults.fusion
    weight = settings.bm25_weight if settings.bm25_weight is not None else defaults.bm25_weight
    calibrated = PSEUDO_FEEDBACK_MIN_COHERENCE.get(kb.embedder)
    coherence = settings.pseudo_feedback_min_coherence
    coherence = coherence if coherence is not None else calibrated if calibrated is not None else -1.0
    if pseudo_feedback is not None:
        depth = pseudo_feedback
    elif "pseudo_feedback" in settings.model_fields_set or calibrated is not None:
        depth = settings.pseudo_feedback
    else:  # on by default only where the coherence floor is calibrated for the KB's embedder
        depth = 0
    return FusionChoice(method, weight, language, depth, settings.pseudo_feedback_weight, coherence)


@dataclass(slots=True)
class SearchResult:
    hits: list[Hit]
    queries: list[str] = field(default_factory=list)  # the query, then any paraphrases searched too
    hypothetical: str | None = None  # the HyDE passage, when one was written
    expansions: list[Expansion] = field(default_factory=list)  # glossary terms the query named, and what was added
    fusion: FusionChoice | None = None
    translation: str | None = None  # the question in the KB's other language, searched too (expand="translate")
    feedback_chunks: list[str] = field(default_factory=list)  # the results the vector query moved towards
    feedback_coherence: float | None = None  # how close they were to each other (the feedback acts from a floor)

    def to_json(self, *, explain: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"hits": [h.to_json(explain=explain) for h in self.hits]}
        if explain:
            out["queries"] = self.queries
            out["expansions"] = [e.to_json() for e in self.expansions]
            if self.fusion is not None:
                out["fusion"] = self.fusion.to_json()
            out["pseudo_feedback"] = self.feedback_chunks
            if self.feedback_coherence is not None:
                out["pseudo_feedback_coherence"] = round(self.feedback_coherence, 4)
            if self.hypothetical is not None:
                out["hypothetical"] = self.hypothetical
            if self.translation is not None:
                out["translation"] = self.translation
        return out


@dataclass(frozen=True, slots=True)
class Terms:
    """How one search tokenises (the KB's tokenizer, glossary included: it also expands the BM25 query), and the
    terms added to the vector query text when ``glossary_expand_vector`` is on."""

    tokenizer: GlossaryTokenizer
    vector: list[str]


class SearchArgs(TypedDict, total=False):
    """The options of one search as keyword arguments (``Retriever.run(query, k=3, mode="bm25")``)."""

    k: int | None
    mode: Mode
    fusion: Fusion | None
    filter: SearchFilter | None
    expand: Expand | None
    rerank: str | None
    pseudo_feedback: int | None
    explain: bool


@dataclass(frozen=True, slots=True)
class SearchOptions:
    """What one search asks for; unset options fall back to the KB's stored options, then to settings."""

    k: int | None = None
    mode: Mode = "hybrid"
    fusion: Fusion | None = None
    filter: SearchFilter | None = None
    expand: Expand | None = None
    rerank: str | None = None
    pseudo_feedback: int | None = None
    explain: bool = False

    def validated(self) -> SearchOptions:
        """Itself, or InvalidInputError naming the first option outside its allowed values."""
        if self.mode not in MODES:
            raise InvalidInputError(f"unknown search mode '{self.mode}' (choose from {', '.join(MODES)})")
        if self.fusion is not None and self.fusion not in FUSIONS:
            raise InvalidInputError(f"unknown fusion '{self.fusion}' (choose from {', '.join(FUSIONS)})")
        if self.expand is not None and self.expand not in EXPANSIONS:
            raise InvalidInputError(f"unknown expansion '{self.expand}' (choose from {', '.join(EXPANSIONS)})")
        if self.pseudo_feedback is not None and not 0 <= self.pseudo_feedback <= PSEUDO_FEEDBACK_MAX:
            raise InvalidInputError(f"pseudo_feedback must be between 0 and {PSEUDO_FEEDBACK_MAX} results")
        return self


@dataclass(frozen=True, slots=True)
class Scope:
    """A filter resolved once: the allowed chunk ids (BM25) and the same filter for the vector index."""

    chunk_ids: frozenset[str]
    vector_filter: VectorFilter


@dataclass(slots=True)
class SearchState:
    """What the stages of one search hand each other: the ranked lists so far, the fused order, the hits."""

    query: str
    options: SearchOptions
    k: int  # hits returned
    n: int  # candidates per list
    scope: Scope | None
    kb: KnowledgeBase  # as stored now: the current glossary and options
    tokenizer: GlossaryTokenizer
    terms: Terms
    expander: QueryExpander
    result: SearchResult
    ranked: Ranked = field(default_factory=dict)
    query_vector: np.ndarray | None = None
    fused: list[tuple[str, float]] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)


class Retriever:
    def __init__(self, ws: Workspace, kb: KnowledgeBase, llm: Callable[[], LLM] | None = None) -> None:
        """``llm``: where expansions (paraphrases, HyDE, translations) get their generator; default the
        process-wide model of the settings, fetched only when an expansion needs it."""
        self.ws = ws
        self.kb = kb
        self.embedder = ws.embedder_for(kb)
        self._llm = llm or (lambda: get_llm(ws.settings))

    def search(self, query: str, options: SearchOptions | None = None, **given: Unpack[SearchArgs]) -> list[Hit]:
        return self.run(query, options, **given).hits

    def run(self, query: str, options: SearchOptions | None = None, **given: Unpack[SearchArgs]) -> SearchResult:
        """Search the KB: ``options`` (or the same as keywords) through ``STAGES`` in order."""
        state = self.start(query, replace(options or SearchOptions(), **given))
        if state.scope is not None and not state.scope.chunk_ids:  # a filter nothing matches
            return SearchResult([], [state.query])
        for stage in STAGES:
            stage(self, state)
        state.result.hits = state.hits
        return state.result

    def start(self, query: str, options: SearchOptions) -> SearchState:
        """The state the stages begin from: options checked, the filter resolved, the KB's current glossary."""
        query = query.strip()
        if not query:
            raise InvalidInputError("the query is empty")
        opts = options.validated()
        settings = self.ws.settings
        k = opts.k or settings.search_k
        scope = self._scope(opts.filter or SearchFilter())
        result = SearchResult([], [query])
        current = self.ws.catalog.get_kb(self.kb.id)
        result.fusion = fusion_choice(self.ws, current, opts.fusion, opts.pseudo_feedback)
        tokenizer = self.ws.tokenizer_for(current)
        result.expansions = tokenizer.expand(query)
        terms = Terms(tokenizer, [t for e in result.expansions for t in e.added] if settings.glossary_expand_vector
                      else [])
        return SearchState(query, opts, k, max(settings.search_candidates, k), scope, current, tokenizer, terms,
                           QueryExpander(settings, self._llm), result)

    # -- the stages, in order (STAGES below) -----------------------------------------------------------
    def paraphrase(self, s: SearchState) -> None:
        """expand="multi": the LLM's paraphrases are searched beside the query."""
        if s.options.expand == "multi":
            s.result.queries += s.expander.paraphrases(s.query)

    def candidates(self, s: SearchState) -> None:
        """BM25 and vector lists of every query searched (a paraphrase's lists get its index as suffix)."""
        for i, q in enumerate(s.result.queries):
            found, vector = self._candidates(q, s.options.mode, s.n, s.scope, s.terms)
            s.query_vector = vector if i == 0 else s.query_vector
            for name, lst in found.items():
                s.ranked[name + (f"#{i}" if i else "")] = lst

    def translate(self, s: SearchState) -> None:
        """expand="translate": over a KB holding the other language, the question as the LLM translates it."""
        target = self._other_language(s.kb, s.query) if s.options.expand == "translate" else None
        if target is not None:
            s.result.translation = s.expander.translation(s.query, target)
            for name, lst in self._candidates(s.result.translation, s.options.mode, s.n, s.scope, s.terms)[0].items():
                s.ranked[name + TRANSLATED] = lst

    def feedback(self, s: SearchState) -> None:
        """RAG_FEEDBACK_BOOST: chunks cited by up-voted answers to close questions, as one more list."""
        if self.ws.settings.feedback_boost:
            boosted = boosted_chunks(self.ws, self.kb, self.embedder, self.embedder.embed_query(s.query),
                                     self.ws.settings.feedback_boost_similarity)
            allowed = [(c, score) for c, score in boosted if s.scope is None or c in s.scope.chunk_ids]
            if allowed:
                s.ranked["feedback"] = allowed

    def hyde(self, s: SearchState) -> None:
        """expand="hyde": a hypothetical answer passage, embedded and searched."""
        if s.options.expand == "hyde" and s.options.mode != "bm25":
            s.result.hypothetical = s.expander.hypothetical_passage(s.query)
            vector = self.embedder.embed_documents([s.result.hypothetical])[0]
            s.ranked["hyde"] = self._vector(vector, s.n, s.scope)

    def fuse(self, s: SearchState) -> None:
        assert s.result.fusion is not None
        s.fused = self._fuse(s.ranked, s.result.fusion)

    def pseudo_feedback(self, s: SearchState) -> None:
        """The vector query moved towards its first fused results when they agree, searched again, fused again."""
        fusion = s.result.fusion
        assert fusion is not None
        if fusion.pseudo_feedback and s.query_vector is not None:
            s.result.feedback_coherence, moved = self._pseudo_feedback(s.query_vector, s.fused, fusion)
            if moved is not None:
                s.result.feedback_chunks, vector = moved
                s.ranked["vector"] = self._vector(vector, s.n, s.scope)
                s.fused = self._fuse(s.ranked, fusion)

    def to_hits(self, s: SearchState) -> None:
        s.hits = self._hits(s.fused[: s.n * 2], s.ranked)

    def rerank(self, s: SearchState) -> None:
        reranker = self._reranker(s.options.rerank or self.kb.options.get("rerank") or self.ws.settings.rerank)
        if reranker is not None:
            s.hits = reranker.rerank(s.query, s.hits[: s.n])

    def parents(self, s: SearchState) -> None:
        """Children resolved to their parent sections, then cut to k."""
        s.hits = self._resolve_parents(s.hits)[: s.k]

    def explain(self, s: SearchState) -> None:
        """explain=True: the BM25 terms each hit matched."""
        if s.options.explain:
            tokens = s.tokenizer.query_tokens(" ".join(s.result.queries))
            with bm25_reader(self.ws, self.kb) as index:
                s.hits = [replace(h, terms=tuple(index.matched_terms(tokens, h.matched or h.chunk.id)))
                          for h in s.hits]

    def candidate_lists(self, query: str, n: int, mode: Mode = "hybrid") -> Ranked:
        """Each retriever's ranked ``(chunk id, score)`` list for ``query``, ``n`` deep, before fusion and
        without expansions: what a fusion study (rag_service/eval/fusion_study.py) fuses in other ways."""
        SearchOptions(mode=mode).validated()
        current = self.ws.catalog.get_kb(self.kb.id)
        return self._candidates(query.strip(), mode, n, None, Terms(self.ws.tokenizer_for(current), []))[0]

    def _other_language(self, kb: KnowledgeBase, query: str) -> Language | None:
        """The language holding most of the KB's chunks among those the query is not written in, when it holds at
        least TRANSLATE_MIN_SHARE of them (None: the KB is in the query's language): what a translation of the query
        is searched in."""
        asked = query_language(query)
        counts = self.ws.catalog.kb_languages(kb)
        total = sum(counts.values())
        others = [lang for lang in LANGUAGES
                  if lang != asked and counts.get(lang, 0) >= TRANSLATE_MIN_SHARE * total > 0]
        return max(others, key=lambda lang: counts[lang], default=None)

    # -- fusion -----------------------------------------------------------------------------------
    def _fuse(self, ranked: Ranked, choice: FusionChoice) -> list[tuple[str, float]]:
        if len(ranked) == 1:
            return next(iter(ranked.values()))
        if choice.method == "weighted":
            w = choice.bm25_weight

            def weight(name: str) -> float:
                own = w if name.startswith("bm25") else FEEDBACK_WEIGHT if name == "feedback" else 1 - w
                return own * TRANSLATION_WEIGHT if name.endswith(TRANSLATED) else own

            return weighted_fusion(ranked, {name: weight(name) for name in ranked})
        return reciprocal_rank_fusion({name: [i for i, _ in lst] for name, lst in ranked.items()},
                                      k=self.ws.settings.rrf_k)

    def _pseudo_feedback(self, query_vector: np.ndarray, fused: list[tuple[str, float]], choice: FusionChoice,
                         ) -> tuple[float | None, tuple[list[str], np.ndarray] | None]:
        """Rocchio feedback in the embedding space: the query moved towards the mean of the first fused results,
        for a second vector search. Several reports of one event then lift each other where the question's own
        wording reaches only some of them; neighbouring sections of a FAQ would pull the query off its one
        answer, so feedback acts only when the results are close to each other (docs/evaluation.md
        "Pseudo-relevance feedback"). Returns their coherence and, when it acts, the chunks and the vector."""
        # Only ready chunks: a document pending or deleted mid-way can have BM25 rows and no vectors (as in _hits).
        head = [chunk_id for chunk_id, _ in fused[: choice.pseudo_feedback * 2]]
        ready = self.ws.catalog.ready_chunks(self.kb.id, head)
        first = [chunk_id for chunk_id in head if chunk_id in ready][: choice.pseudo_feedback]
        stored = self.ws.vectors.vectors(self.kb.collection, first)
        used = [chunk_id for chunk_id in first if chunk_id in stored]
        if not used:
            return None, None
        vectors = np.stack([stored[c] for c in used])
        coherence = None
        if len(used) > 1:
            sims = vectors @ vectors.T
            coherence = float((sims.sum() - np.trace(sims)) / (len(used) * (len(used) - 1)))
            if coherence < choice.pseudo_feedback_min_coherence:
                return coherence, None
        moved = query_vector + choice.pseudo_feedback_weight * vectors.mean(axis=0)
        return coherence, (used, (moved / np.linalg.norm(moved)).astype(np.float32))

    # -- candidates -------------------------------------------------------------------------------
    def _scope(self, flt: SearchFilter) -> Scope | None:
        flt.check(self.ws.settings)
        if not flt:
            return None
        catalog = self.ws.catalog
        doc_ids = catalog.filtered_doc_ids(self.kb.id, flt.doc_ids, flt.source) if (
            flt.doc_ids is not None or flt.source is not None) else None
        chunk_ids = frozenset(catalog.filtered_chunk_ids(self.kb.id, doc_ids, flt.metadata))
        return Scope(chunk_ids, VectorFilter(None if doc_ids is None else tuple(doc_ids), flt.metadata))

    def _candidates(self, query: str, mode: Mode, n: int, scope: Scope | None,
                    terms: Terms) -> tuple[Ranked, np.ndarray | None]:
        """Each retriever's list, and the query vector when the vectors were searched."""
        ranked: Ranked = {}
        vector = None
        if mode in ("bm25", "hybrid"):
            tokens = terms.tokenizer.query_tokens(query)
            with bm25_reader(self.ws, self.kb) as index:
                allowed = index.allowed_rows(scope.chunk_ids) if scope is not None else None
                ranked["bm25"] = index.top(tokens, n, allowed)
        if mode in ("vector", "hybrid"):
            text = f"{query} ({'; '.join(terms.vector)})" if terms.vector else query
            vector = self.embedder.embed_query(text)
            ranked["vector"] = self._vector(vector, n, scope)
        return ranked, vector

    def _vector(self, vector: np.ndarray, n: int, scope: Scope | None) -> list[tuple[str, float]]:
        if scope is not None and len(scope.chunk_ids) <= EXACT_SCOPE_MAX:
            # A narrow filter (a document, a few files): scoring its stored vectors directly is exact and
            # beats Chroma's filtered HNSW walk (docs/benchmarks.md "Other single measurements").
            sims = self.ws.vectors.similarities(self.kb.collection, sorted(scope.chunk_ids), vector)
            return sorted(sims.items(), key=lambda item: (-item[1], item[0]))[:n]
        hits = self.ws.vectors.query(self.kb.collection, self.embedder.name, vector, n,
                                     scope.vector_filter if scope is not None else None)
        return [h for h in hits if scope is None or h[0] in scope.chunk_ids]

    def _hits(self, fused: list[tuple[str, float]], ranked: Ranked) -> list[Hit]:
        """Hits for the fused ids that are still searchable; each keeps every retriever's rank and score.
        Vector ids can name chunks of documents that are pending or were deleted mid-way, and a KB indexed before
        chunks without words were left out can hold some: they drop out."""
        chunks = self.ws.catalog.ready_chunks(self.kb.id, [i for i, _ in fused])
        seen = {name: {cid: (rank, s) for rank, (cid, s) in enumerate(lst, start=1)} for name, lst in ranked.items()}
        hits = []
        for chunk_id, score in fused:
            chunk = chunks.get(chunk_id)
            if chunk is None or not has_words(chunk.text):  # a KB indexed before such chunks were left out
                continue
            views = {name: pos[chunk_id] for name, pos in seen.items() if chunk_id in pos}
            hits.append(Hit(chunk=chunk, score=score, ranks={n: r for n, (r, _) in views.items()},
                            scores={n: s for n, (_, s) in views.items()}))
        return hits

    def _reranker(self, name: str) -> Reranker | None:
        if name in ("", "none"):
            return None
        if name == "e5":
            return E5Rescorer(self.embedder, self.ws.vectors, self.kb.collection)
        if not Path(name).expanduser().is_dir():
            raise InvalidInputError(f"unknown reranker '{name}': use 'none', 'e5' or a CrossEncoder model directory")
        return cross_encoder(str(Path(name).expanduser().resolve()))

    def _resolve_parents(self, hits: list[Hit]) -> list[Hit]:
        """Swap child chunks for their parent section (the context the generator needs); several
        children of one parent become one hit at the best child's rank."""
        parent_ids = [h.chunk.metadata["parent_id"] for h in hits if "parent_id" in h.chunk.metadata]
        if not parent_ids:
            return hits
        parents = self.ws.catalog.ready_chunks(self.kb.id, list(dict.fromkeys(parent_ids)))
        out: list[Hit] = []
        taken: set[str] = set()
        for hit in hits:
            parent = parents.get(hit.chunk.metadata.get("parent_id", ""))
            chunk = parent or hit.chunk
            if chunk.id in taken:
                continue
            taken.add(chunk.id)
            out.append(replace(hit, chunk=chunk, matched=hit.chunk.id) if parent else hit)
        return out


Stage = Callable[[Retriever, SearchState], None]
# One search, in order: each stage reads and extends the state the previous ones left (testable alone).
STAGES: tuple[Stage, ...] = (Retriever.paraphrase, Retriever.candidates, Retriever.translate, Retriever.feedback,
                             Retriever.hyde, Retriever.fuse, Retriever.pseudo_feedback, Retriever.to_hits,
                             Retriever.rerank, Retriever.parents, Retriever.explain)
