"""RAVDESS (Livingstone & Russo, 2018), speech part: 24 actors, 8 emotions, two fixed sentences.

Layout: `<root>/Actor_XX/03-01-EE-II-SS-RR-AA.wav` (or `.flac`); Actor_XX folders may also sit one
level deeper (e.g. `Audio_Speech_Actors_01-24/Actor_01`). Name fields: modality (01 audio-video,
02 video-only, 03 audio-only), vocal channel (01 speech, 02 song), emotion, intensity, statement,
repetition, actor. Only audio-only speech (03-01) is kept; other modalities and song are skipped.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ._common import audio_files, finish, require_dir, row

CORPUS = "ravdess"
EXPECTED = "Actor_XX/03-01-EE-II-SS-RR-AA.wav (or .flac) files"
LABELS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fear",  # fearful
    "07": "disgust",
    "08": "surprise",  # surprised
}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
SPEECH = ("03", "01")  # audio-only modality, speech vocal channel


def load(root: str | Path) -> pd.DataFrame:
    """Manifest of the RAVDESS speech files under `root` (utt_id = file stem, speaker = Actor_XX)."""
    root = require_dir(root, CORPUS, EXPECTED)
    rows = []
    for path in audio_files(root, "**/Actor_*/*"):
        match = NAME.match(path.stem)
        if not match:
            raise ValueError(
                f"{CORPUS}: {path} does not follow the name scheme MM-VV-EE-II-SS-RR-AA"
            )
        modality, channel, emotion, _intensity, statement, _rep, actor = match.groups()
        if (modality, channel) != SPEECH:
            continue
        speaker = f"Actor_{actor}"
        if path.parent.name != speaker:
            raise ValueError(
                f"{CORPUS}: {path} names actor {actor} but lies in {path.parent.name}/"
            )
        if statement not in STATEMENTS:
            raise ValueError(
                f"{CORPUS}: {path} has statement code {statement}; known: {sorted(STATEMENTS)}"
            )
        rows.append(row(path, speaker, "male" if int(actor) % 2 else "female", emotion, "en", STATEMENTS[statement]))
    return finish(rows, CORPUS, LABELS, root, EXPECTED)
