"""GradBench's ``llsq`` eval (cmpad's ``llsq_obj``): a linear least-squares objective.

``y(x) = 1/2 sum_i (s_i - sum_j x_j t_i^j)^2`` with ``t_i = -1 + 2 i / (n - 1)`` and ``s_i =
sign(t_i)``, written as the double loop of the eval's definition; ``gradient`` is
``nad.grad(llsq, argnums=0)`` (``n`` is an int: constant).
"""
import numba
import numpy as np

import nbautodiff as nad

from .function import as_float, as_list, function


@numba.njit
def llsq(x, n):
    m = x.shape[0]
    total = 0.0
    for i in range(n):
        t = -1.0 + i * 2.0 / (n - 1)
        r = 0.0
        if t > 0.0:
            r = 1.0
        elif t < 0.0:
            r = -1.0
        power = 1.0
        for j in range(m):
            r -= x[j] * power
            power *= t
        total += r * r
    return total / 2.0


d_llsq = nad.grad(llsq)


def prepare(raw):
    return np.asarray(raw["x"], dtype=np.float64), int(raw["n"])


@function(prepare=prepare, output=as_float)
def primal(x, n):
    return llsq(x, n)


@function(prepare=prepare, output=as_list)
def gradient(x, n):
    return d_llsq(x, n)


FUNCTIONS = {"primal": primal, "gradient": gradient}
EXAMPLES = [{"x": [0.5, 0.25, 1.0], "n": 5, "min_runs": 1, "min_seconds": 0}]
