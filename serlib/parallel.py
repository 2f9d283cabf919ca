"""Many small independent CPU fits on every core: one worker process per core (or per `threads`).

Small heads train fastest on one thread (two threads that wait on each other cost more than they
gain, measured on a shared 2-core machine), so a sweep of such fits run one after another leaves all
cores but one idle. `run_jobs` runs them in worker processes, each with the caller's thread count,
and returns their results in job order. Workers are spawned (a fresh interpreter: no forked OpenMP
or CUDA state), every job seeds itself and runs on as many threads as it would here, so the results
equal those of the same jobs run one by one in this process.

Jobs and results travel as plain pickled bytes through the pool's pipe, not as torch's shared-memory
tensors: those hold one open file per tensor while a process keeps it (a sweep returning models, or
sending one tensor per utterance, then exceeds the usual limit of 1,024 open files) and need a large
/dev/shm (64 MB in a default Docker container). Each job's arguments are copied to its worker, so at
most `workers + 1` jobs are prepared at a time. The job function must be importable (a module-level
function of serlib). One worker (one core, a GPU, several launched processes, or SERLIB_WORKERS=1)
runs the jobs in this process.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import pickle
import signal
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch

from .distributed import launched
from .progress import progress_bar
from .training.runtime import resolve_device

ENV = "SERLIB_WORKERS"  # worker processes for CPU sweeps; unset: one per core (per `threads` cores)


def worker_count(jobs: int, device: str = "cpu", threads: int = 1) -> int:
    """Workers for `jobs` small fits of `threads` threads each on `device`: cores // threads on a CPU
    (at most one per job; `$SERLIB_WORKERS` if set), else 1; `device` as a profile gives it (auto
    resolves here)."""
    device = resolve_device(device) if str(device or "auto").lower() == "auto" else str(device).lower()
    if device != "cpu" or launched() or jobs < 2:
        return 1
    wanted = os.environ.get(ENV)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = cores // max(1, threads)
    if wanted:
        try:
            workers = int(wanted)
        except ValueError:
            raise ValueError(f"{ENV}={wanted!r} is not a number of worker processes") from None
    return max(1, min(workers, jobs))


def _worker_start() -> None:
    """Ctrl-C and a kernel's interrupt go to the parent, which then ends the workers (`_end_pool`);
    an interrupted worker would only print a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _call(payload: bytes, threads: int) -> bytes:
    """Run one pickled job (fn, args) in a worker on `threads` threads; its result pickled."""
    torch.set_num_threads(threads)
    fn, args = pickle.loads(payload)
    return pickle.dumps(fn(*args), protocol=pickle.HIGHEST_PROTOCOL)


def _payload(fn: Callable, job: tuple) -> bytes:
    try:
        return pickle.dumps((fn, tuple(job)), protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as e:
        raise TypeError(f"a job of {getattr(fn, '__name__', fn)!r} cannot go to a worker process: {e}. The job "
                        f"function must be a module-level function and its arguments picklable (no lambdas); "
                        f"{ENV}=1 runs the jobs in this process") from e


def run_jobs(fn: Callable[..., Any], jobs: Sequence[tuple], desc: str, device: str = "cpu",
             progress: bool = True, threads: int | None = None) -> list:
    """`[fn(*job) for job in jobs]`, in worker processes when there is more than one to use; every job
    runs on `threads` threads (None: this process's current count), here or in a worker."""
    threads = threads or torch.get_num_threads()
    workers = worker_count(len(jobs), device, threads)
    bar = progress_bar(len(jobs), f"{desc} ({workers} process{'es' if workers > 1 else ''})", progress)
    try:
        if workers == 1:
            return _run_here(fn, jobs, threads, bar)
        pool, pending, out = _pool(workers), deque(), []

        def take_oldest() -> None:  # results in job order; a failed job raises here
            out.append(pickle.loads(pending.popleft().result()))
            bar.update(1)

        try:
            for job in jobs:  # at most workers + 1 prepared jobs at a time (each a copy of its inputs)
                pending.append(pool.submit(_call, _payload(fn, job), threads))
                if len(pending) > workers:
                    take_oldest()
            while pending:
                take_oldest()
        except BaseException:
            _end_pool(workers)  # jobs already in the workers would otherwise run on after Ctrl-C
            raise
        return out
    finally:
        bar.close()


def _run_here(fn: Callable, jobs: Sequence[tuple], threads: int, bar) -> list:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = []
        for job in jobs:
            out.append(fn(*job))
            bar.update(1)
        return out
    finally:
        torch.set_num_threads(before)


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


def _end_pool(workers: int) -> None:
    """Stop a pool's workers now, running jobs included (after a failure or an interrupt)."""
    pool = _pools.pop(workers, None)
    if pool is None:
        return
    for process in list(getattr(pool, "_processes", {}).values()):
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
