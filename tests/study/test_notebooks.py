"""Every notebook, executed headless by the study runner on the smoke profile (real data, real Whisper)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from serlib.cli import main as serlib_main
from serlib.encoders.backbones import ct2_files
from serlib.study.params import available_profiles, load_profile
from serlib.study.runner import main as run_study
from tests.fetch_server import Site, official_archives, serve

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def test_notebooks_are_committed_without_outputs_and_take_parameters():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = json.loads(path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), path.name
        assert "parameters" in code[0]["metadata"].get("tags", []), f"{path.name}: first code cell is not tagged"
        assert "params_file" in "".join(code[0]["source"])
        long = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and len("".join(c["source"]).splitlines()) > 40]
        assert not long, f"{path.name}: code cells {long} are over 40 lines (the loops belong in serlib)"


def test_profiles_name_existing_notebooks():
    available = {p.stem for p in NOTEBOOKS.glob("*.ipynb")}
    for name in available_profiles():
        profile = load_profile(name)
        assert set(profile["notebooks"]) <= available, name
        for notebook in profile["notebooks"]:
            assert notebook in profile, f"{name} has no section for {notebook}"


@pytest.mark.slow
@pytest.mark.skipif(ct2_files("base") is None, reason="Whisper base CTranslate2 packages not installed")
def test_smoke_profile_runs_every_notebook(data_root, tmp_path, monkeypatch):
    # A bare machine's path: `serlib fetch` builds the data root from a local server standing in for the
    # official hosts (archives made from the real copies), and EmoBox's folds come from the package.
    site = Site()
    official_archives(site, data_root)
    fetched = tmp_path / "data"
    with serve(site):
        assert serlib_main(["fetch", "ravdess", "emodb", "urdu", "--data-root", str(fetched), "--mirror", site.url]) == 0
    assert sorted(p.name for p in fetched.iterdir() if not p.name.startswith(".")) == ["emodb", "ravdess", "urdu"]
    monkeypatch.setenv("SERLIB_DATA", str(fetched))
    monkeypatch.delenv("SERLIB_SPLITS", raising=False)
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)  # kernels as in a real run (ipykernel checks it)
    reports = tmp_path / "reports"
    assert run_study(["--params", "smoke", "--reports", str(reports)]) == 0
    notebooks = load_profile("smoke")["notebooks"]
    for name in notebooks:
        assert (reports / f"{name}.html").stat().st_size > 10_000
        assert (reports / f"{name}.ipynb").is_file()
    results = pd.read_csv(reports / "results.csv")
    assert set(results["notebook"]) == set(notebooks)
    scores = results[results.metric.isin(["UA", "WA", "macro_f1"])]
    assert len(scores) and scores["value"].between(0, 1).all()
    pooled = scores[(scores.notebook == "01_baselines") & (scores.fold == "pooled")]
    assert set(pooled["corpus"]) == {"ravdess", "urdu", "emodb"}
    assert "01_baselines" in (reports / "index.html").read_text()
    # every study's headline comparison carries its paired interval, inside its bounds
    deltas = results[results.metric == "delta_UA"]
    assert set(deltas["notebook"]) == {"01_baselines", "02_whisper_er", "03_serial_mtl", "04_phoneme_mtl",
                                       "05_cross_corpus", "06_layer_analysis"}
    wide = results[results.metric.str.startswith("delta_UA")].pivot_table(
        index=["notebook", "corpus", "protocol", "model", "method"], columns="metric", values="value")
    assert (wide["delta_UA_ci_low"] <= wide["delta_UA"]).all() and (wide["delta_UA"] <= wide["delta_UA_ci_high"]).all()
    assert {"WER", "GR_acc"} <= set(results[results.notebook == "03_serial_mtl"]["metric"])
    # figures: every report embeds plotly figures, the training notebooks their validation curves
    for name in notebooks:
        html = (reports / f"{name}.html").read_text()
        assert html.count('class="plotly-graph-div"') >= (1 if name != "00_data" else 2), name
        assert not re.search(r"\d+%\|", html) and "it/s]" not in html, f"{name}: a progress bar in the report"
        assert '<details class="serlib-code">' in html and "<h2>Summary</h2>" in html, f"{name}: code not folded or no summary"
        assert html.index('class="serlib-summary"') < html.index('class="jp-Cell'), f"{name}: the summary is not on top"
    for name in ("01_baselines", "02_whisper_er", "03_serial_mtl", "04_phoneme_mtl", "06_layer_analysis"):
        assert "Validation UA" in (reports / f"{name}.html").read_text(), name
