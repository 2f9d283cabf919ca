"""Whisper encoding of the real frames only, batched by length.

Whisper pads every input to 30 s, but emotional utterances last 2-5 s: running the encoder on the
real frames (positional table sliced to their length, padding masked in attention) is about an order
of magnitude cheaper. The hidden states follow transformers' convention: index 0 is the convolutional
front end plus positions, index i the output of layer i, and the last one has the encoder's final
layer norm applied (so it equals `last_hidden_state`).

Known difference: the real-frame states are not those of the 30-s-padded encoder, because there every
frame also attends to ~25 s of padding (Whisper was trained that way). They are the same computation as
the padded encoder whenever the input fills the 30 s window, and batching never changes them (padding
is masked); tests check both.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

SAMPLE_RATE = 16000
HOP = 160  # mel frames are 10 ms apart; the encoder halves them to 20 ms


def log_mel(feature_extractor, audio: np.ndarray) -> torch.Tensor:
    """Whisper log-mel features [n_mels, frames] of the real audio only (no padding).

    Audio longer than Whisper's 30-s window is refused, never cut (data.audio refuses such files).
    """
    n_max = feature_extractor.n_samples
    if len(audio) > n_max:
        raise ValueError(f"{len(audio) / SAMPLE_RATE:.1f} s of audio exceed Whisper's {n_max / SAMPLE_RATE:g}-s "
                         "window; it is not cut (load it with serlib.data.audio.load_audio, which refuses it)")
    feats = feature_extractor(
        audio, sampling_rate=SAMPLE_RATE, padding="longest", return_tensors="pt"
    ).input_features[0]
    frames = max(2, len(audio) // HOP)
    return feats[:, :frames]


def utterance_log_mels(feature_extractor, paths: Sequence[str]) -> list[torch.Tensor]:
    """Log-mels [frames, n_mels] (time first, as batches pad it) per audio file, for end-to-end training."""
    from ..data.audio import load_audio

    return [log_mel(feature_extractor, load_audio(p)).T for p in paths]


def encoder_frames(mel_frames: int) -> int:
    """Encoder output frames for a log-mel of `mel_frames` frames (the stride-2 conv rounds up)."""
    return (mel_frames + 1) // 2


def _attention_mask(lengths: torch.Tensor, total: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive mask [B, 1, T, T] that hides padded key frames."""
    keep = torch.arange(total, device=lengths.device)[None, :] < lengths[:, None]
    mask = torch.zeros(keep.shape, dtype=dtype, device=lengths.device)
    mask.masked_fill_(~keep, torch.finfo(dtype).min)
    return mask[:, None, None, :].expand(-1, 1, total, -1)


def encode_batch(encoder, mels: Sequence[torch.Tensor], layers: Sequence[int] | None = None):
    """Encode variable-length log-mels together; returns (states [B, n_layers, T, D], frame mask [B, T]).

    `layers` selects hidden-state indices (0 = front end, len(encoder.layers) = final output);
    None keeps all. Frames beyond an utterance's length are padding (mask 0) and are zeroed.
    Gradients flow when called outside `torch.no_grad()`, so full fine-tuning uses the same code.
    """
    device = encoder.conv1.weight.device
    dtype = encoder.conv1.weight.dtype
    mel_lengths = torch.tensor([m.shape[-1] for m in mels], device=device)
    total_mel = int(mel_lengths.max())
    total_mel += total_mel % 2
    x = torch.zeros(len(mels), mels[0].shape[0], total_mel, dtype=dtype, device=device)
    for i, m in enumerate(mels):
        x[i, :, : m.shape[-1]] = m.to(device=device, dtype=dtype)
    mel_keep = (torch.arange(total_mel, device=device)[None, :] < mel_lengths[:, None]).to(dtype)

    # conv1 sees zeros beyond each utterance, exactly as when it is encoded alone; its output is
    # zeroed there too so that conv2 sees the same zero padding as in a single-utterance run.
    h = torch.nn.functional.gelu(encoder.conv1(x)) * mel_keep[:, None, :]
    h = torch.nn.functional.gelu(encoder.conv2(h)).permute(0, 2, 1)
    total = h.shape[1]
    if total > encoder.embed_positions.weight.shape[0]:
        raise ValueError(f"input of {total} encoder frames exceeds Whisper's 30 s window")
    h = h + encoder.embed_positions.weight[:total]
    lengths = (mel_lengths + 1) // 2
    frame_mask = torch.arange(total, device=device)[None, :] < lengths[:, None]
    attn = _attention_mask(lengths, total, h.dtype)

    wanted = set(range(len(encoder.layers) + 1)) if layers is None else set(layers)
    states = {0: h} if 0 in wanted else {}
    for i, layer in enumerate(encoder.layers, start=1):
        h = layer(h, attn)
        if i == len(encoder.layers):
            h = encoder.layer_norm(h)
        if i in wanted:
            states[i] = h
        if layers is not None and i >= max(wanted):
            break
    order = sorted(states) if layers is None else list(layers)
    stacked = torch.stack([states[i] for i in order], dim=1)
    stacked = stacked * frame_mask[:, None, :, None].to(stacked.dtype)
    return stacked, frame_mask


def keep_top_layers(encoder, k: int) -> int:
    """Cut `encoder` (a copy: it is changed in place) down to the part that trains when fine-tuning is
    partial: its top `k` layers and final layer norm. The layers below go (their output, hidden state
    L - k, is read from the feature cache) and the front end stays, frozen, for the cache's sake.
    Returns L - k, the hidden-state index whose cached states `encode_from` takes."""
    n = len(encoder.layers)
    if not 1 <= k <= n:
        raise ValueError(f"encoder_layers must be between 1 and the encoder's {n} layers, got {k}")
    encoder.layers = torch.nn.ModuleList(list(encoder.layers)[n - k:])
    for part in (encoder.conv1, encoder.conv2, encoder.embed_positions):
        part.requires_grad_(False)
    return n - k


def encode_from(encoder, states: torch.Tensor, frame_mask: torch.Tensor, all_states: bool = False) -> torch.Tensor:
    """The encoder's layers and final layer norm on hidden states [B, T, D] of the layer below them
    (the cached states of layer L - k for an encoder cut by `keep_top_layers`), padding masked as in
    `encode_batch`: the encoder output [B, T, D], or with `all_states` the output of every layer
    [B, layers, T, D] (the last with the layer norm). Padded frames are zero."""
    keep = frame_mask.bool()
    attn = torch.zeros(keep.shape, dtype=states.dtype, device=states.device)
    attn = attn.masked_fill(~keep, torch.finfo(states.dtype).min)[:, None, None, :].expand(-1, 1, keep.shape[1], -1)
    h, out = states, []
    for i, layer in enumerate(encoder.layers, start=1):
        h = layer(h, attn)
        if i == len(encoder.layers):
            h = encoder.layer_norm(h)
        out.append(h)
    zero = keep[:, None, :, None].to(h.dtype)
    return torch.stack(out, dim=1) * zero if all_states else h * zero[:, 0]


def length_batches(lengths: Sequence[int], max_frames: int = 6000, max_batch: int = 32) -> Iterator[list[int]]:
    """Indices grouped by similar length, each group padding to at most `max_frames` mel frames in total."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    batch: list[int] = []
    for idx in order:
        longest = max([lengths[i] for i in batch] + [lengths[idx]])
        if batch and (longest * (len(batch) + 1) > max_frames or len(batch) >= max_batch):
            yield batch
            batch = []
        batch.append(int(idx))
    if batch:
        yield batch


def encode_padded_30s(whisper, audios: Sequence[np.ndarray], layers: Sequence[int] | None = None) -> torch.Tensor:
    """The stock encoder on 30-s-padded input, real frames kept afterwards (the slow reference path)."""
    feats = whisper.feature_extractor(
        list(audios), sampling_rate=SAMPLE_RATE, return_tensors="pt"
    ).input_features.to(whisper.model.device, whisper.model.dtype)
    out = whisper.model.model.encoder(feats, output_hidden_states=True)
    hidden = torch.stack(out.hidden_states, dim=1)
    return hidden if layers is None else hidden[:, list(layers)]
