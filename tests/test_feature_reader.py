"""Tests of question analysis and the extractive reader on small synthetic sentences."""

from __future__ import annotations

import numpy as np
import pytest

from indexing.sentences import load_nlp
from service.feature_reader import (
    CONFIDENCE_FEATURES,
    MODEL_PATH,
    SENTENCE_FEATURES,
    SPAN_FEATURES,
    sentence_features,
    span_scores,
)
from service.feature_reader import (
    FeatureReader as Reader,
)
from service.question import analyse
from service.retrieval import Evidence

DIM = 384


@pytest.fixture(scope="session")
def nlp():
    return load_nlp()


@pytest.fixture(scope="session")
def reader(nlp):
    return Reader(nlp)


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _evidence(nlp, sentences: list[str], vectors: list[np.ndarray], doc_id: str = "doc-a",
              offset: int = 100) -> list[Evidence]:
    """Evidence as Retriever.evidence builds it: sentence docs, document offsets, ranks."""
    out, start = [], offset
    for i, (text, vec) in enumerate(zip(sentences, vectors)):
        out.append(Evidence(doc_id=doc_id, title=None, source=None, start=start,
                            end=start + len(text), text=text, doc=nlp(text), vector=vec,
                            passage_rank=0, passage_score=1.0, ord=i))
        start += len(text) + 1
    return out


def _near(v: np.ndarray, cos: float, seed: int) -> np.ndarray:
    """A unit vector whose cosine with unit `v` is `cos`."""
    noise = _unit(seed)
    noise -= (noise @ v) * v
    noise /= np.linalg.norm(noise)
    return (cos * v + np.sqrt(1 - cos * cos) * noise).astype(np.float32)


@pytest.mark.parametrize(("question", "expected"), [
    ("Which agency reported the launch?", "organisation"),
    ("What city hosted the summit?", "place"),
    ("In what year was the bridge opened?", "date"),
    ("When did the strike end?", "date"),
    ("How many workers joined the strike?", "count"),
    ("How long did the strike last?", "duration"),
    ("How much money did the city spend?", "money"),
    ("Who chaired the meeting?", "person"),
    ("Where did the delegates meet?", "place"),
    ("Why did the talks collapse?", "why"),
    ("What percentage of voters took part?", "percent"),
    ("What did the committee approve?", "noun_phrase"),
])
def test_answer_type(nlp, question, expected):
    assert analyse(nlp, question).answer_type == expected


def test_question_terms_skip_wh_and_function_words(nlp):
    q = analyse(nlp, "How many engineers were hired by the factory?")
    assert "engineers" in q.terms and "factory" in q.terms
    assert not {"how", "many", "the", "by"} & set(q.terms)
    assert q.lemmas[q.terms.index("engineers")] == "engineer"
    assert q.head_noun == "engineer"


def test_model_file_matches_features(reader):
    assert MODEL_PATH.exists()
    assert reader.span_model.coef.shape == (len(SPAN_FEATURES),)
    assert reader.confidence_model.coef.shape == (len(CONFIDENCE_FEATURES),)
    assert reader.sentence_model.coef.shape == (len(SENTENCE_FEATURES),)
    assert reader.sentence_weight > 0.0
    assert 0.0 < reader.threshold < 1.0


def test_spans_are_verbatim_with_document_offsets(nlp, reader):
    qv = _unit(1)
    sentences = ["The harbour authority said about 4,500 containers were unloaded on Monday.",
                 "Dock workers at the northern pier went on strike last week."]
    evidence = _evidence(nlp, sentences, [_near(qv, 0.8, 2), _near(qv, 0.4, 3)])
    answers = reader.read("How many containers were unloaded?", qv, evidence)
    assert answers
    keys = [(a.evidence.doc_id, a.start, a.end) for a in answers]
    assert len(keys) == len(set(keys))
    assert [a.score for a in answers] == sorted((a.score for a in answers), reverse=True)
    for a in answers:
        assert a.text == a.evidence.text[a.start - a.evidence.start:a.end - a.evidence.start]
        assert a.evidence.start <= a.start < a.end <= a.evidence.end
        assert 0.0 <= a.confidence <= 1.0
        assert a.answer_type == "count"
    assert "4,500" in answers[0].text


def test_limit_and_empty_evidence(nlp, reader):
    qv = _unit(4)
    evidence = _evidence(nlp, ["The mayor opened the new library in the old town square."],
                         [_near(qv, 0.7, 5)])
    assert len(reader.read("Who opened the library?", qv, evidence, limit=3)) <= 3
    assert reader.read("Who opened the library?", qv, []) == []


@pytest.mark.parametrize(("question", "sentence", "answer"), [
    ("Who chaired the budget meeting?",
     "The budget meeting was chaired by Maria Lopez, the director of finance.", "Maria Lopez"),
    ("When did the ferry service resume?",
     "The ferry service resumed on April 12 after repairs to the engine.", "April 12"),
    ("Where did the delegates gather for the conference?",
     "The delegates gathered in Lisbon for the annual conference.", "Lisbon"),
])
def test_typed_answers(nlp, reader, question, sentence, answer):
    qv = _unit(6)
    filler = "Officials said the schedule would be published soon."
    evidence = _evidence(nlp, [filler, sentence], [_near(qv, 0.3, 7), _near(qv, 0.8, 8)])
    best = reader.read(question, qv, evidence)[0]
    assert answer in best.text
    assert len(best.text.split()) <= len(answer.split()) + 3  # short, not the whole sentence


def test_unrelated_question_abstains(nlp, reader):
    qv = _unit(9)
    sentences = ["The army said 3,000 soldiers were sent to the northern border in March.",
                 "The defence minister met his counterpart in the capital on Friday."]
    evidence = _evidence(nlp, sentences, [_near(qv, 0.05, 10), _near(qv, 0.02, 11)])
    corpus = {"boiling": 0, "point": 40, "mercury": 0}

    def df(terms):
        return {t: corpus.get(t, 5) for t in terms}

    answers = reader.read("What is the boiling point of mercury?", qv, evidence, df=df, n_docs=100)
    assert not answers or answers[0].confidence < reader.threshold


def test_related_question_is_more_confident_than_unrelated(nlp, reader):
    qv = _unit(12)
    sentence = "The army said 3,000 soldiers were sent to the northern border in March."
    on_topic = reader.read("How many soldiers were sent to the northern border?", qv,
                           _evidence(nlp, [sentence], [_near(qv, 0.85, 13)]))
    off_topic = reader.read("How many moons does Jupiter have?", qv,
                            _evidence(nlp, [sentence], [_near(qv, 0.05, 14)]))
    assert on_topic and "3,000" in on_topic[0].text
    assert not off_topic or off_topic[0].confidence < on_topic[0].confidence


@pytest.mark.parametrize(("question", "flag", "expected"), [
    # asks about what is not the case
    ("What did the council not approve?", "negated", True),
    ("Which bridge was never reopened?", "negated", True),
    ("Who didn't attend the summit?", "negated", True),
    ("What did the council approve?", "negated", False),
    # asks for an increment
    ("How many more troops were sent later?", "additive", True),
    ("How many additional soldiers arrived?", "additive", True),
    ("How much more money was raised?", "additive", True),
    ("How many troops were sent?", "additive", False),
    ("Which country sent more than 500 troops?", "additive", False),
])
def test_question_flags(nlp, question, flag, expected):
    assert getattr(analyse(nlp, question), flag) is expected


def test_question_slot_names_what_the_wh_phrase_hangs_from(nlp):
    q = analyse(nlp, "What did the council approve on Monday?")
    assert "approve" in q.anchors and q.slot == "dobj"
    assert analyse(nlp, "Which agency reported the figure?").anchors == frozenset({"report"})


def test_no_span_is_surer_than_the_best_scored_one(nlp, reader):
    qv = _unit(15)
    sentences = ["The council approved a new budget of 40 million euros on Monday.",
                 "Residents said the park and the library would close in May."]
    answers = reader.read("What did the council approve?", qv,
                          _evidence(nlp, sentences, [_near(qv, 0.7, 16), _near(qv, 0.3, 17)]))
    assert len(answers) > 2
    assert max(a.confidence for a in answers) == answers[0].confidence


def test_another_articles_best_span_is_scored_as_that_articles_own_answer(nlp, reader):
    qv = _unit(21)
    first = _evidence(nlp, ["About 12,000 soldiers were deployed to the border, officials said.",
                            "The talks ended on Monday without a statement."],
                      [_near(qv, 0.8, 22), _near(qv, 0.2, 23)], doc_id="doc-a")
    second = _evidence(nlp, ["Some 9,000 troops were deployed, a report said on Friday.",
                             "The ministry declined to comment on the figures."],
                       [_near(qv, 0.6, 24), _near(qv, 0.2, 25)], doc_id="doc-b", offset=0)
    question = "How many troops were deployed?"
    both = reader.read(question, qv, first + second, limit=50)
    assert {a.evidence.doc_id for a in both} == {"doc-a", "doc-b"}
    top = both[0]
    rival = next(a for a in both if a.evidence.doc_id != top.evidence.doc_id)
    assert rival.confidence <= top.confidence
    # Its confidence is that of the top span of its article's candidates taken alone (their
    # margin over each other, the evidence-wide values unchanged), capped by the best's;
    # not the value extrapolated from its distance below the other article's best.
    evidence = first + second
    feats = reader.featurize(question, qv, evidence)
    scores, sentence = reader.scores(feats)
    own = np.flatnonzero([evidence[c.sentence].doc_id == rival.evidence.doc_id
                          for c in feats.candidates])
    expected = reader.confidences(feats.subset(own), scores[own], sentence[own])
    k = int(np.argmax(scores[own]))
    assert feats.candidates[own[k]].text == rival.text
    assert rival.confidence == pytest.approx(min(expected[k], top.confidence), abs=1e-6)
    extrapolated = reader.confidences(feats, scores, sentence)[own[k]]
    assert extrapolated != pytest.approx(rival.confidence, abs=1e-3)


def _feature(reader, feats, name: str, text: str) -> float:
    col = SPAN_FEATURES.index(name)
    return max(feats.features[k, col] for k, c in enumerate(feats.candidates) if c.text == text)


def test_increment_marks_the_added_number_for_how_many_more(nlp, reader):
    qv = _unit(20)
    sentence = ("The army sent 10,000 soldiers in October and an additional 2,000 soldiers "
                "in December.")
    evidence = _evidence(nlp, [sentence], [_near(qv, 0.7, 21)])
    more = reader.featurize("How many more soldiers were sent?", qv, evidence)
    assert _feature(reader, more, "increment", "2,000") == 1.0
    assert _feature(reader, more, "increment", "10,000") == 0.0
    plain = reader.featurize("How many soldiers were sent?", qv, evidence)
    assert _feature(reader, plain, "increment", "2,000") == 0.0


def test_one_end_of_a_range_is_answered_with_the_range(nlp, reader):
    qv = _unit(22)
    sentence = "Officials said between 1,000 and 3,000 workers joined the strike on Friday."
    answers = reader.read("How many workers joined the strike?", qv,
                          _evidence(nlp, [sentence], [_near(qv, 0.8, 23)]), limit=20)
    texts = [a.text for a in answers]
    assert any("1,000 and 3,000" in t for t in texts)
    assert "1,000" not in texts and "3,000" not in texts
    for a in answers:
        assert a.text == a.evidence.text[a.start - a.evidence.start:a.end - a.evidence.start]


def test_negated_question_is_less_confident_on_a_positive_sentence(nlp, reader):
    qv = _unit(18)
    sentence = "The council approved a new budget of 40 million euros on Monday."
    evidence = _evidence(nlp, [sentence], [_near(qv, 0.8, 19)])
    plain = reader.read("What did the council approve on Monday?", qv, evidence)
    negated = reader.read("What did the council not approve on Monday?", qv, evidence)
    assert plain and negated
    assert negated[0].confidence < plain[0].confidence


def _sentence_feature(nlp, reader, name: str, sentence: str, seed: int):
    """A function question -> the value of sentence-level feature `name` for `sentence`."""
    qv = _unit(seed)
    evidence = _evidence(nlp, [sentence], [_near(qv, 0.7, seed + 1)])
    col = SPAN_FEATURES.index(name)
    return lambda question: float(reader.featurize(question, qv, evidence).features[0, col])


def test_missing_specific_counts_question_names_and_numbers_absent_from_the_evidence(nlp, reader):
    missing = _sentence_feature(nlp, reader, "missing_specific",
                                "The mayor of Lyon opened the new bridge in 1998.", 24)

    assert analyse(nlp, "When did the mayor of Lyon open the bridge?").specific == {"lyon"}
    assert missing("When did the mayor of Lyon open the bridge?") == 0.0
    assert missing("What did the mayor of Lyon open in 2004?") == pytest.approx(0.5)
    assert missing("What did the mayor open?") == 0.0  # nothing specific to miss


def test_swap_marks_a_sentence_that_modifies_the_question_noun_differently(nlp, reader):
    swap = _sentence_feature(
        nlp, reader, "swap",
        "The complexity class P is often seen as a mathematical abstraction of tasks.", 26)

    assert swap("What is seen as a mathematical abstraction of tasks?") == 0.0
    assert swap("What is seen as a scientific abstraction of tasks?") == 1.0
    # The modifier is there, the noun is paraphrased: not a swap.
    assert swap("What is seen as a mathematical model of tasks?") == 0.0
    assert swap("What is seen as an abstraction of tasks?") == 0.0


def test_opposed_marks_a_sentence_using_the_opposite_of_a_question_word(nlp, reader):
    opposed = _sentence_feature(
        nlp, reader, "opposed",
        "The most difficult problems in the class are thought to be intractable.", 28)

    assert opposed("Which problems in the class are the most difficult?") == 0.0
    assert opposed("Which problems in the class are the least difficult?") == 1.0
    # A negating prefix makes an opposite too.
    assert opposed("Which problems in the class are thought to be tractable?") == 1.0
    # The word itself is there as well: the sentence may still answer.
    both = _sentence_feature(nlp, reader, "opposed",
                             "Some tasks are easy and others are difficult.", 30)
    assert both("Which tasks are easy?") == 0.0


def test_sentence_features_summarise_each_sentences_candidates(nlp, reader):
    qv = _unit(40)
    sentences = ["The harbour authority said about 4,500 containers were unloaded on Monday.",
                 "It rained.",
                 "Dock workers at the northern pier counted 300 crates last week."]
    evidence = _evidence(nlp, sentences, [_near(qv, c, 41 + i) for i, c in
                                          enumerate((0.8, 0.2, 0.5))])
    feats = reader.featurize("How many containers were unloaded?", qv, evidence)
    rows, x = sentence_features(feats)
    sentence_of = [c.sentence for c in feats.candidates]
    with_candidates = sorted(set(sentence_of))
    assert x.shape == (len(with_candidates), len(SENTENCE_FEATURES))
    assert [with_candidates[r] for r in rows] == sentence_of
    for r, k in enumerate(with_candidates):
        mine = [i for i, s in enumerate(sentence_of) if s == k]
        span = feats.features[mine]
        assert x[r, SENTENCE_FEATURES.index("cos")] == span[0, SPAN_FEATURES.index("cos")]
        assert x[r, SENTENCE_FEATURES.index("max_type_match")] == \
            span[:, SPAN_FEATURES.index("type_match")].max()
        assert x[r, SENTENCE_FEATURES.index("min_dist")] == span[:, SPAN_FEATURES.index("dist")].min()
        assert x[r, SENTENCE_FEATURES.index("log_candidates")] == pytest.approx(np.log1p(len(mine)))


def test_span_scores_add_the_weighted_score_of_the_candidates_sentence(nlp, reader):
    qv = _unit(50)
    evidence = _evidence(nlp, ["The mayor opened the library in 1998.",
                               "The council closed the museum in 2004."],
                         [_near(qv, 0.7, 51), _near(qv, 0.6, 52)])
    feats = reader.featurize("When did the mayor open the library?", qv, evidence)
    rows, x = sentence_features(feats)
    span = np.arange(len(feats.candidates), dtype=np.float32)
    sentence = np.array([10.0, -10.0], np.float32)[:len(x)]
    scores, of_sentence = span_scores(feats, lambda _: span, lambda _: sentence, 0.5)
    assert np.allclose(of_sentence, sentence[rows])
    assert np.allclose(scores, span + 0.5 * sentence[rows])
    empty = reader.featurize("When did the mayor open the library?", qv, [])
    assert [len(a) for a in span_scores(empty, None, None, 0.5)] == [0, 0]
