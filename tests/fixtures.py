"""Tiny synthetic corpora in each corpus' official folder layout, written into a test's tmp_path.

No audio is committed: every fixture writes a few short tones or noise bursts at the rate and in the
format the official download uses. (Where the real corpora live: conftest.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

SECONDS = 0.25


def tone(
    seconds=SECONDS, sr=16000, channels=1, freq=220.0, amp=0.3, noise=False, seed=0
) -> np.ndarray:
    """(frames, channels) float32: a sine (or uniform noise) at peak `amp`; channel c at amp/(c+1)."""
    n = int(round(seconds * sr))
    if noise:
        mono = np.random.default_rng(seed).uniform(-1, 1, n)
    else:
        mono = np.sin(2 * np.pi * freq * np.arange(n) / sr)
    mono = amp * mono / max(np.abs(mono).max(), 1e-12) if n else mono
    return np.stack([mono / (c + 1) for c in range(channels)], axis=1).astype(np.float32)


def write_audio(
    path: Path, data: np.ndarray | None = None, sr=16000, subtype=None, **tone_args
) -> Path:
    """Write `data` (or a tone) to `path`; the format follows the suffix (wav, flac, ogg)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = tone(sr=sr, **tone_args)
    sf.write(path, data, sr, subtype=subtype)
    return path


# ---- one writer per corpus ------------------------------------------------------------------------

RAVDESS_SPEECH = {
    # file name -> (speaker, gender, emotion, text)
    "Actor_01/03-01-01-01-01-01-01.wav": (
        "Actor_01",
        "male",
        "neutral",
        "Kids are talking by the door",
    ),
    "Actor_01/03-01-05-02-02-01-01.flac": (
        "Actor_01",
        "male",
        "angry",
        "Dogs are sitting by the door",
    ),
    "Actor_01/03-01-08-01-01-02-01.wav": (
        "Actor_01",
        "male",
        "surprise",
        "Kids are talking by the door",
    ),
    "Actor_02/03-01-06-01-02-01-02.wav": (
        "Actor_02",
        "female",
        "fear",
        "Dogs are sitting by the door",
    ),
    "Actor_02/03-01-02-02-01-01-02.flac": (
        "Actor_02",
        "female",
        "calm",
        "Kids are talking by the door",
    ),
}
RAVDESS_OTHER = [  # song, audio-video and video-only files of the official downloads: skipped
    "Actor_01/03-02-05-01-01-01-01.wav",
    "Actor_01/01-01-05-01-01-01-01.wav",
    "Actor_02/02-01-03-01-01-01-02.wav",
]


def make_ravdess(root: Path) -> Path:
    """RAVDESS: 48 kHz WAV like the official download, plus a 16 kHz stereo FLAC like the shared copy."""
    for i, name in enumerate(RAVDESS_SPEECH):
        if name.endswith(".flac"):
            write_audio(root / name, sr=16000, channels=2, freq=300 + 50 * i)
        else:
            write_audio(root / name, sr=48000, freq=300 + 50 * i)
    for name in RAVDESS_OTHER:
        write_audio(root / name, sr=48000)
    (root / "Actor_01" / "notes.txt").write_text("not audio\n")
    return root


URDU_FILES = {
    # file -> (speaker, gender, emotion)
    "Angry/SM1_F1_A01.wav": ("SM1", "male", "angry"),
    "Angry/SM1_F2_A02.wav": ("SM1", "male", "angry"),
    "Happy/SF1_F1_H01.wav": ("SF1", "female", "happy"),
    "Neutral/SM2_F1_N01.wav": ("SM2", "male", "neutral"),
    "Sad/SF2_F1_S01.wav": ("SF2", "female", "sad"),
    "Sad/SM1_F3_S02.wav": ("SM1", "male", "sad"),
}


def make_urdu(root: Path) -> Path:
    """URDU: 44.1 kHz mono WAV in Angry/ Happy/ Neutral/ Sad/."""
    for i, name in enumerate(URDU_FILES):
        write_audio(root / name, sr=44100, noise=True, seed=i)
    return root


# IEMOCAP: (utterance id, label, transcript) per dialog; two sessions are enough for the layout.
IEMOCAP_DIALOGS = {
    "Ses01F_impro01": [
        ("Ses01F_impro01_F000", "neu", "Excuse me."),
        ("Ses01F_impro01_M000", "hap", "Do you have your forms?"),
        ("Ses01F_impro01_F001", "exc", "Yeah."),
        ("Ses01F_impro01_M001", "fru", "Let me see them."),
        ("Ses01F_impro01_F002", "xxx", "Is there a problem?"),
    ],
    "Ses01F_script01_1": [
        ("Ses01F_script01_1_F000", "ang", "What he was going to say."),
        ("Ses01F_script01_1_M000", "sad", "I don't know."),
        ("Ses01F_script01_1_M001", "oth", "Maybe."),
    ],
    "Ses02M_impro02": [
        ("Ses02M_impro02_M000", "sad", "I'm leaving tomorrow."),
        ("Ses02M_impro02_F000", "exc", "Oh, that's wonderful!"),
        ("Ses02M_impro02_M001", "ang", "It isn't."),
        ("Ses02M_impro02_F001", "neu", "Okay."),
        ("Ses02M_impro02_M002", "sur", "Really?"),
    ],
}
IEMOCAP_FOUR = {"neutral": 2, "happy": 3, "sad": 2, "angry": 2}  # happy = hap 1 + exc 2


def make_iemocap(root: Path) -> Path:
    """IEMOCAP_full_release/Session{1,2} with wavs, EmoEvaluation and transcriptions; returns its parent."""
    release = root / "IEMOCAP_full_release"
    start = 1.0
    for dialog, utterances in IEMOCAP_DIALOGS.items():
        session = release / f"Session{int(dialog[3:5])}"
        labels = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        texts = []
        for i, (utt, label, text) in enumerate(utterances):
            end = start + SECONDS
            write_audio(
                session / "sentences" / "wav" / dialog / f"{utt}.wav", sr=16000, freq=200 + 20 * i
            )
            labels += [
                f"[{start:.4f} - {end:.4f}]\t{utt}\t{label}\t[2.5000, 2.5000, 2.5000]",
                "C-E1:\tNeutral;\t()",
                "A-E1:\tval 3; act 2; dom  2;\t()",
                "",
            ]
            texts.append(f"{utt} [{start:08.4f}-{end:08.4f}]: {text}")
            start = end + 0.5
        emo = session / "dialog" / "EmoEvaluation"
        (emo / "Categorical").mkdir(parents=True, exist_ok=True)
        (emo / f"{dialog}.txt").write_text("\n".join(labels) + "\n")
        (emo / "Categorical" / f"{dialog}_e1_cat.txt").write_text(
            f"{utterances[0][0]} :Neutral state; ()\n"
        )
        (emo / f"._{dialog}.txt").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
        trans = session / "dialog" / "transcriptions"
        trans.mkdir(parents=True, exist_ok=True)
        (trans / f"{dialog}.txt").write_text("\n".join(texts) + "\nM: [BREATHING]\n")
    return root


EMODB_FILES = {
    # file -> (speaker, gender, emotion, text code)
    "03a01Fa.wav": ("03", "male", "happy", "a01"),
    "08b10Wa.wav": ("08", "female", "angry", "b10"),
    "09a05Lb.wav": ("09", "female", "boredom", "a05"),
    "10a02Nc.wav": ("10", "male", "neutral", "a02"),
    "13b02Ea.wav": ("13", "female", "disgust", "b02"),
    "16a07Ab.wav": ("16", "female", "fear", "a07"),
    "11b01Td.wav": ("11", "male", "sad", "b01"),
}


def make_emodb(root: Path) -> Path:
    """EmoDB: wav/ of 16 kHz mono WAV."""
    for i, name in enumerate(EMODB_FILES):
        write_audio(root / "wav" / name, sr=16000, freq=180 + 30 * i)
    return root


SHEMO_FILES = {
    # file -> (speaker, gender, emotion)
    "female/F01A01.wav": ("F01", "female", "angry"),
    "female/F01W02.wav": ("F01", "female", "surprise"),
    "male/M02N01.wav": ("M02", "male", "neutral"),
    "male/M02F01.wav": ("M02", "male", "fear"),
    "male/M03H01.wav": ("M03", "male", "happy"),
    "male/M03S01.wav": ("M03", "male", "sad"),
}
SHEMO_TEXTS = {"F01A01": "دیگه نمی‌تونم تحمل کنم.", "M02N01": "چرا به این زودی میرین؟"}


def make_shemo(root: Path, transcripts: bool = True) -> Path:
    """ShEMO: female/ and male/ of 44.1 kHz mono WAV, and the official shemo.json for two of them."""
    for i, name in enumerate(SHEMO_FILES):
        write_audio(root / name, sr=44100, noise=True, seed=10 + i)
    if transcripts:
        records = [
            {"id": k, "gender": "x", "emotion": "x", "transcript": v, "ipa": ""}
            for k, v in SHEMO_TEXTS.items()
        ]
        (root / "shemo.json").write_text(
            json.dumps(records, ensure_ascii=False, indent=4), encoding="utf-8"
        )
    return root


CREMAD_FILES = {
    # file -> (speaker, emotion, text)
    "1001_DFA_ANG_XX.wav": ("1001", "angry", "Don't forget a jacket"),
    "1001_IEO_HAP_HI.wav": ("1001", "happy", "It's eleven o'clock"),
    "1002_TIE_NEU_XX.wav": ("1002", "neutral", "That is exactly what happened"),
    "1002_WSI_SAD_LO.wav": ("1002", "sad", "We'll stop in a couple of minutes"),
    "1003_ITS_FEA_MD.wav": ("1003", "fear", "I think I've seen this before"),
    "1003_ITH_DIS_XX.wav": ("1003", "disgust", "I think I have a doctor's appointment"),
}
CREMAD_GENDERS = {"1001": "male", "1002": "female", "1003": "female"}


def make_cremad(root: Path, demographics: bool = True) -> Path:
    """CREMA-D: AudioWAV/ of 16 kHz mono WAV, and VideoDemographics.csv at the root."""
    for i, name in enumerate(CREMAD_FILES):
        write_audio(root / "AudioWAV" / name, sr=16000, freq=250 + 25 * i)
    if demographics:
        pd.DataFrame(
            {
                "ActorID": list(CREMAD_GENDERS),
                "Age": [51, 21, 30],
                "Sex": [g.capitalize() for g in CREMAD_GENDERS.values()],
                "Race": ["Caucasian"] * 3,
                "Ethnicity": ["Not Hispanic"] * 3,
            }
        ).to_csv(root / "VideoDemographics.csv", index=False)
    return root
