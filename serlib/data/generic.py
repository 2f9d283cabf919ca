"""Any corpus from a CSV: at least `path, emotion`, optionally the other manifest columns.

Relative paths are resolved against `root` (default: the CSV's folder) and must stay inside it.
Missing columns get defaults: utt_id = file stem (the path below the root, '/' as '-', when stems
repeat across folders), corpus = the argument, else the CSV's `corpus`
column, else the CSV's stem; speaker, gender, text, language, session = "". Without speakers,
speaker-based folds refuse to run (folds.make_folds says so). Emotions go through `label_map` when
given, else they must already be names of the shared vocabulary (compared lower-cased).
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
) -> pd.DataFrame:
    """Manifest from a CSV file (see the module docstring for columns and defaults)."""
    csv_path = Path(csv_path).expanduser()
    if not csv_path.is_file():
        raise DataRootError(
            f"corpus CSV {csv_path} does not exist; expected a CSV with columns path, emotion"
        )
    base = Path(root).expanduser().resolve() if root is not None else csv_path.resolve().parent
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
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
            f"{csv_path}: empty path on data line(s) {(blank[blank].index + 1).tolist()[:5]}"
        )
    df["path"] = [str(inside(base, p.strip())) for p in df["path"]]
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
    df["duration"] = durations(df["path"])
    df = df.sort_values("utt_id", kind="stable")
    return validate(df[COLUMNS])
