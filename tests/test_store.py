"""The index directory: search correctness, incremental updates, atomicity, corruption."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from indexing.articles import Article, iter_corpus
from indexing.errors import CorpusError, CorruptIndexError, IncompatibleIndexError
from indexing.pipeline import add_articles, build, remove_documents
from indexing.store import CURRENT, MANIFEST, VECTORS, Index, fts_query, live_generation
from tests.conftest import ARTICLES, ROOT

QUERIES = ["how many troops were reported?", "Kursk region", "mutual defense treaty",
           "anti-aircraft missile test", "Choe Son-hui"]


def test_every_chunk_and_sentence_offset_reproduces_stored_text(built_index):
    index = Index.open(built_index)
    for doc in index.list_documents():
        text = index.document(doc.doc_id).text
        refs = [c for c in index.chunk_refs.values() if c.doc_id == doc.doc_id]
        marks = ",".join(str(c.id) for c in refs)
        rows = index.conn().execute(
            f"SELECT rowid, text FROM chunks_fts WHERE rowid IN ({marks})").fetchall()
        stored = dict(rows)
        for c in refs:
            assert text[c.start:c.end] == stored[c.id]
        for s in index.sentences(doc.doc_id, 0, 10_000):
            assert text[s.start:s.end].strip() == text[s.start:s.end] != ""


def test_faiss_top_k_equals_brute_force(built_index, indexer):
    index = Index.open(built_index)
    ids = np.array(sorted(index.chunk_refs), dtype=np.int64)
    matrix = np.stack([index.vectors.reconstruct(int(i)) for i in ids])
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-4)
    for q in QUERIES:
        qv = indexer.embedder.encode_one(q)
        scores = matrix @ qv
        expected = ids[np.argsort(-scores, kind="stable")[:5]]
        got = [cid for cid, _ in index.search_dense(qv, 5)]
        assert got == list(expected), q
        np.testing.assert_allclose([s for _, s in index.search_dense(qv, 5)],
                                   np.sort(scores)[::-1][:5], rtol=1e-5)


def test_lexical_search_finds_numbers_names_and_survives_operators(built_index):
    index = Index.open(built_index)
    for term in ("12,000", "Kursk", "Choe Son-hui"):
        hits = index.search_lexical(term, 3)
        assert hits, term
        text = index.document(index.chunk_refs[hits[0][0]].doc_id).text
        ref = index.chunk_refs[hits[0][0]]
        assert term in text[ref.start:ref.end]
    for hostile in ['"', "*", "NEAR(", "AND", "-", ":", "((troops", 'a" OR "b', "^x", ""]:
        index.search_lexical(hostile, 3)  # never raises
    assert fts_query("  ") is None
    assert fts_query('NEAR(troops "12,000"') == '"near" OR "troops" OR "12,000"'


def _results(index_dir: Path, embedder) -> list[list[tuple[str, int, int]]]:
    index = Index.open(index_dir)
    out = []
    for q in QUERIES:
        qv = embedder.encode_one(q)
        hits = index.search_dense(qv, 4) + index.search_lexical(q, 4)
        out.append([(index.chunk_refs[c].doc_id, index.chunk_refs[c].start,
                     index.chunk_refs[c].end) for c, _ in hits])
    return out


def test_incremental_add_remove_matches_full_rebuild(indexer, tmp_path):
    articles = [a for a in iter_corpus(ARTICLES) if isinstance(a, Article)]
    full = tmp_path / "full"
    build(ARTICLES, full, indexer)

    inc = tmp_path / "inc"
    subset = tmp_path / "subset"
    subset.mkdir()
    for p in sorted(ARTICLES.glob("*.txt"))[:2]:
        shutil.copy(p, subset / p.name)
    build(subset, inc, indexer)
    add_articles(inc, articles[2:], indexer)
    extra = Article(doc_id="extra", text="An unrelated article about gardening and roses.")
    add_articles(inc, [extra], indexer)
    remove_documents(inc, ["extra"])
    assert _results(inc, indexer.embedder) == _results(full, indexer.embedder)
    assert Index.open(inc).manifest.documents == Index.open(full).manifest.documents


def test_small_overlapped_batches_build_the_same_index(indexer, tmp_path, monkeypatch):
    import indexing.pipeline as pipeline

    whole = tmp_path / "whole"
    build(ARTICLES, whole, indexer)
    monkeypatch.setattr(pipeline, "BATCH_DOCUMENTS", 2)  # annotate and embed overlap
    split = tmp_path / "split"
    build(ARTICLES, split, indexer)
    assert _results(split, indexer.embedder) == _results(whole, indexer.embedder)
    a, b = Index.open(whole), Index.open(split)
    for doc_id in a.manifest.documents:
        for x, y in zip(a.sentences(doc_id, 0, 10**6), b.sentences(doc_id, 0, 10**6),
                        strict=True):
            assert (x.ord, x.start, x.end, x.annotation) == (y.ord, y.start, y.end, y.annotation)
            assert np.array_equal(x.vector, y.vector)


def test_embedding_failing_mid_build_keeps_the_old_index(indexer, index_copy, tmp_path,
                                                          monkeypatch):
    import indexing.pipeline as pipeline

    before = _results(index_copy, indexer.embedder)
    corpus = tmp_path / "more"
    shutil.copytree(ARTICLES, corpus)
    for k in range(5):
        (corpus / f"extra-{k}.txt").write_text(f"Extra article {k}\n\nA sentence about item {k}.")
    monkeypatch.setattr(pipeline, "BATCH_DOCUMENTS", 2)
    calls = []
    real = indexer.embed

    def failing(prepared):
        calls.append(len(prepared.articles))
        if len(calls) == 2:
            raise RuntimeError("worker died")
        return real(prepared)

    monkeypatch.setattr(indexer, "embed", failing)
    with pytest.raises(RuntimeError, match="worker died"):
        build(corpus, index_copy, indexer)
    assert _results(index_copy, indexer.embedder) == before


def test_incremental_build_skips_unchanged_and_reindexes_changed(indexer, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(ARTICLES, corpus)
    index_dir = tmp_path / "index"
    first = build(corpus, index_dir, indexer)
    assert first.indexed == 5
    again = build(corpus, index_dir, indexer)
    assert (again.indexed, again.unchanged) == (0, 5)
    victim = sorted(corpus.glob("*.txt"))[0]
    victim.write_text(victim.read_text(encoding="utf-8").replace("Kim", "Kym"), encoding="utf-8")
    (sorted(corpus.glob("*.txt"))[1]).unlink()
    third = build(corpus, index_dir, indexer)
    assert (third.indexed, third.unchanged, third.removed) == (1, 3, 1)
    index = Index.open(index_dir)
    assert index.document_count == 4
    assert "Kym" in index.document(victim.stem).text


def test_nothing_indexable_is_an_error_and_keeps_old_index(indexer, index_copy, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_bytes(b"\x00\x00")
    with pytest.raises(CorpusError, match="nothing to index"):
        build(empty, index_copy, indexer)
    assert Index.open(index_copy).document_count == 5


def _break(index_dir: Path, how: str) -> None:
    gen = live_generation(index_dir)
    if how == "truncated-faiss":
        data = (gen / VECTORS).read_bytes()
        (gen / VECTORS).write_bytes(data[: len(data) // 3])
    elif how == "garbage-manifest":
        (gen / MANIFEST).write_text("{not json", encoding="utf-8")
    elif how == "garbage-store":
        (gen / "store.sqlite").write_bytes(b"this is not a database" * 100)
    elif how == "format-version":
        m = json.loads((gen / MANIFEST).read_text())
        m["format_version"] = 999
        (gen / MANIFEST).write_text(json.dumps(m))
    elif how == "current":
        (index_dir / CURRENT).write_text("../../etc")


@pytest.mark.parametrize("how", ["truncated-faiss", "garbage-manifest", "garbage-store",
                                 "format-version", "current"])
def test_corrupt_index_fails_with_directory_and_fix(index_copy, how):
    _break(index_copy, how)
    with pytest.raises((CorruptIndexError, IncompatibleIndexError)) as err:
        Index.open(index_copy)
    assert str(index_copy) in str(err.value) and "--rebuild" in str(err.value)


def test_other_model_fails_to_open(index_copy):
    with pytest.raises(IncompatibleIndexError, match="--rebuild"):
        Index.open(index_copy, expect_model="some-other-model")


def test_kill_during_build_leaves_previous_index_loadable(index_copy, tmp_path):
    """A real `kill -9` of `article-qa index build` mid-write; the old generation survives."""
    corpus = tmp_path / "big"
    corpus.mkdir()
    body = " ".join(f"Sentence {i} about a fresh subject with enough words to embed." for i in range(60))
    for i in range(150):
        (corpus / f"doc{i:03d}.txt").write_text(f"Headline {i}\n\n{body}\n", encoding="utf-8")
    before = Index.open(index_copy).manifest.documents
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "index", "build", "--corpus", str(corpus),
         "--index", str(index_copy)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(index_copy.glob(".tmp-*")):
        assert proc.poll() is None, "build finished before it could be killed"
        time.sleep(0.05)
    assert list(index_copy.glob(".tmp-*")), "the build never started writing"
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    index = Index.open(index_copy)
    assert index.manifest.documents == before
    assert index.document_count == 5


def test_open_index_survives_its_generation_being_collected(indexer, index_copy):
    """Readers keep answering from a snapshot after writers delete its directory."""
    import threading

    old = Index.open(index_copy)
    generation = old.generation
    for i in range(3):  # each commit keeps only the two newest generations
        add_articles(index_copy, [Article(doc_id=f"n{i}", text=f"Note {i} about apples.")], indexer)
    assert not generation.exists()
    results = []
    worker = threading.Thread(target=lambda: results.append(old.search_lexical("Kursk", 3)))
    worker.start()
    worker.join()
    assert results and results[0]
    assert Index.open(index_copy).document_count == 8
