"""Whisper-ER / SerialMTL's fold loop (notebooks 02 and 03): build each system, train it, decode.

`run_systems` trains, on every fold of one corpus, the conventional method (encoder + average
pooling + FC, beside it as in the paper) and each Whisper-ER system, decodes the test utterances and,
where asked, transcribes a sample with the untouched Whisper; it returns one predictions table and
one run record per trained model (`training.predictions`).

What trains is the `Recipe` (the profile's `mode` and `decoder`), and so what the encoder side of a
batch holds:
- frozen encoder, light decoder (the CPU profile): the encoder's states come from the feature cache;
  the decoder's cross-attention key/value projections are frozen too (their outputs are computed
  once per utterance, `data.encoder_inputs`), and of the token embeddings only the new task tokens'
  rows train. Everything else of the decoder is fine-tuned.
- frozen encoder, full decoder: cached encoder states, the whole decoder fine-tuned.
- partial (the encoder's top k layers and the whole decoder, `encoder_layers` k): the cached states
  of layer L - k, run through the top k layers inside each step; the conventional method beside it
  trains the same top k layers (a CPU's share of the paper's full fine-tuning).
- fine-tuned encoder (GPU profiles, the paper's setting): encoder and decoder from log-mels.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from ...data.audio import load_audio
from ...data.folds import Fold
from ...data.prepare import PreparedCorpus
from ...evaluation.metrics import classification_metrics
from ...distributed import gather
from ...encoders.encoding import keep_top_layers
from ...training.precision import resolve_precision
from ...training.classify import fit_precision
from ...training.predictions import Collector, FoldResults, prediction_rows
from ...training.trainer import TrainConfig, TrainResult, fit
from ..conventional.run import conventional_fold
from .data import DecoderInputs, ERDataset, corpus_inputs, er_collate, longest_target, missing_labels, rows_of
from .decode import decode, zero_shot_transcripts
from .loss import er_loss
from .model import (
    ERForward,
    ERVocabulary,
    extend_vocabulary,
    freeze_cross_attention_kv,
    randomise_decoder,
    train_new_rows_only,
)

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


@dataclass(frozen=True)
class Recipe:
    """What trains: the encoder (`mode`) and the decoder, as the profile says (see the module notes)."""

    mode: str = "frozen"  # frozen: cached encoder states | partial: its top layers train | finetune: all of it
    decoder: str = "light"  # light: cross-attention K/V and pretrained token rows fixed | full: all of it
    encoder_layers: int = 0  # partial: the top k encoder layers that train

    def __post_init__(self):
        if self.mode not in ("frozen", "partial", "finetune") or self.decoder not in ("light", "full"):
            raise ValueError(f"recipe mode {self.mode!r}, decoder {self.decoder!r}: use mode frozen|partial|finetune "
                             "and decoder light|full")
        if self.mode != "frozen" and self.decoder == "light":
            raise ValueError("decoder light precomputes cross-attention K/V from fixed encoder states: "
                             f"with mode {self.mode} use decoder full")
        if (self.mode == "partial") != (self.encoder_layers > 0):
            raise ValueError(f"encoder_layers {self.encoder_layers} with mode {self.mode}: mode partial trains "
                             "encoder_layers >= 1 top layers, the other modes take encoder_layers 0")

    @property
    def inputs(self) -> str:
        """What the encoder side of a batch holds (model.ENCODER_INPUTS)."""
        return {"finetune": "mel", "partial": "upper"}.get(self.mode, "kv" if self.decoder == "light" else "states")

    def __str__(self) -> str:
        encoder = f"top {self.encoder_layers} encoder layer(s) fine-tuned" if self.mode == "partial" else f"{self.mode} encoder"
        return f"{encoder}, {self.decoder} decoder"


def build(template, classes: list[str], language: str, system: System, seed: int, recipe: Recipe = Recipe()):
    """A fresh copy of the pretrained Whisper with the task tokens added, ready to train as `recipe` says."""
    whisper = copy.deepcopy(template)
    vocab = extend_vocabulary(whisper, classes, language=language)
    model = whisper.model
    if system.decoder == "random":
        randomise_decoder(model, seed)
    elif system.decoder != "pretrained":
        raise ValueError(f"decoder {system.decoder!r}: use 'pretrained' or 'random'")
    model.model.encoder.requires_grad_(recipe.mode != "frozen")  # frozen: its states come from the cache
    if recipe.mode == "partial":  # the layers below the top k go: their output comes from the cache
        keep_top_layers(model.model.encoder, recipe.encoder_layers)
    model.model.encoder.embed_positions.requires_grad_(False)  # Whisper's sinusoids: fixed, as in the baseline
    if recipe.decoder == "light":
        freeze_cross_attention_kv(model)
        train_new_rows_only(model, vocab)
    return whisper, vocab


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
        for batch in loader:  # kept on the device: one transfer at the end, no sync per batch
            logits = model(batch, fp32_logits=True)  # the ERForward; no bf16 ties at the argmax
            labels.append(batch["labels"].flatten())
            guesses.append(logits.argmax(-1).flatten())
        model.train()
        labels, guesses = torch.cat(labels).cpu(), torch.cat(guesses).cpu()
        scored = labels != -100
        return teacher_forced_scores(labels[scored], guesses[scored], vocab, classes)

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
        y_true = [emotion_of[i] for i in labels[is_emotion].tolist()]  # CPU tensors: one conversion each
        y_pred = [emotion_of.get(i, "none") for i in guesses[is_emotion].tolist()]
        scores["UA"] = classification_metrics(y_true, y_pred, classes + ["none"])["UA"]
    if is_gender.any():
        scores["GR_acc"] = float(hits[is_gender].float().mean())
    if is_text.any():
        scores["ASR_token_acc"] = float(hits[is_text].float().mean())
    return scores


def train(whisper, vocab: ERVocabulary, system: System, classes: list[str], train_inputs: list[torch.Tensor],
          train_rows: list[dict], valid_inputs: list[torch.Tensor], valid_rows: list[dict],
          config: TrainConfig, recipe: Recipe = Recipe()) -> TrainResult:
    """Fine-tune with the shared trainer: equation 5 for one task, equation 6 for several."""
    collate = er_collate(vocab, system.tasks, inputs=recipe.inputs)
    data = lambda inputs, rows: ERDataset(inputs, rows, vocab, whisper.tokenizer, system.tasks)  # noqa: E731
    valid = data(valid_inputs, valid_rows) if valid_inputs else None
    config = replace(config, metric=system.metric)
    return fit(ERForward(whisper.model), data(train_inputs, train_rows), valid,
               er_loss(len(system.tasks), system.serial), teacher_forced_evaluate(vocab, classes), config,
               collate_fn=collate)


def run_fold(template, classes: list[str], language: str, system: System, fold: Fold, inputs: DecoderInputs,
             rows: list[dict], config: TrainConfig, seed: int, recipe: Recipe = Recipe(),
             beam: int = 4) -> tuple[pd.DataFrame, TrainResult, float]:
    """Train one system on one fold and decode its test utterances.

    Returns the decoded rows (one per test utterance, in fold order: emotion, gender, text,
    fallback), the TrainResult and the decoding time in seconds.
    """
    whisper, vocab = build(template, classes, language, system, seed, recipe)
    data = inputs(whisper.model, system.decoder)
    pick = lambda idx: [data[i] for i in idx]  # noqa: E731
    train_rows = [rows[i] for i in fold.train]
    result = train(whisper, vocab, system, classes, pick(fold.train), train_rows, pick(fold.valid),
                   [rows[i] for i in fold.valid], config, recipe)
    start = time.perf_counter()
    room = longest_target(vocab, whisper.tokenizer, system.tasks, train_rows) + 2  # a little longer than seen
    precision = fit_precision(config)  # the one training validated in
    # beam search, the costly part, split across processes (one process: all of it here)
    out = pd.DataFrame(gather(lambda part: decode(whisper, vocab, system.tasks, part, recipe.inputs, beam=beam,
                                                  max_new_tokens=room, precision=precision).to_dict("records"),
                              pick(fold.test)))
    return out, result, time.perf_counter() - start


def runnable(corpus: PreparedCorpus, names: list[str]) -> tuple[list[System], dict[str, str]]:
    """The systems a corpus can train (by name), and why each of the others cannot."""
    systems, left_out = [], {}
    for name in names:
        why = missing_labels(corpus.manifest, TASK_SETS[name])
        if why is None:
            systems.append(System(name, TASK_SETS[name]))
        else:
            left_out[name] = why
    return systems, left_out


def run_systems(cache, corpus: PreparedCorpus, protocol: str, folds: list[Fold], systems: list[System],
                er_config: TrainConfig, baseline_config: TrainConfig, recipe: Recipe = Recipe(), beam: int = 4,
                zero_shot: int | None | bool = False, model: str | None = None,
                progress: Callable[[str], None] | None = None,
                system_folds: Mapping[str, int | None] | None = None) -> FoldResults:
    """Every fold of `corpus`: the conventional method, each system, and (`zero_shot`: how many test
    utterances per fold, None for all, False for none) the untouched Whisper's transcripts.
    `system_folds` limits a system (by name) to the first n folds (None: all), e.g. an ablation
    that the CPU budget runs on one fold only.

    `cache` is the FeatureCache of the Whisper model (its `whisper` is the template every system is
    copied from). Predictions carry `y_pred` (None for a system without emotion), `gender_true`,
    `gender_pred`, `text_true`, `text_pred`, `fallback` and `path`; runs the training records plus
    decoding time and fallbacks.
    """
    template, model = cache.whisper, model or cache.model_name
    language = corpus.manifest["language"].iloc[0]
    precision = resolve_precision(er_config.precision, next(template.model.parameters()).device.type)
    X, inputs = corpus_inputs(cache, corpus.manifest, recipe.inputs, precision, recipe.encoder_layers)
    rows, y, m = rows_of(corpus.manifest), np.asarray(corpus.labels()), corpus.manifest
    out = Collector()
    limits = {name: len(folds) if n is None else n for name, n in (system_folds or {}).items()}
    for index, fold in enumerate(folds):
        truth = {"gender_true": m["gender"].to_numpy()[fold.test], "text_true": m["text"].to_numpy()[fold.test],
                 "path": m["path"].to_numpy()[fold.test]}
        keys = {"corpus": corpus.name, "protocol": protocol, "model": model, "fold": fold.name}
        y_pred, result = conventional_fold(template, X, y, fold, len(corpus.classes), baseline_config,
                                           finetune=recipe.mode == "finetune", top_layers=recipe.encoder_layers)
        out.add(prediction_rows(corpus, fold, y_pred, protocol=protocol, model=model, method="conventional",
                                **truth, fallback=False), result, **keys, method="conventional")
        for system in (s for s in systems if index < limits.get(s.name, len(folds))):
            decoded, result, decode_s = run_fold(template, corpus.classes, language, system, fold, inputs, rows,
                                                 er_config, er_config.seed, recipe, beam)
            out.add(prediction_rows(
                corpus, fold, decoded["emotion"] if "ser" in system.tasks else None, protocol=protocol, model=model,
                method=system.name, **truth, fallback=decoded["fallback"].to_numpy(),
                gender_pred=decoded["gender"].to_numpy() if "gender" in system.tasks else None,
                text_pred=decoded["text"].to_numpy() if "asr" in system.tasks else None),
                result, **keys, method=system.name, valid_metric=system.metric, decode_s=decode_s,
                fallbacks=int(decoded["fallback"].sum()))
            if progress:
                progress(f"{corpus.name} {fold.name} {system.name}: {result.steps} steps ({result.stop_reason})")
        if zero_shot is not False:
            sample = np.sort(np.random.default_rng(er_config.seed).permutation(len(fold.test))[:zero_shot])
            start = time.perf_counter()
            texts = zero_shot_transcripts(template, [load_audio(m["path"].iloc[fold.test[i]]) for i in sample],
                                          language, beam=beam)
            text_pred = np.full(len(fold.test), None, dtype=object)
            text_pred[sample] = texts
            out.add(prediction_rows(corpus, fold, None, protocol=protocol, model=model, method="zero-shot Whisper",
                                    **truth, text_pred=text_pred), None, **keys, method="zero-shot Whisper",
                    decode_s=time.perf_counter() - start, utterances=len(sample))
    return out.result()
