"""Whisper encoder throughput on real RAVDESS audio: 30 s padding vs real-length encoding.

Same model, same utterances, same batch size, same run; only the encoder's forward pass is timed
(log-mel extraction apart). Real-length batches are grouped by length, as the feature cache groups
them; the padded path has nothing to group (every input is 30 s).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..data.audio import load_audio
from ..data.corpora import load_corpus
from ..encoders.backbones import load_whisper
from ..encoders.encoding import encode_batch, length_batches, log_mel


def timed(fn, repeats: int) -> float:
    """Best wall time of `repeats` calls (the least disturbed by other work on the machine)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@dataclass
class EncoderBench:
    model: str
    source: str
    utterances: int
    mean_s: float
    batch: int
    padded_s: float
    real_s: float
    padded_mel_s: float
    real_mel_s: float

    @property
    def speedup(self) -> float:
        return self.padded_s / self.real_s

    def rows(self) -> list[dict]:
        """Rows of the benchmark table (see bench.__main__)."""
        common = {"notebook": "cache", "batch": self.batch, "threads": torch.get_num_threads(), "precision": "fp32"}
        return [{"what": f"encoder {self.model}, 30 s padding", **common, "utt/s": self.utterances / self.padded_s},
                {"what": f"encoder {self.model}, real length", **common, "utt/s": self.utterances / self.real_s,
                 "note": f"{self.speedup:.1f}x the padded encoder"}]


def run_encoder_bench(model: str = "base", utterances: int = 32, batch: int = 8, repeats: int = 2,
                      data_root=None, seed: int = 0) -> EncoderBench:
    torch.manual_seed(seed)
    manifest = load_corpus("ravdess", data_root=data_root)
    rows = manifest.sample(n=min(utterances, len(manifest)), random_state=seed)
    audios = [load_audio(p) for p in rows["path"]]
    whisper = load_whisper(model)
    encoder = whisper.model.model.encoder
    padded_batches = [list(range(i, min(i + batch, len(audios)))) for i in range(0, len(audios), batch)]

    start = time.perf_counter()
    padded_feats = [whisper.feature_extractor([audios[i] for i in b], sampling_rate=16000,
                                              return_tensors="pt").input_features for b in padded_batches]
    padded_mel_s = time.perf_counter() - start
    start = time.perf_counter()
    real_mels = [log_mel(whisper.feature_extractor, a) for a in audios]
    real_mel_s = time.perf_counter() - start
    real_batches = list(length_batches([m.shape[-1] for m in real_mels], max_frames=10**9, max_batch=batch))

    with torch.inference_mode():
        padded_s = timed(lambda: [encoder(f, output_hidden_states=True) for f in padded_feats], repeats)
        real_s = timed(lambda: [encode_batch(encoder, [real_mels[i] for i in b]) for b in real_batches], repeats)
    return EncoderBench(model, whisper.source, len(audios), float(np.mean([len(a) / 16000 for a in audios])), batch,
                        padded_s, real_s, padded_mel_s, real_mel_s)
