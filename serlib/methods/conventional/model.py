"""The conventional SER baseline of the Whisper-ER paper: Whisper encoder -> average pooling -> FC.

Used as is for full fine-tuning (GPU profile). On CPU the same head runs on cached, frozen encoder
states instead (`heads.PooledClassifier` on `FeatureCache.pooled`), which is this model with the
encoder's weights fixed; or, fine-tuning partially, on the cached states of layer L - k with the
encoder's top k layers trained (`top_layers`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ...encoders.encoding import encode_batch, encode_from, keep_top_layers
from ...heads.classifier import PooledClassifier


class ConventionalSER(nn.Module):
    """Encoder (real frames only) + masked mean pooling + dropout + linear layer.

    `from_states`: the encoder is cut to its top layers (`keep_top_layers`) and reads hidden states
    of the layer below them instead of log-mels.
    """

    def __init__(self, encoder: nn.Module, n_classes: int, dropout: float = 0.1, from_states: bool = False):
        super().__init__()
        self.encoder, self.from_states = encoder, from_states
        self.head = PooledClassifier(encoder.config.d_model, n_classes, dropout=dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: padded log-mels [B, T, n_mels] (time on axis 1, as `classify.collate` pads), or hidden
        states [B, T, D] with `from_states`; mask [B, T]."""
        if self.from_states:
            return self.head(encode_from(self.encoder, x, mask), mask)
        lengths = mask.sum(dim=1).tolist()
        mels = [x[i, : int(n)].T for i, n in enumerate(lengths)]
        states, frame_mask = encode_batch(self.encoder, mels, layers=[len(self.encoder.layers)])
        return self.head(states[:, 0], frame_mask)


def conventional_model(whisper, n_classes: int, dim: int | None, finetune: bool, dropout: float = 0.1,
                       top_layers: int = 0) -> nn.Module:
    """The conventional method as a mode asks for it: a head on cached pooled states (`dim` wide),
    the whole encoder (a copy, in float32) with the head for fine-tuning from log-mels, or
    (`top_layers` k > 0) the encoder's top k layers with the head, on cached states of layer L - k."""
    if top_layers:
        encoder = copy.deepcopy(whisper.model.model.encoder).float()
        keep_top_layers(encoder, top_layers)
        return ConventionalSER(encoder, n_classes, dropout, from_states=True)
    if not finetune:
        return PooledClassifier(dim, n_classes, dropout=dropout)
    return ConventionalSER(copy.deepcopy(whisper.model.model.encoder).float(), n_classes, dropout)
