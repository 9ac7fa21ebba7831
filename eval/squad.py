"""Import a SQuAD v1.1 or v2.0 JSON file as a corpus plus a gold set.

SQuAD gives questions on *paragraphs*; the service answers over *documents*.
Each SQuAD article becomes one document whose text is its paragraphs joined by
a blank line, so every answer offset is shifted by its paragraph's position in
that text. Three files are written to the output directory:

* ``corpus.jsonl`` — the documents, in the corpus JSONL format of DESIGN.md;
* ``gold.jsonl`` — the questions, in the format :mod:`eval.gold` reads, and the
  same questions split in two halves by a hash of their id, ``gold-dev.jsonl`` (to
  tune on) and ``gold-test.jsonl`` (to report on): the split `squad_split` makes;
* ``answer_offsets.jsonl`` — ``{"id", "doc_id", "answer", "start", "end"}`` per
  distinct gold answer occurrence, every one verified against the text.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from eval.gold import question_type

PARAGRAPH_SEPARATOR = "\n\n"

_DOC_ID_INVALID = re.compile(r"[^A-Za-z0-9._:-]+")
_DOC_ID_MAX = 128


class SquadFormatError(ValueError):
    """A file that is not SQuAD JSON; the message says where and what is wrong."""


@dataclass(frozen=True, slots=True)
class OffsetMismatch:
    """A gold answer whose ``answer_start`` does not point at its text."""

    id: str
    """Question id."""
    answer: str
    """The gold answer text."""
    given_start: int
    """``answer_start`` as the file gives it (paragraph offset)."""
    repaired_start: int | None
    """Document offset of the nearest occurrence of the text in the same
    paragraph, used instead; None when the text is not in the paragraph at all
    (no offset is written for it)."""


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What :func:`import_squad` read and wrote."""

    source: Path
    version: str
    """The file's ``version`` field, or "v2.0"/"v1.1" inferred when it has none."""
    documents: int
    questions: int
    answerable: int
    unanswerable: int
    answer_offsets: int
    """Lines written to answer_offsets.jsonl."""
    mismatches: tuple[OffsetMismatch, ...]
    corpus_path: Path
    gold_path: Path
    offsets_path: Path
    split_paths: tuple[Path, Path] = ()
    """gold-dev.jsonl and gold-test.jsonl."""


def squad_split(question_id: str) -> str:
    """Deterministic half of a question: "dev" when sha1(id)'s first hex digit is < 8, else
    "test". `eval.train_reader` fits the reader on the dev half only."""
    return "dev" if int(hashlib.sha1(question_id.encode()).hexdigest()[0], 16) < 8 else "test"


def doc_id_from_title(title: str, taken: set[str]) -> str:
    """Return a doc_id for ``title``: 1-128 characters of [A-Za-z0-9._:-], not in ``taken``.

    Accents are folded ("Beyoncé" -> "Beyonce"), other characters become "_",
    and a clash gets a "-2", "-3", ... suffix. The id is added to ``taken``.
    """
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    base = _DOC_ID_INVALID.sub("_", ascii_title).strip("_")[:_DOC_ID_MAX] or "article"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        suffix = f"-{n}"
        candidate = base[: _DOC_ID_MAX - len(suffix)] + suffix
    taken.add(candidate)
    return candidate


def _expect(value: object, kind: type | tuple[type, ...], where: str, source: Path) -> None:
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise SquadFormatError(
            f"{source}: {where} should be {names}, got {type(value).__name__}; "
            "is this a SQuAD v1.1/v2.0 file?"
        )


def _read_json(source: Path) -> dict:
    try:
        with source.open(encoding="utf-8-sig") as handle:
            payload = json.load(handle)
    except UnicodeDecodeError as exc:
        raise SquadFormatError(
            f"{source}: not UTF-8 text ({exc.reason}); expected SQuAD JSON"
        ) from None
    except json.JSONDecodeError as exc:
        hint = " (a JSONL file? SQuAD is one JSON object)" if exc.msg == "Extra data" else ""
        raise SquadFormatError(
            f"{source}: not JSON{hint}: {exc.msg} at line {exc.lineno} column {exc.colno}; "
            "expected a SQuAD v1.1/v2.0 file such as dev-v2.0.json"
        ) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise SquadFormatError(
            f"{source}: not a SQuAD file: expected a JSON object with a 'data' list of "
            "articles, each with 'title' and 'paragraphs'"
        )
    if not payload["data"]:
        raise SquadFormatError(f"{source}: the 'data' list is empty; there is nothing to import")
    return payload


def _nearest(context: str, answer: str, start: int) -> int | None:
    best: int | None = None
    found = context.find(answer)
    while found != -1:
        if best is None or abs(found - start) < abs(best - start):
            best = found
        found = context.find(answer, found + 1)
    return best


def _write_jsonl(path: Path, records: Iterable[dict]) -> None:
    # Write aside and rename, so a failed import never leaves half a file behind.
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(partial, path)


def import_squad(path: str | Path, out_dir: str | Path) -> ImportSummary:
    """Convert a SQuAD v1.1/v2.0 file into corpus.jsonl, gold.jsonl and answer_offsets.jsonl.

    One document per SQuAD article; each context is kept verbatim. Raises
    SquadFormatError (a ValueError) when the file is not SQuAD JSON; answers
    whose ``answer_start`` is wrong are repaired or skipped and listed in the
    summary's ``mismatches``.
    """
    source = Path(path)
    out = Path(out_dir)
    payload = _read_json(source)

    documents: list[dict] = []
    gold: list[dict] = []
    offsets: list[dict] = []
    mismatches: list[OffsetMismatch] = []
    taken_doc_ids: set[str] = set()
    seen_qids: set[str] = set()
    saw_impossible_flag = False

    for a_index, article in enumerate(payload["data"]):
        where = f"data[{a_index}]"
        _expect(article, dict, where, source)
        title = article.get("title") or f"article-{a_index}"
        _expect(title, str, f"{where}.title", source)
        paragraphs = article.get("paragraphs")
        _expect(paragraphs, list, f"{where}.paragraphs", source)
        doc_id = doc_id_from_title(title, taken_doc_ids)

        contexts: list[str] = []
        position = 0  # offset of the current paragraph in the document text
        for p_index, paragraph in enumerate(paragraphs):
            p_where = f"{where}.paragraphs[{p_index}]"
            _expect(paragraph, dict, p_where, source)
            context = paragraph.get("context")
            _expect(context, str, f"{p_where}.context", source)
            qas = paragraph.get("qas", [])
            _expect(qas, list, f"{p_where}.qas", source)
            for q_index, qa in enumerate(qas):
                q_where = f"{p_where}.qas[{q_index}]"
                _expect(qa, dict, q_where, source)
                qid, question = qa.get("id"), qa.get("question")
                _expect(qid, str, f"{q_where}.id", source)
                _expect(question, str, f"{q_where}.question", source)
                if qid in seen_qids:
                    raise SquadFormatError(f"{source}: {q_where}: duplicate question id {qid!r}")
                seen_qids.add(qid)
                saw_impossible_flag |= "is_impossible" in qa
                raw_answers = [] if qa.get("is_impossible") else qa.get("answers", [])
                _expect(raw_answers, list, f"{q_where}.answers", source)

                texts: list[str] = []
                written: set[tuple[str, int]] = set()
                for n, answer in enumerate(raw_answers):
                    a_where = f"{q_where}.answers[{n}]"
                    _expect(answer, dict, a_where, source)
                    text, start = answer.get("text"), answer.get("answer_start")
                    _expect(text, str, f"{a_where}.text", source)
                    _expect(start, int, f"{a_where}.answer_start", source)
                    if text not in texts:
                        texts.append(text)
                    if context[start : start + len(text)] == text:
                        doc_start: int | None = position + start
                    else:
                        local = _nearest(context, text, start)
                        doc_start = None if local is None else position + local
                        mismatches.append(OffsetMismatch(qid, text, start, doc_start))
                    if doc_start is not None and (text, doc_start) not in written:
                        written.add((text, doc_start))
                        offsets.append(
                            {
                                "id": qid,
                                "doc_id": doc_id,
                                "answer": text,
                                "start": doc_start,
                                "end": doc_start + len(text),
                            }
                        )
                gold.append(
                    {
                        "id": qid,
                        "question": question,
                        "answers": texts,
                        "doc_ids": [doc_id] if texts else [],
                        "type": question_type(question, answerable=bool(texts)),
                    }
                )
            contexts.append(context)
            position += len(context) + len(PARAGRAPH_SEPARATOR)

        documents.append(
            {
                "doc_id": doc_id,
                "title": title.replace("_", " "),
                "text": PARAGRAPH_SEPARATOR.join(contexts),
                "source": "en.wikipedia.org",
                "url": "https://en.wikipedia.org/wiki/" + quote(title, safe="_()',-.:"),
                "published": None,
            }
        )

    if not gold:
        raise SquadFormatError(f"{source}: no questions found in any paragraph")

    # Re-check every offset against the text actually written: the contract
    # consumers rely on is text[start:end] == answer, with no exceptions.
    texts_by_id = {d["doc_id"]: d["text"] for d in documents}
    for record in offsets:
        assert texts_by_id[record["doc_id"]][record["start"] : record["end"]] == record["answer"]

    out.mkdir(parents=True, exist_ok=True)
    corpus_path, gold_path, offsets_path = (
        out / "corpus.jsonl",
        out / "gold.jsonl",
        out / "answer_offsets.jsonl",
    )
    _write_jsonl(corpus_path, documents)
    _write_jsonl(gold_path, gold)
    _write_jsonl(offsets_path, offsets)
    split_paths = (out / "gold-dev.jsonl", out / "gold-test.jsonl")
    for half, split_path in zip(("dev", "test"), split_paths):
        _write_jsonl(split_path, (q for q in gold if squad_split(q["id"]) == half))

    unanswerable = sum(1 for q in gold if not q["answers"])
    version = payload.get("version")
    if not isinstance(version, str):
        version = "v2.0" if saw_impossible_flag else "v1.1"
    return ImportSummary(
        source=source,
        version=version,
        documents=len(documents),
        questions=len(gold),
        answerable=len(gold) - unanswerable,
        unanswerable=unanswerable,
        answer_offsets=len(offsets),
        mismatches=tuple(mismatches),
        corpus_path=corpus_path,
        gold_path=gold_path,
        offsets_path=offsets_path,
        split_paths=split_paths,
    )


def write_open_corpus(corpus: Path, distractors: Path, count: int, out: Path) -> int:
    """`corpus` (JSONL) plus `count` articles of `distractors` as one JSONL corpus at `out`:
    an open-retrieval set, where the answering articles must first be found among many.
    The distractors are the first `count` by a hash of their doc_id (a fixed, topic-mixed
    choice); returns how many were added."""
    from indexing.articles import SkippedFile, iter_corpus

    taken = {json.loads(line)["doc_id"] for line in corpus.read_text().splitlines() if line}
    articles = [a for a in iter_corpus(distractors)
                if not isinstance(a, SkippedFile) and a.doc_id not in taken]
    articles.sort(key=lambda a: hashlib.sha1(a.doc_id.encode()).hexdigest())
    chosen = articles[:count]
    lines = corpus.read_text().splitlines()
    for a in chosen:
        lines.append(json.dumps({"doc_id": a.doc_id, "title": a.title, "text": a.text,
                                 "source": a.source, "url": a.url, "published": a.published},
                                ensure_ascii=False))
    out.write_text("\n".join(line for line in lines if line) + "\n", encoding="utf-8")
    return len(chosen)
