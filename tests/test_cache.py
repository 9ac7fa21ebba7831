"""The hot-path caches: bounded, thread-safe, and never stale across index writes."""

from __future__ import annotations

import threading

import pytest

from indexing.articles import Article
from service.cache import LRUCache


def test_lru_evicts_least_recently_used_and_zero_disables():
    cache: LRUCache[int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    assert len(cache) == 2 and cache.hits == 3 and cache.misses == 1
    off: LRUCache[int] = LRUCache(0)
    off.put("a", 1)
    assert off.get("a") is None and len(off) == 0


def test_lru_under_concurrent_use_stays_bounded():
    cache: LRUCache[int] = LRUCache(50)

    def work(offset: int) -> None:
        for i in range(2000):
            cache.get_or_compute((offset + i) % 120, lambda i=i: i + 1)

    threads = [threading.Thread(target=work, args=(n * 7,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) <= 50


@pytest.fixture()
def pipeline(index_copy, indexer):
    from service.qa import QAPipeline
    from service.settings import Settings

    return QAPipeline(Settings(index=index_copy), indexer=indexer)


def test_repeated_question_is_served_from_cache_with_same_answer(pipeline):
    first = pipeline.ask("how many troops were reported?")
    again = pipeline.ask("how many troops were reported?")
    assert "cached" not in first.timings_ms
    assert again.timings_ms.get("cached") == 1.0
    assert (again.answer, again.answers, again.passages) == (first.answer, first.answers,
                                                             first.passages)
    # Other options are another question.
    narrower = pipeline.ask("how many troops were reported?", top_k=1)
    assert "cached" not in narrower.timings_ms and len(narrower.passages) == 1


def test_write_invalidates_cached_answers(pipeline):
    question = "What did the Zorblax committee decide about the harbour tax?"
    before = pipeline.ask(question)
    text = ("The Zorblax committee decided on Tuesday to abolish the harbour tax. "
            "The Zorblax committee said the harbour tax had cost traders 4 million euros.")
    pipeline.add_document(Article(doc_id="zorblax", title="Harbour tax", text=text))
    after = pipeline.ask(question)
    assert "cached" not in after.timings_ms
    assert any(p.doc_id == "zorblax" for p in after.passages)
    assert not any(p.doc_id == "zorblax" for p in before.passages)
    pipeline.remove_document("zorblax")
    gone = pipeline.ask(question)
    assert not any(p.doc_id == "zorblax" for p in gone.passages)
