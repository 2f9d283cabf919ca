"""The benchmarks: the floor arithmetic on a constructed case, and every real step case on real data."""

from __future__ import annotations

import pytest

from serlib.bench import steps as bench_steps
from serlib.bench.steps import StepCase, run_step_bench
from serlib.encoders.backbones import ct2_files
from serlib.study.params import notebook_params


def test_floor_is_flops_over_the_measured_gemm_rate(monkeypatch):
    monkeypatch.setattr(bench_steps, "gemm_gflops", lambda precision, threads: 100.0)
    monkeypatch.setattr(bench_steps, "probe_cpu_bf16", lambda: type("P", (), {"native": False})())
    case = StepCase("fake", "00", batch_size=8, threads=1, seconds_per_step=lambda p, w, s: 0.05,
                    flops=lambda: 2e9)
    table = run_step_bench([case], target_s=0.1, progress=lambda line: None)
    row = table.iloc[0]
    assert list(table["precision"]) == ["fp32"]  # no bf16 row where bf16 is not native
    assert row["floor ms"] == pytest.approx(20.0) and row["measured ms"] == pytest.approx(50.0)
    assert row["measured/floor"] == pytest.approx(2.5) and row["utt/s"] == pytest.approx(160.0)


@pytest.mark.slow
@pytest.mark.skipif(ct2_files("base") is None, reason="Whisper base CTranslate2 packages not installed")
def test_every_method_of_the_study_has_a_timed_step(data_root, splits_root, monkeypatch):
    monkeypatch.setenv("SERLIB_DATA", str(data_root))
    monkeypatch.setenv("SERLIB_SPLITS", str(splits_root))
    cases = bench_steps.step_cases("smoke", utterances=24)
    assert [c.notebook for c in cases] == ["01", "01", "01", "02", "03", "04", "05"]
    for case in cases:
        with bench_steps.thread_count(case.threads):
            assert case.flops() > 0, case.method
            assert 0 < case.seconds_per_step("no", 1, 1) < 60, case.method


@pytest.mark.parametrize("profile", ["default", "smoke", "full"])
def test_every_notebook_of_a_profile_has_ravdess_batches_to_time(profile):
    # the default 03 runs EmoDB only: the benchmark then takes the catalogue's RAVDESS entry
    for notebook in ("01_baselines", "02_whisper_er", "03_serial_mtl", "04_phoneme_mtl", "05_cross_corpus"):
        params = notebook_params(profile, notebook)
        assert params["corpora"][bench_steps.ravdess_selection(params)]["loader"] == "ravdess", notebook


def test_a_catalogue_without_ravdess_is_refused_by_name():
    with pytest.raises(ValueError, match="no RAVDESS entry"):
        bench_steps.ravdess_selection({"protocols": {"urdu": "x"}, "corpora": {"urdu": {"loader": "urdu"}}})
