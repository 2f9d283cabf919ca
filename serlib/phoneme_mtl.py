"""Phoneme-MTL study glue (notebook 04): targets for a corpus, the lambda sweep per fold, evaluation.

The notebook calls these; the model and losses live in models/phoneme_mtl.py, the phoneme tables in
phonemes.py. Every (fold, lambda) run starts from the same seed, trains with the shared trainer
(validation UA picks and averages checkpoints) and is scored on the fold's test speakers: emotion
predictions, and the auxiliary head's greedy CTC output against the reference labels.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .classify import FeatureDataset, accuracy_metrics, collate_frames, feature_stats, predict, select_rows
from .data.folds import Fold
from .data.prepare import PreparedCorpus
from .models.backbones import load_ssl, load_whisper, whisper_size
from .models.encoding import log_mel
from .models.phoneme_mtl import FinetuneBackbone, PhonemeMTL, class_logits, greedy_ctc_decode, mtl_loss
from .phonemes import PHONEME_CLASSES, ctc_min_frames, label_names, tag_with_emotion, text_classes
from .train import TrainConfig, fit, seed_everything


def require_transcripts(corpus: PreparedCorpus) -> None:
    """Refuse a corpus whose rows lack transcripts: the auxiliary task is built from the text."""
    empty = corpus.manifest["text"].fillna("").astype(str).str.strip() == ""
    if empty.all():
        raise ValueError(f"{corpus.name} has no transcripts (the manifest's `text` column is empty), so "
                         "Phoneme-MTL cannot build its phoneme targets; use a corpus with text (RAVDESS, IEMOCAP)")
    if empty.any():
        ids = corpus.manifest.loc[empty, "utt_id"].head(5).tolist()
        raise ValueError(f"{corpus.name}: {int(empty.sum())} of {len(empty)} rows have no transcript (e.g. {ids}); "
                         "select only rows with text before building phoneme targets")


@dataclasses.dataclass
class PhonemeTargets:
    """The auxiliary task's targets, one entry per manifest row."""

    classes: list[list[str]]  # phoneme classes (S, F, N, L, V, Vs) per row
    labels: list[list[int]]  # emotion-tagged label ids (blank 0 never occurs)
    names: list[str]  # label names by id: <blank>, S0, F0, ..., Vs{C-1}
    sources: dict[str, str]  # word -> where its pronunciation came from (CMUdict or espeak-ng)


def build_targets(corpus: PreparedCorpus) -> PhonemeTargets:
    """Text -> phoneme classes -> labels tagged with each row's emotion (index in `corpus.classes`)."""
    require_transcripts(corpus)
    m = corpus.manifest
    classes: list[list[str] | None] = [None] * len(m)
    sources: dict[str, str] = {}
    for language, rows in m.groupby(m["language"].fillna("").astype(str), sort=True).indices.items():
        found, src = text_classes(m["text"].to_numpy()[rows].tolist(), language or "en")
        sources |= src
        for i, c in zip(rows, found):
            classes[i] = c
    n = len(corpus.classes)
    labels = [tag_with_emotion(c, e, n) for c, e in zip(classes, corpus.labels())]
    return PhonemeTargets(classes, labels, label_names(n), sources)


def ctc_feasible(frame_counts: Sequence[int], labels: Sequence[Sequence[int]]) -> np.ndarray:
    """Whether each row has enough frames for CTC (labels plus one blank per repeated neighbour)."""
    return np.array([t >= ctc_min_frames(y) for t, y in zip(frame_counts, labels)], dtype=bool)


def keep_feasible(corpus: PreparedCorpus, inputs: list, targets: PhonemeTargets, frame_counts: Sequence[int]):
    """Drop the rows whose target needs more frames than they have (CTC could not align them).

    Returns (corpus, inputs, targets) without them and a table of the dropped rows, so the notebook
    reports them; folds are then made from the remaining manifest.
    """
    keep = ctc_feasible(frame_counts, targets.labels)
    m = corpus.manifest
    dropped = pd.DataFrame({"utt_id": m["utt_id"].to_numpy()[~keep], "frames": np.asarray(frame_counts)[~keep],
                            "frames needed": [ctc_min_frames(y) for y, ok in zip(targets.labels, keep) if not ok]})
    if keep.all():
        return corpus, inputs, targets, dropped
    rows = np.flatnonzero(keep)
    corpus = dataclasses.replace(corpus, manifest=m.iloc[rows].reset_index(drop=True))
    targets = dataclasses.replace(targets, classes=[targets.classes[i] for i in rows],
                                  labels=[targets.labels[i] for i in rows])
    return corpus, [inputs[i] for i in rows], targets, dropped


class PhonemeDataset(FeatureDataset):
    """Frames, emotion label and phoneme label ids per utterance (standardised as FeatureDataset does).

    `packed` batches concatenate the frames instead of padding them (see `PhonemeMTL.fuse`).
    """

    def __init__(self, features, labels, targets: Sequence[Sequence[int]], stats=None, packed: bool = False):
        super().__init__(features, labels, stats)
        if len(targets) != len(labels):
            raise ValueError(f"{len(targets)} phoneme targets but {len(labels)} labels")
        self.targets = [torch.as_tensor(t, dtype=torch.long) for t in targets]
        self.collate = partial(collate_phonemes, packed=packed)

    def __getitem__(self, i):
        return (*super().__getitem__(i), self.targets[i])


def collate_phonemes(items, packed: bool = False) -> dict[str, torch.Tensor]:
    """Frames padded (`collate_frames`) or packed ([L, frames, D] and the mask), plus the CTC targets
    concatenated and their lengths."""
    xs, ys, targets = zip(*items)
    if packed:
        lengths = torch.tensor([x.shape[-2] for x in xs])
        mask = torch.arange(int(lengths.max()))[None, :] < lengths[:, None]
        batch = {"x": torch.cat(xs, dim=-2), "mask": mask, "y": torch.stack(ys)}
    else:
        batch = collate_frames(list(zip(xs, ys)))
    batch["targets"] = torch.cat(targets)
    batch["target_lengths"] = torch.tensor([len(t) for t in targets], dtype=torch.long)
    return batch


@torch.no_grad()
def decode_phonemes(model: PhonemeMTL, dataset: PhonemeDataset, batch_size: int = 64):
    """Greedy CTC output of the phoneme head for every item, in order: the tagged label ids, and the
    class ids (1..6) decoded from the class posterior (emotion tags summed out, `class_logits`)."""
    model.eval()
    device = next(model.parameters()).device
    tagged, classes = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=dataset.collate):
        _, logits, frame_mask = model(batch["x"].to(device), batch["mask"].to(device), with_phonemes=True)
        tagged += greedy_ctc_decode(logits, frame_mask)
        classes += greedy_ctc_decode(class_logits(logits, len(PHONEME_CLASSES)), frame_mask)
    return tagged, classes


def label_string(ids: Sequence[int], names: Sequence[str]) -> str:
    """Space-joined label names: `S3 Vs3 ...` (class and emotion index)."""
    return " ".join(names[i] for i in ids)


def split_label(label: str) -> tuple[str, int]:
    """`Vs3` -> (`Vs`, 3)."""
    match = re.fullmatch(r"([A-Za-z]+)(\d+)", label)
    if match is None or match[1] not in PHONEME_CLASSES:
        raise ValueError(f"{label!r} is not an emotion-tagged phoneme label")
    return match[1], int(match[2])


def phoneme_error_rate(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Label error rate (edits / reference labels) of space-joined label strings, with jiwer."""
    import jiwer

    return float(jiwer.wer(list(refs), list(hyps)))


def emotion_tag_accuracy(hyps: Sequence[str], emotions: Sequence[int]) -> float:
    """Share of decoded labels whose emotion index is the utterance's own (NaN if nothing was decoded)."""
    hits = total = 0
    for hyp, e in zip(hyps, emotions):
        tags = [split_label(label)[1] for label in hyp.split()]
        hits += sum(t == e for t in tags)
        total += len(tags)
    return hits / total if total else float("nan")


@dataclasses.dataclass
class SweepResult:
    predictions: pd.DataFrame  # lambda, fold, utt_id, y_true, y_pred (emotion, test rows)
    phonemes: pd.DataFrame  # lambda, fold, utt_id, emotion, (class_)reference, (class_)hypothesis strings
    layer_weights: pd.DataFrame  # lambda, fold, state, weight
    runs: pd.DataFrame  # lambda, fold, steps, best_step, valid_UA, stopped_early, train_s
    wall_s: float


def standardised_frames(frames: Sequence[torch.Tensor], rows: Sequence[int]) -> list[torch.Tensor]:
    """Every utterance's frames z-scored per hidden state and dimension with the statistics of `rows`
    (a fold's training part), in float32: done once per fold instead of once per batch."""
    mean, std = feature_stats(frames, rows)
    return [f.to(torch.float32, copy=True).sub_(mean).div_(std) for f in frames]


def lambda_sweep(
    inputs: Sequence[torch.Tensor], y: np.ndarray, targets: PhonemeTargets, folds: Sequence[Fold],
    lambdas: Sequence[float], class_names: Sequence[str], utt_ids: Sequence[str],
    make_model: Callable[[], PhonemeMTL], config: TrainConfig, frozen: bool = True, progress: bool = True,
) -> SweepResult:
    """Train and test one model per (fold, lambda); the same seed and data order for every lambda.

    frozen: `inputs` are cached hidden states [L, T, D] per utterance, standardised per fold with
    its training statistics; lambda = 0 then trains on the per-utterance means of those frames,
    which gives the emotion head exactly the input it would compute from the frames (see
    `PhonemeMTL.forward`) at a fraction of the cost, unless the model has a shared block (not
    `takes_means`): then it trains on frames. Otherwise `inputs` are the backbone's raw inputs.
    """
    start = time.perf_counter()
    preds, phones, weights, runs = [], [], [], []
    bar = tqdm(total=len(folds) * len(lambdas), desc="folds x lambdas", disable=not progress, mininterval=10)
    utt_ids = np.asarray(utt_ids)
    for fold in folds:
        frames = standardised_frames(inputs, fold.train) if frozen else inputs
        means = torch.stack([f.mean(dim=-2) for f in frames]) if frozen else None

        def part(rows, pooled: bool):
            if pooled:
                return FeatureDataset(means[rows], y[rows])
            return PhonemeDataset(select_rows(frames, rows), y[rows], [targets.labels[i] for i in rows], packed=frozen)

        for lam in lambdas:
            seed_everything(config.seed)
            model = make_model()
            pooled = frozen and lam == 0 and model.takes_means
            train, test = part(fold.train, pooled), part(fold.test, pooled)
            valid = part(fold.valid, pooled) if len(fold.valid) else None
            result = fit(model, train, valid, mtl_loss(lam), accuracy_metrics(len(class_names)), config,
                         collate_fn=train.collate)
            model = result.model
            y_pred, _ = predict(model, test)
            preds.append(pd.DataFrame({"lambda": lam, "fold": fold.name, "utt_id": utt_ids[fold.test],
                                       "y_true": [class_names[i] for i in y[fold.test]],
                                       "y_pred": [class_names[i] for i in y_pred]}))
            if lam > 0:  # at lambda 0 the phoneme head never trained: nothing to score
                tagged, classes = decode_phonemes(model, test)
                phones.append(pd.DataFrame({
                    "lambda": lam, "fold": fold.name, "utt_id": utt_ids[fold.test], "emotion": y[fold.test],
                    "reference": [label_string(targets.labels[i], targets.names) for i in fold.test],
                    "hypothesis": [label_string(d, targets.names) for d in tagged],
                    "class_reference": [" ".join(targets.classes[i]) for i in fold.test],
                    "class_hypothesis": [" ".join(PHONEME_CLASSES[k - 1] for k in d) for d in classes]}))
            weights += [{"lambda": lam, "fold": fold.name, "state": k, "weight": float(w)}
                        for k, w in enumerate(model.layer_weights().detach().cpu())]
            runs.append({"lambda": lam, "fold": fold.name, "steps": result.steps, "best_step": result.best_step,
                         "valid_UA": result.best_score, "stopped_early": result.stopped_early,
                         "train_s": round(result.wall_s, 1)})
            bar.update(1)
        frames = means = None  # free this fold's float32 copy before the next one is made
    bar.close()
    phones = pd.concat(phones, ignore_index=True) if phones else pd.DataFrame(
        columns=["lambda", "fold", "utt_id", "emotion", "reference", "hypothesis", "class_reference", "class_hypothesis"])
    return SweepResult(pd.concat(preds, ignore_index=True), phones, pd.DataFrame(weights), pd.DataFrame(runs),
                       time.perf_counter() - start)


def phoneme_scores(phonemes: pd.DataFrame) -> pd.DataFrame:
    """Per (lambda, fold) and pooled over folds: the error rate of the tagged labels (class and emotion
    must both be right), of the classes (decoded from the class posterior, tags summed out), and the
    share of decoded tagged labels that carry the utterance's own emotion."""
    rows = []
    for lam, part in phonemes.groupby("lambda", sort=True):
        for fold, sub in [*part.groupby("fold", sort=True), ("pooled", part)]:
            rows.append({
                "lambda": lam, "fold": fold,
                "tagged label error rate": phoneme_error_rate(sub["reference"], sub["hypothesis"]),
                "class error rate": phoneme_error_rate(sub["class_reference"], sub["class_hypothesis"]),
                "emotion tag accuracy": emotion_tag_accuracy(sub["hypothesis"], sub["emotion"]),
            })
    return pd.DataFrame(rows)


def is_whisper(name: str) -> bool:
    """Whether a backbone name (size, hub id or folder) names a Whisper model."""
    config = Path(name).expanduser() / "config.json"
    if config.is_file():
        return json.loads(config.read_text()).get("model_type") == "whisper"
    return whisper_size(name) is not None or "whisper" in name.lower()


def finetune_backbone(name: str, cache_dir=None) -> tuple[FinetuneBackbone, Callable[[np.ndarray], torch.Tensor], str]:
    """The raw-input backbone of `mode: finetune`, the function turning 16 kHz audio into its input
    (log-mels [frames, mels] for Whisper, the normalised waveform [samples, 1] for SSL models), and
    where its weights came from (for the run card)."""
    if is_whisper(name):
        whisper = load_whisper(name, cache_dir)
        extractor = whisper.feature_extractor
        return (FinetuneBackbone(whisper.model.model.encoder.float()),
                lambda audio: log_mel(extractor, audio).T, whisper.source)
    model, extractor = load_ssl(name)

    def waveform(audio: np.ndarray) -> torch.Tensor:
        values = extractor(audio, sampling_rate=16000, return_tensors="np").input_values[0]
        return torch.as_tensor(values, dtype=torch.float32)[:, None]

    return FinetuneBackbone(model.float()), waveform, f"transformers {name}"
