"""The gradient-descent solver of GradBench's ``particle`` and ``saddle`` evals, as
``cpp/gradbench/gd.hpp`` defines it (the evals' expected answers depend on its exact steps):
step ``eta`` starting at 1e-5, doubled after 10 accepted steps, halved on a rejected one; stop
when the gradient's norm or the step's length is at most 1e-5.

These run in Python around the derivatives (the solver itself is not differentiated here:
the nested parts of the evals are written out in ``particle.py`` and ``saddle.py``).
"""
import math

import numpy as np


def multivariate_argmin(f, g, x0):
    """``argmin f`` from ``x0``, ``g`` the gradient of ``f`` (both take and give arrays)."""
    x = np.array(x0, dtype=np.float64)
    fx = f(x)
    gx = g(x)
    i = 0
    eta = 1e-5
    while True:
        if math.sqrt(float(gx @ gx)) <= 1e-5:
            return x
        if i == 10:
            eta *= 2.0
            i = 0
            continue
        x_prime = x - eta * gx
        if math.sqrt(float((x - x_prime) @ (x - x_prime))) <= 1e-5:
            return x
        fx_prime = f(x_prime)
        if fx_prime < fx:
            x, fx = x_prime, fx_prime
            gx = g(x)
            i += 1
        else:
            eta /= 2.0
            i = 0


def multivariate_argmax(f, g, x0):
    return multivariate_argmin(lambda x: -f(x), lambda x: -g(x), x0)
