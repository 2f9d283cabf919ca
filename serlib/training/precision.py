"""Which precision to compute in, chosen by the hardware at hand and never fixed by a profile.

bf16 autocast is a gain only where the hardware multiplies bf16 natively: CUDA GPUs from Ampere on,
and CPUs with AVX512-BF16 or AMX (x86) or the BF16 extension (Arm). Elsewhere bf16 is emulated: on
a 2-core AVX2 EPYC a bf16 matmul ran at 0.5 GFLOPS against 78 in fp32, so a profile that fixed bf16
turned a 3-minute notebook into hours. Hence `precision: auto`:

- CUDA: bf16 where `torch.cuda.is_bf16_supported()`, else fp32;
- CPU: bf16 where the CPU reports a native bf16 instruction set *and* a small timed matmul confirms
  that bf16 is not slower than fp32 in this process (thread caps such as ONEDNN_MAX_CPU_ISA can
  switch the fast kernels off); fp32 everywhere else. The probe runs once per process (~0.1 s).

An explicit `bf16` on a CPU without native bf16 still runs (it exercises the same code path), with
a warning naming the measured slow-down. `Precision.reason` says what was chosen and why, for the
run card. Names follow accelerate: "no" (fp32), "bf16", "fp16" (CUDA only).
"""

from __future__ import annotations

import functools
import platform
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

# CPU flags (as /proc/cpuinfo spells them) that mean bf16 matrix products run natively.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
ALIASES = {"none": "no", "fp32": "no", "float32": "no", "bfloat16": "bf16", "float16": "fp16"}
LABELS = {"no": "fp32", "bf16": "bf16", "fp16": "fp16"}
# bf16 counts as native only if it reaches at least this share of the fp32 rate (emulated: ~1 %).
MIN_BF16_SPEED = 0.5


@dataclass(frozen=True)
class CpuBf16Probe:
    """What this CPU says about bf16, and how fast a bf16 matmul is here against fp32."""

    cpu: str
    flags: tuple[str, ...] | None  # native bf16 flags found; None when the CPU flags cannot be read
    fp32_gflops: float
    bf16_gflops: float

    @property
    def slowdown(self) -> float:
        """How many times slower bf16 is than fp32 here (below 1: bf16 is faster)."""
        return self.fp32_gflops / max(self.bf16_gflops, 1e-9)

    @property
    def native(self) -> bool:
        flagged = self.flags is None or bool(self.flags)
        return flagged and self.bf16_gflops >= MIN_BF16_SPEED * self.fp32_gflops

    def describe(self) -> str:
        flags = ("CPU flags unreadable" if self.flags is None else
                 f"CPU flags: {', '.join(self.flags)}" if self.flags else "no native bf16 flag")
        return f"{self.cpu}; {flags}; bf16 matmul {self.bf16_gflops:.1f} vs fp32 {self.fp32_gflops:.1f} GFLOPS"


def cpu_info() -> tuple[str, set[str] | None]:
    """(CPU model name, its feature flags) from /proc/cpuinfo; flags None off Linux."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor() or platform.machine(), None
    name, flags = platform.machine(), set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model") and name == platform.machine():
            name = value.strip()
        elif key in ("flags", "features"):
            flags |= set(value.split())
    return name, flags or None


def matmul_gflops(dtype: torch.dtype, m: int = 256, k: int = 512, n: int = 1024, budget_s: float = 0.3) -> float:
    """Best rate of an [m, k] @ [k, n] product on the CPU in `dtype` (current thread count), timed
    repeatedly within about `budget_s` (at least twice, so a slow emulated kernel costs ~1 s once)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=gen).to(dtype)
    b = torch.randn(k, n, generator=gen).to(dtype)
    a @ b  # warm-up: kernel selection, packing buffers
    best, spent, runs = float("inf"), 0.0, 0
    while runs < 2 or (spent < budget_s and runs < 50):
        start = time.perf_counter()
        a @ b
        took = time.perf_counter() - start
        best, spent, runs = min(best, took), spent + took, runs + 1
    return 2 * m * k * n / max(best, 1e-9) / 1e9


@functools.cache
def probe_cpu_bf16() -> CpuBf16Probe:
    """Ask the CPU for native bf16 and time one small matmul each way (cached for the process)."""
    name, flags = cpu_info()
    found = None if flags is None else tuple(f for f in NATIVE_BF16_FLAGS if f in flags)
    return CpuBf16Probe(name, found, matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16))


def cuda_bf16_native() -> bool:
    """Whether the current GPU computes bf16 natively (Ampere and later), not by emulation."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch before 2.3 has no such argument and reports native support only
        return torch.cuda.is_bf16_supported()


@dataclass(frozen=True)
class Precision:
    """The precision a run uses: accelerate's name, what was asked for, and why this one."""

    name: str  # "no" | "bf16" | "fp16"
    requested: str
    reason: str

    @property
    def label(self) -> str:
        return LABELS[self.name]

    def __str__(self) -> str:
        return f"{self.label} ({self.reason})"


def choose_precision(precision: str | None = "auto", device: str = "cpu") -> Precision:
    """Resolve `auto` by the hardware, check an explicit choice (see the module notes)."""
    requested = str(precision or "auto").lower()
    p = ALIASES.get(requested, requested)
    if p not in ("auto", "no", "bf16", "fp16"):
        raise ValueError(f"unknown precision {precision!r}: use auto, fp32 (no), bf16 or fp16")
    if p == "fp16" and device != "cuda":
        raise ValueError(f"precision 'fp16' needs a CUDA device (got {device!r}); use 'bf16' or 'fp32'")
    if device == "cuda":
        supported = cuda_bf16_native()
        if p == "bf16" and not supported:
            raise ValueError("this GPU has no bf16 support; use precision 'fp16' or 'fp32'")
        if p == "auto":
            name = "bf16" if supported else "no"
            why = "auto: this GPU " + ("supports bf16" if supported else "has no bf16 support")
            return Precision(name, requested, why)
        return Precision(p, requested, "as asked")
    if device != "cpu":  # mps: autocast support is partial; fp32 unless asked otherwise
        return Precision("no" if p == "auto" else p, requested, f"auto: fp32 on {device}" if p == "auto" else "as asked")
    if p == "no":
        return Precision("no", requested, "as asked")
    probe = probe_cpu_bf16()
    if p == "auto":
        if probe.native:
            return Precision("bf16", requested, f"auto: native bf16 on this CPU ({probe.describe()})")
        return Precision("no", requested, f"auto: no native bf16 on this CPU ({probe.describe()})")
    if not probe.native:
        warnings.warn(f"precision bf16 was asked for, but this CPU has no native bf16: a bf16 matmul ran "
                      f"{probe.slowdown:.0f}x slower than fp32 here ({probe.describe()}); use precision 'auto'",
                      RuntimeWarning, stacklevel=2)
        return Precision("bf16", requested, f"as asked, emulated: {probe.slowdown:.0f}x slower than fp32 here")
    return Precision("bf16", requested, "as asked (native bf16 on this CPU)")


def resolve_precision(precision: str | None = "auto", device: str = "cpu") -> str:
    """accelerate's name ("no", "bf16", "fp16") for `precision` on `device` (see `choose_precision`)."""
    return choose_precision(precision, device).name


def autocast(device: torch.device | str, precision: str):
    """The autocast context of `precision` (a resolved name: bf16 or fp16) on `device`, as the trainer's
    own (accelerate's) autocast: code outside the trainer (decoding, cached K/V) then computes as
    training and validation did. "no": a no-op."""
    kind = device.type if isinstance(device, torch.device) else str(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(kind, dtype=dtype or torch.bfloat16, enabled=dtype is not None)
