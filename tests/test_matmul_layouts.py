"""Adjoints of ``@`` with operands in every memory layout numba distinguishes.

The adjoints hand C- and Fortran-ordered matrices (and their transposes) to BLAS as they are and
copy only arrays of any other layout (a strided view), so each rank pairing is checked here with
C, Fortran and strided operands, and with transposes taken inside the function, against central
differences for every argument.
"""
from __future__ import annotations

import numpy as np
import pytest

import nbautodiff as nad

from fd import assert_grad_close, central_diff, max_abs


def matrix_vector(X, w):
    z = X @ w
    return np.sum(z * z)


def transposed_matrix_vector(X, v):
    z = X.T @ v
    return np.sum(np.tanh(z))


def vector_matrix(v, X):
    z = v @ X
    return np.sum(z * z)


def matrix_matrix(A, B):
    Z = A @ B
    return np.sum(Z * Z)


def matrix_matrix_transposed(A, B):
    Z = A.T @ B.T
    return np.sum(np.sin(Z))


def in_layout(array, layout):
    if layout == "C":
        return np.ascontiguousarray(array)
    if layout == "F":
        return np.asfortranarray(array)
    wide = np.zeros(array.shape[:-1] + (2 * array.shape[-1],))
    wide[..., ::2] = array
    return wide[..., ::2]                        # a strided view: numba's layout 'A'


CASES = {
    "matrix_vector": (matrix_vector, lambda r: (r.standard_normal((7, 5)), r.standard_normal(5))),
    "transposed_matrix_vector": (transposed_matrix_vector,
                                 lambda r: (r.standard_normal((7, 5)), r.standard_normal(7))),
    "vector_matrix": (vector_matrix, lambda r: (r.standard_normal(7), r.standard_normal((7, 5)))),
    "matrix_matrix": (matrix_matrix,
                      lambda r: (r.standard_normal((6, 4)), r.standard_normal((4, 3)))),
    "matrix_matrix_transposed": (matrix_matrix_transposed,
                                 lambda r: (r.standard_normal((4, 6)), r.standard_normal((3, 4)))),
}


@pytest.mark.parametrize("layout", ["C", "F", "A"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_matmul_adjoints_in_every_layout(name, layout):
    fun, make = CASES[name]
    args = tuple(in_layout(a, layout) if a.ndim == 2 else a
                 for a in make(np.random.default_rng(len(name))))
    ad = nad.grad(fun, argnums=(0, 1))(*args)
    fd = central_diff(fun, args, (0, 1))
    scale = max(1.0, max_abs(*fd))
    for k, (a, f) in enumerate(zip(ad, fd)):
        assert_grad_close(a, f, rtol=1e-6, atol=1e-8 * scale, label=f"{name} ({layout}) arg {k}")
