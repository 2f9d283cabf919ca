"""The index page's results browser and figure links; the filter runs in headless Chromium where installed
(.ci/run installs it)."""

from __future__ import annotations

import json
import subprocess

import nbformat
import pandas as pd
import pytest

from serlib.evaluation.results import record_results
from serlib.study.report import write_index
from serlib.study.results_browser import figure_sections, heading_anchor, results_browser_html
from serlib.study.screenshots import find_browser


def _rows():
    return [dict(corpus=c, protocol="p", model="m", method=meth, fold="pooled", metric="UA", value=0.5 + i / 100)
            for i, (c, meth) in enumerate([(c, m) for c in ("ravdess", "emodb", "urdu") for m in ("a", "b", "a vs b")])]


def test_rows_travel_as_json_that_cannot_close_the_script():
    results = pd.DataFrame(_rows() + [dict(corpus="x", protocol="p", model="m", method="</script><b>", fold="1",
                                           metric="UA", value=float("nan"))]).assign(notebook="nb")
    page = results_browser_html(results)
    data = page.split('id="results-data">', 1)[1].split("</script>", 1)[0]
    records = json.loads(data)
    assert len(records) == len(results) and records[-1]["method"] == "</script><b>" and records[-1]["value"] is None
    assert results_browser_html(results.iloc[:0]) == ""


def test_figure_sections_follow_the_headings_that_hold_plotly_output(tmp_path):
    nb = nbformat.v4.new_notebook()
    figure = nbformat.v4.new_output("display_data", data={"application/vnd.plotly.v1+json": {}, "text/html": ""})
    plain = nbformat.v4.new_output("display_data", data={"text/plain": "table"})
    nb.cells = [nbformat.v4.new_markdown_cell("## Data, folds"), nbformat.v4.new_code_cell("t", outputs=[plain]),
                nbformat.v4.new_markdown_cell("## Results: pooled\ntext"), nbformat.v4.new_code_cell("f", outputs=[figure]),
                nbformat.v4.new_code_cell("g", outputs=[figure])]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    assert figure_sections(path) == ["Results: pooled"]
    assert heading_anchor("Results: pooled") == "Results:-pooled"  # as nbconvert writes the heading's id


@pytest.mark.skipif(find_browser() is None, reason="headless Chromium not installed (.ci/run installs it)")
def test_filters_work_in_a_browser_without_network(tmp_path):
    for notebook in ("01_baselines", "02_whisper_er"):
        record_results(_rows(), notebook, tmp_path)
    index = write_index(tmp_path, {"profile": "t", "notebooks": []})
    results = pd.read_csv(tmp_path / "results.csv")
    for query, expected in [("", len(results)),
                            ("?notebook=02_whisper_er&corpus=emodb", ((results.notebook == "02_whisper_er") & (results.corpus == "emodb")).sum()),
                            ("?method=a%20vs%20b", (results.method == "a vs b").sum()),
                            ("?text=urdu", (results.corpus == "urdu").sum())]:
        dom = subprocess.run([find_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
                              "--dump-dom", index.as_uri() + query], capture_output=True, text=True, timeout=120).stdout
        shown = dom.split('id="results-count"', 1)[1].split('data-shown="', 1)[1].split('"', 1)[0]
        assert int(shown) == expected, query
        assert dom.count("<tr>") >= expected  # the rows are drawn, not only counted
