"""Scoring a predictions table, reading a score out, and choosing by validation only.

`score` turns any fold loop's predictions (`training.predictions`) into fold_summary's long table
(per fold, pooled, mean, std) for every group; `scores` reads one metric at one fold level back out
as a Series (in percent), the lookup every notebook needs. `pick_on_validation` makes the choices
that must never see test data (the best lambda, the best layer): it takes run records, which hold
validation scores only, and refuses a missing or NaN score instead of choosing around it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .metrics import fold_summary

GROUPS = ("corpus", "protocol", "model", "method")


def score(predictions: pd.DataFrame, classes: Mapping[str, Sequence[str]] | Sequence[str],
          by: Sequence[str] = GROUPS) -> pd.DataFrame:
    """fold_summary for every group of the columns `by` present in `predictions` (rows without an
    emotion prediction are left out); `classes` is one class list, or one per corpus."""
    by = [c for c in by if c in predictions.columns]
    rows = predictions[predictions["y_pred"].notna()]
    parts = []
    for key, part in rows.groupby(by, sort=False) if by else [((), rows)]:
        key = key if isinstance(key, tuple) else (key,)
        group = dict(zip(by, key))
        labels = classes[group["corpus"]] if isinstance(classes, Mapping) else classes
        parts.append(fold_summary(part, labels=list(labels)).assign(**group))
    if not parts:
        raise ValueError("no emotion predictions to score")
    summary = pd.concat(parts, ignore_index=True)
    return summary[[*by, "fold", "metric", "value"]]


def scores(summary: pd.DataFrame, metric: str = "UA", fold: str = "pooled", percent: bool = True,
           index: Sequence[str] | None = None) -> pd.Series:
    """One metric at one fold level ("pooled", "mean", "std" or a fold name) of a `score` table, as a
    Series indexed by the group columns (or `index`), in percent unless `percent` is False."""
    rows = summary[(summary["fold"] == fold) & (summary["metric"] == metric)]
    index = list(index) if index is not None else [c for c in summary.columns if c not in ("fold", "metric", "value")]
    values = rows.set_index(index)["value"]
    return values * 100 if percent else values


def pick_on_validation(runs: pd.DataFrame, candidate: str, within: Sequence[str] = (),
                       score_column: str = "valid_score") -> pd.DataFrame:
    """Per group of `within`, the candidate (the `candidate` column: a lambda, a layer) with the best
    mean validation score over that group's runs; ties go to the candidate that comes first.

    Returns one row per group: the `within` columns, the chosen candidate and its mean validation
    score. Only run records go in, so test data cannot reach the choice. A group where some
    candidate has no finite validation score (no validation set, or a failed run) is an error naming
    it: choosing among the rest would still be labelled "picked on validation" while it is not.
    """
    within = list(within)
    missing = [c for c in (candidate, score_column, *within) if c not in runs.columns]
    if missing:
        raise KeyError(f"run records lack {missing}")
    if any(c in runs.columns for c in ("y_pred", "y_true")):
        raise ValueError("pick_on_validation takes run records (validation scores), not test predictions")
    if runs.empty:
        raise ValueError("no run records to pick from")
    chosen = []
    for key, part in runs.groupby(within, sort=False) if within else [((), runs)]:
        group = dict(zip(within, key if isinstance(key, tuple) else (key,)))
        values = pd.to_numeric(part[score_column], errors="coerce")
        bad = part.loc[~np.isfinite(values.to_numpy(dtype=float)), candidate].drop_duplicates().tolist()
        if bad:
            where = f" in {group}" if group else ""
            raise ValueError(f"no validation score for {candidate} {bad}{where}: cannot pick on validation")
        means = values.groupby(part[candidate], sort=False).mean()  # candidates in order of appearance
        best = means.index[int(np.argmax(means.to_numpy()))]  # argmax: the first of equal maxima
        chosen.append({**group, candidate: best, score_column: float(means[best])})
    return pd.DataFrame(chosen)
