"""Grounded answers: retrieve → pack passages under a token budget → prompt the LLM → validate citations."""

from __future__ import annotations

import re
import time
from dataclasses import asdict

from rag_service import prompts
from rag_service.catalog import KnowledgeBase
from rag_service.citations import validate
from rag_service.llm import LLM, get_llm
from rag_service.records import Answer, Chunk, Hit, Usage
from rag_service.retrieval import Retriever
from rag_service.tokenize import has_cjk
from rag_service.workspace import Workspace


def language(text: str) -> str:
    return "zh" if has_cjk(text) else "en"


def _normalise(text: str) -> str:
    return re.sub(r"[\W_]+", "", text).lower()


class Answerer:
    def __init__(self, ws: Workspace, kb: KnowledgeBase, llm: LLM | None = None) -> None:
        self.ws = ws
        self.kb = kb
        self.retriever = Retriever(ws, kb)
        self._llm = llm

    @property
    def llm(self) -> LLM:
        if self._llm is None:
            self._llm = get_llm(self.ws.settings)
        return self._llm

    def _template(self, name: str) -> prompts.Template:
        return prompts.load(name, self.ws.settings.prompts_dir)

    def pack(self, hits: list[Hit], budget: int) -> tuple[list[Chunk], str]:
        """Best-ranked passages first, each whole or not at all, within ``budget`` tokens."""
        passage = self._template("passage")
        packed: list[Chunk] = []
        rendered: list[str] = []
        used = 0
        for hit in hits:
            text = passage.text(n=str(len(packed) + 1), source=hit.chunk.source, text=hit.chunk.text)
            cost = self.llm.count_tokens(text + "\n\n")
            if used + cost > budget:
                continue
            packed.append(hit.chunk)
            rendered.append(text)
            used += cost
        return packed, "\n\n".join(rendered)

    def ask(self, question: str, *, k: int | None = None) -> Answer:
        settings = self.ws.settings
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        hits = self.retriever.search(question, k=k)
        timings["retrieve_s"] = time.perf_counter() - t0
        lang = language(question)
        refusal = self._template(f"refusal.{lang}").text()
        trace = {"question": question, "language": lang,
                 "hits": [{**h.to_json(), "ranks": h.ranks, "scores": h.scores} for h in hits]}
        if not hits:
            trace["timings"] = timings
            return Answer(refusal, [], refused=True, usage=Usage(), grounded=False, trace=trace)

        template = self._template(f"answer.{lang}")
        t1 = time.perf_counter()
        overhead = sum(self.llm.count_tokens(m["content"]) for m in template.messages(passages="", question=question))
        budget = min(settings.context_max_tokens,
                     settings.llm_context_size - overhead - settings.llm_max_tokens - 32)
        packed, passages = self.pack(hits, budget)
        messages = template.messages(passages=passages, question=question)
        timings["pack_s"] = time.perf_counter() - t1

        t2 = time.perf_counter()
        completion = self.llm.complete(messages, max_tokens=settings.llm_max_tokens,
                                       temperature=settings.llm_temperature)
        timings["generate_s"] = time.perf_counter() - t2

        refused = _normalise(refusal) in _normalise(completion.text)
        if refused:
            text, citations, checks = refusal, [], []
        else:
            text, citations, checks = validate(completion.text, packed, question)
        trace.update(packed=[c.id for c in packed], messages=messages, raw_completion=completion.text,
                     citation_checks=[asdict(c) for c in checks], timings=timings)
        return Answer(answer=text, citations=citations, refused=refused,
                      usage=Usage(completion.prompt_tokens, completion.completion_tokens),
                      grounded=bool(citations), trace=trace)
