"""Training losses of the study methods, one section per method.

Losses are plain functions of tensors (no model inside), so they can be checked on hand-made inputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# --- Emo-DNA: cross-corpus alignment and contrastive decoupling (notebook 05) --------------------------
#
# Ye et al. (ACM MM 2023) give the ingredients, not the formulas we use here; where they are silent
# the choice is ours and is stated in each docstring (also in notebooks/05_cross_corpus.ipynb).

# Bandwidth multipliers of the multi-kernel MMD, around the median heuristic (DAN, Long et al. 2015).
MMD_BANDWIDTH_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)


def median_bandwidth(squared_distances: torch.Tensor) -> torch.Tensor:
    """Median off-diagonal squared distance of a pooled sample (no gradient): the kernel scale.

    Taking it from the data keeps the kernel sensible whatever the feature scale; detaching it means
    the encoder cannot shrink the MMD by inflating distances and so the bandwidth.
    """
    d2 = squared_distances.detach()
    off = d2[~torch.eye(len(d2), dtype=torch.bool, device=d2.device)]
    return (off.median() if off.numel() else d2.new_tensor(1.0)).clamp_min(1e-6)


def _weighted_mmd(z: torch.Tensor, weights: torch.Tensor, bandwidth, multipliers) -> torch.Tensor:
    """w_k^T K w_k for every column k of `weights` [N, K] over the pooled sample z [N, d].

    A column holding 1/n on one sample's rows and -1/m on the other's gives that pair's squared
    MMD; several columns give several pairs (one per class) from a single kernel matrix.
    """
    d2 = torch.cdist(z, z).pow(2)
    h = median_bandwidth(d2) if bandwidth is None else torch.as_tensor(bandwidth, dtype=z.dtype, device=z.device)
    kernel = sum(torch.exp(-d2 / (s * h)) for s in multipliers)
    return ((kernel @ weights) * weights).sum(0).clamp_min(0)


def gaussian_mmd(x: torch.Tensor, y: torch.Tensor, bandwidth: torch.Tensor | float | None = None,
                 multipliers: tuple[float, ...] = MMD_BANDWIDTH_MULTIPLIERS) -> torch.Tensor:
    """Squared MMD between samples x [n, d] and y [m, d] under a sum of Gaussian kernels.

        MMD^2 = mean k(x, x') + mean k(y, y') - 2 mean k(x, y),   k(a, b) = sum_j exp(-|a - b|^2 / (s_j h))

    with h = `bandwidth` (default: the median squared distance of the pooled samples) and
    s_j = `multipliers`. The biased (V-statistic) estimate: never negative, 0 when x and y are the
    same sample, and differentiable, so it serves as a loss on small batches.
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"gaussian_mmd needs [n, d] and [m, d] samples, got {tuple(x.shape)} and {tuple(y.shape)}")
    if len(x) == 0 or len(y) == 0:
        raise ValueError("gaussian_mmd needs at least one sample on each side")
    weights = torch.cat([x.new_full((len(x), 1), 1 / len(x)), y.new_full((len(y), 1), -1 / len(y))])
    return _weighted_mmd(torch.cat([x, y]), weights, bandwidth, multipliers)[0]


def class_conditional_mmd(source: torch.Tensor, source_labels: torch.Tensor, target: torch.Tensor,
                          target_labels: torch.Tensor, n_classes: int,
                          multipliers: tuple[float, ...] = MMD_BANDWIDTH_MULTIPLIERS) -> torch.Tensor:
    """Mean over classes of the MMD between source features of class k and target features labelled k.

    Class-level alignment: `target` holds only the confident target samples and `target_labels` their
    pseudo-labels. Classes missing on either side are skipped; with no class on both sides the loss is
    a zero that still carries the graph. All classes share one kernel, its bandwidth the median over
    the whole batch, because a median over a handful of samples of one class is too noisy.
    """
    src = F.one_hot(source_labels, n_classes).to(source.dtype)
    tgt = F.one_hot(target_labels, n_classes).to(source.dtype)
    n_src, n_tgt = src.sum(0), tgt.sum(0)
    both = (n_src > 0) & (n_tgt > 0)
    if not bool(both.any()):
        return source.sum() * 0
    weights = torch.cat([src / n_src.clamp_min(1), -tgt / n_tgt.clamp_min(1)])[:, both]
    return _weighted_mmd(torch.cat([source, target]), weights, None, multipliers).mean()


def contrastive_decoupling_loss(emotion: torch.Tensor, corpus: torch.Tensor, labels: torch.Tensor,
                                emotion_prototypes: torch.Tensor, corpus_prototypes: torch.Tensor,
                                temperature: float = 0.1) -> torch.Tensor:
    """Pull each emotion feature to its class prototype, push it from everything corpus-specific.

    For a labelled sample i with emotion feature e_i, corpus feature c_i (from the separate corpus
    encoder), class y_i, emotion prototypes mu_k and corpus prototypes nu_d (d = 1..D), all
    L2-normalised, and s(a, b) = a.b / t (t = `temperature`):

        L_dec = -1/N sum_i log  exp s(e_i, mu_{y_i}) / ( exp s(e_i, mu_{y_i}) + sum_d exp s(e_i, nu_d) + exp s(e_i, c_i) )

    The class prototype is the one positive; the negatives are the corpus prototypes and the
    sample's own corpus feature, so emotion features are driven away from whatever identifies the
    corpus (other classes are separated by the classifier's cross-entropy already). Cosines lie in
    [-1, 1], so the loss is bounded below by its value when e_i = mu_{y_i} and every negative is
    -mu_{y_i}:

        L_dec >= log(1 + (D + 1) exp(-2 / t)).

    Gradients reach e_i and c_i; prototypes are running means kept by the model (no gradient).
    """
    if emotion.shape != corpus.shape or emotion.dim() != 2:
        raise ValueError(f"emotion {tuple(emotion.shape)} and corpus {tuple(corpus.shape)} features must be equal [N, d]")
    e = F.normalize(emotion, dim=-1)
    c = F.normalize(corpus, dim=-1)
    mu = F.normalize(emotion_prototypes, dim=-1)
    nu = F.normalize(corpus_prototypes, dim=-1)
    positive = (e * mu[labels]).sum(-1, keepdim=True)
    negatives = torch.cat([e @ nu.T, (e * c).sum(-1, keepdim=True)], dim=1)
    logits = torch.cat([positive, negatives], dim=1) / temperature
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def decoupling_minimum(n_corpora: int, temperature: float = 0.1) -> float:
    """The lower bound of `contrastive_decoupling_loss` with `n_corpora` corpus prototypes."""
    return math.log1p((n_corpora + 1) * math.exp(-2 / temperature))
