"""Conversations for POST /chat: check the messages, and word the reply.

`compose_reply` turns the extractive answers into one readable sentence with [n] citation
markers, numbered in the order the answers list their citations; `answer_in_reply` reads
the answer back out of such a reply when a client sends it as an assistant turn.
Follow-up questions are resolved in service.followup.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from service.qa import MAX_QUESTION_CHARS, QAResult, QuestionError

ROLES = ("user", "assistant")
MAX_MESSAGES = 50
MAX_CHARS = 20_000
# Answers named in a "sources disagree" reply.
CONFLICT_ANSWERS = 3

# The reply's wording: `compose_reply` writes it and `answer_in_reply` reads it back.
ABSTAIN_REPLY = ("I could not find an answer to that in the articles; "
                 "try rephrasing or naming who or what you mean.")
_AGREE = "According to {where}: "
_WHERE = ("the articles", "an article")  # several sources, one
_DISAGREE = "The sources disagree: they give "
_FRAMES = re.compile("^(?:" + "|".join(re.escape(_AGREE.format(where=w)) for w in _WHERE)
                     + "|" + re.escape(_DISAGREE) + ")")
_MARKERS = re.compile(r"(?:\s*\[\d+\])+")


class ChatError(QuestionError):
    """The messages of a chat request are unusable (empty, too long, not ending with a user)."""


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class ReplyAnswer:
    """Where an assistant turn names its answer: `text[start:end]`."""

    text: str  # the turn without its citation markers
    start: int
    end: int
    own: bool  # worded by `compose_reply` (else by some other client)


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


def answer_in_reply(text: str) -> ReplyAnswer | None:
    """Where an assistant turn names its answer; None for an abstention or an empty turn.

    The service's own replies name the answer right after their opening words and before
    its markers (the first value when the sources disagree); any other assistant text is
    taken whole up to its first marker.
    """
    text = text.strip()
    if not text or text == ABSTAIN_REPLY:
        return None
    frame = _FRAMES.match(text)
    start = frame.end() if frame else 0
    marker = _MARKERS.search(text, start)
    end = marker.start() if marker else len(text)
    value = text[start:end].rstrip(" .;,")
    if not value:
        return None
    # The offsets hold in the marker-free text: no marker comes before `end`.
    return ReplyAnswer(_MARKERS.sub("", text), start, start + len(value), frame is not None)


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
        return ABSTAIN_REPLY
    numbers = citation_numbers(result)
    top = result.answers[0]
    if result.conflict and len(result.answers) > 1:
        shown = [f"{a.text} {_markers(ns)}" for a, ns in
                 zip(result.answers[:CONFLICT_ANSWERS], numbers)]
        listed = "; ".join(shown[:-1]) + f"; and {shown[-1]}" if len(shown) > 2 \
            else " and ".join(shown)
        return f"{_DISAGREE}{listed}."
    sources = len({c.doc_id for c in top.citations})
    where = _WHERE[0] if sources > 1 else _WHERE[1]
    return f"{_AGREE.format(where=where)}{top.text} {_markers(numbers[0])}."
