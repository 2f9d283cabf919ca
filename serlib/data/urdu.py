"""URDU (Latif et al., 2018): 400 utterances from Urdu talk shows, 4 emotions, 100 each.

Layout: `<root>/{Angry,Happy,Neutral,Sad}/S{G}{X}_F{NN}_{E}{YYY}.wav` (or `.flac`): G gender (M/F),
X speaker number, NN the speaker's file number, E emotion letter (A, H, N, S), YYY running number
within the emotion. The speaker is the `S{G}{X}` prefix. The emotion letter must agree with the
folder. Note: the corpus README speaks of 38 speakers, but the released file names carry 29 distinct
prefixes (18 male, 11 female); the prefix is all a loader can know.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ._common import audio_files, finish, require_dir, row

CORPUS = "urdu"
EXPECTED = "Angry/ Happy/ Neutral/ Sad/ folders of S{G}{X}_F{NN}_{E}{YYY}.wav (or .flac) files"
LABELS = {"A": "angry", "H": "happy", "N": "neutral", "S": "sad"}
FOLDERS = {"Angry": "angry", "Happy": "happy", "Neutral": "neutral", "Sad": "sad"}
NAME = re.compile(r"^S([MF])(\d+)_F(\d+)_([A-Za-z])(\d+)$")
GENDERS = {"M": "male", "F": "female"}


def load(root: str | Path) -> pd.DataFrame:
    """Manifest of the URDU files under `root` (utt_id = file stem)."""
    root = require_dir(root, CORPUS, EXPECTED)
    rows = []
    for path in audio_files(root, "*/*"):
        folder = path.parent.name
        if folder not in FOLDERS:
            raise ValueError(f"{CORPUS}: {path} lies in {folder}/, not one of {sorted(FOLDERS)}")
        match = NAME.match(path.stem)
        if not match:
            raise ValueError(
                f"{CORPUS}: {path} does not follow the name scheme S{{G}}{{X}}_F{{NN}}_{{E}}{{YYY}}"
            )
        gender, number, _file_no, letter, _running = match.groups()
        if letter in LABELS and LABELS[letter] != FOLDERS[folder]:
            raise ValueError(
                f"{CORPUS}: {path} has emotion letter {letter} ({LABELS[letter]}) but lies in {folder}/"
            )
        rows.append(row(path, f"S{gender}{number}", GENDERS[gender], letter, "ur"))
    return finish(rows, CORPUS, LABELS, root, EXPECTED)
