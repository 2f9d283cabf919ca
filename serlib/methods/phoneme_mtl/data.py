"""Phoneme-MTL's data: emotion-tagged phoneme targets of a corpus, CTC feasibility, training batches.

Text -> pronunciation (CMUdict, espeak-ng) -> the six phoneme classes (`data.phonemes`) -> labels
tagged with each utterance's emotion. Batches hold frames (padded, or packed without padding) with
the concatenated CTC targets and their lengths.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import partial

import numpy as np
import pandas as pd
import torch

from ...data.phonemes import ctc_min_frames, label_names, tag_with_emotion, text_classes
from ...data.prepare import PreparedCorpus
from ...training.classify import FeatureDataset, collate_frames, feature_stats


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


def standardised_frames(frames: Sequence[torch.Tensor], rows: Sequence[int]) -> list[torch.Tensor]:
    """Every utterance's frames z-scored per hidden state and dimension with the statistics of `rows`
    (a fold's training part), in float32: done once per fold instead of once per batch."""
    mean, std = feature_stats(frames, rows)
    return [f.to(torch.float32, copy=True).sub_(mean).div_(std) for f in frames]
