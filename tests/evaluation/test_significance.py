"""The paired speaker-level bootstrap on constructed predictions whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serlib.evaluation.significance import compare, describe, paired_bootstrap, result_rows

CLASSES = ["a", "b"]


def system(method: str, right, speakers=8, per_speaker=6, folds=2) -> pd.DataFrame:
    """Predictions of `folds` folds with their own speakers; `right(i)` says whether utterance i is right."""
    rows = []
    for f in range(folds):
        for s in range(speakers):
            for u in range(per_speaker):
                i = (f * speakers + s) * per_speaker + u
                truth = CLASSES[u % 2]
                guess = truth if right(i) else CLASSES[(u + 1) % 2]
                rows.append({"corpus": "toy", "protocol": "p", "model": "m", "method": method, "fold": f"f{f}",
                             "utt_id": f"u{i}", "speaker": f"f{f}s{s}", "y_true": truth, "y_pred": guess})
    return pd.DataFrame(rows)


def test_identical_systems_give_an_interval_around_zero():
    noisy = lambda i: (i * 7919) % 3 != 0  # noqa: E731
    out = paired_bootstrap(system("x", noisy), system("y", noisy), CLASSES)
    assert out["delta_UA"] == 0 and out["low"] <= 0 <= out["high"]
    assert out["verdict"] == "no difference shown" and out["speakers"] == 16 and out["resamples"] == 1000


def test_a_system_right_where_the_other_is_wrong_is_better_beyond_doubt():
    out = paired_bootstrap(system("good", lambda i: True), system("bad", lambda i: False), CLASSES)
    assert out["delta_UA"] == pytest.approx(1.0) and out["low"] > 0.9 and out["verdict"] == "a better"
    flipped = paired_bootstrap(system("bad", lambda i: False), system("good", lambda i: True), CLASSES)
    assert flipped["verdict"] == "b better" and flipped["high"] < -0.9


def test_a_small_difference_on_few_speakers_is_not_called_better():
    rng = np.random.default_rng(1)
    base = rng.random(96) < 0.6
    other = base.copy()
    other[[3, 50]] = ~other[[3, 50]]  # two utterances differ
    out = paired_bootstrap(system("a", lambda i: other[i]), system("b", lambda i: base[i]), CLASSES)
    assert out["low"] <= 0 <= out["high"] and out["verdict"] == "no difference shown"
    again = paired_bootstrap(system("a", lambda i: other[i]), system("b", lambda i: base[i]), CLASSES)
    assert again == out  # seeded: the same interval every time


def test_the_systems_must_have_scored_the_same_utterances():
    a, b = system("a", lambda i: True), system("b", lambda i: True)
    with pytest.raises(ValueError, match="same utterances"):
        paired_bootstrap(a, b.iloc[:-1], CLASSES)
    with pytest.raises(ValueError, match="lack"):
        paired_bootstrap(a.drop(columns="speaker"), b, CLASSES)


def test_compare_every_pair_and_write_results_rows():
    table = pd.concat([system("good", lambda i: True), system("bad", lambda i: i % 2 == 0)])
    comparisons = compare(table, CLASSES, [("good", "bad"), ("good", "absent")], resamples=200)
    assert len(comparisons) == 1 and comparisons.iloc[0]["verdict"] == "a better"
    rows = result_rows(comparisons)
    assert set(rows["metric"]) == {"delta_UA", "delta_UA_ci_low", "delta_UA_ci_high"}
    assert set(rows["method"]) == {"good vs bad"} and set(rows["fold"]) == {"pooled"}
    assert describe(comparisons.iloc[0]).startswith("+")


def test_runs_that_share_their_speakers_resample_each_speaker_once():
    """Seeds of a cross-corpus run score the same target utterances: a speaker is one unit across seeds."""
    def seeds(method, right):
        one = system(method, right, folds=1)
        return pd.concat([one.assign(fold=f"seed {s}") for s in range(3)], ignore_index=True)

    out = paired_bootstrap(seeds("a", lambda i: True), seeds("b", lambda i: i % 3 == 0), CLASSES, strata=None)
    assert out["speakers"] == 8 and out["verdict"] == "a better"
    per_seed = paired_bootstrap(seeds("a", lambda i: True), seeds("b", lambda i: i % 3 == 0), CLASSES)
    assert per_seed["speakers"] == 24  # strata by seed would count each speaker three times


def test_directions_are_strata_even_when_they_share_target_speakers():
    """Two cross-corpus directions onto one target: its speakers are one unit per direction, seeds shared."""
    def directions(method, right):
        one = system(method, right, folds=1)
        return pd.concat([one.assign(direction=d, fold=f"{d}/seed {s}") for d in ("x->t", "y->t") for s in range(2)],
                         ignore_index=True)

    out = paired_bootstrap(directions("a", lambda i: True), directions("b", lambda i: i % 3 == 0), CLASSES,
                           strata="direction")
    assert out["speakers"] == 16 and out["verdict"] == "a better"
    with pytest.raises(KeyError):
        paired_bootstrap(directions("a", lambda i: True), directions("b", lambda i: True), CLASSES, strata="missing")


def test_a_run_still_improving_at_its_budget_makes_the_finding_inconclusive():
    from serlib.evaluation.significance import converged, judge

    runs = pd.DataFrame([
        {"corpus": "toy", "protocol": "p", "model": "m", "method": "good", "fold": "f0", "steps": 100, "best_step": 40,
         "stop_reason": "early_stop", "valid_score": 0.8},
        {"corpus": "toy", "protocol": "p", "model": "m", "method": "bad", "fold": "f0", "steps": 100, "best_step": 100,
         "stop_reason": "step_budget", "valid_score": 0.5},  # best at the last check: still rising
        {"corpus": "toy", "protocol": "p", "model": "m", "method": "flat", "fold": "f0", "steps": 100, "best_step": 60,
         "stop_reason": "step_budget", "valid_score": 0.5},  # budget reached, but it had stopped improving
    ])
    done = converged(runs)
    assert done[("toy", "p", "m", "good")] and not done[("toy", "p", "m", "bad")] and done[("toy", "p", "m", "flat")]
    table = pd.concat([system("good", lambda i: True), system("bad", lambda i: False), system("flat", lambda i: False)])
    found = judge(compare(table, CLASSES, [("good", "bad"), ("good", "flat")], resamples=100), runs)
    assert found["finding"].tolist() == ["inconclusive: a run had not converged", "supported"]
    assert found["converged"].tolist() == [False, True]


def test_run_rows_count_how_validated_runs_ended():
    from serlib.evaluation.significance import run_rows, run_status

    keys = {"corpus": "toy", "protocol": "p", "model": "m"}
    runs = pd.DataFrame([
        {**keys, "method": "a", "fold": "f0", "steps": 80, "best_step": 40, "stop_reason": "early_stop", "valid_score": 0.8},
        {**keys, "method": "a", "fold": "f1", "steps": 100, "best_step": 100, "stop_reason": "step_budget", "valid_score": 0.7},
        {**keys, "method": "a", "fold": "f2", "steps": 100, "best_step": 60, "stop_reason": "step_budget", "valid_score": 0.7},
        {**keys, "method": "b", "fold": "f0", "steps": 20, "best_step": 20, "stop_reason": "perfect_score", "valid_score": 1.0},
        {**keys, "method": "lr", "fold": "f0", "steps": 0, "best_step": None, "stop_reason": "not trained",
         "valid_score": float("nan")},  # nothing to stop by: not counted
    ])
    status = run_status(runs)
    assert status["stopped_early"].tolist() == [True, False, False, True, False]
    assert status["converged"].tolist() == [True, False, True, True, False]
    rows = run_rows(runs).set_index(["method", "metric"])["value"]
    assert rows[("a", "runs")] == 3 and rows[("a", "runs_stopped_early")] == 1 and rows[("a", "runs_converged")] == 2
    assert rows[("b", "runs_stopped_early")] == 1 and "lr" not in rows.index.get_level_values("method")
    assert set(run_rows(runs)["fold"]) == {"pooled"}
    assert run_rows(runs[runs.method == "lr"]).empty
