"""One Whisper-ER / SerialMTL system on cached encoder states: build it, train it, decode with it.

The notebooks (02_whisper_er, 03_serial_mtl) loop over corpora, folds and systems; what a system
is and how it is trained and read out lives here, so both notebooks do it the same way.

CPU profile (`cpu=True`): the encoder is frozen and its states come from the feature cache; the
decoder's cross-attention key/value projections are frozen too (their outputs are computed once per
utterance, `encoder_inputs`), and of the token embeddings only the new task tokens' rows train.
Everything else of the decoder is fine-tuned. The GPU profile fine-tunes the whole decoder.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from .metrics import classification_metrics
from .models.heads import pad_frames
from .models.whisper_er import (
    ERDataset, ERVocabulary, beam_search, cross_attention_kv, decoder_logits, encoder_batch, er_collate, er_loss,
    extend_vocabulary, fallback_emotion, freeze_cross_attention_kv, parse, randomise_decoder,
    train_new_rows_only,
)
from .train import TrainConfig, TrainResult, fit

# The paper's task mixes (Table 2 and 4): A = ASR, G = gender recognition, S = emotion recognition.
TASK_SETS = {
    "STL-SER": ("ser",), "STL-ASR": ("asr",), "STL-GR": ("gender",),
    "A+S": ("asr", "ser"), "G+S": ("gender", "ser"), "A+G+S": ("asr", "gender", "ser"),
}


@dataclass(frozen=True)
class System:
    """A named Whisper-ER system: its task mix and how its decoder starts."""

    name: str
    tasks: tuple[str, ...]
    decoder: str = "pretrained"  # "pretrained" (Whisper's) or "random" (the paper's Table 5 ablation)

    @property
    def serial(self) -> bool:
        return len(self.tasks) > 1

    @property
    def metric(self) -> str:
        """The validation metric: SER UA whenever emotion is a task, else the task's own."""
        return "UA" if "ser" in self.tasks else "GR_acc" if "gender" in self.tasks else "ASR_token_acc"


def missing_labels(manifest: pd.DataFrame, tasks: tuple[str, ...]) -> str | None:
    """Why a corpus cannot train these tasks (e.g. no transcripts for ASR), or None when it can."""
    if "asr" in tasks and (manifest["text"].str.strip() == "").any():
        return f"{int((manifest['text'].str.strip() == '').sum())} utterances have no transcript"
    if "gender" in tasks and (~manifest["gender"].isin(["male", "female"])).any():
        return "some utterances have no gender"
    return None


def build(template, classes: list[str], language: str, system: System, seed: int, cpu: bool = True):
    """A fresh copy of the pretrained Whisper with the task tokens added, ready to train."""
    whisper = copy.deepcopy(template)
    vocab = extend_vocabulary(whisper, classes, language=language)
    model = whisper.model
    if system.decoder == "random":
        randomise_decoder(model, seed)
    elif system.decoder != "pretrained":
        raise ValueError(f"decoder {system.decoder!r}: use 'pretrained' or 'random'")
    model.model.encoder.requires_grad_(False)  # its states come from the cache
    if cpu:
        freeze_cross_attention_kv(model)
        train_new_rows_only(model, vocab)
    return whisper, vocab


@torch.no_grad()
def encoder_inputs(model, states: list[torch.Tensor], cross_kv: bool, batch_size: int = 32) -> list[torch.Tensor]:
    """Per utterance: its cached states [S, D], or its cross-attention K/V [layers, 2, S, D] (float16).

    K/V depend only on the (frozen) projections, so one computation serves every system that starts
    from the same decoder weights.
    """
    if not cross_kv:
        return states
    model.eval()
    out: list[torch.Tensor] = [None] * len(states)  # type: ignore[list-item]
    order = np.argsort([s.shape[0] for s in states])
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        padded, mask = pad_frames([states[i] for i in idx])
        kv = cross_attention_kv(model, padded).kv
        for j, i in enumerate(idx):
            out[i] = kv[j, :, :, : int(mask[j].sum())].half()
    return out


def rows_of(manifest: pd.DataFrame) -> list[dict]:
    return manifest[["text", "gender", "emotion"]].to_dict("records")


def teacher_forced_evaluate(vocab: ERVocabulary, classes: list[str]):
    """evaluate_fn for the trainer, from one teacher-forced pass (no search, so validation stays cheap).

    SER: the token the model ranks first where the emotion token belongs (anything but an emotion
    token counts as wrong), scored as UA. GR: the same at the gender position. ASR: accuracy of the
    next-token prediction over the transcript tokens (a stand-in for WER that needs no decoding).
    """
    emotion_of = {i: e for e, i in vocab.emotions.items()}
    gender_ids = set(vocab.genders.values())

    @torch.no_grad()
    def evaluate(model, loader) -> dict[str, float]:
        model.eval()
        y_true, y_pred, gender_hits, text_hits = [], [], [], []
        for batch in loader:
            logits = decoder_logits(model, batch["input_ids"], batch["enc"], batch["enc_mask"],
                                    positions=batch["positions"])
            top, labels = logits.argmax(-1), batch["labels"]
            for b in range(labels.shape[0]):
                for pos in range(labels.shape[1]):
                    label, guess = int(labels[b, pos]), int(top[b, pos])
                    if label in emotion_of:
                        y_true.append(emotion_of[label])
                        y_pred.append(emotion_of.get(guess, "none"))
                    elif label in gender_ids:
                        gender_hits.append(guess == label)
                    elif label != -100 and label != vocab.eot:
                        text_hits.append(guess == label)
        model.train()
        scores = {}
        if y_true:
            scores["UA"] = classification_metrics(y_true, y_pred, classes + ["none"])["UA"]
        if gender_hits:
            scores["GR_acc"] = float(np.mean(gender_hits))
        if text_hits:
            scores["ASR_token_acc"] = float(np.mean(text_hits))
        return scores

    return evaluate


def train(whisper, vocab: ERVocabulary, system: System, classes: list[str], train_inputs: list[torch.Tensor],
          train_rows: list[dict], valid_inputs: list[torch.Tensor], valid_rows: list[dict],
          config: TrainConfig, cross_kv: bool) -> TrainResult:
    """Fine-tune with the shared trainer: equation 5 for one task, equation 6 for several."""
    collate = er_collate(vocab, whisper.tokenizer, system.tasks, cross_kv=cross_kv)
    valid = ERDataset(valid_inputs, valid_rows) if valid_inputs else None
    config = replace(config, metric=system.metric)
    return fit(whisper.model, ERDataset(train_inputs, train_rows), valid,
               er_loss(len(system.tasks), system.serial), teacher_forced_evaluate(vocab, classes), config,
               collate_fn=collate)


@torch.no_grad()
def decode(whisper, vocab: ERVocabulary, system: System, inputs: list[torch.Tensor], cross_kv: bool,
           beam: int = 4, max_new_tokens: int = 8, batch_size: int = 16) -> pd.DataFrame:
    """Beam search over the extended vocabulary; one row per utterance (emotion, gender, text, fallback).

    When the best hypothesis holds no emotion token, the emotion with the highest probability at the
    place where it belongs is taken instead, and `fallback` says so (the notebooks count these).
    """
    model = whisper.model.eval()
    rows = []
    for start in range(0, len(inputs), batch_size):
        enc, mask = pad_frames(inputs[start : start + batch_size])
        enc = encoder_batch(enc, cross_kv)
        for j, hyp in enumerate(beam_search(model, enc, mask, vocab.prefix, vocab.eot, beam, max_new_tokens)):
            out = parse(hyp.tokens, vocab, whisper.tokenizer)
            used = "ser" in system.tasks and out.emotion is None
            if used:
                one = encoder_batch(pad_frames([inputs[start + j]])[0], cross_kv)
                out.emotion = fallback_emotion(model, one, mask[j : j + 1, : int(mask[j].sum())], vocab.prefix,
                                               hyp.tokens, vocab)
            rows.append({"emotion": out.emotion, "gender": out.gender, "text": out.text, "fallback": used,
                         "finished": hyp.finished})
    return pd.DataFrame(rows)
