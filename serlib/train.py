"""One trainer for every method: device, mixed precision, accumulation, early stop, top-k averaging.

`fit` knows nothing about models. A method supplies
    loss_fn(model, batch) -> scalar loss             (training; classifiers and seq2seq alike)
    evaluate_fn(model, valid_loader) -> {metric: x}  (validation; must contain `config.metric`)
and the trainer does the rest, following the Whisper-ER recipe: AdamW, validate every `eval_every`
optimizer steps, ReduceLROnPlateau on the validation metric, early stop after `patience` validations
without improvement, and a final model that is the parameter average of the `top_k` best checkpoints.

It runs on Hugging Face `accelerate`, so the same call works on CPU, one GPU or under
`accelerate launch` on several GPUs (DDP): batches are sharded across processes, gradients synced.
Validation is not sharded: every process evaluates the whole validation set with the plain
(unwrapped) model, so `evaluate_fn` needs no gathering; process 0's scores are broadcast so all
processes take the same decisions, and only process 0 writes files.

What is saved (when `out_dir` is set) at every validation point (every `eval_every` steps and the
last step, also when there is no validation data):
    out_dir/progress.json        step, data position, top-k list, history, config (the commit point)
    out_dir/state-NNNNNNN/       model.safetensors (trained state), train.pt (optimizer, scheduler,
                                 grad scaler, RNG states; read with torch.load(weights_only=True))
    out_dir/topk/step-NNNNNNN.safetensors   the top_k checkpoints by validation score
    out_dir/history.csv          the metrics log
"Trained state" means the parameters with requires_grad and all buffers (tied weights once): frozen
parameters never change, so they are not copied; a resumed run gets them from the model it is given,
built the same way as the first time. Without `out_dir` nothing is written and
the top-k checkpoints are CPU copies in memory (top_k copies of the trained state).

With `resume=True` a call finds progress.json and continues from the saved step; a finished run
returns at once (re-executing a notebook costs only the average), and a larger `max_steps` continues
a run that did not stop early. Settings that change what is computed must match the saved run (else
an error); resume=False starts afresh and removes the trainer's files from `out_dir`. On one process
a resumed run gives exactly the result of an uninterrupted one (tests check this on CPU); under
several processes every process restores process 0's RNG state, and `out_dir` must be on a file
system all of them see.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .allocator import keep_freed_memory
from .precision import choose_precision

TQDM_MININTERVAL = 10.0  # seconds between progress-bar refreshes: keeps executed-notebook logs short
# Config fields that may differ when resuming (they do not change what is computed, or extend it).
RESUMABLE_CHANGES = {"max_steps", "device", "precision", "out_dir", "resume", "progress", "num_workers",
                     "eval_batch_size"}


# --- environment ------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, NumPy, torch and every CUDA device."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(name: str | None = "auto") -> str:
    """"auto" -> "cuda" if available, else "mps" if available, else "cpu"; an explicit name is checked.

    Only whole device kinds are accepted ("cuda", not "cuda:1"): choose GPUs with
    CUDA_VISIBLE_DEVICES, or run several with `accelerate launch`.
    """
    name = str(name or "auto").lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if name not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda or mps "
                         "(pick GPUs with CUDA_VISIBLE_DEVICES)")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device 'cuda' was asked for, but this torch ({torch.__version__}, CUDA "
                           f"{torch.version.cuda}) sees no CUDA GPU; use device='auto' or 'cpu'")
    if name == "mps" and not _mps_available():
        raise RuntimeError("device 'mps' was asked for, but Apple's MPS backend is not available")
    return name


def _accelerator(device: str, precision: str, grad_accum: int):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import GradientAccumulationPlugin

    if PartialState._shared_state and PartialState().num_processes == 1:
        # accelerate keeps device and precision in a process-wide singleton that refuses changes; in
        # one process (a notebook, the tests) each fit may choose its own, so start it afresh.
        # A launched multi-process run keeps its state (and must not change it).
        AcceleratorState._reset_state(reset_partial_state=True)
    accelerator = Accelerator(
        cpu=device == "cpu",
        mixed_precision=precision,
        # Our loop does exactly grad_accum micro-steps per optimizer step, also across epoch ends.
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=grad_accum, sync_with_dataloader=False
        ),
    )
    if accelerator.device.type != device:
        raise RuntimeError(f"accelerate chose {accelerator.device} but device {device!r} was asked for")
    return accelerator


# --- configuration and result -----------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Plain values; defaults follow the Whisper-ER recipe (24k steps, batch 16, eval every 480)."""

    max_steps: int = 24_000  # optimizer steps
    batch_size: int = 16  # per process and micro-step; effective batch = batch_size * grad_accum
    grad_accum: int = 1
    lr: float = 1e-5
    weight_decay: float = 0.01  # AdamW, on every trained parameter
    # Learning-rate factors by parameter name: the first key found in a name applies, e.g.
    # {"embed_tokens.extra": 10} lets newly added token rows learn faster than pretrained weights.
    lr_multipliers: dict[str, float] | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    max_norm: float | None = 1.0  # gradient clipping; None or 0 = none
    eval_every: int = 480  # optimizer steps between validations (and state saves)
    patience: int | None = 20  # validations without improvement before stopping; None = never
    stop_at: float | None = None  # a validation score nothing can beat (1.0 for accuracies): stop on reaching it
    top_k: int = 10  # best checkpoints parameter-averaged at the end (1 = the best)
    # The paper names ReduceLROnPlateau without settings: PyTorch's defaults.
    plateau_factor: float = 0.1
    plateau_patience: int = 10  # validations
    metric: str = "UA"  # key of evaluate_fn's dict; higher is better
    device: str = "auto"  # auto | cpu | cuda | mps
    precision: str = "auto"  # auto (bf16 where the hardware has it natively, see serlib.precision) | no | bf16 | fp16
    seed: int = 0
    out_dir: Path | str | None = None  # resumable state, checkpoints, history.csv
    resume: bool = True
    progress: bool = True
    num_workers: int = 0
    eval_batch_size: int | None = None  # validation batch size (default: batch_size)

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)
        self.out_dir = Path(self.out_dir) if self.out_dir else None
        for name in ("max_steps", "batch_size", "grad_accum", "eval_every", "top_k"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"TrainConfig.patience must be >= 1 or None, got {self.patience}")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"], d["out_dir"] = list(self.betas), str(self.out_dir) if self.out_dir else None
        return d


def param_groups(model: torch.nn.Module, lr: float, multipliers: Mapping[str, float] | None) -> list[dict]:
    """The trained parameters as optimizer groups, one per learning rate (see TrainConfig.lr_multipliers)."""
    groups: dict[float, list[torch.nn.Parameter]] = {}
    matched: set[str] = set()
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        key = next((k for k in (multipliers or {}) if k in name), None)
        if key is not None:
            matched.add(key)
        groups.setdefault(lr * float(multipliers[key]) if key is not None else lr, []).append(param)
    if not groups:
        raise ValueError("the model has no parameter with requires_grad=True")
    unmatched = set(multipliers or {}) - matched
    if unmatched:
        raise ValueError(f"lr_multipliers {sorted(unmatched)} match no trained parameter")
    # the base rate's group first: the history's "lr" column reads group 0
    return [{"params": params, "lr": group_lr} for group_lr, params in sorted(groups.items(), key=lambda g: g[0] != lr)]


@dataclass
class TrainResult:
    model: torch.nn.Module  # the final model: top-k average, or the last state without validation
    history: pd.DataFrame  # one row per validation: step, train_loss, lr, metrics..., elapsed_s
    best_score: float  # best validation score (NaN without validation)
    best_step: int | None
    steps: int  # optimizer steps done
    stopped_early: bool
    wall_s: float  # training time, summed over resumed sessions
    averaged_steps: list[int]  # the steps whose checkpoints were averaged, best first


# --- checkpoints ------------------------------------------------------------------------------------


def average_state_dicts(state_dicts: Iterable[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Parameter average of state dicts with the same keys; the first one counts as the best.

    Floating tensors are averaged (accumulated in at least float32, returned in their own dtype);
    other tensors (integer counters, bool masks) are taken from the first. Accepts any iterable, so
    checkpoints can be loaded one at a time (memory: about two state dicts).
    """
    total: dict[str, torch.Tensor] = {}
    first: dict[str, torch.Tensor] = {}  # non-float tensors of the first dict
    dtypes: dict[str, torch.dtype] = {}
    n = 0
    for sd in state_dicts:
        if n == 0:
            dtypes = {k: v.dtype for k, v in sd.items()}
            for k, v in sd.items():
                if v.is_floating_point():
                    total[k] = v.detach().to(torch.promote_types(v.dtype, torch.float32), copy=True)
                else:
                    first[k] = v.detach().clone()
        else:
            if set(sd) != set(dtypes):
                diff = sorted(set(sd) ^ set(dtypes))[:5]
                raise ValueError(f"state dict {n} has different keys: {diff}")
            for k in total:
                total[k] += sd[k].detach().to(device=total[k].device, dtype=total[k].dtype)
        n += 1
    if n == 0:
        raise ValueError("no state dicts to average")
    return {k: (total[k] / n).to(dtypes[k]) if k in total else first[k] for k in dtypes}


def _trained_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters with requires_grad and all buffers, one name per tensor (tied weights once)."""
    keep = {id(p) for p in model.parameters() if p.requires_grad} | {id(b) for b in model.buffers()}
    out, seen = {}, set()
    for name, t in model.state_dict(keep_vars=True).items():
        if id(t) in keep and id(t) not in seen:
            seen.add(id(t))
            out[name] = t.detach()
    return out


def _cpu_copy(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.to("cpu", copy=True).contiguous() for k, v in sd.items()}


def _load_trained(model: torch.nn.Module, sd: Mapping[str, torch.Tensor]) -> None:
    expected = set(_trained_state(model))
    if set(sd) != expected:
        missing, unexpected = sorted(expected - set(sd))[:5], sorted(set(sd) - expected)[:5]
        raise ValueError(f"checkpoint does not match the model's trained state: "
                         f"missing {missing}, unexpected {unexpected}")
    model.load_state_dict(dict(sd), strict=False)


def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _clear_run(out: Path) -> None:
    """Remove what a previous run of `fit` left in `out` (only the trainer's own files)."""
    for p in [out / "progress.json", out / "history.csv", out / "topk", *out.glob("state-*")]:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


class _OnDevice:
    """A DataLoader whose batches arrive on `device` (like accelerate's prepared loaders)."""

    def __init__(self, loader: DataLoader, device: torch.device):
        self.loader, self.device, self.dataset = loader, device, loader.dataset

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        from accelerate.utils import send_to_device

        for batch in self.loader:
            yield send_to_device(batch, self.device)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % 2**63


# --- the trainer ------------------------------------------------------------------------------------


def fit(
    model: torch.nn.Module,
    train_data: Dataset,
    valid_data: Dataset | None,
    loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
    evaluate_fn: Callable[[torch.nn.Module, Iterable], Mapping[str, float]] | None,
    config: TrainConfig | None = None,
    collate_fn: Callable | None = None,
) -> TrainResult:
    """Train `model` and return the final model with its history (see the module notes).

    Batches (from `collate_fn`) arrive on the training device, training and validation alike.
    `loss_fn` gets the prepared model (a DDP wrapper under multi-GPU, so call it rather than its
    submodules when gradients must sync); `evaluate_fn` gets the plain model in eval mode, under
    torch.no_grad() and the same autocast, and returns a dict with `config.metric` (higher is better).
    Without `valid_data`: train `max_steps`, no early stopping, and return the last model.
    The data order is a seeded shuffle per epoch (seed, epoch), so a resumed run sees the same one.
    """
    cfg = config or TrainConfig()
    device = resolve_device(cfg.device)
    keep_freed_memory()
    precision = choose_precision(cfg.precision, device).name
    acc = _accelerator(device, precision, cfg.grad_accum)
    out = cfg.out_dir
    validate = valid_data is not None
    if validate and evaluate_fn is None:
        raise ValueError("valid_data was given without an evaluate_fn")

    # Progress: a fresh run, or what progress.json says.
    saved = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if cfg.resume and (out / "progress.json").is_file():
            saved = json.loads((out / "progress.json").read_text(encoding="utf-8"))
            changed = {k for k, v in cfg.to_json().items()
                       if k not in RESUMABLE_CHANGES and saved["config"].get(k) != v}
            if changed or saved["validate"] != validate:
                what = sorted(changed) or "validation"
                raise ValueError(f"{out} holds a run with other settings ({what}); "
                                 "use another out_dir or resume=False to start afresh")
        elif acc.is_main_process:
            _clear_run(out)
        acc.wait_for_everyone()
    p = saved or {"step": 0, "epoch": 0, "batch": 0, "elapsed_s": 0.0, "best_score": None,
                  "best_step": None, "bad_evals": 0, "stopped_early": False, "topk": [], "history": []}
    seed_everything(cfg.seed)

    # Data: a seeded shuffle, re-seeded at every epoch (see batches() below).
    generator = torch.Generator()
    train_loader = DataLoader(train_data, batch_size=cfg.batch_size, shuffle=True, generator=generator,
                              collate_fn=collate_fn, num_workers=cfg.num_workers,
                              pin_memory=device == "cuda")
    valid_loader = None
    if validate:
        valid_loader = DataLoader(valid_data, batch_size=cfg.eval_batch_size or cfg.batch_size,
                                  shuffle=False, generator=torch.Generator().manual_seed(cfg.seed),
                                  collate_fn=collate_fn, num_workers=cfg.num_workers,
                                  pin_memory=device == "cuda")
        valid_loader = _OnDevice(valid_loader, acc.device)

    # Model, optimizer and the plateau scheduler (not prepared: it must step once per validation,
    # whatever the number of processes). Fused AdamW (one kernel for every parameter) on CUDA and
    # on CPU, where it took a 22M-parameter update from 34 to 14 ms.
    model.to(acc.device)
    groups = param_groups(model, cfg.lr, cfg.lr_multipliers)
    params = [q for group in groups for q in group["params"]]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                                  fused=True if device in ("cuda", "cpu") else None)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience)
    if saved is not None:
        state_dir = out / saved["state"]
        _load_trained(model, load_file(state_dir / "model.safetensors"))
    wrapped, optimizer, train_loader = acc.prepare(model, optimizer, train_loader)
    raw = acc.unwrap_model(wrapped)
    if saved is not None:
        extra = torch.load(state_dir / "train.pt", map_location="cpu", weights_only=True)
        optimizer.load_state_dict(extra["optimizer"])
        scheduler.load_state_dict(extra["scheduler"])
        if acc.scaler is not None and extra.get("scaler"):
            acc.scaler.load_state_dict(extra["scaler"])
        _set_rng_state(extra["rng"])

    topk_memory: dict[int, dict[str, torch.Tensor]] = {}  # step -> CPU copy, when there is no out_dir

    def batches():
        """Micro-batches forever; p["epoch"], p["batch"] count those handed out (for resuming)."""
        while True:
            generator.manual_seed(_epoch_seed(cfg.seed, p["epoch"]))
            train_loader.set_epoch(p["epoch"])
            loader = acc.skip_first_batches(train_loader, p["batch"]) if p["batch"] else train_loader
            for batch in loader:
                p["batch"] += 1
                yield batch
            if p["batch"] == 0:
                raise ValueError("the training data gave no batch")
            p["epoch"], p["batch"] = p["epoch"] + 1, 0

    def evaluate() -> dict[str, float]:
        raw.eval()
        with torch.no_grad(), acc.autocast():
            scores = evaluate_fn(raw, valid_loader)
        raw.train()
        scores = {k: float(v) for k, v in dict(scores).items()}
        if cfg.metric not in scores:
            raise KeyError(f"evaluate_fn returned {sorted(scores)}, without the metric {cfg.metric!r}")
        if acc.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            scores = broadcast_object_list([scores])[0]
        return scores

    def keep_checkpoint(score: float, state: dict[str, torch.Tensor] | None) -> None:
        """Add the current model to the top-k list if it is among the k best; drop the one it beats."""
        topk = p["topk"]
        if math.isnan(score) or (len(topk) >= cfg.top_k and score <= topk[-1]["score"]):
            return
        entry = {"score": score, "step": p["step"], "file": f"topk/step-{p['step']:07d}.safetensors"}
        if out is None:
            topk_memory[p["step"]] = state
        elif acc.is_main_process:
            (out / "topk").mkdir(exist_ok=True)
            save_file(state, out / (entry["file"] + ".tmp"))
            os.replace(out / (entry["file"] + ".tmp"), out / entry["file"])
        topk.append(entry)
        topk.sort(key=lambda e: -e["score"])  # stable: among equal scores the earlier stays ahead
        for dropped in topk[cfg.top_k:]:
            topk_memory.pop(dropped["step"], None)  # its file goes after progress.json is written
        del topk[cfg.top_k:]

    def save_state(state: dict[str, torch.Tensor] | None) -> None:
        """Write the resumable state; progress.json is replaced last, then stale files go."""
        if out is not None and acc.is_main_process:
            name = f"state-{p['step']:07d}"
            tmp = out / (name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            save_file(state, tmp / "model.safetensors")
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "scaler": acc.scaler.state_dict() if acc.scaler is not None else None,
                        "rng": _rng_state()}, tmp / "train.pt")
            shutil.rmtree(out / name, ignore_errors=True)
            os.replace(tmp, out / name)
            p["state"], p["config"], p["validate"] = name, cfg.to_json(), validate
            _atomic_write(out / "progress.json", json.dumps(p, indent=1))
            pd.DataFrame(p["history"]).to_csv(out / "history.csv", index=False)
            for old in out.glob("state-*"):
                if old.name != name:
                    shutil.rmtree(old, ignore_errors=True)
            keep = {out / e["file"] for e in p["topk"]}
            for f in (out / "topk").glob("*.safetensors") if (out / "topk").is_dir() else []:
                if f not in keep:
                    f.unlink()
        acc.wait_for_everyone()

    # The loop: grad_accum micro-steps per optimizer step; validate every eval_every steps.
    start = time.perf_counter() - p["elapsed_s"]
    stream = batches()
    loss_sum, n_loss = torch.zeros((), device=acc.device), 0
    bar = tqdm(total=cfg.max_steps, initial=p["step"], desc="train", mininterval=TQDM_MININTERVAL,
               disable=not cfg.progress or not acc.is_main_process or p["stopped_early"]
               or p["step"] >= cfg.max_steps, dynamic_ncols=True)
    wrapped.train()
    while p["step"] < cfg.max_steps and not p["stopped_early"]:
        for _ in range(cfg.grad_accum):
            batch = next(stream)
            with acc.accumulate(wrapped):
                with acc.autocast():
                    loss = loss_fn(wrapped, batch)
                if loss.dim() != 0:
                    raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
                acc.backward(loss)
                if acc.sync_gradients:
                    if cfg.max_norm:
                        acc.clip_grad_norm_(params, cfg.max_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach().float()
            n_loss += 1
        if not acc.sync_gradients:
            raise RuntimeError("gradient accumulation went out of step with the optimizer steps")
        p["step"] += 1
        bar.update(1)
        if p["step"] % cfg.eval_every and p["step"] < cfg.max_steps:
            continue
        # Validation point (also at the last step): log, keep top-k, schedule, stop early, save.
        record = {"step": p["step"], "train_loss": float(acc.reduce(loss_sum, "mean")) / n_loss,
                  "lr": optimizer.param_groups[0]["lr"]}
        loss_sum, n_loss = torch.zeros((), device=acc.device), 0
        # One CPU copy of the trained state serves the top-k list and the saved state (where needed).
        need = (out is not None and acc.is_main_process) or (out is None and validate)
        state = _cpu_copy(_trained_state(raw)) if need else None
        if validate:
            scores = evaluate()
            score = scores[cfg.metric]
            record.update(scores)
            scheduler.step(score)
            if not math.isnan(score) and (p["best_score"] is None or score > p["best_score"]):
                p["best_score"], p["best_step"], p["bad_evals"] = score, p["step"], 0
            else:
                p["bad_evals"] += 1
            keep_checkpoint(score, state)
            if cfg.patience and p["bad_evals"] >= cfg.patience:
                p["stopped_early"] = True
            if cfg.stop_at is not None and not math.isnan(score) and score >= cfg.stop_at:
                p["stopped_early"] = True  # no later validation could count as an improvement
            best = p["best_score"]
            bar.set_postfix({cfg.metric: f"{score:.4f}", "best": "-" if best is None else f"{best:.4f}"},
                            refresh=False)
        p["elapsed_s"] = time.perf_counter() - start
        record["elapsed_s"] = p["elapsed_s"]
        p["history"].append(record)
        save_state(state)
    bar.close()
    stream.close()

    # The final model: the average of the top-k checkpoints (or the last state without validation).
    if validate and p["topk"]:
        if out is None:
            states = (topk_memory[e["step"]] for e in p["topk"])
        else:
            states = (load_file(out / e["file"]) for e in p["topk"])
        _load_trained(raw, average_state_dicts(states))
    model = acc.unwrap_model(wrapped, keep_fp32_wrapper=False)
    model.eval()
    best = p["best_score"]
    return TrainResult(
        model=model,
        history=pd.DataFrame(p["history"]),
        best_score=float("nan") if best is None else float(best),
        best_step=p["best_step"],
        steps=p["step"],
        stopped_early=p["stopped_early"],
        wall_s=float(p["elapsed_s"]),
        averaged_steps=[e["step"] for e in p["topk"]],
    )
