"""Where data, caches and reports live, and keeping parameter paths inside their root."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "SERLIB_DATA"
SPLITS_ENV = "SERLIB_SPLITS"
CACHE_ENV = "SERLIB_CACHE"

# The checkout serlib is installed from (editable install): notebooks resolve defaults from here,
# so they behave the same from JupyterLab (cwd notebooks/) and from the runner.
PROJECT_ROOT = Path(__file__).resolve().parents[1]


class DataRootError(FileNotFoundError):
    """The data root (or a corpus inside it) is missing."""


# How a newcomer gets the free corpora (serlib.data.fetch), named wherever one is found missing.
FETCH_HINT = ("`.venv/bin/serlib fetch ravdess emodb urdu` downloads the free corpora into the data root "
              "(or run `make study FETCH=1`)")


def data_root_location(explicit: str | os.PathLike | None = None) -> tuple[Path, str]:
    """Where the data root is (an explicit parameter, else $SERLIB_DATA, else ./data), whether or not
    it exists yet, and where that came from (for messages)."""
    if explicit:
        root, how = Path(explicit), "the `data_root` parameter"
    elif os.environ.get(DATA_ENV):
        root, how = Path(os.environ[DATA_ENV]), f"${DATA_ENV}"
    else:
        root, how = PROJECT_ROOT / "data", f"the default `data/` (set ${DATA_ENV} to change it)"
    return root.expanduser(), how


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The data root (`data_root_location`), which must exist.

    Raises DataRootError with the places looked at when it does not exist, so a newcomer learns
    at once how to point serlib at their corpora.
    """
    root, how = data_root_location(explicit)
    if not root.is_dir():
        raise DataRootError(
            f"Data root {root.resolve()} (from {how}) does not exist. {FETCH_HINT}; or put the corpora "
            f"there (e.g. data/ravdess, data/urdu) or set {DATA_ENV}=/path/to/corpora."
        )
    return root.resolve()


def splits_root(explicit: str | os.PathLike | None = None) -> Path:
    """Root of external fold files (e.g. EmoBox CSVs): parameter, $SERLIB_SPLITS, else <data root>/splits."""
    root = explicit or os.environ.get(SPLITS_ENV)
    root = Path(root).expanduser() if root else data_root() / "splits"
    if not root.is_dir():
        raise DataRootError(
            f"Splits root {root} does not exist; set {SPLITS_ENV}=/path/to/splits (the folder holding emobox/)."
        )
    return root.resolve()


def cache_root(explicit: str | os.PathLike | None = None) -> Path:
    """Root of derived artefacts (converted weights, feature cache): parameter, $SERLIB_CACHE or <repo>/cache."""
    root = Path(explicit or os.environ.get(CACHE_ENV) or PROJECT_ROOT / "cache").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root.resolve()


def inside(root: str | os.PathLike, relative: str | os.PathLike) -> Path:
    """`root / relative`, refusing any path that escapes `root` (absolute paths, `..`, symlinks out)."""
    base = Path(root).resolve()
    target = (base / relative).resolve()
    if target != base and base not in target.parents:
        raise ValueError(f"path {relative!r} leaves its root {base}")
    return target
