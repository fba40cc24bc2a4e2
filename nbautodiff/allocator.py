"""glibc's ``malloc`` put, at import, in the state it reaches by itself once a process has freed
a large array, so that derivative calls do not page-fault their buffers in on every call.

A gradient call allocates its tape and shadows afresh (a tape of a few MB for a loop over
thousands of examples) and frees them when it returns. glibc serves blocks above its mmap
threshold (128 KiB at start) with ``mmap`` and unmaps them at ``free``; it raises the threshold
to a freed block's size (up to 32 MiB) and trims the heap only above twice that, but only once
the process frees such a block. Until then, every call maps its tape anew and faults each page
in: measured on the fastmath MLP gradient of ``benchmarks/reverse_mode.py`` (one core), 4.5-5.0
ms per call in a process that held other inputs, 1.9 ms in the state set here (2026-12-07,
``benchmarks/RESULTS.md``). Whether that state was reached depended on what the process had
freed before, which is what made our gradients vary by up to 2.6x between processes.

:func:`settle` sets the thresholds glibc would end up with: blocks below 32 MiB from the heap,
and the heap trimmed only when 64 MiB at its top are free (at most that much memory kept that
the process no longer uses). Elsewhere (another C library, another system) it does nothing, and
``NBAUTODIFF_MALLOC=default`` in the environment leaves the allocator as it is.
"""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1      # glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024     # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD   # what glibc sets with it
SKIP_VARIABLE = "NBAUTODIFF_MALLOC"


def settle() -> bool:
    """Set glibc's mmap and trim thresholds as described above; True if they were set."""
    if os.environ.get(SKIP_VARIABLE) == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):       # no dlopen(NULL), or a C library without mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) \
        and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
