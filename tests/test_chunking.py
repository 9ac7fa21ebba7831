"""Sentences and chunks: exact offsets (property-based) and the model's token limit."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexing.articles import parse_txt
from indexing.chunking import ChunkParams, chunk_document, count_tiktoken
from indexing.sentences import split_sentences, to_spacy_doc

WORDS = ["troops", "Shoigu’s", "“quoted”", "12,000", "Pyongyang", "the", "a", "café",
         "Kim\u00a0Jong-un", "naïve", "e-mail", "U.S.", "(about", "1,000)", "said", "—", "…"]
word = st.one_of(st.sampled_from(WORDS), st.text(string.ascii_letters, min_size=1, max_size=9))
sentence = st.builds(lambda ws, end: " ".join(ws).capitalize() + end,
                     st.lists(word, min_size=1, max_size=40), st.sampled_from([".", "?", "!", ""]))
paragraph = st.builds(" ".join, st.lists(sentence, min_size=1, max_size=6))
article = st.builds(
    lambda title, paras: f"{title}\n\n" + "\n\n".join(paras) + "\n\nOriginal Source: x.org\n",
    st.sampled_from(["A Headline", "Another Headline Here"]),
    # A body made only of separators ("—") is rightly refused by parse_txt as boilerplate.
    st.lists(paragraph, min_size=1, max_size=6).filter(
        lambda paras: any(ch.isalnum() for p in paras for ch in p)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=article, target=st.integers(20, 200), overlap=st.integers(0, 2))
def test_sentence_and_chunk_offsets_are_exact(indexer, raw, target, overlap):
    doc = parse_txt(raw, "prop")
    sentences = next(split_sentences(indexer.nlp, [doc.text]))
    assert sentences, "every non-empty body has a sentence"
    for s in sentences:
        sentence_text = doc.text[s.start:s.end]
        assert sentence_text == sentence_text.strip() and sentence_text
        assert to_spacy_doc(indexer.nlp.vocab, sentence_text, s.annotation).text == sentence_text
    assert [s.ord for s in sentences] == list(range(len(sentences)))
    assert all(a.end <= b.start for a, b in zip(sentences, sentences[1:]))
    chunks = chunk_document(doc.text, sentences, ChunkParams(target, overlap),
                            indexer.embedder.count_tokens, indexer.embedder.max_tokens)
    # Every sentence is covered by some chunk, chunks lie in the text and fit the model.
    covered = set()
    for c in chunks:
        assert 0 <= c.start < c.end <= len(doc.text)
        assert indexer.embedder.count_tokens(doc.text[c.start:c.end]) <= indexer.embedder.max_tokens
        covered.update(range(c.first_sentence, c.last_sentence + 1))
        if c.first_sentence != c.last_sentence:
            assert c.start == sentences[c.first_sentence].start
            assert c.end == sentences[c.last_sentence].end
    assert covered == set(range(len(sentences)))


def test_window_respects_target_and_overlaps_one_sentence(indexer):
    text = " ".join(f"Sentence number {i} talks about the subject at some length." for i in range(40))
    sentences = next(split_sentences(indexer.nlp, [text]))
    chunks = chunk_document(text, sentences, ChunkParams(60, 1), indexer.embedder.count_tokens,
                            indexer.embedder.max_tokens)
    assert len(chunks) > 3
    for c in chunks:
        assert count_tiktoken(text[c.start:c.end]) <= 60
    for a, b in zip(chunks, chunks[1:]):
        assert b.first_sentence == a.last_sentence  # one sentence of overlap


def test_overlong_sentence_is_split_under_model_limit(indexer):
    text = "word " * 600 + "end."
    text = text.strip()
    sentences = next(split_sentences(indexer.nlp, [text]))
    chunks = chunk_document(text, sentences, ChunkParams(160, 1), indexer.embedder.count_tokens,
                            indexer.embedder.max_tokens)
    assert len(chunks) >= 3
    assert all(indexer.embedder.count_tokens(text[c.start:c.end]) <= indexer.embedder.max_tokens
               for c in chunks)
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
