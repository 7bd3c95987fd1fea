"""Claim-level verification of a generated answer: which sentences the packed passages actually state.

Citation validation (``citations.validate``) checks that a sentence shares its words with the passage it
cites. Shared words are not support: a table of contents repeats the question, "X has some drawbacks"
says nothing the question did not, and a name found in a passage can play another role there. So each
sentence is a claim that must also pass rules (``Verifier._claim``):

- content of its own: words beyond the question's, other than vague ones ("some", "一些");
- a number when a number, an amount or a date is asked;
- the question's numbers and Latin-script names present in the passage it cites (2021 does not answer 2022);

and the answer as a whole must be trusted (``TrustModel``): a logistic score of what the model says when asked
yes/no (about all passages before answering, about each cited passage, and about the single passage sentence
that states the claim best, in a prompt of its own with only its file name and its passage's first line), of
how likely it was to start with the refusal, and of how much of the question that sentence speaks of
(``anchoring``). The yes/no answers are read as probabilities from the next-token logits; all but the
sentence check extend the answer prompt, so llama.cpp reuses its KV cache.
Measured on RGB, a yes/no check of each sentence asked right after the model's own answer told right from
wrong no better than chance (AUC 0.53) and went; the single-sentence check separated best (eval/README.md).

The policy (``Settings.grounding``) then decides what reaches the user: ``strict`` removes unsupported
sentences and turns an answer with none left into a refusal; ``lenient`` keeps them, marked; ``off``
skips the checks (citation markers are still validated).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from rag_service.citations import SentenceCheck, validate
from rag_service.passages import LEAD_IN, LIST_ITEM
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


@dataclass(frozen=True, slots=True)
class Signals:
    """What the model itself says about the question: ``gate`` is P(yes) to "do the passages state the
    answer?" (asked after the answer prompt, before the answer, reusing the prompt's KV cache),
    ``refusal_start`` the probability that its reply began like the refusal sentence, ``passage_gate`` the
    same question as the gate about the passages the answer cites, ``evidence`` whether the sentence of a
    cited passage that states the answer, read with only its file name and its passage's first line,
    answers the question."""

    gate: float | None = None
    refusal_start: float | None = None
    # P(yes) to "does passage [n] state the answer?" for the best passage a checked sentence cites.
    passage_gate: float | None = None
    # P(yes) that the evidence sentence of a checked sentence answers the question (the best
    # of the first EVIDENCE_CHECKS distinct evidence sentences).
    evidence: float | None = None


@dataclass(slots=True)
class Verification:
    """Everything the checks found; ``apply`` turns it into what a policy delivers."""

    claims: list[Claim]
    rendered: list[str]  # each sentence as validate() rendered it, markers corrected
    citations: dict[int, Citation]
    model_refused: bool = False
    checks: list[SentenceCheck] = field(default_factory=list)
    signals: Signals = field(default_factory=lambda: Signals())
    trust: float | None = None  # the calibrated score that the answer is right (None: not scored)
    trust_threshold: float = 0.0

    @property
    def trust_met(self) -> bool:
        return self.trust is None or self.trust >= self.trust_threshold

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
                "rendered": self.rendered, "signals": asdict(self.signals), "trust": self.trust,
                "trust_threshold": self.trust_threshold}


# Questions whose answer is a number, an amount or a date: an answer sentence without a number of its own
# ("Deng Lun evaded taxes and was fined" to "how much did he evade?") does not answer them.
_ASKS_NUMBER = re.compile(
    r"多少|几|多大|多高|多长|多久|多重|多远|多快|第几|百分之|比例|比率|增长率|什么时候|何时|哪一?年|哪一?天|哪个月|"
    r"\bhow (?:many|much|long|old|far|tall|big|large|high|often|soon)\b|\bwhat (?:percentage|year|date|time|age|"
    r"number|amount|proportion|share)\b|\bwhen\b|\bwhich year\b", re.IGNORECASE)
_NUMBER = re.compile(r"\d")


def asks_for_number(question: str) -> bool:
    return bool(_ASKS_NUMBER.search(question))


def gives_number(sentence: str, question: str) -> bool:
    """Whether ``sentence`` holds a number the question does not (Chinese and English numerals read as digits)."""
    def numbers(text: str) -> set[str]:
        return set(re.findall(r"\d+(?:\.\d+)?", english_numerals(arabic_numerals(text))))

    return bool(numbers(sentence) - numbers(question))


def content_words(sentence: str, question: str) -> set[str]:
    """What a sentence says beyond the question: its words (BM25 tokens, numerals as digits) minus the
    question's and vague ones. A negation the question lacks counts ("No, it is not allowed")."""
    def words_of(text: str) -> set[str]:  # vague words go before numerals are read ('一些' is not '1些')
        return {english_numerals(arabic_numerals(w)) for w in tokenize(text) if w not in VAGUE}

    words = words_of(sentence) - words_of(question) - STOPWORDS
    if _NEGATION.search(sentence) and not _NEGATION.search(question):
        words.add("¬")
    return words


_INTERROGATIVE = re.compile(r"为什么|怎么样|怎么|如何|什么|哪些|哪个|哪里|哪儿|哪|谁|多少|几|是否|吗|呢|"
                            r"\b(?:what|which|who|whom|whose|when|where|why|how|many|much|does|did|is|are)\b",
                            re.IGNORECASE)
_PASSAGE_SENTENCES = re.compile(r"(?<=[。！？!?；;])|(?<=\.)\s+|\n+")


def anchoring(question: str, claim: str, passage: str) -> tuple[float, str]:
    """Whether the passage says the claim *about what was asked*, and where: over the passage sentences that
    hold some of the claim's new units (words beyond the question; CJK character pairs), the best product
    of (share of those new units in the sentence) x (share of the question's own units, question words
    removed, in the same sentence), with that sentence. A number or a name from a neighbouring story sits
    in a sentence that speaks of something else and scores low."""
    asked = evidence_tokens(_INTERROGATIVE.sub(" ", question))
    new = evidence_tokens(claim) - evidence_tokens(question)
    if not new or not asked:
        return 0.0, ""
    best, where = 0.0, ""
    for sentence in (s.strip() for s in _PASSAGE_SENTENCES.split(passage) if s and s.strip()):
        own = evidence_tokens(sentence)
        if not own & new:
            continue
        value = len(own & new) / len(new) * len(own & asked) / len(asked)
        if value > best or not where:
            best, where = value, sentence
    return best, where


def _logit(p: float | None) -> float:
    """log(p / (1 - p)); an unknown probability (a backend that cannot tell) counts as 0.5."""
    p = 0.5 if p is None else min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def constraints_met(question: str, passage: str) -> bool:
    """The question's hard constraints all appear in the passage: its numbers (years, model numbers,
    'MU5735'), its acronyms ('EMNLP', 'GDP'), and, in a Chinese question, its Latin-script names. An answer
    about 2021 does not answer a question about 2022."""
    asked = english_numerals(arabic_numerals(_INTERROGATIVE.sub(" ", question)))
    wanted = set(re.findall(r"[A-Za-z]*\d+[A-Za-z0-9]*|\b[A-Z]{2,}[A-Za-z]*", asked))
    if has_cjk(question):
        wanted |= set(re.findall(r"[A-Za-z]{2,}", asked))
    have = re.sub(r"\s+", "", english_numerals(arabic_numerals(passage))).lower()
    return all(w.lower() in have for w in wanted)


@dataclass(frozen=True, slots=True)
class TrustModel:
    """A logistic model of "this answer is right", calibrated per bundled model and language on the
    evaluation sets (eval/calibrate.py prints it): features are the logits of the gate, the passage gate,
    the refusal start and the evidence check, and the best anchoring of a supported sentence. An answer
    scoring below ``threshold`` is not delivered."""

    intercept: float
    gate: float
    passage_gate: float
    refusal_start: float
    evidence: float
    anchoring: float
    threshold: float

    def score(self, signals: Signals, anchoring: float) -> float:
        weights = (self.gate, self.passage_gate, self.refusal_start, self.evidence, self.anchoring)
        z = self.intercept + sum(w * x for w, x in zip(weights, trust_features(signals, anchoring), strict=True))
        return 1 / (1 + math.exp(-z))


def trust_features(signals: Signals, anchoring: float) -> tuple[float, float, float, float, float]:
    """What the trust model weighs, in ``TrustModel``'s field order (eval/calibrate.py fits on the same)."""
    return (_logit(signals.gate), _logit(signals.passage_gate), _logit(signals.refusal_start),
            _logit(signals.evidence), anchoring)


# Calibrated trust models by bundled model name and language (eval/README.md, "Calibrating the checks"). A model
# without one (a GGUF of your own) is judged by the gate alone at DEFAULT_GATE_MIN.
TRUST_MODELS: dict[str, dict[str, TrustModel]] = {
    # rag eval calibrate on the runs listed in eval/README.md ("Calibrating the checks"); zh: FAQ set (64) + RGB
    # zh dev (100 noisy + 100 negative), en: FAQ set (64) + ClapNQ dev (100 + 100).
    "qwen2.5-coder-1.5b": {
        "zh": TrustModel(intercept=-4.4082, gate=0.6234, passage_gate=0.3002, refusal_start=-0.0743, evidence=1.1832,
                         anchoring=-0.4147, threshold=0.35),
        "en": TrustModel(intercept=-2.6408, gate=0.5076, passage_gate=0.6963, refusal_start=-0.2776, evidence=0.7829,
                         anchoring=-0.6803, threshold=0.2875),
    },
    # The same fit for the 0.5B, zh only: FAQ set (64) + RGB zh dev (100 + 100). Its yes/no answers separate right
    # from wrong far less than the 1.5B's, so it answers a quarter correctly at this refusal rate (README).
    "qwen2.5-coder-0.5b": {
        "zh": TrustModel(intercept=1.1666, gate=-0.1498, passage_gate=0.4841, refusal_start=0.0423, evidence=0.9291,
                         anchoring=1.3196, threshold=0.3604),
    },
}
DEFAULT_GATE_MIN = 0.5
# Evidence sentences put to the model per answer (each a short prompt of its own: about a second).
EVIDENCE_CHECKS = 2


class Verifier:
    """Runs the checks for one answer. ``model`` names the bundled generator, which selects the calibrated
    trust model ('' for any other); ``check`` False (policy ``off``) skips everything beyond citation
    markers."""

    def __init__(self, model: str = "", *, check: bool = True, trust_min: float | None = None,
                 passage_gate: Callable[[int], float] | None = None,
                 evidence_check: Callable[[str, int], float] | None = None) -> None:
        self.model = model
        self.check = check
        self.trust_min = trust_min
        self.passage_gate = passage_gate  # P(yes) that passage [n] states the answer, asked of the model
        # P(yes) that a sentence of passage [n], shown with where it comes from, answers the question.
        self.evidence_check = evidence_check

    def trust_model(self, lang: str) -> TrustModel | None:
        return TRUST_MODELS.get(self.model, {}).get(lang)

    def verify(self, question: str, completion: str, packed: Sequence[Chunk], *, model_refused: bool,
               signals: Signals = Signals()) -> Verification:
        _, _, checks = validate(completion, list(packed), question)
        rendered = [c.rendered for c in checks]
        citations = {n: Citation(n=n, chunk=packed[n - 1]) for n in range(1, len(packed) + 1)}
        if model_refused:
            return Verification([], rendered, citations, model_refused=True, checks=checks, signals=signals)
        claims = [self._claim(question, checks, i, packed) for i in range(len(checks))]
        verification = Verification(claims, rendered, citations, checks=checks, signals=signals)
        if self.check:
            verification.trust, verification.signals = self._trust(question, claims, signals)
            verification.trust_threshold = self.threshold("zh" if has_cjk(question) else "en")
            if not verification.trust_met:
                verification.claims = [replace(c, supported=False, reason=c.reason or "not-stated")
                                       for c in claims]
        return verification

    def _claim(self, question: str, checks: Sequence[SentenceCheck], i: int, packed: Sequence[Chunk]) -> Claim:
        check = checks[i]
        body = check.sentence
        if LEAD_IN.search(body) and i + 1 < len(checks):
            return Claim(body, check.cited, False, lead_in=True, how=check.how)
        claim_text = _with_lead_in(checks, i)
        if not content_words(body, question):
            return Claim(body, check.cited, False, "no-content", how=check.how)
        if not self.check:
            return Claim(body, check.cited, bool(check.cited), None if check.cited else "uncited", how=check.how)
        if asks_for_number(question) and not gives_number(claim_text, question):
            return Claim(body, check.cited, False, "no-answer", how=check.how)
        if not check.cited:
            return Claim(body, [], False, "uncited", how=check.how)
        passages = [packed[n - 1].text for n in check.cited]
        (anchored, evidence), source = max((anchoring(question, claim_text, packed[n - 1].text), n)
                                           for n in check.cited)
        claim = Claim(body, check.cited, True, anchoring=anchored, evidence=evidence or None,
                      evidence_passage=source if evidence else None, how=check.how)
        if not any(constraints_met(question, p) for p in passages):
            return replace(claim, supported=False, reason="off-question")
        return claim

    def _trust(self, question: str, claims: Sequence[Claim], signals: Signals) -> tuple[float | None, Signals]:
        supported = [c for c in claims if c.supported]
        if not supported:
            return None, signals
        if self.passage_gate is not None:  # first: these reuse the answer prompt's KV cache
            cited = sorted({n for c in supported for n in c.citations})
            signals = replace(signals, passage_gate=max(self.passage_gate(n) for n in cited))
        if self.evidence_check is not None:
            ranked = sorted(supported, key=lambda c: -(c.anchoring or 0.0))
            sentences = list(dict.fromkeys((c.evidence, c.evidence_passage or 0) for c in ranked
                                           if c.evidence))[:EVIDENCE_CHECKS]
            if sentences:
                signals = replace(signals, evidence=max(self.evidence_check(s, n) for s, n in sentences))
        model = self.trust_model("zh" if has_cjk(question) else "en")
        if model is None:
            return signals.gate, signals
        return model.score(signals, max(c.anchoring or 0.0 for c in supported)), signals

    def threshold(self, lang: str) -> float:
        if self.trust_min is not None:
            return self.trust_min
        model = self.trust_model(lang)
        return model.threshold if model is not None else DEFAULT_GATE_MIN
def _with_lead_in(checks: Sequence[SentenceCheck], i: int) -> str:
    """A list item with the line that introduces it ('The kit contains: a charger'), so the check sees
    the whole claim."""
    for j in range(i - 1, -1, -1):
        if LEAD_IN.search(checks[j].sentence):
            return f"{checks[j].sentence} {checks[i].sentence}"
        if not LIST_ITEM.match(checks[i].sentence):
            break
    return checks[i].sentence
