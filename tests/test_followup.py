"""The follow-up resolver (service.followup.resolve): which referent each pronoun gets, and how
the resolved question reads.

Each conversation is what the chat page sends: user questions, and between them the
assistant's replies as the service words them. Many are about BBC News articles
(../shared/datasets/bbc-news), written here so that these tests need no dataset.
"""

from __future__ import annotations

import pytest

from indexing.sentences import load_nlp
from service.chat import ABSTAIN_REPLY, Message
from service.followup import previous_answer, resolve


@pytest.fixture(scope="module")
def nlp():
    return load_nlp()


def _messages(turns: list[str]) -> list[Message]:
    return [Message("user" if n % 2 == 0 else "assistant", text) for n, text in enumerate(turns)]


# (conversation ending with the follow-up, the question the reader must get)
CASES = {
    # he/she -> the previous answer, a person, before the question's own people.
    "he: the answer": (
        ["Who arrived in North Korea to meet Kim Jong Un?",
         "According to the articles: Sergei Shoigu [1][2].",
         "What did he thank North Korea for?"],
        "What did Sergei Shoigu thank North Korea for?"),
    # he -> the answer; it -> the thing the question named, with its article.
    "he and it": (
        ["Who conveyed a message from Putin?", "According to an article: Shoigu [1].",
         "Who did he give it to?"],
        "Who did Shoigu give the message to?"),
    "she: the answer (BBC sport)": (
        ["Who is confident she can win her first major medal?",
         "According to an article: Sarah Claxton [1].",
         "What new mark did she set?"],
        "What new mark did Sarah Claxton set?"),
    # The referent stays in the conversation after the turn that named it.
    "she: two turns on (BBC sport)": (
        ["Who is confident she can win her first major medal?",
         "According to an article: Sarah Claxton [1].",
         "What new mark did she set?",
         "According to an article: new mark of 7.96 seconds [1].",
         "Who did she leave trailing in sixth spot?"],
        "Who did Sarah Claxton leave trailing in sixth spot?"),
    # The answer is a person inside a longer span: the name is the referent.
    "he: the name inside the answer (BBC entertainment)": (
        ["Who will unwrap the messages?", "According to an article: Richard Wentworth [1].",
         "Who was he an assistant to?",
         "According to an article: assistant to sculptor Henry Moore [1].",
         "What is he known for?"],
        "What is Henry Moore known for?"),
    # A verb's two arguments are two people: he -> the answer, him -> the one asked about.
    "he and him": (
        ["Who did Sergei Shoigu meet?", "According to an article: Kim Jong Un [1].",
         "What did he tell him?"],
        "What did Kim Jong Un tell Sergei Shoigu?"),
    # ... and a pronoun is not the name its own verb already has.
    "he beside a name (BBC entertainment)": (
        ["Who will unwrap the messages?", "According to an article: Richard Wentworth [1].",
         "Who was he an assistant to?", "According to an article: Henry Moore [1].",
         "When did he work with Henry Moore?"],
        "When did Richard Wentworth work with Henry Moore?"),
    # A date answers no pronoun: he -> the question's person; there -> its place.
    "he and there after a date": (
        ["When did Sergei Shoigu arrive in Pyongyang?", "According to an article: June 4 [1].",
         "Who did he meet there?"],
        "Who did Sergei Shoigu meet in Pyongyang?"),
    # The "there" of "were there" is no place; the other one is.
    "there, and the there of existence": (
        ["When did Sergei Shoigu arrive in Pyongyang?", "According to an article: June 4 [1].",
         "Were there any protests there?"],
        "Were there any protests in Pyongyang?"),
    "he after an abstention": (
        ["Who did Sergei Shoigu meet?", ABSTAIN_REPLY, "What did he say?"],
        "What did Sergei Shoigu say?"),
    # it -> the answer, a thing.
    "it: the answer": (
        ["What treaty did Russia and North Korea establish?",
         "According to an article: the Comprehensive Strategic Partnership Treaty [1].",
         "When was it established?"],
        "When was the Comprehensive Strategic Partnership Treaty established?"),
    "it: an indefinite answer becomes definite (BBC entertainment)": (
        ["What has been unveiled at Tate Britain?", "According to an article: A Christmas tree [1].",
         "Where is it displayed?"],
        "Where is the Christmas tree displayed?"),
    # its -> the answer, an organisation.
    "its: the answer (BBC business)": (
        ["Which media company now owns 8% of Google?", "According to an article: Time Warner [1].",
         "How many subscribers did its internet business lose?"],
        "How many subscribers did Time Warner's internet business lose?"),
    "it: an organisation with its article (BBC tech)": (
        ["Which government agreed to fund all expenses?",
         "According to an article: The US government [1].", "What did it fund?"],
        "What did the US government fund?"),
    # After a percentage, "its" is not the percentage the question asked for.
    "its: not a measure (BBC business)": (
        ["Which US media giant saw profits jump 76%?", "According to an article: £600 [1].",
         "What percentage of Google does it own?", "According to an article: 8 [1].",
         "How much did its film division's profits slump?"],
        "How much did the US media giant's film division's profits slump?"),
    # it -> the question's thing when the answer is a person (and whole hyphenated words).
    "it: not a person (BBC politics)": (
        ["Who wants to build a super-casino?", "According to an article: Scottish ministers [1].",
         "Where could it be built?"],
        "Where could the super-casino be built?"),
    # they -> the answer, a group; it -> the question's thing.
    "they: a group (BBC politics)": (
        ["Who dismissed the maternity pay plan as desperate?",
         "According to an article: The Tories [1].", "What did they say about it?"],
        "What did the Tories say about the maternity pay plan?"),
    "they: a plural (BBC politics)": (
        ["Who will consult on other proposals?", "According to an article: ministers [1].",
         "What could they allow fathers to take?"],
        "What could the ministers allow fathers to take?"),
    # A count answers no pronoun: they -> what was counted.
    "they: what a count counted": (
        ["How many North Korean troops were sent to Russia?",
         "The sources disagree: they give 1,000 to 3,000 [1][2] and about 12,000 [3].",
         "Where were they sent?"],
        "Where were the North Korean troops sent?"),
    # there -> the answer, a place; it -> the question's subject.
    "there and it": (
        ["Which region did North Korea deploy troops to?",
         "According to an article: the Kursk region [1].",
         "How many troops did it deploy there?"],
        "How many troops did North Korea deploy in the Kursk region?"),
    "there: the first of disagreeing places, without its preposition (BBC tech)": (
        ["Which country is using invisible ink in its elections?",
         "The sources disagree: they give in Kyrgyz Republic [1] and Asia [2].",
         "Who pushed through the law requiring the use of ink there?"],
        "Who pushed through the law requiring the use of ink in Kyrgyz Republic?"),
    # Another client's wording of the answer: the name in it counts.
    "he: another client's reply": (
        ["Who did Sergei Shoigu meet?", "He met Kim Jong Un in Pyongyang [1].",
         "What did he say?"],
        "What did Kim Jong Un say?"),
}


@pytest.mark.parametrize(("turns", "expected"), CASES.values(), ids=CASES.keys())
def test_pronouns_take_the_answer_then_the_questions(nlp, turns, expected):
    resolved = resolve(nlp, _messages(turns))
    assert resolved.question == expected, resolved
    # What was put in goes to retrieval too.
    assert resolved.follow_up and resolved.query.startswith(expected)


@pytest.mark.parametrize(("earlier", "question"), [
    (["Which company did the profit dip happen at?", "According to an article: AOL [1]."],
     "What did TimeWarner say it owns?"),
    (["Who did Sergei Shoigu meet?", "According to an article: Kim Jong Un [1]."],
     "What did Putin say about his visit?"),
])
def test_a_pronoun_bound_inside_its_question_stays(nlp, earlier, question):
    """A pronoun under a subject of its kind in its own question means that subject."""
    assert resolve(nlp, _messages([*earlier, question])).question == question


@pytest.mark.parametrize(("reply", "asked", "text", "fits"), [
    ("According to the articles: Sergei Shoigu [1][2].", "Who arrived in Pyongyang?",
     "Sergei Shoigu", {"he"}),
    # A name that the recogniser alone would call a place answers "who": a person.
    ("According to an article: Shoigu [1].", "Who conveyed a message?", "Shoigu", {"he"}),
    ("According to an article: The Tories [1].", "Who dismissed the plan?", "The Tories",
     {"they"}),
    ("According to an article: in Glasgow [1].", "Which city will get a casino?", "Glasgow",
     {"there", "it"}),
    ("According to an article: Time Warner [1].", "Which media company owns 8% of Google?",
     "Time Warner", {"it", "they"}),
    ("According to an article: 1,400 [1].", "How much will it rise by?", None, None),
    ("According to an article: 1960s [1].", "When did he work there?", None, None),
    (ABSTAIN_REPLY, "Who did he meet?", None, None),
    ("(an earlier reply)", "Who did he meet?", None, None),
])
def test_previous_answer_and_its_kind(nlp, reply, asked, text, fits):
    answer = previous_answer(nlp, _messages([asked, reply, "and then?"]))
    if text is None:
        assert answer is None
    else:
        assert answer is not None and answer.text == text and answer.fits == fits, answer
