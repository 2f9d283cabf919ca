"""Whisper-ER's losses: equation 5 (one task) and equation 6 (SerialMTL, per-task length-normalised)."""

from __future__ import annotations

import torch
from torch import nn

from ...heads.pooling import checks_are_free


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """-log P(label) per position [B, T] (0 where the label is -100), in float32.

    Computed over rows of the [B * T, V] logits, whose vocabulary is the contiguous axis: cross
    entropy over the class axis of the transposed [B, V, T] view made a copy and a strided softmax,
    twice as slow on CPU for a transcript's worth of positions.
    """
    flat = logits.float().reshape(-1, logits.shape[-1])
    nll = nn.functional.cross_entropy(flat, labels.reshape(-1), ignore_index=-100, reduction="none")
    return nll.view(labels.shape)


def stl_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Equation 5: L = -sum_i log P(y_i | X) over the scored tokens of each utterance, batch mean."""
    return token_nll(logits, labels).sum(dim=1).mean()


def serial_mtl_loss(logits: torch.Tensor, labels: torch.Tensor, task: torch.Tensor, n_tasks: int) -> torch.Tensor:
    """Equation 6: L = sum_t -(1/I(t)) sum_{i in task t} log P(y_i | X), batch mean.

    Each task's negative log-likelihood is divided by its own token count I(t), so a long
    transcript does not outweigh the single gender or emotion token. `<|endoftext|>` belongs to
    the last task (see `target_tokens`). With one task this is the STL loss divided by I.
    """
    nll = token_nll(logits, labels)
    total = torch.zeros(labels.shape[0], device=logits.device)
    for t in range(n_tasks):
        member = (task == t) & (labels != -100)
        count = member.sum(dim=1)
        if checks_are_free(count) and bool((count == 0).any()):
            raise ValueError(f"task {t} has no scored token in some utterance")
        total = total + (nll * member).sum(dim=1) / count
    return total.mean()


def er_loss(n_tasks: int, serial: bool):
    """loss_fn for the trainer: equation 5 (`serial=False`, one task) or equation 6. `model` is the
    (possibly DDP-wrapped) `ERForward`."""

    def loss_fn(model, batch) -> torch.Tensor:
        logits = model(batch)
        if serial:
            return serial_mtl_loss(logits, batch["labels"], batch["task"], n_tasks)
        return stl_loss(logits, batch["labels"])

    return loss_fn
