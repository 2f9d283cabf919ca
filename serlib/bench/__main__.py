"""`python -m serlib.bench`: the encoder and training-step benchmarks, printed as one table."""

from __future__ import annotations

import argparse
import platform
import sys
import time

import pandas as pd
import torch

from ..training.allocator import keep_freed_memory
from ..training.precision import choose_precision, probe_cpu_bf16
from .encoder import run_encoder_bench
from .steps import run_step_bench, step_cases

COLUMNS = ["what", "notebook", "batch", "threads", "precision", "steps/s", "utt/s", "GFLOP/step", "floor ms",
           "measured ms", "measured/floor", "note"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serlib.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default", help="profile whose batch sizes and threads are timed")
    parser.add_argument("--model", default="base", help="Whisper size of the encoder benchmark")
    parser.add_argument("--utterances", type=int, default=32, help="RAVDESS utterances for the encoder benchmark")
    parser.add_argument("--batch", type=int, default=8, help="encoder batch size")
    parser.add_argument("--step-utterances", type=int, default=128, help="RAVDESS utterances the steps draw from")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per step measurement")
    parser.add_argument("--csv", default=None, help="also write the table to this CSV file")
    parser.add_argument("--skip-encoder", action="store_true")
    parser.add_argument("--skip-steps", action="store_true")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    keep_freed_memory()
    probe = probe_cpu_bf16()
    print(f"{platform.machine()}, {probe.cpu}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{probe.describe()}; precision auto -> {choose_precision('auto', 'cpu')}", flush=True)
    rows = []
    if not args.skip_encoder:
        enc = run_encoder_bench(args.model, args.utterances, args.batch)
        print(f"encoder: Whisper {enc.model} ({enc.source}); {enc.utterances} utterances, mean {enc.mean_s:.2f} s; "
              f"log-mel {enc.padded_mel_s:.2f} s padded, {enc.real_mel_s:.2f} s real length", flush=True)
        rows += enc.rows()
    if not args.skip_steps:
        table = run_step_bench(step_cases(args.profile, args.step_utterances), target_s=args.seconds,
                               progress=lambda line: print("  " + line, flush=True))
        rows += table.to_dict("records")
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    with pd.option_context("display.max_columns", None, "display.width", 200, "display.max_colwidth", 40):
        print(table.to_string(index=False, na_rep="", float_format=lambda x: f"{x:.3g}" if abs(x) < 1e3 else f"{x:.0f}"))
    if not args.skip_encoder:
        print(f"real-length encoding: {enc.speedup:.1f}x the 30-s-padded encoder")
    if args.csv:
        table.to_csv(args.csv, index=False)
    print(f"bench wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
