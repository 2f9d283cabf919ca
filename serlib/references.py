"""Published numbers shown beside ours, always as labelled reference rows (never mixed into results).

Values are percentages as printed in the papers; see ../shared/PAPERS.md for the sources.
"""

from __future__ import annotations

import pandas as pd

EMOBOX = "EmoBox (Ma et al., Interspeech 2024), frozen encoder, EmoBox folds"

# EmoBox intra-corpus results: corpus -> model -> (UA, WA).
EMOBOX_INTRA = {
    "ravdess": {
        "wav2vec 2.0 base": (54.33, 53.99), "HuBERT base": (65.43, 66.21), "WavLM base": (61.56, 62.10),
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


def emobox_reference(corpus: str) -> pd.DataFrame:
    """EmoBox's rows for one corpus (empty when EmoBox has none), labelled as references."""
    rows = [
        {"source": f"reference: {EMOBOX}", "model": model, "UA %": ua, "WA %": wa}
        for model, (ua, wa) in EMOBOX_INTRA.get(corpus, {}).items()
    ]
    return pd.DataFrame(rows, columns=["source", "model", "UA %", "WA %"])
