"""Audio I/O: one loader for every corpus (any rate, any channel count), and a cheap corpus check.

`load_audio` returns float32 mono at the target rate. Bad files raise `AudioError` with a `reason`
among `REASONS`, so a notebook can list what it skipped and why (`check_audio`).

Clips longer than `MAX_SECONDS` are refused ("too_long"), never cut: every model of the study reads
Whisper's 30-s window (or is compared with one that does), and a clip cut to its first 30 s would be
scored on audio the label may not describe. Under the `skip` policy they are listed with the others.

Durations in manifests come from file headers (`durations`); a header that cannot be read gives NaN
there and the row is kept, so that `check_audio` reports the file (as missing or unreadable) instead
of the loader hiding it.
"""

from __future__ import annotations

import math
import os
from typing import Iterable

import numpy as np
import pandas as pd
import soundfile as sf
import soxr

TARGET_SR = 16000
MIN_SECONDS = 0.1  # shorter files are "empty": nothing an emotion model can use
MAX_SECONDS = 30.0  # Whisper's window: longer clips are "too_long" (see the module notes)
SILENCE_PEAK = 1e-4  # a peak below this (about -80 dBFS) is "silent"
REASONS = ("missing", "unreadable", "empty", "silent", "too_long")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")

SKIPPED_COLUMNS = ["utt_id", "corpus", "path", "reason", "detail"]


class AudioError(ValueError):
    """An audio file that cannot be used; `reason` is one of REASONS."""

    def __init__(self, path: str | os.PathLike, reason: str, detail: str = ""):
        if reason not in REASONS:
            raise ValueError(f"unknown AudioError reason {reason!r}; known: {REASONS}")
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason} audio file {self.path}" + (f": {detail}" if detail else ""))

    def __reduce__(self):  # picklable across DataLoader / multiprocessing workers
        return (type(self), (self.path, self.reason, self.detail))


def _decoder_message(path: str | os.PathLike, exc: Exception) -> str:
    """libsndfile's reason in words a user can act on (its own text kept in brackets)."""
    text = f"{type(exc).__name__}: {exc}"
    suffix = os.path.splitext(str(path))[1].lower().lstrip(".") or "audio"
    if any(k in str(exc) for k in ("psf_fseek", "lost sync", "unexpected end", "truncated")):
        return f"truncated or corrupt {suffix.upper()} file ({text})"
    if "Format not recognised" in str(exc) or "unknown format" in str(exc).lower():
        return f"not an audio file libsndfile can read, or a corrupt header ({text})"
    return text


def _read(
    path: str | os.PathLike, min_seconds: float, silence_peak: float, max_seconds: float = MAX_SECONDS
) -> tuple[np.ndarray, int]:
    """Mono float32 samples at the file's own rate, after every check that AudioError names."""
    if not os.path.isfile(path):
        raise AudioError(path, "missing", "no such file")
    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile reports corrupt or unsupported files in several ways
        raise AudioError(path, "unreadable", _decoder_message(path, exc)) from exc
    seconds = data.shape[0] / sr if sr else 0.0
    if data.shape[0] == 0 or seconds < min_seconds:
        raise AudioError(
            path, "empty", f"{data.shape[0]} samples ({seconds:.3f} s < {min_seconds} s)"
        )
    if seconds > max_seconds:
        raise AudioError(path, "too_long", f"{seconds:.1f} s > {max_seconds:g} s (Whisper's window; clips are "
                                           "never cut)")
    x = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(x).all():
        raise AudioError(path, "unreadable", "non-finite samples")
    peak = float(np.abs(x).max())
    if peak < silence_peak:
        raise AudioError(path, "silent", f"peak {peak:.2e} < {silence_peak:.0e}")
    return x, sr


def load_audio(
    path: str | os.PathLike,
    target_sr: int = TARGET_SR,
    *,
    min_seconds: float = MIN_SECONDS,
    silence_peak: float = SILENCE_PEAK,
    max_seconds: float = MAX_SECONDS,
) -> np.ndarray:
    """Float32 mono samples at `target_sr` (soxr 'HQ' resampling, channels averaged).

    Levels are left alone unless the peak exceeds 1 (float files, resampling overshoot), in which
    case the signal is scaled to peak 1. Raises AudioError (any of REASONS).
    """
    x, sr = _read(path, min_seconds, silence_peak, max_seconds)
    if sr != target_sr:
        x = soxr.resample(x, sr, target_sr, quality="HQ").astype(np.float32, copy=False)
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak > 1.0:
        x = x / peak
    return np.ascontiguousarray(x, dtype=np.float32)


def audio_info(path: str | os.PathLike) -> float:
    """Duration in seconds from the file header; AudioError (missing / unreadable) otherwise."""
    if not os.path.isfile(path):
        raise AudioError(path, "missing", "no such file")
    try:
        info = sf.info(path)
    except Exception as exc:
        raise AudioError(path, "unreadable", _decoder_message(path, exc)) from exc
    if not info.samplerate:
        raise AudioError(path, "unreadable", "header gives no sample rate")
    return info.frames / info.samplerate


def durations(paths: Iterable[str | os.PathLike]) -> np.ndarray:
    """Header durations of many files; NaN where the header cannot be read (check_audio says why)."""
    out = []
    for path in paths:
        try:
            out.append(audio_info(path))
        except AudioError:
            out.append(math.nan)
    return np.asarray(out, dtype=float)


def check_audio(
    manifest: pd.DataFrame,
    policy: str = "fail",
    *,
    min_seconds: float = MIN_SECONDS,
    silence_peak: float = SILENCE_PEAK,
    max_seconds: float = MAX_SECONDS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read every file of the manifest once (no resampling) and apply load_audio's checks.

    Returns `(kept, skipped)`: kept is the manifest without the bad rows (index reset); skipped has
    columns utt_id, corpus, path, reason, detail. policy "fail" raises the first AudioError (its
    message counts the other bad files) when any file is bad; "skip" drops them.
    """
    if policy not in ("fail", "skip"):
        raise ValueError(f"unknown audio policy {policy!r}; use 'fail' or 'skip'")
    errors: dict[int, AudioError] = {}
    for pos, path in enumerate(manifest["path"]):
        try:
            _read(path, min_seconds, silence_peak, max_seconds)
        except AudioError as err:
            errors[pos] = err
    bad = sorted(errors)
    rows = manifest.iloc[bad]
    skipped = pd.DataFrame(
        {
            "utt_id": rows["utt_id"].to_numpy() if "utt_id" in rows else [""] * len(bad),
            "corpus": rows["corpus"].to_numpy() if "corpus" in rows else [""] * len(bad),
            "path": [errors[p].path for p in bad],
            "reason": [errors[p].reason for p in bad],
            "detail": [errors[p].detail for p in bad],
        },
        columns=SKIPPED_COLUMNS,
    )
    if bad and policy == "fail":
        first = errors[bad[0]]
        detail = first.detail
        if len(bad) > 1:
            counts = skipped["reason"].value_counts().to_dict()
            detail += (
                f"; {len(bad) - 1} other bad file(s) in this manifest (by reason: {counts}); "
                "use policy 'skip' to drop them"
            )
        raise AudioError(first.path, first.reason, detail) from first
    keep = np.ones(len(manifest), dtype=bool)
    keep[bad] = False
    return manifest.loc[keep].reset_index(drop=True), skipped
