"""Audio I/O: resampling, down-mix, peak safety, every AudioError reason, check_audio policies."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest

from serlib.data.audio import AudioError, audio_info, check_audio, durations, load_audio
from tests.fixtures import tone, write_audio


@pytest.mark.parametrize("sr", [44100, 48000, 8000, 22050])
def test_resampling_gives_target_length_and_keeps_pitch(tmp_path, sr):
    path = write_audio(tmp_path / f"a{sr}.wav", sr=sr, seconds=1.0, freq=440.0)
    x = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spectrum) * 16000 / len(x) - 440.0) < 2.0


def test_other_target_rate_and_no_resampling_at_target(tmp_path):
    path = write_audio(tmp_path / "a.wav", sr=16000, seconds=0.5)
    assert len(load_audio(path)) == 8000
    assert abs(len(load_audio(path, target_sr=8000)) - 4000) <= 1


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
def test_formats(tmp_path, suffix):
    x = load_audio(write_audio(tmp_path / f"a{suffix}", sr=16000, seconds=0.5))
    assert abs(len(x) - 8000) <= 1 and 0.2 < np.abs(x).max() <= 1.0


def test_stereo_is_down_mixed_by_mean(tmp_path):
    data = tone(seconds=0.5, sr=16000, channels=2, amp=0.4)  # right channel = left / 2
    x = load_audio(write_audio(tmp_path / "s.wav", data, sr=16000, subtype="FLOAT"))
    np.testing.assert_allclose(x, data.mean(axis=1), atol=1e-6)


def test_levels_left_alone_below_full_scale(tmp_path):
    x = load_audio(write_audio(tmp_path / "q.wav", sr=16000, amp=0.3))
    assert abs(np.abs(x).max() - 0.3) < 1e-3


def test_peak_above_one_is_scaled_to_one(tmp_path):
    data = tone(seconds=0.5, sr=16000, amp=2.5)
    x = load_audio(write_audio(tmp_path / "loud.wav", data, sr=16000, subtype="FLOAT"))
    assert abs(np.abs(x).max() - 1.0) < 1e-6
    np.testing.assert_allclose(x, data[:, 0] / 2.5, atol=1e-6)
    y = load_audio(
        write_audio(
            tmp_path / "loud44.wav", tone(seconds=0.5, sr=44100, amp=2.5), sr=44100, subtype="FLOAT"
        )
    )
    assert np.abs(y).max() <= 1.0 + 1e-6


def _raises(reason, path, **kwargs):
    with pytest.raises(AudioError) as info:
        load_audio(path, **kwargs)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.reason == reason and err.path == str(path)
    assert str(path) in str(err) and reason in str(err)
    return err


def test_missing_file(tmp_path):
    _raises("missing", tmp_path / "nope.wav")
    err = pickle.loads(pickle.dumps(_raises("missing", tmp_path / "nope.wav")))
    assert (err.reason, err.path, str(err)) == (
        "missing",
        str(tmp_path / "nope.wav"),
        f"missing audio file {tmp_path / 'nope.wav'}: no such file",
    )
    _raises("missing", tmp_path)  # a folder is no audio file


def test_corrupt_bytes_are_unreadable(tmp_path):
    path = tmp_path / "bad.wav"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    _raises("unreadable", path)
    truncated = tmp_path / "trunc.flac"
    truncated.write_bytes(write_audio(tmp_path / "ok.flac", sr=16000).read_bytes()[:30])
    _raises("unreadable", truncated)


def test_empty_files(tmp_path):
    _raises("empty", write_audio(tmp_path / "zero.wav", np.zeros((0, 1), np.float32), sr=16000))
    err = _raises("empty", write_audio(tmp_path / "short.wav", sr=16000, seconds=0.05))
    assert "0.050" in str(err)
    assert len(load_audio(tmp_path / "short.wav", min_seconds=0.01)) == 800


def test_silent_files_and_threshold(tmp_path):
    _raises(
        "silent", write_audio(tmp_path / "zeros.wav", np.zeros((8000, 1), np.float32), sr=16000)
    )
    quiet = write_audio(tmp_path / "quiet.wav", tone(sr=16000, amp=5e-5), sr=16000, subtype="FLOAT")
    _raises("silent", quiet)
    assert np.abs(load_audio(quiet, silence_peak=1e-5)).max() > 0
    _raises(
        "silent",
        write_audio(tmp_path / "q2.wav", tone(sr=16000, amp=1e-3), sr=16000),
        silence_peak=1e-2,
    )


def test_audio_info_and_durations(tmp_path):
    ok = write_audio(tmp_path / "a.wav", sr=44100, seconds=0.5)
    assert audio_info(ok) == pytest.approx(0.5, abs=1e-4)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(AudioError) as info:
        audio_info(bad)
    assert info.value.reason == "unreadable"
    got = durations([ok, bad, tmp_path / "missing.wav"])
    assert got[0] == pytest.approx(0.5, abs=1e-4) and math.isnan(got[1]) and math.isnan(got[2])


def _bad_manifest(tmp_path) -> pd.DataFrame:
    files = {
        "good1": write_audio(tmp_path / "good1.wav", sr=16000),
        "missing": tmp_path / "missing.wav",
        "corrupt": tmp_path / "corrupt.wav",
        "good2": write_audio(tmp_path / "good2.flac", sr=44100),
        "silent": write_audio(tmp_path / "silent.wav", np.zeros((4000, 1), np.float32), sr=16000),
        "empty": write_audio(tmp_path / "empty.wav", np.zeros((0, 1), np.float32), sr=16000),
    }
    (tmp_path / "corrupt.wav").write_bytes(b"\x00" * 500)
    return pd.DataFrame(
        {"utt_id": list(files), "corpus": "toy", "path": [str(p) for p in files.values()]},
        index=range(10, 16),
    )


def test_check_audio_skip_lists_reasons(tmp_path):
    kept, skipped = check_audio(_bad_manifest(tmp_path), policy="skip")
    assert kept["utt_id"].tolist() == ["good1", "good2"]
    assert kept.index.tolist() == [0, 1]
    assert list(skipped.columns[:4]) == ["utt_id", "corpus", "path", "reason"]
    assert dict(zip(skipped["utt_id"], skipped["reason"])) == {
        "missing": "missing",
        "corrupt": "unreadable",
        "silent": "silent",
        "empty": "empty",
    }
    assert (skipped["corpus"] == "toy").all()


def test_check_audio_fail_raises_first_and_counts_others(tmp_path):
    manifest = _bad_manifest(tmp_path)
    with pytest.raises(AudioError) as info:
        check_audio(manifest)
    assert info.value.reason == "missing" and "missing.wav" in str(info.value)
    assert "3 other bad file" in str(info.value)
    kept, skipped = check_audio(manifest.iloc[[0, 3]], policy="fail")
    assert len(kept) == 2 and skipped.empty


def test_check_audio_policy_and_thresholds(tmp_path):
    manifest = _bad_manifest(tmp_path)
    with pytest.raises(ValueError, match="policy"):
        check_audio(manifest, policy="ignore")
    _, skipped = check_audio(manifest, policy="skip", silence_peak=0.0)
    assert "silent" not in set(skipped["reason"])
