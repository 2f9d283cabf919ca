"""Transcripts -> phoneme classes -> emotion-tagged CTC labels (Li et al., Table 1)."""

from __future__ import annotations

import pytest

from serlib.data import phonemes
from serlib.data.phonemes import (
    arpabet_class,
    ctc_min_frames,
    espeak_available,
    ipa_classes,
    label_names,
    tag_with_emotion,
    text_classes,
    words,
)

# One test per class: ARPAbet symbols (CMUdict) and the IPA symbols espeak-ng writes for them.
CLASS_EXAMPLES = {
    "S": (["B", "P", "T", "D", "K", "G", "CH", "JH"], ["p", "b", "t", "d", "k", "ɡ", "tʃ", "dʒ", "ʔ"]),
    "F": (["F", "V", "TH", "DH", "S", "Z", "SH", "ZH", "HH"], ["f", "v", "θ", "ð", "s", "z", "ʃ", "ʒ", "h", "x"]),
    "N": (["M", "N", "NG"], ["m", "n", "ŋ", "ɲ"]),
    "L": (["L", "R", "Y", "W"], ["l", "ɹ", "j", "w", "r"]),
    "V": (["AH0", "AA0", "AE0", "IY0", "ER0", "AW0"], ["ə", "ɪ", "i", "ɚ", "aɪ", "oʊ", "uː"]),
    "Vs": (["AA1", "AH2", "AE1", "AE2", "IY1", "OY2"], ["ˈa", "ˌə", "ˈɪ", "ˈaɪ", "ˈoʊ", "ˈeː"]),
}


@pytest.mark.parametrize("cls", list(CLASS_EXAMPLES))
def test_arpabet_symbols_map_to_their_class(cls):
    arpabet, _ = CLASS_EXAMPLES[cls]
    assert [arpabet_class(p) for p in arpabet] == [cls] * len(arpabet)


@pytest.mark.parametrize("cls", list(CLASS_EXAMPLES))
def test_ipa_symbols_map_to_their_class(cls):
    _, ipa = CLASS_EXAMPLES[cls]
    assert [ipa_classes([p]) for p in ipa] == [[cls]] * len(ipa)


def test_every_class_has_an_example_and_the_order_is_the_papers():
    assert phonemes.PHONEME_CLASSES == ("S", "F", "N", "L", "V", "Vs")
    assert set(CLASS_EXAMPLES) == set(phonemes.PHONEME_CLASSES)


def test_unknown_symbols_raise_errors_naming_them():
    with pytest.raises(ValueError, match="'QX'"):
        arpabet_class("QX")
    with pytest.raises(ValueError, match="'AA'.*no stress digit"):
        arpabet_class("AA")
    with pytest.raises(ValueError, match="'K1'"):
        arpabet_class("K1")  # consonants carry no stress
    with pytest.raises(ValueError, match="'☃'"):
        ipa_classes(["k", "☃"])


def test_ipa_stress_mark_makes_the_next_vowel_stressed_and_splits_compound_phones():
    # "r-coloured" espeak phone ɑːɹ is a vowel then a liquid (as CMUdict's AA1 R); the stress mark
    # may stand on its own before the vowel's phone; aspiration and nasalisation do not change a class.
    assert ipa_classes(["ˈ", "ɑːɹ", "t", "ə"]) == ["Vs", "L", "S", "V"]
    assert ipa_classes(["ɡʰ", "ˈẽ", "n̩"]) == ["S", "Vs", "N"]
    # the English flap (butter) is an allophone of /t d/; elsewhere ɾ is the language's rhotic
    assert ipa_classes(["ɾ"], "en-us") == ["S"]
    assert ipa_classes(["ɾ"], "es") == ["L"]


def test_known_sentence_gives_the_hand_worked_targets():
    # CMUdict: K IH1 D Z | AA1 R | T AO1 K IH0 NG | B AY1 | DH AH0 | D AO1 R
    (classes,), sources = text_classes(["Kids are talking by the door."], "en")
    expected = "S Vs S F  Vs L  S Vs S V N  S Vs  F V  S Vs L".split()
    assert classes == expected
    assert set(sources.values()) == {"CMUdict"}
    ids = tag_with_emotion(classes, emotion=2, n_emotions=8)  # id = 1 + emotion * 6 + class index
    index = {c: k for k, c in enumerate(phonemes.PHONEME_CLASSES)}
    assert ids == [1 + 2 * 6 + index[c] for c in expected]
    names = label_names(8)
    assert [names[i] for i in ids[:4]] == ["S2", "Vs2", "S2", "F2"]
    assert len(names) == 6 * 8 + 1 and names[0] == "<blank>"


def test_labels_of_different_emotions_never_collide():
    ids = {tuple(tag_with_emotion(list(phonemes.PHONEME_CLASSES), e, 4)) for e in range(4)}
    flat = [i for t in ids for i in t]
    assert len(set(flat)) == 24 and min(flat) == 1 and max(flat) == 24
    with pytest.raises(ValueError, match="emotion index 4"):
        tag_with_emotion(["S"], 4, 4)


def test_words_drop_punctuation_and_keep_inner_apostrophes():
    assert words("Don't, he said -- 'twice'!") == ["don't", "he", "said", "twice"]
    with pytest.raises(ValueError, match="no word"):
        text_classes(["...", "dogs"], "en")


def test_out_of_vocabulary_word_without_g2p_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(phonemes, "espeak_available", lambda: False)
    with pytest.raises(phonemes.G2PUnavailable, match=r"xylophonicz.*apt-get install espeak-ng.*serlib\[g2p\]"):
        text_classes(["the xylophonicz"], "en")
    with pytest.raises(phonemes.G2PUnavailable, match="espeak-ng"):
        text_classes(["میں گھر جا رہا ہوں"], "ur")


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng / phonemizer not installed")
def test_out_of_vocabulary_words_and_other_languages_go_through_espeak():
    (classes,), sources = text_classes(["dogs xylophonicz"], "en")
    assert sources == {"dogs": "CMUdict", "xylophonicz": "espeak-ng (en-us)"}
    assert classes[:4] == ["S", "Vs", "S", "F"] and classes[4] == "F"  # d-o-g-z, then x = /z/
    (urdu,), _ = text_classes(["میں"], "ur")  # espeak: m ˈẽ
    assert urdu == ["N", "Vs"]


def test_ctc_needs_a_blank_between_repeated_labels():
    assert ctc_min_frames([3, 4, 5]) == 3
    assert ctc_min_frames([3, 3, 5, 5, 5]) == 8
    assert ctc_min_frames([]) == 0
