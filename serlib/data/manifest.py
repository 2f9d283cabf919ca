"""One manifest schema for every corpus, one emotion vocabulary, and named class selections.

Every corpus loader returns a pandas DataFrame with exactly `COLUMNS`; later code (folds, feature
cache, trainers) relies on nothing else, so a new corpus only has to produce these columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

COLUMNS = [
    "utt_id",  # unique within the corpus; the file stem where the corpus names files uniquely
    "corpus",  # short lower-case corpus name: ravdess, urdu, iemocap, emodb, shemo, cremad, ...
    "path",  # absolute path of the audio file
    "speaker",  # speaker id, unique within the corpus (prefixed by nothing else)
    "gender",  # "male", "female" or "" when unknown
    "emotion",  # a label of EMOTIONS (the corpus' own label mapped through its label map)
    "text",  # transcript, "" when the corpus has none
    "language",  # ISO 639-1 code (en, ur, de, fa, ...)
    "session",  # recording session / group where the corpus has one, else ""
    "duration",  # seconds, read from the file header
]

# The shared vocabulary. Corpora map their own labels onto these names.
EMOTIONS = (
    "neutral",
    "calm",
    "happy",
    "excited",
    "sad",
    "angry",
    "fear",
    "disgust",
    "surprise",
    "boredom",
    "frustrated",
    "contempt",
    "other",
)
GENDERS = ("male", "female", "")


class UnknownLabelError(ValueError):
    """A corpus label has no entry in that corpus' label map."""


def map_labels(raw: pd.Series, label_map: dict[str, str], corpus: str) -> pd.Series:
    """Map a corpus' own labels to the shared vocabulary, naming every label the map lacks."""
    unknown = sorted(set(raw.astype(str)) - set(label_map))
    if unknown:
        raise UnknownLabelError(
            f"{corpus}: labels {unknown} are not in its label map {sorted(label_map)}"
        )
    return raw.astype(str).map(label_map)


@dataclass(frozen=True)
class ClassSelection:
    """A named subset of emotions, with merges applied first (e.g. IEMOCAP's excited -> happy)."""

    name: str
    classes: tuple[str, ...]
    merge: dict[str, str] = field(default_factory=dict)

    def apply(self, manifest: pd.DataFrame) -> pd.DataFrame:
        """Rows whose (merged) emotion is selected, with the merged label; index reset."""
        emotion = manifest["emotion"].replace(self.merge)
        keep = emotion.isin(self.classes)
        out = manifest.loc[keep].copy()
        out["emotion"] = emotion[keep]
        return out.reset_index(drop=True)


SELECTIONS: dict[str, ClassSelection] = {
    # IEMOCAP 4-class protocol of the papers: happy and excited merged into happy.
    "four": ClassSelection(
        "four", ("neutral", "happy", "sad", "angry"), {"excited": "happy"}
    ),
    # RAVDESS' eight classes as EmoBox uses them.
    "ravdess8": ClassSelection(
        "ravdess8",
        ("neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise"),
    ),
    # EmoDB's seven classes.
    "emodb7": ClassSelection(
        "emodb7", ("neutral", "happy", "sad", "angry", "fear", "disgust", "boredom")
    ),
    # CREMA-D's six classes.
    "cremad6": ClassSelection(
        "cremad6", ("neutral", "happy", "sad", "angry", "fear", "disgust")
    ),
}


def select_classes(manifest: pd.DataFrame, selection: str | ClassSelection | None) -> pd.DataFrame:
    """Apply a named (or given) class selection; None or "all" keeps every row."""
    if selection is None or selection == "all":
        return manifest.reset_index(drop=True)
    if isinstance(selection, str):
        if selection not in SELECTIONS:
            raise KeyError(f"unknown class selection {selection!r}; known: {sorted(SELECTIONS)}")
        selection = SELECTIONS[selection]
    return selection.apply(manifest)


def validate(manifest: pd.DataFrame) -> pd.DataFrame:
    """Check the schema and vocabularies; returns the manifest with columns in canonical order."""
    missing = [c for c in COLUMNS if c not in manifest.columns]
    if missing:
        raise ValueError(f"manifest lacks columns {missing}")
    bad_emotions = sorted(set(manifest["emotion"]) - set(EMOTIONS))
    if bad_emotions:
        raise UnknownLabelError(f"emotions outside the shared vocabulary: {bad_emotions}")
    bad_genders = sorted(set(manifest["gender"].fillna("")) - set(GENDERS))
    if bad_genders:
        raise ValueError(f"genders outside {GENDERS}: {bad_genders}")
    dupes = manifest.duplicated(["corpus", "utt_id"])
    if dupes.any():
        raise ValueError(f"duplicate utterance ids: {manifest.loc[dupes, 'utt_id'].tolist()[:5]}")
    out = manifest[COLUMNS].copy()
    for col in ("speaker", "gender", "text", "language", "session"):
        out[col] = out[col].fillna("").astype(str)
    out["duration"] = out["duration"].astype(float)
    return out.reset_index(drop=True)
