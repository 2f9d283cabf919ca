"""The index page's browsable results.csv and its links to every figure, offline (no CDN, no server).

The rows travel inside the page as JSON; a few lines of plain JavaScript filter them by notebook,
corpus and method (and free text) and sort by any column. Figure links point at the section of
each executed notebook that draws a plotly figure, by the anchor nbconvert gives its heading.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pandas as pd

PLOTLY_MIME = "application/vnd.plotly.v1+json"
FILTERS = ("notebook", "corpus", "method")

_SCRIPT = """
(function () {
  const rows = JSON.parse(document.getElementById("results-data").textContent);
  const cols = ["notebook", "corpus", "protocol", "model", "method", "fold", "metric", "value"];
  const body = document.querySelector("#results-table tbody"), count = document.getElementById("results-count");
  const selects = Array.from(document.querySelectorAll("select[data-col]")), text = document.getElementById("results-text");
  let sortCol = null, sortDir = 1;
  const query = new URLSearchParams(location.search);  // index.html?notebook=02_whisper_er&text=delta
  selects.forEach(s => {
    [...new Set(rows.map(r => r[s.dataset.col]))].sort().forEach(v => s.add(new Option(v, v)));
    if (query.has(s.dataset.col)) s.value = query.get(s.dataset.col);
    s.addEventListener("change", draw);
  });
  text.value = query.get("text") || "";
  text.addEventListener("input", draw);
  document.querySelectorAll("#results-table th").forEach((th, i) => th.addEventListener("click", () => {
    sortDir = sortCol === cols[i] ? -sortDir : 1; sortCol = cols[i]; draw();
  }));
  function draw() {
    const needle = text.value.toLowerCase();
    let shown = rows.filter(r => selects.every(s => !s.value || r[s.dataset.col] === s.value)
      && (!needle || cols.some(c => String(r[c]).toLowerCase().includes(needle))));
    if (sortCol) shown.sort((a, b) => (typeof a[sortCol] === "number" && typeof b[sortCol] === "number"
      ? a[sortCol] - b[sortCol] : String(a[sortCol]).localeCompare(String(b[sortCol]))) * sortDir);
    body.replaceChildren(...shown.slice(0, 2000).map(r => {
      const tr = document.createElement("tr");
      cols.forEach(c => { const td = tr.insertCell(); td.textContent = r[c] === null ? "" : r[c];
                          if (c === "value") td.className = "num"; });
      return tr;
    }));
    count.dataset.shown = shown.length;
    count.textContent = shown.length + " of " + rows.length + " rows" + (shown.length > 2000 ? " (first 2000 shown)" : "");
  }
  draw();
})();
"""


def results_browser_html(results: pd.DataFrame) -> str:
    """A filterable, sortable table of every results.csv row ('' when there are none)."""
    if results.empty:
        return ""
    cols = ["notebook", "corpus", "protocol", "model", "method", "fold", "metric", "value"]
    frame = results.reindex(columns=cols)
    records = [{c: (None if pd.isna(v) else (round(float(v), 6) if c == "value" else str(v))) for c, v in row.items()}
               for row in frame.to_dict("records")]
    data = json.dumps(records).replace("</", "<\\/")  # nothing in the data can close the script element
    selects = "".join(f'<label>{c} <select data-col="{c}"><option value="">all</option></select></label> '
                      for c in FILTERS)
    head = "".join(f"<th>{c}</th>" for c in cols)
    return (
        '<h2 id="browse">Browse results.csv</h2>'
        '<p class="note">Every row of results.csv (values as stored: fractions for UA/WA/F1, points/100 for '
        "deltas). Filter by notebook, corpus and method or any text; click a column heading to sort. "
        "Filters can be given in the address: <code>index.html?notebook=02_whisper_er&amp;text=delta</code>.</p>"
        f'<p>{selects}<label>text <input id="results-text" type="search"></label> '
        '<span id="results-count" class="note"></span></p>'
        f'<table id="results-table"><thead><tr>{head}</tr></thead><tbody></tbody></table>'
        f'<script type="application/json" id="results-data">{data}</script>'
        f"<script>{_SCRIPT}</script>"
    )


def heading_anchor(title: str) -> str:
    """The id nbconvert gives a Markdown heading: its text with spaces as hyphens."""
    return re.sub(r"\s+", "-", title.strip())


def figure_sections(ipynb: Path) -> list[str]:
    """Headings (## / ###) of the sections of an executed notebook that hold a plotly figure, in order."""
    nb = json.loads(ipynb.read_text(encoding="utf-8"))
    sections, current = [], None
    for cell in nb.get("cells", []):
        source = "".join(cell.get("source", []))
        if cell.get("cell_type") == "markdown":
            for line in source.splitlines():
                match = re.match(r"^\s*#{2,3}\s+(.*)", line)
                if match:
                    current = match.group(1).strip()
        elif current and any(PLOTLY_MIME in o.get("data", {}) for o in cell.get("outputs", [])):
            if current not in sections:
                sections.append(current)
    return sections


def figure_links_html(root: Path, names: list[str]) -> str:
    """Per notebook with a report, links to each of its sections that draws a figure."""
    items = []
    for name in names:
        ipynb, page = root / f"{name}.ipynb", f"{name}.html"
        if not ipynb.is_file() or not (root / page).is_file():
            continue
        try:
            sections = figure_sections(ipynb)
        except (OSError, ValueError):
            continue
        if sections:
            links = " · ".join(f'<a href="{html.escape(page)}#{html.escape(heading_anchor(s))}">{html.escape(s)}</a>'
                               for s in sections)
            items.append(f"<li><code>{html.escape(name)}</code>: {links}</li>")
    return f"<h2>Figures</h2><ul>{''.join(items)}</ul>" if items else ""
