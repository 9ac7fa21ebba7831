"""The index directory: FAISS vectors, an SQLite store (documents, chunks, sentences,
FTS5/BM25) and a manifest, published atomically as immutable generations.

Layout of an index directory::

    CURRENT            name of the live generation ("gen-000003"), replaced atomically
    gen-000003/        manifest.json, store.sqlite, vectors.faiss (never modified)
    .lock              writers hold an exclusive flock on it

A write copies the live generation into a temporary directory, changes the copy,
fsyncs it, renames it to the next generation and only then points CURRENT at it. A
crash at any moment leaves CURRENT naming a complete generation, and readers keep
using the generation they opened.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import re
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from indexing import vectors as vector_index
from indexing.articles import Article
from indexing.chunking import Chunk
from indexing.errors import (
    CorruptIndexError,
    DocumentNotFoundError,
    IncompatibleIndexError,
    IndexNotFoundError,
)
from indexing.sentences import Sentence

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STORE = "store.sqlite"
VECTORS = "vectors.faiss"
CURRENT = "CURRENT"
CONNECTIONS = 4  # read connections per open generation
GENERATION_RE = re.compile(r"gen-(\d{6,})")
_QUERY_TERM_RE = re.compile(r"\w+(?:[.,'’&-]\w+)*")

SCHEMA = """
CREATE TABLE documents (
    doc_id TEXT PRIMARY KEY, title TEXT, summary TEXT, source TEXT, url TEXT,
    published TEXT, uuid TEXT, path TEXT, text TEXT NOT NULL, hash TEXT NOT NULL,
    chunks INTEGER NOT NULL, sentences INTEGER NOT NULL
);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY, doc_id TEXT NOT NULL REFERENCES documents(doc_id),
    ord INTEGER NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL,
    first_sentence INTEGER NOT NULL, last_sentence INTEGER NOT NULL
);
CREATE INDEX chunks_by_doc ON chunks(doc_id, ord);
CREATE TABLE sentences (
    doc_id TEXT NOT NULL, ord INTEGER NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL,
    annotation TEXT NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (doc_id, ord)
) WITHOUT ROWID;
CREATE VIRTUAL TABLE chunks_fts USING fts5(text, tokenize = 'unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE chunks_vocab USING fts5vocab(chunks_fts, 'row');
"""


@dataclass(frozen=True, slots=True)
class Manifest:
    """What an index was built with; a mismatch with the running build means --rebuild."""

    format_version: int
    model: str
    dim: int
    tokenizer: str
    spacy_model: str
    chunk_target_tokens: int
    chunk_overlap_sentences: int
    documents: dict[str, str] = field(default_factory=dict)  # doc_id -> content hash
    chunks: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    last_build_seconds: float = 0.0
    index_type: str = "flat"  # the FAISS index in vectors.faiss (indexing/vectors.py)
    index_params: dict = field(default_factory=dict)  # its build and search parameters
    index_choice: str = "auto"  # what writes build: auto|flat|ivf|hnsw
    index_threshold: int = vector_index.DEFAULT_THRESHOLD  # chunks where auto turns approximate

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> Manifest:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("manifest is not a JSON object")
        return cls(**data)


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    """A stored document: metadata and its canonical text."""

    doc_id: str
    title: str | None
    summary: str | None
    source: str | None
    url: str | None
    published: str | None
    text: str
    chunks: int
    hash: str


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """Where a stored chunk lies: its document and character span."""

    id: int
    doc_id: str
    start: int
    end: int
    first_sentence: int
    last_sentence: int


@dataclass(frozen=True, slots=True)
class StoredSentence:
    """A stored sentence with its annotation and embedding."""

    doc_id: str
    ord: int
    start: int
    end: int
    annotation: str
    vector: np.ndarray


@dataclass(frozen=True, slots=True)
class IndexedDocument:
    """Everything the writer stores for one article."""

    article: Article
    sentences: Sequence[Sentence]
    chunks: Sequence[Chunk]
    chunk_vectors: np.ndarray
    sentence_vectors: np.ndarray


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def fts_query(text: str) -> str | None:
    """Turn free text into a safe FTS5 query: each word quoted, words OR-ed.

    Operator characters and keywords (", *, NEAR(, AND, -, :) lose their meaning, so
    any user string is a valid query; None when the text has no words.
    """
    terms = query_terms(text)
    if not terms:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


def query_terms(text: str) -> list[str]:
    """The words a lexical search looks for: lower-cased, each once, at most 64."""
    return list(dict.fromkeys(t.lower() for t in _QUERY_TERM_RE.findall(text)))[:64]


def live_generation(index_dir: Path) -> Path | None:
    """The generation directory CURRENT names, or None when the directory holds no index."""
    current = index_dir / CURRENT
    if not current.exists():
        return None
    name = current.read_text(encoding="utf-8").strip()
    if not GENERATION_RE.fullmatch(name):
        raise CorruptIndexError(
            f"index {index_dir}: {CURRENT} names {name!r}, not a generation; "
            "rebuild with `article-qa index build --rebuild`"
        )
    return index_dir / name


class Index:
    """A read-only view of one published generation; safe to share between threads."""

    def __init__(self, index_dir: Path, generation: Path, manifest: Manifest, vectors):
        self.index_dir = index_dir
        self.generation = generation
        self.manifest = manifest
        self.vectors = vectors
        # All connections are opened now: a later writer may delete this generation's
        # directory, and an open file stays readable where a new open would fail.
        # sqlite3.threadsafety is 3 (serialized), so threads may share a connection.
        uri = f"file:{generation / STORE}?mode=ro&immutable=1"
        self._conns = [sqlite3.connect(uri, uri=True, check_same_thread=False)
                       for _ in range(CONNECTIONS)]
        self._local = threading.local()
        self._next = itertools.count()
        rows = self.conn().execute(
            'SELECT id, doc_id, start, "end", first_sentence, last_sentence FROM chunks'
        ).fetchall()
        self.chunk_refs: dict[int, ChunkRef] = {r[0]: ChunkRef(*r) for r in rows}
        self._doc_count = self.conn().execute("SELECT count(*) FROM documents").fetchone()[0]
        self._term_docs = int(self.conn().execute("SELECT count(*) FROM chunks_fts").fetchone()[0])

    @classmethod
    def open(cls, index_dir: Path, expect_model: str | None = None,
             generation: Path | None = None, fix: str | None = None) -> Index:
        """Open the live generation of `index_dir` (or `generation`), checking format, model
        and integrity. `fix` replaces the advice errors end with (a shard's names its set)."""
        index_dir = Path(index_dir)
        fix = fix or f"rebuild it with `article-qa index build --index {index_dir} --rebuild`"
        generation = generation if generation is not None else live_generation(index_dir)
        if generation is None or not generation.is_dir():
            if generation is not None:
                raise CorruptIndexError(f"index {index_dir}: generation {generation.name} is "
                                        f"missing; {fix}")
            raise IndexNotFoundError(
                f"no index in {index_dir}; build one with "
                f"`article-qa index build --corpus data/articles --index {index_dir}`"
            )
        try:
            manifest = Manifest.from_json((generation / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError) as exc:
            raise CorruptIndexError(f"index {index_dir}: unreadable manifest ({exc}); {fix}") from None
        if manifest.format_version != FORMAT_VERSION:
            raise IncompatibleIndexError(
                f"index {index_dir} has format version {manifest.format_version}, this build "
                f"reads version {FORMAT_VERSION}; {fix}"
            )
        if expect_model is not None and manifest.model != expect_model:
            raise IncompatibleIndexError(
                f"index {index_dir} was built with model {manifest.model!r}, not "
                f"{expect_model!r}; {fix}"
            )
        try:
            vectors = vector_index.read(generation / VECTORS)
        except Exception as exc:
            raise CorruptIndexError(
                f"index {index_dir}: cannot read {VECTORS} ({str(exc).splitlines()[0][:200]}); {fix}"
            ) from None
        if vectors.d != manifest.dim:
            raise CorruptIndexError(f"index {index_dir}: vector dimension mismatch; {fix}")
        if manifest.index_type not in vector_index.INDEX_TYPES:
            raise IncompatibleIndexError(
                f"index {index_dir} has vector index type {manifest.index_type!r}, this build "
                f"reads {', '.join(vector_index.INDEX_TYPES)}; {fix}"
            )
        if vector_index.kind_of(vectors) != manifest.index_type:
            raise CorruptIndexError(
                f"index {index_dir}: {VECTORS} is not the {manifest.index_type!r} index the "
                f"manifest names; {fix}"
            )
        store = generation / STORE
        if not store.is_file():
            raise CorruptIndexError(f"index {index_dir}: {STORE} is missing; {fix}")
        try:
            index = cls(index_dir, generation, manifest, vectors)
        except sqlite3.DatabaseError as exc:
            raise CorruptIndexError(f"index {index_dir}: {STORE} is unreadable ({exc}); {fix}") from None
        if vectors.ntotal != len(index.chunk_refs) or index._doc_count != len(manifest.documents):
            index.close()
            raise CorruptIndexError(
                f"index {index_dir}: vectors ({vectors.ntotal}), chunks ({len(index.chunk_refs)}) "
                f"and manifest disagree; {fix}"
            )
        return index

    def conn(self) -> sqlite3.Connection:
        """This thread's read-only connection to the generation's store (from a fixed pool)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._conns[next(self._next) % len(self._conns)]
            self._local.conn = conn
        return conn

    def close(self) -> None:
        for conn in self._conns:
            conn.close()
        self._local = threading.local()

    # -- documents -------------------------------------------------------------
    @property
    def document_count(self) -> int:
        return self._doc_count

    @property
    def chunk_count(self) -> int:
        return len(self.chunk_refs)

    def has_document(self, doc_id: str) -> bool:
        return doc_id in self.manifest.documents

    def list_documents(self) -> list[DocumentRecord]:
        rows = self.conn().execute(
            "SELECT doc_id, title, summary, source, url, published, '' AS text, chunks, hash "
            "FROM documents ORDER BY doc_id"
        ).fetchall()
        return [DocumentRecord(*r) for r in rows]

    def document_lengths(self) -> dict[str, int]:
        rows = self.conn().execute("SELECT doc_id, length(text) FROM documents").fetchall()
        return dict(rows)

    def document(self, doc_id: str) -> DocumentRecord:
        row = self.conn().execute(
            "SELECT doc_id, title, summary, source, url, published, text, chunks, hash "
            "FROM documents WHERE doc_id = ?", (doc_id,)
        ).fetchone()
        if row is None:
            raise DocumentNotFoundError(f"no document with doc_id {doc_id!r} in the index")
        return DocumentRecord(*row)

    def texts(self, doc_ids: Iterable[str]) -> dict[str, str]:
        ids = list(dict.fromkeys(doc_ids))
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.conn().execute(
            f"SELECT doc_id, text FROM documents WHERE doc_id IN ({marks})", ids).fetchall()
        return dict(rows)

    def metadata(self, doc_ids: Iterable[str]) -> dict[str, tuple[str | None, str | None]]:
        """doc_id -> (title, source)."""
        ids = list(dict.fromkeys(doc_ids))
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.conn().execute(
            f"SELECT doc_id, title, source FROM documents WHERE doc_id IN ({marks})", ids
        ).fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    # -- search ----------------------------------------------------------------
    def chunk_ids(self, doc_ids: set[str]) -> list[int]:
        """Ids of the chunks of `doc_ids` (the filter both searches apply)."""
        return [c.id for c in self.chunk_refs.values() if c.doc_id in doc_ids]

    def search_dense(self, query_vector: np.ndarray, k: int,
                     doc_ids: set[str] | None = None) -> list[tuple[int, float]]:
        """Top-k chunk ids by inner product (cosine for unit vectors), best first.

        Exact for a flat index; for ivf and hnsw approximate, with the recall
        bench/scale.py measures.
        """
        if self.vectors.ntotal == 0 or k <= 0:
            return []
        allowed = None
        if doc_ids is not None:
            allowed = np.array(self.chunk_ids(doc_ids), dtype=np.int64)
            if allowed.size == 0:
                return []
        m = self.manifest
        scores, ids = vector_index.search(self.vectors, m.index_type, m.index_params,
                                          query_vector, k, allowed)
        return [(int(i), float(s)) for i, s in zip(ids, scores) if i >= 0]

    def search_lexical(self, query: str, k: int,
                       doc_ids: set[str] | None = None) -> list[tuple[int, float]]:
        """Top-k chunk ids by BM25 (FTS5), best first; scores are positive, higher better."""
        match = fts_query(query)
        if match is None or k <= 0:
            return []
        sql = "SELECT rowid, -bm25(chunks_fts) AS score FROM chunks_fts WHERE chunks_fts MATCH ?"
        args: list = [match]
        if doc_ids is not None:
            allowed = self.chunk_ids(doc_ids)
            if not allowed:
                return []
            sql += f" AND rowid IN ({','.join(str(int(i)) for i in allowed)})"
        sql += " ORDER BY bm25(chunks_fts) LIMIT ?"
        args.append(int(k))
        try:
            rows = self.conn().execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            return []
        return [(int(r[0]), float(r[1])) for r in rows]

    def document_frequency(self, terms: Iterable[str]) -> dict[str, int]:
        """How many chunks contain each (lower-cased) term."""
        terms = list(dict.fromkeys(t.lower() for t in terms))
        if not terms:
            return {}
        marks = ",".join("?" * len(terms))
        rows = self.conn().execute(
            f"SELECT term, doc FROM chunks_vocab WHERE term IN ({marks})", terms).fetchall()
        found = dict(rows)
        return {t: int(found.get(t, 0)) for t in terms}

    @property
    def fts_documents(self) -> int:
        return self._term_docs

    def token_total(self) -> int:
        """Tokens in all passages together (FTS5's length statistics)."""
        return int(self.conn().execute(
            "SELECT coalesce(sum(cnt), 0) FROM chunks_vocab").fetchone()[0])

    def phrase_rows(self, phrase: Sequence[str]) -> int:
        """How many passages contain `phrase`, a sequence of tokens (FTS5's nHit)."""
        if len(phrase) == 1:
            return self.document_frequency(phrase).get(phrase[0].lower(), 0)
        quoted = '"' + " ".join(phrase).replace('"', '""') + '"'
        return int(self.conn().execute(
            "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?", [quoted]).fetchone()[0])

    def phrase_rows_many(self, phrases: Sequence[Sequence[str]]) -> list[int]:
        return [self.phrase_rows(p) for p in phrases]

    def chunk_refs_of(self, ids: Iterable[int]) -> list[ChunkRef]:
        return [self.chunk_refs[i] for i in ids]

    def sentences(self, doc_id: str, first: int, last: int) -> list[StoredSentence]:
        rows = self.conn().execute(
            'SELECT doc_id, ord, start, "end", annotation, vector FROM sentences '
            "WHERE doc_id = ? AND ord BETWEEN ? AND ? ORDER BY ord", (doc_id, first, last)
        ).fetchall()
        return [StoredSentence(r[0], r[1], r[2], r[3], r[4],
                               np.frombuffer(r[5], dtype=np.float16).astype(np.float32))
                for r in rows]

    def size_bytes(self) -> dict[str, int]:
        return {p.name: p.stat().st_size for p in self.generation.iterdir() if p.is_file()}


# -- writing ---------------------------------------------------------------------
@contextmanager
def writer_lock(index_dir: Path) -> Iterator[None]:
    """Hold the directory's exclusive writer lock (a flock on its .lock file)."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / ".lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _next_generation_name(index_dir: Path) -> str:
    numbers = [int(m.group(1)) for p in index_dir.iterdir() if (m := GENERATION_RE.fullmatch(p.name))]
    return f"gen-{max(numbers, default=0) + 1:06d}"


class IndexWriter:
    """A pending change to an index directory, published by `commit()`.

    Use as a context manager: on an exception the temporary copy is discarded and the
    live generation is untouched.
    """

    def __init__(self, index_dir: Path, manifest: Manifest, base: Path | None):
        import faiss

        self.index_dir = index_dir
        self.tmp = index_dir / f".tmp-{uuid.uuid4().hex}"
        self.tmp.mkdir()
        self.manifest = manifest
        self.documents = dict(manifest.documents)
        store = self.tmp / STORE
        self.conn = sqlite3.connect(store, isolation_level=None)
        if base is not None:
            src = sqlite3.connect(f"file:{base / STORE}?mode=ro", uri=True)
            try:
                src.backup(self.conn)
            finally:
                src.close()
            self.vectors = faiss.read_index(str(base / VECTORS))
        else:
            self.conn.executescript(SCHEMA)
            self.vectors = vector_index.empty_flat(manifest.dim)
        self.index_type = vector_index.kind_of(self.vectors)
        # FAISS cannot remove from an HNSW graph: removed ids wait here for the rebuild
        # at commit.
        self._removed: set[int] = set()
        self.conn.execute("PRAGMA journal_mode=OFF")
        self.conn.execute("PRAGMA synchronous=OFF")  # the copy is fsynced once, at commit
        self.conn.execute("BEGIN")
        self._next_chunk_id = (self.conn.execute("SELECT coalesce(max(id), 0) FROM chunks")
                               .fetchone()[0] + 1)

    def remove(self, doc_id: str) -> None:
        """Delete a document and everything derived from it."""
        ids = [r[0] for r in self.conn.execute("SELECT id FROM chunks WHERE doc_id = ?", (doc_id,))]
        if ids and self.index_type == "hnsw":
            self._removed.update(ids)
        elif ids:
            self.vectors.remove_ids(np.array(ids, dtype=np.int64))
        if ids:
            self.conn.executemany("DELETE FROM chunks_fts WHERE rowid = ?", [(i,) for i in ids])
        self.conn.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
        self.conn.execute("DELETE FROM sentences WHERE doc_id = ?", (doc_id,))
        self.conn.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
        self.documents.pop(doc_id, None)

    def add(self, doc: IndexedDocument) -> None:
        """Insert one fully processed document (replacing any document with its id)."""
        a = doc.article
        if a.doc_id in self.documents:
            self.remove(a.doc_id)
        self.conn.execute(
            "INSERT INTO documents VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (a.doc_id, a.title, a.summary, a.source, a.url, a.published, a.uuid, a.path, a.text,
             a.content_hash, len(doc.chunks), len(doc.sentences)),
        )
        self.conn.executemany(
            "INSERT INTO sentences VALUES (?,?,?,?,?,?)",
            [(a.doc_id, s.ord, s.start, s.end, s.annotation,
              doc.sentence_vectors[i].astype(np.float16).tobytes())
             for i, s in enumerate(doc.sentences)],
        )
        ids = np.arange(self._next_chunk_id, self._next_chunk_id + len(doc.chunks), dtype=np.int64)
        self._next_chunk_id += len(doc.chunks)
        self.conn.executemany(
            "INSERT INTO chunks VALUES (?,?,?,?,?,?,?)",
            [(int(i), a.doc_id, c.ord, c.start, c.end, c.first_sentence, c.last_sentence)
             for i, c in zip(ids, doc.chunks)],
        )
        self.conn.executemany(
            "INSERT INTO chunks_fts(rowid, text) VALUES (?, ?)",
            [(int(i), a.text[c.start:c.end]) for i, c in zip(ids, doc.chunks)],
        )
        if len(ids):
            self.vectors.add_with_ids(np.ascontiguousarray(doc.chunk_vectors, dtype=np.float32), ids)
        self.documents[a.doc_id] = a.content_hash

    def commit(self, build_seconds: float | None = None, publish: bool = True) -> Path:
        """Publish the change as the next generation; returns its directory.

        With `publish=False` the generation is written and made durable but CURRENT still
        names the old one, and nothing is collected: a sharded index publishes all its
        shards' new generations at once (indexing/shards.py), then `publish_generation`.
        """
        import faiss

        self.conn.execute("COMMIT")
        self.conn.execute("PRAGMA optimize")
        self.conn.close()
        params = self._settle_vectors()
        faiss.write_index(self.vectors, str(self.tmp / VECTORS))
        now = time.time()
        manifest = Manifest(**{
            **asdict(self.manifest),
            "index_type": self.index_type,
            "index_params": params,
            "documents": dict(sorted(self.documents.items())),
            "chunks": int(self.vectors.ntotal),
            "created_at": self.manifest.created_at or now,
            "updated_at": now,
            "last_build_seconds": round(build_seconds, 3) if build_seconds is not None
            else self.manifest.last_build_seconds,
        })
        (self.tmp / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
        for name in (STORE, VECTORS, MANIFEST):
            _fsync_file(self.tmp / name)
        generation = self.index_dir / _next_generation_name(self.index_dir)
        os.rename(self.tmp, generation)
        _fsync_dir(self.index_dir)
        self.manifest = manifest
        if publish:
            publish_generation(self.index_dir, generation.name)
        return generation

    def _settle_vectors(self) -> dict:
        """Rebuild the vectors as the type the manifest's choice asks for at this size.

        Only when needed: the type changes (a threshold was crossed or the choice
        changed), an hnsw graph lost ids, or an ivf index outgrew its training.
        Returns the parameters of the index now in `self.vectors`.
        """
        m = self.manifest
        count = int(self.vectors.ntotal) - len(self._removed)
        target = vector_index.choose(m.index_choice, count, m.index_threshold)
        params = m.index_params if target == m.index_type else {}
        if not (target != self.index_type or self._removed
                or vector_index.needs_rebuild(target, params, count)):
            return params
        ids, x = vector_index.extract(self.vectors)
        if self._removed:
            keep = ~np.isin(ids, np.fromiter(self._removed, dtype=np.int64))
            ids, x = ids[keep], x[keep]
        self.vectors = None  # free the old index before building the new one
        keep_params = params if target == "hnsw" else None  # ivf retrains its lists
        self.vectors, params = vector_index.build(target, m.dim, ids, x, keep_params)
        self.index_type = target
        self._removed.clear()
        return params

    def abort(self) -> None:
        try:
            self.conn.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` so that a reader sees the old or the new file, whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def publish_generation(index_dir: Path, name: str) -> None:
    """Point CURRENT at generation `name` and collect the generations no longer needed."""
    write_atomically(index_dir / CURRENT, name + "\n")
    _collect_garbage(index_dir, keep=name)


def _collect_garbage(index_dir: Path, keep: str) -> None:
    """Delete stale temporary copies and all but the two newest generations."""
    gens = sorted(p.name for p in index_dir.iterdir() if GENERATION_RE.fullmatch(p.name))
    # The previous generation stays for readers that opened it before this commit.
    for name in gens[:-2]:
        if name != keep:
            shutil.rmtree(index_dir / name, ignore_errors=True)
    for p in index_dir.glob(".tmp-*"):
        shutil.rmtree(p, ignore_errors=True)


@contextmanager
def write_index(index_dir: Path, manifest: Manifest, rebuild: bool = False,
                index_type: str | None = None, index_threshold: int | None = None,
                ) -> Iterator[IndexWriter]:
    """Hold the writer lock and yield an IndexWriter over a copy of the live generation.

    With `rebuild`, or when the directory holds no index, the copy starts empty with
    `manifest`'s settings. The caller calls `commit()`; anything else discards the copy.
    `index_type` (auto|flat|ivf|hnsw) and `index_threshold` replace the choice the index
    records; None keeps it.
    """
    if index_type is not None:
        vector_index.choose(index_type, 0, 0)  # raises ValueError on an unknown type
    index_dir = Path(index_dir)
    with writer_lock(index_dir):
        for p in index_dir.glob(".tmp-*"):  # left by a writer that was killed
            shutil.rmtree(p, ignore_errors=True)
        base = None if rebuild else live_generation(index_dir)
        if base is not None:
            current = Index.open(index_dir)  # validates the base before copying it
            manifest = current.manifest
            current.close()
        else:
            manifest = Manifest(**{**asdict(manifest), "documents": {}, "chunks": 0,
                                   "created_at": 0.0, "index_type": "flat", "index_params": {}})
        manifest = Manifest(**{
            **asdict(manifest),
            "index_choice": manifest.index_choice if index_type is None else index_type,
            "index_threshold": (manifest.index_threshold if index_threshold is None
                                else int(index_threshold)),
        })
        writer = IndexWriter(index_dir, manifest, base)
        committed = False
        try:
            yield writer
            committed = writer.tmp.exists() is False
        finally:
            if not committed:
                writer.abort()


def choice_changes(manifest: Manifest, index_type: str | None,
                   index_threshold: int | None) -> bool:
    """Whether a vector-index choice (None: keep that part) differs from the recorded one."""
    return not ((index_type is None or index_type == manifest.index_choice)
                and (index_threshold is None or index_threshold == manifest.index_threshold))


def set_index_choice(index_dir: Path, index_type: str | None = None,
                     index_threshold: int | None = None) -> bool:
    """Record a new vector-index choice and rebuild the vectors if it changes their type.

    Needs no model: the vectors are taken from the index itself. Returns False, writing
    nothing, when the index already records this choice.
    """
    if index_type is None and index_threshold is None:
        return False
    index_dir = Path(index_dir)
    current = Index.open(index_dir)
    manifest = current.manifest
    current.close()
    if not choice_changes(manifest, index_type, index_threshold):
        return False
    with write_index(index_dir, manifest, index_type=index_type,
                     index_threshold=index_threshold) as writer:
        writer.commit()
    return True

