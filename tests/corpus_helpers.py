"""Callees for the corpus that live in another module (the "imported module" case), some of them
numba ``@njit`` dispatchers. The corpus calls them as ``ch.name(...)`` and as names imported with
``from corpus_helpers import ...``; nbautodiff must differentiate through them.
"""
import math

import numba
import numpy as np


def softplus(v):
    """Numerically stable log(1 + exp(v))."""
    if v > 0.0:
        return v + math.log1p(math.exp(-v))
    return math.log1p(math.exp(v))


def _exp_neg(v):
    return math.exp(-v)


def sigmoid(v):
    # calls another function of this module: a transitive callee
    return 1.0 / (1.0 + _exp_neg(v))


def poly3(c0, c1, c2, c3, x):
    return ((c3 * x + c2) * x + c1) * x + c0


def sq_norm(x):
    s = 0.0
    for i in range(len(x)):
        s += x[i] * x[i]
    return s


def axpy_inplace(a, x, y):
    """y += a * x, written into y; returns nothing."""
    for i in range(len(x)):
        y[i] += a * x[i]


def stencil(u, c):
    """A new array: one explicit heat-equation step with fixed ends."""
    n = len(u)
    out = np.empty_like(u)
    out[0] = u[0]
    out[n - 1] = u[n - 1]
    for i in range(1, n - 1):
        out[i] = u[i] + c * (u[i - 1] - 2.0 * u[i] + u[i + 1])
    return out


def row_dot(a, i, x):
    """Dot product of row i of the 2-D array a with x."""
    s = 0.0
    for j in range(a.shape[1]):
        s += a[i, j] * x[j]
    return s


@numba.njit
def nj_sq(v):
    return v * v


@numba.njit
def nj_dot(a, b):
    s = 0.0
    for i in range(a.shape[0]):
        s += a[i] * b[i]
    return s


@numba.njit
def nj_scale_into(x, c, out):
    for i in range(x.shape[0]):
        out[i] = c * math.sin(x[i])


@numba.njit
def nj_gauss(v, mu, sigma):
    z = (v - mu) / sigma
    return math.exp(-0.5 * z * z) / (sigma * math.sqrt(2.0 * math.pi))


@numba.njit
def nj_leaky(v):
    if v > 0.0:
        return v
    return 0.01 * v


def quadratic_form(A, x):
    """x^T A x with whole-array code, called from a corpus function."""
    return x @ (A @ x)


def moments(x):
    """(sum, sum of squares, count): several results, one of them an int."""
    s = 0.0
    q = 0.0
    for i in range(len(x)):
        s += x[i]
        q += x[i] * x[i]
    return s, q, len(x)


def exp_pair(v, c):
    """(exp(c v), exp(-c v)) for an array v: a tuple of arrays."""
    e = np.exp(c * v)
    return e, 1.0 / e


@numba.njit
def nj_polar(x, y):
    return math.sqrt(x * x + y * y), math.atan2(y, x)
