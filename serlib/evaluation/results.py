"""The results table: one long CSV, `reports/results.csv`, that every notebook records its numbers in.

Each row is one number::

    notebook, corpus, protocol, model, method, fold, metric, value
    01_baselines, ravdess, speaker_5fold, mfcc_svm, mean_pool, pooled, UA, 0.532

`fold` is a fold name, ``"pooled"`` (all folds' predictions scored together), ``"mean"`` or ``"std"``
(over the folds). Values are plain numbers; rates (UA, WA, macro_f1, accuracy) are fractions 0..1.

A notebook records *all* its rows at once with `record_results`; recording again replaces that
notebook's rows (and only those), so rerunning a notebook never duplicates or mixes numbers.
"""

from __future__ import annotations

import math
import numbers
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from ..paths import PROJECT_ROOT
from ..distributed import is_main
from .reports_folder import ReportsFolder

RESULT_COLUMNS = ["notebook", "corpus", "protocol", "model", "method", "fold", "metric", "value"]
KEY_COLUMNS = RESULT_COLUMNS[:-1]
# Columns that must not be empty strings; `protocol`, `model` and `method` may be "" where they do
# not apply (e.g. data statistics).
REQUIRED_TEXT = ("notebook", "corpus", "fold", "metric")
RESULTS_FILE = "results.csv"


def reports_path(reports_dir: str | os.PathLike | None = None) -> Path:
    """The reports folder (created if missing): `reports_dir`, or <repo>/reports when None.

    Notebooks write their extra files (figures, tables) under this folder.
    """
    root = Path(reports_dir).expanduser() if reports_dir else PROJECT_ROOT / "reports"
    root.mkdir(parents=True, exist_ok=True)
    return root.resolve()


def runs_name(notebook: str) -> str:
    """The file of a notebook's run records in the reports folder (see `record_results`)."""
    return f"{notebook}.runs.csv"


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` through a temporary file in the same folder and `os.replace`.

    Readers see either the old or the new file, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _empty() -> pd.DataFrame:
    frame = pd.DataFrame({col: pd.Series(dtype=object) for col in KEY_COLUMNS})
    frame["value"] = pd.Series(dtype=float)
    return frame


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def validate_results(rows: pd.DataFrame | Iterable[Mapping], notebook: str) -> pd.DataFrame:
    """`rows` as a frame with exactly RESULT_COLUMNS (in order), or ValueError saying what is wrong.

    The `notebook` column may be left out (it is filled from `notebook`); where given it must
    equal `notebook`. Columns other than RESULT_COLUMNS are refused rather than silently dropped.
    """
    if not isinstance(notebook, str) or not notebook.strip():
        raise ValueError(f"notebook must be a non-empty name, got {notebook!r}")
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    frame = frame.reset_index(drop=True)
    if frame.empty and len(frame.columns) == 0:
        return _empty()
    if "notebook" not in frame.columns:
        frame.insert(0, "notebook", notebook)
    missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"results of {notebook}: missing columns {missing} (expected {RESULT_COLUMNS})")
    extra = [str(c) for c in frame.columns if c not in RESULT_COLUMNS]
    if extra:
        raise ValueError(f"results of {notebook}: unknown columns {extra} (expected {RESULT_COLUMNS})")
    frame = frame[RESULT_COLUMNS]

    problems: list[str] = []
    for col in KEY_COLUMNS:
        for i, v in frame[col].items():
            if v is None or (isinstance(v, float) and math.isnan(v)):
                problems.append(f"row {i}: {col} is missing")
            elif not isinstance(v, (str, numbers.Integral)) or isinstance(v, bool):
                problems.append(f"row {i}: {col} must be text, got {v!r}")
            elif col in REQUIRED_TEXT and not str(v).strip():
                problems.append(f"row {i}: {col} is empty")
    for i, v in frame["value"].items():
        if not _is_number(v):
            problems.append(f"row {i}: value must be a finite number, got {v!r}")
    wrong_nb = sorted({str(v) for v in frame["notebook"] if isinstance(v, str) and v != notebook})
    if wrong_nb:
        problems.append(f"rows name other notebooks {wrong_nb}; record them from their own notebook")
    if problems:
        shown = "; ".join(problems[:10]) + (f"; ... {len(problems) - 10} more" if len(problems) > 10 else "")
        if any("finite number" in p for p in problems):
            shown += " (drop rows without a value, e.g. std over a single fold, before recording)"
        raise ValueError(f"results of {notebook}: {shown}")

    for col in KEY_COLUMNS:
        frame[col] = frame[col].map(str).astype(object)
    frame["value"] = frame["value"].astype(float)
    dup = frame.duplicated(KEY_COLUMNS, keep=False)
    if dup.any():
        first = frame.loc[dup, KEY_COLUMNS].iloc[0].to_dict()
        raise ValueError(f"results of {notebook}: {int(dup.sum())} rows repeat the same key, e.g. {first}")
    return frame


def results_file(reports_dir: str | os.PathLike | None = None) -> Path:
    return reports_path(reports_dir) / RESULTS_FILE


def load_results(reports_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """All recorded rows (an empty frame with RESULT_COLUMNS when nothing was recorded yet)."""
    path = results_file(reports_dir)
    if not path.is_file():
        return _empty()
    frame = pd.read_csv(
        path,
        dtype={c: str for c in KEY_COLUMNS} | {"value": float},
        keep_default_na=False,  # "" stays "", and a corpus called "NA" stays "NA"
    )
    missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; it is not serlib's results file: move it away or choose another reports folder")
    frame = frame[RESULT_COLUMNS]
    for col in KEY_COLUMNS:
        frame[col] = frame[col].astype(object)
    return frame


def record_results(
    rows: pd.DataFrame | Iterable[Mapping],
    notebook: str,
    reports_dir: str | os.PathLike | None = None,
    runs: pd.DataFrame | None = None,
) -> Path:
    """Replace every row of `notebook` in results.csv by `rows`; other notebooks' rows are kept.
    `runs`, the notebook's run records (how each training run ended, its steps, seconds, utterances
    per second and peak GPU memory), are written beside it as `<notebook>.runs.csv` (`runs_file`).

    Rows are validated first (all RESULT_COLUMNS present, nothing else, `value` a finite number,
    no key repeated), so a bad call leaves the file untouched. The file is rewritten atomically and
    kept sorted by notebook (rows of one notebook keep their given order). Returns the CSV path.
    Under several processes only the main one writes (the others hold the same rows).
    """
    new = validate_results(rows, notebook)
    path = results_file(reports_dir)
    if not is_main():
        return path
    ReportsFolder(path.parent).check([RESULTS_FILE] + ([runs_name(notebook)] if runs is not None else []))
    if runs is not None:
        ReportsFolder(path.parent).claim(runs_name(notebook))
        atomic_write_text(path.parent / runs_name(notebook), runs.to_csv(index=False, lineterminator="\n"))
    old = load_results(reports_dir)
    kept = old[old["notebook"] != notebook]
    parts = [frame for frame in (kept, new) if not frame.empty]
    merged = pd.concat(parts, ignore_index=True) if parts else _empty()
    merged = merged.sort_values("notebook", kind="stable").reset_index(drop=True)
    _write(path, merged)
    return path


def _write(path: Path, merged: pd.DataFrame) -> None:
    """results.csv rewritten atomically and recorded as serlib's file of its reports folder (callers
    have refused a results.csv that serlib did not make)."""
    ReportsFolder(path.parent).claim(RESULTS_FILE)
    atomic_write_text(path, merged[RESULT_COLUMNS].to_csv(index=False, lineterminator="\n"))


def restore_results(notebook: str, previous: pd.DataFrame, reports_dir: str | os.PathLike | None = None) -> Path:
    """Put a notebook's rows back as they were before a run of it that failed (none if it had none).

    A notebook may record its numbers before a later cell fails; the study runner then restores the
    rows of the last good run, so results.csv always matches the reports beside it.
    """
    path = results_file(reports_dir)
    old = load_results(reports_dir)
    parts = [f for f in (old[old["notebook"] != notebook], previous[previous["notebook"] == notebook]) if not f.empty]
    merged = pd.concat(parts, ignore_index=True) if parts else _empty()
    merged = merged.sort_values("notebook", kind="stable").reset_index(drop=True)
    _write(path, merged)
    return path
