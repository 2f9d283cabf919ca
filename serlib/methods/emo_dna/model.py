"""Emo-DNA (Ye et al., ACM MM 2023): emotion and corpus encoders over frozen features, with prototypes.

The network works on one pooled feature vector per utterance (e.g. mean-pooled Whisper states from
the feature cache). Two small encoders read the same input:

    emotion encoder  x -> e  -> emotion classifier  (emotion logits)
    corpus encoder   x -> c  -> corpus classifier   (which corpus the utterance comes from)

Emotion prototypes (one per class) and corpus prototypes (one per corpus) are running means of the
L2-normalised features, used by the contrastive decoupling loss (`loss.py`). The article gives
no architecture; ours is the smallest that fits: each encoder is Linear-GELU-Dropout-Linear, the
classifiers are linear, prototypes are exponential moving averages (a buffer, not a parameter, so
the loss moves features towards prototypes and not the other way round).

The baselines are reduced forms of the same network, so every method has the same emotion path:
source-only and DAN (MMD) use only the emotion encoder and classifier; DANN adds a corpus
discriminator behind a gradient reversal layer (also Emo-DNA's adversarial corpus-level option).
The discriminator has two hidden layers with dropout 0.5, as in Ganin et al.'s DANN: with one
hidden layer (and the encoder's learning rate) the encoder kept fooling the current discriminator
while a fresh linear classifier still told the corpora apart 98 % of the time on RAVDESS/URDU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by -scale (Ganin & Lempitsky, 2015)."""

    @staticmethod
    def forward(ctx, x, scale: float):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """x unchanged; the gradient flowing back through it is flipped and scaled by `scale`."""
    return _ReverseGradient.apply(x, float(scale))


class GradientReversal(nn.Module):
    """Gradient reversal as a layer; `scale` is set by the trainer (DANN's ramp from 0 to 1)."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reverse_gradient(x, self.scale)


def encoder(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    """The small feature encoder both branches use."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))


class Prototypes(nn.Module):
    """One running-mean direction per group (class or corpus) of L2-normalised features."""

    def __init__(self, n_groups: int, dim: int, momentum: float = 0.9):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("vectors", torch.zeros(n_groups, dim))
        self.register_buffer("seen", torch.zeros(n_groups, dtype=torch.bool))

    @torch.no_grad()
    def update(self, features: torch.Tensor, groups: torch.Tensor) -> None:
        """Move each group's prototype towards the mean normalised feature of its rows in the batch.

        A group seen for the first time takes that mean as it is (no pull towards the zero start).
        """
        z = F.normalize(features.detach().float(), dim=-1)
        onehot = F.one_hot(groups, len(self.vectors)).float()
        counts = onehot.sum(0)
        mean = (onehot.T @ z) / counts.clamp_min(1)[:, None]
        moved = torch.where(self.seen[:, None], self.momentum * self.vectors + (1 - self.momentum) * mean, mean)
        present = counts > 0
        self.vectors.copy_(torch.where(present[:, None], moved, self.vectors))
        self.seen |= present


class EmoDNA(nn.Module):
    """Emotion branch (always), corpus branch and prototypes (`decouple`), discriminator (`adversarial`)."""

    def __init__(self, in_dim: int, n_classes: int, n_corpora: int = 2, hidden: int = 128, feat_dim: int = 64,
                 dropout: float = 0.1, decouple: bool = True, adversarial: bool = False,
                 prototype_momentum: float = 0.9):
        super().__init__()
        self.emotion_encoder = encoder(in_dim, hidden, feat_dim, dropout)
        self.emotion_classifier = nn.Linear(feat_dim, n_classes)
        self.decouple = decouple
        if decouple:
            self.corpus_encoder = encoder(in_dim, hidden, feat_dim, dropout)
            self.corpus_classifier = nn.Linear(feat_dim, n_corpora)
            self.emotion_prototypes = Prototypes(n_classes, feat_dim, prototype_momentum)
            self.corpus_prototypes = Prototypes(n_corpora, feat_dim, prototype_momentum)
        self.discriminator = nn.Sequential(
            GradientReversal(), nn.Linear(feat_dim, hidden), nn.GELU(), nn.Dropout(0.5),
            nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(0.5), nn.Linear(hidden, n_corpora),
        ) if adversarial else None

    def emotion_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.emotion_encoder(x.float())

    def corpus_features(self, x: torch.Tensor) -> torch.Tensor:
        if not self.decouple:
            raise RuntimeError("this model has no corpus encoder (decouple=False)")
        return self.corpus_encoder(x.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Emotion logits [B, n_classes] (what evaluation and `training.classify.predict` use)."""
        return self.emotion_classifier(self.emotion_features(x))
