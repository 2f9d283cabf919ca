"""Shared fixtures: where the real corpora are (skip with a reason when they are not)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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
