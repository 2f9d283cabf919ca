"""ShEMO, the Sharif Emotional Speech Database (Mohamad Nezami et al., 2019): Persian radio plays.

Layout: `<root>/female/F01A01.wav`, `<root>/male/M01A01.wav`: gender letter, 2-digit speaker number,
emotion letter, 2-digit running number. Speakers are `F01`, `M01`, ...

Transcripts: the official repository (github.com/pariajm/sharif-emotional-speech-dataset) ships
`shemo.json`, a list of `{"id": "F01A01", "gender", "emotion", "transcript", "ipa"}` records. When a
`shemo.json` lies at the root it fills `text` (a mapping `{id: {"transcript": ...}}` is read too);
otherwise, and for ids it lacks, `text` is "".
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from ._common import audio_files, finish, require_dir, row

CORPUS = "shemo"
EXPECTED = "female/ and male/ folders of files like F01A01.wav (optionally shemo.json)"
LABELS = {
    "A": "angry",
    "H": "happy",
    "N": "neutral",
    "S": "sad",
    "W": "surprise",
    "F": "fear",
}
FOLDERS = {"female": "F", "male": "M"}
GENDERS = {"F": "female", "M": "male"}
NAME = re.compile(r"^([FM])(\d{2})([A-Za-z])(\d{2})$")
TRANSCRIPTS = "shemo.json"


def read_transcripts(path: Path) -> dict[str, str]:
    """id -> orthographic transcript from the official shemo.json."""
    with open(path, encoding="utf-8-sig") as fh:
        data = json.load(fh)
    if isinstance(data, dict):  # {id: record} instead of a list of records
        records = [
            {"id": key, **rec} if isinstance(rec, dict) else rec for key, rec in data.items()
        ]
    else:
        records = data
    out = {}
    for rec in records:
        if not isinstance(rec, dict) or "id" not in rec:
            raise ValueError(f"{CORPUS}: {path} holds a record without an 'id': {str(rec)[:80]}")
        out[str(rec["id"])] = str(rec.get("transcript", "")).replace("\ufeff", "").strip()
    return out


def load(root: str | Path) -> pd.DataFrame:
    """Manifest of the ShEMO files, with transcripts when shemo.json is present."""
    root = require_dir(root, CORPUS, EXPECTED)
    texts = read_transcripts(root / TRANSCRIPTS) if (root / TRANSCRIPTS).is_file() else {}
    rows = []
    for folder, letter in FOLDERS.items():
        for path in audio_files(root / folder):
            match = NAME.match(path.stem)
            if not match:
                raise ValueError(f"{CORPUS}: {path} does not follow the name scheme F01A01")
            gender, number, emotion, _running = match.groups()
            if gender != letter:
                raise ValueError(f"{CORPUS}: {path} names gender {gender} but lies in {folder}/")
            rows.append(row(path, f"{gender}{number}", GENDERS[gender], emotion, "fa", texts.get(path.stem, "")))
    return finish(rows, CORPUS, LABELS, root, EXPECTED)
