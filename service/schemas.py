"""HTTP request/response schemas (msgspec Structs) and conversion from domain records."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin

from indexing.store import DocumentRecord
from service.answers import Answer
from service.qa import QAResult
from service.retrieval import Passage

# Longest article text POST /documents indexes: a request holds the index's writer lock
# while it is parsed and embedded, so its size bounds how long other writers wait.
MAX_DOCUMENT_CHARS = 100_000
DOC_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"

# The characters Python's str.isspace() (hence str.strip(), which the server uses to find an
# empty question) counts as space, spelled out: `\s` means a different set in ECMA regexes
# (which JSON Schema patterns are, and fuzzers and generated clients use) than in Python's
# `re`, e.g. U+001D and U+0085 are space to Python and not to ECMA. tests/test_fuzz.py checks
# this list against str.isspace().
SPACE_CLASS = (r"\t-\r\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f"
               r"\u205f\u3000")
NOT_BLANK = rf"[^{SPACE_CLASS}]"
"""Pattern of a string holding at least one character that is not space (unanchored)."""
# An article text: not blank, and no NUL anywhere (article_from_mapping refuses it). Written
# with a lookahead, not `^[^\u0000]*...$`: besides being the same in both regex dialects
# (no `$`, which Python lets match before a final newline), Schemathesis 4.32.5 can draw
# from it under maxLength 100,000, where it rewrites `*` into `{0,99999}`, more than
# Hypothesis generates, and then sends a non-object body labelled as valid data.
ARTICLE_TEXT_PATTERN = rf"^(?![^\u0000]*\u0000)[\s\S]*{NOT_BLANK}"


def documented(**constraints) -> msgspec.Meta:
    """OpenAPI constraints that the QA pipeline (not the decoder) enforces, with a 422.

    Schema clients and fuzzers then generate valid values, while bad ones keep their
    readable 422 message instead of the decoder's 400.
    """
    return msgspec.Meta(extra_json_schema={"extra": constraints})


class StrictStructSchemaPlugin(StructSchemaPlugin):
    """Structs that reject unknown fields say so: `additionalProperties: false`."""

    def to_openapi_schema(self, field_definition, schema_creator):
        schema = super().to_openapi_schema(field_definition, schema_creator)
        if field_definition.type_.__struct_config__.forbid_unknown_fields:
            schema.additional_properties = False
        return schema


class AskRequest(msgspec.Struct, forbid_unknown_fields=True):
    """POST /ask body."""

    question: Annotated[str, documented(min_length=1, max_length=2000, pattern=NOT_BLANK)]
    top_k: Annotated[int, documented(minimum=1, maximum=50)] = 5
    doc_ids: list[str] | None = None


class ChatMessage(msgspec.Struct, forbid_unknown_fields=True):
    # "user" | "assistant"; checked by service.chat so the error names the fix
    role: Annotated[str, documented(enum=["user", "assistant"])]
    content: Annotated[str, documented(min_length=1, max_length=20_000, pattern=NOT_BLANK)]


class ChatRequest(msgspec.Struct, forbid_unknown_fields=True):
    """POST /chat body: the conversation so far, ending with the user's question."""

    messages: Annotated[list[ChatMessage], documented(min_items=1, max_items=50)]
    stream: bool = False
    top_k: Annotated[int, documented(minimum=1, maximum=50)] = 5


class CitationOut(msgspec.Struct):
    doc_id: str
    title: str | None
    source: str | None
    span: str
    start: int
    end: int
    quote: str
    quote_start: int
    quote_end: int


class AnswerOut(msgspec.Struct):
    text: str
    confidence: float
    citations: list[CitationOut]


class PassageOut(msgspec.Struct):
    doc_id: str
    title: str | None
    source: str | None
    start: int
    end: int
    text: str
    score: float
    also_in: list[str] = []  # other articles carrying a near-duplicate of this passage


class AskResponse(msgspec.Struct):
    question: str
    answer: str | None
    confidence: float
    conflict: bool
    answers: list[AnswerOut]
    passages: list[PassageOut]
    timings_ms: dict[str, float]


class ChatResponse(msgspec.Struct):
    reply: str  # a sentence from the extractive answers, with [n] markers
    answer: AskResponse  # the /ask body for the resolved question
    query: str  # what retrieval searched for (the question plus earlier turns' context)


class SearchResponse(msgspec.Struct):
    query: str
    passages: list[PassageOut]


class DocumentSummary(msgspec.Struct):
    doc_id: str
    title: str | None
    source: str | None
    chars: int
    chunks: int


class DocumentList(msgspec.Struct):
    documents: list[DocumentSummary]


class DocumentOut(msgspec.Struct):
    doc_id: str
    title: str | None
    source: str | None
    url: str | None
    published: str | None
    summary: str | None
    text: str


class DocumentIn(msgspec.Struct, forbid_unknown_fields=True):
    """POST /documents body: one article in the JSONL corpus format."""

    doc_id: Annotated[str, documented(pattern=DOC_ID_PATTERN)]
    text: Annotated[str, msgspec.Meta(max_length=MAX_DOCUMENT_CHARS),
                    documented(min_length=1, pattern=ARTICLE_TEXT_PATTERN)]
    title: str | None = None
    source: str | None = None
    url: str | None = None
    published: str | None = None
    summary: str | None = None


class DocumentCreated(msgspec.Struct):
    doc_id: str
    chunks: int


class Health(msgspec.Struct):
    status: str
    documents: int
    chunks: int
    model: str


class ErrorOut(msgspec.Struct):
    status_code: int
    detail: str


def passage_out(p: Passage) -> PassageOut:
    return PassageOut(doc_id=p.doc_id, title=p.title, source=p.source, start=p.start, end=p.end,
                      text=p.text, score=p.score, also_in=list(p.duplicates))


def answer_out(a: Answer) -> AnswerOut:
    return AnswerOut(
        text=a.text, confidence=a.confidence,
        citations=[CitationOut(doc_id=c.doc_id, title=c.title, source=c.source, span=c.span,
                               start=c.start, end=c.end, quote=c.quote,
                               quote_start=c.quote_start, quote_end=c.quote_end)
                   for c in a.citations],
    )


def ask_response(r: QAResult) -> AskResponse:
    return AskResponse(
        question=r.question, answer=r.answer, confidence=r.confidence, conflict=r.conflict,
        answers=[answer_out(a) for a in r.answers], passages=[passage_out(p) for p in r.passages],
        timings_ms=r.timings_ms,
    )


def document_out(d: DocumentRecord) -> DocumentOut:
    return DocumentOut(doc_id=d.doc_id, title=d.title, source=d.source, url=d.url,
                       published=d.published, summary=d.summary, text=d.text)
