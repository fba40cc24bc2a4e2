"""Scalars of one iteration pushed on the tape after their assignment (reverse_mode's
``values_taped_after``): the forward sweep stores the value an assignment gives, not the one it
overwrites, so a loop such as ``h[j] = math.tanh(z)`` has no recurrence and vectorises.

Each function is differentiated against central differences on random inputs; the generated
code must push after the assignment where the rule applies and before it where it does not
(a later statement pushes too, the value is read before its assignment or outside the loop).
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

import nbautodiff as nad
from fd import assert_grad_close, central_diff


def tanh_layer(w, x):                  # a recurrence through h: reversed iteration by iteration
    h = np.zeros(x.shape[0] + 1)
    for j in range(x.shape[0]):
        t = math.tanh(w[j] * h[j] + x[j])
        u = math.exp(0.5 * t)
        h[j + 1] = t * u
    s = 0.0
    for j in range(h.shape[0]):
        s += h[j] * h[j]
    return s


def later_push(w, x):                  # c is restored before t's readers: t keeps the old scheme
    s = 0.0
    c = 1.0
    for j in range(x.shape[0]):
        t = math.sin(w[j] * x[j])
        c = c * t + 1.0
        s += c * t
    return s


def read_before(w, x):                 # t carries from one iteration to the next
    s = 0.0
    t = 0.5
    for j in range(x.shape[0]):
        s += t * w[j]
        t = math.cos(s * x[j])
    return s + t


def nested_after(w, x):                # an inner loop after the assignment pushes its own values
    s = 0.0
    for i in range(x.shape[0]):
        t = math.tanh(w[i])
        for k in range(2):
            v = t * x[(i + k) % x.shape[0]]
            s += math.sin(v)
    return s


CASES = {tanh_layer: {"t", "u"}, later_push: set(), read_before: set(), nested_after: set()}


def _pushed_after(source: str, name: str) -> bool:
    return re.search(rf"\n( +){name} = [^\n]*\n\1_nad_tf\[_nad_tf_n\] = {name}\n", source) \
        is not None


@pytest.mark.parametrize("fun", list(CASES), ids=lambda f: f.__name__)
def test_gradient_matches_differences(fun, rng):
    for _ in range(3):
        w, x = rng.uniform(-1.0, 1.0, 7), rng.uniform(-1.0, 1.0, 7)
        grad = nad.grad(fun, (0, 1))
        for got, expected in zip(grad(w, x), central_diff(fun, (w, x), (0, 1))):
            assert_grad_close(got, expected, rtol=1e-6, atol=1e-9, label=fun.__name__)
    for name in ("t", "u"):
        assert _pushed_after(grad.source, name) is (name in CASES[fun]), grad.source


def test_hessian_over_values_taped_after(rng):
    w, x = rng.uniform(-1.0, 1.0, 5), rng.uniform(-1.0, 1.0, 5)
    hessian = nad.hessian(tanh_layer, 0)(w, x)
    gradient = nad.grad(tanh_layer, 0)
    h = 1e-5
    for k in range(5):
        step = np.zeros(5)
        step[k] = h
        column = (gradient(w + step, x) - gradient(w - step, x)) / (2 * h)
        assert_grad_close(hessian[:, k], column, rtol=1e-5, atol=1e-8, label=f"column {k}")
    np.testing.assert_allclose(hessian, hessian.T, rtol=1e-10, atol=1e-12)
