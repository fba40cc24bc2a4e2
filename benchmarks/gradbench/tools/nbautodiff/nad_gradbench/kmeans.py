"""GradBench's ``kmeans`` eval: the k-means cost and one Newton step direction.

``cost(points, centroids) = sum_i min_j |c_j - p_i|^2`` as loops. ``dir`` is ``J / H``: the
gradient with respect to the centroids divided elementwise by the Hessian's diagonal (the
Hessian is diagonal, the eval's README says why). Both come from one call of
``nad.jvp(nad.grad(cost, argnums=1), (points, centroids), (None, ones))``: forward mode over the
generated reverse code gives the gradient and the Hessian-vector product with a vector of ones,
which for a diagonal Hessian is its diagonal (what GradBench's JAX tool does too).
"""
import numba
import numpy as np

import nbautodiff as nad

from .function import as_float, as_list, function


@numba.njit
def cost(points, centroids):
    n, d = points.shape
    k = centroids.shape[0]
    total = 0.0
    for i in range(n):
        closest = np.inf
        for j in range(k):
            dist = 0.0
            for l in range(d):
                diff = points[i, l] - centroids[j, l]
                dist += diff * diff
            closest = min(closest, dist)
        total += closest
    return total


grad_cost = nad.grad(cost, argnums=1)


def prepare(raw):
    return (np.asarray(raw["points"], dtype=np.float64),
            np.asarray(raw["centroids"], dtype=np.float64))


@function(prepare=prepare, output=as_float)
def cost_function(points, centroids):
    return cost(points, centroids)


@function(prepare=prepare, output=as_list)
def dir(points, centroids):  # noqa: A001  (the eval's name for it)
    J, H_diag = nad.jvp(grad_cost, (points, centroids), (None, np.ones_like(centroids)))
    return J / H_diag


FUNCTIONS = {"cost": cost_function, "dir": dir}
EXAMPLES = [{"points": [[0.0, 0.1], [1.0, 0.9], [0.2, 0.0], [0.9, 1.0]],
            "centroids": [[0.2, 0.0], [0.9, 1.0]], "min_runs": 1, "min_seconds": 0}]
