"""Settings: one typed object; each field reads ARTICLE_QA_<NAME>, CLI flags override."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from indexing.embedding import DEFAULT_BACKEND, DEFAULT_MODEL

# The readers `serve`, `ask` and `eval` can answer with (README "The reader"); eval reports
# put the other beside the default. The neural reader scores higher F1 than the feature
# reader on every held-out set, so it is the default; the feature reader stays selectable
# (and is one of the neural reader's calibration inputs).
READERS = ("feature", "neural")
DEFAULT_READER = "neural"


def _env(name: str, default: str) -> str:
    return os.environ.get(f"ARTICLE_QA_{name.upper()}", default)


def _optional_float(name: str) -> float | None:
    raw = _env(name, "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"ARTICLE_QA_{name.upper()}={raw!r} is not a number; "
                         "give one (e.g. 0.4) or leave it unset") from None


@dataclass(frozen=True, slots=True)
class Settings:
    """Service and indexer configuration (flags > ARTICLE_QA_* environment > defaults)."""

    index: Path = field(default_factory=lambda: Path(_env("index", "index")))
    """Index directory."""
    corpus: Path = field(default_factory=lambda: Path(_env("corpus", "data/articles")))
    """Corpus indexed by `serve` when the index directory is empty."""
    model: str = field(default_factory=lambda: _env("model", DEFAULT_MODEL))
    """Embedding model: a name or a local directory."""
    embed_backend: str = field(default_factory=lambda: _env("embed_backend", DEFAULT_BACKEND))
    """Embedding backend: torch, onnx or onnx-int8 (ONNX exports are cached on first use)."""
    host: str = field(default_factory=lambda: _env("host", "127.0.0.1"))
    """Address `serve` binds."""
    port: int = field(default_factory=lambda: int(_env("port", "8000")))
    """Port `serve` binds."""
    chunk_tokens: int = field(default_factory=lambda: int(_env("chunk_tokens", "160")))
    """Target chunk size in cl100k tokens."""
    chunk_overlap: int = field(default_factory=lambda: int(_env("chunk_overlap", "1")))
    """Sentences shared by consecutive chunks."""
    index_type: str | None = field(default_factory=lambda: _env("index_type", "") or None)
    """Vector index that writes build: auto|flat|ivf|hnsw; unset keeps the index's own (auto)."""
    index_threshold: int | None = field(default_factory=lambda: int(
        _env("index_threshold", "0")) or None)
    """Chunks at and above which `auto` builds the approximate index; unset keeps 50000."""
    max_body_bytes: int = field(default_factory=lambda: int(_env("max_body_bytes", "1048576")))
    """Largest request body accepted."""

    cors_origins: tuple[str, ...] = field(default_factory=lambda: tuple(
        o.strip() for o in _env("cors_origins", "").split(",") if o.strip()))
    """Origins allowed to call the API from a browser (comma-separated); none by default."""

    api_key: str = field(default_factory=lambda: _env("api_key", ""))
    """Key required by the write routes (POST/DELETE /documents); empty leaves them open."""
    read_api_key: str = field(default_factory=lambda: _env("read_api_key", ""))
    """Key required by the reading routes (the write key works too); empty leaves them open."""
    # Off unless asked for: one client sending questions back to back (an evaluation, a
    # benchmark) is ordinary use, and behind a reverse proxy every client shares one
    # address, so a per-address limit belongs to the operator who knows the deployment.
    rate_limit: str = field(default_factory=lambda: _env("rate_limit", "0"))
    """Per-client limit on /ask, /chat and /search, e.g. '600/minute'; unset or '0': none."""
    rate_burst: int = field(default_factory=lambda: int(_env("rate_burst", "60")))
    """Requests a client may send at once before the sustained rate applies (0: one period's)."""
    allow_open_writes: bool = field(default_factory=lambda: _env(
        "allow_open_writes", "").strip().lower() in ("1", "true", "yes", "on"))
    """Let `serve` bind a non-loopback address while the write routes need no key."""

    answer_cache: int = field(default_factory=lambda: int(_env("answer_cache", "256")))
    """Answers to repeated questions kept per index generation; 0 turns the cache off."""
    workers: int = field(default_factory=lambda: int(_env("workers", "1")))
    """Server processes `serve` starts (each loads its own models and index)."""
    min_confidence: float | None = field(default_factory=lambda: _optional_float("min_confidence"))
    """Confidence in [0, 1] an answer needs, else the service abstains; unset: the reader
    model's own cut (fitted on the dev sets). Higher answers less often but more often right."""
    reader: str = field(default_factory=lambda: _env("reader", DEFAULT_READER).strip().lower())
    """Which reader extracts answers: feature (hand-featured) or neural (the trained span
    model in service/reader_model)."""

    def __post_init__(self) -> None:
        # NaN fails this test too.
        if self.min_confidence is not None and not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence of {self.min_confidence} is outside [0, 1] "
                             "(ARTICLE_QA_MIN_CONFIDENCE / --min-confidence)")
        if self.reader not in READERS:
            raise ValueError(f"reader {self.reader!r} is unknown (ARTICLE_QA_READER); "
                             f"choose {' or '.join(READERS)}")

    def with_overrides(self, **overrides) -> Settings:
        """A copy with every non-None override applied (CLI flags)."""
        names = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in overrides.items() if k in names and v is not None})
