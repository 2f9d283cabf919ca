"""Phoneme-MTL (Li et al.): learned layer fusion, an emotion head and an auxiliary CTC phoneme head.

    H_X = sum_i alpha_i H_i + alpha_0 H_front      alpha = softmax(w), w initialised to 0   (eq. 4)
    emotion  = FC(mean over real frames of H_X)                      cross-entropy          (eq. 7, 8)
    phonemes = FC(H_X) per frame over 6 x C emotion-tagged labels + blank 0, CTC            (eq. 5, 6)
    L = L_ER + lambda * L_PR                                                                 (eq. 1)

The fusion weights, dropout and emotion layer are those of `heads.PooledClassifier` with learned
layer weights (softmax over zero-initialised weights); the phoneme head reads the same fused frames.
On CPU the model runs on cached hidden states of the frozen encoder, or (`PartialBackbone`) trains
the encoder's top k layers on the cached states below them; with a `FinetuneBackbone` it runs on
raw input and trains the encoder's transformer layers with its front end frozen (GPU profile).

With the encoder frozen the two tasks share only the fusion weights. `shared_layer` puts a small
trainable `SharedBlock` between H_X and both heads, so the CTC loss shapes the representation the
emotion head reads: a CPU stand-in for the fine-tuned transformer layers, not the paper's model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...encoders.encoding import encode_batch, encode_from, encoder_frames, keep_top_layers
from ...heads.classifier import PooledClassifier
from ...heads.pooling import masked_mean


class FinetuneBackbone(nn.Module):
    """A raw-input encoder that returns every hidden state with gradients, its front end frozen.

    Whisper encoder (`WhisperEncoder`): input log-mels [B, T, n_mels] with mask [B, T]; the front end
    is conv1, conv2 and the positional table, and hidden state 0 is their output (as in the cache).
    SSL encoder (wav2vec 2.0, HuBERT, WavLM from `load_ssl`): input waveform [B, N, 1] with sample
    mask [B, N]; the front end is the CNN feature encoder, and hidden state 0 is its projected output
    as the transformer receives it. SpecAugment-style masking is switched off (the paper fine-tunes
    without it). Returns (states [B, layers + 1, T', D], frame mask [B, T']).
    """

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.is_whisper = hasattr(encoder, "conv1") and hasattr(encoder, "embed_positions")
        if not self.is_whisper and not hasattr(encoder, "feature_extractor"):
            raise TypeError(f"{type(encoder).__name__} is neither a Whisper encoder nor an SSL model with a CNN "
                            "`feature_extractor`")
        if getattr(encoder.config, "apply_spec_augment", False):
            encoder.config.apply_spec_augment = False
        for module in self.front_end():
            module.requires_grad_(False)

    def front_end(self) -> list[nn.Module]:
        """The modules kept frozen while the transformer layers train."""
        if self.is_whisper:
            return [self.encoder.conv1, self.encoder.conv2, self.encoder.embed_positions]
        return [self.encoder.feature_extractor]

    @property
    def num_states(self) -> int:
        """Hidden states returned: the front end plus one per transformer layer."""
        layers = self.encoder.layers if self.is_whisper else self.encoder.encoder.layers
        return len(layers) + 1

    @property
    def dim(self) -> int:
        return self.encoder.config.d_model if self.is_whisper else self.encoder.config.hidden_size

    def output_frames(self, input_length: int) -> int:
        """Frames out for an input of `input_length` mel frames (Whisper) or samples (SSL)."""
        if self.is_whisper:
            return encoder_frames(int(input_length))
        return int(self.encoder._get_feat_extract_output_lengths(torch.tensor(int(input_length))))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = mask.sum(dim=1)
        if self.is_whisper:
            return encode_batch(self.encoder, [x[i, : int(n)].T for i, n in enumerate(lengths.tolist())])
        wave = x[..., 0].to(next(self.encoder.parameters()).dtype)
        # Models with group norm in the CNN (wav2vec 2.0 base) were trained on zero-padded batches
        # without an attention mask; the others take one (transformers' documented usage).
        attention = mask.long() if self.encoder.config.feat_extract_norm == "layer" else None
        out = self.encoder(wave, attention_mask=attention, output_hidden_states=True)
        states = torch.stack(out.hidden_states, dim=1)
        frames = self.encoder._get_feat_extract_output_lengths(lengths).clamp(max=states.shape[2])
        frame_mask = torch.arange(states.shape[2], device=x.device)[None, :] < frames[:, None]
        return states * frame_mask[:, None, :, None].to(states.dtype), frame_mask


class PartialBackbone(nn.Module):
    """The encoder's top `k` layers on cached hidden states, every hidden state out (`mode: partial`).

    Input: the cached states 0 .. L - k [B, L - k + 1, T, D] with frame mask [B, T]; the top k
    layers (`keep_top_layers`) run on state L - k and train, and their outputs join the cached ones:
    ([B, L + 1, T, D], mask), what `FinetuneBackbone` returns. Both heads then read layers that the
    CTC loss shapes, as in the paper's fine-tuning, at the cost of k layers instead of the encoder.
    """

    def __init__(self, encoder: nn.Module, k: int):
        super().__init__()
        self.encoder, self.k = encoder, k
        self.start = keep_top_layers(encoder, k)

    @property
    def num_states(self) -> int:
        return self.start + 1 + self.k

    @property
    def dim(self) -> int:
        return self.encoder.config.d_model

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.start + 1:
            raise ValueError(f"expected cached states [B, {self.start + 1}, T, D] (layers 0..{self.start}), "
                             f"got {tuple(x.shape)}")
        top = encode_from(self.encoder, x[:, -1], mask, all_states=True)
        return torch.cat([x.to(top.dtype), top], dim=1), mask


def _weighted_sum(weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """weights [L] @ x [L, ...] in x's dtype, outside autocast: a memory-bound sum over hidden states,
    where casting the frames to bf16 cost more than the product (measured on CPU)."""
    with torch.autocast(x.device.type, enabled=False):
        return torch.matmul(weights.to(x.dtype), x)


class SharedBlock(nn.Module):
    """A small trainable block on the fused frames that both heads read (`PhonemeMTL(shared_layer=...)`).

    Per frame: LayerNorm -> Linear(D, dim) -> GELU, a channel-mixing layer whose weights both losses
    train (the part that stands in for fine-tuned transformer layers); then a residual depthwise
    Conv1d over time of `context` frames (1: none). Phoneme classes are read better with some context
    (a phoneme spans about two or three 40 ms frames, and coarticulation spreads its cues into its
    neighbours), and a depthwise kernel of 5 costs 5 multiply-adds per channel and frame against D
    for the linear layer, so it adds context for almost nothing; it starts at zero, so the block
    starts as the per-frame layer alone. Then dropout. Frames past an utterance's length are zero in and out, so the
    convolution sees each utterance with zero padding, whatever else shares its batch.
    The block is nonlinear per frame: the mean over frames of its output is not a function of the
    per-utterance means of the input, so a model with it needs frames even for the emotion task alone.
    """

    def __init__(self, in_dim: int, dim: int, context: int = 5, dropout: float = 0.1):
        super().__init__()
        if dim < 1 or context < 1 or context % 2 == 0:
            raise ValueError(f"shared_layer needs dim >= 1 and an odd context >= 1, got dim {dim}, context {context}")
        self.dim = dim
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, dim)
        self.context = nn.Conv1d(dim, dim, context, padding=context // 2, groups=dim) if context > 1 else None
        if self.context is not None:
            nn.init.zeros_(self.context.weight)
            nn.init.zeros_(self.context.bias)
        self.dropout = nn.Dropout(dropout)

    def per_frame(self, x: torch.Tensor) -> torch.Tensor:
        """[..., D] -> [..., dim]: the per-frame part, applied where frames are packed (no padding)."""
        return F.gelu(self.proj(self.norm(x)))

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`per_frame` output [B, T, dim], zero where `mask` [B, T] is 0 -> the shared frames [B, T, dim]."""
        if self.context is not None:
            h = h + self.context(h.transpose(1, 2)).transpose(1, 2) * mask[..., None].to(h.dtype)
        return self.dropout(h)


class PhonemeMTL(nn.Module):
    """Fusion of hidden states, emotion head and phoneme head (see the module notes).

    `forward(x, mask)` gives the emotion logits [B, num_emotions], so classifiers' predict and
    validation helpers work unchanged; `forward(x, mask, with_phonemes=True)` also gives the
    phoneme logits [B, T, num_phoneme_labels] and the frame mask [B, T] they belong to. `x` holds
    hidden states in one of the layouts of `fuse`, or the backbone's raw input when there is one.
    `shared_layer` (the keyword arguments of `SharedBlock`; None: no block) puts that block between
    H_X and both heads; without it the model is the paper's two linear heads on H_X.
    """

    def __init__(self, dim: int, num_layers: int, num_emotions: int, num_phoneme_labels: int,
                 dropout: float = 0.1, backbone: FinetuneBackbone | None = None,
                 shared_layer: Mapping[str, Any] | None = None):
        super().__init__()
        self.backbone = backbone
        shared = SharedBlock(dim, **shared_layer) if shared_layer else None
        head_dim = shared.dim if shared is not None else dim
        self.emotion = PooledClassifier(head_dim, num_emotions, num_layers=num_layers, dropout=dropout)
        self.phoneme = nn.Linear(head_dim, num_phoneme_labels)
        self.shared = shared

    @property
    def takes_means(self) -> bool:
        """Whether per-utterance means [B, L, D] may stand in for frames in the emotion task (no shared block)."""
        return self.shared is None

    def layer_weights(self) -> torch.Tensor:
        """alpha [L]: the softmax fusion weights (front end first)."""
        return self.emotion.layer_weights()

    def fuse(self, x: torch.Tensor, mask: torch.Tensor | None = None,
             per_frame: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """H_X = sum_l alpha_l H_l, one matrix product over the states of one of three layouts:

        - padded frames [B, L, T, D] with mask [B, T] -> [B, T, D];
        - packed frames [L, N, D] with mask [B, T], the batch's real frames concatenated in order
          (N = mask.sum(), no padding to copy) -> [B, T, D], zero where the mask is 0;
        - per-utterance means [B, L, D] without mask -> [B, D].
        The same weighted sum as `PooledClassifier.mixed_input`; the product form and the packed
        layout make it several times cheaper on CPU, where it is the sweep's main cost.
        `per_frame` ([..., D] -> [..., D']) is applied to the fused frames before they are padded
        (packed: to the real frames only) and the result is zero where the mask is 0; not for means.
        """
        n_layers, weights = self.emotion.num_layers, self.layer_weights()
        x = x.to(weights.dtype)
        if x.dim() == 4 and x.shape[1] == n_layers:
            fused = _weighted_sum(weights, x.flatten(2)).view(x.shape[0], *x.shape[2:])
            return fused if per_frame is None else per_frame(fused) * mask[..., None].to(fused.dtype)
        if x.dim() == 3 and mask is None and x.shape[1] == n_layers and per_frame is None:
            return _weighted_sum(weights, x)
        if x.dim() == 3 and mask is not None and x.shape[0] == n_layers and x.shape[1] == int(mask.sum()):
            flat = _weighted_sum(weights, x.flatten(1)).view(x.shape[1], x.shape[2])
            if per_frame is not None:
                flat = per_frame(flat)
            rows = torch.nonzero(mask.flatten()).flatten()  # where each real frame goes in [B * T]
            out = flat.new_zeros(mask.numel(), flat.shape[1]).index_copy(0, rows, flat)
            return out.view(*mask.shape, flat.shape[1])
        got = f"{tuple(x.shape)}" + ("" if mask is None else f" with mask {tuple(mask.shape)} ({int(mask.sum())} frames)")
        if per_frame is not None and mask is None:
            raise ValueError("per-utterance means cannot feed a per-frame block (it is nonlinear): give frames "
                             f"and their mask; got {got}")
        raise ValueError(f"expected padded [B, {n_layers}, T, D] or packed [{n_layers}, frames, D] states with a "
                         f"mask, or [B, {n_layers}, D] means without one; got {got}")

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, with_phonemes: bool = False):
        if self.backbone is not None:
            x, mask = self.backbone(x, mask)
        if self.shared is None:
            fused = self.fuse(x, mask)
        else:
            fused = self.shared(self.fuse(x, mask, per_frame=self.shared.per_frame), mask)
        # Without the shared block the mean over frames of H_X equals the fused per-state means (the
        # fusion is linear), so the emotion head also accepts [B, L, D] means: the cheap input of the
        # single-task model (`takes_means`). The block is nonlinear per frame: it needs the frames.
        pooled = fused if fused.dim() == 2 else masked_mean(fused, mask)
        emotion = self.emotion.classify(pooled)
        if not with_phonemes:
            return emotion
        if fused.dim() == 2:
            raise ValueError("the phoneme head needs frames, not per-utterance means")
        with torch.autocast(fused.device.type, enabled=False):  # float32, as the emotion scores (`classify`)
            return emotion, self.phoneme(fused.float()), mask


def greedy_ctc_decode(logits: torch.Tensor, frame_mask: torch.Tensor) -> list[list[int]]:
    """Best label per real frame, repeats collapsed, blanks (0) removed: one id list per row."""
    best = logits.argmax(-1).cpu()
    out = []
    for row, n in zip(best, frame_mask.sum(dim=1).tolist()):
        ids = torch.unique_consecutive(row[: int(n)])
        out.append([int(i) for i in ids if i != 0])
    return out


def class_logits(logits: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Log-probabilities [B, T, 1 + n_classes] of blank and of each phoneme class, emotion tags summed out.

    Labels are laid out blank first, then `n_classes` per emotion (see phonemes.label_names), so the
    class posterior is the sum over emotions; greedy decoding of it scores the classes alone.
    """
    probs = logits.float().softmax(-1)
    tagged = probs[..., 1:].unflatten(-1, (-1, n_classes)).sum(-2)
    return torch.cat([probs[..., :1], tagged], dim=-1).clamp_min(1e-12).log()
