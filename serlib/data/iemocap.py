"""IEMOCAP (Busso et al., 2008): 5 sessions, 10 actors (one woman and one man per session).

Official layout (root = `IEMOCAP_full_release` or the folder holding it)::

    Session{n}/sentences/wav/<dialog>/<utt>.wav
    Session{n}/dialog/EmoEvaluation/<dialog>.txt      [6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5, 2.5, 2.5]
    Session{n}/dialog/transcriptions/<dialog>.txt     Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.

Rows come from the EmoEvaluation label lines (every labelled utterance, 10,039 in the full release),
so a labelled utterance whose wav is absent is kept with duration NaN and `check_audio` reports it as
missing. The speaker is the session plus the gender letter of the utterance id (`Ses01F_impro01_M003`
-> `Ses01M`). The papers' 4-class protocol (happy + excited merged, 5,531 utterances) is
`manifest.select_classes(m, "four")`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..paths import DataRootError
from ._common import finish, require_dir, row

CORPUS = "iemocap"
EXPECTED = "Session1..Session5 (or IEMOCAP_full_release/Session1..5) in the official layout"
LABELS = {
    "neu": "neutral",
    "hap": "happy",
    "exc": "excited",
    "sad": "sad",
    "ang": "angry",
    "fru": "frustrated",
    "sur": "surprise",
    "fea": "fear",
    "dis": "disgust",
    "oth": "other",
    "xxx": "other",  # no majority among the evaluators
}
LABEL_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(\S+)\s+(\S+)\s+\[")
TRANSCRIPT_LINE = re.compile(r"^(\S+)\s+\[[^\]]*\]:\s?(.*)$")
UTTERANCE = re.compile(r"^(Ses\d{2})[FM]_.+_([FM])\d{3}$")
SESSION_DIR = re.compile(r"^Session(\d+)$")


def _session_dirs(root: Path) -> list[Path]:
    for base in (root, root / "IEMOCAP_full_release"):
        found = sorted(
            (p for p in base.glob("Session*") if p.is_dir() and SESSION_DIR.match(p.name)),
            key=lambda p: int(SESSION_DIR.match(p.name).group(1)),
        )
        if found:
            return found
    raise DataRootError(f"{CORPUS}: no Session folders in {root}; expected {EXPECTED}")


def _text_files(folder: Path) -> list[Path]:
    """The per-dialog .txt files directly in `folder` (not its Categorical/Attribute subfolders)."""
    return sorted(p for p in folder.glob("*.txt") if p.is_file() and not p.name.startswith("."))


def _read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def load(root: str | Path) -> pd.DataFrame:
    """Manifest of every labelled IEMOCAP utterance, with transcripts, sessions and genders."""
    root = require_dir(root, CORPUS, EXPECTED)
    rows = []
    for session_dir in _session_dirs(root):
        labels_dir = session_dir / "dialog" / "EmoEvaluation"
        if not labels_dir.is_dir():
            raise DataRootError(f"{CORPUS}: {labels_dir} does not exist; expected {EXPECTED}")
        texts: dict[str, str] = {}
        for path in _text_files(session_dir / "dialog" / "transcriptions"):
            for line in _read_lines(path):
                match = TRANSCRIPT_LINE.match(line.strip())
                if match:
                    texts[match.group(1)] = match.group(2).strip()
        for path in _text_files(labels_dir):
            for line in _read_lines(path):
                match = LABEL_LINE.match(line.strip())
                if not match:
                    continue
                utt, label = match.groups()
                parts = UTTERANCE.match(utt)
                if not parts:
                    raise ValueError(
                        f"{CORPUS}: {path} labels {utt!r}, not a Ses##X_<dialog>_X### id"
                    )
                session, gender = parts.groups()
                dialog_id = utt.rsplit("_", 1)[0]
                path = session_dir / "sentences" / "wav" / dialog_id / f"{utt}.wav"
                rows.append(row(path, f"{session}{gender}", "female" if gender == "F" else "male", label, "en",
                                texts.get(utt, ""), utt_id=utt, session=session))
    return finish(rows, CORPUS, LABELS, root, EXPECTED)
