"""The neural reader's offline path: question generation, synthetic data, windows, training."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
import torch

from indexing.sentences import split_sentences
from service.encoding import WindowEncoder, best_spans, load_tokenizer
from training.corpus import ParsedArticle
from training.model import encoder_path
from training.questions import Span, answer_candidates, make_question
from training.synthetic import Example, Generator
from training.train import TrainConfig, featurize, train

# Invented sentences (not from any corpus the service is evaluated on).
QUESTIONS = [
    ("Maria Lopez founded the company in 1998.", "Maria Lopez", "Who founded the company in 1998?"),
    ("Maria Lopez founded the company in 1998.", "1998", "When did Maria Lopez found the company?"),
    ("The airline has cancelled 30 flights because of the strike.", "30",
     "How many flights has the airline cancelled because of the strike?"),
    ("The airline has cancelled 30 flights because of the strike.", "strike",
     "Why has the airline cancelled 30 flights?"),
    ("The minister gave the report to the committee.", "report",
     "What did the minister give to the committee?"),
    ("The minister gave the report to the committee.", "committee",
     "What did the minister give the report to?"),
    ("The agency was set up by the government in March.", "March",
     "When was the agency set up by the government?"),
    ("Tom Barker, the club's chairman, said the stadium would be sold.", "Tom Barker",
     "Who is the club's chairman?"),
    ("Tom Barker, the club's chairman, said the stadium would be sold.",
     "stadium would be sold", "What did Tom Barker say?"),
    ("Profits rose by 12% to £40m last year.", "12%",
     "By what percentage did profits rise to £40m last year?"),
]


@pytest.fixture(scope="module")
def nlp(indexer):
    return indexer.nlp


def _span(doc, text: str) -> Span:
    return next(s for s in answer_candidates(doc) if doc[s.first:s.last].text == text)


@pytest.mark.parametrize(("sentence", "answer", "question"), QUESTIONS)
def test_wh_movement_makes_a_grammatical_question(nlp, sentence, answer, question):
    doc = nlp(sentence)
    assert make_question(doc, _span(doc, answer), random.Random(1)) == question


def test_no_question_for_an_answer_inside_a_noun_phrase(nlp):
    # "the capital of which country" asks nothing a reader could learn from.
    doc = nlp("The council approved 240 new homes in Leeds on Tuesday.")
    leeds = _span(doc, "Leeds")
    assert make_question(doc, leeds, random.Random(0)) is None


ARTICLES = [
    ("a1", "Harbour Town opened a new ferry terminal in May 2003. The terminal cost £12m and was "
           "built by Carrow Engineering. Mayor Ellen Price said the terminal would bring 400 jobs "
           "to Harbour Town.\nCarrow Engineering also built the bridge at Westmoor in 2001."),
    ("a2", "Carrow Engineering has won a contract to rebuild the pier at Westmoor. The firm built "
           "the ferry terminal at Harbour Town. Ellen Price visited Westmoor on Friday.\nThe pier "
           "will reopen in 2006, the council said, after two years of work."),
    ("a3", "The Westmoor council voted to raise parking charges by 10%. Councillor Adam Hale said "
           "the money would pay for 30 new buses. The charges rise in April 2005."),
]


@pytest.fixture(scope="module")
def parsed(nlp):
    texts = [t for _, t in ARTICLES]
    return [ParsedArticle(doc_id, text, tuple(sentences))
            for (doc_id, text), sentences in zip(ARTICLES, split_sentences(nlp, texts))]


def test_synthetic_examples_are_exact_and_deterministic(parsed, nlp):
    first = Generator(parsed, seed=3, nlp=nlp).examples()
    again = Generator(parsed, seed=3, nlp=nlp).examples()
    other = Generator(parsed, seed=4, nlp=nlp).examples()
    assert [e.to_json() for e in first] == [e.to_json() for e in again]
    assert [e.to_json() for e in first] != [e.to_json() for e in other]
    answerable = [e for e in first if e.answer_start >= 0]
    unanswerable = [e for e in first if e.answer_start < 0]
    assert answerable and unanswerable
    for ex in answerable:
        assert ex.context[ex.answer_start:ex.answer_start + len(ex.answer)] == ex.answer
        assert any(ex.context in text for _, text in ARTICLES)
    for ex in unanswerable:
        assert ex.answer == ""
        if ex.kind == "other-passage":
            source = next(e for e in answerable if e.question == ex.question)
            assert source.answer.lower() not in ex.context.lower()
    assert all(Example.from_json(e.to_json()) == e for e in first)


def test_near_miss_edits_change_what_the_passage_states(parsed, nlp):
    gen = Generator(parsed, seed=0, nlp=nlp)
    ex = Example("x", "When did Harbour Town open a new ferry terminal in 2003?",
                 ARTICLES[0][1][:60], "May 2003", 43, "sentence", "date", "a1")
    edited = gen._edited(ex)
    assert edited is not None and edited.answer_start == -1
    changed = set(re.findall(r"\w+", edited.question)) - set(re.findall(r"\w+", ex.question))
    assert changed and not any(w in ex.context for w in changed)


@pytest.fixture(scope="module")
def encoder():
    return WindowEncoder(load_tokenizer(encoder_path() / "tokenizer.json"), max_len=48)


def test_answer_positions_map_back_to_the_exact_characters(encoder):
    context = ("The terminal, which cost £12.5m, was built by Carrow Engineering in 2003 and "
               "opened in May. Its café serves 400 passengers a day.") * 2
    for answer in ("£12.5m", "Carrow Engineering", "café", "400 passengers"):
        start = context.rindex(answer)  # the second copy: the window has to move to it
        ex = Example(f"id-{answer}", "What?", context, answer, start, "sentence", "thing", "d")
        f = featurize(ex, encoder)
        assert f is not None and len(f.window.input_ids) <= encoder.max_len
        s, e = f.window.offsets[f.start][0], f.window.offsets[f.end][1]
        # Offsets are into the passage the window was cut from.
        assert context[s:e] == answer
        start_logits = np.full(len(f.window.input_ids), -5.0)
        end_logits = np.full(len(f.window.input_ids), -5.0)
        start_logits[f.start], end_logits[f.end] = 5.0, 5.0
        spans, null = best_spans(start_logits, end_logits, f.window.offsets)
        assert context[spans[0].start:spans[0].end] == answer and spans[0].score > null
    none = featurize(Example("n", "What?", context, "", -1, "edited", "thing", "d"), encoder)
    assert (none.start, none.end) == (0, 0)


def test_spans_never_cross_a_segment(encoder):
    start_logits = np.array([0, 0, 0, 9, 0, 0, 0], dtype=float)
    end_logits = np.array([0, 0, 0, 0, 0, 9, 0], dtype=float)
    offsets = np.array([[-1, -1], [-1, -1], [-1, -1], [0, 3], [4, 7], [8, 11], [-1, -1]])
    joined, _ = best_spans(start_logits, end_logits, offsets)
    assert (joined[0].start, joined[0].end) == (0, 11)
    split, _ = best_spans(start_logits, end_logits, offsets,
                          allowed=np.array([-1, -1, -1, 0, 0, 1, -1]))
    assert all((s.start, s.end) != (0, 11) for s in split)


def _tiny_run(examples, tmp_path, name, **kwargs):
    config = TrainConfig(data=("t",), data_sha1="t", max_len=48, batch_size=4, lr=3e-4,
                         epochs=kwargs.pop("epochs", 2.0), seed=1)
    return train(config, examples, tmp_path / name, checkpoint_every=kwargs.pop("every", 2),
                 log_every=1, log=lambda line: None, **kwargs)


@pytest.mark.slow
def test_training_loss_falls_and_resuming_gives_the_same_weights(parsed, nlp, tmp_path):
    examples = Generator(parsed, seed=0, nlp=nlp).examples()[:16]
    straight = _tiny_run(examples, tmp_path, "straight", epochs=3.0)
    assert straight["finished"]
    full = torch.load(tmp_path / "straight" / "model.pt")
    # The same run, stopped after its first checkpoint and resumed.
    stopped = _tiny_run(examples, tmp_path, "resumed", epochs=3.0, max_minutes=1e-6)
    assert not stopped["finished"] and stopped["steps"] == 2
    resumed = _tiny_run(examples, tmp_path, "resumed", epochs=3.0, resume=True)
    assert resumed["finished"] and resumed["steps"] == straight["steps"]
    again = torch.load(tmp_path / "resumed" / "model.pt")
    assert all(torch.equal(full[k], again[k]) for k in full)


@pytest.mark.slow
def test_training_fits_a_few_examples(parsed, nlp, tmp_path):
    examples = Generator(parsed, seed=0, nlp=nlp).examples()[:8]
    run = _tiny_run(examples, tmp_path, "fit", epochs=16.0, every=1000)
    losses = run["losses"]  # one per step: two batches an epoch
    assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:2]), losses
