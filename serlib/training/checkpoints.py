"""What a run of `fit` keeps: its resumable state, the top-k checkpoints, and their average.

With `out_dir`, at every validation point (every `eval_every` steps and the last step, also when
there is no validation data):
    out_dir/progress.json        step, data position, top-k list, history, config (the commit point)
    out_dir/state-NNNNNNN/       model.safetensors (trained state), train.pt (optimizer, scheduler,
                                 grad scaler, RNG states; read with torch.load(weights_only=True))
    out_dir/topk/step-NNNNNNN.safetensors   the top_k checkpoints by validation score
    out_dir/history.csv          the metrics log
"Trained state" means the parameters with requires_grad and all buffers (tied weights once): frozen
parameters never change, so they are not copied; a resumed run gets them from the model it is given,
built the same way as the first time. Without `out_dir` nothing is written and the top-k checkpoints
are CPU copies in memory.

Settings that change what is computed must match the saved run when resuming (else an error);
`RESUMABLE_CHANGES` may differ. Under several processes only process 0 writes, and `out_dir` must be
on a file system all of them see.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from ..distributed import all_gather

# Config fields that may differ when resuming (they do not change what is computed, or extend it).
RESUMABLE_CHANGES = {"max_steps", "device", "precision", "out_dir", "resume", "progress", "num_workers",
                     "eval_batch_size"}


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


def trained_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters with requires_grad and all buffers, one name per tensor (tied weights once)."""
    keep = {id(p) for p in model.parameters() if p.requires_grad} | {id(b) for b in model.buffers()}
    out, seen = {}, set()
    for name, t in model.state_dict(keep_vars=True).items():
        if id(t) in keep and id(t) not in seen:
            seen.add(id(t))
            out[name] = t.detach()
    return out


def cpu_copy(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.to("cpu", copy=True).contiguous() for k, v in sd.items()}


def load_trained(model: torch.nn.Module, sd: Mapping[str, torch.Tensor]) -> None:
    expected = set(trained_state(model))
    if set(sd) != expected:
        missing, unexpected = sorted(expected - set(sd))[:5], sorted(set(sd) - expected)[:5]
        raise ValueError(f"checkpoint does not match the model's trained state: "
                         f"missing {missing}, unexpected {unexpected}")
    model.load_state_dict(dict(sd), strict=False)


def rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
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


def new_progress() -> dict[str, Any]:
    """The progress record of a run that has not started (see `RunStore`)."""
    return {"step": 0, "epoch": 0, "batch": 0, "elapsed_s": 0.0, "best_score": None, "best_step": None,
            "bad_evals": 0, "stopped_early": False, "stop_reason": None, "topk": [], "history": []}


class RunStore:
    """A fit's progress and checkpoints: in `out_dir` (resumable), or in memory when it is None.

    `acc` is the run's Accelerator: only the main process writes, the others wait for it.
    """

    def __init__(self, out_dir: Path | None, acc, top_k: int):
        self.out, self.acc, self.top_k = out_dir, acc, top_k
        self.memory: dict[int, dict[str, torch.Tensor]] = {}  # step -> CPU copy, when there is no out_dir
        self.resumed = False

    def start(self, config: dict, validate: bool, resume: bool) -> dict[str, Any]:
        """The saved progress of a run with the same settings, or a fresh one (clearing out_dir)."""
        out, saved = self.out, None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            if resume and (out / "progress.json").is_file():
                saved = json.loads((out / "progress.json").read_text(encoding="utf-8"))
                saved["config"].setdefault("processes", 1)  # saved before the field existed: one process
                changed = {k for k, v in config.items() if k not in RESUMABLE_CHANGES and saved["config"].get(k) != v}
                if changed or saved["validate"] != validate:
                    raise ValueError(f"{out} holds a run with other settings ({sorted(changed) or 'validation'}); "
                                     "use another out_dir or resume=False to start afresh")
                saved.setdefault("stop_reason", "early_stop" if saved["stopped_early"] else None)
                self.resumed = True
            elif self.acc.is_main_process:
                self._clear()
            self.acc.wait_for_everyone()
        return saved or new_progress()

    def _clear(self) -> None:
        """Remove what a previous run of `fit` left in out_dir (only the trainer's own files)."""
        out = self.out
        for p in [out / "progress.json", out / "history.csv", out / "topk", *out.glob("state-*")]:
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()

    def restore_model(self, model: torch.nn.Module, progress: dict) -> None:
        """A resumed run's trained state (before accelerate wraps the model)."""
        if self.resumed:
            load_trained(model, load_file(self.out / progress["state"] / "model.safetensors"))

    def restore_training(self, optimizer, scheduler, scaler, progress: dict) -> None:
        """A resumed run's optimizer, scheduler, grad scaler and RNG states (after accelerate's prepare)."""
        if not self.resumed:
            return
        extra = torch.load(self.out / progress["state"] / "train.pt", map_location="cpu", weights_only=True)
        optimizer.load_state_dict(extra["optimizer"])
        scheduler.load_state_dict(extra["scheduler"])
        if scaler is not None and extra.get("scaler"):
            scaler.load_state_dict(extra["scaler"])
        rng = extra["rng"]  # one state per process (a dict: saved by one process, before there were several)
        set_rng_state(rng[self.acc.process_index] if isinstance(rng, list) else rng)

    def needs_state(self, validate: bool) -> bool:
        """Whether a validation point needs a CPU copy of the trained state (to save or keep): on the
        main process only (the others get the final average from it, see `fit`)."""
        return self.acc.is_main_process and (self.out is not None or validate)

    def keep(self, progress: dict, score: float, state: dict[str, torch.Tensor] | None) -> None:
        """Add the current model to the top-k list if it is among the k best; drop the one it beats."""
        topk, step = progress["topk"], progress["step"]
        if math.isnan(score) or (len(topk) >= self.top_k and score <= topk[-1]["score"]):
            return
        entry = {"score": score, "step": step, "file": f"topk/step-{step:07d}.safetensors"}
        if self.out is None:
            self.memory[step] = state
        elif self.acc.is_main_process:
            (self.out / "topk").mkdir(exist_ok=True)
            save_file(state, self.out / (entry["file"] + ".tmp"))
            os.replace(self.out / (entry["file"] + ".tmp"), self.out / entry["file"])
        topk.append(entry)
        topk.sort(key=lambda e: -e["score"])  # stable: among equal scores the earlier stays ahead
        for dropped in topk[self.top_k:]:
            self.memory.pop(dropped["step"], None)  # its file goes after progress.json is written
        del topk[self.top_k:]

    def save(self, progress: dict, state, optimizer, scheduler, scaler, config: dict, validate: bool) -> None:
        """Write the resumable state; progress.json is replaced last, then stale files go."""
        out = self.out
        rng = all_gather(rng_state()) if out is not None else None  # every process's own random state
        if out is not None and self.acc.is_main_process:
            name = f"state-{progress['step']:07d}"
            tmp = out / (name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            save_file(state, tmp / "model.safetensors")
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict() if scaler is not None else None, "rng": rng},
                       tmp / "train.pt")
            shutil.rmtree(out / name, ignore_errors=True)
            os.replace(tmp, out / name)
            progress["state"], progress["config"], progress["validate"] = name, config, validate
            _atomic_write(out / "progress.json", json.dumps(progress, indent=1))
            pd.DataFrame(progress["history"]).to_csv(out / "history.csv", index=False)
            for old in out.glob("state-*"):
                if old.name != name:
                    shutil.rmtree(old, ignore_errors=True)
            keep = {out / e["file"] for e in progress["topk"]}
            for f in (out / "topk").glob("*.safetensors") if (out / "topk").is_dir() else []:
                if f not in keep:
                    f.unlink()
        self.acc.wait_for_everyone()

    def average(self, progress: dict) -> dict[str, torch.Tensor]:
        """The parameter average of the kept top-k checkpoints, best first (main process only)."""
        if self.out is None:
            states = (self.memory[e["step"]] for e in progress["topk"])
        else:
            states = (load_file(self.out / e["file"]) for e in progress["topk"])
        return average_state_dicts(states)
