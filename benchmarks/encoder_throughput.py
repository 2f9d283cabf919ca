"""Whisper encoder throughput on real RAVDESS audio: 30 s padding vs real-length encoding.

Same model, same utterances, same batch size, same run; only the encoder's forward pass is timed
(log-mel extraction is timed apart). Run with `make bench` or
`python benchmarks/encoder_throughput.py --model base --utterances 32 --batch 8`.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from serlib.data.audio import load_audio
from serlib.data.corpora import load_corpus
from serlib.models.backbones import load_whisper
from serlib.models.encoding import encode_batch, log_mel


def timed(fn, repeats: int) -> float:
    """Best wall time of `repeats` calls (the least disturbed by other work on the machine)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base")
    parser.add_argument("--utterances", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data-root", default=None, help="default: $SERLIB_DATA or data/")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    manifest = load_corpus("ravdess", data_root=args.data_root)
    rows = manifest.sample(n=min(args.utterances, len(manifest)), random_state=args.seed)
    audios = [load_audio(p) for p in rows["path"]]
    whisper = load_whisper(args.model)
    encoder = whisper.model.model.encoder
    batches = [list(range(i, min(i + args.batch, len(audios)))) for i in range(0, len(audios), args.batch)]

    start = time.perf_counter()
    padded_feats = [whisper.feature_extractor([audios[i] for i in b], sampling_rate=16000,
                                              return_tensors="pt").input_features for b in batches]
    padded_mel_s = time.perf_counter() - start
    start = time.perf_counter()
    real_mels = [log_mel(whisper.feature_extractor, a) for a in audios]
    real_mel_s = time.perf_counter() - start

    with torch.inference_mode():
        padded_s = timed(lambda: [encoder(f, output_hidden_states=True) for f in padded_feats], args.repeats)
        real_s = timed(lambda: [encode_batch(encoder, [real_mels[i] for i in b]) for b in batches], args.repeats)

    n = len(audios)
    seconds = np.mean([len(a) / 16000 for a in audios])
    print(f"Whisper {args.model} ({whisper.source}); {n} RAVDESS utterances, mean {seconds:.2f} s; "
          f"batch {args.batch}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}")
    print(f"{'':24}{'encoder s':>10}{'utt/s':>9}{'log-mel s':>11}")
    print(f"{'30 s padding':24}{padded_s:10.2f}{n / padded_s:9.1f}{padded_mel_s:11.2f}")
    print(f"{'real length':24}{real_s:10.2f}{n / real_s:9.1f}{real_mel_s:11.2f}")
    print(f"speed-up of real-length encoding: {padded_s / real_s:.1f}x")


if __name__ == "__main__":
    main()
