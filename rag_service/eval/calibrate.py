"""Fitting the answer checks (``rag_service.answering.verification.TrustModel``) from ``rag eval answers --out`` runs.

Every question of the runs is one example, with what the run's checks found and what each way of delivering would
have given (``answers.outcomes``: the answer trusted whole, its quotes kept from an evidence level, the extract;
each scored correct, wrong or nothing). Per question language:

1. a logistic regression (L2, Newton's method) on the trust features of the answers with a sentence that passed the
   rules, labelled by whether the trusted answer is correct;
2. the threshold of its score, the quote rule's evidence level and the extract's, chosen together to maximise
   answered-correctly (over answerable questions) plus refused (over unanswerable ones) minus WRONG_COST x wrong
   answers (answerable, delivered, not correct), averaged over the data sets (each counts once: 200 news questions
   must not outvote 64 FAQ questions, whose documents are the messier kind);
3. **leave one data set out**: the same procedure fitted on the other data sets and scored on the one left out, for
   each data set in turn: what a generator's fit does on documents unlike those it was fitted on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag_service.answering.verification import FEATURES, TrustModel

# A wrong answer (delivered, not correct) counts this much against the objective, beside the right answers it
# misses: a refusal with the answering passage in `related` is better than a confident wrong answer.
WRONG_COST = 0.5


# The trust score's inputs: every signal any generator gives (a server reports no refusal start). Left out of the
# fit, fewer inputs did no better beyond noise, and without the verbatim share a sentence copied from its passage
# was withdrawn when the evidence check doubted it (docs/evaluation.md "Calibrating the checks: which inputs").
TRUST_FEATURES = tuple(f for f in FEATURES if f != "refusal_start")


@dataclass(frozen=True, slots=True)
class Procedure:
    """What a fit weighs and how much a wrong answer costs. GENERIC is the default for a generator nobody fitted:
    a wrong answer costs as much as a right one is worth."""

    features: tuple[str, ...] = TRUST_FEATURES
    wrong_cost: float = WRONG_COST


GENERIC = Procedure(TRUST_FEATURES, 1.0)
# Evidence levels tried for the quote rule and the extract (P(yes) of the unit; None: the rule off).
LEVELS: tuple[float | None, ...] = (None, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
# The quote rule is never off: a sentence copied verbatim from its passage is the strongest evidence there is, so
# the fit only chooses how sure the evidence check must be that the copied unit speaks of the question.
QUOTE_LEVELS = LEVELS[1:]
# Score thresholds tried: quantiles of the candidates' scores (enough to find the best to within a question).
THRESHOLDS = 120


@dataclass(frozen=True, slots=True)
class Example:
    group: str  # the data set (and language) it comes from: each group counts once
    lang: str
    answerable: bool
    features: np.ndarray | None  # None: no sentence passed the rules, refused whatever the fit
    trust: bool | None  # the answer delivered as trusted: correct, wrong, None (nothing)
    quotes: tuple[tuple[float, bool | None], ...]
    extract: tuple[float, bool | None] | None
    off: bool = False  # policy `off` (the model's draft, no checks) answered it correctly: the bar the checks meet


def examples(runs: Sequence[tuple[str, dict[str, Any]]]) -> list[Example]:
    """(name, run) pairs -> examples; a run's questions are grouped by name and question language."""
    out = []
    for name, run in runs:
        for r in run["results"]:
            o = r.get("outcomes") or {}
            features = o.get("features")
            out.append(Example(
                f"{name}/{r['lang']}", r["lang"], bool(r["answers"]),
                None if features is None else np.array([features.get(f, 0.0) for f in FEATURES]),
                o.get("trust"), tuple((float(level), c) for level, c in o.get("quotes", [])),
                None if o.get("extract") is None else (float(o["extract"][0]), o["extract"][1]),
                bool(r.get("policies", {}).get("off", {}).get("correct"))))
    return out


def fit(x: np.ndarray, y: np.ndarray, l2: float = 1.0, steps: int = 50) -> np.ndarray:
    """Weights (intercept first) of an L2-regularised logistic regression, by Newton's method."""
    a = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(a.shape[1])
    penalty = np.eye(a.shape[1]) * l2
    penalty[0, 0] = 0.0  # the intercept is not shrunk
    for _ in range(steps):
        p = 1 / (1 + np.exp(-a @ w))
        gradient = a.T @ (p - y) + penalty @ w
        hessian = a.T @ (a * (p * (1 - p))[:, None]) + penalty
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def _scores(w: np.ndarray, items: Sequence[Example]) -> np.ndarray:
    """Each example's trust score (NaN: not a candidate)."""
    out = np.full(len(items), np.nan)
    for i, e in enumerate(items):
        if e.features is not None:
            out[i] = 1 / (1 + np.exp(-(w[0] + e.features @ w[1:])))
    return out


def delivered(e: Example, score: float, threshold: float, quote: float | None, extract: float | None) -> bool | None:
    """What the checks deliver for ``e`` under these settings: correct, wrong or None (refused); the order of
    ``Verification.decide``."""
    if not np.isnan(score) and score >= threshold:
        return e.trust
    if quote is not None:
        kept = [c for level, c in e.quotes if level >= quote]
        if kept:
            return kept[0]
    if extract is not None and e.extract is not None and e.extract[0] >= extract:
        return e.extract[1]
    return None


def rates(items: Sequence[Example], scores: np.ndarray, threshold: float, quote: float | None = None,
          extract: float | None = None) -> dict[str, Any]:
    """answered_correctly and wrong (over answerable questions), refused (over unanswerable ones); off_correctly:
    what policy `off` answered correctly of the same answerable questions."""
    correct = wrong = refused = answerable = off = 0
    for e, s in zip(items, scores, strict=True):
        got = delivered(e, s, threshold, quote, extract)
        if e.answerable:
            answerable += 1
            correct += got is True
            wrong += got is False
            off += e.off
        else:
            refused += got is None
    unanswerable = len(items) - answerable
    return {"answered_correctly": correct / answerable if answerable else None,
            "wrong": wrong / answerable if answerable else None,
            "refused": refused / unanswerable if unanswerable else None,
            "off_correctly": off / answerable if answerable else None,
            "answerable": answerable, "unanswerable": unanswerable}


def _value(r: dict[str, Any], wrong_cost: float = WRONG_COST) -> float:
    parts = [r["refused"]] if r["refused"] is not None else []
    if r["answered_correctly"] is not None:
        parts.append(r["answered_correctly"] - wrong_cost * r["wrong"])
    return float(np.mean(parts)) if parts else 0.0


def choose(items: Sequence[Example], scores: np.ndarray,
           wrong_cost: float = WRONG_COST) -> tuple[float, float | None, float | None]:
    """The threshold, quote level and extract level with the best objective averaged over the groups."""
    groups: dict[str, list[int]] = {}
    for i, e in enumerate(items):
        groups.setdefault(e.group, []).append(i)
    candidates = scores[~np.isnan(scores)]
    thresholds = sorted({1.01, *np.quantile(candidates, np.linspace(0, 1, THRESHOLDS)).tolist()}) \
        if len(candidates) else [1.01]

    def value(t: float, q: float | None, x: float | None) -> float:
        return float(np.mean([_value(rates([items[i] for i in idx], scores[idx], t, q, x), wrong_cost)
                              for idx in groups.values()]))

    best = max(((value(t, q, x), -_complexity(q, x), t, q, x)
                for t in thresholds for q in QUOTE_LEVELS for x in LEVELS),
               key=lambda v: (round(v[0], 9), v[1], v[2]))
    return best[2], best[3], best[4]


def _complexity(quote: float | None, extract: float | None) -> int:
    return (quote is not None) + (extract is not None)


def fit_model(items: Sequence[Example], procedure: Procedure = Procedure()) -> TrustModel:
    """The whole procedure on ``items``: weights (of ``procedure.features`` only), then the thresholds."""
    train = [e for e in items if e.features is not None]
    if not train:
        raise ValueError("no answer passed the rules: nothing to fit")
    used = [FEATURES.index(f) for f in procedure.features]
    x = np.stack([e.features for e in train if e.features is not None])[:, used]
    y = np.array([e.trust is True for e in train], dtype=float)
    fitted = fit(x, y)
    w = np.zeros(len(FEATURES) + 1)
    w[0] = fitted[0]
    w[[i + 1 for i in used]] = fitted[1:]
    threshold, quote, extract = choose(items, _scores(w, items), procedure.wrong_cost)
    return TrustModel(round(float(w[0]), 4), {FEATURES[i]: round(float(w[i + 1]), 4) for i in used},
                      round(float(threshold), 4), quote, extract)


def evaluate(model: TrustModel, items: Sequence[Example]) -> dict[str, dict[str, Any]]:
    """``model``'s rates on each group of ``items``."""
    weights = np.array([model.intercept, *(model.weights.get(f, 0.0) for f in FEATURES)])
    out = {}
    for group in sorted({e.group for e in items}):
        part = [e for e in items if e.group == group]
        out[group] = {k: round(v, 4) if isinstance(v, float) else v for k, v in rates(
            part, _scores(weights, part), model.threshold, model.quote_min_evidence,
            model.extract_min_evidence).items()}
    return out


def calibrate(items: Sequence[Example], procedure: Procedure = Procedure()) -> dict[str, Any]:
    """The fit on every group, its in-sample rates, and each group's rates under the fit of the others (``model``
    None: no answer passed the rules, nothing to fit)."""
    if not any(e.features is not None for e in items):
        return {"model": None, "questions": len(items), "candidates": 0, "in_sample": {}, "leave_one_out": {}}
    model = fit_model(items, procedure)
    groups = sorted({e.group for e in items})
    held_out: dict[str, dict[str, Any]] = {}
    for group in groups if len(groups) > 1 else []:
        rest = [e for e in items if e.group != group]
        if any(e.features is not None for e in rest):
            held_out.update(evaluate(fit_model(rest, procedure), [e for e in items if e.group == group]))
    return {"model": model.to_json(), "questions": len(items),
            "candidates": sum(e.features is not None for e in items),
            "in_sample": evaluate(model, items), "leave_one_out": held_out}


def run(paths: Sequence[Path], procedure: Procedure = Procedure()) -> dict[str, dict[str, Any]]:
    """Fits per question language from run files, each named by its data set, or by its file when two runs name
    the same data set (two question files both called ``questions.jsonl`` are still two data sets)."""
    loaded = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]
    names = [str(data.get("record", {}).get("dataset") or Path(p).stem) for p, data in zip(paths, loaded, strict=True)]
    runs = [(name if names.count(name) == 1 else Path(p).stem, data)
            for p, name, data in zip(paths, names, loaded, strict=True)]
    return fit_runs(runs, procedure)


def fit_runs(runs: Sequence[tuple[str, dict[str, Any]]],
             procedure: Procedure = Procedure()) -> dict[str, dict[str, Any]]:
    items = examples(runs)
    return {lang: calibrate([e for e in items if e.lang == lang], procedure)
            for lang in sorted({e.lang for e in items})}


# -- rag calibrate: the labelled sets run against the configured generator ----------------------------------------
DATA = Path(__file__).with_name("data")


@dataclass(frozen=True, slots=True)
class CalibrationSet:
    """A labelled set ``rag calibrate`` answers: ``path`` (+ ``docs``) as ``rag eval answers --dataset`` takes them,
    ``limit`` questions by default (half of them unanswerable where the set has both)."""

    name: str
    path: Path
    docs: Path | None = None
    setting: str | None = None
    limit: int | None = None


def calibration_sets(eval_data: Path | None) -> list[CalibrationSet]:
    """Our own sets (they ship with the code: messy FAQ pages in both languages, the same questions asked in the
    other language, a mixed-language sample KB asked across languages), then those of ``eval_data`` that exist (RGB
    zh dev, ClapNQ dev, CMRC 2018 dev: public data the project does not ship)."""
    faq = DATA / "faq"
    sets = [CalibrationSet("faq", faq / "questions.jsonl", faq / "docs"),
            CalibrationSet("faq-crosslingual", faq / "questions.crosslingual.jsonl", faq / "docs"),
            CalibrationSet("crosslingual", DATA / "crosslingual" / "questions.jsonl", DATA / "crosslingual" / "docs")]
    if eval_data is not None:
        sets += [s for s in (
            CalibrationSet("rgb_zh_dev", eval_data / "rgb_zh_dev", limit=200),
            CalibrationSet("clapnq_dev", eval_data / "clapnq_dev", limit=200),
            CalibrationSet("cmrc2018_dev", eval_data / "cmrc2018" / "squad-style-data" / "cmrc2018_dev.json",
                           setting="both", limit=200),
        ) if s.path.exists()]
    return sets
