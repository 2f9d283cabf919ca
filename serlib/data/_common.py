"""What every corpus loader shares: the root check, the file walk and the final manifest step."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..paths import FETCH_HINT, DataRootError
from .audio import AUDIO_SUFFIXES, durations
from .manifest import COLUMNS, map_labels, validate


def require_dir(root: str | Path, corpus: str, expected: str) -> Path:
    """The corpus folder, or DataRootError naming it and the layout that should be there."""
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise DataRootError(f"{corpus}: folder {folder} does not exist; expected {expected} there ({FETCH_HINT})")
    return folder.resolve()


def audio_files(folder: Path, pattern: str = "*") -> list[Path]:
    """Audio files (wav, flac, ogg) matching `pattern` under `folder`, hidden files left out, sorted."""
    return sorted(
        p
        for p in folder.glob(pattern)
        if p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def row(path: Path, speaker: str, gender: str, label: str, language: str, text: str = "",
        utt_id: str | None = None, session: str = "") -> dict:
    """One manifest row as a loader reads it off a file (`label` in the corpus' own spelling)."""
    return {"utt_id": utt_id or path.stem, "path": path, "speaker": speaker, "gender": gender, "label": label,
            "text": text, "language": language, "session": session}


def finish(
    rows: list[dict], corpus: str, label_map: dict[str, str], root: Path, expected: str
) -> pd.DataFrame:
    """Rows with the corpus' own `label` -> a validated manifest sorted by utt_id.

    Each row gives utt_id, path, label and any of the other manifest columns; the rest default to "".
    Labels go through `map_labels` (UnknownLabelError for a label the map lacks); durations come
    from the file headers (NaN where a header is unreadable, for check_audio to report).
    """
    if not rows:
        raise DataRootError(f"{corpus}: no utterances found under {root}; expected {expected}")
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df:
            df[col] = ""
    df["corpus"] = corpus
    df["emotion"] = map_labels(df["label"], label_map, corpus)
    df["path"] = [str(Path(p).resolve()) for p in df["path"]]
    df["duration"] = durations(df["path"])
    df = df.sort_values("utt_id", kind="stable")
    return validate(df)
