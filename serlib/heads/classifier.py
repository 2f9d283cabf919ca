"""The one classifier head: learned layer weights (optional), a pooling over time, dropout, an FC.

The conventional SER baseline (Whisper-ER paper, "conventional method") is encoder -> average pooling
over time -> FC -> softmax: `PooledClassifier(in_dim, n_classes)`. The same class gives the other
heads of the study by its arguments: `num_layers` learned softmax weights over encoder layers
(Phoneme-MTL's fusion, eq. 4, and the layer study's weighted sum: weights initialised to 0, i.e. a
uniform average), `pooling="attentive"` or `"qkv"` (Shendabadi et al., see `pooling`) in place of the
mean, and `hidden` for one ReLU layer before the output layer.
"""

from __future__ import annotations

import torch
from torch import nn

from .pooling import make_pooling, masked_mean


class PooledClassifier(nn.Module):
    """Layer weights, pooling over time, dropout and a classifier -> logits [B, n_classes].

    Inputs, with `num_layers=None` (one layer of features):
      [B, T, D] frames with `mask` [B, T] (1 = real frame; None = all real), or [B, D] already pooled.
    With `num_layers=L` (learned layer weights, softmax over L weights initialised to 0 = uniform):
      [B, L, T, D] frames with `mask` [B, T], or [B, L, D] already pooled per layer (the mean of a
      weighted sum of layers is the weighted sum of their means, which makes per-layer studies on
      `FeatureCache.pooled` cheap).
    `pooling` "mean" (the masked mean), "attentive" or "qkv" (`out_dim` wide, `heads` heads): an
    attention pooling accepts only frames, since it has nothing to weigh in a pooled vector. Features
    stored in float16 (the feature cache) are cast to the head's dtype first.
    """

    def __init__(self, in_dim: int, n_classes: int, pooling: str = "mean", *, num_layers: int | None = None,
                 hidden: int | None = None, dropout: float = 0.1, out_dim: int = 256, heads: int = 4):
        super().__init__()
        self.num_layers = num_layers
        self.layer_logits = nn.Parameter(torch.zeros(num_layers)) if num_layers else None
        self.pooling_name = pooling
        self.pooling = None if pooling == "mean" else make_pooling(pooling, in_dim, out_dim, heads)
        self.dropout = nn.Dropout(dropout)
        pooled_dim = self.pooling.out_dim if self.pooling is not None else in_dim
        if hidden:
            self.out = nn.Sequential(nn.Linear(pooled_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                     nn.Linear(hidden, n_classes))
        else:
            self.out = nn.Linear(pooled_dim, n_classes)

    def layer_weights(self) -> torch.Tensor | None:
        """The softmax layer weights [L] (None without layer weighting)."""
        return None if self.layer_logits is None else torch.softmax(self.layer_logits, dim=0)

    def mixed_input(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, bool]:
        """Checked input in the head's dtype, layers mixed: ([B, T, D] or [B, D], whether it has time)."""
        x = x.to(next(self.out.parameters()).dtype)
        has_time = x.dim() == (4 if self.num_layers else 3)
        if x.dim() != (3 if self.num_layers else 2) + has_time:
            want = "[B, L, T, D] or [B, L, D]" if self.num_layers else "[B, T, D] or [B, D]"
            raise ValueError(f"expected {want} features, got {tuple(x.shape)}")
        if mask is not None and not has_time:
            raise ValueError("a mask was given for features without a time axis")
        if not has_time and self.pooling is not None:
            raise ValueError(f"{type(self.pooling).__name__} pools frames: give [B, T, D] frames, not pooled vectors")
        if self.num_layers:
            if x.shape[1] != self.num_layers:
                raise ValueError(f"expected {self.num_layers} layers on axis 1, got {x.shape[1]}")
            w = self.layer_weights().to(x.dtype)
            x = (x * w.view(1, -1, *([1] * (x.dim() - 2)))).sum(dim=1)
        return x, has_time

    def embed(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The pooled utterance vector [B, D'] (before dropout and the classifier)."""
        x, has_time = self.mixed_input(x, mask)
        if not has_time:
            return x
        return masked_mean(x, mask) if self.pooling is None else self.pooling(x, mask)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """Dropout and the classifier on pooled vectors [B, D'], in float32 whatever the autocast: class
        scores are compared (argmax, softmax), and bf16 rounding would turn near ties into exact ones
        (taken by the lowest class). The layer is small, so this costs nothing measurable."""
        with torch.autocast(pooled.device.type, enabled=False):
            return self.out(self.dropout(pooled.float()))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.classify(self.embed(x, mask))

    def attention(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor | None:
        """The pooling's weights [B, heads, T] over the (layer-mixed) frames; None for mean pooling."""
        if self.pooling is None:
            return None
        x, _ = self.mixed_input(x, mask)
        return self.pooling.attention(x, mask)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of `model`."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
