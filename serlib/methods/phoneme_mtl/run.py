"""Phoneme-MTL's fold loop (notebook 04): the lambda sweep per fold, and its evaluation.

Every (fold, lambda) run starts from the same seed, trains with the shared trainer (validation UA
picks and averages checkpoints) and is scored on the fold's test speakers: emotion predictions, and
the auxiliary head's greedy CTC output against the reference labels.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from ...data.audio import load_audio
from ...data.folds import Fold
from ...data.phonemes import PHONEME_CLASSES
from ...data.prepare import PreparedCorpus
from ...encoders.backbones import load_ssl, load_whisper, whisper_size
from ...encoders.encoding import log_mel
from ...parallel import run_jobs, worker_count
from ...progress import progress_bar
from ...training.classify import FeatureDataset, accuracy_metrics, fit_precision, predict, select_rows
from ...training.precision import autocast
from ...training.predictions import Collector, FoldResults, prediction_rows
from ...training.runtime import seed_everything
from ...training.trainer import TrainConfig, fit
from .data import PhonemeDataset, PhonemeTargets, standardised_frames
from .loss import freeze_unused, mtl_loss
from .model import FinetuneBackbone, PartialBackbone, PhonemeMTL, class_logits, greedy_ctc_decode


@torch.no_grad()
def decode_phonemes(model: PhonemeMTL, dataset: PhonemeDataset, batch_size: int = 64, precision: str = "no"):
    """Greedy CTC output of the phoneme head for every item, in order: the tagged label ids, and the
    class ids (1..6) decoded from the class posterior (emotion tags summed out, `class_logits`), under
    the autocast of `precision` (the one training validated in)."""
    model.eval()
    device = next(model.parameters()).device
    tagged, classes = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=dataset.collate):
        with autocast(device, precision):
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
class SweepResult(FoldResults):
    """The lambda sweep's FoldResults (predictions and runs carry `lambda` and `seed`), plus the
    auxiliary head's decoded labels and the learned fusion weights."""

    phonemes: pd.DataFrame = None  # corpus, lambda, seed, fold, utt_id, emotion, (class_)reference, (class_)hypothesis
    layer_weights: pd.DataFrame = None  # corpus, lambda, seed, fold, state, weight


def model_inputs(manifest: pd.DataFrame, cache=None, backbone=None, to_input=None, group: int = 1):
    """The sweep's input per manifest row and its frame count, and the cache's report.

    With `cache` (frozen or partial mode): cached states averaged in groups of `group` frames,
    every state (frozen, `backbone` None) or those below a `PartialBackbone`'s layers. Without:
    `to_input` of each row's audio, the raw input of a fine-tuned `backbone`.
    """
    if cache is not None:
        report = cache.ensure(manifest).summary()
        layers = None if backbone is None else list(range(backbone.start + 1))
        inputs = cache.frames(manifest, layers=layers, group=group)
        return inputs, [x.shape[-2] for x in inputs], report
    inputs = [to_input(load_audio(path)) for path in progress_bar(manifest["path"], "inputs")]
    return inputs, [backbone.output_frames(x.shape[0]) for x in inputs], {}


@dataclasses.dataclass
class ModelSpec:
    """How to build one sweep model: `PhonemeMTL`'s arguments, each call a fresh model with its own
    copy of the backbone (a picklable stand-in for a closure, so runs can go to worker processes)."""

    dim: int
    num_layers: int
    num_emotions: int
    num_phoneme_labels: int
    dropout: float = 0.1
    backbone: torch.nn.Module | None = None
    shared_layer: dict | None = None

    def __call__(self) -> PhonemeMTL:
        return PhonemeMTL(self.dim, self.num_layers, self.num_emotions, self.num_phoneme_labels, self.dropout,
                          backbone=copy.deepcopy(self.backbone), shared_layer=self.shared_layer)


def sweep_fold(inputs: Sequence[torch.Tensor], targets: PhonemeTargets, y: np.ndarray, n_classes: int, fold: Fold,
               lambdas: Sequence[float], make_model: Callable[[], PhonemeMTL], config: TrainConfig,
               frozen: bool) -> list:
    """Each of `lambdas` on one fold: [(lambda, test predictions, TrainResult without its model, tagged and
    class decodings of the phoneme head or None at lambda 0, fusion weights)]. A job of `serlib.parallel`."""
    frames = standardised_frames(inputs, fold.train) if frozen else inputs
    means = torch.stack([f.mean(dim=-2) for f in frames]) if frozen else None

    def part(rows, pooled: bool):
        if pooled:
            return FeatureDataset(means[rows], y[rows])
        return PhonemeDataset(select_rows(frames, rows), y[rows], [targets.labels[i] for i in rows], packed=frozen)

    out = []
    for lam in lambdas:
        seed_everything(config.seed)
        net = freeze_unused(make_model(), lam)
        pooled = frozen and lam == 0 and net.takes_means
        train, test = part(fold.train, pooled), part(fold.test, pooled)
        valid = part(fold.valid, pooled) if len(fold.valid) else None
        result = fit(net, train, valid, mtl_loss(lam), accuracy_metrics(n_classes), config, collate_fn=train.collate)
        net = result.model
        y_pred, _ = predict(net, test, precision=fit_precision(config))
        # at lambda 0 the phoneme head never trained: nothing to decode
        decoded = decode_phonemes(net, test, precision=fit_precision(config)) if lam > 0 else None
        # the run record needs no model: dropping it keeps one model alive at a time (a fine-tuned
        # backbone per fold and lambda would otherwise pile up on the GPU) and nothing large to send back
        out.append((lam, y_pred, dataclasses.replace(result, model=None), decoded, net.layer_weights().detach().cpu()))
    return out


def lambda_sweep(
    corpus: PreparedCorpus, protocol: str, inputs: Sequence[torch.Tensor], targets: PhonemeTargets,
    folds: Sequence[Fold], lambdas: Sequence[float], make_model: Callable[[], PhonemeMTL], config: TrainConfig,
    frozen: bool = True, model: str = "", method: Callable[[float], str] = "lambda={:g}".format,
    progress: bool = True,
) -> SweepResult:
    """Train and test one model per (fold, lambda); the same seed and data order for every lambda.

    frozen: `inputs` are cached hidden states [L, T, D] per utterance, standardised per fold with
    its training statistics (not frozen: the backbone's inputs as given, e.g. the raw cached states
    below a `PartialBackbone`'s layers); lambda = 0 then trains on the per-utterance means of those frames,
    which gives the emotion head exactly the input it would compute from the frames (see
    `PhonemeMTL.forward`) at a fraction of the cost, unless the model has a shared block (not
    `takes_means`): then it trains on frames. Otherwise `inputs` are the backbone's raw inputs.
    `method(lambda)` names each run in the tables. The runs are spread over the CPU's cores
    (`serlib.parallel`; `make_model` must then be picklable, e.g. a `ModelSpec`): each fold's lambdas
    in as many groups as there are workers, so that one fold (or an odd number) keeps every core busy;
    every run seeds itself, so the grouping changes no result.
    """
    out = Collector()
    phones, weights = [], []
    y = np.asarray(corpus.labels())
    utt_ids = corpus.manifest["utt_id"].to_numpy()
    workers = worker_count(len(folds) * len(lambdas), config.device, torch.get_num_threads())
    groups = [[lambdas[i] for i in g] for g in np.array_split(np.arange(len(lambdas)), min(workers, len(lambdas)))]
    jobs = [(inputs, targets, y, len(corpus.classes), fold, group, make_model, config, frozen)
            for fold in folds for group in groups]
    fits = run_jobs(sweep_fold, jobs, f"{corpus.name}: folds x lambda groups", config.device, progress)
    per_fold = [sum(fits[i * len(groups):(i + 1) * len(groups)], []) for i in range(len(folds))]
    for fold, runs in zip(folds, per_fold):
        for lam, y_pred, result, decoded, fusion in runs:
            keys = {"lambda": lam, "seed": config.seed}
            out.add(prediction_rows(corpus, fold, y_pred, protocol=protocol, model=model, method=method(lam), **keys),
                    result, corpus=corpus.name, protocol=protocol, model=model, method=method(lam), fold=fold.name,
                    **keys)
            if decoded is not None:
                tagged, classes = decoded
                phones.append(pd.DataFrame({
                    "corpus": corpus.name, **keys, "fold": fold.name, "utt_id": utt_ids[fold.test],
                    "emotion": y[fold.test],
                    "reference": [label_string(targets.labels[i], targets.names) for i in fold.test],
                    "hypothesis": [label_string(d, targets.names) for d in tagged],
                    "class_reference": [" ".join(targets.classes[i]) for i in fold.test],
                    "class_hypothesis": [" ".join(PHONEME_CLASSES[k - 1] for k in d) for d in classes]}))
            weights += [{"corpus": corpus.name, **keys, "fold": fold.name, "state": k, "weight": float(w)}
                        for k, w in enumerate(fusion)]
    phones = pd.concat(phones, ignore_index=True) if phones else pd.DataFrame(
        columns=["corpus", "lambda", "seed", "fold", "utt_id", "emotion", "reference", "hypothesis", "class_reference",
                 "class_hypothesis"])
    return SweepResult(**vars(out.result()), phonemes=phones, layer_weights=pd.DataFrame(weights))


def phoneme_scores(phonemes: pd.DataFrame) -> pd.DataFrame:
    """Per (corpus, lambda, fold) and pooled over folds: the error rate of the tagged labels (class and
    emotion must both be right), of the classes (decoded from the class posterior, tags summed out),
    and the share of decoded tagged labels that carry the utterance's own emotion."""
    rows = []
    for (corpus, lam), part in phonemes.groupby(["corpus", "lambda"], sort=True):
        for fold, sub in [*part.groupby("fold", sort=True), ("pooled", part)]:
            rows.append({
                "corpus": corpus, "lambda": lam, "fold": fold,
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


def partial_backbone(whisper, k: int) -> PartialBackbone:
    """The backbone of `mode: partial`: a float32 copy of the Whisper encoder's top k layers."""
    return PartialBackbone(copy.deepcopy(whisper.model.model.encoder).float(), k)
