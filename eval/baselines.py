"""The systems an evaluation compares: the service itself and four baselines.

* ``system`` — the QA pipeline as served: hybrid retrieval and the configured reader
  (`Settings.reader`);
* ``neural-reader`` / ``feature-reader`` — hybrid retrieval and the other reader, the
  one the service does not answer with, so every report shows both readers side by side;
* ``lexical-only`` / ``dense-only`` — the system's reader over BM25-only or
  embedding-only retrieval, to show what fusing the two buys;
* ``best-sentence`` — hybrid retrieval, but the "answer" is the whole evidence
  sentence closest to the question, to show what span extraction buys over
  pointing at the right sentence.

All of them share one loaded :class:`indexing.pipeline.Indexer` (embedding model
and spaCy) and the reader weights, so building four systems loads models once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from service.answers import SpanAnswer
from service.retrieval import Evidence

SYSTEM = "system"
READER_SYSTEMS = {"feature": "feature-reader", "neural": "neural-reader"}
BASELINES = (*READER_SYSTEMS.values(), "lexical-only", "dense-only", "best-sentence")
SYSTEM_NAMES = (SYSTEM, *BASELINES)


def default_names(settings, baselines: bool = True) -> tuple[str, ...]:
    """What `eval run` compares: the system, and with `baselines` the other reader and the
    retrieval and sentence baselines (never the system's own reader a second time)."""
    if not baselines:
        return (SYSTEM,)
    own = READER_SYSTEMS[settings.reader]
    return tuple(n for n in SYSTEM_NAMES if n != own)


class BestSentenceReader:
    """A reader that answers with the whole evidence sentence most similar to the question.

    Same interface as :class:`service.reader.Reader`. The confidence of a sentence is
    its cosine to the question (both unit MiniLM vectors) clipped to [0, 1].
    """

    threshold: float = 0.3
    """Abstain below this cosine: only off-topic questions. On the bundled dev set the
    best sentence of an answerable question scores 0.41-0.90, but so does that of most
    unanswerable ones (0.46-0.80, same topic): cosine alone cannot tell them apart, and
    a higher cut would mostly throw away right sentences."""

    def __init__(self, threshold: float | None = None) -> None:
        if threshold is not None:
            self.threshold = threshold

    def read(self, question: str, question_vector: np.ndarray, evidence: Sequence[Evidence],
             df: Callable | None = None, n_docs: int | None = None,
             limit: int = 10) -> list[SpanAnswer]:
        """Evidence sentences as answer spans, most similar to the question first."""
        q = np.asarray(question_vector, dtype=np.float32)
        scored = [(float(np.dot(q, ev.vector)), i) for i, ev in enumerate(evidence)
                  if ev.text.strip()]
        # Stable on ties: the earlier sentence (from the better passage) wins.
        scored.sort(key=lambda pair: (-pair[0], pair[1]))
        out = []
        for cosine, i in scored[:limit]:
            ev = evidence[i]
            out.append(SpanAnswer(evidence=ev, start=ev.start, end=ev.end, text=ev.text,
                                  score=cosine, confidence=min(max(cosine, 0.0), 1.0),
                                  answer_type="sentence"))
        return out


def build_systems(settings, indexer=None, names: Sequence[str] = SYSTEM_NAMES) -> dict:
    """QA pipelines for `names` (a subset of SYSTEM_NAMES) over `settings.index`.

    Models are loaded once: `indexer` (or a new one) and one span Reader are shared.
    Returns {name: QAPipeline}, in the order of `names`.
    """
    from indexing.chunking import ChunkParams
    from indexing.pipeline import Indexer
    from service.qa import QAPipeline, make_reader

    unknown = [n for n in names if n not in SYSTEM_NAMES]
    if unknown:
        raise ValueError(f"unknown system(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(SYSTEM_NAMES)}")
    indexer = indexer or Indexer(model=settings.model,
                                 chunk=ChunkParams(settings.chunk_tokens, settings.chunk_overlap))
    # The system's reader answers at the operator's cut (`settings.min_confidence`, or its
    # model's); the other reader, on another scale, and best-sentence keep their own cuts.
    reader = make_reader(indexer.nlp, settings.reader, settings.min_confidence)

    def load_reader(kind: str):
        # The neural reader's assist is a feature reader at its own cut: one model serves both.
        if kind == settings.reader:
            return reader
        if kind == "feature":
            return reader.assist
        return make_reader(indexer.nlp, kind, assist=reader)

    recipes = {
        SYSTEM: (lambda: reader, "hybrid"),
        **{name: (lambda kind=kind: load_reader(kind), "hybrid")
           for kind, name in READER_SYSTEMS.items()},
        "lexical-only": (lambda: reader, "lexical"),
        "dense-only": (lambda: reader, "dense"),
        "best-sentence": (BestSentenceReader, "hybrid"),
    }
    systems = {}
    for name in names:
        load, mode = recipes[name]
        systems[name] = QAPipeline(settings, indexer=indexer, reader=load(), retrieval_mode=mode)
    return systems
