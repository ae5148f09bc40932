"""Keep freed memory in the process instead of handing it back to the OS after every large tensor.

glibc serves an allocation above its mmap threshold with a fresh ``mmap`` and returns it with
``munmap`` on free, so the next tensor of that size page-faults (and the kernel zeroes) every 4 KiB
page again. Searching re-allocates the same large tensors once per query: PLAID decompresses and
normalises about 2,000 candidates' token vectors (~70 MB) per query, and there the kernel's page
work took 41% of the CPU time (150 queries: user 13.0 s, sys 7.8 s, wall 11.3 s; with this setting
user 14.1 s, sys 0.2 s, wall 7.8 s; ``docs/benchmark.md``). Setting glibc's mmap and trim thresholds
high makes such blocks come from, and go back to, the heap, where the next query reuses them. This
is what the ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` environment variables do, set
from inside the process because they must be in place before the first large allocation and a user
should not have to export them. Results are unchanged (only where memory comes from); the cost is a
resident size that does not shrink until the process ends, fine for a benchmark or search job.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # blocks below 1 GiB come from the heap
FALLBACK_MMAP_THRESHOLD = 32 << 20  # the most that glibc before 2.35 accepts on 64-bit (mallopt(3))
TRIM_THRESHOLD = (1 << 31) - 1  # never trim the heap top back to the OS


def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True when both took effect (the mmap
    threshold at 1 GiB, or at 32 MiB where an older glibc refuses more). False, with nothing
    changed, where the C library is not glibc (macOS, musl): the job then runs as before, only
    slower on PLAID."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    mmap = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) or bool(mallopt(_M_MMAP_THRESHOLD, FALLBACK_MMAP_THRESHOLD))
    trim = bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return mmap and trim
