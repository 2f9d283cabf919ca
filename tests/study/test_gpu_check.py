"""`serlib gpu-check` as a dry run on CPU (device cpu, a tiny Whisper), and the study runner under
torchrun with 2 processes: the commands a GPU machine runs, exercised where there is none."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from serlib.encoders.backbones import ct2_files
from serlib.study.gpu_check import main as gpu_check
from serlib.training.precision import choose_precision
from tests.whisper_fixtures import save_tiny_whisper_with_tokenizer

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(ct2_files("base") is None, reason="needs the Whisper tokenizer of the base package")]


@pytest.fixture(scope="module")
def dry_run_profile(tmp_path_factory):
    """params/gpu_check.yaml on CPU with a tiny random Whisper, 2 utterances per speaker, 4 steps."""
    folder = tmp_path_factory.mktemp("dry")
    tiny = str(save_tiny_whisper_with_tokenizer(folder / "tiny-whisper"))
    short = {"max_steps": 4, "eval_every": 2}
    profile = {"extends": str(ROOT / "params" / "gpu_check.yaml"), "profile": "gpu_check_dry_run",
               "description": "gpu_check on CPU with a tiny model (tests)",
               "common": {"device": "cpu", "whisper": tiny, "per_speaker": 2, "cache_dir": str(folder / "cache")},
               "02_whisper_er": {"baseline_train": short, "train": short},
               "03_serial_mtl": {"models": {tiny: None}, "zero_shot_utterances": 2, "baseline_train": short,
                                 "train": short},
               "04_phoneme_mtl": {"finetune": {"train": short}}}
    path = folder / "gpu_check_dry_run.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


@pytest.fixture
def kernels_env(data_root, monkeypatch):
    monkeypatch.setenv("SERLIB_DATA", str(data_root))
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)  # kernels as in a real run


def test_gpu_check_runs_end_to_end_on_cpu_and_reports_speed_memory_and_ua(dry_run_profile, kernels_env, tmp_path):
    reports = tmp_path / "reports"
    assert gpu_check(["--profile", str(dry_run_profile), "--reports", str(reports)]) == 0
    table = pd.read_csv(reports / "gpu_check.csv")
    assert table["notebook"].tolist() == ["02_whisper_er", "03_serial_mtl", "04_phoneme_mtl"]
    assert (table["status"] == "ok").all() and table["device"].str.startswith("cpu").all()
    assert (table["precision"] == choose_precision("auto", "cpu").name).all() and (table["runs"] >= 2).all()
    assert (table["train utt/s"] > 0).all() and table["peak GPU memory GB"].isna().all()  # no GPU here
    for cell in table["pooled UA %"]:  # "corpus method UA; ..." per trained system
        values = [float(part.rsplit(" ", 1)[1]) for part in cell.split("; ")]
        assert values and all(0 <= v <= 100 for v in values)
    runs = pd.read_csv(reports / "02_whisper_er.runs.csv")
    assert set(runs["method"]) == {"conventional", "Whisper-ER STL"} and (runs["effective_batch"] == 16).all()


def test_the_runner_under_torchrun_trains_in_two_processes_and_writes_once(dry_run_profile, kernels_env, tmp_path):
    reports = tmp_path / "reports"
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    scratch_before = set(Path(tempfile.gettempdir()).glob("serlib-rank*"))
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           "-m", "serlib.cli", "study", "--profile", str(dry_run_profile),
                           "--notebooks", "02_whisper_er", "--reports", str(reports)],
                          cwd=ROOT, env=env | {"OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    runs = pd.read_csv(reports / "02_whisper_er.runs.csv")
    trained = runs[runs["steps"] > 0]
    # each training batch was split over the 2 processes: twice the batch per optimizer step
    assert (trained["processes"] == 2).all() and (trained["effective_batch"] == 32).all()
    results = pd.read_csv(reports / "results.csv")
    keys = ["notebook", "corpus", "protocol", "model", "method", "fold", "metric"]
    assert len(results) and not results.duplicated(keys).any() and set(results["notebook"]) == {"02_whisper_er"}
    assert sorted(p.name for p in reports.iterdir() if not p.name.startswith(".")) == sorted(
        ["02_whisper_er.html", "02_whisper_er.ipynb", "02_whisper_er.runs.csv", "index.html", "results.csv",
         "run.json"])
    assert set(Path(tempfile.gettempdir()).glob("serlib-rank*")) == scratch_before  # the other's scratch is gone
    assert done.stderr.count("[1/1] 02_whisper_er") == 1  # one process speaks for the run
