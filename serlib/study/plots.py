"""Interactive plotly figures shared by the notebooks (kept out of models and trainers)."""

from __future__ import annotations

import warnings

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots


def setup_plotly() -> None:
    """Figures that show in JupyterLab and survive nbconvert's HTML export (plotly.js embedded once)."""
    pio.renderers.default = "plotly_mimetype+notebook"
    pio.templates.default = "plotly_white"


def confusion_figure(cms: dict[str, pd.DataFrame], normalise: bool = True, title: str = "") -> go.Figure:
    """Side-by-side confusion matrices (rows = true class, columns = predicted), counts on hover."""
    fig = make_subplots(rows=1, cols=len(cms), subplot_titles=list(cms), horizontal_spacing=0.12)
    for col, cm in enumerate(cms.values(), start=1):
        shown = cm.div(cm.sum(axis=1).replace(0, 1), axis=0) if normalise else cm
        fig.add_trace(
            go.Heatmap(
                z=shown.values, x=list(cm.columns), y=list(cm.index), customdata=cm.values,
                colorscale="Blues", zmin=0, zmax=1 if normalise else None, showscale=col == len(cms),
                text=[[f"{v:.2f}" if normalise else f"{v:d}" for v in r] for r in shown.values],
                texttemplate="%{text}",
                hovertemplate="true %{y}<br>predicted %{x}<br>count %{customdata}<extra></extra>",
            ),
            row=1, col=col,
        )
        fig.update_yaxes(autorange="reversed", title_text="true" if col == 1 else None, row=1, col=col)
        fig.update_xaxes(title_text="predicted", row=1, col=col)
    fig.update_layout(title=title, height=420, width=max(480, 440 * len(cms)))
    return fig


def fold_bars(table: pd.DataFrame, x: str, y: str, color: str, title: str, chance: float | None = None) -> go.Figure:
    """Grouped bars of a metric per fold (or per layer, per method...), with a chance line if given."""
    fig = px.bar(table, x=x, y=y, color=color, barmode="group", title=title, text_auto=".1f")
    if chance is not None:
        fig.add_hline(y=chance, line_dash="dot", annotation_text="chance", annotation_position="top left")
    fig.update_layout(height=420)
    return fig


def validation_curves(histories: pd.DataFrame, metric: str = "UA", color: str = "method", facet: str | None = "corpus",
                      title: str = "") -> go.Figure:
    """Validation score against training step, one line per run (fold), coloured by `color`: whether
    a run was still improving when it stopped is visible at a glance."""
    data = histories.dropna(subset=[metric]).copy()
    data[f"{metric} %"] = 100 * data[metric]
    data["run"] = data[[c for c in ("corpus", "protocol", "model", "method", "fold", "seed", "lambda", "layer")
                        if c in data.columns]].astype(str).agg(" / ".join, axis=1)
    fig = px.line(data, x="step", y=f"{metric} %", color=color, line_group="run", hover_name="run",
                  facet_col=facet if facet in data.columns else None, markers=True,
                  title=title or f"Validation {metric} over training (one line per run)")
    fig.update_layout(height=400)
    return fig


# Below this many points umap-learn computes every pairwise distance itself, one Python call per pair
# (5 s for 1,800 points here); the same exact distances from scikit-learn's vectorised code take
# milliseconds, so the projection costs a third as much. Above it, umap's approximate neighbours.
EXACT_UMAP_POINTS = 4096


def umap_xy(x, n_neighbors: int, min_dist: float, seed: int):
    """2-d UMAP coordinates [N, 2] of the rows of `x` (Euclidean), seeded (one thread: repeatable)."""
    import umap  # imported here: its first use compiles (numba) for a while
    from sklearn.metrics import pairwise_distances

    exact = len(x) < EXACT_UMAP_POINTS
    projector = umap.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed, n_jobs=1,
                          metric="precomputed" if exact else "euclidean")
    with warnings.catch_warnings():  # "inverse_transform will be unavailable": never used here
        warnings.filterwarnings("ignore", message="using precomputed metric")
        return projector.fit_transform(pairwise_distances(x) if exact else x)
