"""Bad input through the generic CSV path: one defect at a time, under `audio_policy` fail and skip.

Each case asserts the exact behaviour: under `fail` an AudioError with its reason and the file named,
under `skip` the file listed with that reason and the rest of the corpus exactly the clean one (so
every number computed downstream is the clean corpus' number). Elsewhere: profile mistakes in
study/test_params.py, garbled cache entries in encoders/test_cache.py, the user's files in a
reports folder in study/test_runner.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serlib.data.audio import AudioError
from serlib.data.manifest import UnknownLabelError
from serlib.data.prepare import prepare_corpus
from tests.fixtures import tone, write_audio

EMOTIONS = ("angry", "sad", "neutral", "happy")


def _clean_corpus(root):
    """12 clips of 3 speakers in <root>/bad/, listed in bad/labels.csv; returns the CSV's lines."""
    lines = ["path,emotion,speaker"]
    for s, spk in enumerate("abc"):
        for i, emotion in enumerate(EMOTIONS):
            write_audio(root / "bad" / spk / f"{i}.wav", sr=16000, seconds=0.6, freq=200 + 40 * i + 7 * s)
            lines.append(f"{spk}/{i}.wav,{emotion},{spk}")
    return lines


def _params(root, policy="skip", **entry):
    return {"data_root": str(root), "seed": 0, "audio_policy": policy,
            "corpora": {"bad": {"loader": "csv", "path": "bad/labels.csv", **entry,
                                "protocols": {"speakers": {"kind": "speaker"}}}}}


def _write_csv(root, lines, encoding="utf-8"):
    (root / "bad" / "labels.csv").write_bytes(("\n".join(lines) + "\n").encode(encoding))


def _truncated_flac(path):
    write_audio(path.with_suffix(".full.flac"), sr=16000, seconds=1.0, noise=True)
    path.write_bytes(path.with_suffix(".full.flac").read_bytes()[:200])


DEFECTS = {  # name -> (writes the defective file, the reason, words the detail must hold)
    "missing": (lambda p: None, "missing", "no such file"),
    "zero-byte": (lambda p: p.write_bytes(b""), "unreadable", "not an audio file"),
    "truncated FLAC": (_truncated_flac, "unreadable", "truncated or corrupt FLAC"),
    "not audio": (lambda p: p.write_text("this is a text file, not audio\n"), "unreadable", "not an audio file"),
    "silent": (lambda p: write_audio(p, np.zeros((16000, 1), np.float32)), "silent", "peak"),
    "too short": (lambda p: write_audio(p, seconds=0.05), "empty", "< 0.1 s"),
    "90 s clip": (lambda p: write_audio(p, seconds=90.0, noise=True), "too_long", "90.0 s > 30 s"),
}


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_a_bad_file_is_named_under_fail_and_listed_under_skip(tmp_path, defect):
    lines = _clean_corpus(tmp_path)
    _write_csv(tmp_path, lines)
    clean = prepare_corpus("bad", _params(tmp_path))
    make, reason, words = DEFECTS[defect]
    name = "extra.flac" if defect == "truncated FLAC" else "extra.wav"
    make(tmp_path / "bad" / name)
    _write_csv(tmp_path, lines + [f"{name},angry,a"])

    with pytest.raises(AudioError, match=words) as err:
        prepare_corpus("bad", _params(tmp_path, policy="fail"))
    assert err.value.reason == reason and err.value.path.endswith(name) and name in str(err.value)

    corpus = prepare_corpus("bad", _params(tmp_path))
    assert corpus.skipped[["utt_id", "corpus", "reason"]].values.tolist() == [["extra", "bad", reason]]
    pd.testing.assert_frame_equal(corpus.manifest, clean.manifest)  # the clean corpus, exactly
    assert corpus.classes == clean.classes


@pytest.mark.parametrize("sr, channels", [(44100, 2), (8000, 1)])
def test_other_rates_and_stereo_are_used(tmp_path, sr, channels):
    lines = _clean_corpus(tmp_path)
    write_audio(tmp_path / "bad" / "other.wav", tone(seconds=0.6, sr=sr, channels=channels), sr=sr)
    _write_csv(tmp_path, lines + ["other.wav,sad,a"])
    corpus = prepare_corpus("bad", _params(tmp_path, policy="fail"))
    assert "other" in corpus.manifest["utt_id"].tolist() and corpus.skipped.empty


def test_the_corpus_is_called_by_its_profile_name(tmp_path):
    _write_csv(tmp_path, _clean_corpus(tmp_path))
    corpus = prepare_corpus("bad", _params(tmp_path))
    assert corpus.name == "bad" and set(corpus.manifest["corpus"]) == {"bad"}  # not the CSV's stem


def test_a_latin1_csv_names_the_file_and_the_encoding_to_give(tmp_path):
    lines = _clean_corpus(tmp_path)
    lines[1] = lines[1].replace("a/0.wav", "a/0é.wav")
    (tmp_path / "bad" / "a" / "0.wav").rename(tmp_path / "bad" / "a" / "0é.wav")
    _write_csv(tmp_path, lines, encoding="latin-1")
    with pytest.raises(ValueError, match=r"labels.csv: not valid utf-8 \(byte 0xe9.*`encoding: latin-1`"):
        prepare_corpus("bad", _params(tmp_path))
    corpus = prepare_corpus("bad", _params(tmp_path, encoding="latin-1"))
    assert "a-0é" in corpus.manifest["utt_id"].tolist()


def test_an_empty_csv_names_the_file(tmp_path):
    _clean_corpus(tmp_path)
    (tmp_path / "bad" / "labels.csv").write_bytes(b"")
    with pytest.raises(ValueError, match="labels.csv: the file is empty; expected a header line"):
        prepare_corpus("bad", _params(tmp_path))
    _write_csv(tmp_path, ["path,emotion,speaker"])
    with pytest.raises(ValueError, match="labels.csv: no rows"):
        prepare_corpus("bad", _params(tmp_path))


def test_a_repeated_line_names_the_csv_and_both_line_numbers(tmp_path):
    lines = _clean_corpus(tmp_path)
    _write_csv(tmp_path, lines[:5] + [""] + lines[5:] + [lines[3]])  # a blank line 6 does not shift the count
    with pytest.raises(ValueError, match=r"labels.csv: lines \[4, 15\] give the same audio file .*a/2.wav"):
        prepare_corpus("bad", _params(tmp_path))


def test_unknown_labels_and_escaping_paths_name_the_csv(tmp_path):
    lines = _clean_corpus(tmp_path)
    _write_csv(tmp_path, lines + ["a/0.wav,furious,a"])
    with pytest.raises(UnknownLabelError, match="labels.csv: emotions \\['furious'\\]"):
        prepare_corpus("bad", _params(tmp_path))
    _write_csv(tmp_path, lines + ["../../etc/passwd,angry,a"])
    with pytest.raises(ValueError, match="labels.csv, line 14: path '../../etc/passwd' leaves its root"):
        prepare_corpus("bad", _params(tmp_path))
