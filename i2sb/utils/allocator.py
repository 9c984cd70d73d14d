"""Host memory reuse for CPU work: keep freed tensor memory in the process instead of returning it.

With glibc's defaults every tensor above the dynamic mmap threshold is a fresh ``mmap`` that the kernel
zero-fills page by page on first touch and unmaps when freed. A U-Net forward allocates and frees its
activations on every call, so a CPU forward spends a noticeable share of its time in page faults (the
measurements: scripts/README.md, bench.py). Raising the mmap threshold to its maximum and never trimming the heap
lets freed activations be reused as they are, as jemalloc/tcmalloc do.

The command-line tools call :func:`reuse_freed_memory` once per process; library code never does (it is a
process-wide setting: a notebook can call it explicitly). The resident memory then stays at its peak.
``I2SB_MALLOC=system`` leaves the allocator as it is.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc malloc.h: free memory at the top of the heap above this is returned to the OS
M_MMAP_THRESHOLD = -3  # requests at least this large are served by their own mmap
MMAP_THRESHOLD_MAX = 4 * 1024 * 1024 * ctypes.sizeof(ctypes.c_long)  # glibc's upper limit: 32 MiB on 64-bit
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: 2 GiB, i.e. practically never


def reuse_freed_memory() -> bool:
    """Tune glibc malloc to keep freed memory (mmap threshold 32 MiB, no trimming); True where applied.

    A no-op returning False off Linux, on a C library without ``mallopt`` (musl), or with
    ``I2SB_MALLOC=system``.
    """
    if not sys.platform.startswith("linux") or os.environ.get("I2SB_MALLOC", "").lower() == "system":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
