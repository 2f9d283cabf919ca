"""serlib.study.runner and serlib.study.report (run state, index page), on throwaway notebooks."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

import serlib.study.report as report
from serlib.evaluation.reports_folder import MANIFEST, ForeignFilesError, ReportsFolder, made_by_serlib
from serlib.evaluation.results import RESULT_COLUMNS, load_results, record_results
from serlib.study.report import headline_table, run_metadata, write_index
from serlib.study.runner import StudyError, main, select_notebooks

PARAMS_CELL = 'params_file = "../params/default.yaml"\nreports_dir = None\n'


def make_notebook(path: Path, *cells: str) -> Path:
    """A notebook with the project's `parameters` cell first; cells starting with '#md' are markdown."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    first = nbformat.v4.new_code_cell(PARAMS_CELL)
    first.metadata["tags"] = ["parameters"]
    nb.cells = [first] + [
        nbformat.v4.new_markdown_cell(c[3:]) if c.startswith("#md") else nbformat.v4.new_code_cell(c) for c in cells
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def write_profile(path: Path, notebooks: list[str]) -> Path:
    path.write_text(
        "profile: tiny\n"
        f"notebooks: [{', '.join(notebooks)}]\n"
        "common: {seed: 7}\n"
        "nb_one: {answer: 42}\n",
        encoding="utf-8",
    )
    return path


NB_ONE = [
    "#md # One\nreads its section and records results",
    "import json, sys\nfrom pathlib import Path\nfrom serlib.study.params import notebook_params\n"
    "params = notebook_params(params_file, 'nb_one')\n"
    "Path(reports_dir, 'nb_one_params.json').write_text(json.dumps(dict(params_file=params_file, "
    "reports_dir=reports_dir, params=params, executable=sys.executable, cwd=str(Path.cwd()))))",
    "from serlib.evaluation.results import record_results\n"
    "record_results([dict(corpus='ravdess', protocol='speaker5', model='svm', method='', fold=f, metric=m, value=v)\n"
    "                for f in ('pooled', 'mean') for m, v in (('UA', 0.5123), ('WA', 0.6), ('n_params', 1234.0))]\n"
    "               + [dict(corpus='ravdess', protocol='speaker5', model='svm', method='svm vs chance', fold='pooled',\n"
    "                       metric=m, value=v) for m, v in (('delta_UA', 0.25), ('delta_UA_ci_low', 0.125),\n"
    "                                                       ('delta_UA_ci_high', 0.375))], 'nb_one', reports_dir)",
    "from serlib.progress import progress_bar\nbar = progress_bar(3, 'tiny bar', mininterval=0)\n"
    "for _ in range(3):\n    bar.update(1)\nbar.close()",
    "#md ## Findings",
    "from IPython.display import Markdown, display\n"
    "display(Markdown('- the claim that svm beats chance is **supported**'))",
]
NB_TWO = [
    "#md ## Plot",
    "import plotly.express as px, plotly.io as pio\n"
    "pio.renderers.default = 'plotly_mimetype+notebook'\n"
    "px.scatter(x=[1, 2, 3], y=[3, 1, 2], title='tiny figure').show()",
]


@pytest.fixture(autouse=True)
def fast_metadata(monkeypatch):
    """Skip the torch device probe (a subprocess importing torch) in runner tests."""
    monkeypatch.setattr(report, "device_description", lambda: "cpu: test x 1")


def run(args, notebooks_dir, capsys):
    code = main([str(a) for a in args], notebooks_dir=notebooks_dir)
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------------- success
@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("good")
    nbs = root / "notebooks"
    make_notebook(nbs / "nb_one.ipynb", *NB_ONE)
    make_notebook(nbs / "nb_two.ipynb", *NB_TWO)
    make_notebook(nbs / "nb_unused.ipynb", "raise RuntimeError('must not run')")
    profile = write_profile(root / "tiny.yaml", ["nb_one", "nb_two"])
    reports = root / "reports"
    mp = pytest.MonkeyPatch()
    mp.setattr(report, "device_description", lambda: "cpu: test x 1")
    # ipykernel leaves fd-level output alone when it sees pytest; the kernels of a real run must not see it
    mp.delenv("PYTEST_CURRENT_TEST", raising=False)
    try:
        code = main(["--params", str(profile), "--reports", str(reports)], notebooks_dir=nbs)
    finally:
        mp.undo()
    return code, root, profile, reports


def test_runs_profile_notebooks_and_injects_parameters(good_run):
    code, root, profile, reports = good_run
    assert code == 0
    seen = json.loads((reports / "nb_one_params.json").read_text())
    assert seen["params_file"] == str(profile.resolve())
    assert seen["reports_dir"] == str(reports.resolve())
    assert seen["params"] == {"seed": 7, "answer": 42, "profile": "tiny"}
    assert seen["executable"] == sys.executable  # the kernel runs this interpreter
    assert seen["cwd"] == str((root / "notebooks").resolve())
    for name in ("nb_one", "nb_two"):
        assert (reports / f"{name}.ipynb").is_file() and (reports / f"{name}.html").is_file()
    assert not (reports / "nb_unused.html").exists()
    assert not (reports / "failed").exists()
    assert not list(reports.glob(".running-*"))


def test_html_keeps_plotly(good_run):
    reports = good_run[3]
    page = (reports / "nb_two.html").read_text(encoding="utf-8")
    assert "plotly.js v" in page  # the library itself, embedded by the `notebook` renderer
    assert "Plotly.newPlot" in page and "tiny figure" in page


def test_run_json_and_index(good_run):
    reports = good_run[3]
    state = json.loads((reports / "run.json").read_text())
    assert state["status"] == "ok" and state["profile"] == "tiny"
    assert [(e["name"], e["status"]) for e in state["notebooks"]] == [("nb_one", "ok"), ("nb_two", "ok")]
    assert all(e["wall_s"] > 0 for e in state["notebooks"])
    page = (reports / "index.html").read_text(encoding="utf-8")
    for name in ("nb_one", "nb_two"):
        assert f'href="{name}.html"' in page and f'href="{name}.ipynb"' in page
    assert page.count(" s</td>") >= 2  # wall times
    assert "51.2%" in page and "60.0%" in page and "1,234" in page  # pooled headline, as percentages
    assert 'src="http' not in page and "<link" not in page  # self-contained: inline script and data only
    assert 'id="results-data"' in page and "svm vs chance" in page  # results.csv, browsable
    assert 'href="nb_two.html#Plot"' in page  # the section that draws nb_two's figure


def test_reports_fold_code_open_with_the_summary_and_hold_no_progress_bar(good_run):
    reports = good_run[3]
    page = (reports / "nb_one.html").read_text(encoding="utf-8")
    code_cells = len([c for c in NB_ONE if not c.startswith("#md")]) + 2  # + parameters, + papermill's injected
    assert page.count('<details class="serlib-code">') == code_cells  # every code cell folded, no markdown
    summary = page.split('class="serlib-summary"', 1)[1].split("</section>", 1)[0]
    assert "the claim that svm beats chance is <strong>supported</strong>" in summary
    assert "+25.0 [+12.5, +37.5]" in summary and "above 0" in summary
    assert page.index('class="serlib-summary"') < page.index("reads its section")  # before the notebook's text
    assert "3/3 [" not in page and "tiny bar: " not in page  # the bar went to the terminal, not into the output
    assert 'class="serlib-summary"' not in (reports / "nb_two.html").read_text(encoding="utf-8")  # nothing to sum up


# ----------------------------------------------------------------------------------- failure
def test_failing_notebook_stops_the_run(tmp_path, capsys):
    nbs = tmp_path / "notebooks"
    make_notebook(nbs / "first.ipynb", "print('first ran')")
    make_notebook(
        nbs / "second.ipynb", "#md a markdown cell", "x = 1", "raise ValueError('boom <b>')", "y = 2"
    )
    make_notebook(nbs / "third.ipynb", f"open({str(tmp_path / 'third_ran')!r}, 'w').write('yes')")
    profile = write_profile(tmp_path / "tiny.yaml", ["first", "second", "third"])
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "second.html").write_text("previous good report")
    (reports / "second.ipynb").write_text("{}")
    ReportsFolder(reports).claim("second.html", "second.ipynb")  # as the previous run would have

    code, out, err = run(["--params", profile, "--reports", reports], nbs, capsys)

    assert code == 1
    # parameters cell = 1, markdown = 2, x = 1 -> 3, raise -> 4 (the injected cell is not counted)
    assert "notebook second failed in cell 4 (ValueError: boom <b>)" in err
    assert (reports / "first.html").is_file() and (reports / "first.ipynb").is_file()
    assert (reports / "second.html").read_text() == "previous good report"
    assert (reports / "second.ipynb").read_text() == "{}"
    partial = nbformat.read(reports / "failed" / "second.ipynb", as_version=4)
    assert any(o.get("ename") == "ValueError" for c in partial.cells for o in c.get("outputs", []))
    assert (reports / "failed" / "second.html").is_file()
    assert not (tmp_path / "third_ran").exists() and not (reports / "third.html").exists()

    state = json.loads((reports / "run.json").read_text())
    assert state["status"] == "failed"
    assert [e["status"] for e in state["notebooks"]] == ["ok", "failed", "skipped"]
    assert state["notebooks"][1]["error"]["cell"] == 4
    page = (reports / "index.html").read_text(encoding="utf-8")
    assert "boom &lt;b&gt;" in page and "boom <b>" not in page
    assert 'href="failed/second.html"' in page and 'previous run: <a href="second.html"' in page
    assert "second" in out and "failed" in out and "index:" in out

    # Fixed and rerun alone: its new report replaces the old one and failed/ is cleared.
    make_notebook(nbs / "second.ipynb", "x = 1")
    code, out, err = run(["--params", profile, "--reports", reports, "--notebooks", "second"], nbs, capsys)
    assert code == 0, err
    assert (reports / "second.html").read_text() != "previous good report"
    assert not (reports / "failed").exists()


def test_a_failed_run_leaves_the_last_good_results(tmp_path, capsys):
    nbs = tmp_path / "notebooks"
    record = ("from serlib.evaluation.results import record_results\n"
              "record_results([dict(corpus='c', protocol='p', model='m', method='x', fold='pooled', "
              "metric='UA', value=0.1)], 'second', reports_dir)")
    make_notebook(nbs / "second.ipynb", record, "raise ValueError('after recording')")
    profile = write_profile(tmp_path / "tiny.yaml", ["second"])
    reports = tmp_path / "reports"
    good = [dict(corpus="c", protocol="p", model="m", method="x", fold="pooled", metric="UA", value=0.9)]
    record_results(good, "second", reports)
    record_results([dict(good[0], value=0.5)], "other", reports)

    code, _, err = run(["--params", profile, "--reports", reports], nbs, capsys)

    assert code == 1 and "after recording" in err
    results = pd.read_csv(reports / "results.csv").set_index("notebook")["value"].to_dict()
    assert results == {"other": 0.5, "second": 0.9}


# ----------------------------------------------------------------------------------- the user's files
def _digests(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("name", ["index.html", "run.json", "results.csv", "nb_zero.html"])
def test_a_file_of_the_users_is_never_overwritten(tmp_path, capsys, name):
    make_notebook(tmp_path / "nbs" / "nb_zero.ipynb", f"open({str(tmp_path / 'ran')!r}, 'w').write('yes')")
    profile = write_profile(tmp_path / "p.yaml", ["nb_zero"])
    reports = tmp_path / "mine"
    reports.mkdir()
    (reports / name).write_text("my own notes, not serlib's\n", encoding="utf-8")
    (reports / "other.txt").write_text("untouched\n", encoding="utf-8")
    before = _digests(reports)

    code, _, err = run(["--params", profile, "--reports", reports], tmp_path / "nbs", capsys)

    assert code == 2 and name in err and "did not make" in err
    assert _digests(reports) == before  # nothing written, not even the manifest
    assert not (tmp_path / "ran").exists()


def test_record_results_refuses_a_results_csv_it_did_not_write(tmp_path):
    (tmp_path / "results.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    row = dict(corpus="c", protocol="p", model="m", method="x", fold="pooled", metric="UA", value=0.1)
    with pytest.raises(ForeignFilesError, match="results.csv"):
        record_results([row], "nb", tmp_path)
    assert (tmp_path / "results.csv").read_text(encoding="utf-8") == "a,b\n1,2\n"
    assert not (tmp_path / MANIFEST).exists()


def test_reports_from_before_the_manifest_are_taken_over(tmp_path, capsys, good_run):
    _, _, _, old = good_run
    assert made_by_serlib(old / "results.csv") and made_by_serlib(old / "run.json")
    assert made_by_serlib(old / "index.html") and made_by_serlib(old / "nb_one.html")
    assert (old / "results.csv").read_text().splitlines()[0] == ",".join(RESULT_COLUMNS)
    reports = tmp_path / "reports"
    reports.mkdir()
    for name in ("results.csv", "run.json", "index.html", "nb_one.ipynb", "nb_one.html"):
        (reports / name).write_bytes((old / name).read_bytes())
    assert ReportsFolder(reports).foreign(["results.csv", "run.json", "index.html", "nb_one.html"]) == []
    make_notebook(tmp_path / "nbs" / "nb_one.ipynb", "x = 1")
    profile = write_profile(tmp_path / "p.yaml", ["nb_one"])
    code, _, err = run(["--params", profile, "--reports", reports], tmp_path / "nbs", capsys)
    assert code == 0, err
    assert {"nb_one.html", "results.csv", "run.json", "index.html"} <= ReportsFolder(reports).owned


def test_claims_from_two_processes_are_both_kept(tmp_path):
    """The runner and a notebook's kernel each hold a ReportsFolder; neither write may drop the other's files."""
    runner, kernel = ReportsFolder(tmp_path), ReportsFolder(tmp_path)
    runner.claim("run.json")
    kernel.claim("results.csv")
    runner.claim("nb.html")
    assert ReportsFolder(tmp_path).owned == {"run.json", "results.csv", "nb.html"}


def test_sigterm_ends_the_run_as_interrupted(tmp_path, capsys):
    kill = f"import os, signal, time\nos.kill({os.getpid()}, signal.SIGTERM)\ntime.sleep(60)"
    make_notebook(tmp_path / "nbs" / "first.ipynb", kill)
    make_notebook(tmp_path / "nbs" / "second.ipynb", "x = 1")
    profile = write_profile(tmp_path / "p.yaml", ["first", "second"])
    reports = tmp_path / "reports"
    code, _, err = run(["--params", profile, "--reports", reports], tmp_path / "nbs", capsys)
    state = json.loads((reports / "run.json").read_text())
    assert code == 130 and "interrupted" in err
    assert state["status"] == "interrupted" and state["finished"]
    assert [e["status"] for e in state["notebooks"]] == ["interrupted", "skipped"]


def test_a_fault_of_the_runner_is_recorded(tmp_path, capsys, monkeypatch):
    import serlib.study.runner as runner

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(runner, "run_notebook", broken)
    make_notebook(tmp_path / "nbs" / "first.ipynb", "x = 1")
    profile = write_profile(tmp_path / "p.yaml", ["first"])
    reports = tmp_path / "reports"
    with pytest.raises(RuntimeError, match="disk on fire"):
        main(["--params", str(profile), "--reports", str(reports)], notebooks_dir=tmp_path / "nbs")
    state = json.loads((reports / "run.json").read_text())
    assert state["status"] == "failed" and state["error"]["evalue"] == "disk on fire"


# ----------------------------------------------------------------------------------- selection
def test_select_notebooks(tmp_path):
    for name in ("00_data", "01_baselines", "02_whisper_er"):
        make_notebook(tmp_path / f"{name}.ipynb")
    profile = {"profile": "p", "notebooks": ["00_data", "02_whisper_er"]}
    assert select_notebooks(None, profile, tmp_path) == ["00_data", "02_whisper_er"]
    assert select_notebooks(["01_baselines.ipynb", "00_data"], profile, tmp_path) == ["01_baselines", "00_data"]
    with pytest.raises(StudyError, match="unknown notebook.*03_missing.*00_data, 01_baselines, 02_whisper_er"):
        select_notebooks(["00_data", "03_missing"], profile, tmp_path)
    with pytest.raises(StudyError, match="no notebooks to run"):
        select_notebooks(None, {"profile": "p", "notebooks": []}, tmp_path)
    with pytest.raises(StudyError, match="more than once"):
        select_notebooks(["00_data", "00_data"], profile, tmp_path)


def test_cli_errors_run_nothing(tmp_path, capsys):
    make_notebook(tmp_path / "nbs" / "nb_zero.ipynb")
    reports = tmp_path / "reports"
    profile = write_profile(tmp_path / "p.yaml", ["nb_zero", "07_nope"])
    code, _, err = run(["--params", profile, "--reports", reports], tmp_path / "nbs", capsys)
    assert code == 2 and "unknown notebook(s) 07_nope" in err and "nb_zero" in err
    empty = write_profile(tmp_path / "e.yaml", [])
    code, _, err = run(["--params", empty, "--reports", reports], tmp_path / "nbs", capsys)
    assert code == 2 and "no notebooks to run" in err
    code, _, err = run(["--params", tmp_path / "absent.yaml"], tmp_path / "nbs", capsys)
    assert code == 2 and "no profile" in err
    code, _, err = run(["--params", profile, "--notebooks", "nb_zero", "--kernel", "no-such-kernel"], tmp_path / "nbs", capsys)
    assert code == 2 and "no Jupyter kernel named 'no-such-kernel'" in err
    assert not reports.exists()


# ----------------------------------------------------------------------------------- report
def test_headline_table_formats_percentages():
    frame = pd.DataFrame(
        [
            ("nb", "ravdess", "p", "svm", "", "pooled", "WA", 0.61234),
            ("nb", "ravdess", "p", "svm", "", "pooled", "UA", 0.5),
            ("nb", "ravdess", "p", "svm", "", "pooled", "loss", 0.123456),
            ("nb", "ravdess", "p", "svm", "", "f1", "UA", 0.9),
            ("nb", "urdu", "p", "svm", "", "pooled", "macro_f1", 0.25),
            ("other", "urdu", "p", "svm", "", "pooled", "UA", 0.1),
        ],
        columns=["notebook", "corpus", "protocol", "model", "method", "fold", "metric", "value"],
    )
    table = headline_table(frame, "nb")
    assert list(table.columns) == ["corpus", "protocol", "model", "method", "UA", "WA", "macro_f1", "loss"]
    first = table.iloc[0]
    assert (first.corpus, first.UA, first.WA, first.loss, first.macro_f1) == ("ravdess", "50.0%", "61.2%", "0.1235", "–")
    assert table.iloc[1].macro_f1 == "25.0%"


def test_headline_uses_the_only_fold_without_pooled_rows():
    columns = ["notebook", "corpus", "protocol", "model", "method", "fold", "metric", "value"]
    data = pd.DataFrame(
        [("00_data", "ravdess", "all", "", "data", "all", m, v) for m, v in (("utterances", 1440), ("hours", 1.4829))]
        + [("x", "ravdess", "p", "m", "", f, "UA", 0.5) for f in ("f1", "f2")],
        columns=columns,
    )
    table = headline_table(data, "00_data")
    assert table.iloc[0].utterances == "1,440" and table.iloc[0].hours == "1.483"
    assert headline_table(data, "x").empty  # several folds, none pooled: nothing to headline


def test_index_without_run_and_escaping(tmp_path):
    record_results(
        [dict(corpus="<x>", protocol="p", model="m&m", method="", fold="pooled", metric="UA", value=0.5)], "nb", tmp_path
    )
    page = write_index(tmp_path).read_text(encoding="utf-8")  # no run.json yet
    assert "&lt;x&gt;" in page and "m&amp;m" in page and "recorded by an earlier run" in page


def test_paired_differences_read_as_signed_points():
    assert report.format_value("delta_UA", -0.1016) == "-10.2 pt"
    assert report.format_value("delta_UA_ci_high", 0.0625) == "+6.2 pt"
    assert report.format_value("UA", 0.5) == "50.0%" and report.format_value("runs", 3.0) == "3"


def test_index_adds_up_how_training_runs_ended(tmp_path):
    def counts(method, runs, early, done):
        return [dict(corpus="c", protocol="p", model="m", method=method, fold="pooled", metric=k, value=v)
                for k, v in (("runs", runs), ("runs_stopped_early", early), ("runs_converged", done))]

    record_results(counts("x", 4, 3, 4) + counts("y", 2, 0, 1), "nb1", tmp_path)
    record_results(counts("z", 4, 4, 4), "nb2", tmp_path)
    table = report.training_runs(load_results(tmp_path))
    assert table.loc["nb1", "runs"] == 6 and table.loc["nb1", "runs_stopped_early"] == 3
    assert table.loc["all", "runs"] == 10 and table.loc["all", "stopped early %"] == 70
    page = write_index(tmp_path).read_text(encoding="utf-8")
    assert "Training runs" in page and ">70<" in page


def test_run_metadata_fields(monkeypatch):
    meta = run_metadata("default")
    assert meta["profile"] == "default" and meta["device"] == "cpu: test x 1"
    assert meta["commit"] and meta["python"] and meta["hostname"] and meta["started"].endswith("Z")
    assert {"numpy", "pandas", "papermill"} <= set(meta["versions"])
    monkeypatch.setattr(report, "_git", lambda *args: None)
    assert report.git_commit() == "unknown"


def test_the_summary_lists_each_recorded_comparison_once_and_no_empty_combinations():
    from serlib.study.notebook_html import comparison_table

    recorded = [("ravdess", "emobox", "a vs b", 0.1), ("emodb", "speakers", "c vs b", -0.2)]
    rows = [dict(notebook="n", corpus=c, protocol=p, model="m", method=meth, fold="pooled", metric=metric, value=v + dv)
            for c, p, meth, v in recorded
            for metric, dv in (("delta_UA", 0.0), ("delta_UA_ci_low", -0.05), ("delta_UA_ci_high", 0.05))]
    table = comparison_table(pd.DataFrame(rows + [dict(notebook="n", corpus="emodb", protocol="speakers", model="m",
                                                       method="c", fold="pooled", metric="UA", value=0.7)]))
    assert table[["corpus", "protocol", "comparison (a vs b)"]].values.tolist() == [
        ["ravdess", "emobox", "a vs b"], ["emodb", "speakers", "c vs b"]]
    assert table["interval"].tolist() == ["above 0", "below 0"]
    assert table["a - b, UA points [95 % CI]"].tolist() == ["+10.0 [+5.0, +15.0]", "-20.0 [-25.0, -15.0]"]
