"""Runtime helpers that generated reverse code calls: the tape and small array utilities.

The tape is a pair (array, top) per element kind: float64 for floating values, int64 for
integers and booleans. Generated code keeps both in local variables, so nothing here allocates
Python objects: every helper is a numba ``njit`` function, compiled into the caller. A tape
that would outgrow the memory limit raises :class:`nbautodiff.errors.TapeMemoryError` before
allocating.
"""
from __future__ import annotations

import numpy as np

from . import memory
from .compiled import helper

_jit = helper(inline="always")


@helper
def grown(tape, top, extra):
    """A copy of ``tape``'s ``top`` values with room for ``extra`` more: twice as long, or as
    long as the limit allows. The copy is a loop, not a slice assignment, which would compile
    numba's broadcasting checks and their messages (string formatting) into every first use.

    Generated code checks the room itself and calls this only when it runs out
    (``if top + 1 > tape.shape[0]: tape = _nad_tape.grown(tape, top, 1)`` before a push): an
    inlined helper would cost numba a pass over its body at every call site."""
    length, needed, itemsize = max(2 * tape.shape[0], top + extra), top + extra, tape.itemsize
    if length * itemsize >= memory.CHECKED_FROM:
        length = memory.affordable(length, needed, itemsize)
    new = np.empty(length, tape.dtype)
    for i in range(top):
        new[i] = tape[i]
    return new


@_jit
def reserve(tape, top, extra):
    """``tape`` with room for ``extra`` more values above ``top`` (reallocated if needed)."""
    if top + extra > tape.shape[0]:
        return grown(tape, top, extra)
    return tape


@_jit
def _walks_in_index_order(array):
    """Whether ``np.nditer`` visits ``array`` in C index order. numba's nditer walks memory
    order: index order for a C-contiguous array (and any 1-D one), not for a transposed
    (Fortran-ordered) view, which the helpers below walk through ``.flat`` instead."""
    return array.ndim <= 1 or array.flags.c_contiguous


@_jit
def push_array(tape, top, array):
    """Store every element of ``array`` (any rank and layout) above ``top``, in C index order;
    the caller adds array.size."""
    tape = reserve(tape, top, array.size)
    k = top
    if _walks_in_index_order(array):
        for value in np.nditer(array):
            tape[k] = value.item()
            k += 1
    else:
        for value in array.flat:
            tape[k] = value
            k += 1
    return tape


@_jit
def pop_array(tape, top, array):
    """Load ``array`` back from the ``array.size`` values stored at ``top`` (C index order)."""
    k = top
    if _walks_in_index_order(array):
        for element in np.nditer(array):
            element[...] = tape[k]
            k += 1
    else:
        for i in range(array.size):
            array.flat[i] = tape[k + i]


@helper
def trip_count(start, stop, step):
    """Number of iterations of ``range(start, stop, step)``. A helper compiled once, not inlined
    into the caller by numba: generated code counts every taped loop's trips (to reserve tape
    room, to run the reverse sweep), and each of numba's inlinings added the branches to the
    caller's type inference, SSA and lowering; LLVM still inlines the compiled helper."""
    if step > 0:
        return max(0, (stop - start + step - 1) // step)
    return max(0, (start - stop - step - 1) // (-step))


@_jit
def add_into(target, source):
    """``target += source`` elementwise, for arrays of any rank and layout and equal shape (a
    seed of another shape than its result is a ValueError, not a partial sum)."""
    if target.shape != source.shape:
        raise ValueError("a seed (cotangent) or an adjoint does not have the shape of its array")
    if _walks_in_index_order(target) and _walks_in_index_order(source):
        for t, s in zip(np.nditer(target), np.nditer(source)):
            t[...] = t.item() + s.item()
    else:
        for i in range(target.size):
            target.flat[i] = target.flat[i] + source.flat[i]


@_jit
def copy_into(target, source):
    """``target[...] = source`` for arrays of any rank and layout and equal shape."""
    if _walks_in_index_order(target) and _walks_in_index_order(source):
        for t, s in zip(np.nditer(target), np.nditer(source)):
            t[...] = s.item()
    else:
        for i in range(target.size):
            target.flat[i] = source.flat[i]
