"""Scoring functions for the evaluation harness: answers, abstention, evidence,
citations, retrieval, calibration and latency.

Everything here is a pure function of its arguments (no I/O, no model), so the
harness, the tests and ad-hoc notebooks all score the same way. The answer
metrics reproduce the official SQuAD 2.0 evaluation script
(``evaluate-v2.0.py``) exactly; ``tests/test_metrics.py`` checks that against
the numbers the official script printed for the bundled sample.
"""

from __future__ import annotations

import bisect
import collections
import math
import re
import string
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


# --------------------------------------------------------------------------- answers


def normalize_answer(text: str) -> str:
    """Return ``text`` normalised as the official SQuAD script does.

    Lower-case, drop ASCII punctuation, replace the words a/an/the by a space,
    collapse whitespace. The order matters and is the script's: punctuation goes
    before articles, so "the-end" becomes "theend", not "end".
    """
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def _gold_answers(golds: Sequence[str]) -> list[str]:
    # A bare string is a Sequence too; scoring it per character would be silently wrong.
    if isinstance(golds, str):
        raise TypeError(
            "golds must be a list of answer strings, not a single string; wrap it: [gold]"
        )
    kept = [g for g in golds if normalize_answer(g)]
    # The official script: an unanswerable question has the single gold answer "".
    return kept or [""]


def _exact_one(prediction: str, gold: str) -> int:
    return int(normalize_answer(gold) == normalize_answer(prediction))


def _f1_one(prediction: str, gold: str) -> float:
    gold_tokens = _tokens(gold)
    pred_tokens = _tokens(prediction)
    if not gold_tokens or not pred_tokens:
        # Abstention against "no answer" is a full match; anything else is a miss.
        return float(gold_tokens == pred_tokens)
    common = collections.Counter(gold_tokens) & collections.Counter(pred_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return (2 * precision * recall) / (precision + recall)


def exact_match(prediction: str, golds: Sequence[str]) -> int:
    """Return 1 if ``prediction`` equals any gold answer after normalisation, else 0.

    Gold answers that normalise to "" are dropped; with none left the gold is
    [""], so only an empty prediction (an abstention) matches.
    """
    return max(_exact_one(prediction, g) for g in _gold_answers(golds))


def f1(prediction: str, golds: Sequence[str]) -> float:
    """Return the best token-overlap F1 of ``prediction`` against any gold answer.

    Same gold handling as :func:`exact_match`; when either side has no tokens the
    score is 1.0 if both are empty and 0.0 otherwise.
    """
    return max(_f1_one(prediction, g) for g in _gold_answers(golds))


def squad_scores(predictions: Mapping[str, str], gold: Mapping[str, Sequence[str]]) -> dict:
    """Score ``predictions`` against ``gold`` with the official SQuAD 2.0 rules.

    ``gold`` maps every question id to its gold answer texts (an empty list for an
    unanswerable question); ``predictions`` maps ids to answer texts, "" meaning
    "no answer". Returns the official script's keys, in percent: exact, f1, total
    and the HasAns_* / NoAns_* breakdowns (each omitted when its group is empty).
    A question with no prediction is scored as an abstention ("") so that every
    gold question counts; predictions for unknown ids are ignored.
    """
    if not gold:
        raise ValueError("gold is empty; there is nothing to score against")
    exact_by_id: dict[str, float] = {}
    f1_by_id: dict[str, float] = {}
    for qid, answers in gold.items():
        predicted = predictions.get(qid) or ""
        exact_by_id[qid] = exact_match(predicted, answers)
        f1_by_id[qid] = f1(predicted, answers)

    def block(ids: list[str]) -> tuple[float, float, int]:
        n = len(ids)
        return (
            100.0 * sum(exact_by_id[q] for q in ids) / n,
            100.0 * sum(f1_by_id[q] for q in ids) / n,
            n,
        )

    # The official script decides "has an answer" from the raw answer list.
    has_ans = [q for q, answers in gold.items() if answers]
    no_ans = [q for q, answers in gold.items() if not answers]
    exact_all, f1_all, total = block(list(gold))
    scores: dict = {"exact": exact_all, "f1": f1_all, "total": total}
    for prefix, ids in (("HasAns", has_ans), ("NoAns", no_ans)):
        if ids:
            e, f, n = block(ids)
            scores.update({f"{prefix}_exact": e, f"{prefix}_f1": f, f"{prefix}_total": n})
    return scores


# --------------------------------------------------------------------------- abstention


@dataclass(frozen=True, slots=True)
class AbstentionScores:
    """How well the system abstains; the positive class is "the system abstained"."""

    precision: float | None
    """Share of abstentions that were on unanswerable questions; None without abstentions."""
    recall: float | None
    """Share of unanswerable questions the system abstained on; None without any."""
    abstained: int
    """Questions the system abstained on."""
    unanswerable: int
    """Questions whose gold has no answer."""
    correct_abstentions: int
    """Abstentions on unanswerable questions (true positives)."""


def is_abstention(prediction: str | None) -> bool:
    """Return True when ``prediction`` means "no answer" (None or blank)."""
    return prediction is None or not prediction.strip()


def abstention_scores(
    predictions: Mapping[str, str | None], gold: Mapping[str, Sequence[str]]
) -> AbstentionScores:
    """Return abstention precision and recall over the questions in ``gold``.

    A question is unanswerable when its gold answer list is empty; the system
    abstained when its prediction is None, blank or missing.
    """
    abstained = {q for q in gold if is_abstention(predictions.get(q))}
    unanswerable = {q for q, answers in gold.items() if not answers}
    hits = len(abstained & unanswerable)
    return AbstentionScores(
        precision=hits / len(abstained) if abstained else None,
        recall=hits / len(unanswerable) if unanswerable else None,
        abstained=len(abstained),
        unanswerable=len(unanswerable),
        correct_abstentions=hits,
    )


# --------------------------------------------------------------------------- evidence


def quote_contains_answer(quote: str, golds: Sequence[str]) -> bool:
    """Return True when the normalised ``quote`` contains a normalised gold answer.

    Containment is by whole tokens ("10" is not found in "100"); gold answers
    that normalise to "" never match, so an unanswerable question has no
    supporting evidence.
    """
    if isinstance(golds, str):
        raise TypeError(
            "golds must be a list of answer strings, not a single string; wrap it: [gold]"
        )
    # Normalised text is single-space separated, so padding gives token boundaries.
    padded_quote = f" {normalize_answer(quote)} "
    return any((norm := normalize_answer(g)) and f" {norm} " in padded_quote for g in golds)


def answer_rank(passages: Sequence[str], golds: Sequence[str]) -> int:
    """Return the 1-based rank of the first passage containing a gold answer, 0 if none.

    Containment is `quote_contains_answer`'s (normalised, whole tokens). This scores
    retrieval the way open-domain QA does ("top-k retrieval accuracy"): whether the
    reader was handed the answer at all, whatever document it came from.
    """
    for rank, text in enumerate(passages, start=1):
        if quote_contains_answer(text, golds):
            return rank
    return 0


_CITATION_INTS = ("start", "end", "quote_start", "quote_end")


def citation_is_valid(text: str, citation: Mapping) -> bool:
    """Return True when ``citation`` points at exactly its span and quote in ``text``.

    Checks the DESIGN.md contract: ``text[start:end] == span``,
    ``text[quote_start:quote_end] == quote`` and
    ``quote_start <= start < end <= quote_end``. A citation with missing or
    non-integer offsets, or offsets outside ``text``, is invalid rather than an
    error, so one bad citation does not stop an evaluation run.
    """
    offsets = [citation.get(key) for key in _CITATION_INTS]
    # bool is an int subclass; True/False as an offset is a bug, not position 1/0.
    if any(not isinstance(v, int) or isinstance(v, bool) for v in offsets):
        return False
    start, end, quote_start, quote_end = offsets
    # Negative offsets would slice from the end of text and could match by accident.
    if not 0 <= quote_start <= start < end <= quote_end <= len(text):
        return False
    span, quote = citation.get("span"), citation.get("quote")
    return text[start:end] == span and text[quote_start:quote_end] == quote


# --------------------------------------------------------------------------- retrieval


def _distinct(ranked: Sequence[str]) -> list[str]:
    # Passages are ranked, not documents: several passages of one article count once.
    return list(dict.fromkeys(ranked))


def recall_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Return the share of ``relevant`` doc ids among the first ``k`` distinct ranked ids.

    Repeated ids in ``ranked`` (several passages of one document) count once, so
    ``k`` counts documents. Undefined without relevant documents: skip
    unanswerable questions before calling.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if not relevant:
        raise ValueError("recall is undefined without relevant documents; skip this question")
    found = set(_distinct(ranked)[:k]) & set(relevant)
    return len(found) / len(set(relevant))


def reciprocal_rank(ranked: Sequence[str], relevant: Collection[str]) -> float:
    """Return 1/rank of the first relevant doc id among the distinct ranked ids, 0 if none."""
    if not relevant:
        raise ValueError(
            "reciprocal rank is undefined without relevant documents; skip this question"
        )
    wanted = set(relevant)
    for rank, doc_id in enumerate(_distinct(ranked), start=1):
        if doc_id in wanted:
            return 1.0 / rank
    return 0.0


def retrieval_scores(
    runs: Iterable[tuple[Sequence[str], Collection[str]]], ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float | int]:
    """Return mean recall@k for each k and MRR over ``(ranked, relevant)`` pairs.

    Pairs without relevant documents (unanswerable questions) are skipped;
    ``questions`` says how many were scored. Keys: ``recall@1``..., ``mrr``,
    ``questions``. Raises ValueError when no pair has a relevant document.
    """
    scored = [(ranked, relevant) for ranked, relevant in runs if relevant]
    if not scored:
        raise ValueError("no question has relevant documents; retrieval cannot be scored")
    n = len(scored)
    result: dict[str, float | int] = {
        f"recall@{k}": sum(recall_at_k(r, rel, k) for r, rel in scored) / n for k in ks
    }
    result["mrr"] = sum(reciprocal_rank(r, rel) for r, rel in scored) / n
    result["questions"] = n
    return result


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    """One confidence bin of a reliability table."""

    lo: float
    """Lower edge (inclusive)."""
    hi: float
    """Upper edge (exclusive, except the last bin, which includes 1.0)."""
    count: int
    """Predictions whose confidence fell in this bin."""
    mean_confidence: float | None
    """Mean confidence of those predictions; None when the bin is empty."""
    accuracy: float | None
    """Mean correctness of those predictions; None when the bin is empty."""


@dataclass(frozen=True, slots=True)
class Calibration:
    """Expected calibration error and the reliability table it was computed from."""

    ece: float
    """Sum over bins of (count / total) * |accuracy - mean confidence|."""
    bins: tuple[ReliabilityBin, ...]
    """All bins in order, empty ones included, so tables line up across runs."""
    total: int
    """Number of (confidence, correct) pairs."""


def calibration(pairs: Iterable[tuple[float, float | bool]], n_bins: int = 10) -> Calibration:
    """Return the ECE and reliability table of ``(confidence, correct)`` pairs.

    Bins are ``n_bins`` equal-width intervals [i/n, (i+1)/n) over [0, 1], the
    last one closed. ``correct`` is a bool or a score in [0, 1] (e.g. F1).
    Raises ValueError on an empty input or a confidence outside [0, 1].
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    edges = [i / n_bins for i in range(n_bins + 1)]
    counts = [0] * n_bins
    conf_sums = [0.0] * n_bins
    correct_sums = [0.0] * n_bins
    total = 0
    for confidence, correct in pairs:
        confidence = float(confidence)
        if not 0.0 <= confidence <= 1.0:  # also rejects NaN
            raise ValueError(f"confidence {confidence!r} is outside [0, 1]")
        # bisect on the same edges the table reports, so a value on an edge
        # lands in the bin whose `lo` it equals.
        index = min(bisect.bisect_right(edges, confidence) - 1, n_bins - 1)
        counts[index] += 1
        conf_sums[index] += confidence
        correct_sums[index] += float(correct)
        total += 1
    if total == 0:
        raise ValueError("no (confidence, correct) pairs; calibration needs at least one")
    bins = []
    ece = 0.0
    for i in range(n_bins):
        n = counts[i]
        mean_conf = conf_sums[i] / n if n else None
        accuracy = correct_sums[i] / n if n else None
        if n:
            ece += (n / total) * abs(accuracy - mean_conf)
        bins.append(ReliabilityBin(edges[i], edges[i + 1], n, mean_conf, accuracy))
    return Calibration(ece=ece, bins=tuple(bins), total=total)


def expected_calibration_error(
    pairs: Iterable[tuple[float, float | bool]], n_bins: int = 10
) -> float:
    """Return the expected calibration error of ``(confidence, correct)`` pairs."""
    return calibration(pairs, n_bins).ece


# --------------------------------------------------------------------------- latency


def percentile(values: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile of ``values`` with linear interpolation.

    Matches ``numpy.percentile(values, q)`` (its default "linear" method).
    """
    if not values:
        raise ValueError("cannot take a percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    ordered = sorted(float(v) for v in values)
    position = (len(ordered) - 1) * q / 100.0
    lo = math.floor(position)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (position - lo)


def latency_percentiles(
    latencies: Sequence[float], quantiles: Sequence[float] = (50, 95, 99)
) -> dict[str, float]:
    """Return ``{"p50": ..., "p95": ..., "p99": ...}`` for ``latencies`` (any unit)."""
    return {f"p{q:g}": percentile(latencies, q) for q in quantiles}


# --------------------------------------------------------------------------- comparisons


def paired_difference(scores: Sequence[float], baseline: Sequence[float], resamples: int = 2000,
                      level: float = 0.95, seed: int = 0) -> dict[str, float | int]:
    """How much better `scores` is than `baseline` on the same questions, and whether that
    could be chance.

    Returns the mean per-question difference, a percentile-bootstrap confidence
    interval for it (questions resampled with replacement, `resamples` times, seeded
    so a report is reproducible), and how many questions differ at all and in which
    direction. An interval containing 0 means the gold set cannot tell them apart.
    """
    import numpy as np

    if len(scores) != len(baseline):
        raise ValueError(f"paired scores differ in length: {len(scores)} vs {len(baseline)}")
    if not scores:
        raise ValueError("cannot compare systems on no questions")
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    diff = np.asarray(scores, dtype=float) - np.asarray(baseline, dtype=float)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    return {
        "difference": float(diff.mean()),
        "low": float(np.percentile(means, tail)),
        "high": float(np.percentile(means, 100 - tail)),
        "level": level,
        "questions": len(diff),
        "differ": int((diff != 0).sum()),
        "better": int((diff > 0).sum()),
        "worse": int((diff < 0).sum()),
    }
