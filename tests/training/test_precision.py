"""Precision chosen by the hardware: `auto` on CPUs with and without native bf16 (faked both ways)."""

from __future__ import annotations

import warnings

import pytest
import torch

from serlib.training import precision as prec
from serlib.training.precision import CpuBf16Probe, choose_precision, resolve_precision

NATIVE = CpuBf16Probe("fake Sapphire Rapids", ("amx_bf16",), fp32_gflops=80.0, bf16_gflops=300.0)
EMULATED = CpuBf16Probe("fake AVX2 EPYC", (), fp32_gflops=78.0, bf16_gflops=0.5)
# A CPU whose flags claim bf16 but whose kernels are capped (e.g. ONEDNN_MAX_CPU_ISA=AVX2).
CAPPED = CpuBf16Probe("fake capped Zen 4", ("avx512_bf16",), fp32_gflops=60.0, bf16_gflops=0.6)


@pytest.fixture
def cpu(monkeypatch):
    def fake(probe: CpuBf16Probe):
        monkeypatch.setattr(prec, "probe_cpu_bf16", lambda: probe)

    return fake


def test_auto_is_bf16_only_where_the_cpu_has_it_natively(cpu):
    cpu(NATIVE)
    chosen = choose_precision("auto", "cpu")
    assert chosen.name == "bf16" and "native bf16" in chosen.reason and "amx_bf16" in chosen.reason
    for probe in (EMULATED, CAPPED):
        cpu(probe)
        chosen = choose_precision("auto", "cpu")
        assert chosen.name == "no" and chosen.label == "fp32"
        assert "no native bf16" in chosen.reason and probe.cpu in chosen.reason


def test_explicit_bf16_on_an_emulating_cpu_runs_with_a_warning_naming_the_slowdown(cpu):
    cpu(EMULATED)
    with pytest.warns(RuntimeWarning, match=r"156x slower than fp32"):
        chosen = choose_precision("bf16", "cpu")
    assert chosen.name == "bf16" and "emulated" in str(chosen)
    cpu(NATIVE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert choose_precision("bfloat16", "cpu").name == "bf16"


def test_fp32_never_probes_and_bad_names_are_refused(monkeypatch):
    def boom():
        raise AssertionError("fp32 needs no probe")

    monkeypatch.setattr(prec, "probe_cpu_bf16", boom)
    assert resolve_precision("fp32", "cpu") == "no" and resolve_precision("no", "cpu") == "no"
    assert resolve_precision("auto", "mps") == "no"
    with pytest.raises(ValueError, match="needs a CUDA device"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("int8", "cpu")


def test_cuda_auto_follows_native_bf16_support(monkeypatch):
    monkeypatch.setattr(prec, "cuda_bf16_native", lambda: True)
    assert choose_precision("auto", "cuda").name == "bf16"
    monkeypatch.setattr(prec, "cuda_bf16_native", lambda: False)
    assert choose_precision("auto", "cuda").name == "no"
    with pytest.raises(ValueError, match="no bf16 support"):
        choose_precision("bf16", "cuda")


def test_the_real_probe_agrees_with_its_own_numbers():
    probe = prec.probe_cpu_bf16()
    assert probe.fp32_gflops > 0 and probe.bf16_gflops > 0
    assert probe.native == ((probe.flags is None or bool(probe.flags))
                            and probe.bf16_gflops >= prec.MIN_BF16_SPEED * probe.fp32_gflops)
    assert choose_precision("auto", "cpu").name == ("bf16" if probe.native else "no")


def test_autocast_helper_casts_as_the_trainer_does():
    """Decoding computes in the precision validation ran in (accelerate's autocast): bf16, fp16, or none."""
    x = torch.randn(4, 8)
    w = torch.randn(8, 3)
    with prec.autocast("cpu", "bf16"):
        assert (x @ w).dtype == torch.bfloat16
    with prec.autocast("cpu", "fp16"):
        assert (x @ w).dtype == torch.float16
    with prec.autocast(torch.device("cpu"), "no"):
        assert (x @ w).dtype == torch.float32


def test_cuda_runs_get_deterministic_kernels_and_tf32(monkeypatch):
    import os

    from serlib.training.runtime import configure_backends

    calls = []
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda on, warn_only=False: calls.append((on, warn_only)))
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32)
    try:
        cudnn.deterministic, cudnn.benchmark, matmul.allow_tf32 = False, True, False
        configure_backends("cpu")
        assert not calls and cudnn.benchmark and not matmul.allow_tf32  # nothing changes on CPU
        configure_backends("cuda")
        assert calls == [(True, True)] and cudnn.deterministic and not cudnn.benchmark
        assert matmul.allow_tf32 and cudnn.allow_tf32
    finally:
        cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = saved
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] in (":4096:8", ":16:8")  # cuBLAS's deterministic workspaces


def _precisions(node, path=""):
    """Every `precision` value anywhere in a profile, with its key path."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key == "precision":
                yield where, value
            yield from _precisions(value, where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _precisions(value, f"{path}[{i}]")


def test_no_shipped_profile_fixes_bf16_on_a_cpu_without_it(cpu):
    """Every profile leaves precision to the hardware, so an AVX2-only CPU trains in fp32 everywhere."""
    from serlib.study.params import available_profiles, load_profile, notebook_params
    from serlib.study.runcard import RunCard

    cpu(EMULATED)
    for path in available_profiles():
        profile = load_profile(path)
        assert list(_precisions(profile)) == [("common.precision", "auto")], path
        for notebook in profile["notebooks"]:
            params = {**notebook_params(path, notebook), "device": "cpu"}
            card = RunCard(notebook, params)
            assert card.train_config({}).precision == "no", (path, notebook)
            assert "no native bf16" in card.table().loc["precision"].iloc[0]
