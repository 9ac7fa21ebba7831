"""Article parsing: every corpus shape, boilerplate removal, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexing.articles import Article, SkippedFile, iter_corpus, parse_txt
from indexing.errors import InvalidDocIdError
from tests.conftest import ARTICLES, shared_path

BOILERPLATE = ("Leave a Reply", "Original Source", "News Hub", "Your email address",
               "\u00a0|\u00a0", "aabf4b70-", "e296a77f-")


def _parsed() -> dict[str, Article]:
    return {a.doc_id: a for a in iter_corpus(ARTICLES) if isinstance(a, Article)}


def test_bundled_articles_parse_with_metadata_and_no_boilerplate():
    docs = _parsed()
    assert sorted(docs) == sorted(p.stem for p in ARTICLES.glob("*.txt"))
    for doc in docs.values():
        for junk in BOILERPLATE:
            assert junk not in doc.text, (doc.doc_id, junk)
        assert not doc.text.startswith("0\n")
        assert doc.summary and doc.summary not in doc.text
        if doc.title:
            assert doc.title not in doc.text


def test_headline_uuid_summary_source_shape():
    raw = ("A Headline About Things\n\n0\n12345678-1234-1234-1234-123456789abc\n\n"
           "The summary says what happened. It has two sentences.\n\n"
           "The body\u00a0starts here with \u201ccurly\u201d quotes.\n\nSecond paragraph.\n\n"
           "Original Source: www.example.com\n\nLeave a Reply\n\n"
           "Your email address will not be published. Required fields are marked *")
    a = parse_txt(raw, "x")
    assert a.title == "A Headline About Things"
    assert a.uuid == "12345678-1234-1234-1234-123456789abc"
    assert a.summary == "The summary says what happened. It has two sentences."
    assert a.source == "www.example.com"
    assert a.text == ("The body\u00a0starts here with \u201ccurly\u201d quotes."
                      "\n\nSecond paragraph.")


def test_no_headline_shape_takes_first_paragraph_as_summary():
    raw = ("Someone did something. Then more happened.\nThe body line one.\nBody line two.\n"
           "Original Source: www.outlet.org")
    a = parse_txt(raw, "y")
    assert a.title is None
    assert a.summary == "Someone did something. Then more happened."
    assert a.text == "The body line one.\n\nBody line two."
    assert a.source == "www.outlet.org"


def test_separator_shape_drops_repeated_headline():
    raw = ("Why Is It So?\n\nSummary sentence one. Summary two.\n\u00a0|\u00a0\nWhy Is It So?\n\n"
           "Section heading\n\n\nBody text here.\n\n\nNews Hub")
    a = parse_txt(raw, "z")
    assert a.title == "Why Is It So?"
    assert a.summary == "Summary sentence one. Summary two."
    assert a.text == "Section heading\n\nBody text here."


def test_bbc_shape_keeps_first_paragraph_in_body():
    raw = "Ad sales boost profit\n\nQuarterly profits jumped 76%.\n\nThe firm said more.\n"
    a = parse_txt(raw, "b")
    assert a.title == "Ad sales boost profit"
    assert a.summary is None
    assert a.text == "Quarterly profits jumped 76%.\n\nThe firm said more."


def test_bbc_corpus_reads_recursively_with_folder_prefixed_ids():
    root = shared_path("datasets", "bbc-news")
    items = list(iter_corpus(root))
    articles = [a for a in items if isinstance(a, Article)]
    skipped = [s for s in items if isinstance(s, SkippedFile)]
    assert len(articles) + len(skipped) == 2225
    assert len({a.doc_id for a in articles}) == len(articles)
    assert all(a.title and a.text and a.summary is None for a in articles)
    assert all(":" in a.doc_id for a in articles)
    assert all("not UTF-8" in s.reason for s in skipped)


def test_jsonl_articles(tmp_path: Path):
    f = tmp_path / "c.jsonl"
    f.write_text(
        json.dumps({"doc_id": "a-1", "title": "T", "text": "  Body kept verbatim.  ",
                    "source": "s", "url": None, "published": "2024-01-01"}) + "\n"
        + "not json\n"
        + json.dumps({"doc_id": "a-2"}) + "\n",
        encoding="utf-8",
    )
    items = list(iter_corpus(f))
    assert isinstance(items[0], Article) and items[0].text == "  Body kept verbatim.  "
    assert items[0].published == "2024-01-01"
    assert isinstance(items[1], SkippedFile) and items[1].path.endswith("c.jsonl:2")
    assert "not valid JSON" in items[1].reason
    assert isinstance(items[2], SkippedFile) and "'text' is required" in items[2].reason


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "empty"), (b"\x00\x01\x02binary", "binary"), (b"caf\xe9 au lait\n", "not UTF-8"),
     (b"Leave a Reply\n\nNews Hub\n", "no article body")],
)
def test_bad_files_are_skipped_with_reason(tmp_path: Path, content: bytes, reason: str):
    (tmp_path / "bad.txt").write_bytes(content)
    (tmp_path / "good.txt").write_text("Headline\n\nA body sentence.\n", encoding="utf-8")
    items = list(iter_corpus(tmp_path))
    skipped = [i for i in items if isinstance(i, SkippedFile)]
    assert [a.doc_id for a in items if isinstance(a, Article)] == ["good"]
    assert len(skipped) == 1 and skipped[0].path.endswith("bad.txt")
    assert reason in str(skipped[0])


def test_invalid_doc_id_is_an_error_naming_the_file(tmp_path: Path):
    (tmp_path / "bad id!.txt").write_text("Headline\n\nBody.\n", encoding="utf-8")
    with pytest.raises(InvalidDocIdError, match=r"bad id!\.txt.*invalid doc_id"):
        list(iter_corpus(tmp_path))
    f = tmp_path / "x.jsonl"
    f.write_text(json.dumps({"doc_id": "a" * 129, "text": "t"}) + "\n", encoding="utf-8")
    with pytest.raises(InvalidDocIdError, match="invalid doc_id"):
        list(iter_corpus(f))


def test_duplicate_doc_id_names_both_files(tmp_path: Path):
    (tmp_path / "dup.txt").write_text("Headline\n\nBody.\n", encoding="utf-8")
    (tmp_path / "more.jsonl").write_text(json.dumps({"doc_id": "dup", "text": "x"}) + "\n",
                                         encoding="utf-8")
    with pytest.raises(InvalidDocIdError) as err:
        list(iter_corpus(tmp_path))
    assert "dup.txt" in str(err.value) and "more.jsonl:1" in str(err.value)
