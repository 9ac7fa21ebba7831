"""Conversations for POST /chat: resolve a follow-up against earlier turns, and word the reply.

A follow-up ("who did he meet?", "and how many more were sent later?") leans on an
earlier question for its subject. `resolve` finds the earlier user question's named
entities and noun phrases, puts them in place of the follow-up's pronouns (and under a
wh-phrase that lost its noun) for the reader, and adds them to the retrieval query.
The rules are grammatical (spaCy parse and entity labels), never about a topic.
`compose_reply` turns the extractive answers into one readable sentence with [n]
citation markers, numbered in the order the answers list their citations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.qa import MAX_QUESTION_CHARS, QAResult, QuestionError

ROLES = ("user", "assistant")
MAX_MESSAGES = 50
MAX_CHARS = 20_000
# Earlier user questions searched (most recent first) for what a follow-up refers to.
CONTEXT_TURNS = 3
# Answers named in a "sources disagree" reply.
CONFLICT_ANSWERS = 3

_PERSON = frozenset({"PERSON"})
_THING = frozenset({"ORG", "GPE", "NORP", "LOC", "FAC", "EVENT", "PRODUCT", "LAW",
                    "WORK_OF_ART"})
_PERSON_PRONOUNS = frozenset("he him his she her hers".split())
_THING_PRONOUNS = frozenset("it its they them their theirs".split())
_POSSESSIVE = frozenset("his hers its their theirs".split())
_CONNECTIVES = frozenset("and but so also then plus".split())
_WH = frozenset("what which who whom whose when where why how".split())
_QUANTIFIERS = frozenset("many much more few fewer less else other others".split())
_LEADING = frozenset("how many much what which whose the a an this that these those".split())


class ChatError(QuestionError):
    """The messages of a chat request are unusable (empty, too long, not ending with a user)."""


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a chat turn asks: the question the reader reads and the query retrieval runs."""

    question: str
    query: str
    follow_up: bool
    carried: tuple[str, ...] = ()  # phrases taken over from earlier turns


def check_messages(messages: Sequence[Message]) -> None:
    """Raise ChatError unless `messages` is a conversation the service can answer."""
    if not messages:
        raise ChatError("messages is empty; send at least one {'role': 'user', 'content': ...}")
    if len(messages) > MAX_MESSAGES:
        raise ChatError(f"messages has {len(messages)} entries; the limit is {MAX_MESSAGES}; "
                        "drop the oldest turns")
    unknown = sorted({m.role for m in messages if m.role not in ROLES})
    if unknown:
        raise ChatError(f"unknown role(s) {', '.join(map(repr, unknown))}; use 'user' or "
                        "'assistant'")
    total = sum(len(m.content) for m in messages)
    if total > MAX_CHARS:
        raise ChatError(f"messages hold {total} characters in all; the limit is {MAX_CHARS}; "
                        "drop the oldest turns")
    if messages[-1].role != "user":
        raise ChatError("the last message must come from the user (role 'user'); "
                        "it is the question answered")
    if len(messages[-1].content) > MAX_QUESTION_CHARS:
        raise ChatError(f"the last message (the question) has {len(messages[-1].content)} "
                        f"characters; the limit is {MAX_QUESTION_CHARS}")
    blank = [i for i, m in enumerate(messages) if not m.content.strip()]
    if blank:
        # The document says every content holds a non-space character; an empty turn
        # carries nothing to resolve a follow-up with, and an empty last one no question.
        raise ChatError(f"message {blank[0]} has empty content; every message needs text "
                        "(the last one is the question)")


@dataclass(frozen=True, slots=True)
class _Context:
    persons: list[str]
    things: list[str]  # organisations, places and non-person noun phrases
    head: str  # the noun phrase a "how many"/"which" question asked about, or ""
    names: list[str]  # proper-noun phrases not labelled as persons (a fallback for "he")
    subject: str  # the question's active subject ("did X deploy"), or ""
    phrases: list[str]  # everything worth carrying into retrieval, in order


def _strip(span) -> str:
    """A noun chunk without its wh-words, quantifiers and determiners ("how many X" -> "X")."""
    toks = list(span)
    while toks and (toks[0].lower_ in _LEADING or toks[0].lower_ in _QUANTIFIERS
                    or toks[0].pos_ in ("DET", "PRON")):
        toks = toks[1:]
    if not toks:
        return ""
    return span.doc[toks[0].i:toks[-1].i + 1].text


def _context(nlp, text: str) -> _Context:
    doc = nlp(text)
    persons = [e.text for e in doc.ents if e.label_ in _PERSON]
    things = [e.text for e in doc.ents if e.label_ in _THING]
    head = ""
    phrases: list[str] = [e.text for e in doc.ents if e.label_ in _PERSON | _THING]
    for chunk in doc.noun_chunks:
        if chunk.root.pos_ == "PRON" or chunk.root.lower_ in _WH:
            continue
        stripped = _strip(chunk)
        if not stripped:
            continue
        asked = any(t.lower_ in _WH for t in chunk) or any(
            t.lower_ in _WH for t in chunk.root.children)
        if asked and not head:
            head = stripped
        if chunk.root.ent_type_ not in _PERSON and stripped not in things \
                and not any(stripped in p or p in stripped for p in persons):
            things.append(stripped)
        if not any(stripped in p for p in phrases):
            phrases.append(stripped)
    names = [e.text for e in doc.ents if e.root.pos_ == "PROPN"
             and e.label_ not in ("GPE", "LOC", "NORP", "FAC")]
    # The subject that is not itself the asked-about phrase ("which region did X deploy").
    subj = next((t for t in doc if t.dep_ == "nsubj" and t.pos_ != "PRON"
                 and t.lower_ not in _WH and not any(c.lower_ in _WH for c in t.subtree)), None)
    subject = _strip(doc[subj.left_edge.i:subj.right_edge.i + 1]) if subj is not None else ""
    return _Context(persons, things, head, names, subject, phrases)


def _possessive(name: str) -> str:
    return name + ("'" if name.endswith("s") else "'s")


def resolve(nlp, messages: Sequence[Message]) -> Resolved:
    """The question and retrieval query for the last user message, given the earlier ones."""
    current = messages[-1].content.strip()
    earlier = [m.content.strip() for m in messages[:-1] if m.role == "user" and m.content.strip()]
    if not earlier:
        return Resolved(current, current, False)
    doc = nlp(current)
    toks = list(doc)
    connective = bool(toks) and toks[0].lower_ in _CONNECTIVES
    pronouns = [t for t in toks if t.lower_ in _PERSON_PRONOUNS | _THING_PRONOUNS
                and t.pos_ == "PRON" or t.lower_ in _POSSESSIVE]
    # "how many more were ...", "which ones ...": a wh-phrase with no noun of its own.
    bare_wh = None
    for t in toks:
        if t.lower_ in ("how", "which", "what") and t.i + 1 < len(toks):
            j = t.i + 1
            while j < len(toks) and toks[j].lower_ in _QUANTIFIERS:
                j += 1
            if j > t.i + 1 and (j == len(toks) or toks[j].pos_ not in ("NOUN", "PROPN", "ADJ")):
                bare_wh = j
            break
    if not (connective or pronouns or bare_wh is not None):
        return Resolved(current, current, False)

    contexts = [_context(nlp, text) for text in reversed(earlier[-CONTEXT_TURNS:])]
    head = next((c.head for c in contexts if c.head), "")
    # "he"/"she": a person; failing that, a proper name. "it"/"they": what was asked about.
    person = next((p for c in contexts for p in (*c.persons, *c.names)), "")
    thing = head or next((p for c in contexts for p in c.things), "")
    # An active subject ("did it deploy") stands for the earlier question's subject.
    agent = next((c.subject for c in contexts if c.subject), "") or thing

    # Rewrite the follow-up token by token for the reader.
    out: list[str] = []
    carried: list[str] = []
    start = 1 if connective else 0
    for t in toks[start:]:
        word = t.text
        low = t.lower_
        if t.i == bare_wh and head:
            out.append(head + " ")
            carried.append(head)
        if t in pronouns or low in _POSSESSIVE:
            referent = person if low in _PERSON_PRONOUNS and person else (
                (agent if t.dep_ == "nsubj" else thing) if low in _THING_PRONOUNS else "")
            if referent:
                word = _possessive(referent) if (low in _POSSESSIVE or t.tag_ == "PRP$") \
                    else referent
                carried.append(referent)
        out.append(word + t.whitespace_)
    if bare_wh == len(toks) and head:
        out.append(" " + head)
        carried.append(head)
    question = "".join(out).strip()
    if question and question[0].islower():
        question = question[0].upper() + question[1:]

    # Retrieval also gets the earlier question's entities and noun phrases.
    extra = [p for c in contexts[:1] for p in c.phrases
             if p.lower() not in question.lower()]
    query = " ".join([question, *extra]) if extra else question
    return _bounded(Resolved(question or current, query, True,
                             tuple(dict.fromkeys(carried + extra))), current)


def _bounded(resolved: Resolved, current: str) -> Resolved:
    """`resolved` within the question limit: what the client sent fits it (check_messages),
    so a rewrite made longer by earlier turns must not turn it into a 422."""
    question = resolved.question if len(resolved.question) <= MAX_QUESTION_CHARS else current
    # The phrases carried into the query only add recall: drop them rather than refuse.
    query = resolved.query if len(resolved.query) <= MAX_QUESTION_CHARS else question
    return Resolved(question, query, resolved.follow_up, resolved.carried)


def citation_numbers(result: QAResult) -> list[list[int]]:
    """The [n] marker of each citation of each answer: 1, 2, ... in answer order."""
    numbers: list[list[int]] = []
    n = 0
    for a in result.answers:
        numbers.append(list(range(n + 1, n + 1 + len(a.citations))))
        n += len(a.citations)
    return numbers


def _markers(ns: Sequence[int]) -> str:
    return "".join(f"[{n}]" for n in ns)


def compose_reply(result: QAResult) -> str:
    """One readable sentence built only from the extractive answers, with [n] markers."""
    if not result.answers:
        return ("I could not find an answer to that in the articles; "
                "try rephrasing or naming who or what you mean.")
    numbers = citation_numbers(result)
    top = result.answers[0]
    if result.conflict and len(result.answers) > 1:
        shown = [f"{a.text} {_markers(ns)}" for a, ns in
                 zip(result.answers[:CONFLICT_ANSWERS], numbers)]
        listed = "; ".join(shown[:-1]) + f"; and {shown[-1]}" if len(shown) > 2 \
            else " and ".join(shown)
        return f"The sources disagree: they give {listed}."
    sources = len({c.doc_id for c in top.citations})
    where = "the articles" if sources > 1 else "an article"
    return f"According to {where}: {top.text} {_markers(numbers[0])}."
