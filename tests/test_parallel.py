"""`serlib.parallel`: how many workers, results in job order, failures surface, many tensors travel."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from serlib.parallel import run_jobs, worker_count


def test_worker_count_follows_cores_threads_jobs_device_and_the_override(monkeypatch):
    monkeypatch.delenv("SERLIB_WORKERS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert worker_count(10) == 4 and worker_count(10, threads=2) == 2 and worker_count(10, threads=8) == 1
    assert worker_count(1) == 1
    assert worker_count(10, device="cuda") == 1
    monkeypatch.setenv("SERLIB_WORKERS", "3")
    assert worker_count(10) == 3 and worker_count(2) == 2
    monkeypatch.setenv("WORLD_SIZE", "2")  # several launched processes: each does its own part
    assert worker_count(10) == 1
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setenv("SERLIB_WORKERS", "many")
    with pytest.raises(ValueError, match="SERLIB_WORKERS"):
        worker_count(4)


def test_jobs_run_in_this_process_with_one_worker_and_a_failing_worker_job_raises(monkeypatch):
    monkeypatch.setenv("SERLIB_WORKERS", "1")
    before = torch.get_num_threads()
    assert run_jobs(divmod, [(7, 2), (9, 4)], "divmod", progress=False, threads=1) == [(3, 1), (2, 1)]
    assert torch.get_num_threads() == before  # the jobs' thread count is restored afterwards
    monkeypatch.setenv("SERLIB_WORKERS", "2")  # results in job order: tests/methods/test_emo_dna.py
    with pytest.raises(ZeroDivisionError):
        run_jobs(divmod, [(1, 1), (1, 0)], "divmod", progress=False)


def test_jobs_run_in_other_processes_on_the_threads_asked_for(monkeypatch):
    monkeypatch.setenv("SERLIB_WORKERS", "2")
    out = run_jobs(torch.get_num_threads, [()] * 3, "threads", progress=False, threads=1)
    assert out == [1, 1, 1]
    pids = run_jobs(os.getpid, [()] * 4, "pids", progress=False, threads=1)
    assert os.getpid() not in pids


def test_an_unpicklable_job_names_the_way_out(monkeypatch):
    monkeypatch.setenv("SERLIB_WORKERS", "2")
    with pytest.raises(TypeError, match="SERLIB_WORKERS=1"):
        run_jobs(divmod, [(lambda: 1, 1), (1, 1)], "divmod", progress=False, threads=1)


def test_hundreds_of_tensors_travel_under_a_low_open_file_limit():
    """Torch's shared-memory tensors would hold one open file each; plain bytes hold none."""
    script = textwrap.dedent("""
        import resource, torch
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))
        from serlib.parallel import run_jobs
        tensors = [torch.full((4,), float(i)) for i in range(300)]
        out = run_jobs(torch.stack, [(tensors,), (tensors,)], "stack", progress=False, threads=1)
        assert all(o.shape == (300, 4) and float(o[299, 0]) == 299.0 for o in out)
        back = run_jobs(torch.unbind, [(out[0],), (out[1],)], "unbind", progress=False, threads=1)
        assert sum(len(b) for b in back) == 600
        print("ok")
    """)
    env = {**os.environ, "SERLIB_WORKERS": "2"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
