"""Shendabadi et al.'s two studies on frozen Whisper features, as fold loops (notebooks 01 and 06).

`pooling_comparison`: the same hidden state of the same folds feeds heads that differ only in the
pooling (mean, multi-head attentive average, multi-head QKV; `heads.pooling`). `layer_study`: one head
per hidden state of the encoder (front end, every layer) and one on their learned weighted sum, per
model and corpus; `pick_on_validation` (evaluation) then chooses a layer per fold on validation
speakers only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from ...data.folds import Fold
from ...data.prepare import PreparedCorpus
from ...heads.classifier import PooledClassifier, count_parameters
from ...parallel import run_jobs
from ...training.classify import feature_stats, train_and_predict
from ...training.predictions import Collector, FoldResults, prediction_rows
from ...training.runtime import seed_everything
from ...training.trainer import TrainConfig

WEIGHTED = "weighted sum"  # the layer study's head on all hidden states, mixed by learned softmax weights


def fit_folds(X, y: np.ndarray, folds: Sequence[Fold], n_classes: int, pooling: str, head: dict,
              config: TrainConfig, num_layers: int | None = None) -> list:
    """One seeded head per fold on the same inputs: [(test predictions, TrainResult, parameters)].

    A job of `serlib.parallel`: `pooling_comparison` sends one fold per job (attentive heads cost
    far more than mean pooling, and small jobs keep every core busy), `layer_study` one layer's
    inputs with all its folds (the inputs are copied to a worker once per layer)."""
    out = []
    for fold in folds:
        seed_everything(config.seed)
        net = PooledClassifier(X[0].shape[-1], n_classes, pooling, **head, num_layers=num_layers)
        y_pred, result = train_and_predict(net, X, y, fold, n_classes, config)
        out.append((y_pred, result, count_parameters(net)))
    return out


def pooling_comparison(corpus: PreparedCorpus, inputs: dict[str, object], folds: dict[str, list[Fold]],
                       methods: Sequence[str], head: dict, config: TrainConfig, model: str = "",
                       method_names: dict[str, str] | None = None) -> FoldResults:
    """Every fold of every protocol of one corpus, one head per pooling method, the methods spread
    over the CPU's cores (`serlib.parallel`).

    `inputs` holds the pooled features under "mean" and the frames under "frames" (what the
    attention poolings read). Runs record the head's parameter count; `models[method]` keeps the
    last fold's model (and its fold) for inspecting the attention.
    """
    y, n_classes = np.asarray(corpus.labels()), len(corpus.classes)
    names = method_names or {}
    every = [(protocol, fold) for protocol, part in folds.items() for fold in part]
    # one job per (fold, method): attentive and QKV heads cost far more than mean pooling, and
    # small jobs keep both cores busy to the end
    jobs = [(inputs["mean" if method == "mean" else "frames"], y, [fold], n_classes, method, head, config)
            for _, fold in every for method in methods]
    fits = iter(run_jobs(fit_folds, jobs, f"{corpus.name}: pooling heads", config.device,
                          progress=config.progress))
    out = Collector()
    for protocol, fold in every:
        for method in methods:
            (y_pred, result, parameters), = next(fits)
            label = names.get(method, method)
            out.add(prediction_rows(corpus, fold, y_pred, protocol=protocol, model=model, method=label,
                                    pooling=method), result, corpus=corpus.name, protocol=protocol,
                    model=model, method=label, fold=fold.name, pooling=method, parameters=parameters)
            out.models[method] = (result.model, fold)
    return out.result()


@torch.no_grad()
def attention_weights(model, frames: Sequence[torch.Tensor], fold: Fold, index: int) -> np.ndarray:
    """The attention weights [heads, T] a pooling head gives test utterance `fold.test[index]`, its
    frames standardised with the fold's training statistics as in training, on the model's device
    (a GPU after fine-tuning there)."""
    mean, std = feature_stats(frames, fold.train)
    x = (frames[fold.test[index]].float() - mean) / std
    device = next(model.parameters()).device
    mask = torch.ones(1, x.shape[0], dtype=torch.bool, device=device)
    return model.attention(x[None].to(device), mask)[0].float().cpu().numpy()


def layer_study(corpus: PreparedCorpus, protocol: str, folds: list[Fold], n_states: int,
                features: Callable[[int | str], object], pooling: str, head: dict, config: TrainConfig,
                model: str = "") -> FoldResults:
    """One head per hidden state (0 = front end ... n_states - 1 = encoder output) and one on their
    learned weighted sum (`WEIGHTED`), on every fold; `features(layer)` gives a layer's inputs (all
    of them, stacked, for WEIGHTED). Predictions and runs carry `layer`; `models["weights"]` holds the
    learned layer weights per fold."""
    y, n_classes = np.asarray(corpus.labels()), len(corpus.classes)
    layers = [*range(n_states), WEIGHTED]
    jobs = [(features(layer), y, folds, n_classes, pooling, head, config, n_states if layer == WEIGHTED else None)
            for layer in layers]
    out = Collector()
    weights = []
    for layer, fits in zip(layers, run_jobs(fit_folds, jobs, f"{corpus.name}: one head per layer",
                                                 config.device, progress=config.progress)):
        for fold, (y_pred, result, parameters) in zip(folds, fits):
            out.add(prediction_rows(corpus, fold, y_pred, protocol=protocol, model=model, method=str(layer),
                                    layer=layer), result, corpus=corpus.name, protocol=protocol, model=model,
                    method=str(layer), fold=fold.name, layer=layer, parameters=parameters)
            if layer == WEIGHTED:
                weights += [{"model": model, "corpus": corpus.name, "fold": fold.name, "layer": k, "weight": float(w)}
                            for k, w in enumerate(result.model.layer_weights().detach())]
    out.models["weights"] = pd.DataFrame(weights)
    return out.result()
