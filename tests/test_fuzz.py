"""Hostile input, generated: Schemathesis against the service's own OpenAPI document, and
hypothesis strategies of unicode, control characters, huge strings, nested JSON,
search-operator strings and invalid ids thrown at every route and at the article parser.

Each property holds for every generated input: no 5xx, a JSON `detail` on every 4xx, an
answer within a bounded time, and the index unchanged unless the request was a valid write.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from indexing.articles import SkippedFile, iter_corpus, parse_jsonl_line, parse_txt
from indexing.errors import CorpusError
from service import chat, qa
from service.app import create_app
from service.qa import QAPipeline
from service.settings import Settings
from tests import schemathesis_hooks
from tests.conftest import ROOT, default_env, serving

WRITE_KEY = "fuzz-write-key"
READ_KEY = "fuzz-read-key"
AUTH = {"Authorization": f"Bearer {WRITE_KEY}"}
# Examples per operation (Schemathesis) and per property (hypothesis); CI keeps them small.
EXAMPLES = int(os.environ.get("ARTICLE_QA_FUZZ_EXAMPLES", "20"))
# The same examples on every run (CI must not flake); ARTICLE_QA_FUZZ_RANDOM=1 explores.
RANDOM = os.environ.get("ARTICLE_QA_FUZZ_RANDOM") == "1"
SECONDS = 20.0  # the longest any single request may take on a loaded 2-core machine
# Requests sent per test, for docs/RELIABILITY.md (`pytest -s` prints them).
SENT: Counter[str] = Counter()


@pytest.fixture(scope="module")
def fuzz_index(built_index, tmp_path_factory):
    target = tmp_path_factory.mktemp("fuzz") / "index"
    shutil.copytree(built_index, target)
    return target


@pytest.fixture(scope="module")
def pipeline(indexer, fuzz_index):
    return QAPipeline(Settings(index=fuzz_index), indexer=indexer)


def _settings(index) -> Settings:
    # Keys on, so the fuzzer also checks that they are enforced; no rate limit, since the
    # fuzzer is one client sending hundreds of requests.
    return Settings(index=index, api_key=WRITE_KEY, read_api_key=READ_KEY, rate_limit="0")


# -- Schemathesis --------------------------------------------------------------------------
class _Deferred:
    """An ASGI app standing in for the real one until the session fixtures have built it.

    Schemathesis parametrizes at collection time, before fixtures exist (and its lazy
    `from_fixture` loader does not run under pytest 9), so the schema is loaded from the
    document `create_app` generates, and requests reach the app the fixture sets here.
    """

    app = None

    async def __call__(self, scope, receive, send):
        assert self.app is not None, "the api_app fixture did not run"
        await self.app(scope, receive, send)


DEFERRED = _Deferred()
DOCUMENT = create_app(_settings("unused")).openapi_schema.to_schema()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=schemathesis.Config.from_dict({
    "generation": {"max-examples": EXAMPLES, "deterministic": not RANDOM},
    "checks": {
        # Unknown doc_ids are a 404 and existing ones a 409: valid data the index refuses.
        "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "409"]},
        # A body over ARTICLE_QA_MAX_BODY_BYTES is refused before it is read: 413.
        "negative_data_rejection": {"expected-statuses": [
            "400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]},
    },
    "max-stream-events": 10,
}))
schema.app = DEFERRED


@pytest.fixture(scope="module")
def api_app(pipeline):
    app = create_app(_settings(pipeline.settings.index), pipeline=pipeline)
    DEFERRED.app = app
    with TestClient(app=app) as client:
        # The document fuzzed is the one the app serves.
        assert client.get("/schema/openapi.json").json() == json.loads(json.dumps(DOCUMENT))
        yield app
    DEFERRED.app = None


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_openapi_contract(case, api_app):
    """All Schemathesis checks: no 5xx, responses match the document, statuses documented."""
    started = time.monotonic()
    case.call_and_validate(headers=AUTH, excluded_checks=_unwritable(case))
    assert time.monotonic() - started < SECONDS
    SENT[f"schemathesis {case.operation.label}"] += 1


def _unwritable(case) -> list:
    """POST /chat's rules across messages are not in the document (JSON Schema cannot say
    them; tests/schemathesis_hooks.py): a request that breaks one is not valid data."""
    if case.operation.path == "/chat" and schemathesis_hooks.breaks_chat_rule(case.body):
        return [schemathesis.checks.positive_data_acceptance]
    return []


def test_hook_limits_are_the_service_limits():
    assert schemathesis_hooks.MAX_CHAT_CHARS == chat.MAX_CHARS
    assert schemathesis_hooks.MAX_QUESTION_CHARS == qa.MAX_QUESTION_CHARS


def test_schemathesis_cli_all_checks_against_a_live_server(fuzz_index, tmp_path):
    """`st run --checks all` against a real `article-qa serve`, as a user would run it: every
    check, positive data acceptance included, with the document's own statuses."""
    env = default_env(ARTICLE_QA_API_KEY=WRITE_KEY, ARTICLE_QA_READ_API_KEY=READ_KEY,
                      SCHEMATHESIS_HOOKS="tests.schemathesis_hooks", PYTHONPATH=str(ROOT))
    index = tmp_path / "index"
    shutil.copytree(fuzz_index, index)
    with serving(index, env=env) as base:
        # A fixed seed and one worker: the same requests on every run (CI must not flake).
        seed = [] if RANDOM else ["--seed", "1"]
        result = subprocess.run(
            [str(Path(sys.executable).parent / "st"), "--no-color", "run",
             f"{base}/schema/openapi.json", "--checks", "all", "--max-examples", str(EXAMPLES),
             *seed, "--workers", "1", "--request-timeout", str(SECONDS),
             "-H", f"Authorization: Bearer {WRITE_KEY}"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    generated = re.search(r"(\d+) generated, \1 passed", output)
    assert generated and int(generated.group(1)) > 100, output[-2000:]
    SENT["schemathesis CLI (all operations)"] += int(generated.group(1))


# -- the document's notion of "blank" is the server's -----------------------------------------
# Python's str.isspace() (what the server strips) and ECMA's \s (what JSON Schema patterns,
# and Schemathesis, use) disagree: U+001C-U+001F and U+0085 are space only to Python, U+FEFF
# only to ECMA.
SPACE_CANDIDATES = "".join(chr(c) for c in range(0x10000) if chr(c).isspace()) + \
    "\ufeff\u200b\u180e\x00\x01\x7f"


def _field_schemas() -> dict[str, dict]:
    components = DOCUMENT["components"]["schemas"]
    search = DOCUMENT["paths"]["/search"]["get"]["parameters"]
    return {"question": components["AskRequest"]["properties"]["question"],
            "q": next(p["schema"] for p in search if p["name"] == "q"),
            "content": components["ChatMessage"]["properties"]["content"],
            "text": components["DocumentIn"]["properties"]["text"]}


FIELDS = _field_schemas()
VALIDATORS = {name: jsonschema_rs.validator_for(schema) for name, schema in FIELDS.items()}


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_documented_blank_is_str_isspace_in_both_regex_dialects(field):
    """Every character, alone: the document calls it valid exactly when the server does
    (not space to str.isspace(); for an article text, not NUL either)."""
    pattern, ecma = FIELDS[field].get("pattern", ""), VALIDATORS[field]
    wrong = []
    for code in range(0x110000):
        if 0xD800 <= code <= 0xDFFF:
            continue  # lone surrogates are not valid JSON strings
        char = chr(code)
        expected = not char.isspace() and not (field == "text" and char == "\x00")
        if bool(re.search(pattern, char)) is not expected or ecma.is_valid(char) is not expected:
            wrong.append(f"U+{code:04X}")
    assert not wrong, f"{field}: {len(wrong)} characters judged unlike the server: {wrong[:12]}"


@settings(max_examples=EXAMPLES * 4, deadline=None, derandomize=not RANDOM,
          suppress_health_check=list(HealthCheck))
@given(value=st.text(st.sampled_from(SPACE_CANDIDATES) | st.sampled_from("a.1"), max_size=6),
       field=st.sampled_from(sorted(FIELDS)))
def test_document_and_server_agree_on_blank_strings(client, value, field):
    """A string the document calls valid is accepted; one it calls invalid is refused."""
    valid = VALIDATORS[field].is_valid(value)
    pattern = FIELDS[field].get("pattern", "")
    # The same verdict in Python's `re` (what a Python client validates with) and ECMA.
    assert bool(re.search(pattern, value)) is valid, (field, value)
    if field == "question":
        r = client.post("/ask", json={"question": value})
    elif field == "q":
        r = client.get(f"/search?q={_q(value)}")
    elif field == "content":
        r = client.post("/chat", json={"messages": [{"role": "user", "content": value}]})
    else:
        r = client.post("/documents?replace=true", json={"doc_id": "agree", "text": value})
        if r.status_code == 201:
            client.app.state.qa.remove_document("agree")
    SENT[f"hypothesis blank {field}"] += 1
    assert (r.status_code < 300) is valid, (field, value, r.status_code, r.text[:200])


# -- hypothesis: hostile input at every route ------------------------------------------------
# FTS5 and SQL syntax, quoting, wildcards and column filters: lexical search must treat
# them as text.
OPERATORS = ['"', "'", "*", "^", ":", "(", ")", "{", "}", "-", "+", "AND", "OR", "NOT", "NEAR",
             "NEAR(", "chunks_fts:", "text:", "\\", "%", "_", ";", "--", "/*", "*/", "MATCH",
             "bm25(", "rank", "' OR 1=1 --", "${jndi:x}", "<script>", "{{7*7}}", "..", "\x00"]
CONTROL = st.characters(min_codepoint=0, max_codepoint=0x1F) | st.sampled_from(
    "\x7f\u0085\u00a0\u2028\u2029\u200b\u200e\u202e\ufeff\ufffe\uffff")
text = st.one_of(
    st.text(max_size=300),                                     # any unicode
    st.text(CONTROL, max_size=60),                             # control characters
    st.text(st.characters(categories=["Cs", "Co", "Cn"]), max_size=20),  # surrogates, unassigned
    st.lists(st.sampled_from(OPERATORS) | st.text(max_size=6), max_size=25).map(" ".join),
    st.builds(lambda unit, n: unit * n, st.text(min_size=1, max_size=4),
              st.integers(300, 60_000)),                       # huge
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12)
bad_ids = st.one_of(
    text, st.sampled_from(["..", "../../etc/passwd", "%2e%2e%2f", "a/b", "a b", "\x00", "",
                           "x" * 129, "CURRENT", ".lock", "gen-000001", "*", "%", "'"]))


def _json(body) -> bytes:
    # ASCII escapes let lone surrogates through, as a hostile client could send them.
    return json.dumps(body).encode()


def _q(value: str) -> str:
    """Percent-encode any string, lone surrogates too (as invalid UTF-8 bytes).

    Cut to 5,000 characters (still over every limit of the API): a URL is at most 64 KiB
    for the HTTP client, and servers refuse longer request lines before the app sees them.
    """
    return quote(value[:5000].encode("utf-8", "surrogatepass"), safe="")


def _generation(index) -> str:
    return (index / "CURRENT").read_text()


def _check(response, label: str) -> None:
    """No 5xx, a readable JSON detail on every error, nothing about the server's files."""
    SENT[label] += 1
    assert response.status_code < 500, (label, response.status_code, response.text[:500])
    if response.status_code >= 400:
        detail = response.json()["detail"]
        assert isinstance(detail, str) and detail
        assert "Traceback" not in detail and "/tmp/" not in detail and ".py" not in detail


@pytest.fixture(scope="module")
def client(pipeline):
    # No keys (the writes must be reachable) and no rate limit (one client, many requests).
    app = create_app(Settings(index=pipeline.settings.index, rate_limit="0"), pipeline=pipeline)
    with TestClient(app=app, timeout=SECONDS) as c:
        yield c


def _send(client, method: str, url: str, label: str, **kwargs):
    started = time.monotonic()
    response = client.request(method, url, **kwargs)
    assert time.monotonic() - started < SECONDS, (label, url[:200])
    _check(response, label)
    return response


HOSTILE = settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM,
                   suppress_health_check=list(HealthCheck))
JSON_HEADERS = {"Content-Type": "application/json"}


@HOSTILE
@given(question=text, top_k=st.integers(-5, 60) | text, doc_ids=st.none() | st.lists(bad_ids,
                                                                                    max_size=3))
def test_ask_survives_hostile_input(client, question, top_k, doc_ids):
    before = _generation(client.app.state.qa.settings.index)
    r = _send(client, "POST", "/ask", "hypothesis POST /ask", headers=JSON_HEADERS,
              content=_json({"question": question, "top_k": top_k, "doc_ids": doc_ids}))
    if r.status_code == 200:
        body = r.json()
        assert body["answer"] is None or body["answers"][0]["citations"]
    assert _generation(client.app.state.qa.settings.index) == before


@HOSTILE
@given(q=text, k=st.integers(-5, 60).map(str) | text)
def test_search_survives_hostile_input(client, q, k):
    before = _generation(client.app.state.qa.settings.index)
    r = _send(client, "GET", f"/search?q={_q(q)}&k={_q(k)}", "hypothesis GET /search")
    if r.status_code == 200:
        assert all(p["text"] for p in r.json()["passages"])
    assert _generation(client.app.state.qa.settings.index) == before


@HOSTILE
@given(messages=st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"])
                                                | text, "content": text}), max_size=4),
       stream=st.booleans())
def test_chat_survives_hostile_input(client, messages, stream):
    before = _generation(client.app.state.qa.settings.index)
    r = _send(client, "POST", "/chat", "hypothesis POST /chat", headers=JSON_HEADERS,
              content=_json({"messages": messages, "stream": stream}))
    if r.status_code == 200 and stream:
        events = [line.split(": ", 1)[1] for line in r.text.splitlines()
                  if line.startswith("event: ")]
        assert events and events[-1] in ("done", "error"), r.text[:300]
    assert _generation(client.app.state.qa.settings.index) == before


@settings(HOSTILE, max_examples=EXAMPLES * 2)
@given(doc_id=bad_ids, method=st.sampled_from(["GET", "DELETE"]))
def test_document_routes_survive_invalid_ids(client, doc_id, method):
    index = client.app.state.qa.settings.index
    before, documents = _generation(index), client.app.state.qa.index.document_count
    r = _send(client, method, f"/documents/{_q(doc_id)}", f"hypothesis {method} /documents/{{id}}")
    # "", "/", ".." make the path /documents/ or / (dot segments are resolved): the list or
    # the page for GET, no route for DELETE.
    elsewhere = method == "GET" and r.status_code == 200 and doc_id.strip("/.") == ""
    assert elsewhere or r.status_code in (400, 404, 405), (doc_id, r.status_code)
    assert _generation(index) == before
    assert client.app.state.qa.index.document_count == documents


@HOSTILE
@given(doc_id=bad_ids | st.from_regex(r"\Afuzz-[a-z0-9]{1,8}\Z"),
       text=text.filter(lambda t: len(t) <= 4000) | st.just("Valid text about 12 apples."),
       extra=st.dictionaries(st.sampled_from(["title", "source", "url", "published", "summary",
                                              "bogus"]), json_values, max_size=3))
def test_add_document_survives_hostile_input(client, doc_id, text, extra):
    """Only a valid article changes the index, and then by exactly that document."""
    qa = client.app.state.qa
    before, documents = _generation(qa.settings.index), qa.index.document_count
    r = _send(client, "POST", "/documents?replace=true", "hypothesis POST /documents",
              headers=JSON_HEADERS, content=_json({"doc_id": doc_id, "text": text, **extra}))
    if r.status_code == 201:
        # Read and remove through the pipeline: "." and ".." are valid doc_ids that a URL
        # path cannot carry (clients resolve dot segments).
        assert qa.index.document(doc_id).text == text
        assert qa.index.document_count == documents + 1
        qa.remove_document(doc_id)
        assert qa.index.document_count == documents
    else:
        assert _generation(qa.settings.index) == before


@HOSTILE
@given(route=st.sampled_from(["/ask", "/chat", "/documents"]),
       body=st.one_of(
           st.binary(max_size=300),                               # not JSON, not UTF-8
           json_values.map(_json),                                 # JSON of the wrong shape
           st.integers(1, 200_000).map(lambda n: b"[" * n + b"]" * n),   # deeply nested
           st.integers(1, 200_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n)))
def test_post_routes_survive_any_body(client, route, body):
    qa = client.app.state.qa
    before = _generation(qa.settings.index)
    r = _send(client, "POST", route, f"hypothesis POST {route} (raw body)",
              headers=JSON_HEADERS, content=body)
    assert r.status_code >= 400
    assert _generation(qa.settings.index) == before


# -- hypothesis: the article parser -----------------------------------------------------------
lines = st.lists(st.one_of(text, st.sampled_from(
    ["0", "", "Leave a Reply", "News Hub", "\u00a0|\u00a0", "|", "Original Source: x.org",
     "123e4567-e89b-12d3-a456-426614174000"])), max_size=12)


@settings(HOSTILE, max_examples=EXAMPLES * 10)
@given(lines=lines, newline=st.sampled_from(["\n", "\r\n", "\r"]))
def test_txt_parser_returns_an_article_or_a_corpus_error(lines, newline):
    raw = newline.join(lines)
    SENT["hypothesis parse_txt"] += 1
    try:
        article = parse_txt(raw, "fuzz")
    except CorpusError as exc:
        assert str(exc)
        return
    assert article.doc_id == "fuzz" and article.text.strip()
    assert "Leave a Reply" not in article.text.split("\n\n")


@settings(HOSTILE, max_examples=EXAMPLES * 10)
@given(line=st.one_of(json_values.map(json.dumps), text,
                      st.integers(1, 100_000).map(lambda n: "[" * n + "]" * n)))
def test_jsonl_parser_returns_an_article_or_a_corpus_error(line):
    SENT["hypothesis parse_jsonl_line"] += 1
    try:
        article = parse_jsonl_line(line, "fuzz.jsonl:1")
    except CorpusError as exc:
        assert str(exc).startswith("fuzz.jsonl:1")
        return
    assert article.text.strip()


@settings(HOSTILE, max_examples=EXAMPLES * 2)
@given(data=st.binary(max_size=2000), suffix=st.sampled_from([".txt", ".jsonl"]))
def test_corpus_reader_skips_unreadable_files(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("corpus") / f"doc{suffix}"
    path.write_bytes(data)
    SENT["hypothesis iter_corpus"] += 1
    for item in iter_corpus(path.parent):
        assert isinstance(item, SkippedFile) or item.text.strip()


def test_zz_report_counts():
    """Not a check: prints how much each generator sent (run with -s for RELIABILITY.md)."""
    for label, count in sorted(SENT.items()):
        print(f"{count:6d}  {label}")
    assert sum(SENT.values()) > 0
