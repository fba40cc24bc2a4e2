"""Runtime helpers that generated reverse code calls: the tape and small array utilities.

The tape is a pair (array, top) per element kind: float64 for floating values, int64 for
integers and booleans. Generated code keeps both in local variables, so nothing here allocates
Python objects: every helper is a numba ``njit`` function, compiled into the caller. A tape
that would outgrow the memory limit raises :class:`.memory.TapeMemoryError` before allocating.
"""
from __future__ import annotations

import numba
import numpy as np

from . import memory

_jit = numba.njit(cache=True, inline="always")


@_jit
def new_float(capacity):
    return np.empty(max(capacity, 16), np.float64)


@_jit
def new_int(capacity):
    return np.empty(max(capacity, 16), np.int64)


@numba.njit(cache=True)
def _grown(tape, top, extra):
    length, needed, itemsize = max(2 * tape.shape[0], top + extra), top + extra, tape.itemsize
    if length * itemsize >= memory.CHECKED_FROM:
        length = memory.affordable(length, needed, itemsize)
    new = np.empty(length, tape.dtype)
    new[:top] = tape[:top]
    return new


@_jit
def reserve(tape, top, extra):
    """``tape`` with room for ``extra`` more values above ``top`` (reallocated if needed)."""
    if top + extra > tape.shape[0]:
        return _grown(tape, top, extra)
    return tape


@_jit
def push(tape, top, value):
    """Store ``value`` at ``top``, growing the tape when it is full; returns the tape."""
    if top >= tape.shape[0]:
        tape = _grown(tape, top, 1)
    tape[top] = value
    return tape


@_jit
def push_array(tape, top, array):
    """Store every element of ``array`` (any rank) above ``top``; the caller adds array.size."""
    tape = reserve(tape, top, array.size)
    if array.flags.c_contiguous:
        k = top
        for value in np.nditer(array):
            tape[k] = value.item()
            k += 1
    else:                  # in index order, as pop_array loads it (nditer: in memory order)
        _store_strided(tape, top, array)
    return tape


@_jit
def pop_array(tape, top, array):
    """Load ``array`` back from the ``array.size`` values stored at ``top``."""
    flat = array.reshape(array.size) if array.flags.c_contiguous else None
    if flat is not None:
        for k in range(array.size):
            flat[k] = tape[top + k]
    else:
        _load_strided(tape, top, array)


@numba.njit(cache=True)
def _load_strided(tape, top, array):
    index = np.zeros(array.ndim, np.int64)
    for k in range(array.size):
        _set_at(array, index, tape[top + k])
        _advance(index, array.shape)


@numba.njit(cache=True)
def _store_strided(tape, top, array):
    index = np.zeros(array.ndim, np.int64)
    for k in range(array.size):
        tape[top + k] = array[numba.np.unsafe.ndarray.to_fixed_tuple(index, array.ndim)]
        _advance(index, array.shape)


@numba.njit(cache=True)
def _advance(index, shape):
    for d in range(len(shape) - 1, -1, -1):
        index[d] += 1
        if index[d] < shape[d]:
            return
        index[d] = 0


@numba.njit(cache=True)
def _set_at(array, index, value):
    array[numba.np.unsafe.ndarray.to_fixed_tuple(index, array.ndim)] = value


@_jit
def trip_count(start, stop, step):
    """Number of iterations of ``range(start, stop, step)``."""
    if step > 0:
        return max(0, (stop - start + step - 1) // step)
    return max(0, (start - stop - step - 1) // (-step))


@_jit
def add_into(target, source):
    """``target += source`` elementwise, for arrays of any rank and equal shape (a seed of
    another shape than its result is a ValueError, not a partial sum)."""
    if target.shape != source.shape:
        raise ValueError("a seed (cotangent) or an adjoint does not have the shape of its array")
    for t, s in zip(np.nditer(target), np.nditer(source)):
        t[...] = t.item() + s.item()


@_jit
def copy_into(target, source):
    """``target[...] = source`` for arrays of any rank and equal shape."""
    for t, s in zip(np.nditer(target), np.nditer(source)):
        t[...] = s.item()
