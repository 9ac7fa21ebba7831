"""Aggregation of reader spans into cited answers, and when articles disagree."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from indexing.sentences import load_nlp, split_sentences, to_spacy_doc
from service.answers import ASKED_KINDS, SpanAnswer, aggregate, value_kinds, value_parts
from service.chat import compose_reply
from service.qa import QAResult
from service.question import ANSWER_TYPES, TYPE_LABELS
from service.retrieval import Evidence

# Where each test sentence sits in its made-up document: offsets are the document's, and
# the sentence's tokens count from here, as the retriever builds them.
SENTENCE_START = 120


@cache
def _annotated(sentence: str):
    """The sentence annotated as the indexer stores it, rebuilt as the retriever does."""
    nlp = load_nlp()
    (only, *rest), = split_sentences(nlp, [sentence])
    assert not rest, f"{sentence!r} parses as more than one sentence"
    return to_spacy_doc(nlp.vocab, sentence, only.annotation)


def _span(doc_id: str, sentence: str, value: str, confidence: float,
          answer_type: str = "count", increment: bool = False) -> SpanAnswer:
    ev = Evidence(doc_id, None, None, SENTENCE_START, SENTENCE_START + len(sentence), sentence,
                  _annotated(sentence), np.zeros(3, np.float32))
    start = SENTENCE_START + sentence.index(value)
    return SpanAnswer(ev, start, start + len(value), value, 1.0, confidence, answer_type,
                      increment)


def test_each_article_stating_its_own_value_is_a_conflict():
    answers, conflict = aggregate([
        _span("a", "Officials said 12,000 troops were sent.", "12,000", 0.9),
        _span("b", "About 11,000 troops were sent, analysts said.", "11,000", 0.8),
    ], threshold=0.3)
    assert [a.text for a in answers] == ["12,000", "11,000"] and conflict


def test_one_article_telling_two_values_apart_is_not_a_conflict():
    # Article "a" gives the first deployment and the later addition; "b" repeats the
    # addition. Neither contradicts the other.
    first = "It sent 10,000 troops in the autumn and 2,000 more in March."
    answers, conflict = aggregate([
        _span("a", first, "10,000", 0.9),
        _span("a", first, "2,000", 0.7),
        _span("b", "A further 2,000 troops arrived in March.", "2,000", 0.7),
    ], threshold=0.3)
    assert {a.text for a in answers} == {"10,000", "2,000"}
    assert not conflict


def test_same_value_worded_differently_is_one_answer():
    answers, conflict = aggregate([
        _span("a", "Approximately 12,000 troops were sent.", "Approximately 12,000", 0.9),
        _span("b", "Some 12,000 troops were sent.", "12,000", 0.8),
    ], threshold=0.3)
    assert len(answers) == 1 and answers[0].support == 2 and not conflict


def test_different_names_are_answers_not_a_conflict():
    answers, conflict = aggregate([
        _span("a", "The envoy met Kim Jong Un.", "Kim Jong Un", 0.9, "person"),
        _span("b", "The envoy met Choe Son-hui.", "Choe Son-hui", 0.8, "person"),
    ], threshold=0.3)
    assert len(answers) == 2 and not conflict


def test_a_rival_without_a_number_is_not_another_count():
    sentence = "Intelligence suggests a possible addition of 2,000 troops."
    answers, conflict = aggregate([
        _span("a", "Officials said 12,000 troops were sent.", "12,000", 0.9),
        _span("b", sentence, "Intelligence", 0.8),
        _span("b", sentence, "2,000", 0.7),
    ], threshold=0.3)
    assert [a.text for a in answers] == ["12,000", "2,000"] and conflict
    # Without a number on top, words stay answers: the question may not want a figure.
    answers, _ = aggregate([_span("b", sentence, "Intelligence", 0.8),
                            _span("b", sentence, "2,000", 0.7)], threshold=0.3)
    assert [a.text for a in answers] == ["Intelligence", "2,000"]


def test_totals_are_not_rivals_of_an_increment():
    # "How many more troops were sent?": the addition answers it; the totals two articles
    # disagree on are another question's values.
    first = "It sent 10,000 troops in the autumn and an additional 2,000 in March."
    spans = [_span("a", first, "2,000", 0.9, increment=True),
             _span("a", first, "10,000", 0.8),
             _span("b", "Some 11,000 troops were deployed.", "11,000", 0.7),
             _span("c", "A further 3,000 troops may follow.", "3,000", 0.6, increment=True)]
    answers, conflict = aggregate(spans, threshold=0.3)
    assert [a.text for a in answers] == ["2,000", "3,000"] and conflict
    answers, conflict = aggregate(spans[:3], threshold=0.3)
    assert [a.text for a in answers] == ["2,000"] and not conflict


def _conflict_between(first: str, second: str, answer_type: str) -> bool:
    """Whether two articles, each stating one of the values, are reported as disagreeing."""
    _, conflict = aggregate([
        _span("a", f"The article says {first}.", first, 0.9, answer_type),
        _span("b", f"Another says {second}.", second, 0.8, answer_type),
    ], threshold=0.3)
    return conflict


def test_dates_disagree_only_on_a_part_both_state():
    assert _conflict_between("September 2024", "June 4", "date")  # the months differ
    assert _conflict_between("June 4", "March 21", "date")
    assert not _conflict_between("2024", "June 4", "date")  # a year against a day
    assert not _conflict_between("On Tuesday", "March 21", "date")  # may be the same day
    assert not _conflict_between("June 2024", "2024", "date")  # one is more precise
    assert not _conflict_between("June 4", "this month", "date")


def test_lengths_of_time_are_compared_in_one_unit():
    assert _conflict_between("two weeks", "six months", "duration")
    assert not _conflict_between("two weeks", "14 days", "duration")
    assert not _conflict_between("two-hour", "4", "duration")  # a bare number is no length


def test_amounts_are_compared_as_numbers():
    assert _conflict_between("12,000", "11,000", "count")
    assert _conflict_between("2000", "3,000", "count")  # a count, not the year 2000
    assert not _conflict_between("$5 million", "$5,000,000", "money")
    assert not _conflict_between("two thousand", "2,000", "count")
    assert value_parts("two hundred thousand") == {"amount": (200000.0,)}
    assert value_parts("thousands") == {}


# -- only values of the asked kind are rivals -------------------------------------------------
# Each case: the asked type, the best span (article "a"), then rivals from other articles as
# (sentence, value, whether it is a value of the asked kind). Invented sentences, parsed by
# the real pipeline; every rival is confident enough to be listed on its own merits.
KIND_CASES = {
    "date": (
        ("The ferry line reopened on June 4, the port authority said.", "June 4"),
        [("Talks between the two nations on the ferry line stalled for just six months.",
          "between the two nations", False),
         ("Talks between the two nations on the ferry line stalled for just six months.",
          "just six", False),
         ("The ferry line stayed closed until May, according to the operator.", "until May", True)],
    ),
    "duration": (
        ("The dockers' strike lasted three weeks, the union said.", "three weeks"),
        [("A spokesman said the strike would end on Monday after 4 rounds of talks.",
          "on Monday", False),
         ("A spokesman said the strike would end on Monday after 4 rounds of talks.", "4", False),
         ("Another account says the strike lasted ten days.", "ten days", True)],
    ),
    "count": (
        ("Some 1,200 workers joined the walkout, organisers said.", "1,200"),
        [("Police put the number at 1,500 when the walkout began on March 21.", "March 21", False),
         ("Police put the number at 1,500 when the walkout began on March 21.", "1,500", True)],
    ),
    "quantity": (
        ("The reservoir holds 40 million litres of water.", "40 million litres"),
        [("The reservoir, built in 2019, holds 35 million litres, engineers say.", "2019", False),
         ("The reservoir, built in 2019, holds 35 million litres, engineers say.",
          "35 million litres", True)],
    ),
    "money": (
        ("The bridge repairs cost $4 million, the mayor said.", "$4 million"),
        [("The council approved $5 million for the repairs on 3 May.", "on 3 May", False),
         ("The council approved $5 million for the repairs on 3 May.", "$5 million", True)],
    ),
    "percent": (
        ("Turnout rose by 12 percent, the electoral board said.", "12 percent"),
        [("Turnout rose 9 percent in 2021 and again this year.", "in 2021", False),
         ("Turnout rose 9 percent in 2021 and again this year.", "9 percent", True)],
    ),
    "person": (
        ("The new harbour master is Maria Lopez, the ministry announced.", "Maria Lopez"),
        [("Tom Becker was named harbour master at the harbour in Valparaiso.",
          "the harbour in Valparaiso", False),
         ("Tom Becker was named harbour master at the harbour in Valparaiso.", "Tom Becker", True)],
    ),
    "place": (
        ("The festival will be held in Valparaiso, organisers confirmed.", "Valparaiso"),
        [("Officials moved the festival to Lima on Friday.", "on Friday", False),
         ("Officials moved the festival to Lima on Friday.", "Lima", True)],
    ),
    "organisation": (
        ("The contract went to the Andean Shipping Company, the ministry said.",
         "the Andean Shipping Company"),
        [("Maria Lopez signed the contract for the Pacific Freight Union.", "Maria Lopez", False),
         ("Maria Lopez signed the contract for the Pacific Freight Union.",
          "the Pacific Freight Union", True)],
    ),
}


def _listed(answer_type: str) -> tuple[list[str], list[str], bool]:
    """(answers listed, the values of the asked kind, conflict) for one KIND_CASES case."""
    (sentence, value), rivals = KIND_CASES[answer_type]
    spans = [_span("a", sentence, value, 0.9, answer_type)]
    spans += [_span(f"r{i}", s, v, 0.8 - 0.05 * i, answer_type)
              for i, (s, v, _) in enumerate(rivals)]
    answers, conflict = aggregate(spans, threshold=0.3)
    return [a.text for a in answers], [value] + [v for _, v, ok in rivals if ok], conflict


def test_every_typed_answer_type_has_its_rival_kinds():
    # One rule for every type the question analysis gives a kind of entity to.
    assert set(TYPE_LABELS) <= set(ASKED_KINDS) <= set(ANSWER_TYPES)
    assert set(KIND_CASES) == set(ASKED_KINDS)


@pytest.mark.parametrize("answer_type", sorted(KIND_CASES))
def test_rivals_are_values_of_the_asked_kind(answer_type):
    listed, expected, _ = _listed(answer_type)
    assert listed == expected


def test_a_conflict_names_only_values_of_the_asked_kind():
    # "When ...?": the two dates disagree on the month; the phrase between them is no date.
    listed, _, conflict = _listed("date")
    assert conflict and listed == ["June 4", "until May"]
    listed, _, conflict = _listed("duration")
    assert conflict and listed == ["three weeks", "ten days"]



def test_the_reply_names_only_the_values_that_disagree():
    (sentence, value), rivals = KIND_CASES["date"]
    spans = [_span("a", sentence, value, 0.9, "date")]
    spans += [_span(f"r{i}", s, v, 0.8 - 0.05 * i, "date") for i, (s, v, _) in enumerate(rivals)]
    answers, conflict = aggregate(spans, threshold=0.3)
    reply = compose_reply(QAResult("When did the ferry line reopen?", answers[0].text,
                                   answers[0].confidence, conflict, tuple(answers), (), {}))
    assert reply == "The sources disagree: they give June 4 [1] and until May [2]."


@pytest.mark.parametrize("answer_type", ["why", "how", "noun_phrase", "yes_no"])
def test_untyped_questions_keep_every_rival(answer_type):
    # A reason or a thing has no kind a label tells apart: nothing is filtered.
    answers, _ = aggregate([
        _span("a", "The line closed because the pier was unsafe.", "the pier was unsafe", 0.9,
              answer_type),
        _span("b", "Officials moved the festival to Lima on Friday.", "on Friday", 0.8,
              answer_type),
    ], threshold=0.3)
    assert [a.text for a in answers] == ["the pier was unsafe", "on Friday"]


def test_a_best_answer_of_another_kind_keeps_rivals_of_its_kind():
    # "Who signed the contract?" answered by an organisation (the question's type or the
    # recogniser may be wrong): other organisations and people stay rivals; a date does not.
    union = "Maria Lopez signed the contract for the Pacific Freight Union."
    answers, _ = aggregate([
        _span("a", "The contract went to the Andean Shipping Company, the ministry said.",
              "the Andean Shipping Company", 0.9, "person"),
        _span("b", union, "the Pacific Freight Union", 0.8, "person"),
        _span("c", union, "Maria Lopez", 0.7, "person"),
        _span("d", "Officials moved the festival to Lima on Friday.", "on Friday", 0.6,
              "person"),
    ], threshold=0.3)
    assert [a.text for a in answers] == ["the Andean Shipping Company",
                                         "the Pacific Freight Union", "Maria Lopez"]


@pytest.mark.parametrize(("sentence", "value", "kind", "stated"), [
    # Part of a length of time is a bare number, not a date; the whole is a length.
    ("Talks on the ferry line stalled for just six months.", "just six", "date", False),
    ("Talks on the ferry line stalled for just six months.", "just six months", "duration", True),
    ("Talks on the ferry line stalled for just six months.", "just six months", "date", False),
    ("The line closed two years ago after a storm.", "two years ago", "date", True),
    # One name of a person's full name is still the person.
    ("Tom Becker was named harbour master.", "Becker", "person", True),
    # A number inside a date is the date's, not an amount.
    ("The walkout began on March 21.", "March 21", "number", False),
])
def test_value_kinds_read_the_span_in_its_sentence(sentence, value, kind, stated):
    assert (kind in value_kinds(_span("a", sentence, value, 0.9))) is stated
