"""Published numbers shown beside ours, always as labelled reference rows (never mixed into results).

Values are percentages as printed in the papers; see ../shared/PAPERS.md for the sources.
"""

from __future__ import annotations

import pandas as pd

EMOBOX = "EmoBox (Ma et al., Interspeech 2024), frozen encoder, EmoBox folds"

# EmoBox intra-corpus results: corpus -> model -> (UA, WA). EmoBox also gives macro-F1 for every
# cell, but only the cells listed in EMOBOX_F1 are on hand here; the others are left empty, never guessed.
EMOBOX_INTRA = {
    "ravdess": {
        "wav2vec 2.0 base": (54.33, 55.40), "HuBERT base": (65.43, 66.21), "WavLM base": (61.56, 62.10),
        "HuBERT large": (70.00, 70.29), "WavLM large": (72.00, 72.22), "Whisper large-v3": (75.32, 75.87),
    },
    "urdu": {
        "wav2vec 2.0 base": (87.50, 87.50), "HuBERT base": (88.41, 88.41), "WavLM base": (82.82, 82.82),
        "HuBERT large": (81.75, 81.75), "WavLM large": (86.61, 86.61), "Whisper large-v3": (82.52, 82.52),
    },
    "emodb": {
        "wav2vec 2.0 base": (82.06, 83.14), "HuBERT base": (87.73, 87.73), "WavLM base": (87.03, 87.12),
        "HuBERT large": (89.81, 90.26), "WavLM large": (92.58, 92.67), "Whisper large-v3": (91.26, 92.43),
    },
    "iemocap": {
        "wav2vec 2.0 base": (58.27, 57.73), "HuBERT base": (63.87, 63.10), "WavLM base": (62.92, 63.94),
        "HuBERT large": (67.42, 66.69), "WavLM large": (69.47, 69.07), "Whisper large-v3": (73.54, 72.86),
    },
    "shemo": {
        "wav2vec 2.0 base": (56.34, 78.96), "HuBERT base": (58.31, 81.17), "WavLM base": (60.73, 78.76),
        "HuBERT large": (64.29, 83.35), "WavLM large": (71.72, 87.13), "Whisper large-v3": (80.23, 89.55),
    },
}


# EmoBox macro-F1 (%) on hand: corpus -> model -> F1 (RAVDESS, wav2vec 2.0 base: UA 54.33 / WA 55.40 / F1 53.99).
EMOBOX_F1 = {"ravdess": {"wav2vec 2.0 base": 53.99}}


def emobox_reference(corpus: str) -> pd.DataFrame:
    """EmoBox's rows for one corpus (empty when EmoBox has none), labelled as references; macro-F1
    where it is on hand (EMOBOX_F1), else empty."""
    f1 = EMOBOX_F1.get(corpus, {})
    rows = [
        {"source": f"reference: {EMOBOX}", "model": model, "UA %": ua, "WA %": wa, "macro-F1 %": f1.get(model)}
        for model, (ua, wa) in EMOBOX_INTRA.get(corpus, {}).items()
    ]
    return pd.DataFrame(rows, columns=["source", "model", "UA %", "WA %", "macro-F1 %"])


SHENDABADI = "Shendabadi et al. (arXiv 2602.06000), frozen Whisper + attentive pooling"

# What the paper's text on hand (its abstract, papers/002_*.txt; restated in PAPERS.md section B) says
# about its IEMOCAP (English) and ShEMO (Persian) experiments. Its tables are not on hand, so the only
# figure is the ShEMO gain; the other findings are kept as words, never turned into numbers.
SHENDABADI_FINDINGS = [
    ("shemo", "Whisper Small + multi-head QKV pooling", "UA gain over the previous state of the art (points)", 2.47),
    ("shemo", "Whisper Tiny and Small, per encoder layer", "intermediate layers often beat the last layer", None),
    ("shemo", "Whisper Small + QKV pooling vs HuBERT X-Large", "competitive at a fraction of the size", None),
    ("iemocap", "Whisper Tiny and Small + attentive / QKV pooling", "evaluated; no figure in the text on hand", None),
]


def shendabadi_reference() -> pd.DataFrame:
    """The paper's IEMOCAP and ShEMO findings as labelled reference rows (value empty where it gives none)."""
    rows = [{"source": f"reference: {SHENDABADI}", "corpus": corpus, "model": model, "finding": finding,
             "value": value} for corpus, model, finding, value in SHENDABADI_FINDINGS]
    return pd.DataFrame(rows, columns=["source", "corpus", "model", "finding", "value"])


# EmoBox cross-corpus results (Whisper large-v3, train corpus -> test corpus): accuracy in %.
EMOBOX_CROSS = {
    ("iemocap", "ravdess"): 48.12, ("ravdess", "iemocap"): 38.24,
    ("ravdess", "savee"): 49.63, ("savee", "ravdess"): 66.91,
}


def emobox_cross_reference() -> pd.DataFrame:
    """EmoBox's cross-corpus rows, labelled as references (other corpora pairs and a 20x larger encoder)."""
    rows = [
        {"source": f"reference: {EMOBOX}, cross-corpus", "model": "Whisper large-v3",
         "pair": f"{train} -> {test}", "accuracy %": acc}
        for (train, test), acc in EMOBOX_CROSS.items()
    ]
    return pd.DataFrame(rows, columns=["source", "model", "pair", "accuracy %"])


FUKUDA = "Fukuda et al. (NTT), IEMOCAP 4 classes, leave-one-session-out, full fine-tuning"

# Table 2 (Whisper base and large-v3) and Table 5 (large-v3, randomly initialised decoder): (WA, UA).
FUKUDA_SER = [
    ("base", "conventional", 67.7, 68.5), ("base", "Whisper-ER STL", 71.9, 72.7),
    ("large-v3", "conventional", 74.2, 74.7), ("large-v3", "Whisper-ER STL", 77.3, 78.1),
    ("large-v3", "Whisper-ER STL, random decoder", 74.5, 75.3),
]


def fukuda_reference() -> pd.DataFrame:
    """The Whisper-ER paper's SER rows, labelled as references (IEMOCAP, not our corpora)."""
    return pd.DataFrame([
        {"source": f"reference: {FUKUDA}, Whisper {size}", "corpus": "iemocap", "method": method,
         "UA %": ua, "WA %": wa}
        for size, method, wa, ua in FUKUDA_SER
    ])


# Table 2 (SerialMTL rows, base and large-v3: WA, UA) and Table 4 (large-v3: every task's metric).
FUKUDA_MTL = [
    # size, method, SER WA, SER UA, GR acc, ASR WER
    ("base", "conventional", 67.7, 68.5, None, None), ("base", "STL-SER", 71.9, 72.7, None, None),
    ("base", "A+S", 72.4, 72.9, None, None), ("base", "G+S", 73.2, 74.0, None, None),
    ("base", "A+G+S", 74.1, 74.8, None, None),
    ("large-v3", "zero-shot Whisper", None, None, None, 22.2),
    ("large-v3", "conventional", 74.2, 74.7, None, None), ("large-v3", "STL-SER", 77.3, 78.1, None, None),
    ("large-v3", "STL-ASR", None, None, None, 16.7), ("large-v3", "STL-GR", None, None, 99.6, None),
    ("large-v3", "A+S", 78.2, 78.9, None, 17.3), ("large-v3", "G+S", 77.9, 78.9, 99.4, None),
    ("large-v3", "A+G+S", 78.7, 79.4, 99.4, 17.8),
]


def fukuda_mtl_reference() -> pd.DataFrame:
    """The SerialMTL paper's Tables 2 and 4 as labelled reference rows (IEMOCAP, not our corpora)."""
    return pd.DataFrame([
        {"source": f"reference: {FUKUDA}", "model": f"whisper-{size}", "corpus": "iemocap", "method": method,
         "SER WA %": wa, "SER UA %": ua, "GR acc %": gr, "ASR WER %": wer}
        for size, method, wa, ua, gr, wer in FUKUDA_MTL
    ])


LI = "Li et al., IEMOCAP 4 classes, leave-one-speaker-out (10 folds), wav2vec 2.0 base fine-tuned"

# Table 2 (the paper's own systems) and Table 3 (the lambda sweep): (WA, UA); Figs. 5-6 in words.
LI_TABLE2 = [("single-task (wav2vec 2.0 fine-tuned)", 0.0, 72.4, 73.9), ("phoneme-MTL", 0.1, 76.0, 76.9)]
LI_TABLE3 = [(0.0, 72.4, 73.9), (0.001, 74.5, 75.7), (0.01, 75.7, 76.7), (0.1, 76.0, 76.9), (1.0, 75.2, 76.2)]
LI_RECALL_CHANGE = [("happy", 8.5), ("neutral", 5.0)]  # recall points gained from lambda 0 to 0.1


def li_reference() -> pd.DataFrame:
    """The Phoneme-MTL paper's Table 2 and Table 3 rows and its per-class recall changes, labelled
    as references (IEMOCAP and a fine-tuned wav2vec 2.0, not our corpus or encoder)."""
    rows = [{"source": f"reference: {LI}", "table": "Table 2", "method": method, "lambda": lam, "WA %": wa,
             "UA %": ua, "note": ""} for method, lam, wa, ua in LI_TABLE2]
    rows += [{"source": f"reference: {LI}", "table": "Table 3", "method": "phoneme-MTL", "lambda": lam, "WA %": wa,
              "UA %": ua, "note": ""} for lam, wa, ua in LI_TABLE3]
    rows += [{"source": f"reference: {LI}", "table": "Figs. 5-6", "method": "phoneme-MTL vs single-task",
              "lambda": 0.1, "WA %": None, "UA %": None, "note": f"{emotion} recall {change:+.1f} points"}
             for emotion, change in LI_RECALL_CHANGE]
    return pd.DataFrame(rows, columns=["source", "table", "method", "lambda", "WA %", "UA %", "note"])
