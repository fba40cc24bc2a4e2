"""How much memory generated code may take for its tape and checkpoints, checked before allocating.

A reverse pass through a long loop can need a tape larger than the machine's memory; allocating
it would fail deep inside numba (or push the machine into swap). :func:`check_allocation` runs
before every tape growth and checkpoint buffer and raises :class:`TapeMemoryError`, which
suggests checkpointing, when the allocation would exceed the limit: the environment variable
``NBAUTODIFF_MEMORY_LIMIT`` (bytes, or with a binary suffix ``K``, ``M``, ``G``) when set, else the
memory the operating system reports as available. Allocations under ``CHECKED_FROM`` bytes
are not checked: they cannot exhaust a machine, and a check costs a call into Python.
"""
from __future__ import annotations

import os

import numba

from nbautodiff.errors import TapeMemoryError

LIMIT_VARIABLE = "NBAUTODIFF_MEMORY_LIMIT"
CHECKED_FROM = 64 << 20       # smaller allocations are not checked (reading the limit costs ~us)
_SUFFIXES = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


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


def human(nbytes: float) -> str:
    """``nbytes`` written for people, in binary units: ``812.3 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(nbytes) < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} GiB"


def check_allocation(nbytes: int, what: int) -> None:
    """Raise :class:`TapeMemoryError` when ``nbytes`` more bytes exceed the limit; ``what`` is 0
    for a tape, 1 for checkpoint buffers."""
    limit = available_bytes()
    if nbytes <= limit:
        return
    kind = "a tape" if what == 0 else "checkpoint buffers"
    hint = ("checkpoint the long loops: nad.grad(f, checkpoint=True) (or value_and_grad/"
            "reverse with checkpoint=...), %%autodiff --checkpoint, or mark one loop with "
            "'for t in nad.checkpointed(range(T)):'") if what == 0 else \
        "use fewer checkpoints: checkpoint='binomial' (or nad.checkpointed(..., snapshots=S))"
    source = f"{LIMIT_VARIABLE}={os.environ[LIMIT_VARIABLE]}" \
        if os.environ.get(LIMIT_VARIABLE, "").strip() else "available memory"
    raise TapeMemoryError(f"the reverse pass needs {kind} of {human(nbytes)} but only "
                          f"{human(limit)} can be allocated ({source}); {hint}",
                          construct="tape memory")


def affordable_length(length: int, needed: int, itemsize: int) -> int:
    """The length to grow a tape to: ``length`` if it fits in the limit, else ``needed`` (the
    least that holds the values) if that fits; otherwise :class:`TapeMemoryError`."""
    limit = available_bytes()
    if length * itemsize <= limit:
        return length
    check_allocation(needed * itemsize, 0)
    return needed


@numba.njit(cache=True)
def affordable(length, needed, itemsize):
    """:func:`affordable_length` from compiled code."""
    with numba.objmode(length="int64"):
        length = affordable_length(length, needed, itemsize)
    return length


@numba.njit(cache=True)
def checked(nbytes, what):
    """:func:`check_allocation` from compiled code (``what``: 0 tape, 1 checkpoints)."""
    with numba.objmode():
        check_allocation(nbytes, what)
