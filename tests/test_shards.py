"""Sharded indexes: the same answers as one index, routed incremental writes, atomic
publication of the shard set, and clear errors for a damaged or mismatched one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from indexing.articles import Article, iter_corpus
from indexing.errors import CorruptIndexError, IncompatibleIndexError
from indexing.pipeline import add_articles, build, remove_documents
from indexing.shards import (
    SHARDS,
    ShardedIndex,
    fts_tokens,
    index_exists,
    open_index,
    read_shard_set,
    set_index_choice,
    shard_of,
)
from indexing.store import CURRENT, Index
from service.qa import QAPipeline
from service.settings import Settings
from tests.conftest import ARTICLES, ROOT, default_env

QUERIES = ["how many troops were reported?", "Kursk region", "mutual defense treaty",
           "anti-aircraft missile test", "Choe Son-hui", "10,000 to 12,000 troops",
           "Shoigu's visit to Pyongyang", "north korea russia"]
QUESTIONS = ["how many troops were reported?", "Who arrived in North Korea?",
             "When did the visit take place?", "What is the boiling point of mercury?"]


@pytest.fixture(scope="module")
def sharded(indexer, tmp_path_factory):
    index_dir = tmp_path_factory.mktemp("sharded") / "index"
    build(ARTICLES, index_dir, indexer, shards=3)
    return index_dir


def _place(index, cid: int) -> tuple[str, int, int]:
    ref = index.chunk_refs[cid]
    return ref.doc_id, ref.start, ref.end


def _ranked(index, embedder, k: int = 8) -> list:
    out = []
    for q in QUERIES:
        qv = embedder.encode_one(q)
        out.append([(_place(index, c), round(s, 5)) for c, s in index.search_dense(qv, k)])
        out.append([(_place(index, c), round(s, 9)) for c, s in index.search_lexical(q, k)])
    return out


def test_layout_spreads_documents_over_the_shards(sharded):
    live = read_shard_set(sharded)
    assert [n for n, _ in live.shards] == ["shard-000", "shard-001", "shard-002"]
    ix = open_index(sharded)
    assert isinstance(ix, ShardedIndex) and ix.document_count == 5
    for k, shard in enumerate(ix.shards):
        assert all(shard_of(d, 3) == k for d in shard.manifest.documents)
    assert sum(s.chunk_count for s in ix.shards) == ix.chunk_count == len(set(ix.chunk_refs))
    assert not (sharded / CURRENT).exists() and index_exists(sharded)


def test_search_ranks_and_scores_as_one_index_does(sharded, built_index, indexer):
    """BM25 is rescored with the whole index's statistics, so even the scores agree."""
    assert _ranked(open_index(sharded), indexer.embedder) == \
        _ranked(Index.open(built_index), indexer.embedder)


def test_stored_text_and_sentences_are_reached_through_the_shards(sharded, built_index):
    one, many = Index.open(built_index), open_index(sharded)
    assert [d.doc_id for d in many.list_documents()] == [d.doc_id for d in one.list_documents()]
    for doc_id in one.manifest.documents:
        assert many.document(doc_id).text == one.document(doc_id).text
        a, b = one.sentences(doc_id, 0, 10**6), many.sentences(doc_id, 0, 10**6)
        assert [(s.ord, s.start, s.annotation) for s in a] == \
            [(s.ord, s.start, s.annotation) for s in b]
        assert all(np.array_equal(x.vector, y.vector) for x, y in zip(a, b))
    terms = ["troops", "kursk", "nonexistentword"]
    assert many.document_frequency(terms) == one.document_frequency(terms)
    assert many.fts_documents == one.fts_documents
    cid = next(iter(many.chunk_refs))
    assert np.linalg.norm(many.vectors.reconstruct(cid)) == pytest.approx(1.0, abs=1e-3)


def test_answers_match_a_single_index(sharded, built_index, indexer):
    one = QAPipeline(Settings(index=built_index), indexer=indexer)
    many = QAPipeline(Settings(index=sharded), indexer=indexer)
    for q in QUESTIONS:
        a, b = one.ask(q), many.ask(q)
        assert (a.answer, a.confidence, a.conflict) == (b.answer, b.confidence, b.conflict), q
        assert [[(c.doc_id, c.start, c.end) for c in x.citations] for x in a.answers] == \
            [[(c.doc_id, c.start, c.end) for c in x.citations] for x in b.answers]
    # A document filter reaches only that document's shard.
    doc = sorted(Index.open(built_index).manifest.documents)[0]
    hits = many.search("troops", 5, [doc])
    assert hits and {p.doc_id for p in hits} == {doc}


def test_fts_tokens_follow_the_unicode61_tokenizer():
    assert fts_tokens("Shoigu’s visit, 10,000-12,000 Café_X") == \
        ["shoigu", "s", "visit", "10", "000", "12", "000", "cafe", "x"]


def test_incremental_writes_route_to_shards_and_match_a_full_build(indexer, tmp_path):
    articles = [a for a in iter_corpus(ARTICLES) if isinstance(a, Article)]
    full = tmp_path / "full"
    build(ARTICLES, full, indexer, shards=2)
    inc = tmp_path / "inc"
    subset = tmp_path / "subset"
    subset.mkdir()
    for p in sorted(ARTICLES.glob("*.txt"))[:2]:
        shutil.copy(p, subset / p.name)
    build(subset, inc, indexer, shards=2)
    before = read_shard_set(inc)
    extra = Article(doc_id="extra", text="An unrelated article about gardening and roses.")
    add_articles(inc, [extra], indexer)
    after = read_shard_set(inc)
    # Only the shard the document hashes to gets a new generation.
    changed = [k for k, (a, b) in enumerate(zip(before.shards, after.shards)) if a != b]
    assert changed == [shard_of("extra", 2)]
    add_articles(inc, articles[2:], indexer)
    remove_documents(inc, ["extra"])
    assert _ranked(open_index(inc), indexer.embedder) == _ranked(open_index(full), indexer.embedder)
    assert open_index(inc).manifest.documents == open_index(full).manifest.documents
    again = build(ARTICLES, inc, indexer)  # stays sharded; nothing to do
    assert (again.indexed, again.unchanged) == (0, 5) and len(read_shard_set(inc).shards) == 2


def test_shard_counts_and_layouts_do_not_change_without_rebuild(indexer, sharded, built_index,
                                                                tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(sharded, copy)
    with pytest.raises(IncompatibleIndexError, match="3 shards, not 2.*--shards 2 --rebuild"):
        build(ARTICLES, copy, indexer, shards=2)
    plain = tmp_path / "plain"
    shutil.copytree(built_index, plain)
    with pytest.raises(IncompatibleIndexError, match="no shards, not 2"):
        build(ARTICLES, plain, indexer, shards=2)
    # --rebuild changes either; the old layout's files are gone.
    build(ARTICLES, plain, indexer, rebuild=True, shards=2)
    assert len(read_shard_set(plain).shards) == 2 and not list(plain.glob("gen-*"))
    build(ARTICLES, copy, indexer, rebuild=True, shards=2)
    assert sorted(p.name for p in copy.glob("shard-*")) == ["shard-000", "shard-001"]
    build(ARTICLES, copy, indexer, rebuild=True)  # keeps its count
    assert len(read_shard_set(copy).shards) == 2


def test_a_failure_before_the_commit_point_keeps_the_old_set(indexer, sharded, tmp_path,
                                                             monkeypatch):
    import indexing.shards as shards

    copy = tmp_path / "copy"
    shutil.copytree(sharded, copy)
    before = _ranked(open_index(copy), indexer.embedder)
    live = read_shard_set(copy)

    def crash(*_a, **_k):
        raise OSError("disk gone")

    monkeypatch.setattr(shards, "write_atomically", crash)  # SHARDS is never replaced
    with pytest.raises(OSError, match="disk gone"):
        build(ARTICLES, copy, indexer, rebuild=True)
    monkeypatch.undo()
    assert read_shard_set(copy) == live
    assert _ranked(open_index(copy), indexer.embedder) == before
    # The next write succeeds over what the failed one left behind.
    remove_documents(copy, [sorted(open_index(copy).manifest.documents)[0]])
    assert open_index(copy).document_count == 4


def test_a_crash_after_the_commit_point_is_rolled_forward(indexer, sharded, tmp_path,
                                                          monkeypatch):
    import indexing.shards as shards

    copy = tmp_path / "copy"
    shutil.copytree(sharded, copy)
    victim = sorted(open_index(copy).manifest.documents)[0]
    # SHARDS names the new generations, but the process dies before any CURRENT moves.
    monkeypatch.setattr(shards, "roll_forward", lambda *_a: None)
    remove_documents(copy, [victim])
    monkeypatch.undo()
    k = shard_of(victim, 3)
    live = read_shard_set(copy)
    assert (copy / live.shards[k][0] / CURRENT).read_text().strip() != live.shards[k][1]
    assert not open_index(copy).has_document(victim)  # readers follow SHARDS
    other = sorted(open_index(copy).manifest.documents)[0]
    remove_documents(copy, [other])  # the next writer rolls forward first, loses nothing
    ix = open_index(copy)
    assert ix.document_count == 3 and not ix.has_document(victim)


@pytest.mark.parametrize("damage", ["missing-shard", "missing-generation", "bad-shards-file"])
def test_a_damaged_shard_fails_with_its_name_and_the_rebuild(sharded, tmp_path, damage):
    copy = tmp_path / "copy"
    shutil.copytree(sharded, copy)
    if damage == "missing-shard":
        shutil.rmtree(copy / "shard-001")
        pattern = "shard-001 is missing.*--shards 3 --rebuild"
    elif damage == "missing-generation":
        name, generation = read_shard_set(copy).shards[2]
        shutil.rmtree(copy / name / generation)
        pattern = "shard-002.*missing.*--shards 3 --rebuild"
    else:
        (copy / SHARDS).write_text("{not json")
        pattern = "unreadable SHARDS.*--rebuild"
    with pytest.raises(CorruptIndexError, match=pattern):
        open_index(copy)
    # `serve` checks the index before loading any model: one line, non-zero exit.
    run = subprocess.run([sys.executable, "-m", "service.cli", "serve", "--index", str(copy),
                          "--port", "1"], cwd=ROOT, env=default_env(), capture_output=True,
                         text=True, timeout=120)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert run.stderr.startswith("error: ") and "--rebuild" in run.stderr


def test_a_new_vector_index_choice_reaches_every_shard(sharded, indexer, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(sharded, copy)
    before = ShardedIndex.open(copy)
    expected = _ranked(before, indexer.embedder)
    before.close()
    assert set_index_choice(copy, "hnsw")
    assert not set_index_choice(copy, "hnsw")  # already recorded: nothing written
    after = ShardedIndex.open(copy)
    try:
        assert {s.manifest.index_type for s in after.shards} == {"hnsw"}
        assert after.manifest.index_choice == "hnsw"
        # Vectors taken from the shards themselves: 5 articles rank as before.
        assert [[p for p, _ in hits] for hits in _ranked(after, indexer.embedder)] == \
            [[p for p, _ in hits] for hits in expected]
    finally:
        after.close()


def test_index_info_lists_the_shards(sharded):
    run = subprocess.run([sys.executable, "-m", "service.cli", "index", "info", "--index",
                          str(sharded), "--json"], cwd=ROOT, env=default_env(),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)
    assert [s["shard"] for s in info["shards"]] == ["shard-000", "shard-001", "shard-002"]
    assert sum(s["documents"] for s in info["shards"]) == info["documents"] == 5


@pytest.mark.parametrize("layout", ["one index", "sharded"])
def test_a_write_by_another_process_is_seen_on_the_next_question(indexer, built_index, sharded,
                                                                 tmp_path, layout):
    """`serve --workers N` siblings and Ray replicas each hold a pipeline over the same
    directory: a write through one reaches the others, and a damaged publication does not
    stop them answering."""
    index_dir = tmp_path / "index"
    shutil.copytree(built_index if layout == "one index" else sharded, index_dir)
    writer = QAPipeline(Settings(index=index_dir), indexer=indexer)
    reader = QAPipeline(Settings(index=index_dir), indexer=indexer)
    question = "When did the rose garden open?"
    assert reader.ask(question).answer != "1921"
    writer.add_document(Article(doc_id="garden", title="Roses",
                                text="The rose garden opened in 1921."))
    assert reader.ask(question).answer == "1921"
    assert reader.index.has_document("garden")
    pointer = index_dir / (SHARDS if layout == "sharded" else CURRENT)
    pointer.write_text("garbage")
    assert reader.ask(question).answer == "1921"  # the open index keeps answering
