"""The reverse-loop optimisations of ``nbautodiff.transforms.reverse.loop_order``, each against central differences.

Loops whose reversal only adds into adjoints run in their original order, accumulate into
locals, fuse their primal work into the reversal, or gather stencil adjoints. Each test below
has a function where an optimisation applies (and checks from ``.source`` that it did) or a
near miss where it must not (a store at a constant index, an accumulator read elsewhere, an
index that wraps around, a result computed from the accumulator...); every gradient is
compared with central differences at random inputs, for every active argument.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import nbautodiff as nad

from fd import assert_grad_close, central_diff, max_abs

RTOL, ATOL = 1e-6, 1e-8


def check(fun, args, argnums):
    """Gradient of ``fun`` w.r.t. ``argnums`` against central differences; returns the generated
    code (its comments, which quote the user's lines, left out)."""
    derived = nad.grad(fun, argnums=argnums)
    ad = derived(*[a.copy() if isinstance(a, np.ndarray) else a for a in args])
    ad = ad if isinstance(argnums, tuple) else (ad,)
    fd = central_diff(fun, args, argnums)
    fd = fd if isinstance(argnums, tuple) else (fd,)
    scale = max(1.0, max_abs(*fd))
    for k, (a, f) in enumerate(zip(ad, fd)):
        assert_grad_close(a, f, rtol=RTOL, atol=ATOL * scale, label=f"{fun.__name__} arg {k}")
    return "\n".join(line for line in derived.source.splitlines()
                     if not line.lstrip().startswith("#")) + "\n"


# -- loops run in their original order ----------------------------------------------------------

def rosenbrock(x):
    s = 0.0
    for i in range(x.shape[0] - 1):
        a = x[i + 1] - x[i] * x[i]
        b = 1.0 - x[i]
        s += 100.0 * a * a + b * b
    return s


def store_at_constant_index(x, out):
    s = 0.0
    for i in range(x.shape[0]):
        out[0] = x[i] * x[i]
        s += out[0] * float(i + 1)
    return s


def wrapping_store(x):
    out = np.zeros(x.shape[0])
    for i in range(-2, x.shape[0] - 2):
        out[i] = out[i] * 0.5 + x[i + 2] * x[i + 2]
    s = 0.0
    for i in range(x.shape[0]):
        s += out[i] * float(i + 1)
    return s


def wrapping_store_only(x, out):
    for i in range(-2, x.shape[0]):
        out[i] = math.sin(x[i]) * float(i + 3)          # out[-2] is stored again at the end
    s = 0.0
    for i in range(x.shape[0]):
        s += out[i] * float(i + 1)
    return s


def accumulator_read_in_loop(x):
    s = 0.0
    y = 0.0
    for i in range(x.shape[0]):
        s += x[i]
        y += s * x[i]
    return y


def accumulator_then_scaled(x, c):
    s = 0.0
    for i in range(x.shape[0]):
        s -= c * x[i] * x[i]
    return 2.0 * s + s * s


def invariant_index(x, w):
    n = x.shape[0]
    s = 0.0
    for i in range(n):
        for j in range(n):
            s += w[i] * x[j] * x[i] + math.cos(w[i] - x[j])
    return s


def test_any_order_loop_runs_forwards_and_merges_accumulations(rng):
    x = rng.uniform(-1.5, 1.5, 12)
    source = check(rosenbrock, (x,), 0)
    assert "_nad_acc" in source and "range(_nad_trips" not in source


@pytest.mark.parametrize("fun", [store_at_constant_index, wrapping_store_only])
def test_stores_that_may_hit_one_element_twice_keep_the_backward_order(fun, rng):
    x = rng.standard_normal(7)
    check(fun, (x, np.zeros(7)), 0)


@pytest.mark.parametrize("fun", [wrapping_store, accumulator_read_in_loop])
def test_near_misses_of_the_any_order_rule(fun, rng):
    check(fun, (rng.standard_normal(9),), 0)


def test_accumulator_used_after_the_loop(rng):
    check(accumulator_then_scaled, (rng.standard_normal(6), 0.7), (0, 1))


def test_loop_invariant_shadow_index_is_summed_in_a_local(rng):
    source = check(invariant_index, (rng.standard_normal(5), rng.standard_normal(5)), (0, 1))
    assert "_nad_acc" in source


# -- primal work fused into the reversal -----------------------------------------------------------

def pair_energy(pos, eps, sigma):
    n = pos.shape[0]
    e = 0.0
    s2 = sigma * sigma
    for i in range(n):
        for j in range(i + 1, n):
            dx = pos[i, 0] - pos[j, 0]
            dy = pos[i, 1] - pos[j, 1]
            r2 = dx * dx + dy * dy
            q = s2 / r2
            e += eps * (q * q - q)
    return e


def pair_energy_scaled(pos, eps):
    n = pos.shape[0]
    e = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            d = pos[i] - pos[j]
            e += eps / (1.0 + d * d)
    return 3.0 * e


def pair_energy_then_mutated(pos):
    n = pos.shape[0]
    e = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            d = pos[i] - pos[j]
            e += 1.0 / (1.0 + d * d)
    pos[0] = pos[0] * 2.0
    return e + pos[0]


def _lattice(rng, n):
    return np.stack([np.arange(n) * 1.3, (np.arange(n) % 3) * 1.1], 1) \
        + 0.05 * rng.standard_normal((n, 2))


def test_fused_pair_loop_all_arguments(rng):
    source = check(pair_energy, (_lattice(rng, 6), 1.3, 0.9), (0, 1, 2))
    reverse_sweep = source.split("_nad_seed\n", 1)[-1]
    assert source.count("for j in range(") == 1 and "for j in range(" in reverse_sweep


@pytest.mark.parametrize("fun", [pair_energy_scaled, pair_energy_then_mutated])
def test_loops_that_cannot_be_fused(fun, rng):
    args = (rng.standard_normal(6), 0.8) if fun is pair_energy_scaled else \
        (rng.standard_normal(6),)
    check(fun, args, tuple(range(len(args))) if len(args) > 1 else 0)


# -- stencils gathered (transposed) ------------------------------------------------------------

def heat(u0, alpha, steps):
    n = u0.shape[0]
    u = u0.copy()
    unew = np.empty(n)
    for t in range(steps):
        unew[0] = 0.0
        unew[n - 1] = 0.0
        for i in range(1, n - 1):
            unew[i] = u[i] + alpha * (u[i - 1] - 2.0 * u[i] + u[i + 1])
        for i in range(n):
            u[i] = unew[i]
    s = 0.0
    for i in range(n):
        s += u[i] * u[i]
    return s


def periodic_heat(u0, alpha, steps):
    n = u0.shape[0]
    u = u0.copy()
    unew = np.empty(n)
    for t in range(steps):
        for i in range(0, n):
            unew[i] = u[i] - alpha * (u[i] - u[i - 1])          # upwind, u[-1] is u[n - 1]
        for i in range(n):
            u[i] = unew[i]
    s = 0.0
    for i in range(n):
        s += u[i] * u[i] * float(i + 1)
    return s


def nonlinear_stencil(w, v, steps):
    n = w.shape[0]
    out = np.zeros(n)
    s = 0.0
    for t in range(steps):
        for i in range(2, n - 1):
            out[i] = w[i - 2] * v[i] + math.sin(w[i] * w[i + 1]) * float(t + 1)
        for i in range(n):
            s += out[i] * out[i]
    return s


def heat_2d(u0, alpha, steps):
    n = u0.shape[0]
    m = u0.shape[1]
    u = u0.copy()
    unew = np.zeros((n, m))
    for t in range(steps):
        for i in range(1, n - 1):
            for j in range(1, m - 1):
                unew[i, j] = u[i, j] + alpha * (u[i - 1, j] + u[i + 1, j] + u[i, j - 1]
                                                + u[i, j + 1] - 4.0 * u[i, j])
        for i in range(n):
            for j in range(m):
                u[i, j] = unew[i, j]
    s = 0.0
    for i in range(n):
        for j in range(m):
            s += u[i, j] * u[i, j]
    return s


@pytest.mark.parametrize("n", [2, 3, 4, 9])
def test_heat_stencil_is_gathered(n, rng):
    source = check(heat, (rng.standard_normal(n), 0.2, 3), 0)
    assert "_nad_j" in source


def test_heat_with_active_coefficient_falls_back(rng):
    source = check(heat, (rng.standard_normal(8), 0.2, 3), (0, 1))
    assert "_nad_j" not in source


def test_periodic_stencil_wraps_around(rng):
    check(periodic_heat, (rng.standard_normal(7), 0.15, 3), (0, 1))
    source = check(periodic_heat, (rng.standard_normal(7), 0.15, 3), 0)
    assert "_nad_j" in source


def test_nonlinear_stencil(rng):
    w, v = rng.standard_normal(8), rng.standard_normal(8)
    source = check(nonlinear_stencil, (w, v, 2), 0)
    assert "_nad_j" in source
    check(nonlinear_stencil, (w, v, 2), (0, 1))


def test_two_dimensional_stencil(rng):
    check(heat_2d, (rng.standard_normal((5, 6)), 0.1, 2), (0, 1))
    check(heat_2d, (rng.standard_normal((4, 4)), 0.1, 2), 0)
