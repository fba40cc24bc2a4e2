"""GradBench's ``particle`` eval (Siskind and Pearlmutter): the control parameter ``w`` for
which a charged particle, pushed by two charges (one at ``(10, 10 - w)``), hits the origin.

Nested AD: ``naive_euler(w)`` integrates the particle's path by Euler steps, each taking the
gradient of the potential ``p(x) = sum_c 1 / |x - c|`` with respect to the position (the inner
derivative), and returns the square of the x-coordinate where the path crosses the x-axis;
``w`` is the argmin of that (gradient descent, ``gd.py``) with the outer derivative of
``naive_euler``. The four functions choose the modes: ``rr``, ``rf``, ``fr``, ``ff`` (outer
mode, then inner: ``r`` reverse by ``nad.grad``, ``f`` forward by ``nad.forward``/``nad.jvp``).

nbautodiff refuses these today: the inner derivative is a derived function called from the
code being differentiated, and a derivative is not a function with Python source that the
transforms can read. ``define`` compiles the four variants (``EXAMPLES`` is the eval's own
input) and reports nbautodiff's ``AutodiffError`` verbatim, for instance ``in function
'naive_euler_r', line ...: call to 'grad_p_r' is not supported (only math/NumPy functions,
array constructors and functions with Python source can be called)``.
"""
import math

import numpy as np

import nbautodiff as nad

from .function import as_float, function
from .gd import multivariate_argmin


def potential(c0x, c0y, c1x, c1y, x0, x1):
    return (1.0 / math.sqrt((c0x - x0) ** 2 + (c0y - x1) ** 2)
            + 1.0 / math.sqrt((c1x - x0) ** 2 + (c1y - x1) ** 2))


grad_p_r = nad.grad(potential, argnums=(4, 5))                        # inner reverse
grad_p_f = nad.forward(potential, nad.Const, nad.Const, nad.Const, nad.Const, nad.Dual,
                       nad.Dual, width=2)                             # inner forward


def naive_euler_r(w):
    x0, x1 = 0.0, 8.0
    v0, v1 = 0.75, 0.0
    dt = 0.1
    while True:
        g0, g1 = grad_p_r(10.0, 10.0 - w, 10.0, 0.0, x0, x1)
        x0 += dt * v0
        x1 += dt * v1
        if x1 <= 0.0:
            dt_f = -x1 / v1
            x_f = x0 + dt_f * v0
            return x_f * x_f
        v0 -= dt * g0
        v1 -= dt * g1


def naive_euler_f(w):
    x0, x1 = 0.0, 8.0
    v0, v1 = 0.75, 0.0
    dt = 0.1
    while True:
        _, (g0, g1) = grad_p_f(10.0, 10.0 - w, 10.0, 0.0, x0, 1.0, 0.0, x1, 0.0, 1.0)
        x0 += dt * v0
        x1 += dt * v1
        if x1 <= 0.0:
            dt_f = -x1 / v1
            x_f = x0 + dt_f * v0
            return x_f * x_f
        v0 -= dt * g0
        v1 -= dt * g1


def outer_reverse(naive_euler):
    d = nad.grad(naive_euler)
    return lambda w: np.array([d(float(w[0]))])


def outer_forward(naive_euler):
    d = nad.forward(naive_euler, nad.Dual)
    return lambda w: np.array([d(float(w[0]), 1.0)[1]])


VARIANTS = {"rr": (naive_euler_r, outer_reverse(naive_euler_r)),
            "rf": (naive_euler_f, outer_reverse(naive_euler_f)),
            "fr": (naive_euler_r, outer_forward(naive_euler_r)),
            "ff": (naive_euler_f, outer_forward(naive_euler_f))}


def prepare(raw):
    return (float(raw["w"]),)


def variant(name):
    naive_euler, gradient = VARIANTS[name]

    @function(prepare=prepare, output=as_float)
    def solve(w0):
        return multivariate_argmin(lambda w: naive_euler(float(w[0])), gradient, [w0])[0]
    return solve


FUNCTIONS = {name: variant(name) for name in VARIANTS}
EXAMPLES = [{"w": 0.0, "min_runs": 1, "min_seconds": 0}]
