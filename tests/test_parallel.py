"""`serlib.parallel`: how many workers, results in job order, failures surface."""

import pytest

from serlib.parallel import run_jobs, worker_count


def test_worker_count_follows_cores_jobs_device_and_the_override(monkeypatch):
    monkeypatch.delenv("SERLIB_WORKERS", raising=False)
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
    assert run_jobs(divmod, [(7, 2), (9, 4)], "divmod", progress=False) == [(3, 1), (2, 1)]
    monkeypatch.setenv("SERLIB_WORKERS", "2")  # results in job order: tests/methods/test_emo_dna.py
    with pytest.raises(ZeroDivisionError):
        run_jobs(divmod, [(1, 1), (1, 0)], "divmod", progress=False)
