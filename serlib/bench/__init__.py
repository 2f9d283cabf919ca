"""Benchmarks of the study's costs on the machine at hand: the encoder paths and every training step.

    python -m serlib.bench            (make bench)

One table: encoder throughput (30-s padding vs real length) and, per method and precision, training
steps/s and utterances/s beside the floor this machine allows (see `steps`).
"""
