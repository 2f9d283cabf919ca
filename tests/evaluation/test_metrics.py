"""Metrics against hand-worked examples."""

import math

import numpy as np
import pandas as pd
import pytest

from serlib.evaluation.metrics import (
    classification_metrics,
    confusion,
    fold_summary,
    normalise_rows,
    normalise_text,
    per_class_recall,
    wer,
)

Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 2, 2]


def test_classification_metrics_by_hand():
    m = classification_metrics(Y_TRUE, Y_PRED, labels=[0, 1, 2])
    assert m["n"] == 6
    assert m["WA"] == pytest.approx(4 / 6)
    assert m["UA"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # F1 per class: 0: P=2/2, R=2/3 -> 0.8; 1: P=1/2, R=1/2 -> 0.5; 2: P=1/2, R=1 -> 2/3
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_string_labels_and_default_label_set():
    t = ["sad", "sad", "happy", "angry"]
    p = ["sad", "happy", "happy", "sad"]
    m = classification_metrics(t, p)
    assert m["WA"] == pytest.approx(0.5)
    assert m["UA"] == pytest.approx((0 + 1 + 0.5) / 3)


def test_confusion_exact_and_oriented():
    cm = confusion(Y_TRUE, Y_PRED, labels=[0, 1, 2])
    assert cm.index.name == "true" and cm.columns.name == "predicted"
    np.testing.assert_array_equal(cm.to_numpy(), [[2, 1, 0], [0, 1, 1], [0, 0, 1]])
    assert cm.to_numpy().sum(axis=1).tolist() == [3, 2, 1]  # rows sum to the true class counts
    rows = normalise_rows(cm)
    np.testing.assert_allclose(rows.to_numpy(), [[2 / 3, 1 / 3, 0], [0, 0.5, 0.5], [0, 0, 1]])
    np.testing.assert_allclose(np.diag(rows), per_class_recall(Y_TRUE, Y_PRED, [0, 1, 2]))


def test_ua_skips_a_class_absent_from_y_true():
    labels = ["neutral", "happy", "sad", "angry"]
    t = ["neutral", "neutral", "happy", "happy"]  # no sad, no angry
    p = ["neutral", "sad", "happy", "happy"]  # sad is predicted once
    recall = per_class_recall(t, p, labels)
    assert recall["neutral"] == 0.5 and recall["happy"] == 1.0
    assert math.isnan(recall["sad"]) and math.isnan(recall["angry"])
    m = classification_metrics(t, p, labels)
    assert m["UA"] == pytest.approx((0.5 + 1.0) / 2)
    # macro-F1 over neutral, happy, sad (true or predicted), not angry:
    # neutral P=1 R=1/2 -> 2/3; happy 1; sad 0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    rows = normalise_rows(confusion(t, p, labels))
    assert rows.loc["angry"].isna().all()


def test_unknown_label_is_an_error():
    with pytest.raises(ValueError, match="not in `labels`"):
        classification_metrics([0, 1], [0, 3], labels=[0, 1, 2])
    with pytest.raises(ValueError):
        classification_metrics([], [], labels=[0])


def test_fold_summary_pooled_vs_mean():
    preds = pd.DataFrame(
        {
            "fold": [1, 1, 1, 1, 2, 2],
            "y_true": [0, 0, 1, 1, 0, 1],
            "y_pred": [0, 0, 1, 0, 1, 1],
            "method": "m",
        }
    )
    s = fold_summary(preds, labels=[0, 1], group_cols=["method"])
    assert list(s.columns) == ["method", "fold", "metric", "value"]
    v = s.set_index(["fold", "metric"])["value"]
    assert v["1", "WA"] == pytest.approx(3 / 4)
    assert v["2", "WA"] == pytest.approx(1 / 2)
    assert v["pooled", "WA"] == pytest.approx(4 / 6)  # not the mean of the folds
    assert v["mean", "WA"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert v["std", "WA"] == pytest.approx(np.std([3 / 4, 1 / 2], ddof=1))
    assert v["1", "UA"] == pytest.approx((1 + 1 / 2) / 2)
    assert v["pooled", "UA"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert v["1", "n"] == 4 and v["pooled", "n"] == 6
    assert ("mean", "n") not in v.index
    assert list(dict.fromkeys(s["fold"])) == ["1", "2", "pooled", "mean", "std"]


def test_fold_summary_groups_and_sorted_folds():
    rng = np.random.default_rng(0)
    n = 60
    preds = pd.DataFrame(
        {
            "corpus": np.repeat(["a", "b"], n // 2),
            "fold": np.tile([10, 2, 1], n // 3),
            "y_true": rng.integers(0, 3, n),
            "y_pred": rng.integers(0, 3, n),
        }
    )
    s = fold_summary(preds, labels=[0, 1, 2], group_cols=["corpus"])
    assert set(s["corpus"]) == {"a", "b"}
    a = s[s.corpus == "a"]
    assert list(dict.fromkeys(a["fold"])) == ["1", "2", "10", "pooled", "mean", "std"]
    part = preds[(preds.corpus == "a") & (preds.fold == 2)]
    expect = classification_metrics(part.y_true, part.y_pred, [0, 1, 2])["UA"]
    assert a.set_index(["fold", "metric"]).loc[("2", "UA"), "value"] == pytest.approx(expect)
    wide = s.pivot_table(index=["corpus", "fold"], columns="metric", values="value")
    assert {"WA", "UA", "macro_f1", "n"} <= set(wide.columns)


def test_wer_default_normaliser():
    assert normalise_text("Really  good .") == "really good"
    assert normalise_text("Well-known, isn't it?") == "well known isnt it"
    assert normalise_text("یہ اچھا ہے۔") == "یہ اچھا ہے"
    # 1 substitution (world -> word) over 4 reference words
    assert wer(["Really good.", "Hello, world!"], ["really good", "hello word"]) == pytest.approx(0.25)
    # without normalisation every word differs in case or punctuation
    assert wer(["Hello, world!"], ["hello world"], normaliser=str) == pytest.approx(1.0)
    assert wer(["a b c", "d e"], ["a b", ""]) == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="empty"):
        wer(["..."], ["x"])


def test_task_summary_scores_gender_and_wer_where_predicted():
    from serlib.evaluation.metrics import task_summary

    frame = pd.DataFrame({
        "method": ["mtl"] * 4 + ["ser"] * 2,
        "fold": ["a", "a", "b", "b", "a", "b"],
        "gender_true": ["male", "female", "male", "female", "male", "male"],
        "gender_pred": ["male", None, "male", "male", None, None],
        "text_true": ["the door", "kids are talking", "a b", "c", "x", "y"],
        "text_pred": ["the door", "kids talking", "a b", "d", None, None],
    })
    out = task_summary(frame, group_cols=["method"]).set_index(["method", "fold", "metric"])["value"]
    assert out[("mtl", "a", "GR_acc")] == 0.5 and out[("mtl", "b", "GR_acc")] == 0.5
    assert out[("mtl", "pooled", "GR_acc")] == 0.5
    assert out[("mtl", "a", "WER")] == pytest.approx(1 / 5)  # one deletion over 5 reference words
    assert out[("mtl", "pooled", "WER")] == pytest.approx(2 / 8)
    assert out[("mtl", "mean", "WER")] == pytest.approx((1 / 5 + 1 / 3) / 2)
    assert "ser" not in out.index.get_level_values("method")  # no gender or text predictions: no rows
