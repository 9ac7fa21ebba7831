"""Gold question sets: the JSONL format, its record, its reader and the
question-type vocabulary.

One question per line::

    {"id": "q1", "question": "how many troops were reported?",
     "answers": ["approximately 12,000"], "doc_ids": ["000_f15d0a015cddc7c4"],
     "type": "count"}

``answers`` is empty for a question the corpus does not answer, and then
``type`` is "unanswerable". ``doc_ids`` lists the documents that answer it (may
be empty; retrieval metrics skip such questions). ``type`` may be left out, in
which case it is inferred from the wording by :func:`question_type`.

An answerable question may also carry ``"conflict": true`` when the articles give
different values for what it asks (11,000 troops in one, 12,000 in another): the
service should then say so (``conflict`` in the ``/ask`` body). Left out, it is
false.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

QUESTION_TYPES = (
    "count",
    "range",
    "date",
    "person",
    "place",
    "organisation",
    "why",
    "duration",
    "noun_phrase",
    "unanswerable",
)

_DOC_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# Cue phrases per type. The earliest cue in the question wins ("When did the
# company ..." is a date question, "What company ... when ..." an organisation
# one); on a tie the order here decides, most specific first.
_TYPE_CUES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("duration", r"\bhow long\b|\bfor how many (years|months|weeks|days|hours)\b"),
        ("count", r"\bhow (many|much)\b|\bwhat (number|percentage|percent|amount)\b"),
        ("why", r"\bwhy\b|\bfor what reason\b|\bwhat (caused|causes)\b"),
        (
            "date",
            r"\bwhen\b|\b(what|which) (year|years|date|day|month|decade|century|time|period|era)\b",
        ),
        ("person", r"\bwho\b|\bwhom\b|\bwhose\b|\b(what|which) (person|man|woman|people)\b"),
        (
            "organisation",
            (
                r"\b(what|which) (company|companies|organi[sz]ation|organi[sz]ations|group|team|"
                r"agency|party|university|institution|band|club|firm|business|newspaper|network)\b"
            ),
        ),
        (
            "place",
            (
                r"\bwhere\b|\b(what|which) (country|countries|city|cities|state|region|place|"
                r"town|continent|island|river|area|location|province|county|nation)\b"
                r"|\bwhat part of\b"
            ),
        ),
    )
)


def question_type(question: str, answerable: bool = True) -> str:
    """Return the coarse type of ``question`` from its wording (one of QUESTION_TYPES).

    "unanswerable" when ``answerable`` is False; "noun_phrase" when no cue matches.
    """
    if not answerable:
        return "unanswerable"
    lowered = question.lower()
    best: tuple[int, int, str] | None = None
    for priority, (name, pattern) in enumerate(_TYPE_CUES):
        match = pattern.search(lowered)
        if match and (best is None or (match.start(), priority) < best[:2]):
            best = (match.start(), priority, name)
    return best[2] if best else "noun_phrase"


@dataclass(frozen=True, slots=True)
class GoldQuestion:
    """One gold question with its accepted answers and the documents that hold them."""

    id: str
    question: str
    answers: tuple[str, ...]
    """Accepted answer texts, distinct, in file order; empty when unanswerable."""
    doc_ids: tuple[str, ...]
    """Documents that answer the question; may be empty."""
    type: str
    """One of QUESTION_TYPES."""
    conflict: bool = False
    """The articles disagree on the answer, so the service should report a conflict."""

    @property
    def answerable(self) -> bool:
        """True when the corpus answers the question."""
        return bool(self.answers)


class GoldFormatError(ValueError):
    """A gold file that cannot be read; the message names the file and line."""

    def __init__(self, path: Path, line: int | None, problem: str) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


# Builds the error for the line being parsed, given only what is wrong with it.
_Problem = Callable[[str], GoldFormatError]


def _string_list(record: dict, key: str, problem: _Problem) -> tuple[str, ...]:
    value = record.get(key)
    if not isinstance(value, list):
        raise problem(f"'{key}' must be a list of strings, got {type(value).__name__}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise problem(f"'{key}'[{i}] must be a non-empty string, got {item!r}")
    return tuple(dict.fromkeys(value))


def _parse_line(record: object, problem: _Problem) -> GoldQuestion:
    if not isinstance(record, dict):
        raise problem(f"expected a JSON object, got {type(record).__name__}")
    for key in ("id", "question", "answers"):
        if key not in record:
            raise problem(f"missing required field '{key}'")
    for key in ("id", "question"):
        if not isinstance(record[key], str) or not record[key].strip():
            raise problem(f"'{key}' must be a non-empty string, got {record[key]!r}")
    answers = _string_list(record, "answers", problem)
    doc_ids = _string_list(record, "doc_ids", problem) if "doc_ids" in record else ()
    for doc_id in doc_ids:
        if not _DOC_ID.fullmatch(doc_id):
            raise problem(f"doc_id {doc_id!r} is not 1-128 characters of [A-Za-z0-9._:-]")
    kind = record.get("type")
    if kind is None:
        kind = question_type(record["question"], answerable=bool(answers))
    elif kind not in QUESTION_TYPES:
        raise problem(f"unknown type {kind!r}; use one of {', '.join(QUESTION_TYPES)}")
    elif (kind == "unanswerable") == bool(answers):
        raise problem(
            f"type is {kind!r} but {len(answers)} answer(s) are given; an unanswerable "
            "question has an empty 'answers' list and type 'unanswerable'"
        )
    conflict = record.get("conflict", False)
    if not isinstance(conflict, bool):
        raise problem(f"'conflict' must be true or false, got {conflict!r}")
    if conflict and not answers:
        raise problem("'conflict' is true but no answers are given; only an answerable "
                      "question can have articles that disagree on its answer")
    return GoldQuestion(record["id"], record["question"], answers, doc_ids, kind, conflict)


def load_gold(path: str | Path) -> list[GoldQuestion]:
    """Read a gold JSONL file into GoldQuestions, in file order.

    Blank lines are skipped. Raises GoldFormatError, naming the file and line,
    on a malformed line, a duplicate id or a file with no questions.
    """
    path = Path(path)
    questions: list[GoldQuestion] = []
    first_seen: dict[str, int] = {}
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            problem = partial(GoldFormatError, path, number)
            try:
                # utf-8-sig: editors on Windows put a byte-order mark before line 1.
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise problem(f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise problem(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
            question = _parse_line(record, problem)
            if question.id in first_seen:
                raise problem(
                    f"duplicate id {question.id!r} (first on line {first_seen[question.id]})"
                )
            first_seen[question.id] = number
            questions.append(question)
    if not questions:
        raise GoldFormatError(path, None, "no questions found; the gold set is empty")
    return questions
