"""The feature-based extractive reader (before the neural one; kept for comparison): picks the shortest verbatim span of the evidence that answers.

Candidate spans come from each sentence's stored parse (entities, noun chunks,
dependency subtrees with and without their leading preposition or subordinator) and
from number/date patterns over its text. A logistic model scores each candidate over
lexical, positional, syntactic and answer-type features, and a sentence model adds
how likely the candidate's sentence is to hold the answer at all (picking the sentence
is the harder half of reading: trained on sentence labels, it finds the answering
sentence more often than the span model's sentence features do). A third logistic
model turns the best candidate's score plus evidence-level signals (how much of the
question the evidence covers at all) into a calibrated probability of being right,
which is what abstention compares against `FeatureReader.threshold`. All three are fitted by
`eval/train_reader.py` and stored in `reader_model.json`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from spacy.attrs import (
    DEP,
    ENT_IOB,
    ENT_TYPE,
    HEAD,
    IDX,
    IS_PUNCT,
    LEMMA,
    LENGTH,
    LIKE_NUM,
    LOWER,
    POS,
)
from spacy.parts_of_speech import NAMES as POS_NAMES

from service.answers import SpanAnswer
from service.cache import LRUCache
from service.question import INCREMENT, Question, analyse, is_negation, slot_relation
from service.retrieval import Evidence

MODEL_PATH = Path(__file__).with_name("feature_reader_model.json")
MAX_SENTENCES = 8  # sentences whose spans are scored, best by cosine + overlap
MAX_SPAN_TOKENS = 25
TOKEN_TABLE_CACHE = 4096  # sentences whose token tables are kept (see FeatureReader.token_table)
QUESTION_CACHE = 1024  # analysed questions (a chat re-reads its question on every turn)
WINDOW = 4  # tokens either side of a span that count as its context

_ENT_LABELS = ("PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART",
               "LAW", "LANGUAGE", "DATE", "TIME", "PERCENT", "MONEY", "QUANTITY", "ORDINAL",
               "CARDINAL")
_TYPE_GROUPS = ("num", "duration", "date", "person", "organisation", "place", "why", "how",
                "other")
_GROUP_OF = {"count": "num", "quantity": "num", "money": "num", "percent": "num"}
_ROOT_POS = ("NOUN", "PROPN", "NUM", "VERB", "ADJ", "ADV", "PRON")
_ROOT_DEPS = (("nsubj", "nsubjpass"), ("dobj",), ("pobj",), ("attr", "acomp"), ("appos",),
              ("compound",), ("nummod", "quantmod"), ("npadvmod", "tmod"), ("conj",),
              ("ROOT",), ("advcl", "xcomp", "ccomp", "pcomp"), ("acl", "relcl"), ("prep",),
              ("poss",), ("amod",))
_SUBTREE_DEPS = frozenset(
    "nsubj nsubjpass dobj pobj attr acomp appos conj advcl xcomp ccomp pcomp acl relcl prep "
    "npadvmod nummod poss amod dative oprd agent advmod quantmod".split())
_NP_MODS = frozenset({"det", "amod", "compound", "nummod", "poss", "quantmod", "nmod", "case",
                      "predet", "nn"})
_LEADING = frozenset({"ADP", "SCONJ", "PART", "CCONJ", "DET"})
_CROSSED = ("is_ent", "has_num", "root_verb", "starts_function", "is_chunk", "log_len",
            "root_propn", "type_match")
_MONTHS = ("january|february|march|april|may|june|july|august|september|october|november|"
           "december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec")
_NUMBER = (r"(?:[$€£]\s?)?\d[\d,]*(?:\.\d+)?(?:\s?(?:%|percent|million|billion|thousand|"
           r"hundred|trillion))?")
_APPROX = r"(?:(?:about|approximately|around|nearly|roughly|some|over|under|almost|up to|" \
          r"more than|less than|fewer than|at least|as many as|an estimated)\s+)?"
_PATTERNS = (
    ("num", re.compile(rf"\b(?:between\s+)?{_APPROX}{_NUMBER}(?:\s*(?:to|and|-|–|or)\s*"
                       rf"{_NUMBER})?", re.IGNORECASE)),
    ("date", re.compile(rf"\b(?:(?:early|mid|late)[\s-])?(?:{_MONTHS})\.?(?:\s+\d{{1,2}}"
                        rf"(?:st|nd|rd|th)?)?(?:,?\s+\d{{4}})?\b|\b\d{{1,2}}\s+(?:{_MONTHS})"
                        rf"(?:\s+\d{{4}})?\b|\b(?:1[5-9]|20)\d{{2}}s?\b", re.IGNORECASE)),
)
_RANGE_WORDS = frozenset("to and - – or".split())
_DATE_WORDS = frozenset(
    "monday tuesday wednesday thursday friday saturday sunday today yesterday tomorrow "
    "week month year weekend morning evening night spring summer autumn fall winter "
    "decade century ago".split())
_DURATION_UNITS = frozenset("second seconds minute minutes hour hours day days week weeks month "
                            "months year years decade decades century centuries hour-long".split())

SPAN_FEATURES: tuple[str, ...] = (
    # sentence-level
    "cos", "cos_gap", "cos_rank", "ovl", "ovl_gap", "ovl_frac", "bigram", "passage_score",
    "passage_rank", "root_match", "neg_mismatch", "swap", "opposed",
    # evidence-level (same for every candidate of a question)
    "max_cos", "max_ovl", "missing", "missing_specific",
    # span-level
    "span_q", "span_q_frac", "span_all_q", "left_q", "right_q", "dist", "no_match",
    "attach_q", "attach_q2", "len", "log_len", "long", "is_ent", "is_chunk", "is_subtree",
    "is_pattern", "is_single", "type_match", "type_mismatch", "pattern_match", "has_num",
    "has_propn", "starts_function", "starts_mark", "is_pron", "head_noun_near", "support",
    *(f"pos_{p}" for p in _ROOT_POS), *(f"dep_{d[0]}" for d in _ROOT_DEPS),
    "root_verb", "root_propn",
    "tree_dist", "ent_label_other", "anchor", "slot", "increment", "range_end",
    "increment_unasked",
    *(f"{g}_x_{f}" for g in _TYPE_GROUPS for f in _CROSSED),
    *(f"{g}_x_ent_{e}" for g in _TYPE_GROUPS for e in _ENT_LABELS),
    *(f"{g}_x_dep_{d[0]}" for g in _TYPE_GROUPS for d in _ROOT_DEPS),
)
CONFIDENCE_FEATURES: tuple[str, ...] = (
    "score", "margin", "max_cos", "max_ovl", "missing", "top_ovl", "top_cos", "type_match",
    "typed", "typed_unmatched", "support", "neg_mismatch", "share", "entropy",
    "missing_specific", "swap", "opposed", "sentence",
)
_ATTRS = [LOWER, LEMMA, POS, DEP, HEAD, ENT_TYPE, ENT_IOB, IDX, LENGTH, IS_PUNCT, LIKE_NUM]
_ANSWER_POS = frozenset({"NOUN", "PROPN", "NUM", "ADJ", "VERB", "X"})
_CONTENT_POS = frozenset({"NOUN", "PROPN", "NUM", "ADJ", "VERB", "ADV"})
_MARKS = frozenset({"because", "to", "amid", "due", "after", "for", "since", "as", "so"})
# Increment marks that say a number is added to another ("an additional 2,000"), not only
# that it is recent.
_ADDED = frozenset("additional addition more further another extra add reinforcement".split())
_NO_PUNCT = str.maketrans("", "", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~’‘“”")
_IX = {name: i for i, name in enumerate(SPAN_FEATURES)}
# Columns of the values `_sentence_candidates` computes, in the order it returns them.
_SPAN_VALUES = (
    "span_q", "span_q_frac", "span_all_q", "left_q", "right_q", "dist", "no_match", "attach_q",
    "attach_q2", "len", "log_len", "long", "is_ent", "is_chunk", "is_subtree", "is_pattern",
    "is_single", "type_match", "type_mismatch", "pattern_match", "has_num", "has_propn",
    "starts_function", "starts_mark", "is_pron", "head_noun_near", "root_verb", "root_propn",
    "tree_dist", "ent_label_other", "anchor", "slot", "increment", "range_end",
    "increment_unasked",
)
_SPAN_COLS = np.array([_IX[name] for name in _SPAN_VALUES])
_SENTENCE_VALUES = ("cos", "cos_gap", "cos_rank", "ovl", "ovl_gap", "ovl_frac", "bigram",
                    "passage_score", "passage_rank", "root_match", "neg_mismatch", "swap",
                    "opposed", "max_cos", "max_ovl", "missing", "missing_specific")
_SENTENCE_COLS = np.array([_IX[name] for name in _SENTENCE_VALUES])
# Span features the sentence model takes over a sentence's candidates, the largest value
# (does the sentence hold something of the asked type, near the question's words?) ...
_SENTENCE_MAX = ("type_match", "pattern_match", "is_ent", "head_noun_near", "no_match", "dist",
                 "tree_dist", "left_q", "right_q")
# ... and the smallest (how close its nearest candidate is to the matched words).
_SENTENCE_MIN = ("dist", "tree_dist")
SENTENCE_FEATURES: tuple[str, ...] = (
    *_SENTENCE_VALUES, *(f"max_{n}" for n in _SENTENCE_MAX), *(f"min_{n}" for n in _SENTENCE_MIN),
    "log_candidates",
)
_MAX_COLS = np.array([_IX[name] for name in _SENTENCE_MAX])
_MIN_COLS = np.array([_IX[name] for name in _SENTENCE_MIN])
_CROSSED_COLS = np.array([_IX[name] for name in _CROSSED])
_POS_COL = {p: _IX[f"pos_{p}"] for p in _ROOT_POS}
_DEP_COL = {d: _IX[f"dep_{deps[0]}"] for deps in _ROOT_DEPS for d in deps}


@dataclass(frozen=True, slots=True)
class Candidate:
    """A candidate span: tokens [first, last) of evidence sentence `sentence`."""

    sentence: int  # index into the evidence sequence
    first: int
    last: int
    # The answer shown for it (character offsets within the sentence): the span itself, or
    # for one end of a numeric range the whole range ("1,000" -> "between 1,000 and 3,000").
    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class Featurized:
    """Every candidate of one question with its span features and the evidence-level context."""

    question: Question
    candidates: tuple[Candidate, ...]
    features: np.ndarray  # float32[len(candidates), len(SPAN_FEATURES)]
    context: dict  # evidence-level values shared by all candidates

    def subset(self, rows: np.ndarray) -> Featurized:
        """The candidates at `rows`, with the evidence-level context unchanged."""
        norms = self.context["norms"]
        return Featurized(self.question, tuple(self.candidates[i] for i in rows),
                          self.features[rows], {**self.context, "norms": [norms[i] for i in rows]})


@dataclass(frozen=True, slots=True)
class _Linear:
    """A standardised linear model: w · (x - mean) / scale + b."""

    coef: np.ndarray
    intercept: float
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def from_json(cls, obj: dict, n: int) -> _Linear:
        """The model stored by `eval/train_reader.py`; `n` is the number of features it expects."""
        if len(obj["coef"]) != n:
            raise ValueError(f"reader model has {len(obj['coef'])} weights, expected {n}; "
                             "retrain it with `python -m eval.train_reader`")
        return cls(np.asarray(obj["coef"], np.float32), float(obj["intercept"]),
                   np.asarray(obj["mean"], np.float32), np.asarray(obj["scale"], np.float32))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.coef + self.intercept


class FeatureReader:
    """Extracts answer spans from evidence sentences and says how sure it is."""

    def __init__(self, nlp, model_path: Path | None = None, question_cache: int = QUESTION_CACHE,
                 threshold: float | None = None):
        """`threshold`, when given, replaces the model's fitted abstention cut
        (`Settings.min_confidence`); `fitted_threshold` keeps the model's own."""
        self.nlp = nlp
        path = Path(model_path) if model_path is not None else MODEL_PATH
        if not path.exists():
            raise FileNotFoundError(f"reader model {path} is missing; "
                                    "create it with `python -m eval.train_reader`")
        model = json.loads(path.read_text())
        if tuple(model.get("span_features", ())) != SPAN_FEATURES:
            raise ValueError(f"{path} was trained with other span features; "
                             "retrain it with `python -m eval.train_reader`")
        if tuple(model.get("sentence_features", ())) != SENTENCE_FEATURES:
            raise ValueError(f"{path} was trained with other sentence features; "
                             "retrain it with `python -m eval.train_reader`")
        self.span_model = _Linear.from_json(model["span"], len(SPAN_FEATURES))
        self.sentence_model = _Linear.from_json(model["sentence"], len(SENTENCE_FEATURES))
        self.sentence_weight = float(model["sentence_weight"])
        self.confidence_model = _Linear.from_json(model["confidence"], len(CONFIDENCE_FEATURES))
        self.fitted_threshold = float(model["threshold"])
        self.threshold = self.fitted_threshold if threshold is None else float(threshold)
        self._tables: LRUCache[tuple[object, list[tuple]]] = LRUCache(TOKEN_TABLE_CACHE)
        self._questions: LRUCache[Question] = LRUCache(question_cache)

    def token_table(self, ev: Evidence) -> list[tuple]:
        """`_token_table(ev.doc)`, remembered while the retriever keeps handing out that Doc."""
        key = (ev.doc_id, ev.start, ev.text)
        hit = self._tables.get(key)
        if hit is not None and hit[0] is ev.doc:
            return hit[1]
        table = _token_table(ev.doc)
        self._tables.put(key, (ev.doc, table))
        return table

    def read(self, question: str, question_vector: np.ndarray, evidence: Sequence[Evidence],
             df: Callable[[Sequence[str]], dict[str, int]] | None = None, n_docs: int | None = None,
             limit: int = 10) -> list[SpanAnswer]:
        """The best answer spans for `question` over `evidence`, best first, one per (doc, start, end)."""
        feats = self.featurize(question, question_vector, evidence, df, n_docs)
        if not feats.candidates:
            return []
        scores, sentence = self.scores(feats)
        articles = [evidence[c.sentence].doc_id for c in feats.candidates]
        confidences = self.confidences(feats, scores, sentence, articles)
        out: list[SpanAnswer] = []
        seen: set[tuple[str, int, int]] = set()
        for k in np.argsort(-scores, kind="stable"):
            c = feats.candidates[k]
            ev = evidence[c.sentence]
            key = (ev.doc_id, ev.start + c.start, ev.start + c.end)
            if key in seen:
                continue
            seen.add(key)
            out.append(SpanAnswer(ev, key[1], key[2], c.text, float(scores[k]),
                                  float(confidences[k]), feats.question.answer_type,
                                  bool(feats.features[k, _IX["increment"]])))
            if len(out) == limit:
                break
        return out

    def scores(self, feats: Featurized) -> tuple[np.ndarray, np.ndarray]:
        """The score of every candidate and of its sentence (see `span_scores`)."""
        return span_scores(feats, self.span_model, self.sentence_model, self.sentence_weight)

    def confidences(self, feats: Featurized, scores: np.ndarray, sentence: np.ndarray,
                    articles: Sequence[str] | None = None) -> np.ndarray:
        """Calibrated P(correct) for every candidate, given its score and its sentence's
        (`scores`).

        The calibration is fitted on each question's best-scored span. With `articles` (each
        candidate's doc_id), the best span of every other article is scored the same way,
        as that article's own answer: its margin over that article's next value, not its
        distance below the overall best. That is what the confidence was fitted on, where
        a runner-up's confidence is an extrapolation, and it is what tells whether the
        articles disagree. No span gets more confidence than the best one: otherwise a
        rival the span model ranks below could be shown as the surer answer, or answer a
        question the best span abstains on.
        """
        x = confidence_features(feats, scores, sentence)
        if not len(x):
            return np.zeros(0, np.float32)
        best = int(np.argmax(scores))
        if articles is not None:
            of = np.asarray(articles)
            for article in dict.fromkeys(articles):
                if article == articles[best]:
                    continue
                idx = np.flatnonzero(of == article)
                top = int(np.argmax(scores[idx]))
                x[idx[top]] = confidence_features(feats.subset(idx), scores[idx],
                                                  sentence[idx])[top]
        conf = 1.0 / (1.0 + np.exp(-self.confidence_model(x)))
        return np.minimum(conf, conf[best])

    def featurize(self, question: str, question_vector: np.ndarray, evidence: Sequence[Evidence],
                  df: Callable[[Sequence[str]], dict[str, int]] | None = None,
                  n_docs: int | None = None) -> Featurized:
        """Analyse the question, generate candidate spans and compute their features."""
        return featurize(self.analysed(question), question_vector, evidence, df, n_docs,
                         tables=self.token_table)

    def analysed(self, question: str) -> Question:
        """The question's parse (`service.question.analyse`), kept in a small cache."""
        q = self._questions.get(question)
        if q is None:
            q = analyse(self.nlp, question)
            self._questions.put(question, q)
        return q


def sentence_features(feats: Featurized) -> tuple[np.ndarray, np.ndarray]:
    """Features of each evidence sentence that has candidates (see `SENTENCE_FEATURES`).

    Returns (the row of each candidate's sentence, float32[sentences, features]); rows
    follow the sentences' order in the evidence.
    """
    x = feats.features
    if not len(feats.candidates):
        return np.zeros(0, np.intp), np.zeros((0, len(SENTENCE_FEATURES)), np.float32)
    sentence = np.array([c.sentence for c in feats.candidates])
    _, first, rows = np.unique(sentence, return_index=True, return_inverse=True)
    n = len(first)
    most = np.full((n, len(_MAX_COLS)), -np.inf, np.float32)
    np.maximum.at(most, rows, x[:, _MAX_COLS])
    least = np.full((n, len(_MIN_COLS)), np.inf, np.float32)
    np.minimum.at(least, rows, x[:, _MIN_COLS])
    count = np.bincount(rows, minlength=n).astype(np.float32)
    out = np.hstack([x[first][:, _SENTENCE_COLS], most, least, np.log1p(count)[:, None]])
    return rows, out.astype(np.float32)


def span_scores(feats: Featurized, span_model: Callable[[np.ndarray], np.ndarray],
                sentence_model: Callable[[np.ndarray], np.ndarray],
                sentence_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """(each candidate's span-model score plus `sentence_weight` times its sentence's score,
    that sentence score)."""
    if not len(feats.candidates):
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    rows, x = sentence_features(feats)
    sentence = sentence_model(x)[rows]
    return span_model(feats.features) + sentence_weight * sentence, sentence


def confidence_features(feats: Featurized, scores: np.ndarray,
                        sentence: np.ndarray) -> np.ndarray:
    """Features of each candidate as the answer: its score against the best rival's, and coverage."""
    x = feats.features
    n = len(feats.candidates)
    out = np.zeros((n, len(CONFIDENCE_FEATURES)), np.float32)
    if n == 0:
        return out
    order = np.argsort(-scores, kind="stable")
    norm = feats.context["norms"]
    best, best_text = order[0], norm[order[0]]
    rival = next((k for k in order[1:] if norm[k] != best_text), None)
    rival_score = scores[rival] if rival is not None else scores[best] - 5.0
    margin = np.where(np.arange(n) == best, scores[best] - rival_score, scores - scores[best])
    typed = float(bool(feats.question.labels))
    any_match = float(x[:, _IX["type_match"]].max() > 0 or x[:, _IX["pattern_match"]].max() > 0)
    out[:, 0] = scores
    out[:, 1] = margin
    out[:, 2] = x[:, _IX["max_cos"]]
    out[:, 3] = x[:, _IX["max_ovl"]]
    out[:, 4] = x[:, _IX["missing"]]
    out[:, 5] = x[:, _IX["ovl"]]
    out[:, 6] = x[:, _IX["cos"]]
    out[:, 7] = np.maximum(x[:, _IX["type_match"]], x[:, _IX["pattern_match"]])
    out[:, 8] = typed
    out[:, 9] = typed * (1.0 - any_match)
    out[:, 10] = x[:, _IX["support"]]
    out[:, 11] = x[:, _IX["neg_mismatch"]]
    # The span model is a softmax over candidates: each one's share of it, and how spread it is.
    share = np.exp(scores - scores.max())
    share /= share.sum()
    out[:, 12] = share
    out[:, 13] = -(share * np.log(share + 1e-12)).sum()
    out[:, 14] = x[:, _IX["missing_specific"]]
    out[:, 15] = x[:, _IX["swap"]]
    out[:, 16] = x[:, _IX["opposed"]]
    out[:, 17] = sentence
    return out


def _norm(text: str) -> str:
    return " ".join(text.lower().translate(_NO_PUNCT).split())


def _idf(df_count: int | None, n_docs: int | None) -> float:
    if df_count is None or not n_docs:
        return 1.0
    return math.log(1.0 + (n_docs - df_count + 0.5) / (df_count + 0.5))


def featurize(q: Question, question_vector: np.ndarray, evidence: Sequence[Evidence],
              df: Callable[[Sequence[str]], dict[str, int]] | None = None,
              n_docs: int | None = None,
              tables: Callable[[Evidence], list[tuple]] | None = None) -> Featurized:
    """Candidates and span features for an analysed question (see `SPAN_FEATURES`)."""
    if not evidence:
        return Featurized(q, (), np.zeros((0, len(SPAN_FEATURES)), np.float32), {})
    counts = df(q.terms) if (df is not None and q.terms) else {}
    weight = {t: _idf(counts.get(t), n_docs) for t in q.terms}
    by_lemma = {lem: weight[t] for t, lem in zip(q.terms, q.lemmas)}
    total = sum(weight.values()) or 1.0
    q_bigrams = {(a.lemma_.lower(), b.lemma_.lower()) for a, b in zip(q.doc, q.doc[1:])
                 if not a.is_punct and not b.is_punct}
    q_links, q_words = _question_links(q, weight, by_lemma)
    every_opposite = frozenset().union(*(opposite for _, opposite in q.opposites))

    # Per-sentence token tables and sentence-level scores.
    sents = []
    found_terms: set[str] = set()
    words: set[str] = set()  # every word of the evidence, lower-cased
    for ev in evidence:
        toks = tables(ev) if tables is not None else _token_table(ev.doc)
        w = np.zeros(len(toks) + 1, np.float32)
        matched_terms: set[str] = set()
        for i, tok in enumerate(toks):
            if tok[0] in weight:
                w[i] = weight[tok[0]]
                matched_terms.add(tok[0])
            elif tok[1] in by_lemma:
                w[i] = by_lemma[tok[1]]
                matched_terms.add(q.terms[q.lemmas.index(tok[1])])
        found_terms |= matched_terms
        words.update(t[0] for t in toks)
        ovl = sum(weight[t] for t in matched_terms) / total
        bigrams = {(a[1], b[1]) for a, b in zip(toks, toks[1:])}
        cos = float(np.dot(ev.vector, question_vector))
        sents.append({
            "toks": toks, "w": w, "cos": cos, "ovl": ovl,
            "ovl_frac": len(matched_terms) / max(1, len(q.terms)),
            "bigram": len(q_bigrams & bigrams) / max(1, len(q_bigrams)),
            "root_match": float(bool(q.root_lemma) and any(t[1] == q.root_lemma for t in toks)),
            # The question asks what is *not* so, and the sentence negates nothing.
            "neg_mismatch": float(q.negated and not any(is_negation(t[0], t[3]) for t in toks)),
            "swap": float(_swapped(toks, q_links, q_words)),
            "opposed": float(_opposed(q.opposites, every_opposite, toks)),
        })
    cos_all = np.array([s["cos"] for s in sents])
    ovl_all = np.array([s["ovl"] for s in sents])
    max_cos, max_ovl = float(cos_all.max()), float(ovl_all.max())
    missing = sum(weight[t] for t in q.terms if t not in found_terms) / total
    # Names and numbers of the question that no evidence sentence contains: the evidence is
    # about something else ("in 1950" asked, only 1960 found), so an answer is unlikely.
    missing_specific = (sum(t not in words for t in q.specific) / len(q.specific)
                        if q.specific else 0.0)
    cos_rank = np.empty(len(sents))
    cos_rank[np.argsort(-cos_all, kind="stable")] = np.arange(len(sents))
    chosen = np.argsort(-(cos_all + ovl_all), kind="stable")[:MAX_SENTENCES]

    group = _GROUP_OF.get(q.answer_type, q.answer_type)
    group = group if group in _TYPE_GROUPS else "other"
    cross_cols = np.array([_IX[f"{group}_x_{name}"] for name in _CROSSED])
    # The answer type's own columns for span entity labels and dependency relations.
    cross = {f"ent_{e}": _IX[f"{group}_x_ent_{e}"] for e in _ENT_LABELS}
    cross.update({f"dep_{d}": _IX[f"{group}_x_dep_{deps[0]}"] for deps in _ROOT_DEPS for d in deps})
    labels = q.labels
    candidates: list[Candidate] = []
    values: list[tuple] = []
    onehots: list[int] = []
    onehot_rows: list[int] = []
    sentence_rows: list[tuple] = []
    of_sentence: list[int] = []
    for s_i in chosen:
        s = sents[s_i]
        ev = evidence[s_i]
        sentence_rows.append((
            s["cos"], s["cos"] - max_cos, 1.0 / (1.0 + cos_rank[s_i]), s["ovl"], s["ovl"] - max_ovl,
            s["ovl_frac"], s["bigram"], ev.passage_score, 1.0 / (1.0 + ev.passage_rank),
            s["root_match"], s["neg_mismatch"], s["swap"], s["opposed"], max_cos, max_ovl, missing,
            missing_specific))
        for cand, vals, onehot in _sentence_candidates(int(s_i), ev, s, q, labels, cross):
            for col in onehot:
                onehot_rows.append(len(candidates))
                onehots.append(col)
            candidates.append(cand)
            values.append(vals)
            of_sentence.append(len(sentence_rows) - 1)
    if not candidates:
        return Featurized(q, (), np.zeros((0, len(SPAN_FEATURES)), np.float32), {})
    x = np.zeros((len(candidates), len(SPAN_FEATURES)), np.float32)
    x[:, _SPAN_COLS] = np.asarray(values, np.float32)
    x[:, _SENTENCE_COLS] = np.asarray(sentence_rows, np.float32)[of_sentence]
    x[onehot_rows, onehots] = 1.0
    x[:, cross_cols] = x[:, _CROSSED_COLS]
    # Agreement: the same value found in several sentences is more likely the answer.
    norms = [_norm(c.text) for c in candidates]
    where: dict[str, set[int]] = {}
    for c, key in zip(candidates, norms):
        where.setdefault(key, set()).add(c.sentence)
    x[:, _IX["support"]] = [min(3, len(where[key]) - 1) / 3.0 for key in norms]
    return Featurized(q, tuple(candidates), x, {"max_cos": max_cos, "max_ovl": max_ovl,
                                                "missing": missing, "norms": norms})


def _content_links(toks: list) -> list[tuple[int, int, str]]:
    """(modifier, head, relation) for each content word attached to another; through a
    preposition the relation is the preposition ("theorem of reduction": reduction -of-> theorem)."""
    out = []
    for i, t in enumerate(toks):
        if t[2] not in _CONTENT_POS:
            continue
        h, rel = t[4], t[3]
        if h != i and toks[h][2] == "ADP" and toks[h][4] != h:
            h, rel = toks[h][4], toks[h][0]
        if h != i and toks[h][2] in _CONTENT_POS:
            out.append((i, h, rel))
    return out


def _question_links(q: Question, weight: dict, by_lemma: dict
                    ) -> tuple[list[tuple[str, str, str]], frozenset[str]]:
    """The question's modifiers of its nouns ("scientific abstraction", "three graphs",
    "theorem of reduction") as (modifier, noun, relation) lemmas, when both are terms, and
    every word and lemma of the question."""
    toks = _token_table(q.doc)
    words = frozenset(w for t in toks for w in (t[0], t[1]))

    def term(t):
        return t[0] in weight or t[1] in by_lemma

    links = [(toks[m][1], toks[h][1], rel) for m, h, rel in _content_links(toks)
             if toks[h][2] in ("NOUN", "PROPN") and term(toks[m]) and term(toks[h])]
    return links, words


def _swapped(toks: list, q_links: list[tuple[str, str, str]], q_words: frozenset[str]) -> bool:
    """Whether the sentence has one of the question's modified nouns with another modifier
    in that place, and without the question's ("scientific abstraction" asked, "mathematical
    abstraction" written): the sentence speaks of something else, as the look-alikes of
    unanswerable questions do. A noun swapped under the same modifier is not counted: that
    is mostly a paraphrase ("defense treaty", "defense pact")."""
    if not q_links:
        return False
    at: dict[str, set[int]] = {}
    for i, t in enumerate(toks):
        at.setdefault(t[1], set()).add(i)
        at.setdefault(t[0], set()).add(i)
    links = None
    for mod, head, rel in q_links:
        heads = at.get(head)
        if not heads or mod in at:
            continue
        if links is None:
            links = _content_links(toks)
        if any(r == rel and h in heads and toks[m][0] not in q_words and toks[m][1] not in q_words
               for m, h, r in links):
            return True
    return False


def _opposed(opposites: tuple[tuple[frozenset[str], frozenset[str]], ...],
             every: frozenset[str], toks: list) -> bool:
    """Whether the sentence uses the opposite of a question word and not the word itself
    (`opposites` as in `Question.opposites`, `every` all their opposites together)."""
    # Most sentences hold no opposite at all: find that out without building their word set.
    if every.isdisjoint(t[0] for t in toks) and every.isdisjoint(t[1] for t in toks):
        return False
    words = {t[0] for t in toks} | {t[1] for t in toks}
    return any(opposite & words and not forms & words for forms, opposite in opposites)


def _token_table(doc) -> list[tuple]:
    """(lower, lemma, pos, dep, head, ent_type, idx, length, is_punct, like_num, ent_iob) per token.

    Read through `Doc.to_array`: creating a spaCy Token per attribute access would
    cost more than everything else the reader does.
    """
    strings = doc.vocab.strings
    rows = doc.to_array(_ATTRS).tolist()
    table = []
    for i, (lower, lemma, pos, dep, head, ent, iob, idx, length, punct, num) in enumerate(rows):
        if head >= 1 << 63:  # relative head offsets come back as unsigned 64-bit
            head -= 1 << 64
        table.append((strings[lower], strings[lemma].lower() if lemma else strings[lower],
                      POS_NAMES.get(pos, ""), strings[dep] if dep else "", i + head,
                      strings[ent] if ent else "", idx, length, bool(punct), bool(num), iob))
    return table


def _spans(ev: Evidence, toks: list, matched: list[bool]) -> dict[tuple[int, int], set[str]]:
    """Token ranges worth considering in one sentence, each with the kinds that proposed it."""
    n = len(toks)
    spans: dict[tuple[int, int], set[str]] = {}

    def add(a: int, b: int, kind: str) -> None:
        while a < b and (toks[a][8] or toks[a][2] == "CCONJ"):
            a += 1
        while b > a and toks[b - 1][8]:
            b -= 1
        if a < b and b - a <= MAX_SPAN_TOKENS:
            spans.setdefault((a, b), set()).add(kind)
            # An answer rarely repeats the question: also try the span without question
            # words (and function words) at its edges ("Irish culture" -> "Irish").
            a2, b2 = a, b
            while a2 < b2 and (matched[a2] or toks[a2][2] in _LEADING or toks[a2][8]):
                a2 += 1
            while b2 > a2 and (matched[b2 - 1] or toks[b2 - 1][2] in _LEADING or toks[b2 - 1][8]):
                b2 -= 1
            if a2 < b2 and (a2, b2) != (a, b) and any(matched[a:b]):
                spans.setdefault((a2, b2), set()).add("trimmed")

    # Entities, from the IOB tags (3 = B, 1 = I).
    i = 0
    while i < n:
        if toks[i][10] == 3:
            j = i + 1
            while j < n and toks[j][10] == 1:
                j += 1
            add(i, j, "ent")
            i = j
        else:
            i += 1
    # Subtree edges from the head array (the parse is a tree; heads of roots point at themselves).
    children: list[list[int]] = [[] for _ in range(n)]
    for i, t in enumerate(toks):
        if t[4] != i and 0 <= t[4] < n:
            children[t[4]].append(i)
    left = list(range(n))
    right = list(range(n))
    for i in _postorder(children, toks, n):
        for c in children[i]:
            left[i] = min(left[i], left[c])
            right[i] = max(right[i], right[c])
    for i, t in enumerate(toks):
        pos, dep = t[2], t[3]
        if pos == "NUM":
            add(i, i + 1, "single")
        if pos in ("NOUN", "PROPN", "NUM"):
            # A noun chunk: the noun with its pre-modifiers (determiner, adjectives, compounds).
            mods = [c for c in children[i] if c < i and toks[c][3] in _NP_MODS]
            if mods:
                a = left[min(mods)]
                add(a, i + 1, "chunk")
                if toks[a][2] == "DET":
                    add(a + 1, i + 1, "chunk")
        if dep not in _SUBTREE_DEPS:
            continue
        a, b = left[i], right[i] + 1
        add(a, b, "subtree")
        # The same phrase without its preposition, subordinator or infinitival "to".
        k = a
        while k < b - 1 and toks[k][2] in _LEADING:
            k += 1
        if k > a:
            add(k, b, "subtree")
    starts = {t[6]: i for i, t in enumerate(toks)}
    ends = {t[6] + t[7]: i + 1 for i, t in enumerate(toks)}
    for kind, pattern in _PATTERNS:
        for m in pattern.finditer(ev.text):
            a, b = starts.get(m.start()), ends.get(m.end())
            if a is not None and b is not None:
                add(a, b, "pattern_" + kind)
    return spans


def _tree_distance(toks: list, sources: list[int]) -> list[int]:
    """Edges of the dependency tree from each token to the nearest source token (99: none)."""
    n = len(toks)
    adjacent: list[list[int]] = [[] for _ in range(n)]
    for i, t in enumerate(toks):
        if t[4] != i and 0 <= t[4] < n:
            adjacent[i].append(t[4])
            adjacent[t[4]].append(i)
    dist = [99] * n
    frontier = list(sources)
    for i in frontier:
        dist[i] = 0
    while frontier:
        nxt = []
        for i in frontier:
            for j in adjacent[i]:
                if dist[j] == 99:
                    dist[j] = dist[i] + 1
                    nxt.append(j)
        frontier = nxt
    return dist


def _postorder(children: list[list[int]], toks: list, n: int) -> list[int]:
    """Tokens ordered children before parents (iteratively; sentences can be long)."""
    roots = [i for i in range(n) if toks[i][4] == i or not 0 <= toks[i][4] < n]
    order: list[int] = []
    stack = [(r, False) for r in roots]
    seen: set[int] = set()
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if node in seen:
            continue
        seen.add(node)
        stack.append((node, True))
        stack.extend((c, False) for c in children[node])
    return order


def _sentence_candidates(s_i: int, ev: Evidence, s: dict, q: Question, labels: frozenset[str],
                         cross: dict[str, int]):
    """Yield (Candidate, values in `_SPAN_VALUES` order, one-hot columns) for one sentence's spans."""
    toks, w = s["toks"], s["w"]
    n = len(toks)
    # Prefix sums make every span feature O(1) in the span's length.
    cum_w = [0.0] * (n + 1)
    cum_content = [0] * (n + 1)
    cum_qcontent = [0] * (n + 1)
    cum_num = [0] * (n + 1)
    cum_propn = [0] * (n + 1)
    prev_match = [-1] * (n + 1)  # last matched token before position i
    next_match = [n + 99] * (n + 1)  # first matched token at or after position i
    for i, t in enumerate(toks):
        content = not t[8] and t[2] not in _LEADING
        cum_w[i + 1] = cum_w[i] + float(w[i])
        cum_content[i + 1] = cum_content[i] + content
        cum_qcontent[i + 1] = cum_qcontent[i] + (content and w[i] > 0)
        cum_num[i + 1] = cum_num[i] + (t[9] or t[2] == "NUM")
        cum_propn[i + 1] = cum_propn[i] + (t[2] == "PROPN")
        prev_match[i + 1] = i if w[i] > 0 else prev_match[i]
    for i in range(n - 1, -1, -1):
        next_match[i] = i if w[i] > 0 else next_match[i + 1]
    total_w = cum_w[n] or 1.0
    head_noun = q.head_noun
    near_head = [False] * (n + 2)
    if head_noun:
        for i, t in enumerate(toks):
            if t[1] == head_noun:
                near_head[i] = True
    # Where a sentence marks an increment ("additional", "the recent addition of"), for
    # questions asking how many *more* (not "more than", which bounds a number).
    marks = [t[1] in INCREMENT and not (t[0] == "more" and i + 1 < n and toks[i + 1][0] == "than")
             for i, t in enumerate(toks)]
    increment = [q.additive and m for m in marks]
    # ... and where a question that does not ask for one would take an increment for a total.
    unasked = [not q.additive and m and t[1] in _ADDED for m, t in zip(marks, toks)]
    text_of = ev.text
    tree_dist = _tree_distance(toks, [i for i in range(n) if w[i] > 0])
    spans = _spans(ev, toks, [x > 0 for x in w.tolist()])
    # Numeric ranges ("between 1,000 and 3,000", "10,000 to 12,000").
    ranges = [(a, b) for (a, b), kinds in spans.items() if "pattern_num" in kinds
              and _joins_range(toks, a, b)]
    for (a, b), kinds in spans.items():
        length = b - a
        n_content = cum_content[b] - cum_content[a]
        q_in = cum_qcontent[b] - cum_qcontent[a]
        if q_in == n_content:
            # Nothing but question words (or no content word at all) cannot be an answer.
            continue
        if length == 1 and toks[a][2] not in _ANSWER_POS:
            continue  # a lone adverb, pronoun or particle ("approximately", "they")
        # One end of a numeric range ("1,000" in "between 1,000 and 3,000"), not the range;
        # most sentences hold no range, and then no span needs the search.
        enclosing = None
        if ranges and not _joins_range(toks, a, b):
            enclosing = min(((a2, b2) for a2, b2 in ranges
                             if a2 <= a and b <= b2 and (a2, b2) != (a, b)),
                            key=lambda r: r[1] - r[0], default=None)
        d_left = a - prev_match[a] if prev_match[a] >= 0 else 99
        d_right = next_match[b] - b + 1 if b < n else 99
        dist = min(d_left, d_right, 40)
        # The span's root: its first token whose head lies outside it.
        root = a
        for i in range(a, b):
            h = toks[i][4]
            if h == i or not a <= h < b:
                root = i
                break
        rt = toks[root]
        head = rt[4]
        head2 = toks[head][4]
        ent_types = {toks[i][5] for i in range(a, b)} - {""}
        type_match = float(bool(labels) and bool(ent_types & labels))
        type_mismatch = float(bool(labels) and bool(ent_types) and not (ent_types & labels))
        has_num = cum_num[b] > cum_num[a]
        label = rt[5] or next((toks[i][5] for i in range(a, b) if toks[i][5]), "")
        start, end = toks[a][6], toks[b - 1][6] + toks[b - 1][7]
        # Hangs from the word the question's wh-phrase hangs from, in the same relation.
        anchor = toks[head][1] in q.anchors or (
            toks[head][2] == "ADP" and toks[head2][1] in q.anchors)
        values = (
            (cum_w[b] - cum_w[a]) / total_w,
            q_in / max(1, n_content),
            float(n_content > 0 and q_in == n_content),
            (cum_w[a] - cum_w[max(0, a - WINDOW)]) / total_w,
            (cum_w[min(n, b + WINDOW)] - cum_w[b]) / total_w,
            math.log1p(dist),
            float(dist >= 40),
            float(w[head] > 0 and not a <= head < b),
            float(w[head2] > 0 and not a <= head2 < b),
            min(length, 25) / 25.0,
            math.log1p(length),
            float(length > 8),
            float("ent" in kinds),
            float("chunk" in kinds),
            float("subtree" in kinds),
            float("pattern_num" in kinds or "pattern_date" in kinds),
            float(length == 1),
            type_match,
            type_mismatch,
            _pattern_match(q.answer_type, kinds, toks, a, b, has_num),
            float(has_num),
            float(cum_propn[b] > cum_propn[a]),
            float(toks[a][2] in _LEADING),
            float(toks[a][2] == "SCONJ" or toks[a][0] in _MARKS),
            float(length == 1 and rt[2] == "PRON"),
            float(any(near_head[max(0, a - 1): b + 2])),
            float(rt[2] in ("VERB", "AUX")),
            float(rt[2] == "PROPN"),
            math.log1p(min(tree_dist[root], 20)),
            float(bool(label) and label not in _ENT_LABELS),
            float(anchor),
            float(anchor and slot_relation(rt[3]) == q.slot),
            float(any(increment[max(0, a - WINDOW): b + WINDOW])),
            float(enclosing is not None),
            float(any(unasked[max(0, a - WINDOW): b + WINDOW])),
        )
        onehot = [c for c in (_POS_COL.get(rt[2]), _DEP_COL.get(rt[3]),
                              cross.get("ent_" + label) if label else None,
                              cross.get("dep_" + rt[3])) if c is not None]
        if enclosing is not None:
            start = toks[enclosing[0]][6]
            end = toks[enclosing[1] - 1][6] + toks[enclosing[1] - 1][7]
        yield Candidate(s_i, a, b, start, end, text_of[start:end]), values, onehot


def _joins_range(toks: list, a: int, b: int) -> bool:
    """Whether tokens [a, b) join two values inside them ("1,000 to 3,000")."""
    return any(toks[i][0] in _RANGE_WORDS for i in range(a + 1, b - 1))


def _pattern_match(answer_type: str, kinds: set[str], toks: list, a: int, b: int,
                   has_num: bool) -> float:
    """Whether the span's surface form fits the expected answer type (numbers, dates, durations)."""
    if answer_type not in ("count", "quantity", "money", "percent", "date", "duration"):
        return 0.0
    words = {toks[i][0] for i in range(a, b)}
    if answer_type in ("count", "quantity", "money", "percent"):
        return float("pattern_num" in kinds or (has_num and b - a <= 4))
    if answer_type == "date":
        return float("pattern_date" in kinds or bool(words & _DATE_WORDS))
    if answer_type == "duration":
        return float(bool(words & _DURATION_UNITS) and (has_num or b - a <= 3))
    return 0.0
