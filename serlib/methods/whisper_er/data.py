"""Whisper-ER's data: target sequences for each task mix, and training batches.

    STL-SER  <|happy|> <|endoftext|>
    STL-ASR  Really good . <|endoftext|>
    STL-GR   <|male|> <|endoftext|>
    A+G+S    Really good . <|male|> <|happy|> <|endoftext|>

Targets are tokenised once per dataset (`ERDataset`), not per batch; a batch holds the padded
encoder inputs, their frame mask, and teacher-forcing tensors reduced to the scored positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ...encoders.encoding import utterance_log_mels
from ...heads.pooling import pad_frames
from ...training.precision import autocast
from .model import TASKS, ERVocabulary, cross_attention_kv, encoder_batch


@dataclass
class Targets:
    """A batch of teacher-forced sequences: inputs, scored labels and which task each label serves."""

    input_ids: torch.Tensor  # [B, L] prefix + targets, without the final token
    labels: torch.Tensor  # [B, L] next token, -100 where not scored (prefix, padding)
    task: torch.Tensor  # [B, L] index into `tasks` of each scored label, -1 elsewhere
    tasks: tuple[str, ...]


def target_tokens(vocab: ERVocabulary, tokenizer, tasks: tuple[str, ...], text: str = "",
                  gender: str = "", emotion: str = "") -> list[tuple[int, int]]:
    """(token id, task index) pairs after the prefix, in the paper's order, ending with <|endoftext|>.

    `<|endoftext|>` is scored and counted with the last task of the sequence (for STL-SER, I = 2 as
    in the paper): it is what closes that task's output.
    """
    unknown = set(tasks) - set(TASKS)
    if unknown or not tasks:
        raise ValueError(f"tasks {tasks} must be a non-empty subset of {TASKS}")
    out: list[tuple[int, int]] = []
    ordered = [t for t in TASKS if t in tasks]
    for t in ordered:
        i = ordered.index(t)
        if t == "asr":
            if not text.strip():
                raise ValueError("the ASR task needs a transcript")
            out += [(tid, i) for tid in tokenizer.encode(" " + text.strip(), add_special_tokens=False)]
        elif t == "gender":
            if gender not in vocab.genders:
                raise ValueError(f"gender {gender!r} has no token; known: {list(vocab.genders)}")
            out.append((vocab.genders[gender], i))
        else:
            if emotion not in vocab.emotions:
                raise ValueError(f"emotion {emotion!r} has no token; known: {list(vocab.emotions)}")
            out.append((vocab.emotions[emotion], i))
    out.append((vocab.eot, len(ordered) - 1))
    return out


def pack_targets(prefixes: list[list[int]], pairs: list[list[tuple[int, int]]], tasks: tuple[str, ...],
                 pad: int) -> Targets:
    """Teacher-forcing tensors for a batch: each prefix followed by its (token, task) pairs.

    `pad` fills input positions past a sequence's end (they are never scored)."""
    seqs = [prefix + [t for t, _ in p] for prefix, p in zip(prefixes, pairs)]
    roles = [[-1] * len(prefix) + [k for _, k in p] for prefix, p in zip(prefixes, pairs)]
    length = max(len(s) for s in seqs) - 1
    input_ids = torch.full((len(seqs), length), pad, dtype=torch.long)
    labels = torch.full((len(seqs), length), -100, dtype=torch.long)
    task = torch.full((len(seqs), length), -1, dtype=torch.long)
    for b, (seq, role) in enumerate(zip(seqs, roles)):
        n = len(seq) - 1
        input_ids[b, :n] = torch.tensor(seq[:-1])
        labels[b, :n] = torch.tensor(seq[1:])
        task[b, :n] = torch.tensor(role[1:])
    labels[task < 0] = -100
    return Targets(input_ids, labels, task, tasks)


def build_targets(vocab: ERVocabulary, tokenizer, tasks: tuple[str, ...], rows: list[dict],
                  prefixes: list[list[int]] | None = None) -> Targets:
    """Teacher-forcing tensors for a batch of utterances (dicts with text, gender, emotion)."""
    ordered = tuple(t for t in TASKS if t in tasks)
    pairs = [target_tokens(vocab, tokenizer, ordered, r.get("text", ""), r.get("gender", ""), r.get("emotion", ""))
             for r in rows]
    return pack_targets(prefixes or [vocab.prefix] * len(rows), pairs, ordered, vocab.eot)


def scored_positions(targets: Targets) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Only the positions whose next token is scored: (positions [B, M], labels [B, M], task [B, M]).

    The vocabulary projection dominates the decoder's cost on short targets, so training computes
    logits only where the loss needs them; padding entries have position 0, label -100 and task -1.
    """
    scored = targets.labels != -100
    counts = scored.sum(dim=1)
    width = int(counts.max())
    # a stable sort puts each row's scored positions first, in order
    order = torch.sort((~scored).to(torch.uint8), dim=1, stable=True).indices[:, :width]
    real = torch.arange(width)[None, :] < counts[:, None]
    positions = torch.where(real, order, 0)
    labels = torch.where(real, targets.labels.gather(1, order), -100)
    task = torch.where(real, targets.task.gather(1, order), -1)
    return positions, labels, task


class ERDataset(torch.utils.data.Dataset):
    """Per utterance: its encoder input and its target (token, task) pairs, tokenised once here.

    Encoder inputs are states [S, D], cross-attention K/V [layers, 2, heads, S, head_dim] or
    log-mels [T, n_mels]; rows are dicts with what the targets need (text, gender, emotion).
    """

    def __init__(self, encoder: list[torch.Tensor], rows: list[dict], vocab: ERVocabulary, tokenizer,
                 tasks: tuple[str, ...]):
        if len(encoder) != len(rows):
            raise ValueError(f"{len(encoder)} encoder inputs but {len(rows)} rows")
        ordered = tuple(t for t in TASKS if t in tasks)
        self.encoder, self.rows = encoder, rows
        self.targets = [target_tokens(vocab, tokenizer, ordered, r.get("text", ""), r.get("gender", ""),
                                      r.get("emotion", "")) for r in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def lengths(self) -> list[int]:
        """Encoder frames (or log-mel frames) per item, for TrainConfig.group_by_length."""
        return [int(e.shape[-2]) for e in self.encoder]

    def __getitem__(self, i):
        return self.encoder[i], self.targets[i]


def er_collate(vocab: ERVocabulary, tasks: tuple[str, ...], inputs: str = "states"):
    """Batches for the trainer from `ERDataset` items: padded encoder inputs (K/V stay float16),
    frame mask, and the teacher-forcing tensors of the pre-tokenised targets."""
    ordered = tuple(t for t in TASKS if t in tasks)

    def collate(items) -> dict:
        encoder, pairs = zip(*items)
        enc, mask = pad_frames(list(encoder), dtype=torch.float16 if inputs == "kv" else torch.float32)
        targets = pack_targets([vocab.prefix] * len(pairs), list(pairs), ordered, vocab.eot)
        positions, labels, task = scored_positions(targets)
        return {"enc": encoder_batch(enc, inputs), "enc_mask": mask, "input_ids": targets.input_ids,
                "positions": positions, "labels": labels, "task": task}

    return collate


# --- a corpus's inputs and rows -------------------------------------------------------------------


def missing_labels(manifest: pd.DataFrame, tasks: tuple[str, ...]) -> str | None:
    """Why a corpus cannot train these tasks (e.g. no transcripts for ASR), or None when it can."""
    if "asr" in tasks and (manifest["text"].str.strip() == "").any():
        return f"{int((manifest['text'].str.strip() == '').sum())} utterances have no transcript"
    if "gender" in tasks and (~manifest["gender"].isin(["male", "female"])).any():
        return "some utterances have no gender"
    return None


def rows_of(manifest: pd.DataFrame) -> list[dict]:
    return manifest[["text", "gender", "emotion"]].to_dict("records")


def longest_target(vocab: ERVocabulary, tokenizer, tasks: tuple[str, ...], rows: list[dict]) -> int:
    """Tokens of the longest target sequence (<|endoftext|> included): decoding needs no more."""
    return max(len(target_tokens(vocab, tokenizer, tasks, r.get("text", ""), r.get("gender", ""), r.get("emotion", "")))
               for r in rows)


@torch.no_grad()
def encoder_inputs(model, data: list[torch.Tensor], kind: str, batch_size: int = 32,
                   precision: str = "no") -> list[torch.Tensor]:
    """Per utterance, what batches of `kind` hold: for "kv" the cross-attention K/V [layers, 2, heads,
    S, head_dim] (float16, on the CPU) of its cached states [S, D]; for "states" or "mel" the data as given.

    K/V depend only on the (frozen) projections, so one computation serves every system that starts
    from the same decoder weights. `precision` "bf16" computes them under bf16 autocast, as the
    training steps that read them do when their precision is bf16.
    """
    if kind != "kv":
        return data
    states = data
    model.eval()
    device = next(model.parameters()).device
    out: list[torch.Tensor] = [None] * len(states)  # type: ignore[list-item]
    order = np.argsort([s.shape[0] for s in states])
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        padded, mask = pad_frames([states[i] for i in idx])
        with autocast(device, precision):
            kv = cross_attention_kv(model, padded.to(device)).kv
        for j, i in enumerate(idx):
            out[i] = kv[j, ..., : int(mask[j].sum()), :].half().cpu()
    return out


class DecoderInputs:
    """A corpus's encoder inputs for each decoder start, computed at most once per corpus and seed.

    With cross-attention K/V (CPU profile) the inputs depend on the decoder's frozen projections:
    every system that starts from the pretrained decoder shares one set, and so does every fold of
    the random-decoder ablation (its weights come from the seed). In the other modes they are the
    data as given: cached states (`decoder`) or log-mels [T, n_mels] (`full`).
    """

    def __init__(self, data: list[torch.Tensor], kind: str, precision: str = "no"):
        self.data, self.kind, self.precision = data, kind, precision
        self._computed: dict[str, list[torch.Tensor]] = {}

    def __call__(self, model, decoder: str) -> list[torch.Tensor]:
        if decoder not in self._computed:
            self._computed[decoder] = encoder_inputs(model, self.data, self.kind, precision=self.precision)
        return self._computed[decoder]


def corpus_inputs(cache, manifest: pd.DataFrame, kind: str, precision: str = "no", top_layers: int = 0):
    """One corpus's inputs for batches of `kind`: (the conventional method's X, DecoderInputs).

    "mel" (the encoder trains): log-mels for both. "upper" (its `top_layers` k train): the cached
    frames of layer L - k for both. Otherwise the cached encoder output: its per-utterance mean for
    the conventional head, its frames for the decoder (K/V computed at the training `precision`, a
    resolved name).
    """
    if kind == "mel":
        mels = utterance_log_mels(cache.whisper.feature_extractor, manifest["path"])
        return mels, DecoderInputs(mels, kind)
    last = cache.n_layers(manifest) - 1
    if kind == "upper":
        frames = [f[0] for f in cache.frames(manifest, layers=[last - top_layers])]
        return frames, DecoderInputs(frames, kind)
    return (cache.pooled(manifest, layers=[last])[:, 0],
            DecoderInputs([f[0] for f in cache.frames(manifest, layers=[last])], kind, precision))
