"""Question + passage -> wordpiece ids, and start/end logits -> character spans.

Training and reading share this module, so the reader sees windows exactly as it was
trained on them: `[CLS] question [SEP] passage [SEP]`, the question cut to
`MAX_QUESTION_TOKENS`, the passage to what is left of `max_len`. Every passage
wordpiece keeps its character offsets into the passage (the fast tokenizer's offset
mapping), so a predicted span maps back to the exact characters it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_QUESTION_TOKENS = 40
MAX_ANSWER_TOKENS = 30  # wordpieces; a longer span is never an answer


@dataclass(frozen=True, slots=True)
class Encoded:
    """One window: ids for the model and, per wordpiece, its passage character offsets.

    `offsets[k]` is (start, end) in the passage for passage wordpieces and (-1, -1) for
    [CLS], the question and separators; `passage_start` is where the window's passage
    text begins in the passage given to `encode` (a window may cut a long passage).
    """

    input_ids: np.ndarray  # int64[n]
    type_ids: np.ndarray  # int64[n]
    offsets: np.ndarray  # int32[n, 2]


def load_tokenizer(path: Path):
    """The fast WordPiece tokenizer saved beside the model (tokenizer.json)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.no_truncation()
    tok.no_padding()
    return tok


class WindowEncoder:
    """Encodes (question, passage) pairs for the span model."""

    def __init__(self, tokenizer, max_len: int = 192):
        self.tok = tokenizer
        self.max_len = max_len
        self.cls = tokenizer.token_to_id("[CLS]")
        self.sep = tokenizer.token_to_id("[SEP]")

    def question_ids(self, question: str) -> list[int]:
        return self.tok.encode(question, add_special_tokens=False).ids[:MAX_QUESTION_TOKENS]

    def passage_pieces(self, passage: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self.tok.encode(passage, add_special_tokens=False)
        return enc.ids, enc.offsets

    def budget(self, question_ids: list[int]) -> int:
        """How many passage wordpieces fit beside this question."""
        return self.max_len - len(question_ids) - 3

    def assemble(self, question_ids: list[int], ids: list[int],
                 offsets: list[tuple[int, int]]) -> Encoded:
        """The window of `ids` (already cut to the budget) after the question."""
        n_q = len(question_ids)
        input_ids = [self.cls, *question_ids, self.sep, *ids, self.sep]
        type_ids = [0] * (n_q + 2) + [1] * (len(ids) + 1)
        offs = np.full((len(input_ids), 2), -1, dtype=np.int32)
        if ids:
            offs[n_q + 2:n_q + 2 + len(ids)] = np.asarray(offsets, dtype=np.int32)
        return Encoded(np.asarray(input_ids, dtype=np.int64), np.asarray(type_ids, dtype=np.int64),
                       offs)


def pad_batch(windows: list[Encoded]) -> dict[str, np.ndarray]:
    """Stack windows into model inputs, padded to the longest."""
    n = max(len(w.input_ids) for w in windows)
    ids = np.zeros((len(windows), n), dtype=np.int64)
    types = np.zeros((len(windows), n), dtype=np.int64)
    mask = np.zeros((len(windows), n), dtype=np.int64)
    for k, w in enumerate(windows):
        ids[k, :len(w.input_ids)] = w.input_ids
        types[k, :len(w.input_ids)] = w.type_ids
        mask[k, :len(w.input_ids)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


@dataclass(frozen=True, slots=True)
class SpanScore:
    """A predicted span of one window: passage character offsets and its logit sum."""

    start: int
    end: int
    score: float


def best_spans(start_logits: np.ndarray, end_logits: np.ndarray, offsets: np.ndarray,
               allowed: np.ndarray | None = None, top: int = 3,
               max_tokens: int = MAX_ANSWER_TOKENS) -> tuple[list[SpanScore], float]:
    """The `top` best spans start <= end < start + max_tokens over passage wordpieces,
    and the no-answer score (the [CLS] logits). `allowed[k]` is a segment id per
    wordpiece (e.g. its sentence): a span never crosses from one segment to another."""
    null = float(start_logits[0] + end_logits[0])
    passage = np.where(offsets[:, 0] >= 0)[0]
    if passage.size == 0:
        return [], null
    s = start_logits[passage]
    e = end_logits[passage]
    n = passage.size
    scores = s[:, None] + e[None, :]
    i, j = np.indices((n, n))
    valid = (j >= i) & (j - i < max_tokens)
    if allowed is not None:
        seg = allowed[passage]
        valid &= seg[:, None] == seg[None, :]
    scores = np.where(valid, scores, -np.inf)
    flat = np.argsort(scores, axis=None)[::-1][:top]
    out = []
    for f in flat:
        a, b = divmod(int(f), n)
        if not np.isfinite(scores[a, b]):
            break
        out.append(SpanScore(int(offsets[passage[a], 0]), int(offsets[passage[b], 1]),
                             float(scores[a, b])))
    return out, null
