"""Adaptive-threshold pseudo-labelling of unlabelled target samples, and its report.

Emo-DNA (Ye et al., 2023) selects confident target samples with per-class thresholds that adapt to
the model's learning status, but the article gives no formula. We use the self-adaptive thresholds
of FreeMatch (Wang et al., ICLR 2023), which do exactly that:

    tau_t      = m tau_{t-1}      + (1 - m) mean_b max_c q_b(c)      (global confidence)
    p_t(c)     = m p_{t-1}(c)     + (1 - m) mean_b q_b(c)            (expected mass of class c)
    tau_t(c)   = p_t(c) / max_c' p_t(c') * tau_t                     (threshold of class c)

starting from tau_0 = p_0(c) = 1/C, with q_b the predicted class probabilities of target batch b and
m the momentum. A sample is selected, with pseudo-label c = argmax q, when q(c) >= tau_t(c). So the
thresholds start low (everything passes at 1/C), rise as the model grows confident, and stay lower
for classes the model rarely predicts, which keeps those classes from starving.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch


class AdaptiveThresholds:
    """Per-class confidence thresholds that follow the model's confidence on target batches."""

    def __init__(self, n_classes: int, momentum: float = 0.99, device: str | torch.device = "cpu"):
        if n_classes < 2:
            raise ValueError(f"pseudo-labelling needs at least 2 classes, got {n_classes}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        self.momentum = momentum
        self.global_confidence = torch.tensor(1 / n_classes, device=device)
        self.class_mass = torch.full((n_classes,), 1 / n_classes, device=device)

    @property
    def thresholds(self) -> torch.Tensor:
        """tau_t(c) for every class [C]."""
        return self.class_mass / self.class_mass.max() * self.global_confidence

    @torch.no_grad()
    def update(self, probs: torch.Tensor) -> None:
        """Move the running confidences towards those of one batch of probabilities [B, C]."""
        if probs.dim() != 2 or probs.shape[1] != len(self.class_mass):
            raise ValueError(f"expected probabilities [B, {len(self.class_mass)}], got {tuple(probs.shape)}")
        m = self.momentum
        self.global_confidence = m * self.global_confidence + (1 - m) * probs.max(dim=1).values.mean()
        self.class_mass = m * self.class_mass + (1 - m) * probs.mean(dim=0)

    @torch.no_grad()
    def select(self, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pseudo-label, selected) per row of `probs` [B, C] under the current thresholds."""
        confidence, labels = probs.max(dim=1)
        return labels, confidence >= self.thresholds.to(probs.device)[labels]


def pseudo_label_report(log: pd.DataFrame, true_labels: pd.Series, classes: list[str]) -> pd.DataFrame:
    """Per logged step and pseudo-class: how many target samples passed the threshold, how many rightly.

    `log` is what training recorded (columns step, utt_id, pseudo_label, selected; no true label);
    `true_labels` maps utt_id -> class index and is read here only, for the report, never in training.
    Returns step, class, selected, correct, accuracy (NaN where nothing was selected).
    """
    missing = set(log["utt_id"]) - set(true_labels.index)
    if missing:
        raise ValueError(f"{len(missing)} logged utterances have no true label, e.g. {sorted(missing)[:3]}")
    chosen = log[log["selected"]].assign(correct=lambda d: d["pseudo_label"].to_numpy()
                                         == true_labels.loc[d["utt_id"]].to_numpy())
    counts = chosen.groupby(["step", "pseudo_label"])["correct"].agg(selected="size", correct="sum")
    grid = pd.MultiIndex.from_product([sorted(log["step"].unique()), range(len(classes))],
                                      names=["step", "pseudo_label"])
    out = counts.reindex(grid, fill_value=0).reset_index()
    out["accuracy"] = np.where(out["selected"] > 0, out["correct"] / out["selected"].clip(lower=1), np.nan)
    out.insert(1, "class", [classes[i] for i in out.pop("pseudo_label")])
    return out
