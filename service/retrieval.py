"""Hybrid retrieval: dense (FAISS) and lexical (BM25) search fused by reciprocal rank.

Also owns the step from passages to the reader's evidence: the annotated sentences
of the retrieved chunks. Near-duplicate passages (syndicated news) are shown once,
but every article they came from stays available as support for the reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from indexing.sentences import to_spacy_doc
from indexing.store import Index
from service.cache import LRUCache

# Reciprocal-rank fusion, tuned on the dev splits (answer F1 bundled dev / SQuAD dev):
# equal weights, k=60: 0.523 / 0.440 (first reader); with the refit reader, dense 0.25 and
# k=60: 0.594 / 0.450, k=10: 0.604 / 0.456, against 0.594 / 0.456 for BM25 alone and
# 0.562 / 0.454 for dense alone. Names, numbers and rare words make BM25 the stronger
# ranker on news; dense search still rescues paraphrases; a small k trusts the top ranks.
# Rechecked with the reader fitted on every mode's evidence (out-of-fold dev F1, 6 fold
# assignments, news / SQuAD): dense weight 0.25: 58.9 / 47.5; 0.5: 57.4 / 47.1; 1.0:
# 55.6 / 47.6; 2.0: 55.2 / 48.0; BM25 alone 57.7 / 47.6; dense alone 54.7 / 47.7.
RRF_K = 10
DENSE_WEIGHT = 0.25
LEXICAL_WEIGHT = 1.0
CANDIDATES = 50  # per retriever, before fusion
DUPLICATE_COSINE = 0.95
# Rebuilt sentences (text, spaCy Doc, vector) kept per index generation: popular passages
# come back across questions, and rebuilding a Doc is a third of retrieval's time.
SENTENCE_CACHE = 4096


@dataclass(frozen=True, slots=True)
class Passage:
    """A retrieved chunk: `document.text[start:end] == text`."""

    chunk_id: int
    doc_id: str
    title: str | None
    source: str | None
    start: int
    end: int
    text: str
    score: float
    first_sentence: int
    last_sentence: int
    duplicates: tuple[str, ...] = ()  # other doc_ids carrying (nearly) the same passage
    duplicate_chunks: tuple[int, ...] = ()  # their chunk ids, still read for support


@dataclass(frozen=True, slots=True)
class Evidence:
    """One sentence the reader may answer from, with where it lies and how it was found."""

    doc_id: str
    title: str | None
    source: str | None
    start: int  # offsets into the document's text
    end: int
    text: str
    doc: object = field(repr=False)  # spaCy Doc of `text`; token.idx is relative to `start`
    vector: np.ndarray = field(repr=False)  # unit MiniLM embedding of `text`
    passage_rank: int = 0  # rank of the passage it came from (0 = best)
    passage_score: float = 0.0  # that passage's fused score, best passage = 1.0
    ord: int = 0  # sentence number within the document


class Retriever:
    """Hybrid search over one open Index."""

    def __init__(self, index: Index, embedder, vocab=None, mode: str = "hybrid"):
        if mode not in ("hybrid", "dense", "lexical"):
            raise ValueError(f"unknown retrieval mode {mode!r}")
        self.index = index
        self.embedder = embedder
        self.vocab = vocab
        self.mode = mode
        self._sentences: LRUCache[Evidence] = LRUCache(SENTENCE_CACHE)

    def fused(self, query: str, k: int, doc_ids: Sequence[str] | None = None,
              query_vector: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Top-k chunk ids with fused scores (normalised so the best is 1.0)."""
        allowed = set(doc_ids) if doc_ids is not None else None
        n = max(k, CANDIDATES)
        rankings: list[tuple[float, list[tuple[int, float]]]] = []
        if self.mode in ("hybrid", "dense"):
            if query_vector is None:
                query_vector = self.embedder.encode_one(query)
            rankings.append((DENSE_WEIGHT, self.index.search_dense(query_vector, n, allowed)))
        if self.mode in ("hybrid", "lexical"):
            rankings.append((LEXICAL_WEIGHT, self.index.search_lexical(query, n, allowed)))
        scores: dict[int, float] = {}
        for weight, ranking in rankings:
            for rank, (cid, _) in enumerate(ranking):
                scores[cid] = scores.get(cid, 0.0) + weight / (RRF_K + rank + 1)
        ordered = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        if not ordered:
            return []
        best = ordered[0][1]
        return [(cid, s / best) for cid, s in ordered]

    def search(self, query: str, k: int = 5, doc_ids: Sequence[str] | None = None,
               query_vector: np.ndarray | None = None, dedupe: bool = True) -> list[Passage]:
        """The k best passages; near-duplicates are folded into the first one's `duplicates`."""
        if query_vector is None and self.mode != "lexical":
            query_vector = self.embedder.encode_one(query)
        # Fetch extra candidates so that folding duplicates still leaves k passages.
        hits = self.fused(query, k * 3 if dedupe else k, doc_ids, query_vector)
        refs = [self.index.chunk_refs[cid] for cid, _ in hits]
        texts = self.index.texts(r.doc_id for r in refs)
        meta = self.index.metadata(r.doc_id for r in refs)
        passages: list[Passage] = []
        kept_vectors: list[np.ndarray] = []
        for (cid, score), ref in zip(hits, refs):
            text = texts[ref.doc_id][ref.start:ref.end]
            if dedupe:
                vec = self.index.vectors.reconstruct(int(cid))
                dup_of = next((i for i, v in enumerate(kept_vectors)
                               if float(v @ vec) >= DUPLICATE_COSINE
                               and passages[i].doc_id != ref.doc_id), None)
                if dup_of is not None:
                    passages[dup_of] = _with_duplicate(passages[dup_of], ref)
                    continue
                kept_vectors.append(vec)
            title, source = meta.get(ref.doc_id, (None, None))
            passages.append(Passage(cid, ref.doc_id, title, source, ref.start, ref.end, text,
                                    round(score, 6), ref.first_sentence, ref.last_sentence))
            if len(passages) == k:
                break
        return passages

    def evidence(self, passages: Sequence[Passage]) -> list[Evidence]:
        """The annotated sentences of `passages` and their near-duplicates, each sentence once."""
        seen: set[tuple[str, int]] = set()
        out: list[Evidence] = []
        texts = self.index.texts(p.doc_id for p in passages)
        dup_refs = [self.index.chunk_refs[c] for p in passages for c in p.duplicate_chunks]
        texts.update(self.index.texts(r.doc_id for r in dup_refs))
        meta = self.index.metadata(r.doc_id for r in dup_refs)
        for rank, p in enumerate(passages):
            # The passage's own sentences, then those of its syndicated copies.
            sources = [(p.doc_id, p.first_sentence, p.last_sentence, p.title, p.source)]
            for c in p.duplicate_chunks:
                ref = self.index.chunk_refs[c]
                title, source = meta.get(ref.doc_id, (None, None))
                sources.append((ref.doc_id, ref.first_sentence, ref.last_sentence, title, source))
            for doc_id, first, last, title, source in sources:
                for base in self._sentence_range(doc_id, first, last, texts, title, source):
                    if (doc_id, base.ord) in seen:
                        continue
                    seen.add((doc_id, base.ord))
                    out.append(Evidence(
                        doc_id=doc_id, title=title, source=source, start=base.start,
                        end=base.end, text=base.text, doc=base.doc, vector=base.vector,
                        passage_rank=rank, passage_score=p.score, ord=base.ord,
                    ))
        return out

    def _sentence_range(self, doc_id: str, first: int, last: int, texts: dict[str, str],
                        title: str | None, source: str | None) -> list[Evidence]:
        """Sentences first..last of one document, rebuilt once per generation (cached)."""
        found = [self._sentences.get((doc_id, o)) for o in range(first, last + 1)]
        missing = [first + i for i, e in enumerate(found) if e is None]
        if missing:
            text = texts[doc_id]
            for s in self.index.sentences(doc_id, missing[0], missing[-1]):
                if found[s.ord - first] is not None:
                    continue
                sentence_text = text[s.start:s.end]
                base = Evidence(doc_id=doc_id, title=title, source=source, start=s.start,
                                end=s.end, text=sentence_text,
                                doc=to_spacy_doc(self.vocab, sentence_text, s.annotation),
                                vector=s.vector, ord=s.ord)
                self._sentences.put((doc_id, s.ord), base)
                found[s.ord - first] = base
        return [e for e in found if e is not None]


def _with_duplicate(p: Passage, ref) -> Passage:
    doc_ids = p.duplicates if ref.doc_id in p.duplicates else (*p.duplicates, ref.doc_id)
    return Passage(p.chunk_id, p.doc_id, p.title, p.source, p.start, p.end, p.text, p.score,
                   p.first_sentence, p.last_sentence, doc_ids, (*p.duplicate_chunks, ref.id))
