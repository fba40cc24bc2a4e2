"""GradBench's ``ode`` eval (cmpad's ``an_ode``): ``s`` Runge-Kutta 4 steps of
``y_0' = x_0``, ``y_i' = x_i y_{i-1}`` from ``y(0) = 0`` to ``t = 2``, and the gradient of the
last component of the result with respect to ``x`` (``nad.grad(ode_last)``: reverse mode
through the time loop, its tape holding what each step overwrites).
"""
import numba
import numpy as np

import nbautodiff as nad

from .function import as_list, function


@numba.njit
def ode_fun(x, y, z):
    z[0] = x[0]
    for i in range(1, x.shape[0]):
        z[i] = x[i] * y[i - 1]


@numba.njit
def ode(x, s):
    n = x.shape[0]
    h = 2.0 / s
    yf = np.zeros(n)
    k1 = np.empty(n)
    k2 = np.empty(n)
    k3 = np.empty(n)
    k4 = np.empty(n)
    y_tmp = np.empty(n)
    for _ in range(s):
        ode_fun(x, yf, k1)
        for i in range(n):
            y_tmp[i] = yf[i] + h * k1[i] / 2.0
        ode_fun(x, y_tmp, k2)
        for i in range(n):
            y_tmp[i] = yf[i] + h * k2[i] / 2.0
        ode_fun(x, y_tmp, k3)
        for i in range(n):
            y_tmp[i] = yf[i] + h * k3[i]
        ode_fun(x, y_tmp, k4)
        for i in range(n):
            yf[i] += h * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]) / 6.0
    return yf


@numba.njit
def ode_last(x, s):
    y = ode(x, s)
    return y[x.shape[0] - 1]


d_ode_last = nad.grad(ode_last)


def prepare(raw):
    return np.asarray(raw["x"], dtype=np.float64), int(raw["s"])


@function(prepare=prepare, output=as_list)
def primal(x, s):
    return ode(x, s)


@function(prepare=prepare, output=as_list)
def gradient(x, s):
    return d_ode_last(x, s)


FUNCTIONS = {"primal": primal, "gradient": gradient}
EXAMPLES = [{"x": [0.5, 0.25, 1.0], "s": 2, "min_runs": 1, "min_seconds": 0}]
