"""GradBench's ``lse`` eval: log-sum-exp of a vector and its gradient.

``logsumexp`` is the stable formulation of the eval's README (the maximum first, then the sum
of shifted exponentials), written as loops; ``primal`` runs it compiled by numba, ``gradient``
is ``nad.grad(logsumexp)``. The maximum's kink does not matter: LSE does not depend on the
shift, so the adjoint through ``a`` cancels whichever element the maximum picks.
"""
import math

import numba
import numpy as np

import nbautodiff as nad

from .function import as_float, as_list, function


@numba.njit
def logsumexp(x):
    a = x[0]
    for i in range(1, x.shape[0]):
        a = max(a, x[i])
    s = 0.0
    for i in range(x.shape[0]):
        s += math.exp(x[i] - a)
    return a + math.log(s)


d_logsumexp = nad.grad(logsumexp)


def prepare(raw):
    return (np.asarray(raw["x"], dtype=np.float64),)


@function(prepare=prepare, output=as_float)
def primal(x):
    return logsumexp(x)


@function(prepare=prepare, output=as_list)
def gradient(x):
    return d_logsumexp(x)


FUNCTIONS = {"primal": primal, "gradient": gradient}
EXAMPLES = [{"x": [0.5, 0.25, 1.0], "min_runs": 1, "min_seconds": 0}]
