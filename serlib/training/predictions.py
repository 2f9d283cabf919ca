"""The predictions table and the run records every method's fold loop returns, in one schema.

Predictions: one row per test utterance and system, with the keys `corpus, protocol, model, method,
fold, utt_id`, the utterance's `speaker` (the unit of the paired bootstrap), the truth `y_true` and the prediction `y_pred` (class names; None where a system does
not recognise emotion), and `speaker_independent` (the fold's); methods add their own columns
(gender, text, fallback, seed, layer, lambda, ...). Runs: one record per trained model, with how
its training ended (`stop_reason`, best step, validation score, steps, seconds) and its validation
curve kept apart in `histories`. `evaluation.score` scores any such table the same way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .trainer import TrainResult

KEYS = ["corpus", "protocol", "model", "method", "fold"]
PREDICTION_COLUMNS = [*KEYS, "utt_id", "speaker", "y_true", "y_pred", "speaker_independent"]
RUN_COLUMNS = [*KEYS, "steps", "best_step", "valid_score", "stop_reason", "train_s"]


def prediction_rows(corpus, fold, y_pred: Sequence | None, *, protocol: str, model: str, method: str,
                    **extra) -> pd.DataFrame:
    """A fold's test rows of `corpus` (a PreparedCorpus): truth from its manifest, `y_pred` as class
    names or class indices (None: the system predicts no emotion), plus `extra` columns (scalars or
    one value per test row)."""
    m, test = corpus.manifest, np.asarray(fold.test)
    y = np.asarray(corpus.labels())[test]
    if y_pred is not None:
        y_pred = list(y_pred)
        if len(y_pred) != len(test):
            raise ValueError(f"{len(y_pred)} predictions for the {len(test)} test rows of fold {fold.name}")
        y_pred = [corpus.classes[int(p)] if isinstance(p, (int, np.integer)) else p for p in y_pred]
    return pd.DataFrame({"corpus": corpus.name, "protocol": protocol, "model": model, "method": method,
                         "fold": fold.name, "utt_id": m["utt_id"].to_numpy()[test],
                         "speaker": m["speaker"].to_numpy()[test],
                         "y_true": [corpus.classes[i] for i in y], "y_pred": y_pred,
                         "speaker_independent": fold.speaker_independent, **extra})


def run_record(result: TrainResult | None, **keys) -> dict:
    """How one training run ended, for the runs table (None: not trained by the shared trainer, e.g.
    zero-shot transcripts or a scikit-learn model; `stop_reason` and `train_s` may say more)."""
    if result is None:
        return {"steps": 0, "best_step": None, "valid_score": float("nan"), "stop_reason": "not trained",
                "train_s": 0.0, **keys}
    return {**keys, "steps": result.steps, "best_step": result.best_step, "valid_score": result.best_score,
            "stop_reason": result.stop_reason, "train_s": result.wall_s, "effective_batch": result.effective_batch,
            "processes": result.processes, "utt_per_s": result.utt_per_s, "peak_memory_gb": result.peak_memory_gb}


@dataclass
class FoldResults:
    """What a method's fold loop returns (see the module notes)."""

    predictions: pd.DataFrame
    runs: pd.DataFrame
    histories: pd.DataFrame  # keys of the run, then step, train_loss, lr, validation metrics, elapsed_s
    wall_s: float
    models: dict = field(default_factory=dict)  # trained models kept for inspection, by the loop's own keys


class Collector:
    """Gathers a fold loop's predictions, run records and validation curves into FoldResults."""

    def __init__(self):
        self.predictions: list[pd.DataFrame] = []
        self.runs: list[dict] = []
        self.histories: list[pd.DataFrame] = []
        self.models: dict = {}
        self.started = time.perf_counter()

    def add(self, predictions: pd.DataFrame | None, result: TrainResult | None, **keys) -> None:
        """One trained (or untrained) system on one fold: its test rows, and how its training went."""
        if predictions is not None:
            self.predictions.append(predictions)
        self.runs.append(run_record(result, **keys))
        if result is not None and len(result.history):
            self.histories.append(result.history.assign(**{k: v for k, v in keys.items() if np.isscalar(v)}))

    def result(self) -> FoldResults:
        runs = pd.DataFrame(self.runs)
        return FoldResults(
            predictions=pd.concat(self.predictions, ignore_index=True) if self.predictions else pd.DataFrame(
                columns=PREDICTION_COLUMNS),
            runs=runs, histories=pd.concat(self.histories, ignore_index=True) if self.histories else pd.DataFrame(),
            wall_s=time.perf_counter() - self.started, models=self.models)


def combine(results: list[FoldResults]) -> FoldResults:
    """Several fold loops' results (e.g. one per corpus) as one."""
    if not results:
        raise ValueError("no results to combine")
    def joined(name: str) -> pd.DataFrame:
        parts = [getattr(r, name) for r in results if len(getattr(r, name))]
        return pd.concat(parts, ignore_index=True) if parts else getattr(results[0], name)

    models = {}
    for r in results:
        models.update(r.models)
    return FoldResults(predictions=joined("predictions"), runs=joined("runs"), histories=joined("histories"),
                       wall_s=sum(r.wall_s for r in results), models=models)
