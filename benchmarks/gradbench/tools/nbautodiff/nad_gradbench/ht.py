"""GradBench's ``ht`` eval (ADBench's hand tracking): the residuals between ``npts`` measured
points and a skinned hand model posed by 26 parameters ``theta``, and their Jacobian.

``objective`` follows ``cpp/gradbench/evals/ht.hpp`` with NumPy for the small matrices: the pose
parameters from ``theta``, each bone's relative transform (its base transform times the Euler
rotation of its pose), the absolute transforms down the bone tree, the skinned vertex positions
(a weighted sum over bones of the transformed base positions), the global rotation (angle-axis)
and translation, then ``points - vertex`` per correspondence. In the "complicated" variant
(``us`` not empty) each correspondence is a point of a triangle, ``u0 v0 + u1 v1 + (1 - u0 -
u1) v2``, and the Jacobian has two more columns first: the derivatives by that point's own
``u``.

``jacobian`` is one pass of forward vector mode (``nad.forward(..., Dualv, width=W)``): a lane
per column of the Jacobian, ``W = 26`` (or 28). Residual ``i`` depends on ``us[i]`` only, so one
lane seeded with ``1`` in every ``us[i, 0]`` gives the first ``u`` column of every row, and one
seeded in every ``us[i, 1]`` the second (compressed, as for ``ba``).
"""
import math

import numba
import numpy as np

import nbautodiff as nad

from .function import as_list, function


@numba.njit
def angle_axis_to_rotation_matrix(aa):
    norm = math.sqrt(aa[0] * aa[0] + aa[1] * aa[1] + aa[2] * aa[2])
    R = np.eye(3)
    if norm < 0.0001:
        return R
    x = aa[0] / norm
    y = aa[1] / norm
    z = aa[2] / norm
    s = math.sin(norm)
    c = math.cos(norm)
    R[0, 0] = x * x + (1 - x * x) * c
    R[0, 1] = x * y * (1 - c) - z * s
    R[0, 2] = x * z * (1 - c) + y * s
    R[1, 0] = x * y * (1 - c) + z * s
    R[1, 1] = y * y + (1 - y * y) * c
    R[1, 2] = y * z * (1 - c) - x * s
    R[2, 0] = x * z * (1 - c) - y * s
    R[2, 1] = z * y * (1 - c) + x * s
    R[2, 2] = z * z + (1 - z * z) * c
    return R


@numba.njit
def euler_angles_to_rotation_matrix(xzy):
    tx = xzy[0]
    ty = xzy[2]
    tz = xzy[1]
    Rx = np.eye(3)
    Rx[1, 1] = math.cos(tx)
    Rx[2, 1] = math.sin(tx)
    Rx[1, 2] = -Rx[2, 1]
    Rx[2, 2] = Rx[1, 1]
    Ry = np.eye(3)
    Ry[0, 0] = math.cos(ty)
    Ry[0, 2] = math.sin(ty)
    Ry[2, 0] = -Ry[0, 2]
    Ry[2, 2] = Ry[0, 0]
    Rz = np.eye(3)
    Rz[0, 0] = math.cos(tz)
    Rz[1, 0] = math.sin(tz)
    Rz[0, 1] = -Rz[1, 0]
    Rz[1, 1] = Rz[0, 0]
    return (Rz @ Ry) @ Rx


@numba.njit
def to_pose_params(theta, n_bones):
    """Row ``j`` holds the three parameters of column ``j`` of ADBench's pose matrix: global
    rotation, scale (ones), global translation, then one row per bone."""
    pose = np.zeros((n_bones + 3, 3))
    for i in range(3):
        pose[0, i] = theta[i]
        pose[1, i] = 1.0
        pose[2, i] = theta[3 + i]
    i_theta = 6
    i_pose = 5
    for finger in range(5):
        for i in range(2, 5):
            pose[i_pose, 0] = theta[i_theta]
            i_theta += 1
            if i == 2:
                pose[i_pose, 1] = theta[i_theta]
                i_theta += 1
            i_pose += 1
        i_pose += 1
    return pose


@numba.njit
def skinned_vertex_positions(theta, parents, base_relatives, inverse_base_absolutes,
                             base_positions, weights, is_mirrored):
    """The posed hand's vertices, ``(n_vertices, 3)``."""
    n_bones = parents.shape[0]
    pose = to_pose_params(theta, n_bones)
    absolutes = np.empty((n_bones, 4, 4))
    for b in range(n_bones):
        tr = np.eye(4)
        tr[0:3, 0:3] = euler_angles_to_rotation_matrix(pose[b + 3])
        relative = base_relatives[b] @ tr
        if parents[b] == -1:
            absolutes[b] = relative
        else:
            absolutes[b] = absolutes[parents[b]] @ relative
    n_vertices = base_positions.shape[0]
    positions = np.zeros((n_vertices, 3))
    for b in range(n_bones):
        T = absolutes[b] @ inverse_base_absolutes[b]
        for v in range(n_vertices):
            wv = weights[v, b]
            for r in range(3):
                positions[v, r] += wv * (T[r, 0] * base_positions[v, 0]
                                         + T[r, 1] * base_positions[v, 1]
                                         + T[r, 2] * base_positions[v, 2]
                                         + T[r, 3] * base_positions[v, 3])
    if is_mirrored:
        for v in range(n_vertices):
            positions[v, 0] = -positions[v, 0]
    R = angle_axis_to_rotation_matrix(pose[0])
    out = np.empty((n_vertices, 3))
    for v in range(n_vertices):
        for r in range(3):
            out[v, r] = (R[r, 0] * pose[1, 0] * positions[v, 0]
                         + R[r, 1] * pose[1, 1] * positions[v, 1]
                         + R[r, 2] * pose[1, 2] * positions[v, 2] + pose[2, r])
    return out


@numba.njit
def objective_simple(theta, parents, base_relatives, inverse_base_absolutes, base_positions,
                     weights, is_mirrored, correspondences, points):
    vertices = skinned_vertex_positions(theta, parents, base_relatives, inverse_base_absolutes,
                                        base_positions, weights, is_mirrored)
    err = np.empty((points.shape[0], 3))
    for i in range(points.shape[0]):
        for j in range(3):
            err[i, j] = points[i, j] - vertices[correspondences[i], j]
    return err


@numba.njit
def objective_complicated(theta, us, parents, base_relatives, inverse_base_absolutes,
                          base_positions, weights, is_mirrored, correspondences, triangles,
                          points):
    vertices = skinned_vertex_positions(theta, parents, base_relatives, inverse_base_absolutes,
                                        base_positions, weights, is_mirrored)
    err = np.empty((points.shape[0], 3))
    for i in range(points.shape[0]):
        t = correspondences[i]
        for j in range(3):
            hand_point = (us[i, 0] * vertices[triangles[t, 0], j]
                          + us[i, 1] * vertices[triangles[t, 1], j]
                          + (1.0 - us[i, 0] - us[i, 1]) * vertices[triangles[t, 2], j])
            err[i, j] = points[i, j] - hand_point
    return err


N_THETA = 26
MODEL = (nad.Const,) * 5          # parents, base_relatives, inverse_base_absolutes, base_positions, weights
d_simple = nad.forward(objective_simple, nad.Dualv, *MODEL, nad.Const, nad.Const, nad.Const,
                       width=N_THETA)
d_complicated = nad.forward(objective_complicated, nad.Dualv, nad.Dualv, *MODEL, nad.Const,
                            nad.Const, nad.Const, nad.Const, width=N_THETA + 2)


def prepare(raw):
    data, model = raw["data"], raw["data"]["model"]
    theta = np.asarray(raw["theta"], dtype=np.float64)
    us = np.asarray(raw["us"], dtype=np.float64).reshape(-1, 2)
    model_arrays = (np.asarray(model["parents"], dtype=np.int64),
                    np.asarray(model["base_relatives"], dtype=np.float64),
                    np.asarray(model["inverse_base_absolutes"], dtype=np.float64),
                    np.asarray(model["base_positions"], dtype=np.float64),
                    np.asarray(model["weights"], dtype=np.float64),
                    bool(model["is_mirrored"]))
    correspondences = np.asarray(data["correspondences"], dtype=np.int64)
    triangles = np.asarray(model["triangles"], dtype=np.int64).reshape(-1, 3)
    points = np.asarray(data["points"], dtype=np.float64).reshape(-1, 3)
    return theta, us, model_arrays, correspondences, triangles, points


@function(prepare=prepare, output=lambda err: err.ravel().tolist())
def objective(theta, us, model_arrays, correspondences, triangles, points):
    if us.shape[0] == 0:
        return objective_simple(theta, *model_arrays, correspondences, points)
    return objective_complicated(theta, us, *model_arrays, correspondences, triangles, points)


@function(prepare=prepare, output=as_list)
def jacobian(theta, us, model_arrays, correspondences, triangles, points):
    npts = points.shape[0]
    if us.shape[0] == 0:
        d_theta = np.zeros((N_THETA, N_THETA))
        for k in range(N_THETA):
            d_theta[k, k] = 1.0
        _, d_err = d_simple(theta, d_theta, *model_arrays, correspondences, points)
        return np.stack(d_err).reshape(N_THETA, 3 * npts).T    # one tangent per lane
    width = N_THETA + 2
    d_theta = np.zeros((width, N_THETA))
    d_us = np.zeros((width, npts, 2))
    for k in range(N_THETA):
        d_theta[2 + k, k] = 1.0
    d_us[0, :, 0] = 1.0
    d_us[1, :, 1] = 1.0
    _, d_err = d_complicated(theta, d_theta, us, d_us, *model_arrays, correspondences,
                             triangles, points)
    return np.stack(d_err).reshape(width, 3 * npts).T


FUNCTIONS = {"objective": objective, "jacobian": jacobian}


def _example(us):
    """Two bones, three vertices, two correspondences: the shapes of a real hand, tiny."""
    eye = np.eye(4).tolist()
    return {"theta": [0.1 * (i % 5) for i in range(N_THETA)], "us": us,
            "data": {"model": {"bone_count": 22,
                               "bone_names": [f"b{i}" for i in range(22)],
                               "parents": [-1] + list(range(21)),
                               "base_relatives": [eye] * 22,
                               "inverse_base_absolutes": [eye] * 22,
                               "base_positions": [[0.1, 0.2, 0.3, 1.0], [0.3, 0.1, 0.2, 1.0],
                                                  [0.2, 0.3, 0.1, 1.0]],
                               "weights": [[1.0 / 22] * 22] * 3,
                               "triangles": [[0, 1, 2]], "is_mirrored": False},
                     "correspondences": [0, 0] if us else [0, 2],
                     "points": [[0.0, 0.1, 0.2], [0.3, 0.2, 0.1]]},
            "min_runs": 1, "min_seconds": 0}


EXAMPLES = [_example([]), _example([[0.2, 0.3], [0.5, 0.1]])]
