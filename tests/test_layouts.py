"""Arrays of every memory layout in the tape and adjoint helpers, and in derivatives.

numba's ``np.nditer`` walks memory order, which is not index order for a transposed
(Fortran-ordered) view; the helpers of generated code must pair elements by index whatever the
layouts of their operands (a C-ordered seed added into the adjoint of ``A.T``, a transposed
array pushed on the tape and popped back). Each derivative test compares with central
differences (reverse) or the finite-difference vector-Jacobian product.
"""
from __future__ import annotations

import numba
import numpy as np
import pytest

import nbautodiff as nad
from nbautodiff.kernels import arrays, tape
from fd import central_diff, directional_diff, fd_vjp, assert_grad_close


def _layouts(rng):
    """The same logical 2-D values as C-ordered, Fortran-ordered (a transpose) and strided
    arrays."""
    base = rng.standard_normal((3, 4))
    wide = np.zeros((6, 4))
    wide[::2] = base
    return {"C": base.copy(), "F": np.asfortranarray(base), "strided": wide[::2]}


@numba.njit
def _round_trip(array, into):
    stack = np.empty(4, np.float64)
    stack = tape.push_array(stack, 0, array)
    tape.pop_array(stack, 0, into)
    return stack[:array.size].copy()


@pytest.mark.parametrize("source", ["C", "F", "strided"])
@pytest.mark.parametrize("target", ["C", "F", "strided"])
def test_tape_and_adjoint_helpers_pair_elements_by_index(rng, source, target):
    values = _layouts(rng)
    a, b = values[source], values[target] * 0.0
    stored = _round_trip(a, b)
    np.testing.assert_array_equal(stored, a.ravel(order="C"))
    np.testing.assert_array_equal(b, a)
    total = values[target].copy(order="K")
    tape.add_into(total, a)
    np.testing.assert_array_equal(total, values[target] + a)
    copied = values[target] * 0.0
    tape.copy_into(copied, a)
    np.testing.assert_array_equal(copied, a)
    zeros = arrays.zeros_like(a)
    assert zeros.shape == a.shape and not zeros.any()


def transpose_out(A):
    B = A * 2.0
    return B.T


def transpose_of_product(A):
    return np.transpose(A * A)


def test_vjp_of_a_returned_transpose_transposes_the_cotangent(rng):
    A = rng.standard_normal((2, 3))
    for fun in (transpose_out, transpose_of_product):
        out, pullback = nad.vjp(fun, A)
        cotangent = rng.standard_normal(out.shape)
        assert_grad_close(pullback(cotangent)[0], fd_vjp(fun, (A,), cotangent),
                          label=fun.__name__)


def layouts_on_the_tape(A):
    B = np.transpose(A * 1.0)            # Fortran-ordered, overwritten in the loop: taped
    s = 0.0
    for t in range(3):
        s += np.sum(B * B * B)
        B[0, 1] = B[1, 0] * B[0, 0]
        s += np.sum(np.sin(B) * A)
    return s


def strided_view_written(x):
    y = x * 1.0
    e = y[::2]
    e[:] = e * e
    return np.sum(y * x)


def _scale_with_first(b):
    for i in range(b.shape[0]):
        b[i] = b[i] * 2.0 + b[0]


def callee_writes_a_column(A):
    C = A * 1.0
    _scale_with_first(C[:, 1])
    return np.sum(C * C)


@pytest.mark.parametrize("fun, shape", [(layouts_on_the_tape, (3, 3)),
                                        (strided_view_written, (7,)),
                                        (callee_writes_a_column, (3, 3))])
def test_non_contiguous_and_transposed_arrays_in_both_modes(rng, fun, shape):
    x = rng.standard_normal(shape)
    expected = central_diff(fun, (x,), 0)
    assert_grad_close(nad.grad(fun)(x), expected, rtol=1e-6, atol=1e-8, label="reverse")
    direction = rng.standard_normal(shape)
    _, tangent = nad.jvp(fun, (x,), (direction,))
    assert_grad_close(tangent, directional_diff(fun, (x,), (0,), (direction,)),
                      rtol=1e-6, atol=1e-8, label="forward")
