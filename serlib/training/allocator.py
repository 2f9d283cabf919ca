"""Keep freed memory for reuse on glibc: large training tensors otherwise cost page faults every step.

glibc's malloc hands every block above 32 MB to the kernel (mmap) and returns it on free, so a
tensor of that size made anew in each step (a batch of cross-attention keys and values, packed
frames) is page-faulted in again every time: that took 20 of 40 ms of a Phoneme-MTL step and about
15 % of a Whisper-ER step on the 2-core development machine. Raising the mmap and trim thresholds
makes such blocks come from, and return to, the process's heap, like PyTorch's caching allocator on
CUDA. No-op off glibc; `SERLIB_KEEP_FREED_MEMORY=0` switches it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap
TRIM_THRESHOLD = (1 << 31) - 1  # keep up to 2 GiB of freed heap before giving it back

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's thresholds once per process; True when they are in effect."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("SERLIB_KEEP_FREED_MEMORY", "1") == "0":
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl without mallopt)
        return _done
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
