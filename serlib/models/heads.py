"""Masked mean pooling and the conventional classification head.

The conventional SER baseline (Whisper-ER paper, "conventional method") is encoder -> average pooling
over time -> FC -> softmax. `PooledClassifier` is that head, optionally with learned softmax weights
over encoder layers (Phoneme-MTL's fusion, eq. 4: weights initialised to 0, i.e. a uniform average),
and with an attention pooling and a hidden layer in place of the mean and the single linear layer
(`models.pooling.PoolingClassifier` names those choices).
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


def pad_frames(items: list[torch.Tensor], dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Tensors [..., S_i, D] of different lengths -> padded [B, ..., S, D] in `dtype` and mask [B, S].

    The mask is what `masked_mean` and the attention poolings expect (True = real frame).
    """
    lengths = [x.shape[-2] for x in items]
    out = torch.zeros(len(items), *items[0].shape[:-2], max(lengths), items[0].shape[-1], dtype=dtype)
    for i, x in enumerate(items):
        out[i, ..., : lengths[i], :] = x
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
    return out, mask


class PooledClassifier(nn.Module):
    """Pooling over time, dropout and a classifier -> logits [B, num_classes].

    Inputs, with `num_layers=None` (one layer of features):
      [B, T, D] frames with `mask` [B, T] (1 = real frame; None = all real), or [B, D] already pooled.
    With `num_layers=L` (learned layer weights, softmax over L weights initialised to 0 = uniform):
      [B, L, T, D] frames with `mask` [B, T], or [B, L, D] already pooled per layer.
    `pooling` (a module mapping frames and mask to [B, pooling.out_dim], see models.pooling) replaces
    the masked mean; then only frames are accepted, since an attention pooling has nothing to weigh in
    a pooled vector. `hidden` puts one ReLU layer of that width before the output layer. The defaults
    are the conventional head: masked mean and one linear layer. Features stored in float16 (the
    feature cache) are cast to the head's dtype first.
    """

    def __init__(
        self, in_dim: int, num_classes: int, num_layers: int | None = None, dropout: float = 0.1,
        pooling: nn.Module | None = None, hidden: int | None = None,
    ):
        super().__init__()
        self.num_layers = num_layers
        self.layer_logits = nn.Parameter(torch.zeros(num_layers)) if num_layers else None
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        pooled_dim = pooling.out_dim if pooling is not None else in_dim
        if hidden:
            self.out = nn.Sequential(nn.Linear(pooled_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                     nn.Linear(hidden, num_classes))
        else:
            self.out = nn.Linear(pooled_dim, num_classes)

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

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(self.dropout(self.embed(x, mask)))
