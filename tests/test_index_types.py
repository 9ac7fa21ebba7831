"""Vector index types (flat, ivf, hnsw): agreement with exact search, doc_ids filters,
incremental writes, the auto threshold and indexes written before types existed.

Synthetic clustered unit vectors stand in for embeddings, so no model is loaded.
"""

from __future__ import annotations

import json
import weakref

import numpy as np
import pytest

from indexing import vectors as vector_index
from indexing.articles import Article
from indexing.chunking import Chunk
from indexing.errors import CorruptIndexError, IncompatibleIndexError
from indexing.sentences import Sentence
from indexing.store import (
    FORMAT_VERSION,
    MANIFEST,
    Index,
    IndexedDocument,
    Manifest,
    live_generation,
    set_index_choice,
    write_index,
)

DIM = 32
TYPES = ["flat", "ivf", "hnsw"]


def _manifest() -> Manifest:
    return Manifest(format_version=FORMAT_VERSION, model="synthetic", dim=DIM, tokenizer="none",
                    spacy_model="none", chunk_target_tokens=160, chunk_overlap_sentences=1)


def _docs(n_docs: int, chunks: int = 10, seed: int = 0, prefix: str = "d") -> list[IndexedDocument]:
    """Documents whose chunk vectors scatter around one random centre per document."""
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n_docs):
        words = [f"w{i}x{j}" for j in range(chunks)]
        text = " ".join(words)
        offsets = np.cumsum([0] + [len(w) + 1 for w in words])
        centre = rng.normal(size=DIM)
        vecs = centre + 0.8 * rng.normal(size=(chunks, DIM))
        vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
        sentences = [Sentence(j, int(offsets[j]), int(offsets[j]) + len(words[j]), "[]")
                     for j in range(chunks)]
        spans = [Chunk(j, s.start, s.end, j, j) for j, s in enumerate(sentences)]
        docs.append(IndexedDocument(Article(doc_id=f"{prefix}{i:04d}", text=text), sentences,
                                    spans, vecs, vecs))
    return docs


def _write(index_dir, add=(), remove=(), **choice):
    with write_index(index_dir, _manifest(), **choice) as writer:
        for doc_id in remove:
            writer.remove(doc_id)
        for doc in add:
            writer.add(doc)
        writer.commit()


def _queries(n: int = 40, seed: int = 99) -> np.ndarray:
    q = np.random.default_rng(seed).normal(size=(n, DIM))
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


_EXTRACTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Index -> (ids, vectors)


def _exact(index: Index, q: np.ndarray, k: int, doc_ids: set[str] | None = None) -> list[int]:
    """Brute-force top-k chunk ids over the vectors the index holds."""
    if index not in _EXTRACTED:
        _EXTRACTED[index] = vector_index.extract(index.vectors)
    ids, x = _EXTRACTED[index]
    if doc_ids is not None:
        keep = np.isin(ids, index.chunk_ids(doc_ids))
        ids, x = ids[keep], x[keep]
    return list(ids[np.argsort(-(x @ q), kind="stable")[:k]])


def _recall(index: Index, queries: np.ndarray, k: int = 10, doc_ids=None) -> float:
    hits = [len({c for c, _ in index.search_dense(q, k, doc_ids)} & set(_exact(index, q, k, doc_ids)))
            / k for q in queries]
    return float(np.mean(hits))


@pytest.fixture(scope="module", params=TYPES)
def typed_index(request, tmp_path_factory):
    index_dir = tmp_path_factory.mktemp(request.param)
    _write(index_dir, _docs(300), index_type=request.param)
    return Index.open(index_dir)


def test_each_type_agrees_with_exact_search(typed_index):
    kind = typed_index.manifest.index_type
    assert vector_index.kind_of(typed_index.vectors) == kind
    assert typed_index.vectors.ntotal == typed_index.chunk_count == 3000
    queries = _queries()
    if kind == "flat":
        for q in queries:
            assert [c for c, _ in typed_index.search_dense(q, 10)] == _exact(typed_index, q, 10)
    else:
        assert _recall(typed_index, queries) >= 0.9, kind
    hits = typed_index.search_dense(queries[0], 10)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    ids, x = vector_index.extract(typed_index.vectors)  # readers reconstruct single chunks
    np.testing.assert_array_equal(typed_index.vectors.reconstruct(int(ids[7])), x[7])
    np.testing.assert_array_equal(typed_index.vectors.reconstruct_batch(ids[:3]), x[:3])


def test_doc_ids_filter_for_each_type(typed_index):
    queries = _queries(20)
    few = {"d0003", "d0100", "d0250"}
    for q in queries:  # a small filter is searched exactly, whatever the type
        got = [c for c, _ in typed_index.search_dense(q, 5, few)]
        assert got == _exact(typed_index, q, 5, few)
        assert {typed_index.chunk_refs[c].doc_id for c in got} <= few
    half = {f"d{i:04d}" for i in range(0, 300, 2)}
    assert _recall(typed_index, queries, 10, half) >= 0.9
    for q in queries:
        assert all(typed_index.chunk_refs[c].doc_id in half
                   for c, _ in typed_index.search_dense(q, 10, half))
    assert typed_index.search_dense(queries[0], 5, {"no-such-doc"}) == []


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_incremental_remove_and_add_match_a_rebuild(kind, tmp_path):
    first, second = _docs(120, seed=1), _docs(40, seed=2, prefix="e")
    removed = {d.article.doc_id for d in first[:25]}
    inc = tmp_path / "inc"
    _write(inc, first, index_type=kind)
    _write(inc, second[:20], remove=sorted(removed))
    _write(inc, second[20:])
    full = tmp_path / "full"
    _write(full, first[25:] + second, index_type=kind)
    a, b = Index.open(inc), Index.open(full)
    assert a.manifest.index_type == b.manifest.index_type == kind
    assert a.vectors.ntotal == a.chunk_count == b.chunk_count == 1350
    assert a.manifest.documents == b.manifest.documents
    queries = _queries()

    def where(index, q):
        return [(index.chunk_refs[c].doc_id, index.chunk_refs[c].start)
                for c, _ in index.search_dense(q, 10)]

    same = np.mean([len(set(where(a, q)) & set(where(b, q))) / 10 for q in queries])
    assert same >= 0.9
    assert _recall(a, queries) >= 0.9
    for q in queries:
        assert not {a.chunk_refs[c].doc_id for c, _ in a.search_dense(q, 50)} & removed


def test_auto_switches_type_at_the_threshold(tmp_path):
    assert vector_index.choose("auto", 999, 1000) == "flat"
    assert vector_index.choose("auto", 1000, 1000) == vector_index.APPROXIMATE == "ivf"
    assert vector_index.choose("hnsw", 10, 1000) == "hnsw"
    with pytest.raises(ValueError, match="unknown index type"):
        vector_index.choose("annoy", 10, 1000)
    docs = _docs(120)
    index_dir = tmp_path / "auto"
    _write(index_dir, docs[:90], index_threshold=1000)  # 900 chunks
    assert Index.open(index_dir).manifest.index_type == "flat"
    _write(index_dir, docs[90:])  # 1200 chunks: the recorded threshold applies
    index = Index.open(index_dir)
    assert (index.manifest.index_type, index.manifest.index_threshold) == ("ivf", 1000)
    assert index.manifest.index_params["nlist"] >= 1 and index.chunk_count == 1200
    _write(index_dir, remove=[d.article.doc_id for d in docs[:30]])  # 900 again
    index = Index.open(index_dir)
    assert (index.manifest.index_type, index.chunk_count) == ("flat", 900)
    q = _queries(5)
    for v in q:
        assert [c for c, _ in index.search_dense(v, 10)] == _exact(index, v, 10)


def test_set_index_choice_converts_without_re_embedding(tmp_path):
    index_dir = tmp_path / "ix"
    _write(index_dir, _docs(50))
    before = Index.open(index_dir)
    exact = [[c for c, _ in before.search_dense(q, 5)] for q in _queries(10)]
    assert set_index_choice(index_dir, "hnsw")
    assert not set_index_choice(index_dir, "hnsw")
    after = Index.open(index_dir)
    assert (after.manifest.index_type, after.manifest.index_choice) == ("hnsw", "hnsw")
    assert after.manifest.index_params["M"] == vector_index.HNSW_M
    ids, x = vector_index.extract(after.vectors)
    ids0, x0 = vector_index.extract(before.vectors)
    assert np.array_equal(ids, ids0) and np.array_equal(x, x0)
    assert set_index_choice(index_dir, "flat")
    again = Index.open(index_dir)
    assert [[c for c, _ in again.search_dense(q, 5)] for q in _queries(10)] == exact


def test_index_without_type_fields_opens_as_flat(tmp_path):
    index_dir = tmp_path / "old"
    _write(index_dir, _docs(20))
    path = live_generation(index_dir) / MANIFEST
    data = json.loads(path.read_text())
    for key in ("index_type", "index_params", "index_choice", "index_threshold"):
        del data[key]
    path.write_text(json.dumps(data))
    index = Index.open(index_dir)
    assert (index.manifest.index_type, index.manifest.index_choice) == ("flat", "auto")
    q = _queries(1)[0]
    assert [c for c, _ in index.search_dense(q, 5)] == _exact(index, q, 5)
    _write(index_dir, _docs(1, prefix="new"))
    assert json.loads((live_generation(index_dir) / MANIFEST).read_text())["index_type"] == "flat"


def test_manifest_and_vectors_must_agree_on_the_type(tmp_path):
    index_dir = tmp_path / "ix"
    _write(index_dir, _docs(20))
    path = live_generation(index_dir) / MANIFEST
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "index_type": "ivf"}))
    with pytest.raises(CorruptIndexError, match="--rebuild"):
        Index.open(index_dir)
    path.write_text(json.dumps({**data, "index_type": "annoy"}))
    with pytest.raises(IncompatibleIndexError, match="annoy"):
        Index.open(index_dir)
