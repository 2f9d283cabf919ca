"""Profile-driven corpus preparation (on the real corpora when present)."""

from __future__ import annotations

import pandas as pd

from serlib.data.prepare import cap_per_speaker, prepare_corpus, protocol_folds
from serlib.params import notebook_params


def test_cap_per_speaker_is_seeded_and_bounded():
    m = pd.DataFrame({"utt_id": [f"u{i:02d}" for i in range(30)], "speaker": ["a"] * 20 + ["b"] * 7 + ["c"] * 3})
    one, two = cap_per_speaker(m, 5, seed=1), cap_per_speaker(m, 5, seed=1)
    assert one.equals(two)
    assert one["speaker"].value_counts().to_dict() == {"a": 5, "b": 5, "c": 3}
    assert not one.equals(cap_per_speaker(m, 5, seed=2))
    assert cap_per_speaker(m, None, seed=1) is m


def test_smoke_profile_prepares_real_corpora(data_root, splits_root, monkeypatch):
    monkeypatch.setenv("SERLIB_DATA", str(data_root))
    monkeypatch.setenv("SERLIB_SPLITS", str(splits_root))
    P = notebook_params("smoke", "01_baselines")
    ravdess = prepare_corpus("ravdess", P)
    assert ravdess.classes == ["neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise"]
    assert ravdess.manifest["speaker"].value_counts().max() <= P["per_speaker"]
    assert set(ravdess.labels()) <= set(range(len(ravdess.classes)))
    folds = protocol_folds(ravdess, "emobox", P)
    assert len(folds) == 2 and all(f.speaker_independent for f in folds)
    urdu = prepare_corpus("urdu", P)
    leaky = protocol_folds(urdu, "emobox_leaky", P)
    assert not leaky[0].speaker_independent
    assert all(f.speaker_independent for f in protocol_folds(urdu, "speaker_groups", P))
