"""The conventional method's fold loop (notebook 01, and beside Whisper-ER in 02 and 03).

Encoder -> average pooling -> FC, trained with cross-entropy on every fold of every protocol: on
the cache's pooled states with the encoder frozen (standardised with each fold's training
statistics), or the whole encoder fine-tuned from log-mels. Validation speakers pick the
checkpoints; the best `top_k` are averaged.
"""

from __future__ import annotations

import time

import numpy as np

from ...data.folds import Fold
from ...data.prepare import PreparedCorpus
from ...training.classify import train_and_predict
from ...training.predictions import Collector, FoldResults, prediction_rows
from ...training.runtime import seed_everything
from ...training.trainer import TrainConfig, TrainResult
from .model import conventional_model


def conventional_fold(template, X, y: np.ndarray, fold: Fold, n_classes: int, config: TrainConfig,
                      finetune: bool = False, dropout: float = 0.1, top_layers: int = 0) -> tuple[np.ndarray, TrainResult]:
    """The conventional method on one fold: (predicted class indices of its test rows, TrainResult).

    A head on the pooled states X [N, D]; (`finetune`) the encoder trained with it from log-mels X;
    or (`top_layers` k) the encoder's top k layers trained with it on cached states X [T, D] of
    layer L - k, one per utterance (fed raw: the layers were trained on unstandardised states).
    """
    seed_everything(config.seed)  # the head's initial weights
    pooled = not finetune and not top_layers
    model = conventional_model(template, n_classes, X.shape[1] if pooled else None, finetune, dropout, top_layers)
    return train_and_predict(model, X, y, fold, n_classes, config, standardise=pooled)


def run_baseline(template, corpus: PreparedCorpus, X, folds: dict[str, list[Fold]], config: TrainConfig,
                 finetune: bool = False, dropout: float = 0.1, model: str = "", method: str = "conventional",
                 top_layers: int = 0) -> FoldResults:
    """Every fold of every protocol (`folds`: protocol -> folds) of one corpus (X and the modes as in
    `conventional_fold`)."""
    y = np.asarray(corpus.labels())
    out = Collector()
    for protocol, protocol_folds in folds.items():
        for fold in protocol_folds:
            y_pred, result = conventional_fold(template, X, y, fold, len(corpus.classes), config, finetune, dropout,
                                               top_layers)
            out.add(prediction_rows(corpus, fold, y_pred, protocol=protocol, model=model, method=method), result,
                    corpus=corpus.name, protocol=protocol, model=model, method=method, fold=fold.name, note=fold.note)
    return out.result()


def logistic_regression(corpus: PreparedCorpus, X: np.ndarray, folds: dict[str, list[Fold]], model: str = "",
                        method: str = "logistic regression (scikit-learn)") -> FoldResults:
    """A plain standardised logistic regression (scikit-learn's defaults: L2, C = 1) on the same pooled
    features and the same training part of every fold: the floor a trained linear head should reach."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(corpus.labels())
    out = Collector()
    for protocol, protocol_folds in folds.items():
        for fold in protocol_folds:
            start = time.perf_counter()
            clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X[fold.train], y[fold.train])
            out.add(prediction_rows(corpus, fold, clf.predict(X[fold.test]), protocol=protocol, model=model,
                                    method=method), None, corpus=corpus.name, protocol=protocol, model=model,
                    method=method, fold=fold.name, stop_reason="lbfgs converged (scikit-learn)",
                    train_s=time.perf_counter() - start)
    return out.result()
