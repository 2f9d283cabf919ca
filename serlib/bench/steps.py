"""Training-step benchmark: every method the study trains, on real RAVDESS batches, beside this machine's floor.

Each method gets a fresh model and real cached RAVDESS features, shaped as its notebook shapes them
(the profile's batch size, frame rate and thread count), and trains through the study's own code
(`training.trainer.fit`; Emo-DNA's own loop): a few warm-up steps, then timed steps. Precisions: fp32,
and bf16 where this machine computes it natively (`serlib.precision`).

The floor beside each is what pure matrix arithmetic would take here: the step's FLOPs (forward and
backward, counted by `torch.utils.flop_counter`: matrix products, convolutions, attention) divided
by this machine's measured GEMM rate at that precision and thread count. measured/floor is how far
the step is from it: elementwise work, the optimizer update, data movement and Python make up the rest.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from ..data.prepare import PreparedCorpus, prepare_corpus
from ..encoders.cache import FeatureCache
from ..heads.classifier import PooledClassifier
from ..methods.emo_dna.adaptation import UDAConfig, UDARun
from ..methods.phoneme_mtl.data import PhonemeDataset, build_targets, keep_feasible, standardised_frames
from ..methods.phoneme_mtl.loss import mtl_loss
from ..methods.phoneme_mtl.model import PhonemeMTL
from ..methods.whisper_er.data import ERDataset, corpus_inputs, er_collate, rows_of
from ..methods.whisper_er.loss import er_loss
from ..methods.whisper_er.model import ERForward
from ..methods.whisper_er.run import TASK_SETS, Recipe, System, build
from ..study.params import notebook_params
from ..training.classify import FeatureDataset, cross_entropy_loss, feature_stats
from ..training.precision import choose_precision, matmul_gflops, probe_cpu_bf16
from ..training.trainer import TrainConfig, fit


@dataclass
class StepCase:
    """One method's training step: how to time it and how to count its FLOPs."""

    method: str
    notebook: str
    batch_size: int  # utterances per step (Emo-DNA: per corpus, so twice this per step)
    threads: int
    seconds_per_step: Callable[[str, int, int], float]  # (precision, warm-up steps, timed steps)
    flops: Callable[[], float]  # of one step, forward and backward
    fp32_only: bool = False  # a loop without autocast (Emo-DNA's)


def _threads(section: dict) -> int:
    return int(section.get("torch_threads") or torch.get_num_threads())


def _fit_case(method, notebook, make_model, dataset, loss_fn, collate, train: dict, threads: int) -> StepCase:
    """A case trained by `fit` with the profile's `train` options (no validation: steps only)."""
    batch_size = int(train["batch_size"])
    options = {k: v for k, v in train.items() if k in {f.name for f in dataclasses.fields(TrainConfig)} - {"precision"}}

    def seconds_per_step(precision: str, warmup: int, steps: int) -> float:
        config = TrainConfig(**{**options, "max_steps": warmup + steps, "eval_every": warmup, "patience": None,
                                "top_k": 1, "stop_at": None, "grad_accum": 1},
                             precision=precision, device="cpu", progress=False, seed=0)
        history = fit(make_model(), dataset, None, loss_fn, None, config, collate_fn=collate).history
        first, last = history.iloc[0], history.iloc[-1]
        return (last["elapsed_s"] - first["elapsed_s"]) / (last["step"] - first["step"])

    def flops() -> float:
        model = make_model().train()
        batch = next(iter(DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)))
        with FlopCounterMode(display=False) as counter:
            loss_fn(model, batch).backward()
        return float(counter.get_total_flops())

    return StepCase(method, notebook, batch_size, threads, seconds_per_step, flops)


def _sample(corpus: PreparedCorpus, n: int, seed: int) -> PreparedCorpus:
    rows = corpus.manifest.sample(n=min(n, len(corpus.manifest)), random_state=seed).reset_index(drop=True)
    return dataclasses.replace(corpus, manifest=rows)


def ravdess_selection(params: dict) -> str:
    """The RAVDESS entry to time a notebook on: the first it runs, else the catalogue's first (the
    default 03 runs EmoDB only; RAVDESS batches keep the methods' timings comparable)."""
    names = [c for pair in params["pairs"] for c in pair] if "pairs" in params else list(params["protocols"])
    is_ravdess = lambda n: params["corpora"][n].get("loader", n) == "ravdess"  # noqa: E731
    name = next((n for n in names if is_ravdess(n)), None) or next((n for n in params["corpora"] if is_ravdess(n)), None)
    if name is None:
        raise ValueError("the benchmark times RAVDESS batches, but the profile's catalogue has no RAVDESS entry")
    return name


def _ravdess(params: dict, utterances: int, seed: int) -> PreparedCorpus:
    """A sample of the RAVDESS selection `ravdess_selection` names."""
    return _sample(prepare_corpus(ravdess_selection(params), params), utterances, seed)


def step_cases(profile: str = "default", utterances: int = 128, seed: int = 0) -> list[StepCase]:
    """The methods of the study, on `utterances` RAVDESS rows, as `profile` trains them."""
    params = {n: notebook_params(profile, n) for n in ("01_baselines", "02_whisper_er", "03_serial_mtl",
                                                         "04_phoneme_mtl", "05_cross_corpus")}
    samples = {n: _ravdess(p, utterances, seed) for n, p in params.items()}
    cache = FeatureCache(params["01_baselines"]["whisper"], params["01_baselines"].get("cache_dir"))
    cache.ensure(pd.concat([c.manifest for c in samples.values()]).drop_duplicates("utt_id"), progress=False)
    return [*_head_cases(cache, samples["01_baselines"], params["01_baselines"]),
            _er_case(cache, samples["02_whisper_er"], params["02_whisper_er"], "STL-SER", "02", seed),
            _er_case(cache, samples["03_serial_mtl"], params["03_serial_mtl"], "A+G+S", "03", seed),
            _phoneme_case(cache, samples["04_phoneme_mtl"], params["04_phoneme_mtl"]),
            _emo_dna_case(cache, samples["05_cross_corpus"], params["05_cross_corpus"], seed)]


def _pooled(cache: FeatureCache, corpus: PreparedCorpus) -> np.ndarray:
    """The encoder output's per-utterance means (the baselines' and Emo-DNA's input)."""
    return cache.pooled(corpus.manifest, layers=[cache.n_layers(corpus.manifest) - 1])[:, 0]


def _head_cases(cache: FeatureCache, corpus: PreparedCorpus, p01: dict) -> list[StepCase]:
    """01: the conventional head on pooled states, and the attention poolings on grouped frames."""
    y, n_classes, pooled = np.asarray(corpus.labels()), len(corpus.classes), _pooled(cache, corpus)
    data = FeatureDataset(pooled, y, feature_stats(pooled, range(len(y))))
    cases = [_fit_case("conventional head (mean + linear)", "01", lambda: PooledClassifier(pooled.shape[1], n_classes),
                       data, cross_entropy_loss, data.collate, p01["train"], torch.get_num_threads())]
    pool = p01["pooling"]
    last = cache.n_layers(corpus.manifest) - 1
    frames = [f[0] for f in cache.frames(corpus.manifest, layers=[last], group=pool["frame_group"])]
    data = FeatureDataset(frames, y, feature_stats(frames, range(len(y))))
    for method in ("attentive", "qkv"):
        cases.append(_fit_case(f"{method} pooling head", "01",
                               lambda m=method: PooledClassifier(pooled.shape[1], n_classes, m, **pool["head"]),
                               data, cross_entropy_loss, data.collate, pool["train"], _threads(pool)))
    return cases


def _er_case(cache: FeatureCache, corpus: PreparedCorpus, params: dict, system_name: str, notebook: str,
             seed: int) -> StepCase:
    """02 / 03: a Whisper-ER system as the profile trains it (CPU: precomputed cross-attention K/V)."""
    system, recipe = System(system_name, TASK_SETS[system_name]), Recipe(params["mode"], params["decoder"])
    language = corpus.manifest["language"].iloc[0]
    whisper, vocab = build(cache.whisper, corpus.classes, language, system, seed, recipe)
    _, inputs = corpus_inputs(cache, corpus.manifest, recipe.inputs, choose_precision(params["precision"], "cpu").name)
    data = ERDataset(inputs(whisper.model, system.decoder), rows_of(corpus.manifest), vocab, whisper.tokenizer,
                     system.tasks)
    weights = {k: v.clone() for k, v in whisper.model.state_dict().items()}

    def fresh():  # the module the trainer gets (run.train)
        whisper.model.load_state_dict(weights)
        return ERForward(whisper.model)

    label = "Whisper-ER STL" if system_name == "STL-SER" else f"SerialMTL {system_name}"
    return _fit_case(label, notebook, fresh, data, er_loss(len(system.tasks), system.serial),
                     er_collate(vocab, system.tasks, inputs=recipe.inputs), params["train"], torch.get_num_threads())


def _phoneme_case(cache: FeatureCache, corpus: PreparedCorpus, p04: dict) -> StepCase:
    """04: Phoneme-MTL on the fused frames of every hidden state, shared block, CTC with lambda 0.1."""
    targets = build_targets(corpus)
    states = cache.frames(corpus.manifest, group=p04["frame_group"])
    corpus, states, targets, _ = keep_feasible(corpus, states, targets, [s.shape[-2] for s in states])
    states = standardised_frames(states, range(len(states)))
    data = PhonemeDataset(states, np.asarray(corpus.labels()), targets.labels, packed=True)
    n_states, dim = states[0].shape[0], states[0].shape[-1]
    return _fit_case("Phoneme-MTL (CTC, lambda 0.1)", "04",
                     lambda: PhonemeMTL(dim, n_states, len(corpus.classes), len(targets.names), p04["head"]["dropout"],
                                        shared_layer=p04.get("shared_layer")),
                     data, mtl_loss(0.1), data.collate, p04["train"], _threads(p04))


def _emo_dna_case(cache: FeatureCache, corpus: PreparedCorpus, p05: dict, seed: int) -> StepCase:
    """05: one Emo-DNA step (a source and a target batch); the target is the other half of the
    sample (the step's cost does not depend on which corpus the rows come from)."""
    pooled, y = _pooled(cache, corpus), np.asarray(corpus.labels())
    half = len(pooled) // 2

    def run(steps: int) -> UDARun:
        config = UDAConfig.for_method("emo_dna", **{**p05["train"], "max_steps": steps}, seed=seed, device="cpu")
        return UDARun(pooled[:half], y[:half], pooled[half:], len(corpus.classes), config, "cpu")

    def seconds_per_step(precision: str, warmup: int, steps: int) -> float:
        if precision != "no":
            raise ValueError("Emo-DNA's loop trains in fp32 only")
        r = run(warmup + steps)
        for i in range(1, warmup + 1):
            r.step(i)
        start = time.perf_counter()
        for i in range(warmup + 1, warmup + steps + 1):
            r.step(i)
        return (time.perf_counter() - start) / steps

    def flops() -> float:
        r = run(10)
        with FlopCounterMode(display=False) as counter:
            r.step(5)
        return float(counter.get_total_flops())

    return StepCase("Emo-DNA step", "05", int(p05["train"]["batch_size"]), 1, seconds_per_step, flops,
                    fp32_only=True)


def gemm_gflops(precision: str, threads: int) -> float:
    """This machine's matrix-product rate at `precision` with `threads` threads (1024^3, best of several)."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    with thread_count(threads):
        return matmul_gflops(dtype, 1024, 1024, 1024, budget_s=0.5)


class thread_count:
    """Run a block with torch's intra-op thread count set to `n` (restored afterwards)."""

    def __init__(self, n: int):
        self.n, self.before = n, torch.get_num_threads()

    def __enter__(self):
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)


def run_step_bench(cases: list[StepCase], target_s: float = 3.0, warmup: int = 3,
                   progress: Callable[[str], None] = print) -> pd.DataFrame:
    """Time every case at fp32 and (where native) bf16; one row per (case, precision)."""
    precisions = ["no"] + (["bf16"] if probe_cpu_bf16().native else [])
    rates: dict[tuple[str, int], float] = {}
    rows = []
    for case in cases:
        with thread_count(case.threads):
            flops = case.flops()
            for precision in precisions:
                if case.fp32_only and precision != "no":
                    continue
                first = case.seconds_per_step(precision, warmup, 2)  # a probe: how many steps fill target_s
                steps = int(np.clip(target_s / max(first, 1e-4), 4, 400))
                seconds = case.seconds_per_step(precision, warmup, steps)
                key = (precision, case.threads)
                if key not in rates:
                    rates[key] = gemm_gflops(precision, case.threads)
                floor = flops / (rates[key] * 1e9)
                utterances = case.batch_size * (2 if case.notebook == "05" else 1)  # source + target batch
                rows.append({"what": case.method, "notebook": case.notebook, "batch": case.batch_size,
                             "threads": case.threads, "precision": "fp32" if precision == "no" else precision,
                             "steps/s": 1 / seconds, "utt/s": utterances / seconds, "GFLOP/step": flops / 1e9,
                             "GEMM GFLOPS": rates[key], "floor ms": 1e3 * floor, "measured ms": 1e3 * seconds,
                             "measured/floor": seconds / floor})
                progress(f"{case.method}, {rows[-1]['precision']}: {1e3 * seconds:.1f} ms/step "
                         f"({rows[-1]['measured/floor']:.1f}x the floor, {steps} steps timed)")
    return pd.DataFrame(rows)
