"""Profile-driven corpus preparation (on the real corpora when present)."""

from __future__ import annotations

import pandas as pd
import pytest

from serlib.data.prepare import cap_per_speaker, prepare_corpus, protocol_folds
from serlib.study.params import notebook_params


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


def test_every_profile_names_known_loaders_selections_and_fold_kinds():
    from serlib.data.corpora import LOADERS
    from serlib.data.folds import KINDS
    from serlib.data.manifest import SELECTIONS
    from serlib.study.params import available_profiles, load_profile

    for path in available_profiles():
        profile = load_profile(path)
        corpora = profile["common"].get("corpora", {})
        for notebook in profile["notebooks"]:
            for name in profile[notebook].get("corpora_to_run", []) or profile[notebook].get("protocols", {}):
                assert name in corpora, f"{path}: {notebook} runs unknown corpus {name}"
        for name, spec in corpora.items():
            assert spec.get("loader", name) in LOADERS, f"{path}: {name}"
            assert spec.get("selection") in (None, "all", *SELECTIONS), f"{path}: {name}"
            for protocol, folds in spec.get("protocols", {}).items():
                assert folds["kind"] in KINDS, f"{path}: {name}/{protocol}"


def test_a_new_corpus_needs_only_a_csv(tmp_path):
    """A profile entry {loader: csv, path: ...} makes a corpus of any folder of audio with labels."""
    from tests.fixtures import write_audio

    rows = ["path,emotion,speaker"]
    for spk in ("a", "b", "c"):
        for i, emotion in enumerate(("angry", "sad", "neutral", "angry")):
            write_audio(tmp_path / "mine" / spk / f"{i}.wav", sr=22050, freq=300 + 50 * i)
            rows.append(f"{spk}/{i}.wav,{emotion},{spk}")
    (tmp_path / "mine" / "labels.csv").write_text("\n".join(rows) + "\n")
    P = {"data_root": str(tmp_path), "seed": 0, "audio_policy": "fail",
         "corpora": {"mine": {"loader": "csv", "path": "mine/labels.csv",
                              "protocols": {"speakers": {"kind": "speaker"}}}}}
    corpus = prepare_corpus("mine", P)
    assert len(corpus.manifest) == 12 and corpus.classes == ["neutral", "sad", "angry"]
    folds = protocol_folds(corpus, "speakers", P)
    assert [len(f.test) for f in folds] == [4, 4, 4] and all(f.speaker_independent for f in folds)


def test_protocol_folds_limit_per_corpus_or_for_all(tmp_path):
    from serlib.data.prepare import PreparedCorpus, protocol_folds

    rows = [{"utt_id": f"s{s}_{i}", "speaker": f"s{s}", "emotion": ("happy", "sad")[i % 2]} for s in range(6) for i in range(4)]
    corpus = PreparedCorpus("toy", pd.DataFrame(rows), [], ["happy", "sad"],
                            {"protocols": {"groups": {"kind": "speaker_groups", "k": 3}}})
    assert len(protocol_folds(corpus, "groups", {})) == 3
    assert len(protocol_folds(corpus, "groups", {}, limit=2)) == 2
    assert len(protocol_folds(corpus, "groups", {}, limit={"toy": 1, "other": 2})) == 1
    assert len(protocol_folds(corpus, "groups", {}, limit={"other": 1})) == 3
    assert len(protocol_folds(corpus, "groups", {"max_folds": {"toy": 2}})) == 2  # the notebook's own limit
    assert len(protocol_folds(corpus, "groups", {"max_folds": 2}, limit={"toy": 1})) == 1  # limit wins
    with pytest.raises(ValueError, match="at least 1"):
        protocol_folds(corpus, "groups", {}, limit=0)
