"""Emo-DNA's fold loop (notebook 05): every pair, method and seed, scored on the target afterwards.

For each source-target pair (`data.PairData`), each method (Emo-DNA, its ablations and baselines)
and each seed, `fit_uda` trains on the source's labels and the target's features only; the target's
labels are read after training, to score its predictions and its pseudo-labels. The "fold" of a
cross-corpus run is its seed (the whole target corpus is the test set).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...parallel import run_jobs
from ...training.classify import FeatureDataset, predict
from ...training.predictions import Collector, FoldResults
from .adaptation import UDAConfig, fit_uda
from .data import PairData
from .pseudo_labels import pseudo_label_report

PROTOCOL = "uda_whole_corpus"  # results.csv's protocol of a cross-corpus run: the whole target corpus


@dataclass
class CrossCorpusResults(FoldResults):
    """FoldResults (predictions carry `pair` and `seed`), the pseudo-label reports and the thresholds
    over training; `models[(pair, method, seed)]` holds every trained network."""

    pseudo_labels: pd.DataFrame = None  # pair, method, seed, step, class, selected, correct
    thresholds: pd.DataFrame = None  # pair, method, seed, step, pseudo_label, class, threshold


def cross_corpus(pairs: Mapping[str, PairData], methods: Sequence[str], seeds: Sequence[int], train: dict,
                 device: str = "cpu", model: str = "") -> CrossCorpusResults:
    """Train every method with every seed on every pair (`train`: the profile's UDAConfig options),
    the runs spread over the CPU's cores (`serlib.parallel`; each run seeds itself)."""
    jobs = [(d, method, seed, train, device, model) for d in pairs.values() for method in methods for seed in seeds]
    out = Collector()
    pseudo, thresholds = [], []
    runs = run_jobs(one_run, jobs, "cross-corpus runs", device, threads=1)  # fit_uda trains on one thread
    for (d, method, seed, *_), run in zip(jobs, runs):
        predictions, record, history, labels, threshold, net = run
        out.predictions.append(predictions)
        out.runs.append(record)
        out.histories.append(history)
        pseudo.append(labels)
        thresholds.append(threshold)
        out.models[(d.title, method, seed)] = net
    return CrossCorpusResults(**vars(out.result()), pseudo_labels=pd.concat(pseudo, ignore_index=True),
                              thresholds=pd.concat(thresholds, ignore_index=True))


def one_run(d: PairData, method: str, seed: int, train: dict, device: str, model: str):
    """One (pair, method, seed) run: trained on the source's labels and the target's features, then
    scored with the target's labels. Returns its prediction rows, run record, history, pseudo-label
    report, thresholds and trained network."""
    y_true = np.array(d.target_truth)
    config = UDAConfig.for_method(method, **train, seed=seed, device=device)
    result = fit_uda(d.xs, d.source_labels, d.xt, d.target, len(d.classes), config)
    y_pred, _ = predict(result.model, FeatureDataset(d.xt, y_true))  # the target labels, read now
    keys = {"pair": d.title, "method": method, "seed": seed}
    predictions = pd.DataFrame({
        "corpus": d.name, "protocol": PROTOCOL, "model": model, "method": method, "fold": f"seed {seed}",
        "utt_id": d.target["utt_id"], "speaker": d.target["speaker"], "y_true": [d.classes[i] for i in y_true],
        "y_pred": [d.classes[i] for i in y_pred], "speaker_independent": True, **keys})
    record = {"corpus": d.name, "protocol": PROTOCOL, "model": model, "method": method, "fold": f"seed {seed}",
              "steps": config.max_steps, "best_step": None, "valid_score": float("nan"), "train_s": result.wall_s,
              **keys, "stop_reason": "step_budget (no target labels to stop by)"}
    named = [d.classes[i] for i in result.thresholds["pseudo_label"]]
    return (predictions, record, result.history.assign(**keys),
            pseudo_label_report(result.pseudo_labels, d.target_truth, d.classes).assign(**keys),
            result.thresholds.assign(**keys).assign(**{"class": named}), result.model)
