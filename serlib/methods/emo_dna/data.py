"""Emo-DNA's data: a source-target pair on their shared classes, with the target's labels kept away.

The target side enters training only as features plus a manifest *without* labels: `fit_uda`
refuses a target manifest that still carries emotions (`TargetLabelsError`); `without_labels` hands
it over. The target's labels (`PairData.target_truth`) are read after training, for scoring and
for the pseudo-label report only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


class TargetLabelsError(ValueError):
    """Target labels were handed to the training path."""


def without_labels(manifest: pd.DataFrame) -> pd.DataFrame:
    """A copy of a target manifest with its emotion column removed: what `fit_uda` accepts."""
    return manifest.drop(columns=["emotion"], errors="ignore").copy()


def check_unlabelled(target: pd.DataFrame) -> None:
    """TargetLabelsError if the target manifest still carries any emotion label."""
    if not isinstance(target, pd.DataFrame) or "utt_id" not in target.columns:
        raise TypeError("the target must be a manifest DataFrame with an utt_id column (labels removed)")
    if "emotion" in target.columns and target["emotion"].notna().any():
        raise TargetLabelsError("the target manifest carries emotion labels; training must never see them: "
                                "pass without_labels(manifest)")


def shared_classes(source_classes: list[str], target_classes: list[str], requested: list[str] | None = None) -> list[str]:
    """The class set of a pair: `requested`, or every class both corpora have (in the source's order)."""
    both = [c for c in source_classes if c in target_classes]
    if requested:
        missing = [c for c in requested if c not in both]
        if missing:
            raise ValueError(f"classes {missing} are not in both corpora (shared: {both})")
        both = list(requested)
    if len(both) < 2:
        raise ValueError(f"the corpora share {both or 'no class'}; cross-corpus training needs at least 2")
    return both


def standardise(source_x: np.ndarray, target_x: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Z-scored features: `source` uses the source corpus' statistics for both corpora; `per_corpus`
    uses each corpus' own (the target's mean and deviation need no labels, so this is fair in UDA).
    """
    def z(x, ref):
        return ((x - ref.mean(0)) / (ref.std(0) + 1e-6)).astype(np.float32)

    if mode == "source":
        return z(source_x, source_x), z(target_x, source_x)
    if mode == "per_corpus":
        return z(source_x, source_x), z(target_x, target_x)
    raise ValueError(f"unknown standardisation {mode!r}: use 'source' or 'per_corpus'")


@dataclass
class PairData:
    """A labelled source and an unlabelled target on their shared classes, features standardised."""

    name: str  # "source -> target", as results.csv names it
    source: str
    target_name: str
    classes: list[str]
    xs: np.ndarray
    xt: np.ndarray
    source_labels: np.ndarray
    target: pd.DataFrame  # the target manifest without its emotion column: what training gets
    target_truth: pd.Series  # the target's class indices by utt_id: scoring only

    @property
    def title(self) -> str:
        return f"{self.source} → {self.target_name}"


def pair_data(source, target, source_x: np.ndarray, target_x: np.ndarray, classes: list[str] | None = None,
              standardisation: str = "per_corpus") -> PairData:
    """The pair's rows on the shared classes (`classes`, or every class both have), standardised."""
    shared = shared_classes(source.classes, target.classes, classes)
    ms, mt = (c.manifest[c.manifest["emotion"].isin(shared)] for c in (source, target))
    xs, xt = standardise(source_x[ms.index], target_x[mt.index], standardisation)
    return PairData(f"{source.name}->{target.name}", source.name, target.name, shared, xs, xt,
                    ms["emotion"].map(shared.index).to_numpy(), without_labels(mt.reset_index(drop=True)),
                    pd.Series(mt["emotion"].map(shared.index).to_numpy(), index=mt["utt_id"]))
