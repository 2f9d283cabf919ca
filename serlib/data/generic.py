"""Any corpus from a CSV: at least `path, emotion`, optionally the other manifest columns.

Relative paths are resolved against `root` (default: the CSV's folder) and must stay inside it.
Missing columns get defaults: utt_id = file stem (the path below the root, '/' as '-', when stems
repeat across folders), corpus = the argument (a profile passes its own name for the corpus), else
the CSV's `corpus` column, else the CSV's stem; speaker, gender, text, language, session = "".
Without speakers, speaker-based folds refuse to run (folds.make_folds says so). Emotions go through `label_map` when
given, else they must already be names of the shared vocabulary (compared lower-cased).

The CSV is read as UTF-8 unless `encoding` says otherwise; errors name the CSV and, for rows, their
line numbers in it (line 1 is the header).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..paths import DataRootError, inside
from .audio import durations
from .manifest import COLUMNS, EMOTIONS, UnknownLabelError, map_labels, validate

REQUIRED = ("path", "emotion")
GENDER_ALIASES = {"m": "male", "f": "female", "male": "male", "female": "female", "": ""}


def load(
    csv_path: str | Path,
    root: str | Path | None = None,
    corpus: str | None = None,
    label_map: dict[str, str] | None = None,
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Manifest from a CSV file (see the module docstring for columns and defaults)."""
    csv_path = Path(csv_path).expanduser()
    if not csv_path.is_file():
        raise DataRootError(
            f"corpus CSV {csv_path} does not exist; expected a CSV with columns path, emotion"
        )
    base = Path(root).expanduser().resolve() if root is not None else csv_path.resolve().parent
    table = _read_table(csv_path, encoding)
    table.columns = [c.strip() for c in table.columns]
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"{csv_path}: lacks columns {missing} (needs at least {list(REQUIRED)})")
    if table.empty:
        raise ValueError(f"{csv_path}: no rows")

    df = table.copy()
    blank = df["path"].str.strip() == ""
    if blank.any():
        raise ValueError(
            f"{csv_path}: empty path on line(s) {(blank[blank].index + 2).tolist()[:5]}"
        )
    df["path"] = [_resolve(base, p.strip(), csv_path, line) for p, line in zip(df["path"], df.index + 2)]
    if corpus is not None:
        df["corpus"] = corpus
    elif "corpus" not in df or (df["corpus"].str.strip() == "").any():
        df["corpus"] = csv_path.stem
    df["corpus"] = df["corpus"].str.strip().str.lower()
    if "utt_id" not in df:
        stems = [Path(p).stem for p in df["path"]]
        relative = ["-".join(Path(p).relative_to(base).with_suffix("").parts) for p in df["path"]]
        df["utt_id"] = stems if len(set(stems)) == len(stems) else relative
    for col in ("speaker", "text", "language", "session"):
        df[col] = df[col].str.strip() if col in df else ""
    gender = (
        df["gender"].str.strip().str.lower() if "gender" in df else pd.Series("", index=df.index)
    )
    unknown_genders = sorted(set(gender) - set(GENDER_ALIASES))
    if unknown_genders:
        raise ValueError(
            f"{csv_path}: gender values {unknown_genders}; use male/female/m/f or leave empty"
        )
    df["gender"] = gender.map(GENDER_ALIASES)

    name = df["corpus"].iloc[0]
    raw = df["emotion"].str.strip()
    if label_map is not None:
        df["emotion"] = map_labels(raw, label_map, name)
    else:
        df["emotion"] = raw.str.lower()
        unknown = sorted(set(df["emotion"]) - set(EMOTIONS))
        if unknown:
            raise UnknownLabelError(
                f"{csv_path}: emotions {unknown} are not in the shared vocabulary {list(EMOTIONS)}; "
                "pass a label_map"
            )
    _refuse_repeats(df, csv_path)
    df["duration"] = durations(df["path"])
    df = df.sort_values("utt_id", kind="stable")
    return validate(df[COLUMNS])


def _resolve(base: Path, path: str, csv_path: Path, line: int) -> str:
    """The audio path of one CSV line, kept inside `base` (ValueError naming the CSV and line)."""
    try:
        return str(inside(base, path))
    except ValueError as exc:
        raise ValueError(f"{csv_path}, line {line}: {exc}") from None


def _read_table(csv_path: Path, encoding: str) -> pd.DataFrame:
    """The CSV as strings, or a ValueError naming the file and what to do."""
    try:  # blank lines are read, then dropped, so that the index + 2 is the line number in the file
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding=encoding, skip_blank_lines=False)
        return table[(table != "").any(axis=1)]
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{csv_path}: not valid {encoding} (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); save "
            "it as UTF-8, or give its encoding in the corpus entry (e.g. `encoding: latin-1`)") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{csv_path}: the file is empty; expected a header line with at least "
                         f"{', '.join(REQUIRED)}, then one line per utterance") from None
    except pd.errors.ParserError as exc:
        raise ValueError(f"{csv_path}: not a well-formed CSV ({exc})") from None


def _refuse_repeats(df: pd.DataFrame, csv_path: Path) -> None:
    """ValueError naming the CSV lines that give the same audio file or utterance id twice."""
    for column, what in (("path", "audio file"), ("utt_id", "utterance id")):
        repeated = df[column].duplicated(keep=False)
        if repeated.any():
            first = df.loc[repeated, column].iloc[0]
            lines = (df.index[df[column] == first] + 2).tolist()  # data row 0 is line 2, after the header
            raise ValueError(f"{csv_path}: lines {lines} give the same {what} {first!r} "
                             f"({int(repeated.sum())} lines repeat one in all); each utterance once")
