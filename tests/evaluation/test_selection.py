"""Scoring any fold loop's predictions, and choosing by validation scores only."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from serlib.evaluation.selection import pick_on_validation, score, scores


def predictions(method: str, right: list[bool], fold="f1", corpus="toy") -> pd.DataFrame:
    truth = ["a", "b"] * (len(right) // 2)
    guess = [t if ok else ("b" if t == "a" else "a") for t, ok in zip(truth, right)]
    return pd.DataFrame({"corpus": corpus, "protocol": "p", "model": "m", "method": method, "fold": fold,
                         "utt_id": [f"u{i}" for i in range(len(right))], "y_true": truth, "y_pred": guess})


def test_score_every_group_and_read_one_number_back():
    table = pd.concat([predictions("good", [True] * 4), predictions("half", [True, True, False, False]),
                       predictions("good", [True, False, True, True], fold="f2")])
    summary = score(table, ["a", "b"])
    ua = scores(summary, "UA")  # pooled, percent
    assert ua[("toy", "p", "m", "good")] == pytest.approx(100 * 7 / 8)
    assert ua[("toy", "p", "m", "half")] == pytest.approx(50.0)
    assert scores(summary, "UA", "f2", percent=False)[("toy", "p", "m", "good")] == pytest.approx(0.75)
    # rows that recognise no emotion (a transcription-only system) are left out of the scores
    silent = predictions("asr only", [True] * 4).assign(y_pred=None)
    assert "asr only" not in set(score(pd.concat([table, silent]), {"toy": ["a", "b"]})["method"])


def runs(valid: dict, test: dict) -> pd.DataFrame:
    """Run records of candidates over two folds: validation scores, and the test scores a cheat would use."""
    return pd.DataFrame([{"fold": f, "lambda": lam, "valid_score": v, "test_UA": test[lam]}
                         for f in ("f1", "f2") for lam, v in valid.items()])


def test_the_choice_follows_validation_even_where_test_data_would_choose_otherwise():
    records = runs(valid={0.1: 0.60, 1.0: 0.70}, test={0.1: 0.95, 1.0: 0.40})
    chosen = pick_on_validation(records, "lambda")
    assert chosen["lambda"].tolist() == [1.0] and chosen["valid_score"].iloc[0] == pytest.approx(0.70)
    per_fold = pick_on_validation(records, "lambda", within=["fold"])
    assert per_fold["lambda"].tolist() == [1.0, 1.0] and per_fold["fold"].tolist() == ["f1", "f2"]
    tie = pick_on_validation(runs(valid={0.1: 0.5, 1.0: 0.5}, test={0.1: 0, 1.0: 1}), "lambda")
    assert tie["lambda"].iloc[0] == 0.1  # ties: the candidate that comes first


def test_missing_validation_is_an_error_not_a_silent_choice():
    with pytest.raises(ValueError, match=r"no validation score for lambda \[1.0\]"):
        pick_on_validation(runs(valid={0.1: 0.6, 1.0: math.nan}, test={0.1: 0, 1.0: 1}), "lambda")
    with pytest.raises(ValueError, match="not test predictions"):
        pick_on_validation(predictions("m", [True, False]).assign(layer=1, valid_score=np.nan), "layer")
    with pytest.raises(KeyError, match="valid_score"):
        pick_on_validation(pd.DataFrame({"layer": [1]}), "layer")
