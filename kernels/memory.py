"""How much memory generated code may take for its tape and checkpoints, checked before allocating.

A reverse pass through a long loop can need a tape larger than the machine's memory; allocating
it would fail deep inside numba (or push the machine into swap). :func:`check_allocation` runs
before every tape growth and checkpoint buffer and raises :class:`TapeMemoryError` (a
:class:`~nbautodiff.errors.TapeMemoryRefused`), which suggests checkpointing, when the allocation
would exceed the limit: the environment variable ``NBAUTODIFF_MEMORY_LIMIT`` (bytes, or with a
binary suffix ``K``, ``M``, ``G``) when set, else the memory the operating system reports as
available, read at the moment of the allocation. Allocations under ``CHECKED_FROM`` bytes are
not checked: they cannot exhaust a machine, and a check costs a call into Python.

Compiled code (:func:`affordable`, :func:`checked`) reads the limit through a C callback into
:func:`available_bytes` (a ctypes function registered with LLVM under the symbol
``nbautodiff_memory_limit`` and called as a numba external function, so the helpers stay
nopython code that numba can cache) and raises the error from the numbers alone.
"""
from __future__ import annotations

import ctypes
import os

import llvmlite.binding as llvm
from numba.core import types

from nbautodiff.errors import MEMORY_LIMIT_VARIABLE, TapeMemoryRefused, human_bytes

from .compiled import helper

LIMIT_VARIABLE = MEMORY_LIMIT_VARIABLE
CHECKED_FROM = 64 << 20       # smaller allocations are not checked (reading the limit costs ~us)
_SUFFIXES = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
human = human_bytes


def available_bytes() -> int:
    """The allocation limit: ``NBAUTODIFF_MEMORY_LIMIT`` if set, else the available memory."""
    setting = os.environ.get(LIMIT_VARIABLE, "").strip()
    if setting:
        scale = _SUFFIXES.get(setting[-1].upper(), 1)
        return int(float(setting[:-1] if scale != 1 else setting) * scale)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def check_allocation(nbytes: int, what: int) -> None:
    """Raise :class:`TapeMemoryError` when ``nbytes`` more bytes exceed the limit; ``what`` is 0
    for a tape, 1 for checkpoint buffers."""
    limit = available_bytes()
    if nbytes > limit:
        raise TapeMemoryRefused(nbytes, what, limit)


def affordable_length(length: int, needed: int, itemsize: int) -> int:
    """The length to grow a tape to: ``length`` if it fits in the limit, else ``needed`` (the
    least that holds the values) if that fits; otherwise :class:`TapeMemoryError`."""
    limit = available_bytes()
    if length * itemsize <= limit:
        return length
    check_allocation(needed * itemsize, 0)
    return needed


def _limit_for_compiled_code() -> int:
    """:func:`available_bytes` for the C callback, which cannot raise: -1 when the limit cannot
    be read (a malformed ``NBAUTODIFF_MEMORY_LIMIT``)."""
    try:
        return available_bytes()
    except Exception:  # noqa: BLE001 (a malformed NBAUTODIFF_MEMORY_LIMIT)
        return -1


_LIMIT_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int64)(_limit_for_compiled_code)
llvm.add_symbol("nbautodiff_memory_limit", ctypes.cast(_LIMIT_CALLBACK, ctypes.c_void_p).value)
_available = types.ExternalFunction("nbautodiff_memory_limit", types.int64())


@helper(inline="always")
def _limit():
    """:func:`available_bytes` from compiled code; a ValueError when it cannot be read."""
    limit = _available()
    if limit < 0:
        raise ValueError("NBAUTODIFF_MEMORY_LIMIT is not a size (bytes, or with a suffix K, M, G "
                         "or T)")
    return limit


@helper
def affordable(length, needed, itemsize):
    """:func:`affordable_length` from compiled code."""
    limit = _limit()
    if length * itemsize <= limit:
        return length
    if needed * itemsize > limit:
        raise TapeMemoryRefused(needed * itemsize, 0, limit)
    return needed


@helper
def checked(nbytes, what):
    """:func:`check_allocation` from compiled code (``what``: 0 tape, 1 checkpoints)."""
    limit = _limit()
    if nbytes > limit:
        raise TapeMemoryRefused(nbytes, what, limit)
