"""Higher order: Hessians and Hessian-vector products by forward mode over generated reverse code.

``nad.hessian(f)`` is ``jacfwd(grad(f))``: the forward transform differentiates the generated
reverse variant (tape, reversed loops, runtime helpers included). Each result is compared with
central differences of gradients, and Hessians must be symmetric.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import nbautodiff as nad


def fd_of_gradient(fun, args, argnum, direction, h=1e-5):
    """Central difference of ``grad(fun)`` along ``direction`` of argument ``argnum``."""
    g = nad.grad(fun, argnum)

    def at(t):
        call = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        call[argnum] = call[argnum] + t * direction
        return np.asarray(g(*call), dtype=np.float64)

    return (at(h) - at(-h)) / (2 * h)


def rosenbrock(x):
    s = 0.0
    for i in range(x.shape[0] - 1):
        s += 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return s


def recurrence(x, n):
    s = 1.0
    for i in range(n):
        s = s * math.sin(x[i]) + x[i] * x[i]      # overwritten: its values go on the tape
    return s


def arrays(W, x):
    z = W @ x
    return np.sum(np.tanh(z) ** 2) + np.max(x) * np.mean(W)


def branches(x):
    s = 0.0
    for i in range(x.shape[0]):
        if x[i] > 0.0:
            s += math.exp(-x[i]) * x[i] ** 3
        else:
            s += math.log1p(x[i] * x[i])
    return s


def scalar_pair(a, b):
    return a * a * b + math.sin(a * b) + b ** 3


def helper(u, v):
    return u * math.exp(v)


def with_callee(x):
    s = 0.0
    for i in range(x.shape[0] - 1):
        s += helper(x[i], x[i + 1])
    return s


CASES = [
    (rosenbrock, lambda r: (r.uniform(-1, 1, 6),)),
    (recurrence, lambda r: (r.uniform(-1, 1, 5), 5)),
    (arrays, lambda r: (r.uniform(-1, 1, (3, 4)), r.uniform(-1, 1, 4))),
    (branches, lambda r: (r.uniform(-2, 2, 6),)),
    (with_callee, lambda r: (r.uniform(-1, 1, 5),)),
]


@pytest.mark.parametrize("fun, make", CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_hessian_is_symmetric_and_matches_differences_of_gradients(fun, make):
    args = make(np.random.default_rng(3))
    H = nad.hessian(fun)(*args)
    x = args[0]
    assert H.shape == x.shape + x.shape
    flat = H.reshape(x.size, x.size)
    np.testing.assert_allclose(flat, flat.T, rtol=1e-9, atol=1e-9)
    for j in range(x.size):
        e = np.zeros(x.size)
        e[j] = 1.0
        column = fd_of_gradient(fun, args, 0, e.reshape(x.shape)).reshape(-1)
        np.testing.assert_allclose(flat[:, j], column, rtol=1e-5, atol=1e-6,
                                   err_msg=f"{fun.__name__}: Hessian column {j}")


@pytest.mark.parametrize("fun, make", CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_hessian_vector_product_is_jvp_of_grad(fun, make):
    rng = np.random.default_rng(5)
    args = make(rng)
    v = rng.standard_normal(args[0].shape)
    tangents = (v,) + (None,) * (len(args) - 1)
    gradient, hv = nad.jvp(nad.grad(fun), args, tangents)
    np.testing.assert_allclose(gradient, nad.grad(fun)(*args), rtol=1e-12)
    np.testing.assert_allclose(hv, fd_of_gradient(fun, args, 0, v), rtol=1e-5, atol=1e-6)
    H = nad.hessian(fun)(*args).reshape(v.size, v.size)
    np.testing.assert_allclose(hv.reshape(-1), H @ v.reshape(-1), rtol=1e-9, atol=1e-9)


def test_hessian_of_scalar_arguments_with_tuple_argnums():
    a, b = 0.7, -0.4
    H = nad.hessian(scalar_pair, (0, 1))(a, b)
    expected = np.array([[2 * b - b * b * math.sin(a * b),
                          2 * a + math.cos(a * b) - a * b * math.sin(a * b)],
                         [2 * a + math.cos(a * b) - a * b * math.sin(a * b),
                          -a * a * math.sin(a * b) + 6 * b]])
    got = np.array([[float(H[i][j]) for j in range(2)] for i in range(2)])
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_grad_of_grad():
    """grad(grad(f)) for a function of a scalar (and mixed with an array argument)."""
    def f(a, x):
        return math.sin(a) * a ** 3 + a * np.sum(x * x)
    a, x = 0.4, np.array([0.5, -1.0, 2.0])
    second = nad.grad(nad.grad(f, 0), 0)(a, x)
    expected = (-math.sin(a) * a ** 3 + 6 * a * a * math.cos(a) + 6 * a * math.sin(a))
    assert math.isclose(second, expected, rel_tol=1e-10)
    mixed = nad.grad(nad.grad(f, 0), 1)(a, x)
    np.testing.assert_allclose(mixed, 2 * x, rtol=1e-12)
    value, second_too = nad.value_and_grad(nad.grad(f, 0), 0)(a, x)
    assert math.isclose(value, nad.grad(f, 0)(a, x), rel_tol=1e-15)
    assert math.isclose(second_too, expected, rel_tol=1e-10)


def test_grad_of_a_gradient_array_is_an_error():
    with pytest.raises(nad.AutodiffError, match="scalar"):
        nad.grad(nad.grad(rosenbrock))(np.ones(3))


def heat_checkpointed(u0, k, steps):
    u = u0.copy()
    for t in nad.checkpointed(range(steps)):
        old = u.copy()
        for i in range(1, u.shape[0] - 1):
            u[i] = old[i] + k * (old[i - 1] - 2.0 * old[i] + old[i + 1])
    return np.sum(u ** 4)


def test_second_derivative_of_a_checkpointed_gradient_is_refused():
    with pytest.raises(nad.AutodiffError, match="checkpointed loop again"):
        nad.hessian(heat_checkpointed)(np.linspace(0.1, 0.9, 6), 0.2, 5)


def test_reverse_over_reverse_is_refused_with_a_pointer_to_forward():
    from nbautodiff.pipeline import program
    import numba
    x = np.ones(3)
    variant = program.reverse_variant(rosenbrock, (numba.typeof(x),), [True], True,
                                      writeback=True, keep_value=False)
    with pytest.raises(nad.AutodiffError, match="forward mode"):
        program.reverse_variant(variant.dispatcher.py_func,
                                (numba.typeof(x), numba.typeof(x), numba.float64),
                                [True, True, False], False, writeback=True)
