"""GradBench's ``ba`` eval (ADBench's bundle adjustment): reprojection errors of ``p``
observations of ``m`` points by ``n`` cameras, and the sparse Jacobian of all the errors.

The eval sends one camera, point, weight and feature and ``n, m, p``; like every tool (the
C++ ``from_json``, PyTorch's ``prepare_input``) the input is replicated first (not timed):
observation ``i`` sees point ``i % m`` from camera ``i % n``. ``objective`` computes every
error from every observation, as the eval requires (no reuse of the replication).

``jacobian`` is forward vector mode over the whole objective with ``width=15``
(``nad.forward(objective, Dualv, ...)``): the Jacobian is sparse, each row depending on the 11
parameters of one camera, the 3 coordinates of one point and one weight, so the columns are
grouped in 15 colours (parameter ``k`` of every camera, coordinate ``k`` of every point, every
weight) that never share a row, and one pass seeded with the 15 colour vectors gives every
nonzero (compressed Jacobian, Curtis-Powell-Reid). The nonzeros are then put in the CSR layout
of ADBench's ``BASparseMat`` (``cpp/gradbench/evals/ba.hpp``), inside the timed region; the
reply carries the first 30 and the last element of ``rows``, ``cols`` and ``vals``, as the eval
asks.
"""
import math

import numba
import numpy as np

import nbautodiff as nad

from .function import function

N_CAM = 11          # rotation (3), centre (3), focal length, principal point (2), distortion (2)
WIDTH = N_CAM + 3 + 1


@numba.njit
def rodrigues_rotate_point(rot, X, out):
    sqtheta = rot[0] * rot[0] + rot[1] * rot[1] + rot[2] * rot[2]
    if sqtheta != 0.0:
        theta = math.sqrt(sqtheta)
        costheta = math.cos(theta)
        sintheta = math.sin(theta)
        theta_inverse = 1.0 / theta
        w0 = rot[0] * theta_inverse
        w1 = rot[1] * theta_inverse
        w2 = rot[2] * theta_inverse
        cross0 = w1 * X[2] - w2 * X[1]
        cross1 = w2 * X[0] - w0 * X[2]
        cross2 = w0 * X[1] - w1 * X[0]
        tmp = (w0 * X[0] + w1 * X[1] + w2 * X[2]) * (1.0 - costheta)
        out[0] = X[0] * costheta + cross0 * sintheta + w0 * tmp
        out[1] = X[1] * costheta + cross1 * sintheta + w1 * tmp
        out[2] = X[2] * costheta + cross2 * sintheta + w2 * tmp
    else:
        out[0] = X[0] + rot[1] * X[2] - rot[2] * X[1]
        out[1] = X[1] + rot[2] * X[0] - rot[0] * X[2]
        out[2] = X[2] + rot[0] * X[1] - rot[1] * X[0]


@numba.njit
def objective(cams, X, w, obs, feats, reproj_err, w_err):
    """Write the reprojection errors ``(p, 2)`` and the weight errors ``(p,)``."""
    Xo = np.empty(3)
    Xcam = np.empty(3)
    for i in range(obs.shape[0]):
        c = obs[i, 0]
        pt = obs[i, 1]
        for k in range(3):
            Xo[k] = X[pt, k] - cams[c, 3 + k]
        rodrigues_rotate_point(cams[c, 0:3], Xo, Xcam)
        u = Xcam[0] / Xcam[2]
        v = Xcam[1] / Xcam[2]
        rsq = u * u + v * v
        L = 1.0 + cams[c, 9] * rsq + cams[c, 10] * rsq * rsq
        reproj_err[i, 0] = w[i] * (u * L * cams[c, 6] + cams[c, 7] - feats[i, 0])
        reproj_err[i, 1] = w[i] * (v * L * cams[c, 6] + cams[c, 8] - feats[i, 1])
    for i in range(w.shape[0]):
        w_err[i] = 1.0 - w[i] * w[i]


d_objective = nad.forward(objective, nad.Dualv, nad.Dualv, nad.Dualv, nad.Const, nad.Const,
                          nad.Dualv, nad.Dualv, width=WIDTH)


@numba.njit
def csr(n, m, obs, d_reproj, d_w_err):
    """ADBench's ``BASparseMat`` (rows, cols, vals) from the compressed Jacobian: colour ``k``
    of row ``(i, r)`` is the derivative by parameter ``k`` of observation ``i``'s camera (k <
    11), by coordinate ``k - 11`` of its point (k < 14), or by its weight (k = 14)."""
    p = obs.shape[0]
    nnz = WIDTH * 2 * p + p
    rows = np.empty(3 * p + 1, dtype=np.int64)
    cols = np.empty(nnz, dtype=np.int64)
    vals = np.empty(nnz)
    rows[0] = 0
    r = 0
    v = 0
    for i in range(p):
        c = obs[i, 0]
        pt = obs[i, 1]
        for row in range(2):
            rows[r + 1] = rows[r] + WIDTH
            r += 1
            for k in range(N_CAM):
                cols[v] = N_CAM * c + k
                vals[v] = d_reproj[k, i, row]
                v += 1
            for k in range(3):
                cols[v] = N_CAM * n + 3 * pt + k
                vals[v] = d_reproj[N_CAM + k, i, row]
                v += 1
            cols[v] = N_CAM * n + 3 * m + i
            vals[v] = d_reproj[WIDTH - 1, i, row]
            v += 1
    for i in range(p):
        rows[r + 1] = rows[r] + 1
        r += 1
        cols[v] = N_CAM * n + 3 * m + i
        vals[v] = d_w_err[WIDTH - 1, i]
        v += 1
    return rows, cols, vals


def prepare(raw):
    n, m, p = int(raw["n"]), int(raw["m"]), int(raw["p"])
    cams = np.tile(np.asarray(raw["cam"], dtype=np.float64), (n, 1))
    X = np.tile(np.asarray(raw["x"], dtype=np.float64), (m, 1))
    w = np.full(p, float(raw["w"]))
    obs = np.empty((p, 2), dtype=np.int64)
    obs[:, 0] = np.arange(p) % n
    obs[:, 1] = np.arange(p) % m
    feats = np.tile(np.asarray(raw["feat"], dtype=np.float64), (p, 1))
    return cams, X, w, obs, feats


def objective_output(errors):
    """The eval's deduplicated form: the first observation's errors and how many there are."""
    reproj_err, w_err = errors
    return {"reproj_error": {"elements": reproj_err[0].tolist(), "repeated": reproj_err.shape[0]},
            "w_err": {"element": float(w_err[0]), "repeated": w_err.shape[0]}}


def dedup(a) -> list:
    return [*a[:30].tolist(), a[-1].item()]


def jacobian_output(jac):
    """The first 30 and the last element of ``rows``, ``cols`` and ``vals``."""
    rows, cols, vals = jac
    return {"rows": dedup(rows), "cols": dedup(cols), "vals": dedup(vals)}


@function(prepare=prepare, output=objective_output)
def objective_function(cams, X, w, obs, feats):
    reproj_err = np.empty((obs.shape[0], 2))
    w_err = np.empty(w.shape[0])
    objective(cams, X, w, obs, feats, reproj_err, w_err)
    return reproj_err, w_err


@function(prepare=prepare, output=jacobian_output)
def jacobian(cams, X, w, obs, feats):
    n, m, p = cams.shape[0], X.shape[0], w.shape[0]
    d_cams = np.zeros((WIDTH, n, N_CAM))          # the seeds: one colour per lane
    d_X = np.zeros((WIDTH, m, 3))
    d_w = np.zeros((WIDTH, p))
    for k in range(N_CAM):
        d_cams[k, :, k] = 1.0
    for k in range(3):
        d_X[N_CAM + k, :, k] = 1.0
    d_w[WIDTH - 1, :] = 1.0
    reproj_err = np.empty((p, 2))
    d_reproj = np.zeros((WIDTH, p, 2))
    w_err = np.empty(p)
    d_w_err = np.zeros((WIDTH, p))
    d_objective(cams, d_cams, X, d_X, w, d_w, obs, feats, reproj_err, d_reproj, w_err, d_w_err)
    return csr(n, m, obs, d_reproj, d_w_err)


FUNCTIONS = {"objective": objective_function, "jacobian": jacobian}
EXAMPLES = [{"n": 2, "m": 3, "p": 4, "w": 0.9, "feat": [0.1, 0.2],
            "cam": [0.1, -0.2, 0.05, 0.3, 0.2, -0.1, 400.0, 0.5, 0.4, 1e-3, 1e-6],
            "x": [1.0, -0.5, 4.0], "min_runs": 1, "min_seconds": 0}]
