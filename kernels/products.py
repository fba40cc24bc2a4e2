"""Products that :mod:`nbautodiff.transforms.raising` recognises in loop nests (``fastmath=True``), and
their adjoints, as generated code calls them (``_nad_blas``).

A reduction loop ``for j in range(M): acc += A[i, j] * B[k, j]`` nested in loops over ``i`` and
``k`` is one element of a product of two blocks of rows; the raising pass replaces the loop by a
read of the product, computed before the loops by one of

* ``dot_rows(a, ra, b, rb, M)``: ``sum_j a[ra, j] * b[rb, j]`` (a 1-D operand ignores its row);
* ``matvec_rows(A, v, r, N, M)``: ``A[:N, :M] @ v[r, :M]`` (``v[:M]`` for a 1-D ``v``);
* ``matmul_nt(A, B, N, K, M)``: ``A[:N, :M] @ B[:K, :M].T``.

They go through NumPy's ``np.dot`` (BLAS in numba), on the blocks as they are when they are
contiguous (a copy otherwise). Their adjoints accumulate in place into the operands' shadows
(``*_into(target, ...)``: plain loops that vectorise, or BLAS for the matrix product), so a
reverse sweep allocates nothing per product but the product's own result. A row index ``r`` of
a 1-D operand is ignored everywhere.
"""
from __future__ import annotations

import numpy as np
from numba.extending import overload

from .compiled import helper

_jit = helper


def _stub(name: str, doc: str):
    def stub(*args):
        raise NotImplementedError("called from compiled code only")
    stub.__name__ = stub.__qualname__ = name
    stub.__doc__ = doc
    return stub


row = _stub("row", "``x[:M]`` (1-D ``x``) or ``x[r, :M]`` (2-D): the operand's row, a view.")


@overload(row)
def _row(x, r, M):
    if x.ndim == 1:
        return lambda x, r, M: x[:M]
    if x.ndim == 2:
        return lambda x, r, M: x[r, :M]
    return None


# ---- the products ----------------------------------------------------------------------------

@_jit
def _check(x, r, rows, M):
    """IndexError where the loop would read outside ``x``: its rows ``r`` (``rows`` of them from
    0 when ``r`` < 0), columns below ``M``."""
    last = x.shape[-1]
    if M > last or (x.ndim == 2 and (r >= x.shape[0] or rows > x.shape[0])):
        raise IndexError("index out of bounds in a product recognised by fastmath")


@_jit
def dot_rows(a, ra, b, rb, M):
    """``sum_j a[ra, j] * b[rb, j]`` over ``j < M`` (BLAS ``dot``)."""
    if M <= 0:
        return 0.0
    _check(a, ra, 0, M)
    _check(b, rb, 0, M)
    return np.dot(np.ascontiguousarray(row(a, ra, M)), np.ascontiguousarray(row(b, rb, M)))


SMALL = 4096     # products of fewer multiplications: loops (a BLAS call costs more)


@helper(fastmath={"reassoc", "contract"})
def _matvec_loops(A, x, N, M):
    out = np.empty(N)
    for i in range(N):
        s = 0.0
        for j in range(M):
            s += A[i, j] * x[j]
        out[i] = s
    return out


@_jit
def matvec_rows(A, v, r, N, M):
    """``A[:N, :M] @ v[r, :M]`` (BLAS ``gemv``; small ones by loops that vectorise), a new
    1-D array of ``N``."""
    if N <= 0 or M <= 0:
        return np.zeros(max(N, 0))
    _check(A, -1, N, M)
    _check(v, r, 0, M)
    if N * M < SMALL:
        return _matvec_loops(A, row(v, r, M), N, M)
    return np.dot(np.ascontiguousarray(A[:N, :M]), np.ascontiguousarray(row(v, r, M)))


@_jit
def matmul_nt(A, B, N, K, M):
    """``A[:N, :M] @ B[:K, :M].T`` (BLAS ``gemm``), a new ``N x K`` array."""
    if N <= 0 or K <= 0 or M <= 0:
        return np.zeros((max(N, 0), max(K, 0)))
    _check(A, -1, N, M)
    _check(B, -1, K, M)
    return np.dot(np.ascontiguousarray(A[:N, :M]), np.ascontiguousarray(B[:K, :M]).T)


# ---- their adjoints, accumulated in place ---------------------------------------------------

@_jit
def axpy_into(target, rt, g, x, rx, M):
    """``target[rt, :M] += g * x[rx, :M]`` (``g`` a scalar): the adjoint of ``dot_rows``."""
    t = row(target, rt, M)
    s = row(x, rx, M)
    for j in range(M):
        t[j] += g * s[j]


@_jit
def ger_into(target, g, v, r, N, M):
    """``target[:N, :M] += outer(g[:N], v[r, :M])``: the adjoint of ``A`` in ``matvec_rows``."""
    s = row(v, r, M)
    for i in range(N):
        gi = g[i]
        for j in range(M):
            target[i, j] += gi * s[j]


@_jit
def gemv_t_into(target, r, A, g, N, M):
    """``target[r, :M] += A[:N, :M].T @ g[:N]``: the adjoint of ``v`` in ``matvec_rows``."""
    t = row(target, r, M)
    for i in range(N):
        gi = g[i]
        for j in range(M):
            t[j] += A[i, j] * gi


@_jit
def mm_into(target, G, X, N, K, M):
    """``target[:N, :M] += G[:N, :K] @ X[:K, :M]``: the adjoint of ``A`` in ``matmul_nt``."""
    if N <= 0 or K <= 0 or M <= 0:
        return
    target[:N, :M] += np.dot(np.ascontiguousarray(G[:N, :K]), np.ascontiguousarray(X[:K, :M]))


@_jit
def mm_t_into(target, G, X, N, K, M):
    """``target[:K, :M] += G[:N, :K].T @ X[:N, :M]``: the adjoint of ``B`` in ``matmul_nt``."""
    if N <= 0 or K <= 0 or M <= 0:
        return
    target[:K, :M] += np.dot(np.ascontiguousarray(G[:N, :K]).T, np.ascontiguousarray(X[:N, :M]))
