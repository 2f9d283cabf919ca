"""Masked mean pooling and the conventional classification head.

The conventional SER baseline (Whisper-ER paper, "conventional method") is encoder -> average pooling
over time -> FC -> softmax. `PooledClassifier` is that head, optionally with learned softmax weights
over encoder layers (Phoneme-MTL's fusion, eq. 4: weights initialised to 0, i.e. a uniform average).
"""

from __future__ import annotations

import torch
from torch import nn


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over time of `x` [B, T, D] counting only frames where `mask` [B, T] is nonzero -> [B, D].

    `x` may carry extra axes between batch and time ([B, ..., T, D], e.g. layers); the same mask
    applies to all of them. `mask=None` averages every frame. The sum is accumulated in float32 and
    the result has `x`'s dtype. A row whose mask is all zero has no frame to average: that is an
    error (it usually means a length or padding bug), not a silent zero vector.
    """
    if mask is None:
        return x.mean(dim=-2)
    if mask.dim() != 2 or mask.shape[0] != x.shape[0] or mask.shape[1] != x.shape[-2]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match x {tuple(x.shape)} as [B, T]")
    m = mask.to(x.dtype)
    counts = m.sum(dim=1, dtype=torch.float32)
    if bool((counts == 0).any()):
        empty = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"masked_mean: rows {empty} of the mask have no real frame")
    m = m.view(m.shape[0], *([1] * (x.dim() - 3)), m.shape[1], 1)
    summed = (x * m).sum(dim=-2, dtype=torch.float32)
    counts = counts.view(-1, *([1] * (summed.dim() - 1)))
    return (summed / counts).to(x.dtype)


class PooledClassifier(nn.Module):
    """Mean pooling over time, dropout and one linear layer -> logits [B, num_classes].

    Inputs, with `num_layers=None` (one layer of features):
      [B, T, D] frames with `mask` [B, T] (1 = real frame; None = all real), or [B, D] already pooled.
    With `num_layers=L` (learned layer weights, softmax over L weights initialised to 0 = uniform):
      [B, L, T, D] frames with `mask` [B, T], or [B, L, D] already pooled per layer.
    Features stored in float16 (the feature cache) are cast to the head's dtype first.
    """

    def __init__(
        self, in_dim: int, num_classes: int, num_layers: int | None = None, dropout: float = 0.1
    ):
        super().__init__()
        self.num_layers = num_layers
        self.layer_logits = nn.Parameter(torch.zeros(num_layers)) if num_layers else None
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(in_dim, num_classes)

    def layer_weights(self) -> torch.Tensor | None:
        """The softmax layer weights [L] (None without layer weighting)."""
        return None if self.layer_logits is None else torch.softmax(self.layer_logits, dim=0)

    def embed(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The pooled utterance vector [B, D] (before dropout and the linear layer)."""
        x = x.to(self.out.weight.dtype)
        has_time = x.dim() == (4 if self.num_layers else 3)
        if x.dim() != (3 if self.num_layers else 2) + has_time:
            want = "[B, L, T, D] or [B, L, D]" if self.num_layers else "[B, T, D] or [B, D]"
            raise ValueError(f"expected {want} features, got {tuple(x.shape)}")
        if mask is not None and not has_time:
            raise ValueError("a mask was given for features without a time axis")
        if self.num_layers:
            if x.shape[1] != self.num_layers:
                raise ValueError(f"expected {self.num_layers} layers on axis 1, got {x.shape[1]}")
            w = self.layer_weights().to(x.dtype)
            x = (x * w.view(1, -1, *([1] * (x.dim() - 2)))).sum(dim=1)
        return masked_mean(x, mask) if has_time else x

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(self.dropout(self.embed(x, mask)))
