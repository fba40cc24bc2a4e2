"""GradBench's ``saddle`` eval (Siskind and Pearlmutter): the saddle point of ``f(x, y) =
(x1^2 + y1^2) - (x2^2 + y2^2)`` found as ``min_p1 max_p2 f(p1, p2)`` by gradient descent.

Nested AD: the outer argmin over ``p1`` needs the derivative of ``max_p2 f(p1, p2)``, itself a
gradient ascent that takes derivatives of ``f`` (the inner derivative); then ``p2`` is the
argmax at the ``p1`` found. ``rr``, ``rf``, ``fr``, ``ff`` choose the outer mode, then the
inner (``r`` reverse by ``nad.grad``, ``f`` forward by ``nad.forward``); the final argmax uses
the outer mode. The inner ascent (``inner_max_*``) is ``gd.py``'s solver written out for two
variables, so that it can be differentiated.

nbautodiff refuses these today, for the reason given in ``particle.py``: the inner derivative
is called from the code being differentiated. ``define`` reports the ``AutodiffError``.
"""
import math

import numpy as np

import nbautodiff as nad

from .function import as_list, function
from .gd import multivariate_argmax, multivariate_argmin


def f(x1, y1, x2, y2):
    return (x1 * x1 + y1 * y1) - (x2 * x2 + y2 * y2)


grad2_r = nad.grad(f, argnums=(2, 3))
grad2_f = nad.forward(f, nad.Const, nad.Const, nad.Dual, nad.Dual, width=2)


def grad2_forward(x1, y1, x2, y2):
    _, (gx, gy) = grad2_f(x1, y1, x2, 1.0, 0.0, y2, 0.0, 1.0)
    return gx, gy


def inner_max_r(p1x, p1y, sx, sy):
    """``max_p2 f(p1, p2)`` by gradient ascent from ``(sx, sy)``, gradients by reverse mode."""
    x, y = sx, sy
    fx = -f(p1x, p1y, x, y)
    gx, gy = grad2_r(p1x, p1y, x, y)
    gx, gy = -gx, -gy
    i = 0
    eta = 1e-5
    while True:
        if math.sqrt(gx * gx + gy * gy) <= 1e-5:
            break
        if i == 10:
            eta *= 2.0
            i = 0
        else:
            xp = x - eta * gx
            yp = y - eta * gy
            if math.sqrt((x - xp) ** 2 + (y - yp) ** 2) <= 1e-5:
                break
            fp = -f(p1x, p1y, xp, yp)
            if fp < fx:
                x, y, fx = xp, yp, fp
                gx, gy = grad2_r(p1x, p1y, x, y)
                gx, gy = -gx, -gy
                i += 1
            else:
                eta /= 2.0
                i = 0
    return f(p1x, p1y, x, y)


def inner_max_f(p1x, p1y, sx, sy):
    """As :func:`inner_max_r`, gradients by forward mode."""
    x, y = sx, sy
    fx = -f(p1x, p1y, x, y)
    gx, gy = grad2_forward(p1x, p1y, x, y)
    gx, gy = -gx, -gy
    i = 0
    eta = 1e-5
    while True:
        if math.sqrt(gx * gx + gy * gy) <= 1e-5:
            break
        if i == 10:
            eta *= 2.0
            i = 0
        else:
            xp = x - eta * gx
            yp = y - eta * gy
            if math.sqrt((x - xp) ** 2 + (y - yp) ** 2) <= 1e-5:
                break
            fp = -f(p1x, p1y, xp, yp)
            if fp < fx:
                x, y, fx = xp, yp, fp
                gx, gy = grad2_forward(p1x, p1y, x, y)
                gx, gy = -gx, -gy
                i += 1
            else:
                eta /= 2.0
                i = 0
    return f(p1x, p1y, x, y)


def outer_gradient(mode, fun, argnums):
    """The gradient of ``fun`` with respect to two of its scalar arguments, as an array."""
    if mode == "r":
        d = nad.grad(fun, argnums=argnums)
        return lambda *args: np.array(d(*args))
    activities = [nad.Const] * 4
    for k in argnums:
        activities[k] = nad.Dual
    d = nad.forward(fun, *activities, width=2)

    def forward_gradient(*args):
        flat = []
        for k, value in enumerate(args):
            flat.append(value)
            if k == argnums[0]:
                flat += [1.0, 0.0]
            elif k == argnums[1]:
                flat += [0.0, 1.0]
        return np.array(d(*flat)[1])
    return forward_gradient


def variant(outer, inner):
    inner_max = inner_max_r if inner == "r" else inner_max_f
    d_inner_max = outer_gradient(outer, inner_max, (0, 1))
    d_f = outer_gradient(outer, f, (2, 3))

    def solve(sx, sy):
        p1 = multivariate_argmin(lambda p: inner_max(p[0], p[1], sx, sy),
                                 lambda p: d_inner_max(p[0], p[1], sx, sy), [sx, sy])
        p2 = multivariate_argmax(lambda p: f(p1[0], p1[1], p[0], p[1]),
                                 lambda p: d_f(p1[0], p1[1], p[0], p[1]), [sx, sy])
        return np.concatenate([p1, p2])
    return function(prepare=lambda raw: (float(raw["start"][0]), float(raw["start"][1])),
                    output=as_list)(solve)


FUNCTIONS = {outer + inner: variant(outer, inner) for outer in "rf" for inner in "rf"}
EXAMPLES = [{"start": [1.0, 1.0], "min_runs": 1, "min_seconds": 0}]
