"""Training and applying a classifier head on cached encoder features, for any study.

Features come either pooled ([N, ...] arrays, one vector per utterance) or as frames (a list of
[layers, frames, dim] tensors of different lengths); frames are padded into batches with a mask, so
heads that pool themselves (mean, attentive, QKV) see exactly the real frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..evaluation.metrics import classification_metrics
from ..heads.pooling import pad_frames
from .precision import autocast, resolve_precision
from .runtime import resolve_device
from .trainer import TrainConfig, TrainResult, fit


def fit_precision(config: TrainConfig) -> str:
    """The resolved precision `fit` trains and validates `config` in (test prediction uses it too)."""
    return resolve_precision(config.precision, resolve_device(config.device))


class FeatureDataset(Dataset):
    """(features, label index) pairs: pooled rows of an array, or per-utterance frame sequences.

    An array holds pooled features (one row per utterance, any trailing shape); a list of tensors
    holds frames ([..., frames, dim], lengths differ). Which one it is decides how batches are made,
    never the shapes of a batch (a batch of equally long utterances still gets its mask).
    `stats` (mean, std from `feature_stats`) standardises every item as it is read, so frames stay
    stored once, in float16, whatever the fold.
    """

    def __init__(self, features: np.ndarray | Sequence[torch.Tensor], labels: Sequence[int],
                 stats: tuple[torch.Tensor, torch.Tensor] | None = None):
        if len(features) != len(labels):
            raise ValueError(f"{len(features)} feature rows but {len(labels)} labels")
        self.features = features
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.frames = not isinstance(features, (np.ndarray, torch.Tensor))
        self.collate = collate_frames if self.frames else collate_pooled
        self.stats = stats

    def __len__(self) -> int:
        return len(self.labels)

    def lengths(self) -> list[int]:
        """Frames per item (for TrainConfig.group_by_length); 1 each for pooled features."""
        if not self.frames:
            return [1] * len(self)
        return [int(np.shape(f)[-2] if np.ndim(f) > 1 else np.shape(f)[0]) for f in self.features]

    def __getitem__(self, i):
        x = torch.as_tensor(self.features[i]).float()
        if self.stats is not None:
            x = (x - self.stats[0]) / self.stats[1]
        return x, self.labels[i]


def select_rows(features: np.ndarray | Sequence[torch.Tensor], rows: Sequence[int]):
    """The `rows` of pooled features (an array) or of per-utterance frames (a list), in that order."""
    if isinstance(features, (np.ndarray, torch.Tensor)):
        return features[np.asarray(rows, dtype=np.int64)]
    return [features[i] for i in rows]


def feature_stats(features: np.ndarray | Sequence[torch.Tensor], rows: Sequence[int],
                  eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std over the `rows` (the training part) for `FeatureDataset(stats=...)`.

    Pooled features [N, ...]: over the rows, giving [...]. Frames ([..., T, D] per row): over every
    real frame of the rows, giving [..., 1, D] (one pair per layer when frames carry layers).
    """
    rows = list(rows)
    if not rows:
        raise ValueError("feature_stats needs at least one row")
    if isinstance(features, (np.ndarray, torch.Tensor)):
        x = torch.as_tensor(features[rows]).double()
        return x.mean(0).float(), (x.std(0, unbiased=False) + eps).float()
    total = sum(torch.as_tensor(features[i]).double().sum(-2, keepdim=True) for i in rows)
    squares = sum(torch.as_tensor(features[i]).double().square().sum(-2, keepdim=True) for i in rows)
    count = sum(features[i].shape[-2] for i in rows)
    mean = total / count
    var = (squares / count - mean.square()).clamp_min(0)
    return mean.float(), (var.sqrt() + eps).float()


def collate_pooled(items) -> dict[str, torch.Tensor]:
    """Stack pooled feature rows."""
    xs, ys = zip(*items)
    return {"x": torch.stack(xs), "y": torch.stack(ys)}


def collate_frames(items) -> dict[str, torch.Tensor]:
    """Pad frame sequences on the time axis (dim -2) and add the frame mask [B, T]."""
    xs, ys = zip(*items)
    x, mask = pad_frames(list(xs))
    return {"x": x, "mask": mask, "y": torch.stack(ys)}


def _logits(model, batch) -> torch.Tensor:
    return model(batch["x"], batch["mask"]) if "mask" in batch else model(batch["x"])


def cross_entropy_loss(model, batch) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(_logits(model, batch), batch["y"])


@torch.no_grad()
def predict(model, dataset: FeatureDataset, batch_size: int = 64, precision: str = "no") -> tuple[np.ndarray, np.ndarray]:
    """(predicted class indices, class probabilities) for every item, in order; `precision` (a
    resolved name) the autocast the model was validated under, so test and validation compute alike."""
    model.eval()
    device = next(model.parameters()).device
    probs = []
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=dataset.collate):
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(device, precision):
            logits = _logits(model, batch)
        probs.append(torch.softmax(logits.float(), dim=-1).cpu())
    p = torch.cat(probs).numpy()
    return p.argmax(axis=1), p


def accuracy_metrics(n_classes: int):
    """An evaluate_fn for the trainer: WA/UA/macro-F1 of a classifier on a validation loader."""

    @torch.no_grad()
    def evaluate(model, loader) -> dict[str, float]:
        model.eval()
        device = next(model.parameters()).device
        y_true, y_pred = [], []
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            y_pred.append(_logits(model, batch).argmax(-1).cpu())
            y_true.append(batch["y"].cpu())
        model.train()
        metrics = classification_metrics(torch.cat(y_true).numpy(), torch.cat(y_pred).numpy(), list(range(n_classes)))
        return {k: float(v) for k, v in metrics.items() if k != "n"}

    return evaluate


def fit_classifier(model, train: FeatureDataset, valid: FeatureDataset | None, n_classes: int,
                   config: TrainConfig) -> TrainResult:
    """Cross-entropy training of `model` with the shared trainer (validation picks and averages checkpoints)."""
    return fit(model, train, valid, cross_entropy_loss, accuracy_metrics(n_classes), config, collate_fn=train.collate)


def train_and_predict(model, features: np.ndarray | Sequence[torch.Tensor], labels: np.ndarray, fold,
                      n_classes: int, config: TrainConfig, standardise: bool = True):
    """Train on a fold's training part (its validation part picks checkpoints), predict its test part.

    Features are standardised with the training part's statistics only (`standardise`).
    Returns (predicted class indices of the test rows, the TrainResult).
    """
    stats = feature_stats(features, fold.train) if standardise else None

    def part(idx):
        return FeatureDataset(select_rows(features, idx), labels[idx], stats)

    result = fit_classifier(model, part(fold.train), part(fold.valid) if len(fold.valid) else None, n_classes, config)
    y_pred, _ = predict(result.model, part(fold.test), precision=fit_precision(config))
    return y_pred, result
