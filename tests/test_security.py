"""Access control, rate limits, body limits, response headers and error text (service/security.py)."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from litestar.testing import TestClient

from indexing.errors import CorruptIndexError
from service import security
from service.app import create_app
from service.cli import main
from service.qa import QAPipeline
from service.schemas import MAX_DOCUMENT_CHARS
from service.security import CONTENT_SECURITY_POLICY, RateLimit, RateLimiter, is_loopback, redact
from service.settings import Settings

WRITE_KEY = "write-key-\u00e9"  # non-ASCII on purpose: compared as bytes
READ_KEY = "read-key"
DOC = {"doc_id": "sec-1", "text": "The orchard produced 4,500 apples in its best season."}


@pytest.fixture(scope="module")
def pipeline(indexer, built_index, tmp_path_factory):
    import shutil

    index = tmp_path_factory.mktemp("security") / "index"
    shutil.copytree(built_index, index)
    return QAPipeline(Settings(index=index), indexer=indexer)


def _h(name: str, value: str) -> dict[str, bytes]:
    """A header as a client sends it: UTF-8 bytes."""
    return {name: value.encode()}


def _client(pipeline, **settings):
    app = create_app(Settings(index=pipeline.settings.index, **settings), pipeline=pipeline)
    return TestClient(app=app, timeout=60)


# -- API keys ---------------------------------------------------------------------------------
def test_write_routes_need_the_key_when_one_is_set(pipeline):
    with _client(pipeline, api_key=WRITE_KEY) as c:
        r = c.post("/documents", json=DOC)
        assert r.status_code == 401 and "API key" in r.json()["detail"]
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert c.delete("/documents/sec-1").status_code == 401
        for headers in (_h("Authorization", "Bearer wrong"), _h("X-API-Key", "wrong"),
                        _h("Authorization", f"Basic {WRITE_KEY}"), _h("X-API-Key", WRITE_KEY[:-1]),
                        _h("Authorization", f"Bearer {WRITE_KEY} x")):
            r = c.post("/documents", json=DOC, headers=headers)
            assert r.status_code in (401, 403) and r.json()["detail"], headers
        assert c.post("/documents", json=DOC, headers=_h("X-API-Key", "wrong")).status_code == 403
        assert c.get("/health").json()["documents"] == 5  # nothing was written
        r = c.post("/documents", json=DOC, headers=_h("Authorization", f"Bearer {WRITE_KEY}"))
        assert r.status_code == 201, r.text
        r = c.delete("/documents/sec-1", headers=_h("X-API-Key", WRITE_KEY))
        assert r.status_code == 204
        # Reads stay open without a read key.
        assert c.get("/documents").status_code == 200
        assert c.post("/ask", json={"question": "how many apples?"}).status_code == 200


def test_read_key_guards_reading_routes_but_not_health_or_page(pipeline):
    with _client(pipeline, api_key=WRITE_KEY, read_api_key=READ_KEY) as c:
        for method, url, body in [("GET", "/documents", None), ("GET", "/search?q=Kursk", None),
                                  ("POST", "/ask", {"question": "Who met Kim?"}),
                                  ("POST", "/chat", {"messages": [{"role": "user",
                                                                   "content": "Who met Kim?"}]}),
                                  ("GET", "/documents/x", None)]:
            assert c.request(method, url, json=body).status_code == 401, url
            assert c.request(method, url, json=body,
                             headers={"X-API-Key": "nope"}).status_code == 403, url
            for key in (READ_KEY, WRITE_KEY):  # the write key reads too
                r = c.request(method, url, json=body, headers=_h("X-API-Key", key))
                assert r.status_code in (200, 404), (url, r.status_code)
        # The read key does not open the write routes.
        r = c.post("/documents", json=DOC, headers={"Authorization": f"Bearer {READ_KEY}"})
        assert r.status_code == 403
        assert c.get("/health").status_code == 200 and c.get("/").status_code == 200


def test_openapi_declares_keys_only_where_enforced(pipeline):
    def doc(**settings):
        with _client(pipeline, **settings) as c:
            return c.get("/schema/openapi.json").json()

    open_doc = doc()
    assert "securitySchemes" not in open_doc.get("components", {})
    assert all("security" not in op for ops in open_doc["paths"].values() for op in ops.values())
    locked = doc(api_key=WRITE_KEY)
    assert set(locked["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    secured = {(m.upper(), p) for p, ops in locked["paths"].items() for m, op in ops.items()
               if op.get("security")}
    assert secured == {("POST", "/documents"), ("DELETE", "/documents/{doc_id}")}


def test_keys_are_compared_in_constant_time(monkeypatch):
    calls = []
    real = security.hmac.compare_digest
    monkeypatch.setattr(security.hmac, "compare_digest",
                        lambda a, b: calls.append((a, b)) or real(a, b))
    rule = security.AccessRule("write", ("secret", "other"))
    assert security.key_matches("secret", "secret") and not security.key_matches("s", "secret")
    assert len(calls) == 2 and all(isinstance(a, bytes) for a, _ in calls)

    class Conn:
        headers = {"x-api-key": "wrong"}

    with pytest.raises(Exception, match="not valid"):
        rule.check(Conn())
    assert len(calls) == 4  # every key is compared, not just until the first mismatch


# -- serve and the bind address ---------------------------------------------------------------
@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("localhost", True), ("::1", True),
    ("[::1]", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False),
    ("example.org", False)])
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_serve_refuses_open_writes_on_a_public_address(monkeypatch, tmp_path):
    monkeypatch.delenv("ARTICLE_QA_API_KEY", raising=False)
    monkeypatch.delenv("ARTICLE_QA_ALLOW_OPEN_WRITES", raising=False)
    served = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: served.append(kw))
    monkeypatch.setattr("service.qa.QAPipeline.load", staticmethod(lambda s, **kw: _Fake()))
    monkeypatch.setattr("service.cli._verify_index", lambda path: None)
    runner = CliRunner()
    args = ["serve", "--index", str(tmp_path), "--host", "0.0.0.0", "--port", "8765"]

    result = runner.invoke(main, args)
    assert result.exit_code == 2 and "refusing to serve on 0.0.0.0" in result.output
    assert "ARTICLE_QA_API_KEY" in result.output and "--allow-open-writes" in result.output
    assert not served

    assert runner.invoke(main, [*args, "--allow-open-writes"]).exit_code == 0
    monkeypatch.setenv("ARTICLE_QA_API_KEY", "k")
    assert runner.invoke(main, args).exit_code == 0
    monkeypatch.delenv("ARTICLE_QA_API_KEY")
    assert runner.invoke(main, [*args[:3], "--host", "127.0.0.1"]).exit_code == 0
    assert [kw["host"] for kw in served] == ["0.0.0.0", "0.0.0.0", "127.0.0.1"]

    monkeypatch.setenv("ARTICLE_QA_RATE_LIMIT", "lots")
    result = runner.invoke(main, [*args[:3], "--host", "127.0.0.1"])
    assert result.exit_code == 1 and "600/minute" in result.output


class _Fake:
    class index:  # stands in for the pipeline's index attribute
        document_count = 0


# -- rate limits ------------------------------------------------------------------------------
class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_token_bucket_allows_bursts_then_the_sustained_rate():
    clock = Clock()
    limiter = RateLimiter(RateLimit.parse("60/minute", burst=3), clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0, 0, 0]
    wait = limiter.take("a")
    assert wait == pytest.approx(1.0)  # one token a second
    assert limiter.take("b") == 0  # per client
    clock.now += 1.0
    assert limiter.take("a") == 0 and limiter.take("a") > 0
    clock.now += 100  # refills up to the burst, no further
    assert [limiter.take("a") for _ in range(4)][-1] > 0


def test_rate_limit_specs():
    assert RateLimit.parse("600/minute", 0) == RateLimit(10.0, 600)
    assert RateLimit.parse("5/s", 2) == RateLimit(5.0, 2)
    assert RateLimit.parse("3600/hour", 10).per_second == 1.0
    for off in ("0", "off", "0/minute"):
        assert not RateLimit.parse(off).enabled
    for bad in ("lots", "10/fortnight", "-1/minute", "1/"):
        with pytest.raises(ValueError, match="600/minute"):
            RateLimit.parse(bad)


def test_bucket_table_is_bounded():
    limiter = RateLimiter(RateLimit.parse("1/minute", 1), max_clients=100)
    for i in range(1000):
        limiter.take(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._buckets) == 100


def test_rate_limited_routes_answer_429_with_retry_after(pipeline):
    with _client(pipeline, rate_limit="2/minute", rate_burst=2) as c:
        assert c.get("/search", params={"q": "Kursk"}).status_code == 200
        assert c.post("/ask", json={"question": "Who met Kim?"}).status_code == 200
        r = c.get("/search", params={"q": "Kursk"})
        assert r.status_code == 429 and "too many requests" in r.json()["detail"]
        assert int(r.headers["retry-after"]) == 30
        body = {"messages": [{"role": "user", "content": "Who met Kim?"}]}
        assert c.post("/chat", json=body).status_code == 429
        # Unlimited routes are not counted.
        assert all(c.get("/health").status_code == 200 for _ in range(5))
        assert c.get("/documents").status_code == 200
    with _client(pipeline, rate_limit="0") as c:
        assert all(c.get("/search", params={"q": "x"}).status_code == 200 for _ in range(30))


def test_rate_limit_is_opt_in(monkeypatch):
    monkeypatch.delenv("ARTICLE_QA_RATE_LIMIT", raising=False)
    monkeypatch.delenv("ARTICLE_QA_RATE_BURST", raising=False)
    assert not RateLimit.parse(Settings().rate_limit, Settings().rate_burst).enabled
    monkeypatch.setenv("ARTICLE_QA_RATE_LIMIT", "600/minute")
    assert RateLimit.parse(Settings().rate_limit, Settings().rate_burst) == RateLimit(10.0, 60)


# -- bodies -----------------------------------------------------------------------------------
def test_body_limits(pipeline):
    with _client(pipeline, max_body_bytes=10_000, rate_limit="0") as c:
        big = b'{"question": "' + b"a" * 20_000 + b'"}'
        headers = {"Content-Type": "application/json"}
        r = c.post("/ask", content=big, headers=headers)
        assert r.status_code == 413 and r.json()["detail"]
        # Without a Content-Length (chunked), the limit holds while reading.
        r = c.post("/ask", content=(big[i:i + 1000] for i in range(0, len(big), 1000)),
                   headers=headers)
        assert r.status_code == 413
    with _client(pipeline, rate_limit="0") as c:
        r = c.post("/documents", json={"doc_id": "long", "text": "word " * (MAX_DOCUMENT_CHARS // 5 + 1)})
        assert r.status_code == 400 and str(MAX_DOCUMENT_CHARS) in r.json()["detail"]
        assert c.get("/health").json()["documents"] == 5


# -- headers ----------------------------------------------------------------------------------
def test_security_headers_on_page_assets_api_and_errors(pipeline):
    with _client(pipeline) as c:
        for url in ["/", "/static/chat.js", "/health", "/documents/nope", "/no-such-route"]:
            r = c.get(url)
            assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, url
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["referrer-policy"] == "no-referrer"
        assert "content-security-policy" not in c.get("/schema/swagger").headers
        assert c.get("/schema/swagger").headers["x-content-type-options"] == "nosniff"


def test_page_needs_nothing_the_policy_forbids():
    """No inline script, style or handler in the page: `script-src 'self'` and `style-src
    'self'` would block them (tests/test_browser.py drives the page under the policy)."""
    from service.app import STATIC

    html = (STATIC / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html, re.IGNORECASE)
    js = (STATIC / "chat.js").read_text()
    assert not re.search(r"\beval\(|new Function|setAttribute\(\s*['\"](style|on)", js)
    assert not re.search(r"https?://", js)  # connect-src 'self'


# -- error text -------------------------------------------------------------------------------
def test_error_bodies_carry_no_paths_or_tracebacks(pipeline, monkeypatch):
    index = str(pipeline.settings.index)

    def broken(*_, **__):
        raise RuntimeError(f"boom in {index}/gen-000001/store.sqlite\nTraceback (most recent)")

    def corrupt(*_, **__):
        raise CorruptIndexError(f"index {index}: cannot read vectors.faiss; rebuild it with "
                                f"`article-qa index build --index {index} --rebuild`")

    with _client(pipeline, rate_limit="0") as c:
        monkeypatch.setattr(pipeline, "search", broken)
        r = c.get("/search", params={"q": "x"})
        assert r.status_code == 500
        assert r.json()["detail"] == "internal error; the server log has the details"
        monkeypatch.setattr(pipeline, "search", corrupt)
        r = c.get("/search", params={"q": "x"})
        assert r.status_code == 503 and "rebuild" in r.json()["detail"]
        assert index not in r.text and "<path>" in r.json()["detail"]


@pytest.mark.parametrize(("text", "expected"), [
    ("index /tmp/x/index: cannot read", "index <path>: cannot read"),
    ("see `article-qa index build --index /srv/data/idx --rebuild`",
     "see `article-qa index build --index <path> --rebuild`"),
    ("GET /documents lists them; POST /documents/x", "GET /documents lists them; POST /documents/x"),
    ("no document 'a/b' and 1/2 and http://x.org/a/b", "no document 'a/b' and 1/2 and http://x.org/a/b"),
    ("in ~/articles/x.txt", "in <path>"),
    ("failed\nTraceback (most recent call last):\n  File \"/x/y.py\"", "failed"),
])
def test_redact(text, expected):
    assert redact(text) == expected
