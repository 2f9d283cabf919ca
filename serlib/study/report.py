"""Run metadata, run state (reports/run.json) and the report index page (reports/index.html).

The study runner (serlib.study) keeps `run.json` up to date after every notebook and rewrites
`index.html` from it, so the index always shows how far a run got, even while it is running or
after it stopped at a failing notebook. The page is one self-contained file (inline CSS, the
results browser's inline script and data, no external assets).
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata as _metadata
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from .. import __version__
from ..evaluation.results import atomic_write_text, load_results, reports_path
from ..paths import PROJECT_ROOT
from .results_browser import figure_links_html, results_browser_html

RUN_FILE = "run.json"
INDEX_FILE = "index.html"
FAILED_DIR = "failed"

# Libraries whose versions a run records (distribution names), when installed.
LIBRARIES = (
    "torch",
    "transformers",
    "accelerate",
    "numpy",
    "pandas",
    "scikit-learn",
    "papermill",
    "umap-learn",
    "plotly",
)
# Metrics stored as fractions 0..1 and shown as percentages; listed first, in this order.
PERCENT_METRICS = ("UA", "WA", "macro_f1", "accuracy")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------------- metadata
def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), *args],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_commit() -> str:
    """Short hash of HEAD, with "-dirty" when the working tree has changes; "unknown" outside git."""
    commit = _git("rev-parse", "--short", "HEAD")
    if not commit:
        return "unknown"
    status = _git("status", "--porcelain", "--untracked-files=no")
    return f"{commit}-dirty" if status else commit


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


_CUDA_PROBE = """
import json, torch
if torch.cuda.is_available():
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    print(json.dumps({"names": names, "cuda": torch.version.cuda}))
else:
    print(json.dumps({"names": []}))
"""


def device_description() -> str:
    """The GPU(s) torch sees, else "cpu: <model> x <cores>".

    torch is asked in a short-lived child process so the calling process (the study runner)
    never holds a CUDA context, and GPU memory stays free for the notebooks' kernels.
    """
    try:
        out = subprocess.run(
            [sys.executable, "-c", _CUDA_PROBE], capture_output=True, text=True, timeout=120, check=True
        )
        info = json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        info = {"names": []}
    names = info.get("names") or []
    if names:
        counted = [f"{n} x {names.count(n)}" if names.count(n) > 1 else n for n in dict.fromkeys(names)]
        cuda = f" (CUDA {info['cuda']})" if info.get("cuda") else ""
        return ", ".join(counted) + cuda
    return f"cpu: {_cpu_model()} x {os.cpu_count() or '?'}"


def library_versions() -> dict[str, str]:
    versions = {"serlib": __version__}
    for dist in LIBRARIES:
        try:
            versions[dist] = _metadata.version(dist)
        except _metadata.PackageNotFoundError:
            continue
    return versions


def run_metadata(profile_name: str) -> dict:
    """Where and with what a run happens: commit, profile, device, versions, host, start time (UTC)."""
    return {
        "profile": profile_name,
        "commit": git_commit(),
        "device": device_description(),
        "python": platform.python_version(),
        "executable": sys.executable,
        "versions": library_versions(),
        "hostname": socket.gethostname(),
        "started": utc_now(),
    }


# ----------------------------------------------------------------------------------- run state
def run_file(reports_dir=None) -> Path:
    return reports_path(reports_dir) / RUN_FILE


def save_run(reports_dir, run: dict) -> Path:
    """Write run.json atomically."""
    return atomic_write_text(run_file(reports_dir), json.dumps(run, indent=2, default=str) + "\n")


def load_run(reports_dir=None) -> dict | None:
    path = run_file(reports_dir)
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


# ----------------------------------------------------------------------------------- formatting
def format_seconds(seconds) -> str:
    if seconds is None:
        return ""
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_value(metric: str, value) -> str:
    if value is None or pd.isna(value):
        return "–"
    value = float(value)
    if metric in PERCENT_METRICS:
        return f"{100 * value:.1f}%"
    if metric.startswith("delta_"):  # a paired difference of rates and its interval bounds, in points
        return f"{100 * value:+.1f} pt"
    if value.is_integer() and abs(value) < 1e15:  # counts: utterances, speakers, n, parameters
        return f"{int(value):,}"
    return f"{value:.4g}"


def _metric_order(metrics) -> list[str]:
    present = list(dict.fromkeys(metrics))
    first = [m for m in PERCENT_METRICS if m in present]
    low_first = lambda m: m.replace("_ci_low", "_ci_0").replace("_ci_high", "_ci_1")  # noqa: E731  delta, low, high
    return first + sorted((m for m in present if m not in PERCENT_METRICS), key=low_first)


def headline_fold(results: pd.DataFrame, notebook: str) -> str | None:
    """"pooled" when the notebook recorded pooled rows; else its only fold (e.g. "all" for data
    statistics); None when it has several folds but no pooled rows."""
    folds = set(results.loc[results["notebook"] == notebook, "fold"])
    if "pooled" in folds:
        return "pooled"
    return folds.pop() if len(folds) == 1 else None


def headline_table(results: pd.DataFrame, notebook: str) -> pd.DataFrame:
    """The notebook's headline rows (see headline_fold) as (corpus, protocol, model, method) x
    metric, values as text: rates as percentages with one decimal, counts as integers."""
    fold = headline_fold(results, notebook)
    rows = results[(results["notebook"] == notebook) & (results["fold"] == fold)]
    index = ["corpus", "protocol", "model", "method"]
    if rows.empty:
        return pd.DataFrame(columns=index)
    wide = rows.pivot_table(index=index, columns="metric", values="value", aggfunc="first", sort=False)
    metrics = _metric_order(rows["metric"])
    wide = wide.reindex(columns=metrics)
    text = pd.DataFrame({m: [format_value(m, v) for v in wide[m]] for m in metrics}, index=wide.index)
    return text.reset_index()


# ----------------------------------------------------------------------------------- index page
_CSS = """
:root { color-scheme: light; }
body { font: 15px/1.45 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 2rem auto; max-width: 78rem; padding: 0 1.5rem; color: #1d232a; background: #fff; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #d8dee4; padding-bottom: .25rem; }
h3 { font-size: 1.05rem; margin: 1.6rem 0 .4rem; }
.sub { color: #57606a; margin-top: 0; }
table { border-collapse: collapse; margin: .4rem 0 1rem; font-size: .93rem; }
th, td { border: 1px solid #d8dee4; padding: .3rem .65rem; text-align: left; vertical-align: top; }
th { background: #f3f5f7; font-weight: 600; }
tbody tr:nth-child(even) td { background: #fafbfc; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.meta th { width: 11rem; }
.status { font-weight: 600; padding: .05rem .5rem; border-radius: .6rem; white-space: nowrap; }
.st-ok { background: #dafbe1; color: #116329; }
.st-failed, .st-interrupted { background: #ffebe9; color: #a40e26; }
.st-running { background: #fff8c5; color: #7d4e00; }
.st-pending, .st-skipped { background: #eaeef2; color: #57606a; }
pre.err { background: #fff5f5; border: 1px solid #ffcecb; padding: .5rem .7rem; margin: .3rem 0 0;
          white-space: pre-wrap; word-break: break-word; font-size: .85rem; max-width: 48rem; }
code { font-size: .9em; }
a { color: #0969da; }
.note { color: #57606a; font-size: .9rem; }
footer { margin-top: 3rem; color: #8c959f; font-size: .85rem; }
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _link(href: str, text: str) -> str:
    return f'<a href="{_e(quote(href))}">{_e(text)}</a>'


def _meta_table(run: dict) -> str:
    rows = [
        ("Profile", run.get("profile")),
        ("Parameters file", run.get("params_file")),
        ("Run status", run.get("status")),
        ("Started (UTC)", run.get("started")),
        ("Finished (UTC)", run.get("finished")),
        ("Git commit", run.get("commit")),
        ("Device", run.get("device")),
        ("Host", run.get("hostname")),
        ("Python", run.get("python")),
        ("Interpreter", run.get("executable")),
        ("Kernel", run.get("kernel")),
    ]
    versions = run.get("versions") or {}
    if versions:
        rows.append(("Libraries", ", ".join(f"{k} {v}" for k, v in versions.items())))
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows if v not in (None, ""))
    return f'<table class="meta"><tbody>{body}</tbody></table>'


def _error_html(error: dict | None) -> str:
    if not error:
        return ""
    parts = []
    if error.get("cell") is not None:
        where = f"cell {error['cell']}"
        if error.get("execution_count") is not None:
            where += f" (In [{error['execution_count']}])"
        parts.append(f"Failed in {where}")
    headline = ": ".join(str(x) for x in (error.get("ename"), error.get("evalue")) if x)
    text = "\n".join(p for p in (" ".join(parts), error.get("source_line") and f"> {error['source_line']}", headline) if p)
    return f'<pre class="err">{_e(text)}</pre>'


def _notebooks_table(entries: list[dict]) -> str:
    head = (
        "<thead><tr><th>#</th><th>Notebook</th><th>Status</th><th class=num>Wall time</th>"
        "<th>Started (UTC)</th><th>Reports</th><th>Error</th></tr></thead>"
    )
    body = []
    for i, entry in enumerate(entries, 1):
        status = entry.get("status") or "pending"
        links = []
        partial = "partial " if status != "ok" else ""
        if entry.get("html"):
            links.append(_link(entry["html"], f"{partial}HTML"))
        if entry.get("ipynb"):
            links.append(_link(entry["ipynb"], f"{partial}ipynb"))
        if entry.get("previous_html"):
            links.append("previous run: " + _link(entry["previous_html"], "HTML"))
        body.append(
            "<tr>"
            f"<td class=num>{i}</td><td><code>{_e(entry.get('name'))}</code></td>"
            f'<td><span class="status st-{_e(status)}">{_e(status)}</span></td>'
            f"<td class=num>{_e(format_seconds(entry.get('wall_s')))}</td>"
            f"<td>{_e(entry.get('started'))}</td>"
            f"<td>{' · '.join(links)}</td>"
            f"<td>{_error_html(entry.get('error'))}</td>"
            "</tr>"
        )
    return f"<table>{head}<tbody>{''.join(body)}</tbody></table>"


def _frame_html(frame: pd.DataFrame, numeric: set[str]) -> str:
    head = "".join(f'<th{" class=num" if c in numeric else ""}>{_e(c)}</th>' for c in frame.columns)
    body = []
    for _, row in frame.iterrows():
        cells = "".join(f'<td{" class=num" if c in numeric else ""}>{_e(row[c])}</td>' for c in frame.columns)
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _headlines(results: pd.DataFrame, run_names: list[str]) -> str:
    if results.empty:
        return '<p class="note">No results recorded yet (reports/results.csv is empty or absent).</p>'
    recorded = list(dict.fromkeys(results["notebook"]))
    names = [n for n in run_names if n in recorded] + [n for n in recorded if n not in run_names]
    parts = [
        '<p class="note">Rows of <code>results.csv</code> with fold <code>pooled</code> (all folds\' '
        "predictions scored together; a notebook without pooled rows shows its only fold). "
        "UA, WA, macro_f1 and accuracy in percent. Every fold, mean and std: "
        f'{_link("results.csv", "results.csv")}.</p>'
    ]
    for name in names:
        note = "" if name in run_names else ' <span class="note">(recorded by an earlier run)</span>'
        fold = headline_fold(results, name)
        if fold not in (None, "pooled"):
            note += f' <span class="note">(fold {_e(fold)})</span>'
        parts.append(f"<h3><code>{_e(name)}</code>{note}</h3>")
        table = headline_table(results, name)
        if table.empty:
            n = int((results["notebook"] == name).sum())
            parts.append(f'<p class="note">No pooled rows ({n} rows in results.csv).</p>')
            continue
        # Drop key columns that are empty for every row (e.g. no `method`).
        keep = [c for c in table.columns if c not in ("protocol", "model", "method") or (table[c] != "").any()]
        table = table[keep]
        numeric = set(table.columns) - {"corpus", "protocol", "model", "method"}
        parts.append(_frame_html(table, numeric))
    return "".join(parts)


def training_runs(results: pd.DataFrame) -> pd.DataFrame:
    """Per notebook, how its validated training runs ended (the `runs*` rows that `run_rows` records):
    runs, stopped by early stopping or a perfect score, converged, and the share stopped early; a
    last row "all" over the study."""
    rows = results[results["metric"].isin(["runs", "runs_stopped_early", "runs_converged"])]
    if rows.empty:
        return pd.DataFrame()
    table = rows.pivot_table(index="notebook", columns="metric", values="value", aggfunc="sum", sort=False)
    table = table.reindex(columns=["runs", "runs_stopped_early", "runs_converged"], fill_value=0)
    table.loc["all"] = table.sum()
    table["stopped early %"] = 100 * table["runs_stopped_early"] / table["runs"]
    return table.astype({"runs": int, "runs_stopped_early": int, "runs_converged": int})


def _training_runs_html(results: pd.DataFrame) -> str:
    table = training_runs(results)
    if table.empty:
        return ""
    text = table.reset_index().rename(columns={"runs_stopped_early": "stopped early", "runs_converged": "converged"})
    text["stopped early %"] = text["stopped early %"].map(lambda v: f"{v:.0f}")
    note = ('<p class="note">Runs with a validation set: how many early stopping (or a perfect validation score) '
            "ended, not the step budget; <em>converged</em> also counts runs whose best validation came before "
            "their last step. A comparison involving an unconverged run is reported as inconclusive.</p>")
    return "<h2>Training runs</h2>" + note + _frame_html(text.astype(str), set(text.columns) - {"notebook"})


def _earlier_reports(root: Path, run_names: list[str]) -> str:
    others = sorted(
        p.name for p in root.glob("*.html") if p.name != INDEX_FILE and p.stem not in run_names
    )
    if not others:
        return ""
    items = "".join(f"<li>{_link(name, name)}</li>" for name in others)
    return f"<h2>Other reports in this folder</h2><p class=note>From earlier runs.</p><ul>{items}</ul>"


def write_index(reports_dir=None, run: dict | None = None) -> Path:
    """Write reports/index.html from `run` (default: reports/run.json) and reports/results.csv."""
    root = reports_path(reports_dir)
    if run is None:
        run = load_run(root) or {}
    entries = list(run.get("notebooks") or [])
    run_names = [str(e.get("name")) for e in entries]
    title = f"serlib study — {run.get('profile') or 'no run yet'}"
    try:
        results = load_results(root)
        headlines = _headlines(results, run_names) + _training_runs_html(results)
        browser = results_browser_html(results)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        headlines, browser = f'<pre class="err">results.csv could not be read: {_e(exc)}</pre>', ""
    figures = figure_links_html(root, run_names)
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{_e(title)}</h1>
<p class="sub">Generated by <code>python -m serlib.study</code> · updated {_e(utc_now())}</p>
<h2>Run</h2>
{_meta_table(run)}
<h2>Notebooks</h2>
{_notebooks_table(entries) if entries else '<p class="note">No notebooks in this run.</p>'}
{figures}
<h2>Headline numbers</h2>
{headlines}
{browser}
{_earlier_reports(root, run_names)}
<footer>Files: {_link(RUN_FILE, RUN_FILE)} · {_link("results.csv", "results.csv")}</footer>
</body>
</html>
"""
    return atomic_write_text(root / INDEX_FILE, page)
