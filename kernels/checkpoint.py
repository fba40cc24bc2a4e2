"""Runtime of checkpointed loops: schedules, and buffers for the state of a loop.

The reverse pass of a checkpointed loop of ``T`` iterations does not tape every iteration in
its forward sweep. It stores the loop-carried state (the arrays the loop writes, the scalars it
carries) into *slots* at a few iterations, and its reverse sweep restores a slot, runs a few
iterations again with the tape on, and reverses them. Which iterations, in what order, is a
*plan* that :func:`plan` computes at run time (when ``T`` is known), as rows of four integers
``(action, a, b, slot)``:

* ``SAVE``: store the state (at iteration ``a``) into ``slot``;
* ``RESTORE``: load the state from ``slot``;
* ``ADVANCE``: run iterations ``a .. b-1`` without taping;
* ``REVERSE``: run iterations ``a .. b-1`` taping, then their adjoints from ``b-1`` down to ``a``.

The first ``forward`` rows are the forward sweep (it must leave the state of iteration ``T``:
the code after the loop reads it); the others are the reverse sweep, which starts by saving the
state it finds into the last slot and ends by restoring it, so the primal arrays are left as the
reverse sweep of the rest of the function expects them.

Schedules (``kind``, ``parameter``):

* ``SEGMENTS`` with ``parameter`` = K (0: ``ceil(sqrt(T))``): a slot every K iterations; the
  reverse sweep re-runs each segment once, taped. Memory: ``T / K`` states plus the tape of K
  iterations (``O(N sqrt(T))`` for the default); time: one more forward sweep.
* ``BINOMIAL`` with ``parameter`` = S slots (0: the least S with ``C(S + 3, 3) >= T``):
  Griewank's binomial checkpointing (revolve): only one iteration is taped at a time, each
  iteration is run again at most ``r`` times where ``r`` is the least with
  ``C(S + r, S) >= T``. Memory: S states plus one iteration's tape.
"""
from __future__ import annotations

import functools
import math

import numba
import numpy as np

from . import memory, tape
from .compiled import helper

SAVE, RESTORE, ADVANCE, REVERSE = 0, 1, 2, 3
SEGMENTS, BINOMIAL = 0, 1

_jit = helper(inline="always")


# -- schedules (plain Python, cached; called from compiled code through objmode) ---------------

def segment_length(trips: int, parameter: int) -> int:
    return max(1, parameter if parameter > 0 else math.isqrt(max(trips - 1, 0)) + 1)


def default_snapshots(trips: int) -> int:
    snapshots = 1
    while math.comb(snapshots + 3, 3) < trips:
        snapshots += 1
    return snapshots


@functools.lru_cache(maxsize=64)
def schedule(trips: int, kind: int, parameter: int) -> tuple[np.ndarray, int, int]:
    """``(rows, forward, slots)`` of the plan for ``trips`` iterations; see the module docstring.

    The rows are shared between calls: read them, never write them."""
    if trips <= 0:
        return np.zeros((0, 4), np.int64), 0, 0
    if kind == SEGMENTS:
        forward, reverse, slots = _segments(trips, segment_length(trips, parameter))
    else:
        snapshots = parameter if parameter > 0 else default_snapshots(trips)
        forward, reverse, slots = _binomial(trips, max(1, min(snapshots, trips)))
    final = slots
    rows = forward + [(SAVE, trips, trips, final)] + reverse + [(RESTORE, trips, trips, final)]
    plan = np.array(rows, np.int64).reshape(len(rows), 4)
    plan.flags.writeable = False
    return plan, len(forward), slots + 1


def _segments(trips: int, length: int):
    starts = list(range(0, trips, length))
    forward, reverse = [], []
    for slot, start in enumerate(starts):
        stop = min(start + length, trips)
        forward += [(SAVE, start, start, slot), (ADVANCE, start, stop, 0)]
        reverse[:0] = [(RESTORE, start, start, slot), (REVERSE, start, stop, 0)]
    return forward, reverse, len(starts)


def _binomial(trips: int, snapshots: int):
    """Griewank's recursive binomial schedule with ``snapshots`` slots, one iteration taped at
    a time; the forward sweep is its first descent, completed to ``trips``."""
    rows = [(SAVE, 0, 0, 0)]
    current = 0                       # iteration the working state holds, or -1 after a REVERSE

    def restore(slot: int, at: int) -> None:
        nonlocal current
        if current != at:
            rows.append((RESTORE, at, at, slot))
            current = at

    tasks = [(0, trips, 0, snapshots)]   # reverse iterations a..b-1; slot holds a; s slots free
    while tasks:
        a, b, slot, s = tasks.pop()
        length = b - a
        if length == 1 or s == 1:
            for j in range(b - 1, a - 1, -1):
                restore(slot, a)
                if j > a:
                    rows.append((ADVANCE, a, j, 0))
                rows.append((REVERSE, j, j + 1, 0))
                current = -1
            continue
        r = 1
        while math.comb(s + r, s) < length:
            r += 1
        middle = b - min(length - 1, math.comb(s - 1 + r, s - 1))
        restore(slot, a)
        rows += [(ADVANCE, a, middle, 0), (SAVE, middle, middle, slot + 1)]
        current = middle
        tasks += [(a, middle, slot, s), (middle, b, slot + 1, s - 1)]
    first = next(k for k, row in enumerate(rows) if row[0] == REVERSE)
    last_save = max(k for k in range(first) if rows[k][0] == SAVE)
    saved_at, saved_slot = rows[last_save][1], rows[last_save][3]
    forward = rows[:last_save + 1] + [(ADVANCE, saved_at, trips, 0)]
    reverse = [(RESTORE, saved_at, saved_at, saved_slot)] + rows[last_save + 1:]
    return forward, reverse, snapshots


def _plan_for_numba(trips, kind, parameter):
    return schedule(int(trips), int(kind), int(parameter))


# -- compiled helpers called by generated code --------------------------------------------------

@helper
def plan(trips, kind, parameter):
    """``(rows, forward, slots)`` of :func:`schedule`, from compiled code."""
    with numba.objmode(rows="int64[:, :]", forward="int64", slots="int64"):
        rows, forward, slots = _plan_for_numba(trips, kind, parameter)
    return rows, forward, slots


@_jit
def float_buffer(length):
    """Room for ``length`` float64 values of checkpointed state (checked against the limit)."""
    if length * 8 >= memory.CHECKED_FROM:
        memory.checked(length * 8, 1)
    return np.empty(max(length, 1), np.float64)


@_jit
def int_buffer(length):
    """Room for ``length`` int64 values of checkpointed state (checked against the limit)."""
    if length * 8 >= memory.CHECKED_FROM:
        memory.checked(length * 8, 1)
    return np.empty(max(length, 1), np.int64)


@_jit
def save_array(buffer, slot, array):
    """Store ``array`` (any rank) into ``slot`` of ``buffer``, a buffer of ``array.size`` per
    slot; returns the buffer."""
    return tape.push_array(buffer, slot * array.size, array)


@_jit
def load_array(buffer, slot, array):
    """Load ``array`` back from ``slot`` of ``buffer``."""
    tape.pop_array(buffer, slot * array.size, array)
