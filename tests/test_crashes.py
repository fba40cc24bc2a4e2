"""Inputs that used to crash a derivative (issue 18, item 7): each is now a right answer against
central differences, in reverse and forward mode (second order where cheap), or a located
refusal. Several spellings share one function to save compiles."""
from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

import nbautodiff as nad
from fd import assert_grad_close, central_diff, directional_diff

RNG = np.random.default_rng(18)


def both_modes(f, args, argnums=(0,), rtol=1e-6, atol=1e-8):
    """Reverse (grad) and forward (jvp along a random direction) against central differences."""
    expected = central_diff(f, args, argnums)
    got = nad.grad(f, argnums=argnums)(*args)
    for k, (a, e) in enumerate(zip(got, expected)):
        assert_grad_close(a, e, rtol=rtol, atol=atol, label=f"{f.__name__} reverse, arg {k}")
    directions = [RNG.standard_normal(np.shape(args[k])) if isinstance(args[k], np.ndarray)
                  else 0.7 for k in argnums]
    tangents = tuple(directions[argnums.index(i)] if i in argnums else
                     (np.zeros_like(a) if isinstance(a, np.ndarray) else None)
                     for i, a in enumerate(args))
    _, t = nad.jvp(f, args, tangents)
    assert_grad_close(t, directional_diff(f, args, argnums, directions), rtol=rtol, atol=atol,
                      label=f"{f.__name__} forward")


def powers(x, y):
    return x ** 0 + x ** 1 + 2.0 * x ** 2 + x ** 3 + x ** 0.0 + math.pow(x, 2) + 0.0 ** (y + 2.0) \
        + x ** y


def array_powers(x, k):
    return np.sum(x ** 0 + x ** 1 + np.power(x, 2) + x ** k) + np.sum(x ** 0.0)


def test_powers_at_zero_are_finite_and_right_in_both_modes_and_second_order():
    for x in (0.0, 1.3, -0.6):
        both_modes(powers, (x, 1.0), argnums=(0,))
    both_modes(powers, (0.7, 2.0), argnums=(0, 1))
    assert nad.hessian(powers)(0.0, 1.0) == pytest.approx(4.0 + 2.0, abs=1e-12)
    for x in (np.array([0.0, 1.0, -2.0]), RNG.standard_normal(4)):
        both_modes(array_powers, (x, 0), argnums=(0,))
        both_modes(array_powers, (x, 2), argnums=(0,))


def det_(A):
    return np.linalg.det(A)


def det_of_product(A, B):
    return np.linalg.det(A @ B) * 2.0 + np.linalg.det(B.T)


def test_det_of_singular_matrices_through_the_cofactors():
    rank_deficient = [np.array([[1., 2.], [2., 4.]]),
                      np.array([[1., 2., 3.], [4., 5., 6.], [7., 8., 9.]]),
                      RNG.standard_normal((4, 3)) @ RNG.standard_normal((3, 4)),
                      np.zeros((3, 3)), np.array([[0.0]])]
    for A in rank_deficient + [RNG.standard_normal((n, n)) for n in (1, 2, 5)]:
        both_modes(det_, (A,))
    B = RNG.standard_normal((3, 3))
    both_modes(det_of_product, (rank_deficient[1], B), argnums=(0, 1))
    for A in (rank_deficient[1], RNG.standard_normal((3, 3))):       # second order
        H = nad.hessian(det_)(A)
        expected = np.array([central_diff(lambda a: nad.grad(det_)(a)[i, j], (A,))
                             for i in range(3) for j in range(3)]).reshape(H.shape)
        assert_grad_close(H, expected, rtol=1e-6, atol=1e-8, label="hessian of det")


def reductions(A):
    return (np.sum(np.max(A, axis=-2) ** 2) + np.sum(np.min(A, axis=-1) ** 3)
            + np.sum(np.sum(A, axis=-2) ** 2) + np.sum(np.mean(A, -1) ** 2)
            + np.sum(A.max(-2)) + np.sum(A.sum(axis=-1) * A.mean(axis=-2)[:3])
            + np.sum(np.cumsum(A, axis=-1) ** 2) + np.sum(A.cumsum(0) * A))


def test_reductions_along_negative_axes():
    both_modes(reductions, (RNG.standard_normal((3, 4)),))


def views_and_fmod(x):
    y = x * 1.0
    y[...] = y * x                         # the whole array
    a = np.sum(x, axis=0)                  # a 0-d array, times an array
    b = np.max(x * x, axis=0)
    z = y[...]
    return np.sum(z * 2.0) + np.sum(a * x) + np.sum(x * b) + math.fmod(x[0], 0.7) * x[1] \
        + np.sum(np.fmod(x, 0.3) * x)


def test_ellipsis_zero_d_arrays_and_fmod():
    both_modes(views_and_fmod, (RNG.standard_normal(5) + 2.0,))


def int_result(x):
    k = 0
    for i in range(len(x)):
        if x[i] > 0:
            k += 1
    return k


def filled(x):
    y = np.full(5, 2.0)
    return np.sum(y * x)


def test_int_results_and_library_functions_are_located():
    x = RNG.standard_normal(5)
    with pytest.raises(nad.AutodiffError) as info:
        nad.grad(int_result)(x)
    lines, start = inspect.getsourcelines(int_result)
    assert f"line {start + len(lines) - 1}" in str(info.value)
    assert "int" in str(info.value)
    _, pullback = nad.vjp(int_result, x)
    assert np.array_equal(pullback(None)[0], np.zeros(5))     # no cotangent: zero adjoints
    assert nad.jacrev(int_result)(x) is None
    both_modes(filled, (x,))             # np.full: not parsed as a user function
