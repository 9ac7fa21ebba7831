"""A corpus with its sentences parsed: from an index's stored parses, or parsed here.

Question generation reads the same spaCy annotation the index stores, so a user who
has indexed their articles adapts the reader without parsing them again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from indexing.articles import Article, SkippedFile, iter_corpus
from indexing.sentences import Sentence, load_nlp, split_sentences

PARSE_BATCH = 64  # articles per spaCy batch


@dataclass(frozen=True, slots=True)
class ParsedArticle:
    """An article's text and its sentences with their stored annotation."""

    doc_id: str
    text: str
    sentences: tuple[Sentence, ...]


def from_corpus(corpus: Path, nlp=None, limit: int | None = None,
                exclude: frozenset[str] = frozenset()) -> Iterator[ParsedArticle]:
    """Parse every readable article under `corpus` (skipping `exclude`d doc_ids)."""
    nlp = nlp or load_nlp()
    batch: list[Article] = []
    taken = 0
    for item in iter_corpus(corpus):
        if isinstance(item, SkippedFile) or item.doc_id in exclude:
            continue
        if limit is not None and taken >= limit:
            break
        batch.append(item)
        taken += 1
        if len(batch) == PARSE_BATCH:
            yield from _parse(nlp, batch)
            batch = []
    yield from _parse(nlp, batch)


def _parse(nlp, articles: list[Article]) -> Iterator[ParsedArticle]:
    for article, sentences in zip(articles, split_sentences(nlp, [a.text for a in articles])):
        yield ParsedArticle(article.doc_id, article.text, tuple(sentences))


def from_index(index_dir: Path, limit: int | None = None,
               exclude: frozenset[str] = frozenset()) -> Iterator[ParsedArticle]:
    """The articles of an index with the sentence parses stored at index time."""
    from indexing.sentences import Sentence
    from indexing.store import Index

    index = Index.open(index_dir)
    try:
        records = [r for r in index.list_documents() if r.doc_id not in exclude]
        for record in records[:limit]:
            text = index.texts([record.doc_id])[record.doc_id]
            stored = index.sentences(record.doc_id, 0, 1 << 30)
            yield ParsedArticle(record.doc_id, text, tuple(
                Sentence(s.ord, s.start, s.end, s.annotation) for s in stored))
    finally:
        index.close()
