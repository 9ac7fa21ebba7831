"""The indexing pipeline: articles -> sentences -> chunks -> embeddings -> index directory.

`Indexer` holds the loaded models; `build`, `add_articles` and `remove_documents` are
the incremental operations behind `article-qa index build|add|remove` and the
`/documents` write routes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from indexing.articles import Article, SkippedFile, iter_corpus
from indexing.chunking import TIKTOKEN_ENCODING, Chunk, ChunkParams, chunk_document
from indexing.embedding import DEFAULT_MODEL, Embedder
from indexing.errors import CorpusError, DocumentNotFoundError, IncompatibleIndexError
from indexing.sentences import Sentence, load_nlp, split_sentences
from indexing.shards import (
    ShardedIndex,
    ShardedWriter,
    index_exists,
    is_sharded,
    open_index,
    rebuild_advice,
    write_sharded,
)
from indexing.store import FORMAT_VERSION, IndexedDocument, Manifest, write_index

# Documents per annotate/embed step: small enough that the two steps overlap early.
BATCH_DOCUMENTS = 16


@dataclass(frozen=True, slots=True)
class BuildReport:
    """What one build/add/remove did; `summary()` is the CLI's last line."""

    documents: int
    indexed: int
    unchanged: int
    removed: int
    skipped: tuple[SkippedFile, ...]
    chunks: int
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{self.documents} documents ({self.indexed} indexed, {self.unchanged} unchanged, "
            f"{self.removed} removed, {len(self.skipped)} skipped), {self.chunks} chunks, "
            f"{self.seconds:.1f} s"
        )


@dataclass(frozen=True, slots=True)
class Prepared:
    """Articles split into annotated sentences and chunks, waiting to be embedded."""

    articles: tuple[Article, ...]
    sentences: tuple[list[Sentence], ...]
    chunks: tuple[list[Chunk], ...]


class Indexer:
    """Turns articles into IndexedDocuments with one loaded spaCy pipeline and embedder."""

    def __init__(self, model: str = DEFAULT_MODEL, chunk: ChunkParams | None = None,
                 embedder: Embedder | None = None, nlp=None, backend: str | None = None,
                 index_type: str | None = None, index_threshold: int | None = None):
        self.index_type = index_type  # None: what the index records (auto for a new one)
        self.index_threshold = index_threshold
        self.embedder = embedder or Embedder(model, backend=backend)
        self.nlp = nlp or load_nlp()
        self.chunk = chunk or ChunkParams()
        self.stage_seconds: dict[str, float] = {"sentences": 0.0, "chunk": 0.0, "embed": 0.0}

    @property
    def spacy_model(self) -> str:
        meta = self.nlp.meta
        return f"{meta.get('lang', 'en')}_{meta.get('name', '?')}-{meta.get('version', '?')}"

    def manifest(self) -> Manifest:
        """The manifest a fresh index built by this indexer starts from."""
        return Manifest(
            format_version=FORMAT_VERSION, model=self.embedder.name, dim=self.embedder.dim,
            tokenizer=TIKTOKEN_ENCODING, spacy_model=self.spacy_model,
            chunk_target_tokens=self.chunk.target_tokens,
            chunk_overlap_sentences=self.chunk.overlap_sentences,
        )

    def check_compatible(self, manifest: Manifest, index_dir: Path) -> None:
        """Raise IncompatibleIndexError when `manifest` was built with other settings."""
        mine = self.manifest()
        for name in ("model", "dim", "tokenizer", "chunk_target_tokens", "chunk_overlap_sentences"):
            if getattr(manifest, name) != getattr(mine, name):
                raise IncompatibleIndexError(
                    f"index {index_dir} was built with {name}={getattr(manifest, name)!r}, "
                    f"this run uses {getattr(mine, name)!r}; rebuild it with "
                    f"`article-qa index build --index {index_dir} --rebuild`"
                )

    def process(self, articles: Sequence[Article]) -> list[IndexedDocument]:
        """Split, annotate, chunk and embed a batch of articles."""
        return self.embed(self.prepare(articles))

    def prepare(self, articles: Sequence[Article]) -> Prepared:
        """The first half of `process`: sentences with their annotation, and chunks."""
        t0 = time.perf_counter()
        all_sentences = list(split_sentences(self.nlp, [a.text for a in articles]))
        t1 = time.perf_counter()
        all_chunks = [
            chunk_document(a.text, sents, self.chunk, self.embedder.count_tokens,
                           self.embedder.max_tokens)
            for a, sents in zip(articles, all_sentences)
        ]
        self.stage_seconds["sentences"] += t1 - t0
        self.stage_seconds["chunk"] += time.perf_counter() - t1
        return Prepared(tuple(articles), tuple(all_sentences), tuple(all_chunks))

    def embed(self, prepared: Prepared) -> list[IndexedDocument]:
        """The second half of `process`: every chunk and sentence embedded."""
        t0 = time.perf_counter()
        articles, all_sentences, all_chunks = (prepared.articles, prepared.sentences,
                                               prepared.chunks)
        chunk_texts = [a.text[c.start:c.end] for a, cs in zip(articles, all_chunks) for c in cs]
        sent_texts = [a.text[s.start:s.end] for a, ss in zip(articles, all_sentences) for s in ss]
        vectors = self.embedder.encode(chunk_texts + sent_texts)
        self.stage_seconds["embed"] += time.perf_counter() - t0
        chunk_vecs, sent_vecs = vectors[: len(chunk_texts)], vectors[len(chunk_texts):]
        docs, ci, si = [], 0, 0
        for a, sents, chunks in zip(articles, all_sentences, all_chunks):
            docs.append(IndexedDocument(a, sents, chunks, chunk_vecs[ci: ci + len(chunks)],
                                        sent_vecs[si: si + len(sents)]))
            ci += len(chunks)
            si += len(sents)
        return docs


def _batches(items: Sequence[Article], size: int) -> Iterable[Sequence[Article]]:
    for i in range(0, len(items), size):
        yield items[i: i + size]


@contextmanager
def _writer(indexer: Indexer, index_dir: Path, rebuild: bool, shards: int | None):
    """The writer a change to `index_dir` goes through: one IndexWriter, or a
    ShardedWriter when the index is (or is to become) sharded."""
    options = {"index_type": indexer.index_type, "index_threshold": indexer.index_threshold}
    if shards is not None or is_sharded(index_dir):
        with write_sharded(index_dir, indexer.manifest(), shards, rebuild,
                           on_open=lambda w, d: indexer.check_compatible(w.manifest, d),
                           **options) as writer:
            yield writer
        return
    with write_index(index_dir, indexer.manifest(), rebuild=rebuild, **options) as writer:
        if not rebuild:
            indexer.check_compatible(writer.manifest, index_dir)
        yield writer


def _commit(writer, build_seconds: float | None = None) -> tuple[int, int]:
    """Publish `writer`'s change; returns the index's (documents, chunks) after it."""
    if isinstance(writer, ShardedWriter):
        return writer.commit(build_seconds)
    writer.commit(build_seconds=build_seconds)
    return len(writer.documents), int(writer.vectors.ntotal)


def _processed(indexer: Indexer, articles: Sequence[Article]) -> Iterable[list[IndexedDocument]]:
    """Batches of finished documents, in order. spaCy annotates the next batch while the
    embedder (which releases the GIL) encodes this one: the halves overlap on many cores."""
    with ThreadPoolExecutor(1, thread_name_prefix="index-embed") as ahead:
        pending = None
        for batch in _batches(articles, BATCH_DOCUMENTS):
            prepared = indexer.prepare(batch)
            if pending is not None:
                yield pending.result()
            pending = ahead.submit(indexer.embed, prepared)
        if pending is not None:
            yield pending.result()


def _write(indexer: Indexer, index_dir: Path, to_add: Sequence[Article], to_remove: Iterable[str],
           rebuild: bool, progress: bool, shards: int | None = None, processor=None,
           ) -> tuple[int, int, dict[str, float]]:
    """Apply removals then additions atomically (one generation, or one per changed shard
    published together); returns (docs, chunks, stages). `processor` (a
    `cluster.RayProcessor`) annotates and embeds on a Ray cluster instead of here."""
    from tqdm import tqdm

    stages = {"store": 0.0}
    started = time.perf_counter()
    with _writer(indexer, Path(index_dir), rebuild, shards) as writer:
        for doc_id in to_remove:
            writer.remove(doc_id)
        bar = tqdm(total=len(to_add), unit="doc", desc="indexing", disable=not progress)

        def store(docs: list[IndexedDocument]) -> None:
            t = time.perf_counter()
            for doc in docs:
                writer.add(doc)
            stages["store"] += time.perf_counter() - t
            bar.update(len(docs))

        t = time.perf_counter()
        batches = processor.process(indexer, to_add) if processor is not None else \
            _processed(indexer, to_add)
        for docs in batches:
            store(docs)
        if processor is not None:
            stages["cluster"] = time.perf_counter() - t - stages["store"]
        bar.close()
        t = time.perf_counter()
        documents, chunks = _commit(writer, time.perf_counter() - started)
        stages["store"] += time.perf_counter() - t
        return documents, chunks, stages


def build(corpus: Path, index_dir: Path, indexer: Indexer, rebuild: bool = False,
          progress: bool = False, warn: Callable[[str], None] = print,
          shards: int | None = None, processor=None) -> BuildReport:
    """Index every article under `corpus` into `index_dir`, incrementally unless `rebuild`.

    Unchanged documents (same content hash) are kept, changed ones re-indexed, and
    documents no longer in the corpus removed. `shards` makes a new (or rebuilt) index
    sharded (indexing/shards.py); an existing sharded index stays so. `processor`
    annotates and embeds on a Ray cluster (indexing/cluster.py). Raises CorpusError when
    nothing at all could be indexed.
    """
    started = time.perf_counter()
    t = time.perf_counter()
    articles: list[Article] = []
    skipped: list[SkippedFile] = []
    for item in iter_corpus(corpus):
        if isinstance(item, SkippedFile):
            warn(f"warning: {item}")
            skipped.append(item)
        else:
            articles.append(item)
    parse_seconds = time.perf_counter() - t
    if not articles:
        raise CorpusError(f"nothing to index in {corpus}: no readable .txt or .jsonl article found")

    existing: dict[str, str] = {}
    index_dir = Path(index_dir)
    if not rebuild and index_exists(index_dir):
        current = open_index(index_dir)
        indexer.check_compatible(current.manifest, index_dir)
        existing = dict(current.manifest.documents)
        current.close()
        have = len(current.shards) if isinstance(current, ShardedIndex) else None
        if shards is not None and have != shards:
            raise IncompatibleIndexError(
                f"index {index_dir} has {have or 'no'} shards, not {shards}; "
                f"{rebuild_advice(index_dir, shards)}")
    wanted = {a.doc_id for a in articles}
    to_add = [a for a in articles if existing.get(a.doc_id) != a.content_hash]
    to_remove = sorted((set(existing) - wanted) | {a.doc_id for a in to_add if a.doc_id in existing})
    removed = len(set(existing) - wanted)
    indexer.stage_seconds = {k: 0.0 for k in indexer.stage_seconds}
    if to_add or to_remove or not existing:
        documents, chunks, stages = _write(indexer, index_dir, to_add, to_remove, rebuild, progress,
                                           shards, processor)
    else:
        current = open_index(index_dir)
        documents, chunks, stages = current.document_count, current.chunk_count, {"store": 0.0}
        current.close()
    return BuildReport(
        documents=documents, indexed=len(to_add), unchanged=len(articles) - len(to_add),
        removed=removed, skipped=tuple(skipped), chunks=chunks,
        seconds=time.perf_counter() - started,
        stage_seconds={"parse": parse_seconds, **indexer.stage_seconds, **stages},
    )


def add_articles(index_dir: Path, articles: Sequence[Article], indexer: Indexer,
                 progress: bool = False) -> BuildReport:
    """Add (or replace) articles in an existing or new index, atomically."""
    started = time.perf_counter()
    documents, chunks, stages = _write(indexer, Path(index_dir), list(articles), [], False, progress)
    return BuildReport(documents, len(articles), 0, 0, (), chunks,
                       time.perf_counter() - started, stages)


def remove_documents(index_dir: Path, doc_ids: Sequence[str]) -> BuildReport:
    """Remove documents by id, atomically; unknown ids raise DocumentNotFoundError.

    Needs no model: nothing is embedded.
    """
    started = time.perf_counter()
    index_dir = Path(index_dir)
    current = open_index(index_dir)
    manifest = current.manifest
    current.close()
    sharded = isinstance(current, ShardedIndex)
    with (write_sharded(index_dir, manifest) if sharded else write_index(index_dir, manifest)) \
            as writer:
        known = writer.documents  # a sharded writer reads its untouched shards' manifests
        unknown = [d for d in doc_ids if d not in known]
        if unknown:
            raise DocumentNotFoundError(
                f"not in index {index_dir}: {', '.join(unknown)} (see `article-qa index info`)")
        for doc_id in doc_ids:
            writer.remove(doc_id)
        documents, chunks = _commit(writer)
    return BuildReport(documents, 0, 0, len(doc_ids), (), chunks, time.perf_counter() - started)
