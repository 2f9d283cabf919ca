"""serlib.results: recording, replacing and reading the results table."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from serlib.evaluation.results import RESULT_COLUMNS, load_results, record_results, reports_path


def rows(notebook=None, model="svm", ua=0.5, folds=("pooled",)):
    out = []
    for fold in folds:
        for metric, value in (("UA", ua), ("WA", ua + 0.1)):
            row = dict(corpus="ravdess", protocol="speaker5", model=model, method="mean", fold=fold, metric=metric, value=value)
            if notebook:
                row["notebook"] = notebook
            out.append(row)
    return out


def test_load_results_empty(tmp_path):
    frame = load_results(tmp_path)
    assert list(frame.columns) == RESULT_COLUMNS
    assert frame.empty


def test_record_replaces_only_that_notebook(tmp_path):
    path = record_results(rows(ua=0.4), "01_baselines", tmp_path)
    assert path == tmp_path.resolve() / "results.csv"
    record_results(pd.DataFrame(rows(notebook="02_whisper_er", model="whisper", folds=("f1", "pooled"))), "02_whisper_er", tmp_path)
    # Rerun of 01 with different numbers and another model: old 01 rows gone, 02 rows kept.
    record_results(rows(ua=0.6, model="mlp"), "01_baselines", tmp_path)
    record_results(rows(ua=0.6, model="mlp"), "01_baselines", tmp_path)  # and again: no duplicates

    frame = load_results(tmp_path)
    assert list(frame.columns) == RESULT_COLUMNS
    first = frame[frame.notebook == "01_baselines"]
    assert len(first) == 2 and set(first.model) == {"mlp"}
    assert first.set_index("metric").value.to_dict() == pytest.approx({"UA": 0.6, "WA": 0.7})
    second = frame[frame.notebook == "02_whisper_er"]
    assert len(second) == 4 and set(second.fold) == {"f1", "pooled"}
    assert not list(tmp_path.glob("*.tmp")), "temporary files left behind"


def test_text_columns_round_trip(tmp_path):
    record_results(
        [dict(corpus="NA", protocol="", model="", method="", fold=3, metric="UA", value=1)], "x", tmp_path
    )
    frame = load_results(tmp_path)
    row = frame.iloc[0]
    assert (row.corpus, row.protocol, row.model, row.method, row.fold) == ("NA", "", "", "", "3")
    assert isinstance(row.value, float) and row.value == 1.0


@pytest.mark.parametrize(
    "bad, message",
    [
        ([{k: v for k, v in rows()[0].items() if k != "metric"}], "missing columns ['metric']"),
        ([rows()[0] | {"n": 3}], "unknown columns ['n']"),
        ([rows()[0] | {"value": "0.5"}], "finite number"),
        ([rows()[0] | {"value": math.nan}], "finite number"),
        ([rows()[0] | {"value": math.inf}], "finite number"),
        ([rows()[0] | {"value": None}], "finite number"),
        ([rows()[0] | {"value": True}], "finite number"),
        ([rows()[0] | {"corpus": None}], "corpus is missing"),
        ([rows()[0] | {"metric": " "}], "metric is empty"),
        ([rows()[0] | {"notebook": "other"}], "other notebooks"),
        (rows() + rows()[:1], "repeat the same key"),
    ],
)
def test_bad_rows_rejected_and_file_untouched(tmp_path, bad, message):
    record_results(rows(), "01_baselines", tmp_path)
    before = (tmp_path / "results.csv").read_bytes()
    with pytest.raises(ValueError) as err:
        record_results(bad, "01_baselines", tmp_path)
    assert message in str(err.value)
    assert (tmp_path / "results.csv").read_bytes() == before


def test_numpy_values_accepted(tmp_path):
    import numpy as np

    frame = pd.DataFrame(rows())
    frame["value"] = frame["value"].astype(np.float32)
    record_results(frame, "nb", tmp_path)
    assert len(load_results(tmp_path)) == 2


def test_reports_path(tmp_path):
    target = tmp_path / "a" / "b"
    assert reports_path(target) == target.resolve() and target.is_dir()
    assert reports_path(None).name == "reports"
