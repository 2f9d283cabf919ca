"""Where and how a run computes: seeds, the device, and accelerate's process-wide state."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

# cuBLAS is deterministic only with a fixed workspace; the variable must be set before its first use.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, NumPy, torch and every CUDA device."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def configure_backends(device: str) -> None:
    """On CUDA: deterministic kernels (so a resumed run can equal an uninterrupted one; ops without a
    deterministic version warn), no cuDNN autotuning (it picks kernels by timing), and TF32 tensor
    cores for float32 matrix products and convolutions (about 8x fp32 throughput on Ampere and
    later, 10-bit mantissa products with fp32 accumulation). Nothing changes on CPU."""
    if device != "cuda":
        return
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True


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


def accelerator(device: str, precision: str, grad_accum: int):
    """accelerate's Accelerator for one fit: device, mixed precision and our accumulation steps."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import GradientAccumulationPlugin

    if PartialState._shared_state and PartialState().num_processes == 1:
        # accelerate keeps device and precision in a process-wide singleton that refuses changes; in
        # one process (a notebook, the tests) each fit may choose its own, so start it afresh.
        # A launched multi-process run keeps its state (and must not change it).
        AcceleratorState._reset_state(reset_partial_state=True)
    acc = Accelerator(
        cpu=device == "cpu",
        mixed_precision=precision,
        # The trainer does exactly grad_accum micro-steps per optimizer step, also across epoch ends.
        gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=grad_accum, sync_with_dataloader=False),
    )
    if acc.device.type != device:
        raise RuntimeError(f"accelerate chose {acc.device} but device {device!r} was asked for")
    return acc
