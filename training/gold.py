"""Training examples from a labelled gold set, read the way the service reads.

Each question is retrieved over its index exactly as `QAPipeline.retrieve` does, and the
windows `service.reader.select_windows` would read become examples: a window holding a
gold answer is answerable at that place, every other window is a no-answer example.
So the few real questions also teach what the reader meets at query time: windows that
look relevant and do not answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from eval.gold import GoldQuestion
from service.encoding import WindowEncoder
from service.reader import WINDOWS, Window, select_windows
from training.synthetic import Example


class RetrievalOnly:
    """Stands in for the reader in a pipeline used only to retrieve (before a model exists)."""

    threshold = 1.0

    def read(self, *args, **kwargs) -> list:
        return []


def read_offsets(path: Path | None) -> dict[str, list[tuple[str, int, int]]]:
    """answer_offsets.jsonl (from `eval import-squad`): question id -> (doc_id, start, end)."""
    out: dict[str, list[tuple[str, int, int]]] = {}
    if path is None:
        return out
    for line in Path(path).read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            out.setdefault(row["id"], []).append((row["doc_id"], row["start"], row["end"]))
    return out


def _located(window: Window, evidence, places: Sequence[tuple[str, int, int]]
             ) -> tuple[int, int] | None:
    """A gold answer's known place inside the window, as passage offsets."""
    for j, k in enumerate(window.sentences):
        ev = evidence[k]
        for doc_id, start, end in places:
            if doc_id == ev.doc_id and ev.start <= start and end <= ev.end:
                return window.starts[j] + start - ev.start, end - start
    return None


def _found(window: Window, answers: Sequence[str]) -> tuple[int, int] | None:
    """The first gold answer (in the gold set's order) that the window's text states."""
    lowered = window.passage.lower()
    for answer in answers:
        at = window.passage.find(answer)
        if at < 0:
            at = lowered.find(answer.lower())
        if at >= 0:
            return at, len(answer)
    return None


def gold_examples(pipeline, questions: Iterable[GoldQuestion], encoder: WindowEncoder,
                  offsets: dict[str, list[tuple[str, int, int]]] | None = None,
                  windows: int = WINDOWS) -> list[Example]:
    """Every window the reader would read for each question, labelled from the gold set.
    With `offsets` (SQuAD), an answer counts only at its labelled place."""
    offsets = offsets or {}
    out = []
    for gold in questions:
        retrieved = pipeline.retrieve(gold.question)
        q_ids = encoder.question_ids(gold.question)
        for w in select_windows(encoder, gold.question, retrieved.question_vector,
                                retrieved.evidence, q_ids, windows):
            where = None
            if gold.answerable:
                where = (_located(w, retrieved.evidence, offsets[gold.id]) if gold.id in offsets
                         else _found(w, gold.answers))
            start, length = where if where else (-1, 0)
            digest = hashlib.sha1(f"{gold.id}\n{w.passage}".encode()).hexdigest()[:12]
            out.append(Example(f"gold-{digest}", gold.question, w.passage,
                               w.passage[start:start + length] if where else "", start,
                               "gold", gold.type, retrieved.evidence[w.sentences[0]].doc_id))
    return out
