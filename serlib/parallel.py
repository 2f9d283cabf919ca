"""Many small independent CPU fits on every core: one single-threaded worker process per core.

Small heads train fastest on one thread (two threads that wait on each other cost more than they
gain, measured on a shared 2-core machine), so a sweep of such fits run one after another leaves all
cores but one idle. `run_jobs` runs them in worker processes, one thread each, and returns their
results in job order. Workers are spawned (a fresh interpreter: no forked OpenMP or CUDA state) and
every job seeds itself, so the results equal those of the same jobs run one by one here.

The job function must be importable (a module-level function of serlib) and its arguments and
result picklable; each job's arguments travel to a worker, so jobs should carry features of modest
size (pooled vectors, not frame sequences). One worker (one core, a GPU, several launched processes,
or SERLIB_WORKERS=1) runs the jobs in this process.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch

from .distributed import launched
from .progress import progress_bar
from .training.runtime import resolve_device

ENV = "SERLIB_WORKERS"  # worker processes for CPU sweeps; unset: one per core


def worker_count(jobs: int, device: str = "cpu") -> int:
    """Workers for `jobs` small fits on `device`: one per core on a CPU (at most one per job, and
    `$SERLIB_WORKERS` if set), else 1; `device` as a profile gives it (auto resolves here)."""
    device = resolve_device(device) if str(device or "auto").lower() == "auto" else str(device).lower()
    if device != "cpu" or launched() or jobs < 2:
        return 1
    wanted = os.environ.get(ENV)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if wanted:
        try:
            cores = int(wanted)
        except ValueError:
            raise ValueError(f"{ENV}={wanted!r} is not a number of worker processes") from None
    return max(1, min(cores, jobs))


def _worker_start() -> None:
    """One thread per worker; Ctrl-C and a kernel's shutdown interrupt reach the parent, which ends
    the workers (an interrupted idle worker only printed a traceback)."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_jobs(fn: Callable[..., Any], jobs: Sequence[tuple], desc: str, device: str = "cpu",
             progress: bool = True) -> list:
    """`[fn(*job) for job in jobs]`, in worker processes when there is more than one core to use."""
    workers = worker_count(len(jobs), device)
    bar = progress_bar(len(jobs), f"{desc} ({workers} process{'es' if workers > 1 else ''})", progress)
    try:
        if workers == 1:
            out = []
            for job in jobs:
                out.append(fn(*job))
                bar.update(1)
            return out
        futures = [_pool(workers).submit(fn, *job) for job in jobs]
        try:
            for future in futures:  # in job order; a failed job raises here with its own traceback
                future.result()
                bar.update(1)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        return [future.result() for future in futures]
    finally:
        bar.close()


_pools: dict[int, ProcessPoolExecutor] = {}


def _pool(workers: int) -> ProcessPoolExecutor:
    """The worker processes, started at the first sweep and kept for the next ones (a spawned
    worker's start and imports take seconds); they end with this process."""
    pool = _pools.get(workers)
    if pool is None or getattr(pool, "_broken", False):
        # A Jupyter kernel ends its child processes itself when it shuts down, before this process
        # can end the pool, and multiprocessing's resource tracker (a process started with the pool,
        # reading this environment) then warns about the pool's queue locks it removes: expected here.
        quiet = "ignore:resource_tracker:UserWarning"
        if quiet not in os.environ.get("PYTHONWARNINGS", ""):
            os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), quiet]))
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_start)
        _pools[workers] = pool
        atexit.register(pool.shutdown, wait=True, cancel_futures=True)
    return pool
