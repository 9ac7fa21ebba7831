"""The neural reader: a span model this project trains itself, run with ONNX Runtime.

Reading one question:

1. the evidence sentences are ranked by how close they are to the question (MiniLM
   cosine, plus the share of the question's words they hold, plus their passage's rank);
2. around each of the best `windows` sentences a window of neighbouring sentences of the
   same article is filled up to the model's length, skipping sentences already read;
3. all windows go through the model in one batched call; each window's best spans that
   stay inside one sentence (a citation quotes one sentence) are decoded back to exact
   character offsets through the tokenizer's offset mapping. The feature-based reader's
   best spans in those windows are candidates too, scored by the model's own logits (on
   bundled dev, F1 0.729 -> 0.749; it finds "10,000 to 12,000" where the model's own top
   three spans of that sentence were runner-ups);
4. a logistic calibration fitted on dev questions turns a span's scores (its logits
   against the window's no-answer logits and against the best span of the question)
   into the probability that it is right; `aggregate` abstains below the threshold.

The model, its tokenizer, the calibration and the threshold live in `reader_model/`,
whose manifest says how they were made (`article-qa reader ...`, see the README).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.answers import ASKED_KINDS, SpanAnswer, value_kinds
from service.encoding import (
    MAX_ANSWER_TOKENS,
    Encoded,
    SpanScore,
    WindowEncoder,
    best_spans,
    load_tokenizer,
    pad_batch,
)
from service.retrieval import Evidence

MODEL_DIR = Path(__file__).with_name("reader_model")
MODEL_FILE = "reader.int8.onnx"
WINDOWS = 4  # windows read per question
SPANS_PER_WINDOW = 3
# The feature reader's best spans, added to the model's own as candidates.
PROPOSALS = 5
QUESTION_CACHE = 1024
# The features the calibration weighs, in order (see `span_features`).
CALIBRATION_FEATURES = ("margin", "gap", "null_gap", "span_prob", "seed_rank", "seed_score",
                        "missing", "missing_specific", "sentence_overlap", "type_match",
                        "span_words", "feature_reader")
_WORD_RE = re.compile(r"[^\W_]+")


class ReaderModelError(RuntimeError):
    """The reader model directory is missing or unusable; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class Window:
    """Consecutive evidence sentences of one article, read together."""

    sentences: tuple[int, ...]  # indexes into the evidence list
    passage: str  # their texts joined by single spaces
    starts: tuple[int, ...]  # where each sentence starts in `passage`
    seed_rank: int  # rank of the sentence the window was built around
    seed_score: float


@dataclass(frozen=True, slots=True)
class Candidate:
    """A decoded span with the raw values the calibration reads."""

    evidence: int
    start: int  # document offsets
    end: int
    features: tuple[float, ...]


def select_windows(encoder: WindowEncoder, question: str, question_vector: np.ndarray | None,
                   evidence: Sequence[Evidence], question_ids: list[int],
                   count: int = WINDOWS) -> list[Window]:
    """Windows around the `count` evidence sentences closest to the question: MiniLM
    cosine, plus half the share of the question's words the sentence holds, less a
    little per passage rank. Each window is its seed sentence grown with the article's
    neighbouring evidence sentences (after, then before) while they fit the model's
    length; a sentence is read in one window only."""
    if not evidence:
        return []
    words = {w for w in _WORD_RE.findall(question.lower()) if len(w) > 2}
    scores = []
    for ev in evidence:
        cos = float(ev.vector @ question_vector) if question_vector is not None else 0.0
        held = words & set(_WORD_RE.findall(ev.text.lower()))
        overlap = len(held) / len(words) if words else 0.0
        scores.append(cos + 0.5 * overlap - 0.02 * ev.passage_rank)
    order = sorted(range(len(evidence)), key=lambda k: -scores[k])
    by_place = {(ev.doc_id, ev.ord): k for k, ev in enumerate(evidence)}
    budget = encoder.budget(question_ids)
    cost = {}

    def pieces(k: int) -> int:
        if k not in cost:
            cost[k] = len(encoder.passage_pieces(evidence[k].text)[0])
        return cost[k]

    taken: set[int] = set()
    windows = []
    for rank, seed in enumerate(order):
        if len(windows) == count:
            break
        if seed in taken:
            continue
        doc_id = evidence[seed].doc_id
        members = [seed]
        used = pieces(seed)
        grown = True
        while grown:
            grown = False
            for ord_ in (evidence[members[-1]].ord + 1, evidence[members[0]].ord - 1):
                k = by_place.get((doc_id, ord_))
                if k is None or k in taken or used + pieces(k) + 1 > budget:
                    continue
                used += pieces(k) + 1
                members = [*members, k] if ord_ > evidence[members[-1]].ord else [k, *members]
                grown = True
        taken.update(members)
        texts = [evidence[k].text for k in members]
        starts, pos = [], 0
        for t in texts:
            starts.append(pos)
            pos += len(t) + 1
        windows.append(Window(tuple(members), " ".join(texts), tuple(starts), rank, scores[seed]))
    return windows


def encode_window(encoder: WindowEncoder, question_ids: list[int], window: Window
                  ) -> tuple[Encoded, np.ndarray]:
    """The window's model input, and each wordpiece's sentence (-1 outside the passage)."""
    ids, offsets = encoder.passage_pieces(window.passage)
    budget = encoder.budget(question_ids)
    enc = encoder.assemble(question_ids, ids[:budget], offsets[:budget])
    seg = np.full(len(enc.input_ids), -1, dtype=np.int64)
    passage = enc.offsets[:, 0] >= 0
    seg[passage] = np.searchsorted(np.asarray(window.starts[1:], dtype=np.int64),
                                   enc.offsets[passage, 0], side="right")
    return enc, seg


def load_manifest(model_dir: Path = MODEL_DIR) -> dict:
    path = model_dir / "manifest.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReaderModelError(
            f"the reader model's manifest {path} is missing or unreadable ({exc}); reinstall "
            "the package or rebuild the model with `make reader`") from None


def _session(path: Path, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for a bad file
        raise ReaderModelError(
            f"the reader model {path} cannot be loaded ({exc.__class__.__name__}); rebuild "
            "it with `make reader`") from None


def _by_sentence(spans: Sequence[SpanAnswer]) -> dict[tuple[str, int], list[SpanAnswer]]:
    out: dict[tuple[str, int], list[SpanAnswer]] = {}
    for s in spans:
        out.setdefault((s.evidence.doc_id, s.evidence.start), []).append(s)
    return out


def _proposed_spans(window: Window, evidence: Sequence[Evidence],
                    proposed: dict[tuple[str, int], list[SpanAnswer]], start_logits: np.ndarray,
                    end_logits: np.ndarray, offsets: np.ndarray,
                    seen: set[tuple[int, int]]) -> list[SpanScore]:
    """Another reader's spans that lie in `window`, scored by the model's logits (their
    first wordpiece's start logit plus their last one's end logit). A span whose edges
    are not wordpiece edges in the window (cut off, or mid-word) is left out."""
    out = []
    starts = {int(a): t for t, a in enumerate(offsets[:, 0]) if a >= 0}
    ends = {int(b): t for t, b in enumerate(offsets[:, 1]) if offsets[t, 0] >= 0}
    for sentence, k in enumerate(window.sentences):
        ev = evidence[k]
        for span in proposed.get((ev.doc_id, ev.start), ()):
            a = window.starts[sentence] + span.start - ev.start
            b = window.starts[sentence] + span.end - ev.start
            ta, tb = starts.get(a), ends.get(b)
            if ta is None or tb is None or not 0 <= tb - ta < MAX_ANSWER_TOKENS \
                    or (a, b) in seen:
                continue
            seen.add((a, b))
            out.append(SpanScore(a, b, float(start_logits[ta] + end_logits[tb])))
    return out


def _agreement(spans: Sequence[SpanAnswer], start: int, end: int) -> float:
    """The best confidence another reader gave a span of the same sentence, scaled by how
    much of the two character ranges they share (intersection over union)."""
    best = 0.0
    for s in spans:
        shared = min(end, s.end) - max(start, s.start)
        if shared > 0:
            best = max(best, s.confidence * shared / (max(end, s.end) - min(start, s.start)))
    return best


class Reader:
    """Extracts cited answer spans from evidence sentences with the trained span model."""

    def __init__(self, nlp, threshold: float | None = None, model_dir: Path = MODEL_DIR,
                 model_file: str | None = None, windows: int = WINDOWS,
                 threads: int | None = None, question_cache: int = QUESTION_CACHE,
                 calibrated: bool = True, assist=None, proposals: int = PROPOSALS):
        self.nlp = nlp
        # The feature-based reader's confidence in a span is one calibration input: it
        # knows answer types and question-word alignment the small model misses.
        # It also keeps the question parses both readers use.
        if assist is None:
            from service.feature_reader import FeatureReader

            assist = FeatureReader(nlp, question_cache=question_cache)
        self.assist = assist
        self.manifest = load_manifest(model_dir)
        self.session = _session(model_dir / (model_file or self.manifest.get("model", MODEL_FILE)),
                                threads)
        self.encoder = WindowEncoder(load_tokenizer(model_dir / "tokenizer.json"),
                                     int(self.manifest["max_len"]))
        # `calibrated=False` reads raw scores, for fitting a new calibration.
        calibration = (self.manifest.get("calibration") or {}) if calibrated else {}
        if calibration and tuple(calibration.get("features", ())) != CALIBRATION_FEATURES:
            raise ReaderModelError(
                f"the reader model in {model_dir} was calibrated on other features "
                f"({', '.join(calibration.get('features', ()))}); recalibrate it with "
                "`article-qa reader finetune` (see `make reader`)")
        self.weights = np.asarray(calibration.get("weights", [1.0] + [0.0] * (
            len(CALIBRATION_FEATURES) - 1)), dtype=np.float64)
        self.bias = float(calibration.get("bias", 0.0))
        self.fitted_threshold = float(self.manifest.get("threshold", 0.5))
        self.threshold = self.fitted_threshold if threshold is None else threshold
        self.windows = windows
        self.proposals = proposals

    # -- reading ---------------------------------------------------------------
    def read(self, question: str, question_vector: np.ndarray | None,
             evidence: Sequence[Evidence], df=None, n_docs: int | None = None,
             limit: int = 40) -> list[SpanAnswer]:
        """Answer spans for `question` from `evidence`, best first, with calibrated
        confidences. `df`/`n_docs` are accepted for the pipeline's reader interface."""
        analysed = self._analyse(question)
        candidates = self.candidates(question, question_vector, evidence, analysed, df, n_docs)
        if not candidates:
            return []
        probs = self.calibrate(np.asarray([c.features for c in candidates]))
        spans = []
        for c, p in zip(candidates, probs):
            ev = evidence[c.evidence]
            text = ev.text[c.start - ev.start:c.end - ev.start]
            spans.append(SpanAnswer(evidence=ev, start=c.start, end=c.end, text=text,
                                    score=c.features[0], confidence=float(p),
                                    answer_type=analysed.answer_type))
        spans.sort(key=lambda s: -s.confidence)
        return spans[:limit]

    def _analyse(self, question: str):
        return self.assist.analysed(question)

    def candidates(self, question: str, question_vector: np.ndarray | None,
                   evidence: Sequence[Evidence], analysed=None, df=None,
                   n_docs: int | None = None) -> list[Candidate]:
        """Every decoded span of the question's windows with its calibration features."""
        analysed = analysed or self._analyse(question)
        q_ids = self.encoder.question_ids(question)
        windows = select_windows(self.encoder, question, question_vector, evidence, q_ids,
                                 self.windows)
        if not windows:
            return []
        assist_spans = self.assist.read(question, question_vector, evidence, df=df,
                                        n_docs=n_docs, limit=20)
        assisted = _by_sentence(assist_spans)
        encoded, segments = zip(*(encode_window(self.encoder, q_ids, w) for w in windows))
        inputs = pad_batch(list(encoded))
        start_logits, end_logits = self.session.run(None, inputs)
        proposed = _by_sentence(assist_spans[:self.proposals])
        decoded = []
        for k, (w, enc) in enumerate(zip(windows, encoded)):
            n = len(enc.input_ids)
            spans, null = best_spans(start_logits[k, :n], end_logits[k, :n], enc.offsets,
                                     segments[k], top=SPANS_PER_WINDOW)
            # The feature reader's best spans are candidates too, scored by the model.
            extra = _proposed_spans(w, evidence, proposed, start_logits[k, :n],
                                    end_logits[k, :n], enc.offsets, {(s.start, s.end)
                                                                     for s in spans})
            decoded.append((w, enc, spans, extra, null))
        best = max((s.score for _, _, spans, _, _ in decoded for s in spans), default=0.0)
        min_null = min(null for *_, null in decoded)
        # A softmax over every decoded span and every window's no-answer option.
        pool = [s.score for _, _, spans, _, _ in decoded for s in spans] + \
            [null for *_, null in decoded]
        top = max(pool)
        norm = math.log(sum(math.exp(v - top) for v in pool)) + top
        terms = set(analysed.terms) | set(analysed.lemmas)
        asked = ASKED_KINDS.get(analysed.answer_type)
        out = []
        for w, _enc, spans, extra, null in decoded:
            words = set(_WORD_RE.findall(w.passage.lower()))
            lowered = w.passage.lower()
            # What the old feature reader knew best: a question whose words, names or
            # numbers the passage does not hold is seldom answered by it.
            missing = (sum(1 for t, lemma in zip(analysed.terms, analysed.lemmas)
                           if t not in words and lemma not in words) / len(analysed.terms)
                       if analysed.terms else 0.0)
            missing_specific = float(sum(1 for t in analysed.specific if t not in lowered))
            for s in [*spans, *extra]:
                sentence = int(np.searchsorted(np.asarray(w.starts[1:]), s.start, side="right"))
                k = w.sentences[sentence]
                ev = evidence[k]
                offset = w.starts[sentence]
                start, end = ev.start + s.start - offset, ev.start + s.end - offset
                if not ev.start <= start < end <= ev.end:
                    continue
                held = terms & set(_WORD_RE.findall(ev.text.lower()))
                overlap = len(held) / len(terms) if terms else 0.0
                text = ev.text[start - ev.start:end - ev.start]
                span_words = _WORD_RE.findall(text.lower())
                # The old reader's strongest signal: does the span state a value of the
                # kind asked (a date for "when")? 1 yes, -1 no, 0 when any phrase may do.
                type_match = 0.0 if asked is None else (1.0 if value_kinds(SpanAnswer(
                    ev, start, end, text, 0.0, 0.0, analysed.answer_type)) & asked else -1.0)
                features = (s.score - null, s.score - best, s.score - min_null,
                            math.exp(s.score - norm), float(w.seed_rank), w.seed_score,
                            missing, missing_specific, overlap, type_match,
                            math.log1p(len(span_words)),
                            _agreement(assisted.get((ev.doc_id, ev.start), ()), start, end))
                out.append(Candidate(k, start, end, features))
        return out

    def calibrate(self, features: np.ndarray) -> np.ndarray:
        """P(right) of candidates from their `CALIBRATION_FEATURES` rows."""
        z = features @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
