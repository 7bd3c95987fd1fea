"""Claim-level verification of a generated answer: which sentences the packed passages actually state.

Citation validation (``citations.validate``) checks that a sentence shares its words with the passage it
cites. Shared words are not support: a table of contents repeats the question, "X has some drawbacks"
says nothing the question did not, and a name found in a passage can play another role there. So each
sentence is a claim that must also pass rules (``Verifier._claim``):

- content of its own: words beyond the question's, other than vague ones ("some", "一些");
- a number when a number, an amount or a date is asked;
- the question's numbers and Latin-script names present in the passage it cites (2021 does not answer 2022);

and the answer as a whole must be trusted (``TrustModel``, fitted per generator: ``calibration.py``): a
logistic score of what the model says when asked yes/no (about all passages before answering, about each cited
passage, and about the evidence unit that states the claim best: a sentence, or a list item or whole list under the
question line it answers, in a prompt of its own with only its file name and section), of how likely it was to start
with the refusal, of how much of the question that unit speaks of (``anchoring``), of how much of the answer is
copied verbatim from its passage (``quote_share``) and of whether it was matched across languages. The yes/no answers
are read as probabilities from the next-token logits; all but the unit check extend the answer prompt, so llama.cpp
reuses its KV cache. Measured on RGB, a yes/no check of each sentence asked right after the model's own answer told
right from wrong no better than chance and went; the single-sentence check separated best (docs/evaluation.md
"Calibrating the checks: which inputs").
Below the threshold, quotes the model vouches for stay; an answer left with nothing gets the extract, the passage's
own words (``Verification.decide``).

The policy (``Settings.grounding``) then decides what reaches the user: ``strict`` removes unsupported
sentences and turns an answer with none left into a refusal (or the extract); ``lenient`` keeps them, marked;
``off`` skips the checks (citation markers are still validated).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from difflib import SequenceMatcher
from typing import Any

from rag_service.answering.citations import Aligner, SentenceCheck, place_markers, strip_markers, validate
from rag_service.records import Chunk, Citation, Claim
from rag_service.settings import Policy
from rag_service.text.language import detect_language, query_language
from rag_service.text.textunits import LEAD_IN, LIST_ITEM, QUESTION_END, evidence_units, is_bare_question
from rag_service.text.tokenize import STOPWORDS, arabic_numerals, english_numerals, evidence_tokens, has_cjk, tokenize

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


@dataclass(frozen=True, slots=True)
class Unit:
    """A unit of evidence the checks put to the model (``passages.evidence_units``): a sentence, a list item under
    the line that introduces it, or a whole list; ``p`` is P(yes) that it answers the question."""

    text: str
    passage: int  # the packed passage ([n]) it comes from
    p: float


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
    units: list[Unit] = field(default_factory=list)  # the evidence units the model was asked about
    # The document's own words delivered when the draft fails the checks but a passage states the answer.
    extract: Unit | None = None
    calibration: str = ""  # which fit judged it (``Calibration.label``)
    calibrated: bool = True  # False: the generator has no fit, the conservative default judged it

    @property
    def trust_met(self) -> bool:
        return self.trust is None or self.trust >= self.trust_threshold

    @property
    def delivered_by(self) -> str | None:
        """What let the answer through: the trust score, verbatim quotes of the passages, or the extract."""
        if not self.model_refused and any(c.supported and not c.lead_in for c in self.claims):
            return "trust" if self.trust_met else "quote"
        return "extract" if self.extract is not None else None

    def apply(self, policy: Policy) -> tuple[str, list[Citation], bool, list[Claim]]:
        """(answer text, citations, refused, claims as delivered) under ``policy``. With ``off`` the
        validated text is delivered as written; otherwise unsupported sentences are removed (``strict``)
        or kept (``lenient``), and an answer with no supported sentence is refused, or replaced by the extract
        when there is one."""
        if self.model_refused:
            return self._extracted() if policy != "off" else ("", [], True, [])
        keep = [self._kept(i, policy) for i in range(len(self.claims))]
        if policy != "off" and not any(k and c.supported and not c.lead_in for k, c in zip(keep, self.claims,
                                                                                           strict=True)):
            return self._extracted()
        parts = [r for k, r in zip(keep, self.rendered, strict=True) if k]
        text = "".join(parts).strip()
        numbers = {n for k, c in zip(keep, self.claims, strict=True) if k for n in c.citations}
        if policy == "strict":  # only passages that support a delivered sentence are cited
            numbers = {n for k, c in zip(keep, self.claims, strict=True) if k and c.supported for n in c.citations}
        citations = [self.citations[n] for n in sorted(numbers) if n in self.citations]
        if not re.search(r"\w", re.sub(r"\[\d+\]", "", text)):
            return "", [], True, []
        return text, citations, False, [c for k, c in zip(keep, self.claims, strict=True) if k]

    def decide(self, model: TrustModel, trust_min: float | None = None) -> None:
        """Judges what the checks found with ``model`` (again, if it was judged before: the evaluation replays other
        fits on one run): the trust score of the sentences that passed the rules; below the threshold only their
        quotes whose evidence the model found to answer the question stay supported, and an answer left with
        nothing (or whose model refused) gets the extract, the evidence unit the model found most clearly to answer
        it."""
        self.claims = [replace(c, supported=True, reason=None) if c.reason == "not-stated" else c for c in self.claims]
        passed = [c for c in self.claims if c.supported and not c.lead_in]
        self.trust = model.score(trust_features(self.signals, passed)) if passed else None
        self.trust_threshold = model.threshold if trust_min is None else trust_min
        self.extract = None
        if passed and self.trust_met:
            return
        self.claims = [c if not c.supported or c.lead_in or _quoted(c, model)
                       else replace(c, supported=False, reason="not-stated") for c in self.claims]
        if not any(c.supported and not c.lead_in for c in self.claims):
            best = max(self.units, key=lambda u: u.p, default=None)
            if best is not None and model.extract_min_evidence is not None and best.p >= model.extract_min_evidence:
                self.extract = best

    def _extracted(self) -> tuple[str, list[Citation], bool, list[Claim]]:
        if self.extract is None or self.extract.passage not in self.citations:
            return "", [], True, []
        text = quote_text(self.extract.text, self.extract.passage)
        claim = Claim(strip_markers(text), [self.extract.passage], True, evidence=self.extract.text,
                      evidence_passage=self.extract.passage, how="extract", quote=1.0)
        return text, [self.citations[self.extract.passage]], False, [claim]

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
                "trust_threshold": self.trust_threshold, "units": [asdict(u) for u in self.units],
                "extract": asdict(self.extract) if self.extract else None, "delivered_by": self.delivered_by,
                "calibration": self.calibration, "calibrated": self.calibrated}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], citations: dict[int, Citation]) -> Verification:
        """A verification as ``to_json`` wrote it into a trace, to be judged again (``decide``) with another fit."""
        return cls([Claim(**c) for c in data.get("claims", [])], list(data.get("rendered", [])), citations,
                   model_refused=bool(data.get("model_refused")), signals=Signals(**data.get("signals", {})),
                   trust=data.get("trust"), trust_threshold=data.get("trust_threshold", 0.0),
                   units=[Unit(**u) for u in data.get("units", [])],
                   extract=Unit(**data["extract"]) if data.get("extract") else None,
                   calibration=data.get("calibration", ""), calibrated=data.get("calibrated", True))


def _quoted(claim: Claim, model: TrustModel) -> bool:
    """A sentence copied from its passage whose evidence unit the model found to answer the question."""
    return (model.quote_min_evidence is not None and (claim.quote or 0.0) >= QUOTE_MIN
            and claim.evidence_p is not None and claim.evidence_p >= model.quote_min_evidence)


def quote_text(unit: str, n: int) -> str:
    """An evidence unit as an answer, in the document's words, each line with the passage's marker; a question line
    that introduces a list is left out (the list answers it), a lead-in line stays unmarked."""
    lines = [line.strip() for line in unit.splitlines() if line.strip()]
    if len(lines) > 1 and QUESTION_END.search(lines[0]):
        lines = lines[1:]
    return "\n".join(line if LEAD_IN.search(line) and len(lines) > 1 else place_markers(line, line, [n])
                     for line in lines)


# Questions whose answer is a number, an amount or a date: an answer sentence without a number of its own
# ("Deng Lun evaded taxes and was fined" to "how much did he evade?") does not answer them. "哪几种方式" asks
# which ways, not how many.
_ASKS_NUMBER = re.compile(
    r"多少|(?<!哪)几|多大|多高|多长|多久|多重|多远|多快|第几|百分之|比例|比率|增长率|什么时候|何时|哪一?年|哪一?天|哪个月|"
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


def anchoring(question: str, claim: str, passage: str, frame: str = "") -> tuple[float, str]:
    """Whether the passage says the claim *about what was asked*, and where: over the passage's evidence units
    (``textunits.evidence_units``: sentences, list items under their question or lead-in line, whole lists) that
    hold some of the claim's new units (words beyond the question; CJK character pairs), the best product
    of (share of those new units in the unit) x (share of the question's own units, question words removed, in
    the unit or its ``frame``, the section's heading path), with that unit. A number or a name from a neighbouring
    story sits in a sentence that speaks of something else and scores low; a list item counts with the question
    line above it."""
    asked = evidence_tokens(_INTERROGATIVE.sub(" ", question))
    new = evidence_tokens(claim) - evidence_tokens(question)
    if not new or not asked:
        return 0.0, ""
    framing = evidence_tokens(frame)
    best, where = 0.0, ""
    for unit in evidence_units(passage):
        own = evidence_tokens(unit)
        if not own & new:
            continue
        value = len(own & new) / len(new) * len((own | framing) & asked) / len(asked)
        if value > best or not where or (value == best and len(unit) > len(where)):  # a tie: the whole list
            best, where = value, unit
    return best, where


# A near-verbatim quote: its characters (letters, digits, CJK; no markers, spaces or punctuation) found in runs of
# at least QUOTE_RUN characters of the passage, in order.
QUOTE_RUN = 4


def _plain(text: str) -> str:
    return re.sub(r"[\W_]+", "", strip_markers(text)).lower()


def quote_share(claim: str, passage: str) -> float:
    """Share of ``claim`` that is a verbatim span of ``passage`` (ignoring markers, spacing, punctuation and list
    bullets): 1.0 for a sentence copied whole, near 0 for a paraphrase or another language."""
    said, source = _plain(claim), _plain(passage)
    if not said:
        return 0.0
    blocks = SequenceMatcher(None, said, source, autojunk=False).get_matching_blocks()
    return sum(b.size for b in blocks if b.size >= min(QUOTE_RUN, len(said))) / len(said)


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
    return all(w.lower() in have or _in_range(w, have) for w in wanted)


_RANGE = re.compile(r"(\d+(?:\.\d+)?)(?:[-–—~～至到]|to)(\d+(?:\.\d+)?)")


def _in_range(wanted: str, passage: str) -> bool:
    """A number the passage covers with a range: 130 Wh is asked of "100–160 Wh"."""
    number = re.fullmatch(r"\d+(?:\.\d+)?", wanted)
    if number is None:
        return False
    value = float(wanted)
    return any(float(a) <= value <= float(b) for a, b in _RANGE.findall(passage))


# What the trust model weighs (``trust_features``): the logits of the model's yes/no answers and of its refusal start,
# the best anchoring and the best verbatim share of a sentence that passed the rules, and whether one was matched to
# its passage across languages (no word in common: anchoring and quotes say nothing there).
FEATURES = ("gate", "passage_gate", "refusal_start", "evidence", "anchoring", "quote", "aligned")
# A sentence is a quote when at least this share of it is verbatim in the passage it cites (``quote_share``).
QUOTE_MIN = 0.9


@dataclass(frozen=True, slots=True)
class TrustModel:
    """A logistic model of "this answer is right" for one generator and question language, fitted by ``rag
    calibrate`` (``eval/calibrate.py``) on labelled answers: an answer scoring below ``threshold`` is not delivered,
    except its quotes (sentences QUOTE_MIN verbatim in their passage) whose evidence unit the model judged to answer
    the question with P(yes) >= ``quote_min_evidence``; an answer left with nothing is replaced by the best evidence
    unit when its P(yes) >= ``extract_min_evidence`` (None: that rule is off)."""

    intercept: float
    weights: Mapping[str, float]
    threshold: float
    quote_min_evidence: float | None = None
    extract_min_evidence: float | None = None

    def score(self, features: Mapping[str, float]) -> float:
        z = self.intercept + sum(w * features.get(name, 0.0) for name, w in self.weights.items())
        return 1 / (1 + math.exp(-max(min(z, 50.0), -50.0)))

    def to_json(self) -> dict[str, Any]:
        return {"intercept": self.intercept, "weights": dict(self.weights), "threshold": self.threshold,
                "quote_min_evidence": self.quote_min_evidence, "extract_min_evidence": self.extract_min_evidence}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrustModel:
        weights = {str(k): float(v) for k, v in dict(data["weights"]).items()}
        unknown = set(weights) - set(FEATURES)
        if unknown:
            raise ValueError(f"unknown trust features {sorted(unknown)} (known: {', '.join(FEATURES)})")

        def optional(key: str) -> float | None:
            return None if data.get(key) is None else float(data[key])

        return cls(float(data["intercept"]), weights, float(data["threshold"]), optional("quote_min_evidence"),
                   optional("extract_min_evidence"))


def trust_features(signals: Signals, claims: Sequence[Claim]) -> dict[str, float]:
    """The trust model's inputs for an answer whose rule-passing sentences are ``claims`` (``eval/calibrate.py`` fits on
    the same)."""
    return {"gate": _logit(signals.gate), "passage_gate": _logit(signals.passage_gate),
            "refusal_start": _logit(signals.refusal_start), "evidence": _logit(signals.evidence),
            "anchoring": max((c.anchoring or 0.0 for c in claims), default=0.0),
            "quote": max((c.quote or 0.0 for c in claims), default=0.0),
            "aligned": float(any(c.aligned for c in claims))}


@dataclass(frozen=True, slots=True)
class Calibration:
    """The fitted checks for one generator, a trust model per question language, and where they come from
    (``label``, shown in traces); ``fitted`` False marks the default used for a generator nobody calibrated."""

    label: str
    models: Mapping[str, TrustModel]
    fitted: bool = True
    fallback: Mapping[str, TrustModel] = field(default_factory=dict)  # for a language the fit has no model of

    def model(self, lang: str) -> TrustModel:
        return self.models.get(lang) or self.fallback.get(lang) or DEFAULT_TRUST


# The last resort, when not even the generic default fit (``calibrations/default.json``) has a model for a
# language: the gate alone at one half.
DEFAULT_TRUST = TrustModel(0.0, {"gate": 1.0}, 0.5)
UNCALIBRATED = Calibration("none: no fit for this generator (run rag calibrate)", {}, fitted=False)
NO_FIT_WARNING = ("no calibrated answer checks for this generator: answers are judged by the conservative default "
                  "(README 'Any generator'); run `rag calibrate` to fit them")
# Evidence units put to the model per answer (each a short prompt of its own: about a second).
EVIDENCE_CHECKS = 2
# Units of the passages put to the evidence check for an extract when no sentence of the draft passed the rules.
EXTRACT_CANDIDATES = 2


class Verifier:
    """Runs the checks for one answer with ``calibration`` (the generator's fit; UNCALIBRATED when it has none);
    ``check`` False (policy ``off``) skips everything beyond citation markers."""

    def __init__(self, calibration: Calibration = UNCALIBRATED, *, check: bool = True, trust_min: float | None = None,
                 passage_gate: Callable[[int], float] | None = None,
                 evidence_check: Callable[[str, int], float] | None = None, align: Aligner | None = None) -> None:
        self.calibration = calibration
        self.align = align  # matches sentences to passages in another language (a multilingual embedder)
        self.check = check
        self.trust_min = trust_min
        self.passage_gate = passage_gate  # P(yes) that passage [n] states the answer, asked of the model
        # P(yes) that an evidence unit of passage [n], shown with where it comes from, answers the question.
        self.evidence_check = evidence_check

    def verify(self, question: str, completion: str, packed: Sequence[Chunk], *, model_refused: bool,
               signals: Signals = Signals()) -> Verification:
        _, _, checks = validate(completion, list(packed), question, align=self.align)
        rendered = [c.rendered for c in checks]
        citations = {n: Citation(n=n, chunk=packed[n - 1]) for n in range(1, len(packed) + 1)}
        claims = [] if model_refused else [self._claim(question, checks, i, packed) for i in range(len(checks))]
        verification = Verification(claims, rendered, citations, model_refused=model_refused, checks=checks,
                                    signals=signals, calibration=self.calibration.label,
                                    calibrated=self.calibration.fitted)
        if not self.check:
            return verification
        self._ask(verification)
        self._ask_candidates(verification, question, packed)
        verification.decide(self.calibration.model("zh" if has_cjk(question) else "en"), self.trust_min)
        return verification

    def _claim(self, question: str, checks: Sequence[SentenceCheck], i: int, packed: Sequence[Chunk]) -> Claim:
        check = checks[i]
        body = check.sentence
        if LEAD_IN.search(body) and i + 1 < len(checks):
            return Claim(body, check.cited, False, lead_in=True, how=check.how)
        if is_bare_question(strip_markers(body)):  # a question line copied from a passage asks, it states nothing
            if i + 1 < len(checks) and LIST_ITEM.match(checks[i + 1].sentence):  # ... unless a list answers it
                return Claim(body, check.cited, False, lead_in=True, how=check.how)
            return Claim(body, check.cited, False, "no-content", how=check.how)
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
        (anchored, evidence), source = max((anchoring(question, claim_text, packed[n - 1].text, _frame(packed[n - 1])),
                                            n) for n in check.cited)
        if check.aligned and self.align is not None and not evidence:  # another language: the closest unit
            source = check.aligned[0]
            units = evidence_units(packed[source - 1].text)
            evidence = max(zip(self.align(claim_text, units), units, strict=True), default=(0.0, ""))[1]
        claim = Claim(body, check.cited, True, anchoring=anchored, evidence=evidence or None,
                      evidence_passage=source if evidence else None, how=check.how,
                      quote=round(max(quote_share(body, p) for p in passages), 4), aligned=bool(check.aligned))
        if not any(constraints_met(question, p) for p in passages):
            return replace(claim, supported=False, reason="off-question")
        return claim

    def _ask(self, verification: Verification) -> None:
        """Asks the model about the cited passages and the best evidence units of the sentences that passed the
        rules (the whole list when they are its items)."""
        supported = [c for c in verification.claims if c.supported]
        if not supported:
            return
        signals = verification.signals
        if self.passage_gate is not None:  # first: these reuse the answer prompt's KV cache
            cited = sorted({n for c in supported for n in c.citations})
            signals = replace(signals, passage_gate=max(self.passage_gate(n) for n in cited))
        if self.evidence_check is not None:
            ranked = sorted(supported, key=lambda c: -(c.anchoring or 0.0))
            asked = list(dict.fromkeys((c.evidence, c.evidence_passage or 0) for c in ranked
                                       if c.evidence))[:EVIDENCE_CHECKS]
            verification.units = [Unit(text, n, self.evidence_check(text, n)) for text, n in asked]
            if verification.units:
                signals = replace(signals, evidence=max(u.p for u in verification.units))
            p_of = {(u.text, u.passage): u.p for u in verification.units}
            verification.claims = [replace(c, evidence_p=p_of.get((c.evidence or "", c.evidence_passage or 0)))
                                   for c in verification.claims]
        verification.signals = signals

    def _ask_candidates(self, verification: Verification, question: str, packed: Sequence[Chunk]) -> None:
        """When no sentence of the draft passed the rules (or the model refused) although the gate said the passages
        state the answer: the EXTRACT_CANDIDATES units of the packed passages that speak most of the question (its
        words in the unit or the section's heading path; across languages, the closest in meaning) are put to the
        evidence check, so the extract can give the document's own words instead of a refusal."""
        if self.evidence_check is None or any(c.supported and not c.lead_in for c in verification.claims):
            return
        if verification.signals.gate is not None and verification.signals.gate < 0.5:
            return
        asked = evidence_tokens(_INTERROGATIVE.sub(" ", question))
        seen = {(u.text, u.passage) for u in verification.units}
        scored: list[tuple[float, int, str, int]] = []
        for n, chunk in enumerate(packed, start=1):
            framing = evidence_tokens(_frame(chunk))
            units = [u for u in evidence_units(chunk.text) if (u, n) not in seen and not is_bare_question(u)]
            if not units:
                continue
            if self.align is not None and detect_language(chunk.text) != query_language(question):
                values = self.align(question, units)
            else:
                values = [len((evidence_tokens(u) | framing) & asked) / max(len(asked), 1) for u in units]
            scored += [(v, len(u), u, n) for v, u in zip(values, units, strict=True) if v > 0]
        for _, _, unit, n in sorted(scored, reverse=True)[:EXTRACT_CANDIDATES]:
            verification.units.append(Unit(unit, n, self.evidence_check(unit, n)))


def _frame(chunk: Chunk) -> str:
    """The heading path a passage's units stand under (structure and markdown chunks)."""
    return " > ".join(chunk.metadata.get("headings") or ())


def _with_lead_in(checks: Sequence[SentenceCheck], i: int) -> str:
    """A list item with the line that introduces it ('The kit contains: a charger'), so the check sees
    the whole claim."""
    for j in range(i - 1, -1, -1):
        if LEAD_IN.search(checks[j].sentence):
            return f"{checks[j].sentence} {checks[i].sentence}"
        if not LIST_ITEM.match(checks[i].sentence):
            break
    return checks[i].sentence
