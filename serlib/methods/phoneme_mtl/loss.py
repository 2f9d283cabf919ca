"""Phoneme-MTL's losses: L = L_ER + lambda * L_PR (eq. 1), with L_PR the CTC loss over the emotion-tagged
phoneme labels (eq. 5, 6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ctc_phoneme_loss(logits: torch.Tensor, frame_mask: torch.Tensor, targets: torch.Tensor,
                     target_lengths: torch.Tensor) -> torch.Tensor:
    """CTC loss (blank 0, mean over the batch of the loss per target label) in float32.

    `targets` are the batch's label sequences concatenated, `target_lengths` their lengths. Infinite
    losses are not zeroed: a target that its frames cannot hold (fewer frames than labels plus
    repeated neighbours) raises an error naming the rows, since it means the data was not filtered.
    """
    log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # [T, B, K]
    input_lengths = frame_mask.sum(dim=1)
    losses = F.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="none",
                        zero_infinity=False)
    bad = ~torch.isfinite(losses)
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten().tolist()
        raise ValueError(f"CTC loss is not finite for batch rows {rows} (frames {input_lengths[bad].tolist()}, "
                         f"labels {target_lengths[bad].tolist()}): drop utterances with too few frames first")
    return (losses / target_lengths.clamp_min(1).to(losses.dtype)).mean()


def mtl_loss(weight: float):
    """loss_fn(model, batch) for the trainer: L_ER + weight * L_PR (weight 0: the single-task model)."""

    def loss_fn(model, batch) -> torch.Tensor:
        if weight == 0:  # the phoneme head takes no part (and costs nothing); frames or means
            return F.cross_entropy(model(batch["x"], batch.get("mask")), batch["y"])
        emotion, phonemes, frame_mask = model(batch["x"], batch["mask"], with_phonemes=True)
        return (F.cross_entropy(emotion, batch["y"])
                + weight * ctc_phoneme_loss(phonemes, frame_mask, batch["targets"], batch["target_lengths"]))

    return loss_fn


def freeze_unused(model, weight: float):
    """At weight 0 the phoneme head takes no part in the loss: fix it, so that every trainable
    parameter gets a gradient each step (DDP waits for one from each and fails at step 2 otherwise)."""
    model.phoneme.requires_grad_(weight != 0)
    return model
