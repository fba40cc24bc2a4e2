"""GradBench's ``det`` eval (cmpad's ``det_by_minor``): the determinant of an ``ell x ell``
matrix by expansion by minors, and its gradient by ``nad.grad``.

The natural Python version is cmpad's recursion (``det_of_minor`` calling itself on each minor).
nbautodiff refuses recursion (``AutodiffError: in function 'det_of_minor', line 15: recursion is
not supported (det_of_minor -> det_of_minor)``), so ``det`` below is the same expansion with
the recursion turned into a depth-first walk with an explicit stack: depth ``d`` picks the
column ``col[d]`` of row ``d`` among the columns still free, ``prod[d + 1]`` is the signed
product of the entries picked in rows ``0..d``, and each complete choice adds its product. The
sign alternates over the free columns of a depth, as in the recursion. The multiplications
(one per node of the expansion tree, about ``e * ell!``) are those of the recursive version.
"""
import numba
import numpy as np

import nbautodiff as nad

from .function import as_float, as_list, function


@numba.njit
def det(A, ell):
    n = ell
    used = np.zeros(n, dtype=np.int64)      # used[j]: column j is taken by a row above
    col = np.full(n, -1, dtype=np.int64)    # col[d]: column picked for row d (-1: none yet)
    sign = np.zeros(n)                      # sign[d]: the sign of the current pick of row d
    prod = np.ones(n + 1)                   # prod[d]: signed product of the picks of rows < d
    total = 0.0
    d = 0
    while d >= 0:
        j = col[d]
        if j >= 0:                          # release the previous pick, flip the sign
            used[j] = 0
            sign[d] = -sign[d]
        else:
            sign[d] = 1.0
        j += 1
        while j < n and used[j] == 1:
            j += 1
        if j == n:                          # every column tried: back to the row above
            col[d] = -1
            d -= 1
        else:
            col[d] = j
            prod[d + 1] = sign[d] * prod[d] * A[d * n + j]
            if d == n - 1:
                total += prod[n]
            else:
                used[j] = 1
                d += 1
    return total


d_det = nad.grad(det)


def prepare(raw):
    return np.asarray(raw["A"], dtype=np.float64), int(raw["ell"])


@function(prepare=prepare, output=as_float)
def primal(A, ell):
    return det(A, ell)


@function(prepare=prepare, output=as_list)
def gradient(A, ell):
    return d_det(A, ell)


FUNCTIONS = {"primal": primal, "gradient": gradient}
EXAMPLES = [{"A": [2.0, 1.0, 0.5, 1.0, 3.0, 0.25, 0.5, 0.25, 4.0], "ell": 3,
            "min_runs": 1, "min_seconds": 0}]
