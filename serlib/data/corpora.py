"""The corpus registry: a name (as in the parameter profiles) -> its loader, under one data root."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pandas as pd

from .. import paths
from . import cremad, emodb, generic, iemocap, ravdess, shemo, urdu

LOADERS: dict[str, Callable[..., pd.DataFrame]] = {
    "ravdess": ravdess.load,
    "urdu": urdu.load,
    "iemocap": iemocap.load,
    "emodb": emodb.load,
    "shemo": shemo.load,
    "cremad": cremad.load,
    "csv": generic.load,
}


def load_corpus(
    name: str,
    data_root: str | os.PathLike | None = None,
    path: str | os.PathLike | None = None,
    **opts,
) -> pd.DataFrame:
    """The manifest of corpus `name` found at `<data root>/<path or name>` (kept inside the root).

    `name="csv"` loads a generic CSV: `path` is then the CSV, relative to the data root, and `opts`
    go to `generic.load` (root, corpus, label_map). Durations come from the file headers.
    """
    key = name.lower()
    if key not in LOADERS:
        raise KeyError(
            f"unknown corpus {name!r}; known: {sorted(LOADERS)} ('csv' for a generic CSV)"
        )
    root = paths.data_root(data_root)
    if key == "csv":
        if not path:
            raise ValueError("corpus 'csv' needs `path`: the CSV file, relative to the data root")
        csv_path = paths.inside(root, path)
        if opts.get("root") is not None:
            opts["root"] = paths.inside(root, opts["root"])
        return generic.load(csv_path, **opts)
    folder = paths.inside(root, Path(path) if path else key)
    return LOADERS[key](folder, **opts)
