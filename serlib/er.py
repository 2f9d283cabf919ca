"""One Whisper-ER / SerialMTL system: build it, train it, decode with it.

The notebooks (02_whisper_er, 03_serial_mtl) loop over corpora, folds and systems; what a system
is and how it is trained and read out lives here, so both notebooks do it the same way.

Three modes (`MODES`: what trains, and what the encoder side of a batch holds):
- `cpu` (CPU profile): the encoder is frozen and its states come from the feature cache; the
  decoder's cross-attention key/value projections are frozen too (their outputs are computed once
  per utterance, `encoder_inputs`), and of the token embeddings only the new task tokens' rows
  train. Everything else of the decoder is fine-tuned.
- `decoder`: cached encoder states, the whole decoder fine-tuned.
- `full` (GPU profile, the paper's setting): encoder and decoder fine-tuned from log-mels.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from .classify import train_and_predict
from .data.folds import Fold
from .metrics import classification_metrics
from .models.conventional import conventional_model
from .models.encoding import encode_padded_30s, utterance_log_mels
from .models.heads import pad_frames
from .models.whisper_er import (
    ERDataset, ERVocabulary, MelBatch, beam_search, cross_attention_kv, decoder_logits, encoder_batch, er_collate, er_loss,
    extend_vocabulary, fallback_emotion, freeze_cross_attention_kv, parse, prefix_ids, randomise_decoder,
    target_tokens, train_new_rows_only,
)
from .precision import autocast, resolve_precision
from .train import TrainConfig, TrainResult, fit, seed_everything

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


# mode -> what the encoder side of a batch holds (see models.whisper_er.ENCODER_INPUTS)
MODES = {"cpu": "kv", "decoder": "states", "full": "mel"}


def encoder_kind(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"Whisper-ER mode {mode!r}: use one of {list(MODES)}")
    return MODES[mode]


def build(template, classes: list[str], language: str, system: System, seed: int, mode: str = "cpu"):
    """A fresh copy of the pretrained Whisper with the task tokens added, ready to train in `mode`."""
    whisper = copy.deepcopy(template)
    vocab = extend_vocabulary(whisper, classes, language=language)
    model = whisper.model
    if system.decoder == "random":
        randomise_decoder(model, seed)
    elif system.decoder != "pretrained":
        raise ValueError(f"decoder {system.decoder!r}: use 'pretrained' or 'random'")
    model.model.encoder.requires_grad_(encoder_kind(mode) == "mel")  # else its states come from the cache
    if mode == "cpu":
        freeze_cross_attention_kv(model)
        train_new_rows_only(model, vocab)
    return whisper, vocab


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

    def __init__(self, data: list[torch.Tensor], mode: str, precision: str = "no"):
        self.data, self.kind, self.precision = data, encoder_kind(mode), precision
        self._computed: dict[str, list[torch.Tensor]] = {}

    def __call__(self, model, decoder: str) -> list[torch.Tensor]:
        if decoder not in self._computed:
            self._computed[decoder] = encoder_inputs(model, self.data, self.kind, precision=self.precision)
        return self._computed[decoder]


def corpus_inputs(cache, manifest: pd.DataFrame, mode: str, config: TrainConfig):
    """One corpus's inputs, as `mode` needs them: (conventional method's X, DecoderInputs).

    `full`: log-mels for both (the encoder trains everywhere). Otherwise the cached encoder output:
    its per-utterance mean for the conventional head, its frames for the decoder (K/V computed at
    the training precision).
    """
    if encoder_kind(mode) == "mel":
        mels = utterance_log_mels(cache.whisper.feature_extractor, manifest["path"])
        return mels, DecoderInputs(mels, mode)
    last = cache.n_layers(manifest) - 1
    precision = resolve_precision(config.precision, next(cache.whisper.model.parameters()).device.type)
    return (cache.pooled(manifest, layers=[last])[:, 0],
            DecoderInputs([f[0] for f in cache.frames(manifest, layers=[last])], mode, precision))


def conventional_fold(template, X, y: np.ndarray, fold: Fold, num_classes: int, config: TrainConfig, mode: str):
    """The conventional method on one fold, beside the Whisper-ER systems: (test predictions, TrainResult).

    A head on the pooled states, or (`full`) the encoder fine-tuned with it from log-mels.
    """
    finetune = encoder_kind(mode) == "mel"
    seed_everything(config.seed)  # the head's initial weights
    model = conventional_model(template, num_classes, None if finetune else X.shape[1], finetune)
    return train_and_predict(model, X, y, fold, num_classes, config, standardise=not finetune)


def rows_of(manifest: pd.DataFrame) -> list[dict]:
    return manifest[["text", "gender", "emotion"]].to_dict("records")


def longest_target(vocab: ERVocabulary, tokenizer, tasks: tuple[str, ...], rows: list[dict]) -> int:
    """Tokens of the longest target sequence (<|endoftext|> included): decoding needs no more."""
    return max(len(target_tokens(vocab, tokenizer, tasks, r.get("text", ""), r.get("gender", ""), r.get("emotion", "")))
               for r in rows)


def teacher_forced_evaluate(vocab: ERVocabulary, classes: list[str]):
    """evaluate_fn for the trainer, from one teacher-forced pass (no search, so validation stays cheap).

    SER: the token the model ranks first where the emotion token belongs (anything but an emotion
    token counts as wrong, class "none"), scored as UA over `classes`. GR: accuracy at the gender
    position. ASR: accuracy of the next-token prediction over the transcript tokens (a stand-in for
    WER that needs no decoding). A metric is returned only where its tokens occur.
    """

    @torch.no_grad()
    def evaluate(model, loader) -> dict[str, float]:
        model.eval()
        labels, guesses = [], []
        for batch in loader:
            logits = decoder_logits(model, batch["input_ids"], batch["enc"], batch["enc_mask"],
                                    positions=batch["positions"])
            scored = batch["labels"] != -100
            labels.append(batch["labels"][scored].cpu())
            guesses.append(logits.argmax(-1)[scored].cpu())
        model.train()
        return teacher_forced_scores(torch.cat(labels), torch.cat(guesses), vocab, classes)

    return evaluate


def teacher_forced_scores(labels: torch.Tensor, guesses: torch.Tensor, vocab: ERVocabulary,
                          classes: list[str]) -> dict[str, float]:
    """UA / GR_acc / ASR_token_acc of teacher-forced guesses at scored positions (see above)."""
    emotion_ids = torch.tensor(vocab.emotion_ids)
    gender_ids = torch.tensor(list(vocab.genders.values()))
    is_emotion, is_gender = torch.isin(labels, emotion_ids), torch.isin(labels, gender_ids)
    is_text = ~is_emotion & ~is_gender & (labels != vocab.eot)
    hits = guesses == labels
    scores = {}
    if is_emotion.any():
        emotion_of = {i: e for e, i in vocab.emotions.items()}
        y_true = [emotion_of[int(i)] for i in labels[is_emotion]]
        y_pred = [emotion_of.get(int(i), "none") for i in guesses[is_emotion]]
        scores["UA"] = classification_metrics(y_true, y_pred, classes + ["none"])["UA"]
    if is_gender.any():
        scores["GR_acc"] = float(hits[is_gender].float().mean())
    if is_text.any():
        scores["ASR_token_acc"] = float(hits[is_text].float().mean())
    return scores


def train(whisper, vocab: ERVocabulary, system: System, classes: list[str], train_inputs: list[torch.Tensor],
          train_rows: list[dict], valid_inputs: list[torch.Tensor], valid_rows: list[dict],
          config: TrainConfig, mode: str = "cpu") -> TrainResult:
    """Fine-tune with the shared trainer: equation 5 for one task, equation 6 for several."""
    collate = er_collate(vocab, system.tasks, inputs=encoder_kind(mode))
    data = lambda inputs, rows: ERDataset(inputs, rows, vocab, whisper.tokenizer, system.tasks)  # noqa: E731
    valid = data(valid_inputs, valid_rows) if valid_inputs else None
    config = replace(config, metric=system.metric)
    return fit(whisper.model, data(train_inputs, train_rows), valid,
               er_loss(len(system.tasks), system.serial), teacher_forced_evaluate(vocab, classes), config,
               collate_fn=collate)


def run_fold(template, classes: list[str], language: str, system: System, fold: Fold, inputs: DecoderInputs,
             rows: list[dict], config: TrainConfig, seed: int, mode: str = "cpu",
             beam: int = 4) -> tuple[pd.DataFrame, dict]:
    """Train one system on one fold and decode its test utterances.

    Returns the decoded rows (one per test utterance, in fold order) and a run record (steps, best
    step, validation score, training and decoding time, fallbacks) for the notebook's run table.
    """
    whisper, vocab = build(template, classes, language, system, seed, mode=mode)
    data = inputs(whisper.model, system.decoder)
    pick = lambda idx: [data[i] for i in idx]  # noqa: E731
    train_rows = [rows[i] for i in fold.train]
    result = train(whisper, vocab, system, classes, pick(fold.train), train_rows, pick(fold.valid),
                   [rows[i] for i in fold.valid], config, mode)
    start = time.perf_counter()
    room = longest_target(vocab, whisper.tokenizer, system.tasks, train_rows) + 2  # a little longer than seen
    precision = resolve_precision(config.precision, next(whisper.model.parameters()).device.type)
    out = decode(whisper, vocab, system, pick(fold.test), mode, beam=beam, max_new_tokens=room, precision=precision)
    run = dict(method=system.name, fold=fold.name, steps=result.steps, best_step=result.best_step,
               valid_metric=system.metric, valid_score=result.best_score, train_s=result.wall_s,
               decode_s=time.perf_counter() - start, fallbacks=int(out["fallback"].sum()))
    return out, run


@torch.no_grad()
def zero_shot_transcripts(whisper, audios: list[np.ndarray], language: str, beam: int = 4, max_new_tokens: int = 64,
                          batch_size: int = 8) -> list[str]:
    """Stock Whisper's transcripts (no new tokens, no training): the zero-shot row of the paper's Table 4.

    The encoder sees 30-s-padded input as in Whisper's own decoding: on real-length states the stock
    decoder tends to repeat itself without ever emitting <|endoftext|>.
    """
    model = whisper.model.eval()
    prefix = prefix_ids(whisper, language)
    eot = whisper.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    texts = []
    for start in range(0, len(audios), batch_size):
        states = encode_padded_30s(whisper, audios[start : start + batch_size], layers=[-1])[:, 0]
        mask = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)
        for hyp in beam_search(model, states, mask, prefix, eot, beam, max_new_tokens):
            texts.append(whisper.tokenizer.decode(hyp.tokens, skip_special_tokens=True).strip())
    return texts


@torch.no_grad()
def decode(whisper, vocab: ERVocabulary, system: System, inputs: list[torch.Tensor], mode: str = "cpu",
           beam: int = 4, max_new_tokens: int = 8, batch_size: int = 16, precision: str = "no") -> pd.DataFrame:
    """Beam search over the extended vocabulary; one row per utterance (emotion, gender, text, fallback).

    When the best hypothesis holds no emotion token, the emotion with the highest probability at the
    place where it belongs is taken instead, and `fallback` says so (the notebooks count these).
    Log-mels (`full` mode) are encoded once per batch before the search. `precision` "bf16" decodes
    under bf16 autocast, as a model trained that way was validated.
    """
    model = whisper.model.eval()
    device = next(model.parameters()).device
    kind = encoder_kind(mode)
    rows = []
    for start in range(0, len(inputs), batch_size):
        padded, mask = (t.to(device) for t in pad_frames(inputs[start : start + batch_size]))
        with autocast(device, precision):
            rows += _decode_batch(whisper, vocab, system, model, padded, mask, kind, beam, max_new_tokens)
    return pd.DataFrame(rows)


def _decode_batch(whisper, vocab: ERVocabulary, system: System, model, padded: torch.Tensor, mask: torch.Tensor,
                  kind: str, beam: int, max_new_tokens: int) -> list[dict]:
    """decode's rows for one padded batch of encoder inputs."""
    if kind == "mel":
        padded, mask = MelBatch(padded).encode(model, mask)
        kind = "states"
    rows = []
    for j, hyp in enumerate(beam_search(model, encoder_batch(padded, kind), mask, vocab.prefix, vocab.eot, beam,
                                        max_new_tokens)):
        out = parse(hyp.tokens, vocab, whisper.tokenizer)
        used = "ser" in system.tasks and out.emotion is None
        if used:
            n = int(mask[j].sum())
            one = encoder_batch(padded[j : j + 1, ..., :n, :], kind)
            out.emotion = fallback_emotion(model, one, mask[j : j + 1, :n], vocab.prefix, hyp.tokens, vocab)
        rows.append({"emotion": out.emotion, "gender": out.gender, "text": out.text, "fallback": used,
                     "finished": hyp.finished})
    return rows
