"""Pooling a frame sequence into one vector per utterance, counting only the real frames.

Shendabadi et al. (arXiv 2602.06000) reduce Whisper's frames [T, D] to one 256-d vector with attention
before a light classifier, and compare two poolings with the plain mean:

- multi-head attentive average pooling: per head a small network (linear, tanh, linear) scores every
  frame, a softmax over time turns the scores into weights, and the head's output is the weighted
  average of the frames; the heads' outputs are concatenated and projected to `out_dim`;
- multi-head QKV pooling: per head a learned query attends over the frames' keys (a linear map of
  the frames), and the weights average the frames' values (another linear map); heads concatenated
  and projected to `out_dim`.

Every pooling takes frames [B, T, D] and a mask [B, T] (1 = real frame, None = all real): padding
added when utterances of different lengths share a batch gets weight 0 and never changes a vector.
The attention poolings start as a plain average (the last scoring weights and the queries are
initialised to 0, so all frames score alike) and learn to depart from it. `attention(x, mask)`
returns their weights [B, heads, T] for inspection.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def checks_are_free(t: torch.Tensor) -> bool:
    """Whether a data check inside a training step (empty masks, tasks without tokens) runs on `t`:
    on the CPU it is free; on a GPU reading its answer would stall every step on a device sync, and
    the batches there come from the same collates, which never build such rows (empty audio is
    refused when it is read; every task has a token), as the CPU tests check."""
    return t.device.type == "cpu"


POOLINGS = ("mean", "attentive", "qkv")


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
    if checks_are_free(counts) and bool((counts == 0).any()):
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



def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax of `scores` [B, H, T] over time, with weight exactly 0 where `mask` [B, T] is 0.

    Computed in float32. A row without any real frame is an error (as in `masked_mean`).
    """
    scores = scores.float()
    if mask is None:
        return torch.softmax(scores, dim=-1)
    if mask.dim() != 2 or mask.shape[0] != scores.shape[0] or mask.shape[1] != scores.shape[-1]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match scores {tuple(scores.shape)} as [B, T]")
    real = mask.bool()
    empty = ~real.any(dim=1)
    if checks_are_free(empty) and bool(empty.any()):
        raise ValueError(f"masked_softmax: rows {torch.nonzero(empty).flatten().tolist()} of the mask have no real frame")
    return torch.softmax(scores.masked_fill(~real[:, None, :], float("-inf")), dim=-1)


def _check_frames(x: torch.Tensor) -> None:
    if x.dim() != 3:
        raise ValueError(f"pooling expects frames [B, T, D], got {tuple(x.shape)}")


class MeanPooling(nn.Module):
    """The average of the real frames (the conventional baseline); `out_dim` is the input size."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.out_dim = in_dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        _check_frames(x)
        return masked_mean(x, mask)


class AttentiveAveragePooling(nn.Module):
    """Multi-head attentive average pooling: per head, score_t = v_h . tanh(W_h x_t + b_h).

    The heads' weighted averages of the frames [B, heads, D] are concatenated and projected to
    `out_dim`. `hidden` is the width of each head's scoring network.
    """

    def __init__(self, in_dim: int, out_dim: int = 256, heads: int = 4, hidden: int = 64):
        super().__init__()
        self.heads, self.hidden, self.out_dim = heads, hidden, out_dim
        self.score_hidden = nn.Linear(in_dim, heads * hidden)  # all heads' W_h at once
        self.score_out = nn.Parameter(torch.zeros(heads, hidden))  # v_h; 0 = uniform weights at start
        self.proj = nn.Linear(heads * in_dim, out_dim)

    def attention(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Weights [B, heads, T]: each row sums to one over the real frames and is 0 on padding."""
        _check_frames(x)
        h = torch.tanh(self.score_hidden(x)).view(*x.shape[:2], self.heads, self.hidden)
        return masked_softmax(torch.einsum("bthk,hk->bht", h, self.score_out), mask)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        w = self.attention(x, mask).to(x.dtype)
        return self.proj(torch.bmm(w, x).flatten(1))


class QKVPooling(nn.Module):
    """Multi-head QKV pooling: a learned query per head, keys and values are linear maps of the frames.

    Head h weighs frame t by softmax_t(q_h . k_ht / sqrt(head_dim)), with k_ht = K_h x_t + b_h, and
    averages the values v_ht = V_h x_t + c_h; the heads' outputs [B, heads, head_dim] are
    concatenated and projected to `out_dim`. `head_dim` defaults to out_dim // heads, as in
    multi-head attention. Computed without mapping every frame: q_h . k_ht = (K_h^T q_h) . x_t plus
    a constant that the softmax cancels, and the weighted average of v_ht is V_h applied to the
    weighted average of x_t (the weights sum to one), the same numbers at a fraction of the cost.
    """

    def __init__(self, in_dim: int, out_dim: int = 256, heads: int = 4, head_dim: int | None = None):
        super().__init__()
        self.heads, self.out_dim = heads, out_dim
        self.head_dim = head_dim or max(1, out_dim // heads)
        self.query = nn.Parameter(torch.zeros(heads, self.head_dim))  # 0 = uniform weights at start
        self.key = nn.Linear(in_dim, heads * self.head_dim)
        # b_h cancels in the softmax: it can never learn, and DDP refuses a trained parameter without a gradient
        self.key.bias.requires_grad_(False)
        self.value = nn.Linear(in_dim, heads * self.head_dim)
        self.proj = nn.Linear(heads * self.head_dim, out_dim)

    def attention(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Weights [B, heads, T]: each row sums to one over the real frames and is 0 on padding."""
        _check_frames(x)
        keys = self.key.weight.view(self.heads, self.head_dim, -1)  # K_h [head_dim, D]
        query_in_frames = torch.einsum("hk,hkd->hd", self.query, keys)  # K_h^T q_h [heads, D]
        scores = torch.einsum("btd,hd->bht", x, query_in_frames.to(x.dtype)) / math.sqrt(self.head_dim)
        return masked_softmax(scores, mask)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        w = self.attention(x, mask).to(x.dtype)
        averaged = torch.bmm(w, x)  # [B, heads, D]: each head's weighted average of the frames
        values = self.value.weight.view(self.heads, self.head_dim, -1)  # V_h [head_dim, D]
        pooled = torch.einsum("bhd,hkd->bhk", averaged, values) + self.value.bias.view(self.heads, self.head_dim)
        return self.proj(pooled.flatten(1))


def make_pooling(name: str, in_dim: int, out_dim: int = 256, heads: int = 4) -> nn.Module:
    """A pooling module by name: "mean", "attentive" or "qkv"."""
    if name == "mean":
        return MeanPooling(in_dim)
    if name == "attentive":
        return AttentiveAveragePooling(in_dim, out_dim, heads)
    if name == "qkv":
        return QKVPooling(in_dim, out_dim, heads)
    raise ValueError(f"unknown pooling {name!r}; choose one of {POOLINGS}")
