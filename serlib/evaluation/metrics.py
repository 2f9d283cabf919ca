"""Evaluation metrics: WA, UA, macro-F1, confusion matrices, fold aggregation and WER.

Conventions (the same in every notebook):
- Scores are fractions in [0, 1], not percentages; reports multiply by 100 when they print.
- WA ("weighted accuracy") is plain accuracy over utterances.
- UA ("unweighted accuracy") is the mean per-class recall over the classes that occur in `y_true`.
  A class with no true utterance has no recall, so it is left out rather than counted as 0 (which
  would punish a fold for a class it does not contain) or as 1. This matters only for folds or
  corpora where a class of `labels` is missing; with all classes present it is the usual UA.
- macro-F1 is scikit-learn's `f1_score(average="macro")` over the classes of `labels` that occur in
  `y_true` or `y_pred` (a class that is never predicted but is true has F1 0; a class that is neither
  true nor predicted is left out instead of adding a meaningless 0).
- `labels` fixes the class order (rows/columns of confusion matrices) and the class set; any label in
  `y_true` or `y_pred` that is not in `labels` is an error, so a mapping mistake cannot hide.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, f1_score

METRICS = ("WA", "UA", "macro_f1")  # what fold_summary reports (plus "n" for folds and pooled rows)


def _arrays(y_true, y_pred, labels) -> tuple[np.ndarray, np.ndarray, list]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be 1-d of equal length")
    if len(y_true) == 0:
        raise ValueError("no predictions to score")
    if labels is None:
        labels = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    labels = list(labels)
    unknown = sorted(map(str, (set(y_true.tolist()) | set(y_pred.tolist())) - set(labels)))
    if unknown:
        raise ValueError(f"labels {unknown} are not in `labels` {labels}")
    return y_true, y_pred, labels


def per_class_recall(y_true, y_pred, labels=None) -> pd.Series:
    """Recall of each class in `labels` order; NaN for a class that never occurs in `y_true`."""
    y_true, y_pred, labels = _arrays(y_true, y_pred, labels)
    recall = {}
    for label in labels:
        true = y_true == label
        recall[label] = float(np.mean(y_pred[true] == label)) if true.any() else float("nan")
    return pd.Series(recall, name="recall", dtype=float).rename_axis("class")


def classification_metrics(y_true, y_pred, labels=None) -> dict[str, float]:
    """WA, UA, macro_f1 (fractions) and n for one set of predictions; see the module notes."""
    y_true, y_pred, labels = _arrays(y_true, y_pred, labels)
    seen = set(y_true.tolist()) | set(y_pred.tolist())
    f1_labels = [label for label in labels if label in seen]
    return {
        "WA": float(np.mean(y_true == y_pred)),
        "UA": float(per_class_recall(y_true, y_pred, labels).mean(skipna=True)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=f1_labels, average="macro", zero_division=0)
        ),
        "n": int(len(y_true)),
    }


def confusion(y_true, y_pred, labels=None) -> pd.DataFrame:
    """Counts with rows = true class and columns = predicted class, both in `labels` order.

    The index is named "true" and the columns "predicted", so a heat map or a printed table says
    which way round it is (the Whisper-ER paper's figure has them the other way round).
    """
    y_true, y_pred, labels = _arrays(y_true, y_pred, labels)
    counts = confusion_matrix(y_true, y_pred, labels=labels)
    return pd.DataFrame(
        counts,
        index=pd.Index(labels, name="true"),
        columns=pd.Index(labels, name="predicted"),
    )


def normalise_rows(cm: pd.DataFrame) -> pd.DataFrame:
    """Each row divided by its total (rows of a `confusion` then hold per-class recall and errors).

    A row with no utterances (a class absent from y_true) becomes NaN, not 0: there is nothing to
    normalise, and NaN keeps it out of means and shows blank in heat maps.
    """
    totals = cm.sum(axis=1)
    return cm.div(totals.where(totals > 0), axis=0).astype(float)


def _groups(frame: pd.DataFrame, group_cols: list[str]):
    """(column -> value of the group, rows) per group in order of appearance; one group without columns."""
    if not group_cols:
        yield {}, frame
        return
    for key, part in frame.groupby(group_cols, sort=False):
        yield dict(zip(group_cols, key if isinstance(key, tuple) else (key,))), part


def fold_summary(
    predictions: pd.DataFrame, labels=None, group_cols: Sequence[str] = ()
) -> pd.DataFrame:
    """Per-fold, pooled, mean and std scores, in long form.

    `predictions` has one row per utterance with columns `fold`, `y_true`, `y_pred` and optionally
    grouping columns (e.g. `corpus`, `model`, `method`) named in `group_cols`.

    Returns a long table with columns `*group_cols, fold, metric, value` (fold as a string):
    for each group, one row per (fold, metric) for every fold, then `fold="pooled"` (all folds'
    predictions scored together, as in a confusion matrix pooled over folds), then `fold="mean"` and
    `fold="std"` (over the per-fold scores, std with ddof=1, NaN for a single fold). Metrics are WA, UA
    and macro_f1; folds and pooled rows also carry `n`. Long form because the study results table has
    exactly the columns `notebook, corpus, protocol, model, method, fold, metric, value`: add the
    constant columns and concatenate; `pivot_table(index=[..., "fold"], columns="metric")` gives
    the wide view for display.
    """
    group_cols = list(group_cols)
    missing = [c for c in ["fold", "y_true", "y_pred", *group_cols] if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions lack columns {missing}")
    if predictions.empty:
        raise ValueError("no predictions to summarise")
    rows = []
    for group, frame in _groups(predictions, group_cols):
        per_fold = {}
        for fold, part in frame.groupby("fold", sort=True):
            per_fold[str(fold)] = classification_metrics(part["y_true"], part["y_pred"], labels)
        pooled = classification_metrics(frame["y_true"], frame["y_pred"], labels)
        table = pd.DataFrame(per_fold).T[list(METRICS)].astype(float)
        summary = {
            **per_fold,
            "pooled": pooled,
            "mean": table.mean().to_dict(),
            "std": table.std(ddof=1).to_dict(),
        }
        for fold, scores in summary.items():
            for metric, value in scores.items():
                rows.append({**group, "fold": fold, "metric": metric, "value": float(value)})
    return pd.DataFrame(rows, columns=[*group_cols, "fold", "metric", "value"])


def knn_agreement(embeddings: np.ndarray, labels, k: int = 10) -> float:
    """Leave-one-out k-nearest-neighbour accuracy: the share of rows whose k nearest other rows
    (Euclidean) vote, by majority, for their own label (ties go to the nearest neighbour's label).

    A label-free measure of how strongly a label (emotion, speaker) organises an embedding space:
    compare it with the share of the most frequent label, the accuracy of always guessing that.
    """
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or len(x) != len(labels):
        raise ValueError(f"embeddings {x.shape} must be [N, D] with one label per row ({len(labels)})")
    if not 1 <= k < len(x):
        raise ValueError(f"k must be between 1 and {len(x) - 1}, got {k}")
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    hits = 0
    for i, row in enumerate(idx):
        neighbours = [j for j in row if j != i][:k]
        votes = Counter(labels[neighbours].tolist())
        most = max(votes.values())
        vote = next(labels[j] for j in neighbours if votes[labels[j]] == most)  # tie: the nearer label
        hits += vote == labels[i]
    return hits / len(x)


# --- ASR -------------------------------------------------------------------------------------------


def normalise_text(text: str) -> str:
    """Default WER normaliser: lower-case, dashes to spaces, other punctuation removed, spaces collapsed.

    Punctuation is any Unicode "P*" character, so it also covers e.g. the Urdu full stop "۔";
    apostrophes are removed ("don't" -> "dont"), dashes split words ("well-known" -> "well known").
    Numbers are not spelled out (Whisper's English normaliser does more; this one is language-neutral).
    """
    out = []
    for ch in str(text).lower():
        category = unicodedata.category(ch)
        if category == "Pd":
            out.append(" ")
        elif not category.startswith("P"):
            out.append(ch)
    return re.sub(r"\s+", " ", "".join(out)).strip()


def wer(
    references: Sequence[str],
    hypotheses: Sequence[str],
    normaliser: Callable[[str], str] | None = None,
) -> float:
    """Corpus-level word error rate (total edits / total reference words) with jiwer.

    Both sides go through `normaliser` first: `None` means `normalise_text` (lower-case, punctuation
    stripped); pass `str` to score the text as it is. A reference that is empty after normalisation
    cannot be scored by WER and raises an error naming it.
    """
    import jiwer

    normaliser = normalise_text if normaliser is None else normaliser
    references, hypotheses = list(references), list(hypotheses)
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        raise ValueError("no references to score")
    refs = [normaliser(r) for r in references]
    hyps = [normaliser(h) for h in hypotheses]
    empty = [i for i, r in enumerate(refs) if not r.strip()]
    if empty:
        raise ValueError(f"references {empty[:10]} are empty after normalisation; WER is undefined")
    return float(jiwer.wer(refs, hyps))


def task_summary(predictions: pd.DataFrame, group_cols: Sequence[str] = ()) -> pd.DataFrame:
    """Gender accuracy and WER per fold, pooled, mean and std, in fold_summary's long form.

    Reads `gender_true`/`gender_pred` (metric `GR_acc`; a missing prediction counts as wrong) and
    `text_true`/`text_pred` (metric `WER`, corpus-level, `wer`'s default normaliser) for the groups
    whose rows have a non-null prediction for them; a group without one gets no such metric.
    """
    group_cols = list(group_cols)
    rows = []
    for group, frame in _groups(predictions, group_cols):
        scorers = {}
        if "gender_pred" in frame and frame["gender_pred"].notna().any():
            scorers["GR_acc"] = lambda p: float((p["gender_pred"] == p["gender_true"]).mean())
        if "text_pred" in frame and frame["text_pred"].notna().any():
            scorers["WER"] = lambda p: wer(p["text_true"], p["text_pred"].fillna(""))
        for metric, score in scorers.items():
            used = frame[frame["text_pred"].notna()] if metric == "WER" else frame  # zero-shot: a sample
            per_fold = {str(fold): score(part) for fold, part in used.groupby("fold", sort=True)}
            values = pd.Series(per_fold, dtype=float)
            summary = {**per_fold, "pooled": score(used), "mean": values.mean(), "std": values.std(ddof=1)}
            rows += [{**group, "fold": fold, "metric": metric, "value": float(value)} for fold, value in summary.items()]
    return pd.DataFrame(rows, columns=[*group_cols, "fold", "metric", "value"])
