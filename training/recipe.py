"""The dev fine-tune's settings, kept apart from `crossfit` (which imports torch) so that
the CLI can show them as its defaults without importing the training stack."""

from __future__ import annotations

from dataclasses import dataclass

FOLDS = 3


@dataclass(frozen=True, slots=True)
class Recipe:
    """How each fine-tune runs (the same for the folds and the shipped model)."""

    epochs: float = 2.0
    lr: float = 1e-4
    batch_size: int = 32
    seed: int = 0
    max_len: int = 128
    device: str = "auto"
    threads: int = 2


DEFAULT_RECIPE = Recipe()
