"""EmoDB, the Berlin Database of Emotional Speech (Burkhardt et al., 2005): 10 actors, 10 sentences.

Layout: `<root>/wav/03a01Fa.wav` (root may also be the `wav/` folder itself). Name: speaker (2 digits),
text code (a01..b10), emotion letter (German initial), version letter.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ._common import audio_files, finish, require_dir, row

CORPUS = "emodb"
EXPECTED = "wav/ holding files like 03a01Fa.wav"
LABELS = {
    "W": "angry",  # Wut / Ärger
    "L": "boredom",  # Langeweile
    "E": "disgust",  # Ekel
    "A": "fear",  # Angst
    "F": "happy",  # Freude
    "T": "sad",  # Trauer
    "N": "neutral",
}
SPEAKERS = {
    "03": "male",
    "08": "female",
    "09": "female",
    "10": "male",
    "11": "male",
    "12": "male",
    "13": "female",
    "14": "female",
    "15": "male",
    "16": "female",
}
TEXTS = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
NAME = re.compile(r"^(\d{2})([ab]\d{2})([A-Za-z])([a-z])$")


def load(root: str | Path) -> pd.DataFrame:
    """Manifest of the EmoDB files (utt_id = file stem, speaker = the two digits)."""
    root = require_dir(root, CORPUS, EXPECTED)
    folder = root / "wav" if (root / "wav").is_dir() else root
    rows = []
    for path in audio_files(folder):
        match = NAME.match(path.stem)
        if not match:
            raise ValueError(f"{CORPUS}: {path} does not follow the name scheme 03a01Fa")
        speaker, text, letter, _version = match.groups()
        if speaker not in SPEAKERS:
            raise ValueError(
                f"{CORPUS}: {path} names speaker {speaker}; EmoDB has {sorted(SPEAKERS)}"
            )
        if text not in TEXTS:
            raise ValueError(f"{CORPUS}: {path} names text {text}; EmoDB has {sorted(TEXTS)}")
        rows.append(row(path, speaker, SPEAKERS[speaker], letter, "de", TEXTS[text]))
    return finish(rows, CORPUS, LABELS, root, EXPECTED)
