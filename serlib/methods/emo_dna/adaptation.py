"""Emo-DNA's training: unsupervised domain adaptation from a labelled source to an unlabelled target.

`fit_uda` trains Emo-DNA or one of its baselines and ablations (`METHODS`) on pooled features of
both corpora. Its own small loop, not `training.trainer.fit`: every step draws one batch from each
corpus, several losses share a ramp over training progress, the learning rate anneals every step,
and there is no validation to stop or choose checkpoints by (see below) - none of which the shared
trainer's loop (one loader, plateau schedule, early stopping, top-k averaging) does.

The target side enters only as features plus a manifest *without* labels: `fit_uda` refuses a
target manifest that still carries emotions (`TargetLabelsError`), so target labels cannot reach
training; use `without_labels(manifest)` to hand it over. They are used afterwards, for scoring
and for the pseudo-label report only.

Choices where Ye et al. are silent (also stated in the notebook):
- Loss: L = CE(source) + w_dec (L_dec + CE_corpus) + r(p) w_corpus L_corpus + r(p) w_class L_class,
  with L_dec the contrastive decoupling loss on source samples, CE_corpus the corpus classifier on
  corpus features of both corpora, L_corpus the multi-kernel MMD between source and target emotion
  features (or the gradient-reversed discriminator's cross-entropy), L_class the class-conditional
  MMD on target samples that pass the adaptive thresholds, and r(p) = 2 / (1 + exp(-10 p)) - 1
  DANN's ramp over the training progress p in [0, 1] (early, unreliable features are not aligned).
  AdamW with DANN's learning-rate decay lr / (1 + 10 p)^0.75, for every method; the adversarial
  discriminator learns 10 times faster than the rest. Both settings were checked without target
  labels: they are what let the adversarial game reduce how well a fresh linear classifier tells
  the corpora apart from the emotion features (98 % -> 72-81 % balanced accuracy, two seeds).
- Fixed number of steps, the last model is kept: without target labels there is nothing honest to
  select a checkpoint by for the target, and the same budget for every method keeps them comparable.
- Adaptive thresholds are tracked (and logged) for every method, but used only where class-level
  alignment is on; the baselines' curves show how good their pseudo-labels would have been.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ...training.allocator import keep_freed_memory
from ...training.runtime import resolve_device, seed_everything
from .data import check_unlabelled
from .loss import class_conditional_mmd, contrastive_decoupling_loss, gaussian_mmd
from .model import EmoDNA
from .pseudo_labels import AdaptiveThresholds

CORPUS_ALIGNMENTS = ("none", "mmd", "adversarial")

# Each method is a setting of the three switches: decoupling, corpus-level and class-level alignment.
METHODS: dict[str, dict] = {
    "source_only": dict(decouple=False, corpus_align="none", class_align=False),
    "dann": dict(decouple=False, corpus_align="adversarial", class_align=False),
    "dan": dict(decouple=False, corpus_align="mmd", class_align=False),
    "emo_dna": dict(decouple=True, corpus_align="mmd", class_align=True),
    "emo_dna_no_decoupling": dict(decouple=False, corpus_align="mmd", class_align=True),
    "emo_dna_no_class_align": dict(decouple=True, corpus_align="mmd", class_align=False),
    "emo_dna_no_corpus_align": dict(decouple=True, corpus_align="none", class_align=True),
}
METHOD_NAMES = {
    "source_only": "Source only", "dann": "DANN", "dan": "DAN (MMD only)", "emo_dna": "Emo-DNA",
    "emo_dna_no_decoupling": "Emo-DNA w/o decoupling", "emo_dna_no_class_align": "Emo-DNA w/o class-level",
    "emo_dna_no_corpus_align": "Emo-DNA w/o corpus-level",
}


@dataclass
class UDAConfig:
    decouple: bool = True
    corpus_align: str = "mmd"  # none | mmd | adversarial
    class_align: bool = True
    max_steps: int = 600  # every run trains all of them (no target labels to stop by)
    batch_size: int = 64  # per corpus and step
    lr: float = 1e-3
    weight_decay: float = 1e-4
    hidden: int = 128
    feat_dim: int = 64
    dropout: float = 0.1
    temperature: float = 0.1  # of the decoupling loss
    w_decouple: float = 1.0
    w_corpus_align: float = 1.0
    w_class_align: float = 1.0
    discriminator_lr_scale: float = 10.0  # DANN practice: the discriminator learns faster than the encoder
    threshold_momentum: float = 0.99
    prototype_momentum: float = 0.9
    log_every: int = 50  # steps between pseudo-label logs of the whole target set
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        if self.corpus_align not in CORPUS_ALIGNMENTS:
            raise ValueError(f"corpus_align must be one of {CORPUS_ALIGNMENTS}, got {self.corpus_align!r}")
        if self.max_steps < 1 or self.batch_size < 2 or self.log_every < 1:
            raise ValueError("max_steps and log_every must be >= 1 and batch_size >= 2")

    @classmethod
    def for_method(cls, method: str, **options) -> UDAConfig:
        """The method's switches (see METHODS) with the shared training options."""
        if method not in METHODS:
            raise KeyError(f"unknown method {method!r}; known: {sorted(METHODS)}")
        clash = set(options) & set(METHODS[method])
        if clash:
            raise ValueError(f"{sorted(clash)} are fixed by the method {method!r}")
        return cls(**METHODS[method], **options)


@dataclass
class UDAResult:
    model: EmoDNA
    history: pd.DataFrame  # step, mean losses since the last log, train_s (time in steps so far)
    pseudo_labels: pd.DataFrame  # step, utt_id, pseudo_label, confidence, selected (whole target set)
    thresholds: pd.DataFrame  # step, pseudo_label, threshold
    config: dict
    wall_s: float


def ramp(progress: float, gamma: float = 10.0) -> float:
    """DANN's weight schedule 2 / (1 + exp(-gamma p)) - 1: 0 at the start, close to 1 at the end."""
    return 2 / (1 + math.exp(-gamma * progress)) - 1


def annealed_lr(lr: float, progress: float) -> float:
    """DANN's learning-rate decay lr / (1 + 10 p)^0.75: it lets the adversarial game settle, and
    every method gets it so that they differ in their losses only."""
    return lr / (1 + 10 * progress) ** 0.75


def _batches(n: int, size: int, generator: torch.Generator):
    """Index batches drawn from fresh permutations forever (each epoch sees every row once)."""
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - size + 1 if n >= size else 1, size):
            yield order[start:start + size]


def fit_uda(source_x: np.ndarray, source_y, target_x: np.ndarray, target: pd.DataFrame, n_classes: int,
            config: UDAConfig) -> UDAResult:
    """Train on labelled source features and unlabelled target features (rows of `target`, in order)."""
    check_unlabelled(target)
    source_y = np.array(source_y)  # a writable copy (torch warns on read-only views of pandas data)
    if len(source_x) != len(source_y):
        raise ValueError(f"{len(source_x)} source rows but {len(source_y)} labels")
    if len(target_x) != len(target):
        raise ValueError(f"{len(target_x)} target rows but a target manifest of {len(target)}")
    if source_y.min() < 0 or source_y.max() >= n_classes:
        raise ValueError(f"source labels must lie in 0..{n_classes - 1}")
    device = resolve_device(config.device)
    keep_freed_memory()
    threads = torch.get_num_threads()
    if device == "cpu":
        # Matrices this small gain nothing from a second thread, and on a shared 2-core machine two
        # threads that wait on each other made training 10-20 times slower than one (measured here).
        torch.set_num_threads(1)
    try:
        return _train(source_x, source_y, target_x, target, n_classes, config, device)
    finally:
        torch.set_num_threads(threads)


class UDARun:
    """One training run of `fit_uda`, step by step (the benchmark times `step` alone)."""

    def __init__(self, source_x, source_y, target_x, n_classes: int, cfg: UDAConfig, device: str):
        seed_everything(cfg.seed)
        self.cfg, self.n_classes = cfg, n_classes
        generator = torch.Generator().manual_seed(cfg.seed)
        self.xs = torch.as_tensor(source_x, dtype=torch.float32, device=device)
        self.ys = torch.as_tensor(source_y, dtype=torch.long, device=device)
        self.xt = torch.as_tensor(target_x, dtype=torch.float32, device=device)
        self.model = EmoDNA(self.xs.shape[1], n_classes, 2, cfg.hidden, cfg.feat_dim, cfg.dropout, cfg.decouple,
                            cfg.corpus_align == "adversarial", cfg.prototype_momentum).to(device)
        model = self.model
        discriminator = set(map(id, model.discriminator.parameters())) if model.discriminator is not None else set()
        groups = [{"params": [p for p in model.parameters() if id(p) not in discriminator], "lr": cfg.lr},
                  {"params": [p for p in model.parameters() if id(p) in discriminator],
                   "lr": cfg.lr * cfg.discriminator_lr_scale}]
        self.optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=cfg.weight_decay)
        self.thresholds = AdaptiveThresholds(n_classes, cfg.threshold_momentum, device)
        self.source_batches = _batches(len(self.xs), cfg.batch_size, generator)
        self.target_batches = _batches(len(self.xt), cfg.batch_size, generator)
        self.device = device

    def step(self, step: int) -> tuple[float, dict[str, torch.Tensor]]:
        """Optimizer step number `step` (1-based): one source and one target batch. Returns the
        ramp weight r(p) and the detached losses."""
        cfg, model, xs, ys, xt = self.cfg, self.model, self.xs, self.ys, self.xt
        model.train()
        progress = (step - 1) / cfg.max_steps
        r = ramp(progress)
        for group in self.optimizer.param_groups:
            group["lr"] = annealed_lr(group.setdefault("base_lr", group["lr"]), progress)
        i_s, i_t = next(self.source_batches), next(self.target_batches)
        both = torch.cat([xs[i_s], xt[i_t]])  # one pass per encoder for both corpora
        e_s, e_t = model.emotion_features(both).split([len(i_s), len(i_t)])
        losses = {"emotion_ce": F.cross_entropy(model.emotion_classifier(e_s), ys[i_s])}
        corpus_ids = torch.cat([torch.zeros(len(i_s)), torch.ones(len(i_t))]).long().to(self.device)
        if cfg.decouple:
            c_both = model.corpus_features(both)
            c_s = c_both[:len(i_s)]
            model.emotion_prototypes.update(e_s, ys[i_s])
            model.corpus_prototypes.update(c_both, corpus_ids)
            losses["corpus_ce"] = cfg.w_decouple * F.cross_entropy(model.corpus_classifier(c_both), corpus_ids)
            losses["decoupling"] = cfg.w_decouple * contrastive_decoupling_loss(
                e_s, c_s, ys[i_s], model.emotion_prototypes.vectors, model.corpus_prototypes.vectors,
                cfg.temperature)
        if cfg.corpus_align == "mmd":
            losses["corpus_align"] = r * cfg.w_corpus_align * gaussian_mmd(e_s, e_t)
        elif cfg.corpus_align == "adversarial":
            model.discriminator[0].scale = r
            domain_logits = model.discriminator(torch.cat([e_s, e_t]))
            losses["corpus_align"] = cfg.w_corpus_align * F.cross_entropy(domain_logits, corpus_ids)
        probs = torch.softmax(model.emotion_classifier(e_t).detach(), dim=1)
        self.thresholds.update(probs)
        if cfg.class_align:
            pseudo, chosen = self.thresholds.select(probs)
            losses["class_align"] = r * cfg.w_class_align * class_conditional_mmd(
                e_s, ys[i_s], e_t[chosen], pseudo[chosen], self.n_classes)
        loss = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return r, {k: v.detach() for k, v in losses.items()}


def _train(source_x, source_y, target_x, target, n_classes, cfg: UDAConfig, device: str) -> UDAResult:
    run = UDARun(source_x, source_y, target_x, n_classes, cfg, device)
    utt_ids = target["utt_id"].to_numpy()
    history, logs, threshold_logs, sums = [], [], [], {}
    start = time.perf_counter()
    train_s = 0.0
    for step in range(1, cfg.max_steps + 1):
        began = time.perf_counter()
        r, losses = run.step(step)
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        train_s += time.perf_counter() - began
        sums["n"] = sums.get("n", 0) + 1
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            n = sums.pop("n")
            history.append({"step": step, "ramp": r, **{k: v / n for k, v in sums.items()}, "train_s": train_s})
            sums = {}
            logs.append(_log_pseudo_labels(run.model, run.xt, run.thresholds, utt_ids, step))
            threshold_logs.append(pd.DataFrame({"step": step, "pseudo_label": range(n_classes),
                                                "threshold": run.thresholds.thresholds.cpu().numpy()}))
    run.model.eval()
    return UDAResult(model=run.model.cpu(), history=pd.DataFrame(history),
                     pseudo_labels=pd.concat(logs, ignore_index=True),
                     thresholds=pd.concat(threshold_logs, ignore_index=True), config=asdict(cfg),
                     wall_s=time.perf_counter() - start)


@torch.no_grad()
def _log_pseudo_labels(model: EmoDNA, xt: torch.Tensor, thresholds: AdaptiveThresholds, utt_ids, step: int):
    """Pseudo-label and selection of every target row under the current model and thresholds."""
    model.eval()
    probs = torch.softmax(model(xt), dim=1)
    labels, chosen = thresholds.select(probs)
    return pd.DataFrame({"step": step, "utt_id": utt_ids, "pseudo_label": labels.cpu().numpy(),
                         "confidence": probs.max(1).values.cpu().numpy(), "selected": chosen.cpu().numpy()})


@torch.no_grad()
def emotion_embeddings(model: EmoDNA, x: np.ndarray) -> np.ndarray:
    """Emotion features [N, feat_dim] of pooled inputs (for UMAP plots)."""
    model.eval()
    device = next(model.parameters()).device
    return model.emotion_features(torch.as_tensor(x, device=device)).cpu().numpy()

