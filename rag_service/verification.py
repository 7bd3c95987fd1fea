"""Claim-level verification of a generated answer: which sentences the packed passages actually state.

Citation validation (``citations.validate``) checks that a sentence shares its words with the passage it
cites. Shared words are not support: a table of contents repeats the question, "X has some drawbacks"
says nothing the question did not, and a name found in a passage can play another role there. So every
sentence that passes the word check is also

1. checked for content of its own: words beyond the question's, other than vague ones ("some", "一些");
2. put to the model as a yes/no question about the passage it cites ("does passage [2] state that ...?"),
   right after the answer, so llama.cpp reuses the KV cache of the prompt and the answer and the check
   costs only its own few dozen tokens. P(yes) is read from the next-token logits and compared with a
   threshold calibrated per model and language (``ENTAILMENT_MIN``).

The policy (``Settings.grounding``) then decides what reaches the user: ``strict`` removes unsupported
sentences and turns an answer with none left into a refusal; ``lenient`` keeps them, marked; ``off``
skips the checks (citation markers are still validated).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from rag_service import prompts
from rag_service.citations import SentenceCheck, validate
from rag_service.llm import LLM
from rag_service.records import Chunk, Citation, Claim
from rag_service.tokenize import STOPWORDS, arabic_numerals, english_numerals, evidence_tokens, has_cjk, tokenize

Policy = Literal["strict", "lenient", "off"]
POLICIES: tuple[Policy, ...] = ("strict", "lenient", "off")

# Words that add no information to an answer: "X has some drawbacks" restates "What drawbacks does X
# have?". Compared after stemming (the BM25 tokenizer's rules), so plural and verb forms are covered.
VAGUE = frozenset(tokenize(
    "some several various many certain different number numbers kind kinds type types thing things aspect "
    "aspects way ways following include includes including main mainly factor factors reason reasons "
    "issue issues problem problems case cases situation situations detail details information related "
    "relevant general generally specific usually often important however therefore also provide provides "
    "mention mentions mentioned state states stated document documents passage passages answer answers "
    "一些 一定 很多 许多 多种 各种 某些 相关 方面 以下 如下 包括 主要 问题 情况 原因 方法 方式 因素 需要 进行 "
    "存在 具有 一般 通常 重要 不同 具体 提到 提供 资料 文档 答案 这些 那些 其中 等等 内容 有关"
)) | frozenset({"一些", "一定", "某些"})
_NEGATION = re.compile(r"\b(?:not|no|never|cannot|can't|won't|isn't|aren't|doesn't|don't)\b|不|没有|无|未|禁止")
_LEAD_IN = re.compile(r"[:：]\s*$")


@dataclass(slots=True)
class Verification:
    """Everything the checks found; ``apply`` turns it into what a policy delivers."""

    claims: list[Claim]
    rendered: list[str]  # each sentence as validate() rendered it, markers corrected
    citations: dict[int, Citation]
    model_refused: bool = False
    checks: list[SentenceCheck] = field(default_factory=list)

    def apply(self, policy: Policy) -> tuple[str, list[Citation], bool, list[Claim]]:
        """(answer text, citations, refused, claims as delivered) under ``policy``. With ``off`` the
        validated text is delivered as written; otherwise unsupported sentences are removed (``strict``)
        or kept (``lenient``), and an answer with no supported sentence is refused."""
        if self.model_refused:
            return "", [], True, []
        keep = [self._kept(i, policy) for i in range(len(self.claims))]
        if policy != "off" and not any(k and c.supported and not c.lead_in for k, c in zip(keep, self.claims,
                                                                                           strict=True)):
            return "", [], True, []
        parts = [r for k, r in zip(keep, self.rendered, strict=True) if k]
        text = "".join(parts).strip()
        numbers = {n for k, c in zip(keep, self.claims, strict=True) if k for n in c.citations}
        if policy == "strict":  # only passages that support a delivered sentence are cited
            numbers = {n for k, c in zip(keep, self.claims, strict=True) if k and c.supported for n in c.citations}
        citations = [self.citations[n] for n in sorted(numbers) if n in self.citations]
        if not re.search(r"\w", re.sub(r"\[\d+\]", "", text)):
            return "", [], True, []
        return text, citations, False, [c for k, c in zip(keep, self.claims, strict=True) if k]

    def _kept(self, i: int, policy: Policy) -> bool:
        claim = self.claims[i]
        if policy != "strict":
            return True
        if claim.lead_in:  # kept when an item it introduces is kept
            following = self.claims[i + 1:]
            items = []
            for c in following:
                if c.lead_in:
                    break
                items.append(c)
            return any(c.supported for c in items)
        return claim.supported

    def to_json(self) -> dict[str, Any]:
        return {"model_refused": self.model_refused, "claims": [asdict(c) for c in self.claims],
                "rendered": self.rendered}


def content_words(sentence: str, question: str) -> set[str]:
    """What a sentence says beyond the question: its words (BM25 tokens, numerals as digits) minus the
    question's and vague ones. A negation the question lacks counts ("No, it is not allowed")."""
    def words_of(text: str) -> set[str]:  # vague words go before numerals are read ('一些' is not '1些')
        return {english_numerals(arabic_numerals(w)) for w in tokenize(text) if w not in VAGUE}

    words = words_of(sentence) - words_of(question) - STOPWORDS
    if _NEGATION.search(sentence) and not _NEGATION.search(question):
        words.add("¬")
    return words


# P(yes) from which the model's check counts a sentence as stated by its passage, per model file and
# language. Calibrated on the evaluation sets (eval/README.md, "Calibrating the claim check"); a model
# without a calibration uses DEFAULT_ENTAILMENT_MIN.
ENTAILMENT_MIN: dict[str, dict[str, float]] = {}
DEFAULT_ENTAILMENT_MIN = 0.5


def entailment_threshold(model: str, lang: str, override: float | None = None) -> float:
    if override is not None:
        return override
    return ENTAILMENT_MIN.get(model, {}).get(lang, DEFAULT_ENTAILMENT_MIN)


_INTERROGATIVE = re.compile(r"为什么|怎么样|怎么|如何|什么|哪些|哪个|哪里|哪儿|哪|谁|多少|几|是否|吗|呢|"
                            r"\b(?:what|which|who|whom|whose|when|where|why|how|many|much|does|did|is|are)\b",
                            re.IGNORECASE)
_PASSAGE_SENTENCES = re.compile(r"(?<=[。！？!?；;])|(?<=\.)\s+|\n+")


def anchoring(question: str, claim: str, passage: str) -> float:
    """Whether the passage says the claim *about what was asked*: over the passage sentences that hold some
    of the claim's new units (words beyond the question; CJK character pairs), the best product of (share
    of those new units in the sentence) x (share of the question's own units, question words removed, in
    the same sentence). A number or a name from a neighbouring story sits in a sentence that speaks of
    something else and scores low."""
    asked = evidence_tokens(_INTERROGATIVE.sub(" ", question))
    new = evidence_tokens(claim) - evidence_tokens(question)
    if not new or not asked:
        return 0.0
    sentences = [s for s in _PASSAGE_SENTENCES.split(passage) if s and s.strip()]
    units = [evidence_tokens(s) for s in sentences]
    best = 0.0
    for own in units:
        if not own & new:
            continue
        best = max(best, len(own & new) / len(new) * len(own & asked) / len(asked))
    return best


class Verifier:
    """Runs the checks for one answer. ``llm`` is None for policy ``off`` (no checks beyond markers)."""

    def __init__(self, llm: LLM | None, *, threshold: float | None = None, model: str = "",
                 prompts_dir: Any = None) -> None:
        self.llm = llm
        self.threshold = threshold
        self.model = model
        self.prompts_dir = prompts_dir

    def verify(self, question: str, completion: str, packed: Sequence[Chunk], messages: list[dict[str, str]],
               *, model_refused: bool) -> Verification:
        _, _, checks = validate(completion, list(packed), question)
        rendered = [c.rendered for c in checks]
        citations = {n: Citation(n=n, chunk=packed[n - 1]) for n in range(1, len(packed) + 1)}
        if model_refused:
            return Verification([], rendered, citations, model_refused=True, checks=checks)
        lang = "zh" if has_cjk(question) else "en"
        claims: list[Claim] = []
        for i, check in enumerate(checks):
            body = check.sentence
            lead_in = bool(_LEAD_IN.search(body)) and i + 1 < len(checks)
            if lead_in:
                claims.append(Claim(body, check.cited, False, lead_in=True, how=check.how))
                continue
            claim_text = _with_lead_in(checks, i)
            if not content_words(body, question):
                claims.append(Claim(body, check.cited, False, "no-content", how=check.how))
                continue
            if not check.cited:
                claims.append(Claim(body, [], False, "uncited", how=check.how))
                continue
            anchored = max(anchoring(question, claim_text, packed[n - 1].text) for n in check.cited)
            if self.llm is None:
                claims.append(Claim(body, check.cited, True, anchoring=anchored, how=check.how))
                continue
            best = max(self.entailment(lang, question, claim_text, n, completion, messages) for n in check.cited)
            supported = best >= entailment_threshold(self.model, lang, self.threshold)
            claims.append(Claim(body, check.cited, supported, None if supported else "not-stated", best,
                                anchoring=anchored, how=check.how))
        return Verification(claims, rendered, citations, checks=checks)

    def entailment(self, lang: str, question: str, claim: str, n: int, completion: str,
                   messages: list[dict[str, str]]) -> float:
        """P(yes) that passage [n] states ``claim`` as the answer to ``question``, asked right after the
        answer so the prompt's KV cache is reused."""
        assert self.llm is not None
        template = prompts.load(f"verify.{lang}", self.prompts_dir)
        check = template.messages(n=str(n), claim=claim, question=question)
        return self.llm.yes_probability([*messages, {"role": "assistant", "content": completion}, *check])


def _with_lead_in(checks: Sequence[SentenceCheck], i: int) -> str:
    """A list item with the line that introduces it ('The kit contains: a charger'), so the check sees
    the whole claim."""
    for j in range(i - 1, -1, -1):
        if _LEAD_IN.search(checks[j].sentence):
            return f"{checks[j].sentence} {checks[i].sentence}"
        if not re.match(r"\s*(?:[-*•·]|\d+[.)、]|[①-⑳])", checks[i].sentence):
            break
    return checks[i].sentence
