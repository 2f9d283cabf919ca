"""Corpus loaders on fixtures in the official layouts, the registry, the generic CSV, the real copies."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf

from serlib.data import cremad, emodb, generic, iemocap, ravdess, shemo, urdu
from serlib.data.audio import check_audio, load_audio
from serlib.data.corpora import LOADERS, load_corpus
from serlib.data.manifest import COLUMNS, UnknownLabelError, select_classes
from serlib.paths import DataRootError
from tests.fixtures import (
    CREMAD_FILES,
    CREMAD_GENDERS,
    EMODB_FILES,
    IEMOCAP_DIALOGS,
    IEMOCAP_FOUR,
    RAVDESS_SPEECH,
    SECONDS,
    SHEMO_FILES,
    SHEMO_TEXTS,
    URDU_FILES,
    make_cremad,
    make_emodb,
    make_iemocap,
    make_ravdess,
    make_shemo,
    make_urdu,
    write_audio,
)


def _common_checks(m: pd.DataFrame, corpus: str, language: str):
    assert list(m.columns) == COLUMNS
    assert (m["corpus"] == corpus).all() and (m["language"] == language).all()
    assert m["utt_id"].tolist() == sorted(m["utt_id"])
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in m["path"])
    assert m["duration"].notna().all()


def _by_file(m: pd.DataFrame) -> pd.DataFrame:
    return m.set_index(m["path"].map(lambda p: "/".join(Path(p).parts[-2:])))


# ---- RAVDESS ------------------------------------------------------------------------------------


def test_ravdess_fixture(tmp_path):
    m = ravdess.load(make_ravdess(tmp_path / "ravdess"))
    _common_checks(m, "ravdess", "en")
    assert len(m) == len(RAVDESS_SPEECH)  # song, audio-video and video-only files skipped
    got = _by_file(m)
    for name, (speaker, gender, emotion, text) in RAVDESS_SPEECH.items():
        row = got.loc[name]
        assert (row.speaker, row.gender, row.emotion, row.text) == (speaker, gender, emotion, text)
        assert row.utt_id == Path(name).stem and row.session == ""
    assert m["duration"].tolist() == pytest.approx([SECONDS] * len(m), abs=1e-3)
    stereo = m.loc[m["path"].str.endswith(".flac"), "path"].iloc[0]
    assert sf.info(stereo).channels == 2 and load_audio(stereo).ndim == 1


def test_ravdess_unknown_emotion_code_and_misplaced_actor(tmp_path):
    root = make_ravdess(tmp_path / "r")
    write_audio(root / "Actor_02" / "03-01-09-01-01-01-02.wav")
    with pytest.raises(UnknownLabelError, match="09"):
        ravdess.load(root)
    root2 = make_ravdess(tmp_path / "r2")
    write_audio(root2 / "Actor_02" / "03-01-01-01-01-01-05.wav")
    with pytest.raises(ValueError, match="Actor_02"):
        ravdess.load(root2)


def test_ravdess_official_download_folder_one_level_deeper(tmp_path):
    make_ravdess(tmp_path / "ravdess" / "Audio_Speech_Actors_01-24")
    assert len(ravdess.load(tmp_path / "ravdess")) == len(RAVDESS_SPEECH)


# ---- URDU ---------------------------------------------------------------------------------------


def test_urdu_fixture(tmp_path):
    m = urdu.load(make_urdu(tmp_path / "urdu"))
    _common_checks(m, "urdu", "ur")
    got = _by_file(m)
    for name, (speaker, gender, emotion) in URDU_FILES.items():
        row = got.loc[name]
        assert (row.speaker, row.gender, row.emotion, row.text) == (speaker, gender, emotion, "")
    assert m["speaker"].nunique() == 4


def test_urdu_letter_must_agree_with_folder(tmp_path):
    root = make_urdu(tmp_path / "u")
    write_audio(root / "Happy" / "SM3_F1_S09.wav", sr=44100)
    with pytest.raises(ValueError, match="lies in Happy"):
        urdu.load(root)


def test_urdu_unknown_label(tmp_path):
    root = make_urdu(tmp_path / "u")
    write_audio(root / "Sad" / "SM3_F1_X09.wav", sr=44100)
    with pytest.raises(UnknownLabelError, match="X"):
        urdu.load(root)


# ---- IEMOCAP ------------------------------------------------------------------------------------


def test_iemocap_fixture_and_four_class_merge(tmp_path):
    root = make_iemocap(tmp_path / "iemocap")
    m = iemocap.load(root)
    _common_checks(m, "iemocap", "en")
    n = sum(len(u) for u in IEMOCAP_DIALOGS.values())
    assert len(m) == n
    row = m.set_index("utt_id").loc["Ses01F_impro01_M000"]
    assert (row.speaker, row.gender, row.session, row.emotion, row.text) == (
        "Ses01M",
        "male",
        "Ses01",
        "happy",
        "Do you have your forms?",
    )
    row = m.set_index("utt_id").loc["Ses02M_impro02_F000"]
    assert (row.speaker, row.gender, row.session, row.emotion) == (
        "Ses02F",
        "female",
        "Ses02",
        "excited",
    )
    assert m["emotion"].value_counts().to_dict() == {
        "neutral": 2,
        "angry": 2,
        "sad": 2,
        "excited": 2,
        "other": 2,
        "happy": 1,
        "frustrated": 1,
        "surprise": 1,
    }
    assert set(m["speaker"]) == {"Ses01F", "Ses01M", "Ses02F", "Ses02M"}
    assert m["path"].str.endswith(".wav").all() and m["path"].str.contains("/sentences/wav/").all()

    four = select_classes(m, "four")
    assert four["emotion"].value_counts().to_dict() == IEMOCAP_FOUR
    assert len(four) == sum(IEMOCAP_FOUR.values())
    assert set(four.loc[four["emotion"] == "happy", "utt_id"]) == {
        "Ses01F_impro01_M000",
        "Ses01F_impro01_F001",
        "Ses02M_impro02_F000",
    }

    # root may also be IEMOCAP_full_release itself
    same = iemocap.load(root / "IEMOCAP_full_release")
    pd.testing.assert_frame_equal(m, same)


def test_iemocap_missing_wav_kept_for_check_audio(tmp_path):
    root = make_iemocap(tmp_path / "iemocap")
    gone = (
        root / "IEMOCAP_full_release/Session2/sentences/wav/Ses02M_impro02/Ses02M_impro02_M002.wav"
    )
    gone.unlink()
    m = iemocap.load(root)
    assert math.isnan(m.set_index("utt_id").loc["Ses02M_impro02_M002", "duration"])
    kept, skipped = check_audio(m, policy="skip")
    assert skipped[["utt_id", "reason"]].values.tolist() == [["Ses02M_impro02_M002", "missing"]]
    assert len(kept) == len(m) - 1


def test_iemocap_unknown_label(tmp_path):
    root = make_iemocap(tmp_path / "iemocap")
    labels = root / "IEMOCAP_full_release/Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"
    labels.write_text(labels.read_text().replace("\tfru\t", "\tzzz\t"))
    with pytest.raises(UnknownLabelError, match="zzz"):
        iemocap.load(root)


def test_iemocap_without_sessions(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataRootError, match="Session"):
        iemocap.load(tmp_path / "empty")


# ---- EmoDB, ShEMO, CREMA-D ----------------------------------------------------------------------


def test_emodb_fixture(tmp_path):
    m = emodb.load(make_emodb(tmp_path / "emodb"))
    _common_checks(m, "emodb", "de")
    got = m.set_index("utt_id")
    for name, (speaker, gender, emotion, code) in EMODB_FILES.items():
        row = got.loc[Path(name).stem]
        assert (row.speaker, row.gender, row.emotion, row.text) == (
            speaker,
            gender,
            emotion,
            emodb.TEXTS[code],
        )
    assert got.loc["03a01Fa", "text"] == "Der Lappen liegt auf dem Eisschrank."
    assert len(emodb.TEXTS) == 10 and len(emodb.SPEAKERS) == 10
    assert len(emodb.load(tmp_path / "emodb" / "wav")) == len(EMODB_FILES)


def test_emodb_unknown_label(tmp_path):
    root = make_emodb(tmp_path / "emodb")
    write_audio(root / "wav" / "03a01Xa.wav")
    with pytest.raises(UnknownLabelError, match="X"):
        emodb.load(root)


def test_shemo_fixture_with_and_without_transcripts(tmp_path):
    m = shemo.load(make_shemo(tmp_path / "shemo"))
    _common_checks(m, "shemo", "fa")
    got = _by_file(m)
    for name, (speaker, gender, emotion) in SHEMO_FILES.items():
        row = got.loc[name]
        assert (row.speaker, row.gender, row.emotion) == (speaker, gender, emotion)
        assert row.text == SHEMO_TEXTS.get(Path(name).stem, "")
    bare = shemo.load(make_shemo(tmp_path / "bare", transcripts=False))
    assert (bare["text"] == "").all() and len(bare) == len(SHEMO_FILES)


def test_shemo_gender_must_agree_with_folder(tmp_path):
    root = make_shemo(tmp_path / "shemo")
    write_audio(root / "female" / "M09A01.wav")
    with pytest.raises(ValueError, match="female"):
        shemo.load(root)


def test_cremad_fixture_with_and_without_demographics(tmp_path):
    m = cremad.load(make_cremad(tmp_path / "cremad"))
    _common_checks(m, "cremad", "en")
    got = m.set_index("utt_id")
    for name, (speaker, emotion, text) in CREMAD_FILES.items():
        row = got.loc[Path(name).stem]
        assert (row.speaker, row.emotion, row.text, row.gender) == (
            speaker,
            emotion,
            text,
            CREMAD_GENDERS[speaker],
        )
    bare = cremad.load(make_cremad(tmp_path / "bare", demographics=False))
    assert (bare["gender"] == "").all()


def test_cremad_unknown_label(tmp_path):
    root = make_cremad(tmp_path / "cremad")
    write_audio(root / "AudioWAV" / "1004_DFA_BOR_XX.wav")
    with pytest.raises(UnknownLabelError, match="BOR"):
        cremad.load(root)


@pytest.mark.parametrize("module", [ravdess, urdu, iemocap, emodb, shemo, cremad])
def test_missing_root_names_path_and_layout(tmp_path, module):
    with pytest.raises(DataRootError) as info:
        module.load(tmp_path / "absent")
    assert str(tmp_path / "absent") in str(info.value) and "expected" in str(info.value)
    assert "serlib fetch ravdess emodb urdu" in str(info.value)  # how a newcomer gets the free corpora


def test_a_missing_data_root_names_the_fetch_command(tmp_path, monkeypatch):
    from serlib.paths import data_root

    monkeypatch.setenv("SERLIB_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataRootError, match=r"serlib fetch ravdess emodb urdu.*make study FETCH=1"):
        data_root()


def test_empty_root_is_an_error(tmp_path):
    (tmp_path / "ravdess").mkdir()
    with pytest.raises(DataRootError, match="no utterances"):
        ravdess.load(tmp_path / "ravdess")


def test_unreadable_file_kept_with_nan_duration(tmp_path):
    root = make_cremad(tmp_path / "cremad")
    (root / "AudioWAV" / "1076_MTI_SAD_XX.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVE")
    m = cremad.load(root)
    assert math.isnan(m.set_index("utt_id").loc["1076_MTI_SAD_XX", "duration"])
    _, skipped = check_audio(m, policy="skip")
    assert skipped[["utt_id", "reason"]].values.tolist() == [["1076_MTI_SAD_XX", "unreadable"]]


# ---- registry and generic CSV -------------------------------------------------------------------


def test_registry(tmp_path):
    make_ravdess(tmp_path / "ravdess")
    make_emodb(tmp_path / "berlin")
    assert set(LOADERS) >= {"ravdess", "urdu", "iemocap", "emodb", "shemo", "cremad", "csv"}
    assert len(load_corpus("ravdess", data_root=tmp_path)) == len(RAVDESS_SPEECH)
    assert len(load_corpus("emodb", data_root=tmp_path, path="berlin")) == len(EMODB_FILES)
    with pytest.raises(KeyError, match="unknown corpus"):
        load_corpus("tess", data_root=tmp_path)
    with pytest.raises(ValueError, match="leaves its root"):
        load_corpus("ravdess", data_root=tmp_path / "berlin", path="../ravdess")
    with pytest.raises(DataRootError):
        load_corpus("urdu", data_root=tmp_path)
    with pytest.raises(DataRootError):
        load_corpus("urdu", data_root=tmp_path / "nowhere")


def _csv_corpus(tmp_path) -> Path:
    folder = tmp_path / "mine"
    write_audio(folder / "audio" / "a1.wav")
    write_audio(folder / "audio" / "b2.flac", sr=22050)
    pd.DataFrame({"path": ["audio/a1.wav", "audio/b2.flac"], "emotion": ["Happy", "SAD"]}).to_csv(
        folder / "mine.csv", index=False
    )
    return folder / "mine.csv"


def test_generic_csv_defaults_and_relative_paths(tmp_path):
    m = generic.load(_csv_corpus(tmp_path))
    assert list(m.columns) == COLUMNS
    assert m["utt_id"].tolist() == ["a1", "b2"] and (m["corpus"] == "mine").all()
    assert m["path"].tolist() == [
        str((tmp_path / "mine/audio" / f).resolve()) for f in ("a1.wav", "b2.flac")
    ]
    assert m["emotion"].tolist() == ["happy", "sad"]
    assert (m[["speaker", "gender", "text", "language", "session"]] == "").all().all()
    assert m["duration"].tolist() == pytest.approx([SECONDS, SECONDS], abs=1e-3)


def test_generic_csv_optional_columns_and_label_map(tmp_path):
    folder = tmp_path / "c"
    write_audio(folder / "x.wav")
    write_audio(folder / "y.wav")
    pd.DataFrame(
        {
            "path": ["x.wav", "y.wav"],
            "emotion": ["joy", "rage"],
            "utt_id": ["u2", "u1"],
            "speaker": ["s1", "s2"],
            "gender": ["F", "male"],
            "text": ["hello", "bye"],
        }
    ).to_csv(folder / "t.csv", index=False)
    m = generic.load(folder / "t.csv", corpus="Toy", label_map={"joy": "happy", "rage": "angry"})
    assert m["utt_id"].tolist() == ["u1", "u2"]
    assert m.set_index("utt_id").loc["u2", ["speaker", "gender", "emotion", "text"]].tolist() == [
        "s1",
        "female",
        "happy",
        "hello",
    ]
    assert (m["corpus"] == "toy").all()
    with pytest.raises(UnknownLabelError, match="joy"):
        generic.load(folder / "t.csv")
    with pytest.raises(UnknownLabelError, match="rage"):
        generic.load(folder / "t.csv", label_map={"joy": "happy"})


def test_generic_csv_refuses_escaping_paths(tmp_path):
    write_audio(tmp_path / "outside.wav")
    folder = tmp_path / "c"
    folder.mkdir()
    pd.DataFrame({"path": ["../outside.wav"], "emotion": ["happy"]}).to_csv(
        folder / "t.csv", index=False
    )
    with pytest.raises(ValueError, match="leaves its root"):
        generic.load(folder / "t.csv")
    pd.DataFrame({"path": [str(tmp_path / "outside.wav")], "emotion": ["happy"]}).to_csv(
        folder / "abs.csv", index=False
    )
    with pytest.raises(ValueError, match="leaves its root"):
        generic.load(folder / "abs.csv")
    assert (
        len(generic.load(folder / "abs.csv", root=tmp_path)) == 1
    )  # an absolute path inside the root is fine


def test_generic_csv_needs_path_and_emotion(tmp_path):
    (tmp_path / "t.csv").write_text("file,label\nx.wav,happy\n")
    with pytest.raises(ValueError, match="path"):
        generic.load(tmp_path / "t.csv")
    with pytest.raises(DataRootError):
        generic.load(tmp_path / "none.csv")


def test_load_corpus_csv(tmp_path):
    _csv_corpus(tmp_path)
    m = load_corpus("csv", data_root=tmp_path, path="mine/mine.csv")
    assert len(m) == 2
    with pytest.raises(ValueError, match="leaves its root"):
        load_corpus("csv", data_root=tmp_path / "mine", path="../elsewhere.csv")
    with pytest.raises(ValueError, match="needs `path`"):
        load_corpus("csv", data_root=tmp_path)


# ---- the real copies ----------------------------------------------------------------------------


def test_real_ravdess(data_root):
    m = load_corpus("ravdess", data_root=data_root)
    assert len(m) == 1440
    assert m["speaker"].nunique() == 24 and (m.groupby("speaker").size() == 60).all()
    assert m["emotion"].nunique() == 8
    assert m["emotion"].value_counts().to_dict() == {
        e: (96 if e == "neutral" else 192)
        for e in ("neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise")
    }
    assert m["gender"].value_counts().to_dict() == {"male": 720, "female": 720}
    assert set(m["text"]) == set(ravdess.STATEMENTS.values())
    assert m["duration"].between(2.5, 6.0).all()
    stereo = [p for p in m["path"] if sf.info(p).channels == 2]
    assert len(stereo) == 5
    for p in stereo:
        x = load_audio(p)
        assert x.ndim == 1 and len(x) == pytest.approx(sf.info(p).duration * 16000, abs=2)


def test_real_urdu(data_root):
    if not (data_root / "urdu").is_dir():
        pytest.skip(f"no urdu/ in the real data root {data_root}")
    m = load_corpus("urdu", data_root=data_root)
    assert len(m) == 400
    assert m["emotion"].value_counts().to_dict() == {
        e: 100 for e in ("angry", "happy", "neutral", "sad")
    }
    # The corpus README says 38 speakers (27 male, 11 female); the released file names carry 29
    # distinct S{G}{X} prefixes (18 male, 11 female), which is all a loader can see.
    assert m["speaker"].nunique() == 29
    assert m.groupby("gender")["speaker"].nunique().to_dict() == {"female": 11, "male": 18}
    x = load_audio(m["path"].iloc[0])
    assert len(x) == pytest.approx(m["duration"].iloc[0] * 16000, abs=2)
