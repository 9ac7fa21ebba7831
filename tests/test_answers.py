"""Aggregation of reader spans into cited answers, and when articles disagree."""

from __future__ import annotations

import numpy as np

from service.answers import aggregate, value_parts
from service.reader import SpanAnswer
from service.retrieval import Evidence


def _span(doc_id: str, sentence: str, value: str, confidence: float,
          answer_type: str = "count", increment: bool = False) -> SpanAnswer:
    ev = Evidence(doc_id, None, None, 0, len(sentence), sentence, None, np.zeros(3, np.float32))
    start = sentence.index(value)
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
