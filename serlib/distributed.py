"""Several processes (`torchrun` / `accelerate launch`): who writes, where ranks wait, how results meet.

Under a launcher every process runs the same notebook code (see `serlib.study.runner`); the
trainer shards each training batch across them (DDP through accelerate). Around it:
- `main_first`: files shared by all processes (feature cache, converted weights) are written by
  the main process alone while the others wait, then read by everyone;
- `gather`: work done per test item (beam search) is split across processes and the results put
  back in order on every process, so every process holds the same predictions;
- `is_main`: only the main process writes results and reports.
In one process every function here is the identity or does nothing, so library code calls them
unconditionally. One machine only: the processes share the file system and `MASTER_ADDR`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")
# Ranks wait for each other inside a notebook (a cold feature cache built by the main process, a
# test set decoded by the slowest one); longer waits than this mean a process died.
TIMEOUT = timedelta(hours=6)
_nested = [0]  # main_first blocks entered and not yet left (in this process)


def launched() -> bool:
    """Whether a launcher started several processes (its WORLD_SIZE environment variable)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def init_from_env() -> None:
    """Join the launcher's process group (once): NCCL with one GPU per process (LOCAL_RANK), else gloo.

    Accelerate then finds the group set up and uses it; called by every notebook's run card.
    """
    if not launched() or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl", timeout=TIMEOUT)
    else:
        dist.init_process_group("gloo", timeout=TIMEOUT)


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """The main process runs the block first; the others wait for it, then run it (finding its files).

    Re-entrant: inside a main_first block (the cache building, which may first convert weights) an
    inner one only runs its block, so the outer barrier is the one that releases the others."""
    outer = _nested[0] == 0
    if outer and not is_main():
        barrier()
    _nested[0] += 1
    try:
        yield
    finally:
        _nested[0] -= 1
    if outer and is_main():
        barrier()


def all_gather(obj: Any) -> list[Any]:
    """Every process's `obj`, in rank order (one process: [obj])."""
    if world_size() == 1:
        return [obj]
    parts: list[Any] = [None] * world_size()
    dist.all_gather_object(parts, obj)
    return parts


def broadcast_tensors(tensors) -> None:
    """The main process's values of `tensors` (on this process's device) copied into every process's."""
    if world_size() > 1:
        for t in tensors:
            dist.broadcast(t, src=0)


def gather(fn: Callable[[Sequence[T]], list[Any]], items: Sequence[T]) -> list[Any]:
    """fn(items), with the items split across processes (every world_size-th) and the results put back
    in item order on every process. `fn` returns one result per item it is given."""
    n = world_size()
    if n == 1:
        return list(fn(items))
    mine = list(range(rank(), len(items), n))
    results = list(fn([items[i] for i in mine])) if mine else []
    if len(results) != len(mine):
        raise ValueError(f"fn gave {len(results)} results for {len(mine)} items")
    out: list[Any] = [None] * len(items)
    for part in all_gather(list(zip(mine, results))):
        for i, result in part:
            out[i] = result
    return out
