"""The UMAP projection the notebooks plot: seeded, and faithful to well-separated groups."""

from __future__ import annotations

import numpy as np
import pytest

from serlib.study import plots


def _blobs(n: int = 60, dim: int = 16):
    rng = np.random.default_rng(0)
    centre = np.zeros(dim)
    centre[0] = 20.0
    x = np.concatenate([rng.normal(size=(n, dim)), rng.normal(size=(n, dim)) + centre]).astype(np.float32)
    return x, np.r_[np.zeros(n), np.ones(n)].astype(bool)


@pytest.mark.parametrize("exact", [True, False])
def test_umap_is_repeatable_and_keeps_two_far_groups_apart(exact, monkeypatch):
    if not exact:  # the raw features to umap itself (its path for 4,096 points or more)
        monkeypatch.setattr(plots, "EXACT_UMAP_POINTS", 0)
    x, second = _blobs()
    xy = plots.umap_xy(x, n_neighbors=10, min_dist=0.1, seed=0)
    assert xy.shape == (len(x), 2) and np.isfinite(xy).all()
    np.testing.assert_array_equal(xy, plots.umap_xy(x, n_neighbors=10, min_dist=0.1, seed=0))
    gap = np.linalg.norm(xy[second].mean(0) - xy[~second].mean(0))
    spread = max(xy[second].std(0).max(), xy[~second].std(0).max())
    assert gap > 3 * spread
