"""The QA pipeline: one object that loads the index and models once and answers questions.

The HTTP API, `article-qa ask` and the eval harness all call `QAPipeline`. Reads
take a snapshot of the current index; writes (add/remove documents) are serialised,
publish a new index generation and swap the snapshot atomically, so a query never
sees half a change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from indexing.articles import Article
from indexing.chunking import ChunkParams
from indexing.errors import ArticleQAError, DocumentNotFoundError, DuplicateDocumentError
from indexing.pipeline import Indexer, add_articles, build, remove_documents
from indexing.shards import index_exists, index_stamp, open_index
from indexing.store import Index
from service.answers import Answer, aggregate
from service.cache import LRUCache
from service.retrieval import Passage, Retriever
from service.settings import Settings

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 2000
MAX_TOP_K = 50
# Spans the reader hands to aggregation: enough that variants of one sentence's answer
# ("12,000", "about 12,000") do not crowd out the other articles' values.
READER_SPANS = 40
# Passages whose sentences the reader reads, whatever top_k shows: enough to reach the
# other articles that agree or disagree (dev F1 within 0.01 of reading 5).
EVIDENCE_PASSAGES = 8


def indexer_for(settings: Settings) -> Indexer:
    """The indexer (models and chunking) that `settings` describe."""
    return Indexer(model=settings.model,
                   chunk=ChunkParams(settings.chunk_tokens, settings.chunk_overlap),
                   backend=settings.embed_backend, index_type=settings.index_type,
                   index_threshold=settings.index_threshold)


def ensure_index(settings: Settings, indexer: Indexer | None = None) -> Indexer | None:
    """Index `settings.corpus` into `settings.index` when that has no index yet.

    Returns the indexer it loaded (or was given) when it built, else None.
    """
    index_dir = Path(settings.index)
    if index_exists(index_dir):
        return None
    indexer = indexer or indexer_for(settings)
    build(Path(settings.corpus), index_dir, indexer)
    return indexer


class QuestionError(ValueError):
    """A question or its options are unusable (empty, too long, bad top_k, unknown doc)."""


@dataclass(frozen=True, slots=True)
class QAResult:
    """The answer to one question: ranked cited answers, the passages, and timings."""

    question: str
    answer: str | None
    confidence: float
    conflict: bool
    answers: tuple[Answer, ...]
    passages: tuple[Passage, ...]
    timings_ms: dict[str, float]


@dataclass(frozen=True, slots=True)
class Retrieved:
    """Passages found for a question, waiting to be read (`QAPipeline.retrieve`)."""

    question: str
    query: str
    top_k: int
    index: Index
    passages: tuple[Passage, ...]
    evidence: object
    question_vector: object
    timings_ms: dict[str, float]
    started: float

    @property
    def shown(self) -> tuple[Passage, ...]:
        """The passages a client is shown (the first top_k)."""
        return self.passages[:self.top_k]


@dataclass(frozen=True, slots=True)
class _Snapshot:
    index: Index
    retriever: Retriever
    answers: LRUCache[QAResult]
    stamp: str | None  # `index_stamp` when it was opened


def make_reader(nlp, kind: str, threshold: float | None = None, assist=None):
    """The reader `kind` ("feature" or "neural", `Settings.reader`); `threshold` replaces
    its model's fitted abstention cut. `assist`, a loaded FeatureReader, is the neural
    reader's calibration input (one is loaded when not given)."""
    if kind == "neural":
        from service.reader import Reader

        return Reader(nlp, threshold=threshold, assist=assist)
    from service.feature_reader import FeatureReader

    return FeatureReader(nlp, threshold=threshold)


class QAPipeline:
    """Loads models and the index once; answers questions; applies document writes safely."""

    def __init__(self, settings: Settings, indexer: Indexer | None = None, reader=None,
                 retrieval_mode: str = "hybrid", answer_cache: int | None = None):
        self.settings = settings
        self.indexer = indexer or indexer_for(settings)
        self.embedder = self.indexer.embedder
        self.nlp = self.indexer.nlp
        self.reader = reader or make_reader(self.nlp, settings.reader, settings.min_confidence)
        self.retrieval_mode = retrieval_mode
        self.answer_cache = settings.answer_cache if answer_cache is None else answer_cache
        self._write_lock = threading.Lock()
        self._reopen_lock = threading.Lock()
        self._snapshot = self._open()

    @classmethod
    def load(cls, settings: Settings, build_if_empty: bool = False, **kwargs) -> QAPipeline:
        """Open `settings.index`; with `build_if_empty`, index `settings.corpus` first."""
        if build_if_empty:
            indexer = ensure_index(settings, kwargs.pop("indexer", None))
            if indexer is not None:
                kwargs["indexer"] = indexer
        return cls(settings, **kwargs)

    def _open(self) -> _Snapshot:
        stamp = index_stamp(Path(self.settings.index))  # read first: a later write reopens
        index = open_index(Path(self.settings.index), expect_model=self.embedder.name)
        return _Snapshot(index, Retriever(index, self.embedder, self.nlp.vocab,
                                          mode=self.retrieval_mode), LRUCache(self.answer_cache),
                         stamp)

    def _current(self) -> _Snapshot:
        """The snapshot of the live index, reopened when another process (a `--workers`
        sibling, a Ray replica, `article-qa index add`) published a write. If the new one
        cannot be opened, the old one keeps answering."""
        snap = self._snapshot
        stamp = index_stamp(Path(self.settings.index))
        if stamp is None or stamp == snap.stamp:
            return snap
        with self._reopen_lock:
            if self._snapshot.stamp == snap.stamp:
                try:
                    self._snapshot = self._open()
                except ArticleQAError as exc:
                    log.warning("keeping the index open before %s: %s", stamp.strip(), exc)
                    self._snapshot = replace(snap, stamp=stamp)
            return self._snapshot

    @property
    def index(self) -> Index:
        return self._current().index

    # -- reading ---------------------------------------------------------------
    def _check(self, question: str, top_k: int, doc_ids: Sequence[str] | None,
               index: Index) -> str:
        if not isinstance(question, str) or not question.strip():
            raise QuestionError("question is empty; send a non-empty question")
        if len(question) > MAX_QUESTION_CHARS:
            raise QuestionError(
                f"question has {len(question)} characters; the limit is {MAX_QUESTION_CHARS}")
        if not 1 <= top_k <= MAX_TOP_K:
            raise QuestionError(f"top_k of {top_k} is out of range; use 1 to {MAX_TOP_K}")
        if doc_ids is not None:
            unknown = [d for d in doc_ids if not index.has_document(d)]
            if unknown:
                raise DocumentNotFoundError(
                    f"unknown doc_id(s) in doc_ids: {', '.join(map(repr, unknown[:5]))}; "
                    "GET /documents lists the indexed ones")
        return question.strip()

    def check(self, question: str, top_k: int = 5, doc_ids: Sequence[str] | None = None) -> str:
        """Raise what `ask` would for these arguments (QuestionError, DocumentNotFoundError);
        else the question as `ask` reads it. For callers that must answer before asking,
        such as a stream whose status is sent before its first event."""
        return self._check(question, top_k, doc_ids, self._current().index)

    def search(self, query: str, k: int = 5, doc_ids: Sequence[str] | None = None) -> list[Passage]:
        """The k passages most relevant to `query`."""
        snap = self._current()
        query = self._check(query, k, doc_ids, snap.index)
        return snap.retriever.search(query, k, doc_ids)

    def ask(self, question: str, top_k: int = 5, doc_ids: Sequence[str] | None = None,
            *, query: str | None = None) -> QAResult:
        """Answer `question` from the index: cited extractive answers, or an abstention.

        `query`, when given, is what retrieval searches for instead of the question (a chat
        follow-up carries earlier turns' entities there); the reader still reads `question`.
        """
        t0 = time.perf_counter()
        snap = self._current()
        key = (question, top_k, tuple(doc_ids) if doc_ids is not None else None, query)
        cached = snap.answers.get(key)
        if cached is not None:
            total = round((time.perf_counter() - t0) * 1000, 2)
            return replace(cached, timings_ms={"embed": 0.0, "retrieve": 0.0, "read": 0.0,
                                               "total": total, "cached": 1.0})
        result = self.read(self.retrieve(question, top_k, doc_ids, query=query, snapshot=snap))
        snap.answers.put(key, result)
        return result

    def retrieve(self, question: str, top_k: int = 5, doc_ids: Sequence[str] | None = None,
                 *, query: str | None = None, snapshot: _Snapshot | None = None) -> Retrieved:
        """The first half of `ask`: check the question and find the passages to read."""
        snap = snapshot or self._current()  # one generation for the whole request
        question = self._check(question, top_k, doc_ids, snap.index)
        query = self._check(query, top_k, None, snap.index) if query else question
        t0 = time.perf_counter()
        dense = snap.retriever.mode != "lexical"
        qv = self.embedder.encode_one(question) if dense else None
        query_vector = qv if query == question else (
            self.embedder.encode_one(query) if dense else None)
        t1 = time.perf_counter()
        # The reader looks past what is shown: agreement and conflicts need several articles.
        passages = snap.retriever.search(query, max(top_k, EVIDENCE_PASSAGES), doc_ids,
                                         query_vector=query_vector)
        evidence = snap.retriever.evidence(passages)
        t2 = time.perf_counter()
        return Retrieved(question, query, top_k, snap.index, tuple(passages), evidence, qv,
                         {"embed": round((t1 - t0) * 1000, 2),
                          "retrieve": round((t2 - t1) * 1000, 2)}, t0)

    def read(self, retrieved: Retrieved) -> QAResult:
        """The second half of `ask`: extract, aggregate and rank the answers."""
        r = retrieved
        t2 = time.perf_counter()
        qv = r.question_vector if r.question_vector is not None else \
            self.embedder.encode_one(r.question)
        spans = self.reader.read(r.question, qv, r.evidence, df=r.index.document_frequency,
                                 n_docs=r.index.fts_documents, limit=READER_SPANS)
        answers, conflict = aggregate(spans, self.reader.threshold)
        t3 = time.perf_counter()
        top = answers[0] if answers else None
        return QAResult(
            question=r.question,
            answer=top.text if top else None,
            confidence=top.confidence if top else (round(spans[0].confidence, 4) if spans else 0.0),
            conflict=conflict,
            answers=tuple(answers),
            passages=r.passages[:r.top_k],
            timings_ms={**r.timings_ms,
                        "read": round((t3 - t2) * 1000, 2),
                        "total": round((t3 - r.started) * 1000, 2)},
        )

    # -- writing ---------------------------------------------------------------
    def add_document(self, article: Article, replace: bool = False) -> int:
        """Index one article and publish it; returns its number of chunks."""
        with self._write_lock:
            if self._current().index.has_document(article.doc_id) and not replace:
                raise DuplicateDocumentError(
                    f"document {article.doc_id!r} already exists; use ?replace=true to replace it")
            add_articles(Path(self.settings.index), [article], self.indexer)
            self._snapshot = self._open()
            return self._snapshot.index.document(article.doc_id).chunks

    def remove_document(self, doc_id: str) -> None:
        """Remove one document and publish the change."""
        with self._write_lock:
            if not self._current().index.has_document(doc_id):
                raise DocumentNotFoundError(f"no document with doc_id {doc_id!r} in the index")
            remove_documents(Path(self.settings.index), [doc_id])
            self._snapshot = self._open()
