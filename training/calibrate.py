"""Fit the reader's confidence and abstention threshold on held-out dev questions.

Each question is retrieved and read as the service does; every decoded span is labelled
right when its F1 against a gold answer is at least 0.5 (never, for an unanswerable
question). A logistic regression over `CALIBRATION_FEATURES` (Platt scaling with a few
more inputs) turns a span's raw scores into the probability that it is right. The
threshold is the cut that maximises F1 averaged over the dev sets (each set counts
equally; an abstention on an unanswerable question is a full match). Every question is
read by a model that was not fine-tuned on it (`training.crossfit`): scores on questions
a model was trained on are overconfident.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eval.gold import GoldQuestion
from eval.metrics import f1

RIGHT_F1 = 0.5


@dataclass(frozen=True, slots=True)
class Read:
    """One question's decoded spans: features, texts, and F1 against the gold."""

    set_name: str
    answerable: bool
    features: np.ndarray
    f1s: np.ndarray


def collect(reader, pipeline, questions: Sequence[GoldQuestion], set_name: str) -> list[Read]:
    out = []
    for gold in questions:
        r = pipeline.retrieve(gold.question)
        cands = reader.candidates(gold.question, r.question_vector, r.evidence,
                                  df=r.index.document_frequency, n_docs=r.index.fts_documents)
        texts = [r.evidence[c.evidence].text[c.start - r.evidence[c.evidence].start:
                                              c.end - r.evidence[c.evidence].start]
                 for c in cands]
        scores = [f1(t, list(gold.answers)) if gold.answerable else 0.0 for t in texts]
        feats = np.asarray([c.features for c in cands], dtype=np.float64).reshape(len(cands), -1)
        out.append(Read(set_name, gold.answerable, feats, np.asarray(scores)))
    return out


def fit(reads: Sequence[Read]) -> tuple[list[float], float]:
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([r.features for r in reads if len(r.features)])
    y = np.concatenate([r.f1s >= RIGHT_F1 for r in reads if len(r.features)])
    model = LogisticRegression(C=1.0, max_iter=2000).fit(x, y)
    return [float(w) for w in model.coef_[0]], float(model.intercept_[0])


def scores_at(reads: Sequence[Read], weights, bias: float, cut: float) -> dict[str, dict]:
    """Per dev set: F1 at `cut` (top span, or abstention) and answerable-only F1."""
    w = np.asarray(weights)
    per: dict[str, list[tuple[bool, float]]] = {}
    for r in reads:
        if len(r.features):
            p = 1 / (1 + np.exp(-(r.features @ w + bias)))
            k = int(np.argmax(p))
            answered, value = p[k] >= cut, float(r.f1s[k])
        else:
            answered, value = False, 0.0
        score = (value if answered else 0.0) if r.answerable else float(not answered)
        per.setdefault(r.set_name, []).append((r.answerable, score))
    out = {}
    for name, rows in per.items():
        has = [s for a, s in rows if a]
        out[name] = {"questions": len(rows), "f1": round(float(np.mean([s for _, s in rows])), 4),
                     "answerable_f1": round(float(np.mean(has)), 4) if has else None}
    return out


def choose_threshold(reads: Sequence[Read], weights, bias: float) -> float:
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    means = [np.mean([v["f1"] for v in scores_at(reads, weights, bias, c).values()])
             for c in grid]
    return float(grid[int(np.argmax(means))])


def fit_with_cut(reads: Sequence[Read]) -> tuple[list[float], float, float]:
    """The calibration's weights and bias, and the cut chosen with them."""
    weights, bias = fit(reads)
    return weights, bias, choose_threshold(reads, weights, bias)


def calibrate(model_dir: Path, reads: Sequence[Read], extra: dict | None = None) -> dict:
    """Fit, choose the cut, and write both (with the dev scores, and `extra`) into the
    manifest."""
    weights, bias, cut = fit_with_cut(reads)
    path = model_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    from service.reader import CALIBRATION_FEATURES

    manifest["calibration"] = {"features": list(CALIBRATION_FEATURES), "weights": weights,
                               "bias": bias}
    manifest["threshold"] = cut
    manifest["dev"] = scores_at(reads, weights, bias, cut)
    manifest.update(extra or {})
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
