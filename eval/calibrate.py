"""Calibrating the trust model (``rag_service.verification.TrustModel``) from ``rag eval answers --out`` runs.

Every question of the runs is one example. Questions the pipeline refuses anyway (before the model, by the
model, or because no sentence passed the claim rules) stay refused whatever the trust model says; the
others are candidates: their features are the logits of the gate, the passage gate, the refusal start and
the evidence check, and the best anchoring of a rule-supported sentence; their label is whether the
model's answer was right (an answerable question answered correctly). A logistic regression (L2, Newton's
method) is fitted per language, and the threshold is the one that maximises answered-correctly (over
answerable questions) plus refused (over unanswerable ones), averaged over the runs (each data set counts
once: 200 news questions must not outvote 64 FAQ questions, whose documents are the messier kind). A 5-fold
cross-validation reports what the same procedure scores on questions it was not fitted on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from rag_service.verification import Signals, TrustModel, trust_features

FEATURES = tuple(f.name for f in fields(TrustModel) if f.name not in ("intercept", "threshold"))


@dataclass(frozen=True, slots=True)
class Example:
    lang: str
    run: int  # which run (data set) it comes from: the threshold weighs every data set alike
    answerable: bool
    candidate: bool  # delivered unless the trust model refuses it
    good: bool  # the model's answer is right (answerable and correct)
    features: tuple[float, ...]


def examples(runs: Sequence[dict[str, Any]]) -> list[Example]:
    out = []
    for index, run in enumerate(runs):
        for r in run["results"]:
            # Sentences that passed the claim rules ("not-stated" marks those the trust score turned down).
            supported = [c for c in r.get("claims", []) if not c.get("lead_in")
                         and (c.get("supported") or c.get("reason") == "not-stated")]
            candidate = bool(supported)
            signals = Signals(**{k: v for k, v in (r.get("signals") or {}).items() if k in Signals.__slots__})
            features = trust_features(signals, max((c.get("anchoring") or 0.0 for c in supported), default=0.0))
            good = bool(r["answers"]) and r["policies"]["off"]["correct"]
            out.append(Example(r["lang"], index, bool(r["answers"]), candidate, good, features))
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


def score(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(w[0] + x @ w[1:])))


def rates(items: Sequence[Example], scores: np.ndarray, threshold: float) -> tuple[float, float]:
    """(answered correctly over answerable, refused over unanswerable) when candidates below
    ``threshold`` are refused."""
    correct = refused = 0
    for example, s in zip(items, scores, strict=True):
        delivered = example.candidate and s >= threshold
        correct += example.answerable and delivered and example.good
        refused += not example.answerable and not delivered
    answerable = sum(e.answerable for e in items)
    return correct / max(answerable, 1), refused / max(len(items) - answerable, 1)


def best_threshold(items: Sequence[Example], scores: np.ndarray) -> float:
    """The threshold with the best answered-correctly + refused, averaged over the runs (data sets)."""
    by_run: dict[int, list[int]] = {}
    for i, e in enumerate(items):
        by_run.setdefault(e.run, []).append(i)

    def value(t: float) -> float:
        return sum(sum(rates([items[i] for i in idx], scores[idx], t)) for idx in by_run.values()) / len(by_run)

    candidates = sorted({0.0, *scores.tolist()})
    return max(candidates, key=lambda t: (value(t), t))


def calibrate(items: Sequence[Example]) -> dict[str, Any]:
    x = np.array([e.features for e in items if e.candidate])
    y = np.array([e.good for e in items if e.candidate], dtype=float)
    w = fit(x, y)
    all_scores = np.array([score(w, np.array([e.features]))[0] for e in items])
    threshold = best_threshold(items, all_scores)
    # 5-fold cross-validation of the whole procedure (fit and threshold) by question order.
    folds = [list(range(i, len(items), 5)) for i in range(5)]
    held: list[tuple[float, float]] = []
    for fold in folds:
        train = [items[i] for i in range(len(items)) if i not in set(fold)]
        test = [items[i] for i in fold]
        tx = np.array([e.features for e in train if e.candidate])
        ty = np.array([e.good for e in train if e.candidate], dtype=float)
        fw = fit(tx, ty)
        ft = best_threshold(train, np.array([score(fw, np.array([e.features]))[0] for e in train]))
        held.append(rates(test, np.array([score(fw, np.array([e.features]))[0] for e in test]), ft))
    answered, refused = (float(v) for v in rates(items, all_scores, threshold))
    return {"weights": dict(zip(("intercept", *FEATURES), (round(float(v), 4) for v in w), strict=True)),
            "threshold": round(float(threshold), 4), "questions": len(items),
            "candidates": len(x), "answered_correctly": round(answered, 4), "refused": round(refused, 4),
            "cross_validated": {"answered_correctly": round(float(np.mean([h[0] for h in held])), 4),
                                "refused": round(float(np.mean([h[1] for h in held])), 4)}}


def run(paths: Sequence[Path]) -> dict[str, dict[str, Any]]:
    items = examples([json.loads(Path(p).read_text(encoding="utf-8")) for p in paths])
    return {lang: calibrate([e for e in items if e.lang == lang]) for lang in sorted({e.lang for e in items})}
