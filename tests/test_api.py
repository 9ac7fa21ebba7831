"""The HTTP API through Litestar's TestClient with the app's real lifespan."""

from __future__ import annotations

import json
import threading

import pytest
from litestar.testing import TestClient

from service.app import create_app
from service.settings import Settings


@pytest.fixture()
def client(index_copy):
    app = create_app(Settings(index=index_copy), build_if_empty=False)
    with TestClient(app=app, timeout=60) as c:
        yield c


def _texts(client, doc_ids) -> dict[str, str]:
    return {d: client.get(f"/documents/{d}").json()["text"] for d in set(doc_ids)}


def assert_citations_exact(client, body: dict) -> None:
    """Every citation's offsets reproduce its span and quote in the document text."""
    cited = [c for a in body["answers"] for c in a["citations"]]
    texts = _texts(client, [c["doc_id"] for c in cited] + [p["doc_id"] for p in body["passages"]])
    for a in body["answers"]:
        assert a["text"] == a["citations"][0]["span"]
        for c in a["citations"]:
            t = texts[c["doc_id"]]
            assert t[c["start"]:c["end"]] == c["span"]
            assert t[c["quote_start"]:c["quote_end"]] == c["quote"]
            assert c["quote_start"] <= c["start"] < c["end"] <= c["quote_end"]
    for p in body["passages"]:
        assert texts[p["doc_id"]][p["start"]:p["end"]] == p["text"]


def test_health_and_documents(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["documents"] == 5 and h["chunks"] > 5
    assert h["model"] == "all-MiniLM-L6-v2"
    docs = client.get("/documents").json()["documents"]
    assert len(docs) == 5
    for d in docs:
        assert set(d) == {"doc_id", "title", "source", "chars", "chunks"}
        full = client.get(f"/documents/{d['doc_id']}").json()
        assert set(full) == {"doc_id", "title", "source", "url", "published", "summary", "text"}
        assert len(full["text"]) == d["chars"] and "Leave a Reply" not in full["text"]
    assert client.get("/documents/does-not-exist").status_code == 404
    assert "detail" in client.get("/documents/does-not-exist").json()


def test_ask_troops_reports_conflicting_cited_counts(client):
    r = client.post("/ask", json={"question": "how many troops were reported?"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answer"] is not None and any(ch.isdigit() for ch in body["answer"])
    figures = {a["text"] for a in body["answers"] if any(ch.isdigit() for ch in a["text"])}
    assert len(figures) >= 2, body["answers"]
    assert body["conflict"] is True
    assert all(a["citations"] for a in body["answers"])
    assert set(body["timings_ms"]) >= {"retrieve", "read", "total"}
    assert_citations_exact(client, body)


@pytest.mark.parametrize("question", ["What is the boiling point of mercury?",
                                      "Who won the last Champions League final?"])
def test_off_corpus_questions_abstain(client, question):
    body = client.post("/ask", json={"question": question}).json()
    assert body["answer"] is None and body["answers"] == []
    assert 0.0 <= body["confidence"] <= 1.0


def test_doc_ids_filter_restricts_answers_and_passages(client):
    docs = [d["doc_id"] for d in client.get("/documents").json()["documents"]]
    body = client.post("/ask", json={"question": "Who did Shoigu meet?", "doc_ids": docs[:1],
                                     "top_k": 3}).json()
    assert {p["doc_id"] for p in body["passages"]} <= {docs[0]}
    assert {c["doc_id"] for a in body["answers"] for c in a["citations"]} <= {docs[0]}
    assert_citations_exact(client, body)


def test_search(client):
    r = client.get("/search", params={"q": "Kursk", "k": 3})
    assert r.status_code == 200
    body = r.json()
    assert body["query"] == "Kursk" and 1 <= len(body["passages"]) <= 3
    assert "Kursk" in body["passages"][0]["text"]
    for hostile in ['"', "*", "NEAR(", "troops AND", "-", "a:b", "((x", ")"]:
        r = client.get("/search", params={"q": hostile})
        assert r.status_code in (200, 422), (hostile, r.status_code)


@pytest.mark.parametrize(
    ("body", "status"),
    [({"question": ""}, 422), ({"question": "   "}, 422), ({"question": "x" * 2001}, 422),
     ({"question": "a", "top_k": 0}, 422), ({"question": "a", "top_k": 51}, 422),
     ({}, 400), ({"question": "a", "extra": 1}, 400), ({"question": 5}, 400),
     ({"question": "a", "top_k": "five"}, 400), ({"question": "a", "doc_ids": ["nope"]}, 404)],
)
def test_ask_bad_input_is_4xx_with_detail(client, body, status):
    r = client.post("/ask", json=body)
    assert r.status_code == status, r.text
    assert isinstance(r.json()["detail"], str) and r.json()["detail"]


def test_malformed_and_oversized_bodies(client):
    r = client.post("/ask", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "detail" in r.json()
    big = json.dumps({"question": "a" * 1_100_000})
    r = client.post("/ask", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "detail" in r.json()


@pytest.mark.parametrize("params", [{"q": ""}, {"q": "x", "k": 0}, {"q": "x", "k": 99}, {}])
def test_search_bad_input(client, params):
    r = client.get("/search", params=params)
    assert 400 <= r.status_code < 500 and "detail" in r.json()


def test_add_and_delete_documents(client):
    doc = {"doc_id": "new-1", "title": "Orchard report", "text":
           "The orchard produced 4,500 apples in its best season. Farmers credited the rain.",
           "source": "example.org"}
    r = client.post("/documents", json=doc)
    assert r.status_code == 201 and r.json()["doc_id"] == "new-1" and r.json()["chunks"] >= 1
    assert client.post("/documents", json=doc).status_code == 409
    assert client.post("/documents?replace=true", json=doc).status_code == 201
    assert client.get("/health").json()["documents"] == 6
    body = client.post("/ask", json={"question": "How many apples did the orchard produce?"}).json()
    assert body["answer"] is not None and "4,500" in body["answer"]
    assert_citations_exact(client, body)
    assert client.delete("/documents/new-1").status_code == 204
    assert client.delete("/documents/new-1").status_code == 404
    assert client.get("/health").json()["documents"] == 5


@pytest.mark.parametrize("doc", [{"doc_id": "bad id", "text": "x"}, {"doc_id": "a" * 129, "text": "x"},
                                 {"doc_id": "ok", "text": ""}, {"doc_id": "ok"}, {"text": "x"},
                                 {"doc_id": "ok", "text": "x", "bogus": 1}])
def test_add_document_bad_input(client, doc):
    r = client.post("/documents", json=doc)
    assert 400 <= r.status_code < 500 and r.json()["detail"], r.text
    assert client.get("/health").json()["documents"] == 5


def test_concurrent_reads_during_writes_see_whole_documents(client):
    versions = [f"The orchard produced {i},000 apples this year." for i in (1, 2, 3)]
    stable = _texts(client, [d["doc_id"] for d in client.get("/documents").json()["documents"]])
    errors: list[str] = []

    def consistent(c: dict) -> bool:
        candidates = versions if c["doc_id"] == "apples" else [stable[c["doc_id"]]]
        return any(t[c["start"]:c["end"]] == c["span"] and t[c["quote_start"]:c["quote_end"]]
                   == c["quote"] for t in candidates)

    def reader():
        for _ in range(6):
            r = client.post("/ask", json={"question": "How many apples were produced?"})
            if r.status_code != 200:
                errors.append(f"status {r.status_code}")
                continue
            errors.extend(repr(c) for a in r.json()["answers"] for c in a["citations"]
                          if not consistent(c))

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for i, text in enumerate(versions):
        doc = {"doc_id": "apples", "text": text}
        assert client.post("/documents?replace=true", json=doc).status_code == 201, i
    assert client.delete("/documents/apples").status_code == 204
    for t in threads:
        t.join()
    assert not errors
    assert client.get("/health").json()["documents"] == 5


def test_openapi_schema_served(client):
    r = client.get("/schema/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert {"/ask", "/search", "/documents", "/documents/{doc_id}", "/health"} <= set(paths)


@pytest.mark.parametrize(("route", "body", "needle"), [
    ("/ask", {"question": "who met Kim?", "top_k": "5"}, "Expected `int`, got `str`"),
    ("/ask", {"question": "who met Kim?", "top_k": True}, "Expected `int`, got `bool`"),
    ("/ask", {"question": 5}, "Expected `str`, got `int`"),
    ("/chat", {"messages": [{"role": "user", "content": "who met Kim?"}], "stream": 0},
     "Expected `bool`, got `int`"),
    ("/documents", 0, "Expected `object`, got `int`"),
    ("/documents", {"doc_id": "x", "text": "Some text.", "title": 1}, "title"),
])
def test_bodies_have_exactly_the_documented_types(client, route, body, needle):
    """The decoder's lenient conversions ("5" -> 5, 0 -> false) would accept what the
    OpenAPI document calls invalid."""
    r = client.post(route, json=body)
    assert r.status_code == 400 and needle in r.json()["detail"], r.text
    assert client.get("/health").json()["documents"] == 5


def test_integral_numbers_are_integers(client):
    # JSON Schema counts 5.0 as an integer, so the document admits it: so does the server.
    r = client.post("/ask", json={"question": "how many troops were reported?", "top_k": 5.0})
    assert r.status_code == 200 and len(r.json()["passages"]) <= 5


def test_syndicated_copy_is_one_passage_but_both_articles_support(client):
    original = client.get("/documents").json()["documents"][0]["doc_id"]
    text = client.get(f"/documents/{original}").json()["text"]
    r = client.post("/documents", json={"doc_id": "syndicated-copy", "text": text,
                                        "source": "copy.example"})
    assert r.status_code == 201
    first_sentence = text.split(". ")[0]
    body = client.get("/search", params={"q": first_sentence, "k": 5}).json()
    top = body["passages"][0]
    assert {top["doc_id"], *top["also_in"]} >= {original, "syndicated-copy"}
    shown = [(p["doc_id"], p["text"]) for p in body["passages"]]
    assert len({t for _, t in shown}) == len(shown), "a duplicate passage was shown twice"


def test_min_confidence_moves_the_abstention_cut(indexer, built_index):
    """An operator's ARTICLE_QA_MIN_CONFIDENCE replaces the reader model's cut, in /ask too."""
    from service.qa import QAPipeline

    def ask(**settings):
        pipeline = QAPipeline(Settings(index=built_index, **settings), indexer=indexer,
                              answer_cache=0)
        with TestClient(app=create_app(pipeline.settings, pipeline=pipeline), timeout=60) as c:
            r = c.post("/ask", json={"question": "how many troops were reported?"})
        assert r.status_code == 200, r.text
        return r.json()

    default = ask()
    assert default["answer"] is not None
    strict = ask(min_confidence=1.0)
    assert strict["answer"] is None and strict["answers"] == [] and not strict["conflict"]
    assert strict["confidence"] == pytest.approx(default["confidence"], abs=1e-3)
    loose = ask(min_confidence=0.0)
    assert loose["answer"] == default["answer"]
    # A lower cut only adds rival values, never drops one.
    assert {a["text"] for a in default["answers"]} <= {a["text"] for a in loose["answers"]}
    just_above = ask(min_confidence=min(1.0, default["confidence"] + 0.01))
    assert just_above["answer"] is None


def test_min_confidence_setting_is_validated(monkeypatch):
    monkeypatch.setenv("ARTICLE_QA_MIN_CONFIDENCE", "0.4")
    assert Settings().min_confidence == 0.4
    monkeypatch.setenv("ARTICLE_QA_MIN_CONFIDENCE", "")
    assert Settings().min_confidence is None
    for bad, message in (("abc", "is not a number"), ("1.5", "outside [0, 1]"),
                         ("nan", "outside [0, 1]"), ("-0.1", "outside [0, 1]")):
        monkeypatch.setenv("ARTICLE_QA_MIN_CONFIDENCE", bad)
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            Settings()
