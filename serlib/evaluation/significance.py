"""Paired significance of a UA difference: a speaker-level bootstrap over the pooled test predictions.

A 240-utterance test fold alone moves UA by several points, so a comparison of two systems says
something only with its interval. Both systems' predictions of the same utterances are paired; the
resampling unit is the test speaker (utterances of one speaker are not independent), drawn with
replacement within each stratum (a fold: its test speakers are disjoint from the other folds'), and
UA_a - UA_b is computed on each resample of the pooled predictions. The interval is the percentile
interval of those differences; "a is better" only when it lies above 0.

Resampling works on per-speaker counts (true utterances and hits of each system per class), so a
thousand resamples cost one matrix product.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

BOOTSTRAP_COLUMNS = ["method_a", "method_b", "delta_UA", "low", "high", "level", "resamples", "speakers", "verdict"]


def _counts(rows: pd.DataFrame, classes: Sequence[str], clusters: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster and class: true utterances [C, K] and correct predictions [C, K] of one system."""
    k = {c: i for i, c in enumerate(classes)}
    cluster = clusters.get_indexer(pd.MultiIndex.from_arrays([rows["stratum"], rows["speaker"]]))
    true = np.zeros((len(clusters), len(classes)))
    hits = np.zeros((len(clusters), len(classes)))
    label = rows["y_true"].map(k).to_numpy()
    np.add.at(true, (cluster, label), 1)
    np.add.at(hits, (cluster, label), (rows["y_true"] == rows["y_pred"]).to_numpy())
    return true, hits


def _ua(true: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """Mean recall over the classes present, per row of [R, K] counts."""
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(true > 0, hits / true, np.nan)
    return np.nanmean(recall, axis=-1)


def paired_bootstrap(a: pd.DataFrame, b: pd.DataFrame, classes: Sequence[str], strata: str | None = "fold",
                     resamples: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """UA(a) - UA(b) on the pooled predictions and its speaker-level bootstrap interval.

    `a` and `b` are two systems' predictions (columns fold, utt_id, speaker, y_true, y_pred) of the
    same test utterances, paired by (fold, utt_id). Speakers are resampled within each value of
    `strata` (a column of `a`: folds with disjoint test speakers, or the directions of a cross-corpus
    study), or across everything with `strata=None` (runs that share their test speakers, e.g. the
    seeds of a cross-corpus run: each draw of a speaker then takes its utterances of every seed).
    Returns delta_UA, low, high (fractions), the level, the number of resamples and of test
    speakers, and a verdict: "a better", "b better" or "no difference shown" (the interval includes 0).
    """
    key = ["fold", "utt_id"]
    for name, rows in (("a", a), ("b", b)):
        missing = [c for c in ("utt_id", "speaker", "y_true", "y_pred", *key) if c not in rows.columns]
        if missing:
            raise ValueError(f"predictions of {name} lack {missing}")
        if rows[key].duplicated().any():
            raise ValueError(f"predictions of {name} repeat utterances within a fold")
    extra = [strata] if strata is not None and strata not in key else []
    pair = a[[*key, *extra, "speaker", "y_true", "y_pred"]].merge(b[[*key, "y_true", "y_pred"]], on=key,
                                                                    how="outer", suffixes=("_a", "_b"), indicator=True)
    unpaired = pair[pair["_merge"] != "both"]
    if len(unpaired) or (pair["y_true_a"] != pair["y_true_b"]).any():
        raise ValueError(f"the two systems were not scored on the same utterances ({len(unpaired)} unpaired, e.g. "
                         f"{unpaired['utt_id'].head(3).tolist()}): a paired comparison needs both on each")
    pair["stratum"] = pair[strata] if strata is not None else ""
    clusters = pd.MultiIndex.from_frame(pair[["stratum", "speaker"]].drop_duplicates())
    rows = lambda s: pair.rename(columns={"y_true_a": "y_true", f"y_pred_{s}": "y_pred"})  # noqa: E731
    true, hits_a = _counts(rows("a"), classes, clusters)
    _, hits_b = _counts(rows("b"), classes, clusters)

    rng = np.random.default_rng(seed)
    weights = np.zeros((resamples, len(clusters)))
    for stratum in clusters.get_level_values(0).unique():
        members = np.flatnonzero(clusters.get_level_values(0) == stratum)
        draws = rng.integers(0, len(members), size=(resamples, len(members)))
        for j in range(len(members)):  # each draw adds one copy of the drawn speaker
            np.add.at(weights, (np.arange(resamples), members[draws[:, j]]), 1)
    deltas = _ua(weights @ true, weights @ hits_a) - _ua(weights @ true, weights @ hits_b)
    observed = float(_ua(true.sum(0), hits_a.sum(0)) - _ua(true.sum(0), hits_b.sum(0)))
    low, high = np.nanpercentile(deltas, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    verdict = "a better" if low > 0 else "b better" if high < 0 else "no difference shown"
    return {"delta_UA": observed, "low": float(low), "high": float(high), "level": level, "resamples": resamples,
            "speakers": len(clusters), "verdict": verdict}


def compare(predictions: pd.DataFrame, classes, pairs: Sequence[tuple[str, str]],
            by: Sequence[str] = ("corpus", "protocol", "model"), strata: str | None = "fold",
            resamples: int = 1000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """`paired_bootstrap` of method a against method b, for each (a, b) in `pairs` and each group of `by`
    where both ran; `classes` is one class list or one per corpus. One row per comparison."""
    by = [c for c in by if c in predictions.columns]
    rows = []
    for key, part in predictions.groupby(by, sort=False) if by else [((), predictions)]:
        group = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        labels = classes[group["corpus"]] if isinstance(classes, dict) else classes
        for a, b in pairs:
            pa, pb = part[part["method"] == a], part[part["method"] == b]
            if pa.empty or pb.empty:
                continue
            rows.append({**group, "method_a": a, "method_b": b,
                         **paired_bootstrap(pa, pb, labels, strata, resamples, level, seed)})
    return pd.DataFrame(rows, columns=[*by, *BOOTSTRAP_COLUMNS])


def result_rows(comparisons: pd.DataFrame) -> pd.DataFrame:
    """Comparisons as results.csv rows: method "a vs b", fold "pooled", metrics delta_UA and its bounds."""
    long = comparisons.melt(id_vars=[c for c in comparisons.columns if c not in ("delta_UA", "low", "high")],
                            value_vars=["delta_UA", "low", "high"], var_name="metric", value_name="value")
    long["metric"] = long["metric"].map({"delta_UA": "delta_UA", "low": "delta_UA_ci_low", "high": "delta_UA_ci_high"})
    long["method"] = long["method_a"] + " vs " + long["method_b"]
    keep = [c for c in ("corpus", "protocol", "model") if c in long.columns]
    return long.assign(fold="pooled")[[*keep, "method", "fold", "metric", "value"]]


def describe(row) -> str:
    """`delta UA [95 % CI]` in points, as the tables and findings write it."""
    return (f"{100 * row['delta_UA']:+.1f} [{100 * row['low']:+.1f}, {100 * row['high']:+.1f}] "
            f"({100 * row['level']:.0f} % CI)")


STOPPED_BY_VALIDATION = ("early_stop", "perfect_score")
RUN_KEYS = ("corpus", "protocol", "model", "method")


def run_status(runs: pd.DataFrame) -> pd.DataFrame:
    """Run records with two columns added: `stopped_early` (early stopping or a perfect validation
    score ended the run, not its step budget) and `converged` (that, or its best validation came
    before its last step: it had stopped improving when the budget ran out).

    A run that hit its budget with its best validation score at the last check was still improving:
    a comparison involving it says something about the budget, not only about the method.
    """
    stopped = runs["stop_reason"].isin(STOPPED_BY_VALIDATION)
    settled = runs["best_step"].notna() & (runs["best_step"] < runs["steps"])
    return runs.assign(stopped_early=stopped, converged=stopped | settled)


def validated_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that had a validation score to stop by (not scikit-learn fits, zero-shot decoding or
    Emo-DNA's fixed budget)."""
    if "valid_score" not in runs:
        return runs
    return runs[pd.to_numeric(runs["valid_score"], errors="coerce").notna()]


def converged(runs: pd.DataFrame, by: Sequence[str] = RUN_KEYS) -> pd.Series:
    """Per group of run records: True when every run converged (see `run_status`)."""
    by = [c for c in by if c in runs.columns]
    return run_status(runs).groupby([runs[c] for c in by], sort=False)["converged"].all()


def run_rows(runs: pd.DataFrame, by: Sequence[str] = RUN_KEYS) -> pd.DataFrame:
    """How the validated runs ended, as results.csv rows (fold "pooled") per group of `by`: metrics
    `runs`, `runs_stopped_early` and `runs_converged` (counts) of the `validated_runs`; the others
    have nothing to stop by. The study's index adds them up into the share of runs that early stopping ended."""
    validated = validated_runs(runs)
    by = [c for c in by if c in runs.columns]
    if validated.empty:
        return pd.DataFrame(columns=[*by, "fold", "metric", "value"])
    status = run_status(validated)
    counts = status.groupby(by, sort=False).agg(runs=("stop_reason", "size"), runs_stopped_early=("stopped_early", "sum"),
                                                runs_converged=("converged", "sum")).reset_index()
    long = counts.melt(id_vars=by, var_name="metric", value_name="value")
    return long.assign(fold="pooled", value=long["value"].astype(float))[[*by, "fold", "metric", "value"]]


def judge(comparisons: pd.DataFrame, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each comparison's finding about the claim "a beats b": supported (interval above 0), not
    supported (below 0), inconclusive (it includes 0), or inconclusive because a run of either
    system had not converged (see `converged`; runs without validation, e.g. Emo-DNA's fixed
    budget, count as trained to their stated budget)."""
    out = comparisons.copy()
    out["finding"] = out["verdict"].map({"a better": "supported", "b better": "not supported",
                                         "no difference shown": "inconclusive: the interval includes 0"})
    if runs is not None and len(runs):
        validated = validated_runs(runs)
        done = converged(validated) if len(validated) else pd.Series(dtype=bool)
        keys = [c for c in ("corpus", "protocol", "model") if c in out.columns and c in runs.columns]

        def settled(row, method):
            key = (*[row[k] for k in keys], method)
            return bool(done.get(key, True))

        unsettled = [not (settled(r, r["method_a"]) and settled(r, r["method_b"])) for _, r in out.iterrows()]
        out.loc[unsettled, "finding"] = "inconclusive: a run had not converged"
        out["converged"] = [not u for u in unsettled]
    return out
