"""Shared fixtures: where the real corpora are (skip with a reason when they are not), and a cache of the suite's own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def suite_cache(tmp_path_factory):
    """The suite's converted weights and feature cache live in a folder of its own, never in the
    checkout's cache/ (or the user's $SERLIB_CACHE): the smoke runs encode a few utterances per
    speaker in other batches than the study does, one fp16 step apart, and `make study` after
    `make test` reused them, which moved its early-stopping points (ead26c6: SerialMTL's EmoDB
    results differed between a checkout tested first and one that was not)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("SERLIB_CACHE", str(tmp_path_factory.mktemp("serlib-cache")))
    yield
    patch.undo()


def real_data_root() -> Path | None:
    """$SERLIB_DATA, else ../shared/corpora beside the checkout (development and CI), else None."""
    for candidate in (os.environ.get("SERLIB_DATA"), REPO.parent / "shared" / "corpora"):
        if candidate and (Path(candidate) / "ravdess").is_dir():
            return Path(candidate).resolve()
    return None


def real_splits_root() -> Path | None:
    for candidate in (os.environ.get("SERLIB_SPLITS"), REPO.parent / "shared" / "splits"):
        if candidate and (Path(candidate) / "emobox").is_dir():
            return Path(candidate).resolve()
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = real_data_root()
    if root is None:
        pytest.skip("real corpora not found: set SERLIB_DATA or place them at ../shared/corpora")
    return root


@pytest.fixture(scope="session")
def ravdess_root(data_root) -> Path:
    return data_root / "ravdess"


@pytest.fixture(scope="session")
def splits_root() -> Path:
    root = real_splits_root()
    if root is None:
        pytest.skip("EmoBox split files not found: set SERLIB_SPLITS or place them at ../shared/splits")
    return root
