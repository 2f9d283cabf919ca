"""One executed notebook -> its HTML report: code folded, and a summary at the top.

The page uses serlib's nbconvert template (templates/serlib: JupyterLab's layout with every code
cell's source under a "code" toggle). The summary is built from what the run itself produced: the
notebook's paired comparisons in results.csv (delta UA with its interval) and the Markdown its
"Findings" section displayed, so a reader sees the answer before the tables that back it.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE = "serlib"
FINDINGS_HEADING = "## Findings"


def export_html(ipynb: Path, html_path: Path, results: pd.DataFrame | None = None) -> Path:
    """Render an executed notebook to HTML, keeping scripts (plotly figures) as they are; `results`
    (results.csv rows, any notebook's) feed the summary at the top."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(ipynb, as_version=4)
    exporter = HTMLExporter(template_name=TEMPLATE, extra_template_basedirs=[str(TEMPLATES)])
    exporter.sanitize_html = False  # the default today; plotly's text/html output carries its <script>
    ours = results[results["notebook"] == ipynb.stem] if results is not None and len(results) else None
    resources = {"metadata": {"name": ipynb.stem}, "serlib_summary": summary_html(nb, ours)}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    html_path.write_text(body, encoding="utf-8")
    return html_path


def findings_markdown(nb) -> list[str]:
    """The Markdown that the cells under the notebook's Findings heading displayed, in order."""
    out, inside = [], False
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("## "):
            inside = cell.source.lstrip().startswith(FINDINGS_HEADING)
            continue
        if inside and cell.cell_type == "code":
            out += [o["data"]["text/markdown"] for o in cell.get("outputs", [])
                    if o.get("output_type") in ("display_data", "execute_result") and "text/markdown" in o.get("data", {})]
    return out


def comparison_table(results: pd.DataFrame) -> pd.DataFrame:
    """The notebook's paired comparisons: one row per `a vs b` with delta UA and its 95 % interval (points)."""
    deltas = results[results["metric"].isin(["delta_UA", "delta_UA_ci_low", "delta_UA_ci_high"])]
    if deltas.empty:
        return pd.DataFrame()
    keys = [c for c in ("corpus", "protocol", "model", "method") if c in deltas.columns]
    wide = deltas.assign(**{k: deltas[k].fillna("") for k in keys}).pivot_table(
        index=keys, columns="metric", values="value", sort=False).reset_index()  # only the rows recorded
    wide = wide.dropna(subset=["delta_UA", "delta_UA_ci_low", "delta_UA_ci_high"])
    low, high = wide["delta_UA_ci_low"], wide["delta_UA_ci_high"]
    return pd.DataFrame({
        "corpus": wide["corpus"], "protocol": wide.get("protocol", ""), "comparison (a vs b)": wide["method"],
        "a - b, UA points [95 % CI]": [f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
                                      for d, lo, hi in zip(wide["delta_UA"], low, high)],
        "interval": ["above 0" if lo > 0 else "below 0" if hi < 0 else "includes 0" for lo, hi in zip(low, high)],
    })


def summary_html(nb, results: pd.DataFrame | None) -> str:
    """The summary block: the findings (as the notebook wrote them) and its comparisons; empty when
    the notebook has neither."""
    from nbconvert.filters.markdown import markdown2html

    parts = []
    findings = findings_markdown(nb)
    if findings:
        parts.append("<h2>Summary</h2>" + "".join(markdown2html(text) for text in findings))
    table = comparison_table(results) if results is not None and len(results) else pd.DataFrame()
    if len(table):
        parts.append("<h3>Paired comparisons (speaker-level bootstrap)</h3>"
                     + table.to_html(index=False, escape=True, border=0))
    if not parts:
        return ""
    return "\n".join(parts) + f'<p><a href="#{html.escape(FINDINGS_HEADING[3:])}">Findings section</a> · code is folded: ' \
                              "open a cell's <code>code</code> toggle or use <em>show all code</em>.</p>"
