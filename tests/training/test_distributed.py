"""Two processes on CPU (gloo), as `torchrun` starts them: the trainer's data parallelism and the
rules of who writes, against a one-process run with the same effective batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from serlib.encoders.backbones import ct2_files
from serlib import distributed

WORKER = Path(__file__).with_name("ddp_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def _run(out: Path, processes: int, batch_size: int, *extra: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    if processes == 1:
        cmd = [sys.executable, str(WORKER), str(out), str(batch_size), *extra]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               str(WORKER), str(out), str(batch_size), *extra]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same training in 2 processes of batch 4 and in 1 process of batch 8 (Whisper-ER too where
    the real tokenizer is installed)."""
    extra = ("whisper_er",) if ct2_files("base") is not None else ()
    two, one = tmp_path_factory.mktemp("two"), tmp_path_factory.mktemp("one")
    _run(two, 2, 4, *extra)
    _run(one, 1, 8, *extra)
    return two, one


def test_gradients_sync_and_the_weights_equal_one_process_with_the_same_effective_batch(runs):
    two, one = runs
    rank0, rank1 = (load_file(two / f"weights-2-rank{r}.safetensors") for r in (0, 1))
    alone = load_file(one / "weights-1-rank0.safetensors")
    for name in rank0:
        # each process saw only its half of every batch: equal weights mean the gradients were synchronised
        torch.testing.assert_close(rank0[name], rank1[name], rtol=0, atol=0)
        torch.testing.assert_close(rank0[name], alone[name], rtol=1e-5, atol=1e-6)  # float sums in another order
    torch.manual_seed(0)  # the worker's initial classifier: training moved it
    initial = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).state_dict()
    assert not torch.allclose(initial["0.weight"], rank0["0.weight"])


def test_the_run_is_saved_once_with_its_process_count_and_refuses_another(runs):
    two, _ = runs
    progress = json.loads((two / "run" / "progress.json").read_text())
    assert progress["config"]["processes"] == 2 and [r["step"] for r in progress["history"]] == [4, 8]
    assert len(list((two / "run").glob("state-*"))) == 1 and not list((two / "run").glob("*.tmp"))
    rng = torch.load(two / "run" / progress["state"] / "train.pt", weights_only=True)["rng"]
    assert len(rng) == 2 and not torch.equal(rng[0]["torch"], rng[1]["torch"])  # each process resumes its own
    # resuming in one process (another data split, another effective batch) is refused by name
    from tests.training.ddp_worker import tiny_classifier

    with pytest.raises(ValueError, match="processes"):
        tiny_classifier(two, 4)


def test_only_the_main_process_writes_and_it_writes_first(runs):
    two, _ = runs
    assert [(two / f"seed-rank{r}.txt").read_text() for r in (0, 1)] == ["3", "4"]  # seed + rank: own dropout
    assert (two / "order.txt").read_text().split() == ["0", "1"]  # main_first: the main process, then the other
    assert (two / "main-was-done.txt").read_text() == "True"  # a nested main_first released nobody early
    results = pd.read_csv(two / "reports" / "results.csv")
    assert results["value"].tolist() == [0.0]  # one row, the main process's
    gathered = [json.loads((two / f"gather-rank{r}.json").read_text()) for r in (0, 1)]
    assert gathered[0] == gathered[1] == [i * i for i in range(7)]  # split across processes, put back in order


def test_one_process_needs_no_process_group():
    assert not distributed.launched() and distributed.world_size() == 1 and distributed.is_main()
    assert distributed.gather(lambda part: [x + 1 for x in part], [1, 2]) == [2, 3]
    with distributed.main_first():
        pass
