"""The conventional SER baseline of the Whisper-ER paper: Whisper encoder -> average pooling -> FC.

Used as is for full fine-tuning (GPU profile). On CPU the same head runs on cached, frozen encoder
states instead (`heads.PooledClassifier` on `FeatureCache.pooled`), which is this model with the
encoder's weights fixed.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ...encoders.encoding import encode_batch
from ...heads.classifier import PooledClassifier


class ConventionalSER(nn.Module):
    """Encoder (real frames only) + masked mean pooling + dropout + linear layer."""

    def __init__(self, encoder: nn.Module, n_classes: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.head = PooledClassifier(encoder.config.d_model, n_classes, dropout=dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: padded log-mels [B, T, n_mels] (time on axis 1, as `classify.collate` pads), mask [B, T]."""
        lengths = mask.sum(dim=1).tolist()
        mels = [x[i, : int(n)].T for i, n in enumerate(lengths)]
        states, frame_mask = encode_batch(self.encoder, mels, layers=[len(self.encoder.layers)])
        return self.head(states[:, 0], frame_mask)


def conventional_model(whisper, n_classes: int, dim: int | None, finetune: bool, dropout: float = 0.1) -> nn.Module:
    """The conventional method as a mode asks for it: a head on cached pooled states (`dim` wide), or
    the whole encoder (a copy, in float32) with the head for fine-tuning from log-mels."""
    if not finetune:
        return PooledClassifier(dim, n_classes, dropout=dropout)
    return ConventionalSER(copy.deepcopy(whisper.model.model.encoder).float(), n_classes, dropout)
