"""GradBench's ``gmm`` eval: the log posterior of a Gaussian mixture with a Wishart prior on
the precision matrices (ADBench's GMM, with GradBench's fixes), and its gradient with respect
to ``alpha``, ``mu``, ``q`` and ``l``.

``objective`` follows the eval's README ("Implementation") in loops: for each point and
component ``beta_ik = alpha_k + sum(q_k) - |Q_k (x_i - mu_k)|^2 / 2`` with ``Q_k`` lower
triangular (``exp(q_k)`` on the diagonal, ``l_k`` below it, column by column), a log-sum-exp
over the components per point, minus ``n`` times the log-sum-exp of ``alpha``, plus the Wishart
log prior. ``jacobian`` is ``nad.grad(objective, argnums=(0, 1, 2, 3))``.
"""
import math

import numba
import numpy as np

import nbautodiff as nad

from .function import as_float, function


@numba.njit
def logsumexp(v):
    mx = v[0]
    for i in range(1, v.shape[0]):
        mx = max(mx, v[i])
    s = 0.0
    for i in range(v.shape[0]):
        s += math.exp(v[i] - mx)
    return math.log(s) + mx


@numba.njit
def log_gamma_distrib(a, p):
    out = 0.25 * p * (p - 1) * math.log(math.pi)
    for j in range(1, p + 1):
        out += math.lgamma(a + 0.5 * (1 - j))
    return out


@numba.njit
def objective(alpha, mu, q, l, x, gamma, m):
    n, d = x.shape
    k = alpha.shape[0]
    Qdiag = np.exp(q)
    sum_q = np.zeros(k)
    for ik in range(k):
        for j in range(d):
            sum_q[ik] += q[ik, j]
    xc = np.empty(d)
    Qx = np.empty(d)
    beta = np.empty(k)
    slse = 0.0
    for ix in range(n):
        for ik in range(k):
            for j in range(d):
                xc[j] = x[ix, j] - mu[ik, j]
            for j in range(d):
                Qx[j] = Qdiag[ik, j] * xc[j]
            idx = 0
            for i in range(d):
                for j in range(i + 1, d):
                    Qx[j] += l[ik, idx] * xc[i]
                    idx += 1
            sq = 0.0
            for j in range(d):
                sq += Qx[j] * Qx[j]
            beta[ik] = alpha[ik] + sum_q[ik] - 0.5 * sq
        slse += logsumexp(beta)
    likelihood = -n * d * 0.5 * math.log(2.0 * math.pi) + slse - n * logsumexp(alpha)
    # Wishart prior on the precision matrices Q_k^T Q_k (n_w = d + m + 1 degrees of freedom)
    n_w = d + m + 1
    C = n_w * d * (math.log(gamma) - 0.5 * math.log(2.0)) - log_gamma_distrib(0.5 * n_w, d)
    prior = 0.0
    for ik in range(k):
        frobenius = 0.0
        for j in range(d):
            frobenius += Qdiag[ik, j] * Qdiag[ik, j]
        for j in range(l.shape[1]):
            frobenius += l[ik, j] * l[ik, j]
        prior += 0.5 * gamma * gamma * frobenius - m * sum_q[ik]
    return likelihood - prior + k * C


d_objective = nad.grad(objective, argnums=(0, 1, 2, 3))


def prepare(raw):
    d, k = int(raw["d"]), int(raw["k"])
    l_size = d * (d - 1) // 2
    return (np.asarray(raw["alpha"], dtype=np.float64),
            np.asarray(raw["mu"], dtype=np.float64).reshape(k, d),
            np.asarray(raw["q"], dtype=np.float64).reshape(k, d),
            np.asarray(raw["l"], dtype=np.float64).reshape(k, l_size),
            np.asarray(raw["x"], dtype=np.float64).reshape(int(raw["n"]), d),
            float(raw["gamma"]), int(raw["m"]))


def jacobian_output(grads):
    alpha, mu, q, l = grads
    return {"alpha": alpha.tolist(), "mu": mu.tolist(), "q": q.tolist(), "l": l.tolist()}


@function(prepare=prepare, output=as_float)
def objective_function(*args):
    return objective(*args)


@function(prepare=prepare, output=jacobian_output)
def jacobian(*args):
    return d_objective(*args)


FUNCTIONS = {"objective": objective_function, "jacobian": jacobian}
EXAMPLES = [{"d": 2, "k": 2, "n": 3, "m": 0, "gamma": 1.0,
            "x": [[0.1, 0.2], [0.3, -0.1], [-0.2, 0.4]], "alpha": [0.1, -0.2],
            "mu": [[0.0, 0.1], [0.2, 0.3]], "q": [[0.1, 0.2], [-0.1, 0.0]], "l": [[0.5], [-0.3]],
            "min_runs": 1, "min_seconds": 0}]
