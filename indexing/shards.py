"""A sharded index: N shards in the store format under one directory, published together.

Layout of a sharded index directory::

    SHARDS        the live set: JSON naming each shard and the generation it serves,
                  replaced atomically (the commit point of every write)
    shard-000/    an index directory in the store format (CURRENT, gen-*/, .lock) holding
    shard-001/    the documents whose doc_id hashes to it (`shard_of`)
    .lock         writers hold an exclusive flock on it (`store.writer_lock`)

A write makes a new, unpublished generation in each shard it changes
(`IndexWriter.commit(publish=False)`), then replaces SHARDS, then points each shard's
CURRENT at its new generation and collects the old ones. Readers open the generations
SHARDS names, so a crash at any moment leaves the old set or the new one, whole; the
next write first rolls a shard's CURRENT forward to what SHARDS names.

Search fans out to the shards and merges their top-k. Inner products compare across
shards as they are. BM25 does not: FTS5 scores a passage with its own shard's document
count, average length and term frequencies. `ShardedIndex.search_lexical` rescores each
shard's best passages with the statistics of the whole index (`bm25`, FTS5's formula),
so a sharded index ranks passages as one index of the same documents does.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from indexing.cache import LRUCache
from indexing.errors import CorruptIndexError, IncompatibleIndexError, IndexNotFoundError
from indexing.store import (
    CURRENT,
    GENERATION_RE,
    ChunkRef,
    DocumentRecord,
    Index,
    Manifest,
    StoredSentence,
    fts_query,
    live_generation,
    publish_generation,
    query_terms,
    write_atomically,
    writer_lock,
)

SHARDS = "SHARDS"
SHARD_FORMAT = "article-qa-shards"
SHARD_FORMAT_VERSION = 1
MAX_SHARDS = 256
# FTS5's bm25() constants.
BM25_K1 = 1.2
BM25_B = 0.75
# Each shard returns its top k passages for the global rescoring: n shards offer n times
# k, and a passage in the whole index's top k is almost always in its own shard's top k
# (the SQuAD open-retrieval set over 4 shards: the same 301 answers as one index).
LEXICAL_OVERFETCH = 1
# Tokenised passages kept for the rescoring (popular passages come back across queries).
TOKEN_CACHE = 4096
_TOKEN_RE = re.compile(r"[^\W_]+")
_SHARD_RE = re.compile(r"shard-\d{3}")


def shard_name(k: int) -> str:
    return f"shard-{k:03d}"


def shard_of(doc_id: str, shards: int) -> int:
    """The shard a document lives in: a stable hash of its doc_id."""
    return int.from_bytes(hashlib.sha1(doc_id.encode("utf-8")).digest()[:8], "big") % shards


def is_sharded(index_dir: Path) -> bool:
    return (Path(index_dir) / SHARDS).is_file()


def index_exists(index_dir: Path) -> bool:
    """Whether `index_dir` holds an index, sharded or not."""
    index_dir = Path(index_dir)
    return index_dir.is_dir() and (is_sharded(index_dir) or live_generation(index_dir) is not None)


def index_stamp(index_dir: Path) -> str | None:
    """What names the live index: SHARDS' text for a sharded index, CURRENT's otherwise.
    It changes with every write, so a process sees another's write by reading it."""
    index_dir = Path(index_dir)
    for name in (SHARDS, CURRENT):
        try:
            return name + ":" + (index_dir / name).read_text(encoding="utf-8")
        except OSError:
            continue
    return None


def rebuild_advice(index_dir: Path, shards: int | None = None) -> str:
    flag = f" --shards {shards}" if shards else ""
    return f"rebuild it with `article-qa index build --index {index_dir}{flag} --rebuild`"


# -- the live set ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ShardSet:
    """What SHARDS records: each shard's directory name and the generation it serves."""

    shards: tuple[tuple[str, str], ...]
    last_build_seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps({"format": SHARD_FORMAT, "version": SHARD_FORMAT_VERSION,
                           "shards": [{"name": n, "generation": g} for n, g in self.shards],
                           "last_build_seconds": self.last_build_seconds}, indent=1) + "\n"


def read_shard_set(index_dir: Path) -> ShardSet:
    path = Path(index_dir) / SHARDS
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != SHARD_FORMAT:
            raise ValueError(f"not an {SHARD_FORMAT} file")
        if data.get("version") != SHARD_FORMAT_VERSION:
            raise IncompatibleIndexError(
                f"sharded index {index_dir} has format version {data.get('version')!r}, this "
                f"build reads version {SHARD_FORMAT_VERSION}; {rebuild_advice(index_dir)}")
        shards = tuple((str(s["name"]), str(s["generation"])) for s in data["shards"])
        if not shards or any(not _SHARD_RE.fullmatch(n) or not GENERATION_RE.fullmatch(g)
                             for n, g in shards):
            raise ValueError("bad shard entries")
    except FileNotFoundError:
        raise IndexNotFoundError(f"no sharded index in {index_dir}") from None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise CorruptIndexError(f"sharded index {index_dir}: unreadable {SHARDS} ({exc}); "
                                f"{rebuild_advice(index_dir)}") from None
    return ShardSet(shards, float(data.get("last_build_seconds") or 0.0))


def roll_forward(index_dir: Path, live: ShardSet) -> None:
    """Point each shard's CURRENT at the generation SHARDS names (a writer that crashed
    after the commit point left some behind). Call with the lock held."""
    for name, generation in live.shards:
        shard_dir = index_dir / name
        current = shard_dir / CURRENT
        named = current.read_text(encoding="utf-8").strip() if current.is_file() else None
        if named != generation and (shard_dir / generation).is_dir():
            publish_generation(shard_dir, generation)


def publish(index_dir: Path, live: ShardSet) -> None:
    """Make `live` the index's set (the commit point), then each shard's CURRENT."""
    write_atomically(index_dir / SHARDS, live.to_json())
    roll_forward(index_dir, live)


# -- reading -----------------------------------------------------------------------------
# Where this process reads shards from other processes (`serve --ray`: each shard is held
# by a searcher on the cluster): (index_dir, shard name, generation) -> a shard.
_remote_opener = None


def read_shards_through(opener) -> None:
    """Open every shard through `opener` from now on in this process (None: locally).
    The shard it returns answers what `ShardedIndex` asks of an `Index`."""
    global _remote_opener
    _remote_opener = opener


def open_index(index_dir: Path, expect_model: str | None = None):
    """The index in `index_dir`: an `Index`, or a `ShardedIndex` when it is sharded."""
    if is_sharded(Path(index_dir)):
        return ShardedIndex.open(Path(index_dir), expect_model)
    return Index.open(index_dir, expect_model=expect_model)


def _fold(text: str) -> str:
    text = text.lower()
    if text.isascii():
        return text
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if not unicodedata.combining(ch))


def fts_tokens(text: str) -> list[str]:
    """`text` as FTS5's unicode61 tokenizer (remove_diacritics 2) indexes it."""
    return _TOKEN_RE.findall(_fold(text))


def query_phrases(query: str) -> list[tuple[str, ...]]:
    """The phrases `fts_query` makes of a query, each as its tokens."""
    return [p for p in (tuple(fts_tokens(t)) for t in query_terms(query)) if p]


def _count(tokens: list[str], phrase: tuple[str, ...]) -> int:
    n = len(phrase)
    if n == 1:
        return tokens.count(phrase[0])
    return sum(1 for i in range(len(tokens) - n + 1) if tuple(tokens[i:i + n]) == phrase)


def bm25(tokens: list[str], phrases: list[tuple[str, ...]], hits: list[int], rows: int,
         average_length: float) -> float:
    """FTS5's bm25() of one passage (its tokens) for OR-ed phrases that `hits` passages of
    `rows` contain, the passages averaging `average_length` tokens; higher is better."""
    length = len(tokens)
    score = 0.0
    for phrase, n in zip(phrases, hits):
        tf = _count(tokens, phrase)
        if not tf:
            continue
        idf = math.log((rows - n + 0.5) / (n + 0.5))
        idf = idf if idf > 0 else 1e-6
        score += idf * tf * (BM25_K1 + 1) / (
            tf + BM25_K1 * (1 - BM25_B + BM25_B * length / average_length))
    return score


@lru_cache(maxsize=1)
def _fan_out():
    """Threads that ask remote shards at once (they wait on the network, not the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(32, thread_name_prefix="shards")


class _GlobalRefs(Mapping):
    """Global chunk id -> ChunkRef, looked up in the owning shard (nothing is copied)."""

    def __init__(self, shards: list):
        self._shards = shards

    def __getitem__(self, gid: int) -> ChunkRef:
        n = len(self._shards)
        ref = self._shards[gid % n].chunk_refs_of([gid // n])[0]
        return ChunkRef(gid, ref.doc_id, ref.start, ref.end, ref.first_sentence,
                        ref.last_sentence)

    def __iter__(self) -> Iterator[int]:
        n = len(self._shards)
        for k, shard in enumerate(self._shards):
            for cid in shard.chunk_refs:
                yield cid * n + k

    def __len__(self) -> int:
        return sum(s.chunk_count for s in self._shards)


class _ShardedVectors:
    """The merged view of the shards' vectors that callers of `Index.vectors` use."""

    def __init__(self, shards: list[Index]):
        self._shards = shards
        self.d = shards[0].vectors.d
        self.ntotal = sum(s.vectors.ntotal for s in shards)

    def reconstruct(self, gid: int) -> np.ndarray:
        n = len(self._shards)
        return self._shards[gid % n].vectors.reconstruct(gid // n)

    def reconstruct_batch(self, gids: np.ndarray) -> np.ndarray:
        return np.stack([self.reconstruct(int(g)) for g in gids]) if len(gids) else \
            np.zeros((0, self.d), dtype=np.float32)


class ShardedIndex:
    """A read-only view of a sharded index's live set, with the interface of `Index`.

    Chunk ids are global: shard k's chunk i is `i * shards + k`.
    """

    def __init__(self, index_dir: Path, live: ShardSet, shards: list):
        self.index_dir = index_dir
        self.live = live
        self.shards = shards
        self.generation = index_dir / SHARDS
        self.chunk_refs = _GlobalRefs(shards)
        self.vectors = _ShardedVectors(shards)
        self.manifest = self._merged_manifest()
        self._token_cache: LRUCache = LRUCache(TOKEN_CACHE)
        self._tokens = sum(shard.token_total() for shard in shards)

    @classmethod
    def open(cls, index_dir: Path, expect_model: str | None = None) -> ShardedIndex:
        """Open every shard at the generation SHARDS names; a missing or damaged shard
        fails here, named, with the command that rebuilds the set."""
        index_dir = Path(index_dir)
        live = read_shard_set(index_dir)
        fix = rebuild_advice(index_dir, len(live.shards))
        shards: list = []
        try:
            for name, generation in live.shards:
                shard_dir = index_dir / name
                if _remote_opener is not None:
                    shards.append(_remote_opener(index_dir, name, generation))
                    continue
                if not shard_dir.is_dir():
                    raise CorruptIndexError(f"sharded index {index_dir}: shard {name} is "
                                            f"missing; {fix}")
                shards.append(Index.open(shard_dir, expect_model, shard_dir / generation,
                                         fix=fix))
            first = shards[0].manifest
            if expect_model is not None and first.model != expect_model:
                raise IncompatibleIndexError(f"index {index_dir} was built with model "
                                             f"{first.model!r}, not {expect_model!r}; {fix}")
            for (name, _), shard in zip(live.shards, shards):
                m = shard.manifest
                if (m.model, m.dim, m.chunk_target_tokens, m.chunk_overlap_sentences) != \
                        (first.model, first.dim, first.chunk_target_tokens,
                         first.chunk_overlap_sentences):
                    raise CorruptIndexError(f"sharded index {index_dir}: shard {name} was "
                                            f"built with other settings than "
                                            f"{live.shards[0][0]}; {fix}")
        except Exception:
            for shard in shards:
                shard.close()
            raise
        return cls(index_dir, live, shards)

    def _merged_manifest(self) -> Manifest:
        ms = [s.manifest for s in self.shards]
        types = sorted({m.index_type for m in ms})
        return Manifest(**{
            **asdict(ms[0]),
            "documents": dict(sorted(d for m in ms for d in m.documents.items())),
            "chunks": sum(m.chunks for m in ms),
            "created_at": min(m.created_at for m in ms),
            "updated_at": max(m.updated_at for m in ms),
            "last_build_seconds": self.live.last_build_seconds,
            "index_type": types[0] if len(types) == 1 else "+".join(types),
            "index_params": {},
        })

    def close(self) -> None:
        for shard in self.shards:
            shard.close()

    def _shard(self, doc_id: str):
        """The shard `doc_id` lives in (documents are placed by `shard_of`)."""
        return self.shards[shard_of(doc_id, len(self.shards))]

    def _by_shard(self, doc_ids: Iterable[str]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for doc_id in dict.fromkeys(doc_ids):
            out.setdefault(shard_of(doc_id, len(self.shards)), []).append(doc_id)
        return out

    # -- documents -------------------------------------------------------------
    @property
    def document_count(self) -> int:
        return sum(s.document_count for s in self.shards)

    @property
    def chunk_count(self) -> int:
        return sum(s.chunk_count for s in self.shards)

    def has_document(self, doc_id: str) -> bool:
        return self._shard(doc_id).has_document(doc_id)

    def list_documents(self) -> list[DocumentRecord]:
        return sorted((d for s in self.shards for d in s.list_documents()),
                      key=lambda d: d.doc_id)

    def document_lengths(self) -> dict[str, int]:
        return {k: v for s in self.shards for k, v in s.document_lengths().items()}

    def document(self, doc_id: str) -> DocumentRecord:
        return self._shard(doc_id).document(doc_id)

    def texts(self, doc_ids: Iterable[str]) -> dict[str, str]:
        return {k: v for s, ids in self._by_shard(doc_ids).items()
                for k, v in self.shards[s].texts(ids).items()}

    def metadata(self, doc_ids: Iterable[str]) -> dict[str, tuple[str | None, str | None]]:
        return {k: v for s, ids in self._by_shard(doc_ids).items()
                for k, v in self.shards[s].metadata(ids).items()}

    def sentences(self, doc_id: str, first: int, last: int) -> list[StoredSentence]:
        return self._shard(doc_id).sentences(doc_id, first, last)

    def size_bytes(self) -> dict[str, int]:
        return {f"{name}/{file}": size for (name, _), s in zip(self.live.shards, self.shards)
                for file, size in s.size_bytes().items()}

    # -- search ----------------------------------------------------------------
    def chunk_ids(self, doc_ids: set[str]) -> list[int]:
        n = len(self.shards)
        return [cid * n + k for k, ids in self._by_shard(doc_ids).items()
                for cid in self.shards[k].chunk_ids(set(ids))]

    def _each(self, ask) -> list:
        """`ask(shard)` for every shard, in shard order; at once when they are remote."""
        if all(isinstance(shard, Index) for shard in self.shards):
            return [ask(shard) for shard in self.shards]
        return list(_fan_out().map(ask, self.shards))

    def search_dense(self, query_vector: np.ndarray, k: int,
                     doc_ids: set[str] | None = None) -> list[tuple[int, float]]:
        """Each shard's top k by inner product, merged."""
        n = len(self.shards)
        found = self._each(lambda shard: shard.search_dense(query_vector, k, doc_ids))
        hits = [(cid * n + s, score) for s, shard_hits in enumerate(found)
                for cid, score in shard_hits]
        hits.sort(key=lambda h: (-h[1], h[0]))
        return hits[:k]

    def search_lexical(self, query: str, k: int,
                       doc_ids: set[str] | None = None) -> list[tuple[int, float]]:
        """Each shard's best passages by its own BM25, rescored with the whole index's
        statistics (`bm25`) and merged: the ranking one index of these documents gives."""
        if fts_query(query) is None or k <= 0:
            return []
        phrases = query_phrases(query)
        n = len(self.shards)
        found = self._each(lambda shard: (
            shard.search_lexical(query, k * LEXICAL_OVERFETCH, doc_ids),
            shard.phrase_rows_many(phrases)))
        candidates = [(s, cid) for s, (shard_hits, _) in enumerate(found)
                      for cid, _ in shard_hits]
        if not candidates:
            return []
        hits = [sum(rows) for rows in zip(*(counts for _, counts in found))]
        rows = self.fts_documents
        average = self._tokens / rows if rows else 1.0
        tokens = self._passage_tokens(candidates)
        scored = [(cid * n + s, bm25(tokens[(s, cid)], phrases, hits, rows, average))
                  for s, cid in candidates]
        scored.sort(key=lambda h: (-h[1], h[0]))
        return scored[:k]

    def _passage_tokens(self, places: list[tuple[int, int]]) -> dict[tuple[int, int], list[str]]:
        """(shard, chunk id) -> the passage's FTS5 tokens, from a cache or the store."""
        out = {p: t for p in places if (t := self._token_cache.get(p)) is not None}
        missing = [p for p in places if p not in out]
        refs = {}
        for k in {p[0] for p in missing}:
            mine = [p for p in missing if p[0] == k]
            refs.update(zip(mine, self.shards[k].chunk_refs_of([c for _, c in mine])))
        texts = self.texts(r.doc_id for r in refs.values())
        for p, r in refs.items():
            out[p] = fts_tokens(texts[r.doc_id][r.start:r.end])
            self._token_cache.put(p, out[p])
        return out

    def document_frequency(self, terms: Iterable[str]) -> dict[str, int]:
        terms = list(terms)
        out: dict[str, int] = {}
        for counts in self._each(lambda shard: shard.document_frequency(terms)):
            for term, count in counts.items():
                out[term] = out.get(term, 0) + count
        return out

    @property
    def fts_documents(self) -> int:
        return sum(s.fts_documents for s in self.shards)


# -- writing -----------------------------------------------------------------------------
def _manifest_of(shard_dir: Path, generation: str) -> Manifest:
    from indexing.store import MANIFEST

    try:
        return Manifest.from_json((shard_dir / generation / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError) as exc:
        raise CorruptIndexError(f"sharded index {shard_dir.parent}: shard {shard_dir.name} has "
                                f"no readable manifest ({exc}); "
                                f"{rebuild_advice(shard_dir.parent)}") from None


class ShardedWriter:
    """A pending change to a sharded index: one `IndexWriter` per shard it touches (opened
    on first use), published together by `commit()`."""

    def __init__(self, index_dir: Path, manifest: Manifest, shards: int, live: ShardSet | None,
                 rebuild: bool, stack, on_open=None, **write_options):
        self.index_dir = index_dir
        self.manifest = manifest
        self.shards = shards
        self.live = live
        self.rebuild = rebuild
        self._stack = stack
        self._on_open = on_open
        self._options = write_options
        self.writers: dict = {}
        if rebuild:
            for k in range(shards):
                self.writer(k)

    def writer(self, k: int):
        from indexing.store import write_index

        if k not in self.writers:
            shard_dir = self.index_dir / shard_name(k)
            w = self._stack.enter_context(write_index(shard_dir, self.manifest,
                                                      rebuild=self.rebuild, **self._options))
            if self._on_open is not None and not self.rebuild:
                self._on_open(w, shard_dir)
            self.writers[k] = w
        return self.writers[k]

    def _untouched(self) -> list[tuple[int, Manifest]]:
        if self.live is None:
            return []
        return [(k, _manifest_of(self.index_dir / name, gen))
                for k, (name, gen) in enumerate(self.live.shards) if k not in self.writers]

    @property
    def documents(self) -> dict[str, str]:
        """doc_id -> content hash over every shard, with this write's changes."""
        out = {d: h for _, m in self._untouched() for d, h in m.documents.items()}
        for w in self.writers.values():
            out.update(w.documents)
        return out

    def remove(self, doc_id: str) -> None:
        self.writer(shard_of(doc_id, self.shards)).remove(doc_id)

    def add(self, doc) -> None:
        self.writer(shard_of(doc.article.doc_id, self.shards)).add(doc)

    def commit(self, build_seconds: float | None = None) -> tuple[int, int]:
        """Publish every changed shard at once; returns (documents, chunks) of the set."""
        untouched = self._untouched()
        generations = {k: w.commit(build_seconds, publish=False).name
                       for k, w in self.writers.items()}
        if self.live is not None:
            generations = {**{k: g for k, (_, g) in enumerate(self.live.shards)}, **generations}
        live = ShardSet(tuple((shard_name(k), generations[k]) for k in range(self.shards)),
                        round(build_seconds, 3) if build_seconds is not None else
                        (self.live.last_build_seconds if self.live else 0.0))
        publish(self.index_dir, live)
        _remove_stale(self.index_dir, live)
        documents = sum(len(w.documents) for w in self.writers.values()) + \
            sum(len(m.documents) for _, m in untouched)
        chunks = sum(int(w.vectors.ntotal) for w in self.writers.values()) + \
            sum(m.chunks for _, m in untouched)
        return documents, chunks


def _remove_stale(index_dir: Path, live: ShardSet) -> None:
    """Delete shards the set no longer has, and an unsharded index the set replaced."""
    import shutil

    keep = {name for name, _ in live.shards}
    for p in index_dir.iterdir():
        if p.is_dir() and ((_SHARD_RE.fullmatch(p.name) and p.name not in keep)
                           or GENERATION_RE.fullmatch(p.name)):
            shutil.rmtree(p, ignore_errors=True)
    (index_dir / CURRENT).unlink(missing_ok=True)


def shard_count_for_rebuild(index_dir: Path, shards: int | None) -> int | None:
    """How many shards a write to `index_dir` makes: `shards` when given, else the
    count the directory already has (None: it is not sharded)."""
    if shards is not None:
        if not 1 <= shards <= MAX_SHARDS:
            raise ValueError(f"--shards must be between 1 and {MAX_SHARDS}, got {shards}")
        return shards
    if not is_sharded(index_dir):
        return None
    try:
        return len(read_shard_set(index_dir).shards)
    except CorruptIndexError:
        found = [p for p in index_dir.iterdir() if _SHARD_RE.fullmatch(p.name)]
        if not found:
            raise
        return len(found)


@contextmanager
def write_sharded(index_dir: Path, manifest: Manifest, shards: int | None = None,
                  rebuild: bool = False, on_open=None, **write_options) -> Iterator[ShardedWriter]:
    """Hold the sharded index's lock and yield a ShardedWriter; the caller commits.

    `shards` is the count for a new or rebuilt index (an existing one keeps its own;
    asking for another without `rebuild` is an error). `on_open(writer, shard_dir)` checks
    each shard's writer as it opens. Anything but a commit leaves the index as it was.
    """
    from contextlib import ExitStack

    index_dir = Path(index_dir)
    with writer_lock(index_dir), ExitStack() as stack:
        live = None
        if not rebuild and is_sharded(index_dir):
            live = read_shard_set(index_dir)
            roll_forward(index_dir, live)
            if shards is not None and shards != len(live.shards):
                raise IncompatibleIndexError(
                    f"index {index_dir} has {len(live.shards)} shards, not {shards}; "
                    f"{rebuild_advice(index_dir, shards)}")
        elif not rebuild and live_generation(index_dir) is not None:
            raise IncompatibleIndexError(
                f"index {index_dir} is not sharded; {rebuild_advice(index_dir, shards)}")
        count = len(live.shards) if live is not None else shard_count_for_rebuild(index_dir,
                                                                                 shards)
        if count is None:
            raise ValueError("a new sharded index needs a shard count (--shards N)")
        yield ShardedWriter(index_dir, manifest, count, live, rebuild or live is None, stack,
                            on_open, **write_options)


def set_index_choice(index_dir: Path, index_type: str | None = None,
                     index_threshold: int | None = None) -> bool:
    """`store.set_index_choice` for either layout: on a sharded index every shard takes
    the new choice (its vectors rebuilt from themselves where the type changes), and the
    shards are published together. False, writing nothing, when nothing changes."""
    from indexing import store

    index_dir = Path(index_dir)
    if not is_sharded(index_dir):
        return store.set_index_choice(index_dir, index_type, index_threshold)
    if index_type is None and index_threshold is None:
        return False
    current = ShardedIndex.open(index_dir)
    manifest = current.manifest
    current.close()
    if not store.choice_changes(manifest, index_type, index_threshold):
        return False
    with write_sharded(index_dir, manifest, index_type=index_type,
                       index_threshold=index_threshold) as writer:
        for k in range(writer.shards):
            writer.writer(k)
        writer.commit()
    return True
