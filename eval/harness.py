"""The evaluation harness: runs systems over a gold set and scores every answer.

A *system* is anything that turns a question into an answer in the shape of
``POST /ask``: a :class:`service.qa.QAPipeline` (or its ``ask``), an
:class:`HttpSystem` talking to a running server, or any callable returning a
:class:`service.qa.QAResult` or the response body as a dict. Every result is
converted to the ``/ask`` body first, so in-process and HTTP runs are scored by
the same code.

All rates are fractions in [0, 1]; latencies are milliseconds. Definitions
(``None`` wherever a metric has no question to be computed on):

* ``exact``, ``f1`` — official SQuAD 2.0 EM/F1 over all questions (an
  abstention scores 1 on an unanswerable question, 0 elsewhere);
  ``has_ans_*`` over answerable questions only; ``no_ans_accuracy`` — share of
  unanswerable questions the system abstained on.
* ``correct`` (per question) — answerable and F1 >= 0.5, or unanswerable and
  abstained; ``accuracy`` is its mean.
* ``abstention_precision`` / ``abstention_recall`` — positive class "abstained".
* ``evidence_accuracy`` — over answerable questions the system answered: the
  sentence quoted by the top answer's first citation contains a gold answer.
* ``citation_validity`` — share of all citations (every answer, not only the top
  one) whose offsets reproduce their span and quote in the document text.
* ``recall@1``, ``recall@5``, ``mrr`` — over answerable questions with gold
  doc_ids, on the documents of the returned passages in rank order; a passage's
  near-duplicates in other articles (``also_in``) count at its rank.
* ``answer_recall@1``, ``answer_recall@5`` — over answerable questions: a gold
  answer occurs (normalised, whole tokens) in one of the first k returned
  passages. Document recall saturates on a corpus of a few articles; this says
  whether retrieval found the passage that answers.
* ``conflict_precision`` / ``conflict_recall`` — positive class "the articles
  disagree" (``conflict`` in the gold set, ``conflict`` in the /ask body):
  precision over the questions the system reported a conflict on, recall over
  the questions the gold set marks.
* ``ece`` — expected calibration error (10 bins) of (top answer's confidence,
  top answer correct) over the questions the system answered; abstentions carry
  no confidence claim about an answer, so they are not in it.
* ``latency_p50_ms`` / ``latency_p95_ms`` — wall clock per question around the
  system call (HTTP included in URL mode), after one untimed warm-up call.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from eval import metrics
from eval.gold import QUESTION_TYPES, GoldQuestion

CORRECT_F1 = 0.5
RECALL_KS = (1, 5)
CALIBRATION_BINS = 10

# Metric names of the "overall" block, and which of them --fail-under may gate on.
HIGHER_IS_BETTER = (
    "exact", "f1", "has_ans_exact", "has_ans_f1", "no_ans_accuracy", "accuracy",
    "abstention_precision", "abstention_recall", "evidence_accuracy", "citation_validity",
    "conflict_precision", "conflict_recall", *(f"recall@{k}" for k in RECALL_KS), "mrr",
    *(f"answer_recall@{k}" for k in RECALL_KS),
)
# The stages of an answer whose time /ask reports in `timings_ms`.
STAGES = ("embed", "retrieve", "read")
LOWER_IS_BETTER = ("ece", "latency_p50_ms", "latency_p95_ms",
                   *(f"{stage}_p50_ms" for stage in STAGES))
COUNTS = ("questions", "answerable", "unanswerable", "answered", "abstained", "errors",
          "citations", "conflict_questions", "conflicts_reported", "retrieval_questions",
          "calibration_questions")
METRIC_NAMES = HIGHER_IS_BETTER + LOWER_IS_BETTER


class EvalError(Exception):
    """An evaluation cannot run (unreachable server, bad input); the message says why."""


# --------------------------------------------------------------------------- systems


class HttpSystem:
    """A running `article-qa serve`: POST {url}/ask per question, GET /documents/{id} for texts."""

    def __init__(self, url: str, timeout: float = 120.0) -> None:
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise EvalError(f"--url {url!r} is not an http(s) URL; "
                            "give one like http://127.0.0.1:8000")
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError:
            raise  # the server answered; the caller decides what a 4xx/5xx means
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise EvalError(f"cannot reach {self.url} ({reason}); start the server with "
                            "`article-qa serve` or fix --url") from None
        except ValueError as exc:
            raise EvalError(f"{self.url}{path} did not return JSON ({exc}); "
                            "is --url an article-qa server?") from None

    def check(self) -> dict:
        """GET /health; raises EvalError when the server is unreachable or not article-qa."""
        try:
            health = self._request("GET", "/health")
        except urllib.error.HTTPError as exc:
            raise EvalError(f"{self.url}/health answered HTTP {exc.code}; "
                            "is --url an article-qa server?") from None
        if not isinstance(health, dict) or health.get("status") != "ok":
            raise EvalError(f"{self.url}/health did not report status ok: {health!r}")
        return health

    def __call__(self, question: str) -> dict:
        try:
            return self._request("POST", "/ask", {"question": question})
        except urllib.error.HTTPError as exc:
            detail = _http_detail(exc)
            raise QuestionFailed(f"HTTP {exc.code}: {detail}") from None

    def document_text(self, doc_id: str) -> str | None:
        """The document's text, or None when the server does not know it."""
        try:
            return self._request("GET", f"/documents/{urllib.parse.quote(doc_id, safe='')}")["text"]
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise EvalError(f"GET /documents/{doc_id} answered HTTP {exc.code}: "
                            f"{_http_detail(exc)}") from None


class QuestionFailed(Exception):
    """One question could not be answered (e.g. a 4xx); recorded, the run goes on."""


def _http_detail(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read()).get("detail", exc.reason))
    except (ValueError, AttributeError, OSError):
        return str(exc.reason)


def as_body(result) -> dict:
    """A QAResult, or an /ask response body, as the /ask response body (plain dict)."""
    if isinstance(result, Mapping):
        return dict(result)
    import msgspec

    from service.schemas import ask_response

    return msgspec.to_builtins(ask_response(result))


def _callable(system) -> Callable[[str], object]:
    return system.ask if hasattr(system, "ask") else system


def _index_documents(systems: Mapping[str, object]) -> Callable[[str], str | None] | None:
    """Document texts from the first in-process pipeline among `systems`, if any."""
    for system in systems.values():
        index_of = getattr(system, "index", None)
        if index_of is not None and hasattr(system, "ask"):
            from indexing.errors import DocumentNotFoundError

            def text(doc_id: str, pipeline=system) -> str | None:
                try:
                    return pipeline.index.document(doc_id).text
                except DocumentNotFoundError:
                    return None
            return text
        if isinstance(system, HttpSystem):
            return system.document_text
    return None


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class QuestionResult:
    """One system's answer to one gold question, scored. One line of results.jsonl."""

    system: str
    id: str
    question: str
    type: str
    answerable: bool
    gold_answers: tuple[str, ...]
    gold_doc_ids: tuple[str, ...]
    prediction: str
    """The top answer's text; "" when the system abstained."""
    abstained: bool
    confidence: float | None
    """The top answer's confidence; None when the system abstained."""
    exact: int
    f1: float
    correct: bool
    evidence_correct: bool | None
    """None unless the question is answerable and the system answered."""
    citations: tuple[dict, ...]
    """The top answer's citations."""
    citations_checked: int
    """Citations of every answer checked against the document text."""
    citations_valid: int
    ranked_doc_ids: tuple[str, ...]
    recall: dict[str, float] | None
    """{"recall@1": ..., "recall@5": ...}; None without gold doc_ids."""
    reciprocal_rank: float | None
    latency_ms: float
    answer_rank: int | None = None
    """Rank of the first returned passage holding a gold answer, 0 if none; None when
    the question is unanswerable."""
    conflict: bool = False
    """The system reported that the articles disagree."""
    gold_conflict: bool = False
    """The gold set marks the question as one the articles disagree on."""
    error: str | None = None
    """Why the system gave no answer at all (e.g. an HTTP 4xx); counted as abstaining."""
    stages_ms: dict[str, float] | None = None
    """The system's own `timings_ms` for the stages of an answer (embed, retrieve, read)."""


@dataclass(frozen=True, slots=True)
class EvalRun:
    """Every per-question result and the metrics aggregated from them."""

    systems: tuple[str, ...]
    questions: int
    results: tuple[QuestionResult, ...]
    metrics: dict[str, dict]
    """{system: {"overall": {...}, "by_type": {type: {...}}, "reliability": [bins]}}."""
    started_at: str
    duration_s: float
    meta: dict = field(default_factory=dict)

    def for_system(self, system: str) -> list[QuestionResult]:
        return [r for r in self.results if r.system == system]

    def write_jsonl(self, path: str | Path) -> Path:
        """Write one JSON line per question x system; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as handle:
            for r in self.results:
                handle.write(json.dumps(asdict(r), ensure_ascii=False) + "\n")
        return path


# --------------------------------------------------------------------------- scoring


def _ranked_doc_ids(body: Mapping) -> tuple[str, ...]:
    ranked: list[str] = []
    for p in body.get("passages") or ():
        ranked.append(p["doc_id"])
        ranked.extend(p.get("also_in") or ())
    return tuple(ranked)


def score_answer(gold: GoldQuestion, system: str, body: Mapping, latency_ms: float,
                 document_text: Callable[[str], str | None] | None,
                 error: str | None = None) -> QuestionResult:
    """Score one /ask response body against its gold question."""
    answers = body.get("answers") or []
    prediction = body.get("answer") or ""
    abstained = metrics.is_abstention(prediction)
    golds = list(gold.answers)
    exact = metrics.exact_match("" if abstained else prediction, golds)
    f1 = metrics.f1("" if abstained else prediction, golds)
    correct = (gold.answerable and not abstained and f1 >= CORRECT_F1) or (
        not gold.answerable and abstained)
    top = answers[0] if answers and not abstained else None
    top_citations = tuple(top.get("citations") or ()) if top else ()
    evidence = None
    if gold.answerable and top is not None:
        evidence = bool(top_citations) and metrics.quote_contains_answer(
            top_citations[0].get("quote") or "", golds)
    checked = valid = 0
    if document_text is not None:
        for answer in answers:
            for citation in answer.get("citations") or ():
                checked += 1
                text = document_text(citation.get("doc_id", ""))
                valid += text is not None and metrics.citation_is_valid(text, citation)
    ranked = _ranked_doc_ids(body)
    recall = rr = None
    if gold.answerable and gold.doc_ids:
        recall = {f"recall@{k}": metrics.recall_at_k(ranked, gold.doc_ids, k) for k in RECALL_KS}
        rr = metrics.reciprocal_rank(ranked, gold.doc_ids)
    answer_rank = None
    if gold.answerable:
        answer_rank = metrics.answer_rank(
            [p.get("text") or "" for p in body.get("passages") or ()], golds)
    confidence = None
    if top is not None:
        confidence = float(top.get("confidence", body.get("confidence", 0.0)))
    return QuestionResult(
        system=system, id=gold.id, question=gold.question, type=gold.type,
        answerable=gold.answerable, gold_answers=gold.answers, gold_doc_ids=gold.doc_ids,
        prediction="" if abstained else prediction, abstained=abstained, confidence=confidence,
        exact=exact, f1=f1, correct=correct, evidence_correct=evidence,
        citations=top_citations, citations_checked=checked, citations_valid=valid,
        ranked_doc_ids=ranked, recall=recall, reciprocal_rank=rr,
        latency_ms=round(latency_ms, 3), answer_rank=answer_rank, conflict=bool(body.get("conflict")),
        gold_conflict=gold.conflict, error=error,
        stages_ms={k: float(v) for k, v in (body.get("timings_ms") or {}).items()
                   if k in (*STAGES, "cached")} or None,
    )


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def aggregate(results: Sequence[QuestionResult]) -> dict:
    """The metrics of one group of results (see the module docstring for definitions)."""
    answerable = [r for r in results if r.answerable]
    unanswerable = [r for r in results if not r.answerable]
    answered = [r for r in results if not r.abstained]
    predictions = {r.id: r.prediction for r in results}
    gold = {r.id: list(r.gold_answers) for r in results}
    abst = metrics.abstention_scores(predictions, gold)
    checked = sum(r.citations_checked for r in results)
    retrieval = [r for r in results if r.recall is not None]
    pairs = [(min(max(r.confidence, 0.0), 1.0), r.correct) for r in answered
             if r.confidence is not None and not math.isnan(r.confidence)]
    calibration = metrics.calibration(pairs, CALIBRATION_BINS) if pairs else None
    latencies = [r.latency_ms for r in results]
    evidence = [r.evidence_correct for r in results if r.evidence_correct is not None]
    reported = [r for r in results if r.conflict]
    disputed = [r for r in results if r.gold_conflict]
    out: dict = {
        "questions": len(results),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "answered": len(answered),
        "abstained": len(results) - len(answered),
        "errors": sum(r.error is not None for r in results),
        "exact": _mean(r.exact for r in results),
        "f1": _mean(r.f1 for r in results),
        "has_ans_exact": _mean(r.exact for r in answerable),
        "has_ans_f1": _mean(r.f1 for r in answerable),
        "no_ans_accuracy": _mean(float(r.abstained) for r in unanswerable),
        "accuracy": _mean(float(r.correct) for r in results),
        "abstention_precision": abst.precision,
        "abstention_recall": abst.recall,
        "evidence_accuracy": _mean(float(e) for e in evidence),
        "citations": checked,
        "citation_validity": sum(r.citations_valid for r in results) / checked if checked else None,
        "conflict_questions": len(disputed),
        "conflicts_reported": len(reported),
        "conflict_precision": _mean(float(r.gold_conflict) for r in reported),
        "conflict_recall": _mean(float(r.conflict) for r in disputed),
        "retrieval_questions": len(retrieval),
        **{f"recall@{k}": _mean(r.recall[f"recall@{k}"] for r in retrieval) for k in RECALL_KS},
        "mrr": _mean(r.reciprocal_rank for r in retrieval),
        **{f"answer_recall@{k}": _mean(float(0 < r.answer_rank <= k) for r in answerable
                                       if r.answer_rank is not None) for k in RECALL_KS},
        "calibration_questions": len(pairs),
        "ece": calibration.ece if calibration else None,
        "latency_p50_ms": metrics.percentile(latencies, 50) if latencies else None,
        "latency_p95_ms": metrics.percentile(latencies, 95) if latencies else None,
    }
    for stage in STAGES:
        # Cached answers report zero for every stage: they time the cache, not the stage.
        times = [r.stages_ms[stage] for r in results if r.stages_ms and stage in r.stages_ms
                 and not r.stages_ms.get("cached")]
        out[f"{stage}_p50_ms"] = metrics.percentile(times, 50) if times else None
    return out


def reliability_table(results: Sequence[QuestionResult]) -> list[dict]:
    """The ECE's reliability bins over the answered questions (empty list when none)."""
    pairs = [(min(max(r.confidence, 0.0), 1.0), r.correct) for r in results
             if not r.abstained and r.confidence is not None]
    if not pairs:
        return []
    return [asdict(b) for b in metrics.calibration(pairs, CALIBRATION_BINS).bins]


def summarize(results: Sequence[QuestionResult], systems: Sequence[str]) -> dict[str, dict]:
    """{system: {"overall", "by_type", "reliability"}} for every system in `systems`."""
    out = {}
    for system in systems:
        mine = [r for r in results if r.system == system]
        # The known types in their usual order, then any others the gold set uses.
        seen = dict.fromkeys(r.type for r in mine)
        types = [t for t in QUESTION_TYPES if t in seen] + [t for t in seen
                                                              if t not in QUESTION_TYPES]
        out[system] = {
            "overall": aggregate(mine),
            "by_type": {t: aggregate([r for r in mine if r.type == t]) for t in types},
            "reliability": reliability_table(mine),
        }
    return out


# --------------------------------------------------------------------------- running


def run_eval(questions: Sequence[GoldQuestion], systems: Mapping[str, object],
             progress: bool = True,
             document_text: Callable[[str], str | None] | None = None) -> EvalRun:
    """Ask every system every question and score the answers.

    `systems` maps a name to a QAPipeline, an HttpSystem, or a callable
    ``question -> QAResult | /ask body``. Document texts for checking citations
    come from `document_text`, else from the first pipeline's index (or server);
    citations are not checked when there is neither. A question the system
    rejects (``QuestionFailed``, ``ValueError``) is recorded with its error and
    counted as an abstention; an ``EvalError`` (server gone) stops the run.
    """
    from tqdm import tqdm

    if not questions:
        raise EvalError("no questions to evaluate; the gold set is empty")
    if not systems:
        raise EvalError("no systems to evaluate")
    fetch = document_text or _index_documents(systems)
    cache: dict[str, str | None] = {}

    def cached_text(doc_id: str) -> str | None:
        if doc_id not in cache:
            cache[doc_id] = fetch(doc_id)
        return cache[doc_id]

    started = datetime.now(UTC)
    t_start = time.perf_counter()
    results: list[QuestionResult] = []
    # disable=None: the bar shows on a terminal and stays out of logs and pipes.
    bar = tqdm(total=len(questions) * len(systems), unit="q", disable=None if progress else True,
               dynamic_ncols=True)
    try:
        for name, system in systems.items():
            ask = _callable(system)
            bar.set_description(name)
            _warm_up(ask, questions[0].question)
            for gold in questions:
                error = None
                t0 = time.perf_counter()
                try:
                    body = as_body(ask(gold.question))
                except (QuestionFailed, ValueError) as exc:
                    body, error = {}, str(exc) or exc.__class__.__name__
                latency = (time.perf_counter() - t0) * 1000
                results.append(score_answer(gold, name, body, latency,
                                            cached_text if fetch else None, error))
                bar.update(1)
    finally:
        bar.close()
    names = tuple(systems)
    return EvalRun(systems=names, questions=len(questions), results=tuple(results),
                   metrics=summarize(results, names),
                   started_at=started.isoformat(timespec="seconds"),
                   duration_s=round(time.perf_counter() - t_start, 3))


def _warm_up(ask: Callable[[str], object], question: str) -> None:
    # First calls pay for lazy loading (FAISS pages, spaCy pipes, HTTP connection);
    # keep that out of the latency percentiles.
    try:
        ask(question)
    except (QuestionFailed, ValueError):
        pass


# --------------------------------------------------------------------------- thresholds


def parse_thresholds(spec: str) -> dict[str, float]:
    """Parse "f1=0.5,citation_validity=1.0" into {metric: minimum}; raises EvalError."""
    thresholds: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep:
            raise EvalError(f"--fail-under item {part!r} is not NAME=VALUE, e.g. f1=0.5")
        if name in LOWER_IS_BETTER:
            raise EvalError(f"--fail-under {name}: lower is better for {name}, so a minimum "
                            f"makes no sense; gate on one of: {', '.join(HIGHER_IS_BETTER)}")
        if name not in HIGHER_IS_BETTER:
            raise EvalError(f"--fail-under: unknown metric {name!r}; "
                            f"use one of: {', '.join(HIGHER_IS_BETTER)}")
        try:
            minimum = float(value)
        except ValueError:
            raise EvalError(f"--fail-under {name}: {value.strip()!r} is not a number") from None
        if not 0.0 <= minimum <= 1.0:
            raise EvalError(f"--fail-under {name}={value.strip()}: metrics are fractions in "
                            "[0, 1] (0.5, not 50)")
        thresholds[name] = minimum
    if not thresholds:
        raise EvalError("--fail-under is empty; give NAME=VALUE pairs, e.g. f1=0.5")
    return thresholds


def check_thresholds(overall: Mapping[str, object], thresholds: Mapping[str, float]
                     ) -> list[str]:
    """One message per metric below its minimum (or undefined on this gold set)."""
    failures = []
    for name, minimum in thresholds.items():
        value = overall.get(name)
        if value is None:
            failures.append(f"{name} is undefined on this gold set (minimum {minimum:g})")
        elif value < minimum:
            failures.append(f"{name} = {value:.4f} is under {minimum:g}")
    return failures
