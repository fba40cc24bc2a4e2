"""``nad.jacrev``: Jacobians by reverse mode against central differences of every input."""
from __future__ import annotations

import math

import numpy as np
import pytest

import nbautodiff as nad


def fd_jacobian(fun, args, k, h=1e-6):
    """Central-difference Jacobian of ``fun`` w.r.t. ``args[k]``: shape out.shape + arg.shape."""
    base = np.asarray(fun(*args), dtype=np.float64)
    x = np.asarray(args[k], dtype=np.float64)
    jac = np.empty(base.shape + x.shape)
    for index in np.ndindex(*x.shape):
        shifted = []
        for sign in (1.0, -1.0):
            moved = list(args)
            if x.shape:
                y = x.copy()
                y[index] += sign * h
                moved[k] = y
            else:
                moved[k] = float(x) + sign * h
            shifted.append(np.asarray(fun(*[a.copy() if isinstance(a, np.ndarray) else a
                                             for a in moved]), dtype=np.float64))
        jac[(...,) + index] = (shifted[0] - shifted[1]) / (2 * h)
    return jac


def loop_map(x, c):
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = math.sin(x[i]) * c + x[i] * x[(i + 1) % x.shape[0]]
    return out


def array_map(A, v):
    return np.tanh(A @ v) * np.sum(v)


def scalar_output(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] ** 3
    return s


def matrix_output(u, w):
    return np.outer(u, u) * w


@pytest.mark.parametrize("fun, args, argnums", [
    (loop_map, lambda r: (r.normal(size=5), 0.7), (0, 1)),
    (array_map, lambda r: (r.normal(size=(4, 3)), r.normal(size=3)), (0, 1)),
    (scalar_output, lambda r: (r.normal(size=4),), 0),
    (matrix_output, lambda r: (r.normal(size=3), 1.3), (0, 1)),
], ids=["loop_map", "array_map", "scalar_output", "matrix_output"])
def test_jacobian_matches_central_differences(fun, args, argnums):
    rng = np.random.default_rng(11)
    values = args(rng)
    got = nad.jacrev(fun, argnums)(*values)
    got = got if isinstance(argnums, tuple) else (got,)
    wrt = argnums if isinstance(argnums, tuple) else (argnums,)
    for jac, k in zip(got, wrt):
        expected = fd_jacobian(fun, values, k)
        assert jac.shape == expected.shape
        np.testing.assert_allclose(jac, expected, rtol=1e-6, atol=1e-8)


def test_bad_argnums_and_argument_types_are_clear_errors():
    x = np.ones(3)
    with pytest.raises(nad.AutodiffError, match="out of range"):
        nad.jacrev(loop_map, 2)(x, 0.5)
    with pytest.raises(TypeError, match="argument 1"):
        nad.jacrev(loop_map, 1)(x, 3)
