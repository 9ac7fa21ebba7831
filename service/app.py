"""The Litestar application: `create_app(settings)` wires routes to one QAPipeline.

The pipeline (models and index) is loaded in the lifespan, never at import time.
Handlers are synchronous and run in Litestar's thread pool, so CPU-bound work never
blocks the event loop. Domain errors are mapped to HTTP statuses in one place.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import anyio.to_thread
import msgspec
from litestar import Litestar, Request, Response, delete, get, post
from litestar.config.cors import CORSConfig
from litestar.datastructures import MutableScopeHeaders, State
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, Schema
from litestar.params import FromPath, JSONBody, Parameter
from litestar.response import File, ServerSentEvent, ServerSentEventMessage
from litestar.static_files import create_static_files_router

from indexing.articles import article_from_mapping
from indexing.errors import (
    ArticleQAError,
    CorpusError,
    DocumentNotFoundError,
    DuplicateDocumentError,
    IndexError_,
)
from service.chat import Message, check_messages, compose_reply
from service.followup import Resolved, resolve
from service.qa import QAPipeline, QuestionError
from service.schemas import (
    NOT_BLANK,
    AskRequest,
    AskResponse,
    ChatRequest,
    ChatResponse,
    DocumentCreated,
    DocumentIn,
    DocumentList,
    DocumentOut,
    DocumentSummary,
    ErrorOut,
    Health,
    SearchResponse,
    StrictStructSchemaPlugin,
    ask_response,
    document_out,
    passage_out,
)
from service.security import (
    RateLimit,
    RateLimiter,
    access_guard,
    access_rules,
    add_security_headers,
    document_access,
    redact,
)
from service.settings import Settings

log = logging.getLogger("article_qa")

STATIC = Path(__file__).parent / "static"

_STATUS = {
    QuestionError: 422,
    DocumentNotFoundError: 404,
    DuplicateDocumentError: 409,
    CorpusError: 422,
    IndexError_: 503,
}


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    # Every error body passes through redact: no file paths or tracebacks reach a client.
    return Response({"status_code": status, "detail": redact(detail)}, status_code=status,
                    headers=headers)


def domain_error_handler(_: Request, exc: ArticleQAError | ValueError) -> Response:
    """Map a domain error to its HTTP status, with the error's own message as `detail`."""
    for cls, status in _STATUS.items():
        if isinstance(exc, cls):
            return _error(status, str(exc))
    return _error(400, str(exc))


def http_error_handler(_: Request, exc: HTTPException) -> Response:
    detail = exc.detail or "request failed"
    extra = getattr(exc, "extra", None)
    if exc.status_code == 400 and extra:
        # Validation errors: say which field and why, in one readable line.
        parts = [f"{e.get('key', 'body')}: {e.get('message')}" for e in extra
                 if isinstance(e, dict)]
        if parts:
            detail = f"{detail}: " + "; ".join(parts)
    # Keep Retry-After (429), WWW-Authenticate (401) and Allow (405).
    return _error(exc.status_code, detail, headers=dict(exc.headers or {}) or None)


_DISK_FULL = ("No space left on device", "Disk quota exceeded", "database or disk is full")


def _disk_full(exc: Exception) -> bool:
    """ENOSPC however it surfaces: an OSError, SQLite's SQLITE_FULL, or FAISS's RuntimeError."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return True
    return isinstance(exc, (OSError, RuntimeError, sqlite3.Error)) and \
        any(m in str(exc) for m in _DISK_FULL)


def internal_error_handler(_: Request, exc: Exception) -> Response:
    if _disk_full(exc):
        # The write was discarded before it was published; the index is as it was.
        log.error("index write failed: %s", exc)
        return _error(507, "the index volume is full, so the change was not saved and the "
                           "index is unchanged; free disk space and retry")
    log.exception("unhandled error", exc_info=exc)
    return _error(500, "internal error; the server log has the details")


def nesting_error_handler(_: Request, exc: RecursionError) -> Response:
    # msgspec decodes a body of 100,000 nested brackets by recursion, and gives up.
    return _error(400, "the request body is nested too deeply to decode; send the JSON "
                       "object the route documents")


_DESCRIPTIONS = {
    400: "Malformed request: not JSON, wrong types or unknown fields (`detail` says which)",
    401: "No API key sent, and this deployment requires one (ARTICLE_QA_API_KEY / _READ_API_KEY)",
    403: "The API key sent is not valid for this route",
    404: "Unknown doc_id",
    409: "The doc_id exists already; send ?replace=true to replace it",
    413: "The request body is larger than ARTICLE_QA_MAX_BODY_BYTES",
    422: "Well-formed but unusable input (empty question, top_k out of range, bad doc_id, ...)",
    429: "Too many requests from this client; wait for the seconds in Retry-After",
    503: "The index on disk cannot be read; `detail` names the fix",
    507: "The index volume is full; the change was not saved",
}


def _errors(*statuses: int) -> dict[int, ResponseSpec]:
    """The OpenAPI description of the error statuses a route can answer with."""
    return {s: ResponseSpec(data_container=ErrorOut, description=_DESCRIPTIONS[s],
                            generate_examples=False) for s in statuses}


READ = (400, 401, 403, 429)  # every rate-limited reading route
WRITE = (400, 401, 403, 503, 507)
# Route options read by the guards in service.security.
LIMITED_READ = {"access": "read", "rate_limited": True}
READ_ONLY = {"access": "read"}
WRITE_ACCESS = {"access": "write"}


@dataclass
class _ChatOperation(Operation):
    """POST /chat answers JSON, or text/event-stream when the request says `stream: true`."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if ok is not None and not isinstance(ok, dict) and getattr(ok, "content", None) is not None:
            # One server-sent event: its name and its JSON payload.
            ok.content["text/event-stream"] = OpenAPIMediaType(schema=Schema(
                type=OpenAPIType.OBJECT, required=["event", "data"],
                description="events `passages`, `answer` (the JSON body), `done`; or `error` "
                            "(`status_code`, `detail`) in place of what is left",
                properties={
                    "event": Schema(enum=["passages", "answer", "done", "error"]),
                    "data": Schema(type=OpenAPIType.STRING, content_media_type="application/json"),
                }))


async def _allow_all_methods(message, scope) -> None:
    """Before-send hook: OPTIONS lists every method of the path.

    Litestar (2.25) builds a path's automatic OPTIONS handler when the path's first handler
    registers, so `OPTIONS /documents` would leave out POST, added later.
    """
    if message["type"] != "http.response.start" or scope.get("method") != "OPTIONS":
        return
    template = scope.get("path_template")
    methods = {m for route in scope["app"].routes if route.path_format == template
               for m in getattr(route, "methods", ())}
    headers = MutableScopeHeaders.from_message(message)
    if methods and "allow" in headers:
        headers["allow"] = ", ".join(sorted(methods))


_BODY_TYPES: dict[object, type | None] = {}


def _body_type(handler) -> type | None:
    """The msgspec Struct a handler takes as its JSON `data`, or None."""
    if handler not in _BODY_TYPES:
        data = handler.parsed_fn_signature.parameters.get("data")
        annotation = data.annotation if data is not None else None
        _BODY_TYPES[handler] = annotation if isinstance(annotation, type) and issubclass(
            annotation, msgspec.Struct) else None
    return _BODY_TYPES[handler]


def _json_number(literal: str) -> int | float:
    # JSON Schema counts 50.0 as an integer (the value, not its spelling, has a type);
    # msgspec's strict mode would refuse it for an int field.
    value = float(literal)
    return int(value) if value.is_integer() else value


_JSON = msgspec.json.Decoder(float_hook=_json_number)


async def strict_body(request: Request) -> None:
    """Before-request hook: a JSON body must have exactly the types its schema documents.

    Litestar converts bodies leniently (`"stream": 0` becomes false, `"top_k": "5"`
    becomes 5), which accepts what the OpenAPI document calls invalid; clients generated
    from the document, and fuzzers, would then disagree with the server. Runs after the
    guards, so a client without a key still gets its 401 first.
    """
    model = _body_type(request.route_handler)
    if model is None:
        return
    try:
        msgspec.convert(_JSON.decode(await request.body()), type=model, strict=True)
    except msgspec.ValidationError as exc:
        raise ValidationException(f"Validation failed for {request.method} {request.url.path}",
                                  extra=[{"key": "data", "message": str(exc)}]) from None
    except msgspec.DecodeError:
        return  # not JSON at all: the decoder's own 400 follows


def _pipeline(state: State) -> QAPipeline:
    return state.qa


@post("/ask", status_code=200, sync_to_thread=True, summary="Answer a question with citations",
      responses=_errors(*READ, 404, 413, 422), opt=LIMITED_READ)
def ask(data: JSONBody[AskRequest], state: State) -> AskResponse:
    """Extractive answers with citations, or `answer: null` when the corpus does not answer."""
    return ask_response(_pipeline(state).ask(data.question, data.top_k, data.doc_ids))


def _chat_body(result, resolved: Resolved) -> ChatResponse:
    return ChatResponse(reply=compose_reply(result), answer=ask_response(result),
                        query=resolved.query)


def _sse(event: str, body: object) -> ServerSentEventMessage:
    return ServerSentEventMessage(event=event, data=msgspec.json.encode(body).decode())


async def _chat_events(qa: QAPipeline, resolved: Resolved, top_k: int
                       ) -> AsyncIterator[ServerSentEventMessage]:
    """passages, then answer, then done; or error. Each step runs in a worker thread.

    When the client disconnects, Litestar cancels this generator: the step in flight
    finishes in its thread and no further step starts.
    """
    try:
        retrieved = await anyio.to_thread.run_sync(
            lambda: qa.retrieve(resolved.question, top_k, query=resolved.query))
        yield _sse("passages", {"question": retrieved.question, "query": retrieved.query,
                                "passages": [passage_out(p) for p in retrieved.shown]})
        result = await anyio.to_thread.run_sync(qa.read, retrieved)
        yield _sse("answer", _chat_body(result, resolved))
        yield _sse("done", {"timings_ms": result.timings_ms})
    except (ArticleQAError, QuestionError) as exc:
        status = domain_error_handler(None, exc).status_code  # type: ignore[arg-type]
        yield _sse("error", {"status_code": status, "detail": redact(str(exc))})
    except Exception as exc:  # the stream has started: report it in-band, not as a 500
        log.exception("chat stream failed", exc_info=exc)
        yield _sse("error", {"status_code": 500,
                             "detail": "internal error; the server log has the details"})


@post("/chat", status_code=200, summary="Answer the last message of a conversation",
      responses=_errors(*READ, 413, 422), operation_class=_ChatOperation, opt=LIMITED_READ)
async def chat(data: JSONBody[ChatRequest], state: State) -> Response[ChatResponse]:
    """A follow-up is resolved against earlier user turns, then answered like /ask.

    Rules across messages, which JSON Schema cannot state (a 422 names the one broken):
    the last message is the question, so its role is `user` and it holds at most 2,000
    characters; all messages hold at most 20,000 characters in all.

    `stream: true` returns text/event-stream: `passages`, then `answer` (the non-streamed
    body), then `done`; `error` (with `status_code` and `detail`) replaces what is left.
    """
    qa = _pipeline(state)
    messages = [Message(m.role, m.content) for m in data.messages]
    check_messages(messages)
    resolved = await anyio.to_thread.run_sync(resolve, qa.nlp, messages)
    # Before the stream starts: once it has, its status is 200 and errors go in-band.
    qa.check(resolved.question, data.top_k)
    qa.check(resolved.query, data.top_k)
    if data.stream:
        return ServerSentEvent(_chat_events(qa, resolved, data.top_k),
                               headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    result = await anyio.to_thread.run_sync(
        lambda: qa.ask(resolved.question, data.top_k, query=resolved.query))
    return Response(_chat_body(result, resolved))


@get("/", include_in_schema=False, sync_to_thread=False)
def chat_page() -> File:
    """The chat page (service/static/index.html)."""
    return File(STATIC / "index.html", media_type="text/html",
                content_disposition_type="inline")


@get("/search", sync_to_thread=True, summary="Hybrid passage search",
     responses=_errors(*READ, 422), opt=LIMITED_READ)
def search(
    state: State,
    # The pattern is documented, not enforced by the decoder: the pipeline's 422 says why.
    q: Annotated[str, Parameter(description="search text", min_length=1, max_length=2000,
                                schema_extra={"pattern": NOT_BLANK})],
    k: Annotated[int, Parameter(description="number of passages", ge=1, le=50)] = 5,
) -> SearchResponse:
    """The k passages most relevant to `q` (dense + BM25, fused)."""
    passages = _pipeline(state).search(q, k)
    return SearchResponse(query=q, passages=[passage_out(p) for p in passages])


@get("/documents", sync_to_thread=True, summary="List indexed documents",
     responses=_errors(401, 403), opt=READ_ONLY)
def list_documents(state: State) -> DocumentList:
    index = _pipeline(state).index
    lengths = index.document_lengths()
    return DocumentList(documents=[
        DocumentSummary(doc_id=d.doc_id, title=d.title, source=d.source,
                        chars=lengths.get(d.doc_id, 0), chunks=d.chunks)
        for d in index.list_documents()
    ])


@get("/documents/{doc_id:str}", sync_to_thread=True, summary="Get one document",
     responses=_errors(401, 403, 404), opt=READ_ONLY)
def get_document(doc_id: FromPath[str], state: State) -> DocumentOut:
    return document_out(_pipeline(state).index.document(doc_id))


@post("/documents", status_code=201, sync_to_thread=True, summary="Add a document",
      responses=_errors(*WRITE, 409, 413, 422), opt=WRITE_ACCESS)
def add_document(
    data: JSONBody[DocumentIn], state: State,
    replace: Annotated[bool, Parameter(description="replace an existing doc_id")] = False,
) -> DocumentCreated:
    """Index one article (JSONL corpus format); 409 when the doc_id exists unless replace."""
    article = article_from_mapping(msgspec.structs.asdict(data), "request body")
    chunks = _pipeline(state).add_document(article, replace=replace)
    return DocumentCreated(doc_id=article.doc_id, chunks=chunks)


@delete("/documents/{doc_id:str}", status_code=204, sync_to_thread=True,
        summary="Delete a document", responses=_errors(*WRITE, 404), opt=WRITE_ACCESS)
def delete_document(doc_id: FromPath[str], state: State) -> None:
    _pipeline(state).remove_document(doc_id)


@get("/health", sync_to_thread=False, summary="Liveness and index size")
def health(state: State) -> Health:
    qa = _pipeline(state)
    return Health(status="ok", documents=qa.index.document_count, chunks=qa.index.chunk_count,
                  model=qa.index.manifest.model)


def create_app(settings: Settings | None = None, pipeline: QAPipeline | None = None,
               build_if_empty: bool = True) -> Litestar:
    """Build the app; the pipeline is loaded in the lifespan unless one is given (tests)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if pipeline is not None:
            app.state.qa = pipeline
        else:
            app.state.qa = await anyio.to_thread.run_sync(
                lambda: QAPipeline.load(settings, build_if_empty=build_if_empty))
        yield

    # Keys and rate limits come with each app's settings; routes name theirs in `opt`.
    rules = access_rules(settings)
    limiter = RateLimiter(RateLimit.parse(settings.rate_limit, settings.rate_burst))
    app = Litestar(
        route_handlers=[ask, search, list_documents, get_document, add_document,
                        delete_document, health, chat, chat_page,
                        create_static_files_router(path="/static", directories=[STATIC],
                                                   include_in_schema=False)],
        lifespan=[lifespan],
        guards=[access_guard(rules), limiter],
        before_request=strict_body,
        before_send=[add_security_headers, _allow_all_methods],
        plugins=[StrictStructSchemaPlugin()],
        cors_config=CORSConfig(allow_origins=list(settings.cors_origins))
        if settings.cors_origins else None,
        exception_handlers={
            ArticleQAError: domain_error_handler,
            QuestionError: domain_error_handler,
            HTTPException: http_error_handler,
            RecursionError: nesting_error_handler,
            Exception: internal_error_handler,
        },
        openapi_config=OpenAPIConfig(
            title="article-qa", version="0.1.0", path="/schema",
            description="Extractive question answering over news articles, with citations.",
            render_plugins=[SwaggerRenderPlugin()],
        ),
        request_max_body_size=settings.max_body_bytes,
        debug=False,
    )
    document_access(app, rules)
    return app


def app_from_environment() -> Litestar:
    """The app configured from ARTICLE_QA_* alone (`serve --workers N` starts one per worker)."""
    return create_app(Settings(), build_if_empty=False)
