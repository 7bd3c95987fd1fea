"""Query expansion with the LLM: multi-query paraphrases and HyDE passages (opt-in per request), and the question
translated into the other language of a mixed-language knowledge base (``translate``; on when answering)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from rag_service import prompts
from rag_service.models.llm import LLM
from rag_service.settings import Settings
from rag_service.text.tokenize import has_cjk

Expand = Literal["multi", "hyde", "translate"]
EXPANSIONS: tuple[Expand, ...] = ("multi", "hyde", "translate")
_LIST_MARK = re.compile(r"^\s*(?:[-*•]|\d+[.)、]|[（(]?\d+[)）])\s*")


class QueryExpander:
    def __init__(self, settings: Settings, llm: Callable[[], LLM]) -> None:
        self._settings = settings
        self._llm = llm

    def _ask(self, name: str, question: str, **values: str) -> str:
        lang = "zh" if has_cjk(question) else "en"
        template = prompts.load(f"{name}.{lang}", self._settings.prompts_dir)
        return self._llm().complete(template.messages(question=question, **values), max_tokens=160,
                                    temperature=0.0).text

    def paraphrases(self, question: str) -> list[str]:
        """Up to ``expand_n`` rewrites, list markers stripped, the question itself and repeats dropped."""
        n = self._settings.expand_n
        lines = [_LIST_MARK.sub("", line).strip() for line in self._ask("multi_query", question, n=str(n)).splitlines()]
        seen = {question.strip().lower()}
        out = []
        for line in lines:
            if line and line.lower() not in seen:
                seen.add(line.lower())
                out.append(line)
        return out[:n]

    def translation(self, question: str, target: str) -> str:
        """``question`` in the ``target`` language (``prompts/translate.<target>.txt``): its first line, or the question
        itself when the model wrote nothing."""
        template = prompts.load(f"translate.{target}", self._settings.prompts_dir)
        text = self._llm().complete(template.messages(question=question), max_tokens=96, temperature=0.0).text
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        return lines[0] if lines else question

    def hypothetical_passage(self, question: str) -> str:
        return self._ask("hyde", question).strip()
