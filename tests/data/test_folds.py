"""Folds: sessions, speakers, speaker groups, EmoBox split files, validation sets, leak checks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from serlib.data import generic
from serlib.data.corpora import load_corpus
from serlib.data.folds import (
    PACKAGED_SPLITS,
    Fold,
    SpeakerLeakError,
    assert_speaker_independent,
    fold_table,
    make_folds,
    read_emobox_jsonl,
    speaker_groups,
    split_file_path,
)
from serlib.data.manifest import COLUMNS
from tests.fixtures import write_audio

EMOS = ("neutral", "happy", "sad", "angry")


def toy(
    speakers: dict[str, int], sessions: dict[str, str] | None = None, corpus: str = "toy"
) -> pd.DataFrame:
    """A manifest without audio: `n` rows per speaker, emotions cycling, optional session per speaker."""
    rows = []
    for spk, n in speakers.items():
        for i in range(n):
            rows.append(
                {
                    "utt_id": f"{spk}_{i:03d}",
                    "corpus": corpus,
                    "path": f"/nowhere/{spk}_{i:03d}.wav",
                    "speaker": spk,
                    "gender": "",
                    "emotion": EMOS[i % len(EMOS)],
                    "text": "",
                    "language": "en",
                    "session": (sessions or {}).get(spk, ""),
                    "duration": 1.0,
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def iemocap_like() -> pd.DataFrame:
    speakers = {f"Ses0{s}{g}": 8 + s + (g == "M") for s in range(1, 6) for g in "FM"}
    return toy(speakers, {spk: spk[:5] for spk in speakers})


def _speakers(m, idx) -> set:
    return set(m["speaker"].to_numpy()[idx])


def _check_partition(m, fold, *, complete=True):
    parts = [fold.train, fold.valid, fold.test]
    joined = np.concatenate(parts)
    assert len(joined) == len(set(joined.tolist())), "parts overlap"
    if complete:
        assert sorted(joined.tolist()) == list(range(len(m)))
    for a in range(3):
        for b in range(a + 1, 3):
            assert not (_speakers(m, parts[a]) & _speakers(m, parts[b]))


# ---- EmoBox split files on the real corpora ----------------------------------------------------


def test_emobox_ravdess_six_speaker_independent_folds(data_root, splits_root):
    m = load_corpus("ravdess", data_root=data_root)
    folds = make_folds(m, {"kind": "emobox", "file": "emobox/ravdess.csv"}, splits_root=splits_root)
    assert [f.name for f in folds] == [f"fold{i}" for i in range(1, 7)]
    tested = []
    for fold in folds:
        assert len(fold.test) == 240 and len(_speakers(m, fold.test)) == 4
        assert fold.speaker_independent and fold.note == "" and len(fold.valid) == 0
        _check_partition(m, fold)
        tested += fold.test.tolist()
    assert sorted(tested) == list(range(1440))

    with_valid = make_folds(
        m,
        {"kind": "emobox", "file": "emobox/ravdess.csv", "valid_speakers": 2, "seed": 3},
        splits_root,
    )
    for fold in with_valid:
        assert (
            len(_speakers(m, fold.valid)) == 2 and len(fold.valid) == 120 and len(fold.test) == 240
        )
        _check_partition(m, fold)
    again = make_folds(
        m,
        {"kind": "emobox", "file": "emobox/ravdess.csv", "valid_speakers": 2, "seed": 3},
        splits_root,
    )
    assert all(np.array_equal(a.valid, b.valid) for a, b in zip(with_valid, again))


def test_emobox_urdu_split_leaks_speakers(data_root, splits_root):
    if not (data_root / "urdu").is_dir():
        pytest.skip(f"no urdu/ in the real data root {data_root}")
    m = load_corpus("urdu", data_root=data_root)
    spec = {"kind": "emobox", "file": "emobox/urdu.csv"}
    with pytest.raises(SpeakerLeakError) as info:
        make_folds(m, spec, splits_root=splits_root)
    assert ("train", "test") in info.value.overlaps and len(
        info.value.overlaps[("train", "test")]
    ) == 18
    assert "SM1" in str(info.value)

    (fold,) = make_folds(
        m, {**spec, "allow_speaker_overlap": True, "valid": 0.15}, splits_root=splits_root
    )
    assert not fold.speaker_independent
    assert "18 of 19 test speakers also occur in training" in fold.note
    assert len(fold.test) == 100 and len(fold.train) + len(fold.valid) == 300
    assert not (_speakers(m, fold.valid) & (_speakers(m, fold.train) | _speakers(m, fold.test)))


# ---- split files on synthetic manifests --------------------------------------------------------


def _split_file(root, name, keys, folds, emo="x"):
    path = root / "emobox" / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"key": keys, "emo": emo, "test_fold": folds}).to_csv(path, index=False)
    return f"emobox/{name}.csv"


def test_split_file_key_normalisation(tmp_path):
    m = toy({"1001": 2, "1002": 2, "1003": 2}, corpus="cremad")
    m["utt_id"] = [
        "1001_DFA_ANG_XX",
        "1001_IEO_HAP_HI",
        "1002_DFA_ANG_XX",
        "1002_TIE_SAD_LO",
        "1003_DFA_ANG_XX",
        "1003_ITS_FEA_MD",
    ]
    keys = ["cremad-" + u.replace("_", "-") for u in m["utt_id"]]
    file = _split_file(tmp_path, "cremad", keys, ["", "", "1", "1", "", ""])
    (fold,) = make_folds(m, {"kind": "split_file", "file": file}, splits_root=tmp_path)
    assert (
        fold.name == "fold1"
        and fold.test.tolist() == [2, 3]
        and fold.train.tolist() == [0, 1, 4, 5]
    )
    assert fold.speaker_independent


def test_split_file_missing_keys(tmp_path):
    m = toy({"a": 3, "b": 3, "c": 3})
    keys = [f"toy-{u}" for u in m["utt_id"]]
    file = _split_file(tmp_path, "part", keys[:-2], ["1", "1", "1", "", "", "", "2"])
    with pytest.raises(ValueError, match=r"2 of 9 manifest rows have no key.*c_001"):
        make_folds(m, {"kind": "emobox", "file": file}, splits_root=tmp_path)
    folds = make_folds(m, {"kind": "emobox", "file": file, "missing": "drop"}, splits_root=tmp_path)
    assert [f.name for f in folds] == ["fold1", "fold2"]
    assert folds[0].test.tolist() == [0, 1, 2] and folds[0].train.tolist() == [3, 4, 5, 6]
    assert "2 manifest rows without a key" in folds[0].note
    other = _split_file(tmp_path, "other", ["x-1", "x-2"], ["1", ""])
    with pytest.raises(ValueError, match="none of the 9 manifest rows"):
        make_folds(m, {"kind": "emobox", "file": other}, splits_root=tmp_path)
    with pytest.raises(ValueError, match="missing"):
        make_folds(m, {"kind": "emobox", "file": file, "missing": "keep"}, splits_root=tmp_path)


def test_split_file_empty_fold_is_an_error(tmp_path):
    m = toy({"a": 2, "b": 2})
    keys = [f"toy-{u}" for u in m["utt_id"]] + ["toy-zz_000"]
    file = _split_file(tmp_path, "empty", keys, ["1", "1", "", "", "3"])
    with pytest.raises(ValueError, match="fold3.*empty test set"):
        make_folds(m, {"kind": "emobox", "file": file}, splits_root=tmp_path)


def test_split_file_stays_inside_splits_root(tmp_path):
    (tmp_path / "splits").mkdir()
    _split_file(tmp_path, "outside", ["toy-a_000"], ["1"])
    m = toy({"a": 1, "b": 1})
    with pytest.raises(ValueError, match="leaves its root"):
        make_folds(
            m, {"kind": "emobox", "file": "../emobox/outside.csv"}, splits_root=tmp_path / "splits"
        )
    with pytest.raises(FileNotFoundError):
        make_folds(m, {"kind": "emobox", "file": "emobox/none.csv"}, splits_root=tmp_path)
    with pytest.raises(ValueError, match="needs `file`"):
        make_folds(m, {"kind": "emobox"}, splits_root=tmp_path)


def test_numeric_fold_order(tmp_path):
    m = toy({s: 1 for s in "abcdefghijkl"})
    folds = [str(i) for i in (10, 2, 1, 10, 2, 1, 3, 3, 3, 3, 3, 3)]
    file = _split_file(tmp_path, "order", [f"toy-{u}" for u in m["utt_id"]], folds)
    assert [f.name for f in make_folds(m, {"kind": "emobox", "file": file}, tmp_path)] == [
        "fold1",
        "fold2",
        "fold3",
        "fold10",
    ]


# ---- sessions, speakers, speaker groups --------------------------------------------------------


def test_session_folds_and_next_session_validation():
    m = iemocap_like()
    folds = make_folds(m, {"kind": "session"})
    assert [f.name for f in folds] == ["Ses01", "Ses02", "Ses03", "Ses04", "Ses05"]
    for fold in folds:
        assert set(m["session"].to_numpy()[fold.test]) == {fold.name} and len(fold.valid) == 0
        _check_partition(m, fold)

    folds = make_folds(m, {"kind": "session", "valid": "session"})
    for i, fold in enumerate(folds):
        assert set(m["session"].to_numpy()[fold.valid]) == {f"Ses0{(i + 1) % 5 + 1}"}
        assert len(set(m["session"].to_numpy()[fold.train])) == 3
        _check_partition(m, fold)
        assert fold.speaker_independent

    folds = make_folds(m, {"kind": "session", "valid": 0.25, "seed": 1})
    for fold in folds:
        # whole speakers until at least a quarter of the training utterances are held out
        before = len(fold.train) + len(fold.valid)
        largest = m["speaker"].value_counts().max()
        assert 0.25 * before <= len(fold.valid) < 0.25 * before + largest
        _check_partition(m, fold)


def test_session_folds_need_sessions():
    m = toy({"a": 2, "b": 2})
    with pytest.raises(ValueError, match="needs a session"):
        make_folds(m, {"kind": "session"})
    m["session"] = ["s1", "s1", "s2", "s2"]
    with pytest.raises(ValueError, match="at least 3 sessions"):
        make_folds(m, {"kind": "session", "valid": "session"})


def test_leave_one_speaker_out():
    m = iemocap_like()
    folds = make_folds(m, {"kind": "speaker"})
    assert len(folds) == 10 and [f.name for f in folds] == sorted(m["speaker"].unique())
    for fold in folds:
        assert _speakers(m, fold.test) == {fold.name}
        _check_partition(m, fold)
    pairs = make_folds(m, {"kind": "speaker", "speakers_per_fold": 2, "valid_speakers": 1})
    assert len(pairs) == 5 and pairs[0].name == "Ses01F+Ses01M"
    for fold in pairs:
        assert len(_speakers(m, fold.test)) == 2 and len(_speakers(m, fold.valid)) == 1
        _check_partition(m, fold)


def test_speaker_groups_disjoint_cover_balanced_deterministic():
    counts = {
        f"s{i:02d}": n
        for i, n in enumerate(
            [80, 48, 40, 38, 28, 28, 22, 14, 14, 12, 12, 10, 6, 6, 4, 4, 4, 2, 2, 2]
        )
    }
    m = toy(counts)
    folds = make_folds(m, {"kind": "speaker_groups", "k": 5, "seed": 7})
    assert [f.name for f in folds] == [f"group{g}" for g in range(1, 6)]
    tested = np.concatenate([f.test for f in folds])
    assert sorted(tested.tolist()) == list(range(len(m)))
    for fold in folds:
        _check_partition(m, fold)
    sizes = [len(f.test) for f in folds]
    assert max(sizes) - min(sizes) <= max(counts.values())
    assert max(sizes) <= 80 + 2  # the greedy fill keeps every group near the mean (74) here
    again = make_folds(
        m.sample(frac=1, random_state=0), {"kind": "speaker_groups", "k": 5, "seed": 7}
    )
    shuffled = m.sample(frac=1, random_state=0).reset_index(drop=True)
    assert [_speakers(shuffled, f.test) for f in again] == [_speakers(m, f.test) for f in folds]
    with pytest.raises(ValueError, match="k=21"):
        speaker_groups(m["speaker"], 21)
    with pytest.raises(ValueError, match="needs `k`"):
        make_folds(m, {"kind": "speaker_groups"})


def test_validation_speakers():
    m = toy({f"s{i}": 5 for i in range(8)})
    folds = make_folds(m, {"kind": "speaker_groups", "k": 4, "valid": 0.5, "seed": 0})
    for fold in folds:  # half of 30 training utterances = 3 of the 6 training speakers
        assert len(_speakers(m, fold.valid)) == 3 and len(_speakers(m, fold.train)) == 3
        _check_partition(m, fold)
    with pytest.raises(ValueError, match="cannot hold out 6"):
        make_folds(m, {"kind": "speaker_groups", "k": 4, "valid_speakers": 6})
    with pytest.raises(ValueError, match="either"):
        make_folds(m, {"kind": "speaker", "valid": 0.1, "valid_speakers": 1})
    with pytest.raises(ValueError, match="session"):
        make_folds(m, {"kind": "speaker", "valid": "session"})
    with pytest.raises(ValueError, match="fraction"):
        make_folds(m, {"kind": "speaker", "valid": 1.5})
    assert all(len(f.valid) == 0 for f in make_folds(m, {"kind": "speaker", "valid": "none"}))


def test_validation_speakers_take_both_genders_in_turn():
    """Two or more validation speakers cover both genders whatever the seed (one gender would let
    gender recognition validate at 100 % by always naming it); the seeded draw still decides who."""
    speakers = {f"m{i}": 5 for i in range(5)} | {f"f{i}": 5 for i in range(5)}
    m = toy(speakers)
    m["gender"] = np.where(m["speaker"].str.startswith("m"), "male", "female")
    chosen = set()
    for seed in range(12):
        for fold in make_folds(m, {"kind": "speaker", "speakers_per_fold": 2, "valid_speakers": 2, "seed": seed}):
            valid = m.iloc[fold.valid]
            assert set(valid["gender"]) == {"male", "female"} and valid["speaker"].nunique() == 2
            _check_partition(m, fold)
            chosen.add(frozenset(valid["speaker"]))
        fold = make_folds(m, {"kind": "speaker_groups", "k": 5, "valid": 0.3, "seed": seed})[0]
        assert set(m.iloc[fold.valid]["gender"]) == {"male", "female"}  # 3 of the 8 training speakers
    assert len(chosen) > 5  # not always the same pair
    # no genders known: the seeded order as it was, so corpora without gender keep their folds
    plain = toy(speakers)
    folds = make_folds(plain, {"kind": "speaker", "speakers_per_fold": 2, "valid_speakers": 2, "seed": 1})
    assert any(len({s[0] for s in _speakers(plain, f.valid)}) == 1 for f in folds)


def test_speaker_kinds_refuse_rows_without_speaker(tmp_path):
    write_audio(tmp_path / "a.wav")
    write_audio(tmp_path / "b.wav")
    pd.DataFrame({"path": ["a.wav", "b.wav"], "emotion": ["happy", "sad"]}).to_csv(
        tmp_path / "c.csv", index=False
    )
    m = generic.load(tmp_path / "c.csv")
    for spec in ({"kind": "speaker"}, {"kind": "speaker_groups", "k": 2}):
        with pytest.raises(ValueError, match="needs a speaker on every row.*2 of 2 rows"):
            make_folds(m, spec)
    m2 = toy({"a": 2, "b": 2})
    m2.loc[1, "speaker"] = ""
    with pytest.raises(ValueError, match="needs a speaker"):
        make_folds(m2, {"kind": "speaker"})
    file = _split_file(tmp_path, "c", [f"c-{u}" for u in m["utt_id"]], ["1", ""])
    with pytest.raises(ValueError, match="no speaker"):
        make_folds(m, {"kind": "emobox", "file": file}, splits_root=tmp_path)


def test_assert_speaker_independent_names_speakers():
    m = toy({"a": 2, "b": 2, "c": 2})
    fold = Fold("f", np.array([0, 1, 2]), np.array([], dtype=int), np.array([3, 4, 5]))
    with pytest.raises(SpeakerLeakError, match=r"train and test share 1 speaker\(s\): b"):
        assert_speaker_independent(m, fold)
    fold = Fold("g", np.array([0, 1]), np.array([2]), np.array([3, 4, 5]))
    with pytest.raises(SpeakerLeakError, match="valid and test share"):
        assert_speaker_independent(m, fold)
    assert_speaker_independent(m, Fold("ok", np.array([0, 1]), np.array([2, 3]), np.array([4, 5])))


def test_unknown_kind():
    m = iemocap_like()
    with pytest.raises(ValueError, match="unknown fold kind"):
        make_folds(m, {"kind": "random"})


def test_folds_index_positions_after_reset_index():
    m = iemocap_like()
    m.index = np.arange(len(m)) * 10 + 5
    for fold in make_folds(m, {"kind": "session"}):
        assert fold.test.max() < len(m)
        _check_partition(m.reset_index(drop=True), fold)


def test_fold_table():
    m = iemocap_like()
    folds = make_folds(m, {"kind": "session", "valid": "session"})
    table = fold_table(m, folds)
    assert table["fold"].tolist() == [f.name for f in folds]
    assert list(table.columns[:9]) == [
        "fold",
        "n_train",
        "n_valid",
        "n_test",
        "speakers_train",
        "speakers_valid",
        "speakers_test",
        "speaker_independent",
        "note",
    ]
    assert (table["speakers_test"] == 2).all() and (table["speakers_train"] == 6).all()
    assert (table[["n_train", "n_valid", "n_test"]].sum(axis=1) == len(m)).all()
    row = table.iloc[0]
    assert row["n_test"] == sum(row[f"test_{e}"] for e in EMOS)
    assert row["test_neutral"] == int((m.loc[folds[0].test, "emotion"] == "neutral").sum())


def test_validation_utterances_only_for_protocols_that_share_speakers():
    m = toy({f"s{i}": 10 for i in range(6)})
    with pytest.raises(ValueError, match="allow_speaker_overlap"):
        make_folds(m, {"kind": "speaker_groups", "k": 3, "valid_utterances": 0.2})
    folds = make_folds(m, {"kind": "speaker_groups", "k": 3, "valid_utterances": 0.2,
                           "allow_speaker_overlap": True, "seed": 0})
    for fold in folds:
        assert not fold.speaker_independent and "validation utterances" in fold.note
        assert len(fold.valid) > 0 and not set(fold.valid) & set(fold.train)
        assert not set(_speakers(m, fold.valid)) & set(_speakers(m, fold.test))
        # stratified by class: every class of the training part keeps most of its rows
        emotion = m["emotion"].to_numpy()
        for label in set(emotion[fold.valid]):
            assert (emotion[fold.train] == label).sum() > (emotion[fold.valid] == label).sum()


def _ravdess_folds(spec_extra: dict, m, **kw):
    return make_folds(m, {"kind": "emobox", "valid_speakers": 2, "seed": 1, **spec_extra}, **kw)


def test_emobox_folds_ship_with_serlib(data_root, monkeypatch, tmp_path):
    # no splits root anywhere: the packaged copy serves, and gives EmoBox's six RAVDESS folds
    monkeypatch.delenv("SERLIB_SPLITS", raising=False)
    monkeypatch.setenv("SERLIB_DATA", str(tmp_path))  # a data root without splits/
    m = load_corpus("ravdess", data_root=data_root)
    assert split_file_path("emobox/ravdess.csv") == PACKAGED_SPLITS / "emobox" / "ravdess.csv"
    shipped = _ravdess_folds({"file": "emobox/ravdess.csv"}, m)
    assert len(shipped) == 6 and all(f.speaker_independent and len(f.test) == 240 for f in shipped)
    # a user's splits root wins over the shipped copy, and must hold the file when it is named
    (tmp_path / "splits" / "emobox").mkdir(parents=True)
    assert split_file_path("emobox/ravdess.csv") == PACKAGED_SPLITS / "emobox" / "ravdess.csv"  # not there: shipped
    mine = tmp_path / "splits" / "emobox" / "ravdess.csv"
    mine.write_text("key,emo,test_fold\n", encoding="utf-8")
    assert split_file_path("emobox/ravdess.csv") == mine.resolve()
    monkeypatch.setenv("SERLIB_SPLITS", str(tmp_path / "elsewhere"))
    with pytest.raises(FileNotFoundError, match="elsewhere"):
        split_file_path("emobox/ravdess.csv")
    assert (PACKAGED_SPLITS / "emobox" / "ATTRIBUTION.md").read_text().count("MIT") >= 1


def _write_emobox_folder(root, table: pd.DataFrame, corpus: str = "ravdess"):
    """EmoBox's data/<corpus>/fold_k/<corpus>_{test,train}_fold_k.jsonl, written from a key/emo/test_fold table."""
    folder = root / "emobox_data" / corpus
    for k in sorted({v for v in table["test_fold"] if v}, key=int):
        (folder / f"fold_{k}").mkdir(parents=True)
        for part, rows in (("test", table[table.test_fold == k]), ("train", table[table.test_fold != k])):
            lines = [json.dumps({"key": r.key, "dataset": corpus, "emo": r.emo, "channel": 1}) for r in rows.itertuples()]
            (folder / f"fold_{k}" / f"{corpus}_{part}_fold_{k}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_emobox_jsonl_folders_give_the_folds_of_the_csv(data_root, tmp_path):
    m = load_corpus("ravdess", data_root=data_root)
    table = pd.read_csv(PACKAGED_SPLITS / "emobox" / "ravdess.csv", dtype=str, keep_default_na=False)
    _write_emobox_folder(tmp_path, table)
    from_jsonl = _ravdess_folds({"folder": "emobox_data/ravdess"}, m, splits_root=tmp_path)
    from_csv = _ravdess_folds({"file": "emobox/ravdess.csv"}, m, splits_root=PACKAGED_SPLITS)
    assert [f.name for f in from_jsonl] == [f.name for f in from_csv]
    for a, b in zip(from_jsonl, from_csv):
        assert all(np.array_equal(getattr(a, p), getattr(b, p)) for p in ("train", "valid", "test"))


def test_emobox_jsonl_errors_name_the_file_and_line(tmp_path):
    table = pd.DataFrame({"key": ["toy-a-000", "toy-b-000"], "emo": ["happy", "sad"], "test_fold": ["1", "2"]})
    folder = _write_emobox_folder(tmp_path, table, "toy")
    test2 = folder / "fold_2" / "toy_test_fold_2.jsonl"
    test2.write_text(test2.read_text() + json.dumps({"key": "toy-a-000", "emo": "happy"}) + "\n")
    with pytest.raises(ValueError, match=r"toy_test_fold_2.jsonl line 2: key toy-a-000 is already a test utterance of fold 1"):
        read_emobox_jsonl(folder)
    test2.write_text("{not json\n")
    with pytest.raises(ValueError, match=r"toy_test_fold_2.jsonl line 1: not an EmoBox record"):
        read_emobox_jsonl(folder)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_emobox_jsonl(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="not both"):
        make_folds(toy({"a": 1}), {"kind": "emobox", "file": "x.csv", "folder": "y"}, splits_root=tmp_path)
