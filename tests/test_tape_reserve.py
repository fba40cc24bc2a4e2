"""Tape room reserved at a loop's entry, so that the loop's own pushes are plain stores.

A loop may reserve ``trip count x pushes per iteration`` values once and then store without
checking the capacity only if nothing else inside it pushes: a nested loop that pushes, or an
array saved on the tape, would take room reserved for the counted pushes and the plain stores
would run past the end of the tape. These tests compile the gradients with numba's bounds
checking on (a store past the end raises ``IndexError`` instead of corrupting the heap) and
compare them with central differences at sizes on both sides of the tape's first capacity
(64 values), for every argument.
"""
from __future__ import annotations

import math

import numba
import numpy as np
import pytest

import nbautodiff as nad

from fd import assert_grad_close, central_diff, max_abs


@pytest.fixture
def bounds_checked(monkeypatch):
    """Gradients compiled in the test index-check every array access."""
    monkeypatch.setattr(numba.config, "BOUNDSCHECK", 1)


def check(fun, args, argnums):
    derived = nad.grad(fun, argnums=argnums)
    ad = derived(*[a.copy() if isinstance(a, np.ndarray) else a for a in args])
    fd = central_diff(fun, args, argnums)
    scale = max(1.0, max_abs(*fd))
    for k, (a, f) in enumerate(zip(ad, fd)):
        assert_grad_close(a, f, rtol=1e-6, atol=1e-8 * scale, label=f"{fun.__name__} arg {k}")
    return derived.source


def scalar_and_array_saved_per_step(x, p, steps):
    # each step pushes p (a scalar) and saves v (read by w's adjoint, written after)
    v = x.copy()
    s = 0.0
    for t in range(steps):
        p = math.sin(p)
        w = v * v
        s += np.sum(w)
        v[0] = p
    return s


@pytest.mark.parametrize("steps", [1, 15, 16, 17, 40])
def test_array_saved_in_a_loop_does_not_overrun_reserved_room(bounds_checked, steps):
    """With 3-element snapshots, 17 steps used to fill the tape exactly before a plain store."""
    rng = np.random.default_rng(steps)
    check(scalar_and_array_saved_per_step, (rng.uniform(-1, 1, 3), 0.7, steps), (0, 1))


def mixture_scores(mu, X):
    # per point: a max over clusters of a loop-computed score (the branch is taped per
    # cluster, the inner loop over dimensions pushes nothing), then a max-shifted log-sum-exp
    n, d = X.shape
    k = mu.shape[0]
    score = np.empty(k)
    total = 0.0
    for i in range(n):
        mx = -math.inf
        for c in range(k):
            q = 0.0
            for j in range(d):
                diff = X[i, j] - mu[c, j]
                q += diff * diff
            score[c] = -0.5 * q
            if score[c] > mx:
                mx = score[c]
        s = 0.0
        for c in range(k):
            s += math.exp(score[c] - mx)
        total += mx + math.log(s)
    return total


def inner_loop_pushes(x, y):
    # the inner loop pushes (a rebound scalar that its adjoint reads), so the outer loop's
    # own push (the branch) must stay checked
    s = 0.0
    for i in range(x.shape[0]):
        a = x[i]
        for j in range(y.shape[0]):
            a = math.sin(a) * y[j]
        if a > 0.0:
            s += a * a
        else:
            s -= a
    return s


@pytest.mark.parametrize("n", [3, 40])
def test_outer_loop_reserves_when_nested_loops_push_nothing(bounds_checked, n):
    rng = np.random.default_rng(n)
    mu, X = rng.standard_normal((5, 3)), rng.standard_normal((n, 3))
    source = check(mixture_scores, (mu, X), (0, 1))
    # the branch flag of the loop over clusters is stored without a capacity check
    assert "if _nad_ti_n + 1 > _nad_ti.shape[0]" not in source, source
    assert "_nad_ti = _nad_tape.grown(_nad_ti, _nad_ti_n, _nad_tape.trip_count(" in source, source


@pytest.mark.parametrize("n", [3, 40])
def test_outer_loop_keeps_checked_pushes_when_a_nested_loop_pushes(bounds_checked, n):
    rng = np.random.default_rng(n)
    x, y = rng.uniform(-1, 1, n), rng.uniform(0.5, 1.5, 7)
    source = check(inner_loop_pushes, (x, y), (0, 1))
    assert "if _nad_ti_n + 1 > _nad_ti.shape[0]" in source, source
