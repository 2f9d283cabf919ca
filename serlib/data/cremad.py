"""CREMA-D (Cao et al., 2014): 91 actors, 12 sentences, 6 emotions.

Layout: `<root>/AudioWAV/1001_DFA_ANG_XX.wav` (root may also be `AudioWAV/` itself): actor id,
sentence code, emotion, intensity (LO, MD, HI, XX). Gender comes from `VideoDemographics.csv`
(columns ActorID, Sex) at the root when present, else "". The official release holds one empty file
(1076_MTI_SAD_XX.wav); `check_audio` reports it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ._common import audio_files, finish, require_dir, row

CORPUS = "cremad"
EXPECTED = "AudioWAV/ holding files like 1001_DFA_ANG_XX.wav (and optionally VideoDemographics.csv)"
LABELS = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
NAME = re.compile(r"^(\d+)_([A-Z]{3})_([A-Za-z]+)_([A-Z]+)$")
DEMOGRAPHICS = "VideoDemographics.csv"


def read_genders(path: Path) -> dict[str, str]:
    """ActorID -> "male"/"female" from VideoDemographics.csv."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"ActorID", "Sex"} - set(table.columns)
    if missing:
        raise ValueError(f"{CORPUS}: {path} lacks columns {sorted(missing)}")
    sex = table["Sex"].str.strip().str.lower()
    unknown = sorted(set(sex) - {"male", "female"})
    if unknown:
        raise ValueError(f"{CORPUS}: {path} has Sex values {unknown}; expected Male/Female")
    return dict(zip(table["ActorID"].str.strip(), sex))


def load(root: str | Path) -> pd.DataFrame:
    """Manifest of the CREMA-D files (utt_id = file stem, speaker = actor id)."""
    root = require_dir(root, CORPUS, EXPECTED)
    folder = root / "AudioWAV" if (root / "AudioWAV").is_dir() else root
    demographics = next(
        (p for p in (root / DEMOGRAPHICS, folder / DEMOGRAPHICS) if p.is_file()), None
    )
    genders = read_genders(demographics) if demographics else {}
    rows = []
    for path in audio_files(folder):
        match = NAME.match(path.stem)
        if not match:
            raise ValueError(f"{CORPUS}: {path} does not follow the name scheme 1001_DFA_ANG_XX")
        actor, sentence, emotion, _level = match.groups()
        if sentence not in SENTENCES:
            raise ValueError(
                f"{CORPUS}: {path} names sentence {sentence}; CREMA-D has {sorted(SENTENCES)}"
            )
        rows.append(row(path, actor, genders.get(actor, ""), emotion, "en", SENTENCES[sentence]))
    return finish(rows, CORPUS, LABELS, root, EXPECTED)
