"""Keep freed memory in the process instead of returning it to the kernel (glibc only).

A training or sampling step allocates and frees the same large activation buffers every
iteration. With glibc's defaults, blocks above the mmap threshold are mapped for every allocation
and unmapped on free, so each step touches gigabytes of fresh pages and spends much of its time in
page faults (the official code's MP-20 sampler spends most of its time there). Setting
``M_MMAP_MAX = 0`` serves every allocation from the heap and a high ``M_TRIM_THRESHOLD`` keeps the
heap's free top, so after the first step the same pages are reused. Peak memory is unchanged
(measured in docs/BENCHMARKS.md); memory is returned when the process exits.

``tune_allocator()`` is called by the training and sampling entry points; it is a no-op where glibc
is not the C library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import lru_cache

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1


@lru_cache(maxsize=1)
def tune_allocator() -> bool:
    """Apply the settings once per process; True if they took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok_mmap = mallopt(_M_MMAP_MAX, 0) == 1
    ok_trim = mallopt(_M_TRIM_THRESHOLD, _INT_MAX) == 1
    return ok_mmap and ok_trim
