"""Reverse vector mode (issue 19, item 5): one reverse sweep carrying N adjoint lanes
(``nbautodiff/transforms/reverse/vector.py``), run by ``reverse(..., width=N)``, the pullback's
``batched`` and ``jacrev``. Every result is compared with central differences (tests/fd.py)
and with the same derivative one seed at a time (width 1), to 1e-12; the sweeps are counted
by ``nbautodiff.api.residuals.SWEEPS``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import nbautodiff as nad
from nbautodiff.api import residuals

import corpus
from fd import assert_grad_close, central_diff, fd_vjp


def scalar_loop(x, a):
    s = 0.0
    for i in range(x.shape[0]):
        s = s * 0.5 + math.sin(a * x[i]) * x[i]     # a scalar overwritten: on the tape
    return s


def local_shadows(x, a):
    y = x.copy()                                    # an array local: its shadow a residual
    for i in range(y.shape[0]):
        y[i] = math.sin(y[i]) * a
    s = 0.0
    for i in range(y.shape[0]):
        s += y[i] * y[i] + a * x[i]
    return s


def recurrent(x, a):
    out = np.empty(x.shape[0])
    h = 0.0
    for i in range(x.shape[0]):
        h = math.tanh(a * h + x[i])                 # the tape popped in the reverse loop
        out[i] = h * h
    return out


def branches(x, a):
    s = 0.0
    for i in range(x.shape[0]):
        if x[i] > 0.0:
            s += a * x[i] ** 2
        else:
            s -= math.exp(a * x[i])
    return s


def pairwise(x, w):
    e = 0.0
    for i in range(x.shape[0]):
        for j in range(i + 1, x.shape[0]):
            e += w[i] * w[j] / (1.0 + (x[i] - x[j]) ** 2)   # adjoints of x[i] kept per row
    return e


def decay(x, a, steps):
    s = 0.0
    for t in range(steps):
        for i in range(x.shape[0]):
            s = math.sin(s * a + x[i])
    return s


def helper(v, a):
    return math.tanh(a * v)


def with_a_call(x, a):
    s = 0.0
    for i in range(x.shape[0]):
        s += helper(x[i], a)
    return s


@pytest.fixture
def x(rng):
    return rng.uniform(-1, 1, 6)


def compare_with_one_sweep_each(fun, args, cotangents, vector: bool = True, **options):
    """``vjp_fn.batched(cotangents)`` against ``vjp_fn(c)`` for each c (to 1e-12) and central
    differences; one forward sweep, and one reverse sweep for all of them where ``vector``."""
    out, vjp_fn = nad.vjp(fun, *args, **options)
    one = [vjp_fn(c) for c in cotangents]
    residuals.reset_sweeps()
    many = vjp_fn.batched(cotangents)
    assert (vjp_fn.vector_refused is None) == vector, vjp_fn.vector_refused
    assert residuals.SWEEPS["reverse"] == (1 if vector else len(cotangents))
    assert residuals.SWEEPS["forward"] == 0
    for c, a, b in zip(cotangents, one, many):
        for k, (u, v) in enumerate(zip(a, b)):
            if u is None:
                continue
            np.testing.assert_allclose(v, u, rtol=1e-12, atol=1e-12)
            assert_grad_close(v, fd_vjp(fun, args, c, k), rtol=1e-6, atol=1e-8)
    return vjp_fn


@pytest.mark.parametrize("fun", [scalar_loop, local_shadows, branches, pairwise],
                         ids=lambda f: f.__name__)
def test_scalar_output_lanes(fun, x, rng):
    compare_with_one_sweep_each(fun, (x, rng.uniform(0.5, 1.5, 6) if fun is pairwise else 0.8),
                                [1.0, -0.5, 2.0, 0.25])


def test_tape_pops_in_a_loop(x, rng):
    vjp_fn = compare_with_one_sweep_each(recurrent, (x, 0.6),
                                         [rng.normal(size=6) for _ in range(3)])
    source = next(iter(vjp_fn._session.kept.split.vectors.values())).source
    assert "_nad_vl" in source
    for line in source.splitlines():          # the pop is primal: once, outside the lane loops
        if "= _nad_tf[_nad_tf_n]" in line:
            assert line.startswith("        h") or line.startswith("    h"), line


def test_checkpointed_loop(x):
    compare_with_one_sweep_each(decay, (x, 0.7, 5), [1.0, -2.0, 0.5], checkpoint=True)
    out, vjp_fn = nad.vjp(decay, x, 0.7, 5, checkpoint=True)
    vjp_fn.batched([1.0, 2.0])
    assert vjp_fn.memory.checkpointed


def test_a_callee_falls_back_to_a_loop_of_sweeps(x):
    vjp_fn = compare_with_one_sweep_each(with_a_call, (x, 0.9), [1.0, -1.5, 3.0], vector=False)
    assert "an adjoint is passed to helper__rev" in vjp_fn.vector_refused


def test_reverse_width_is_one_sweep(x):
    seeds = (1.0, -0.5, 2.0)
    shadows = [np.zeros_like(x) for _ in seeds]
    residuals.reset_sweeps()
    vector = nad.reverse(local_shadows, nad.Duplicated, nad.Active, width=3)
    value, adjoints = vector(x, *shadows, 0.8, *seeds)
    assert dict(residuals.SWEEPS) == {"forward": 1, "reverse": 1}
    assert vector.vector_refused is None
    assert math.isclose(value, local_shadows(x, 0.8), rel_tol=1e-14)
    single = nad.reverse(local_shadows, nad.Duplicated, nad.Active)
    reference = central_diff(local_shadows, (x, 0.8), (0, 1))
    for seed, shadow, adjoint in zip(seeds, shadows, adjoints):
        alone = np.zeros_like(x)
        np.testing.assert_allclose(single(x, alone, 0.8, seed)[1], adjoint, rtol=1e-12)
        np.testing.assert_allclose(shadow, alone, rtol=1e-12, atol=1e-12)
        assert_grad_close(shadow, seed * reference[0], rtol=1e-6, atol=1e-9)
        assert math.isclose(adjoint, seed * reference[1], rel_tol=1e-6)


def outputs(x, a):
    n = x.shape[0]
    out = np.empty(n)
    h = 0.0
    for i in range(n):
        h = math.tanh(a * h + x[i] * math.cos(0.1 * i))
        out[i] = h * h + a * x[i]
    return out


@pytest.mark.parametrize("n", [7, 10])
@pytest.mark.parametrize("width", [1, 3, 8])
def test_jacrev_costs_one_forward_and_ceil_n_over_width_reverse_sweeps(n, width, rng):
    x = rng.uniform(-1, 1, n)
    jacobian = nad.jacrev(outputs, (0, 1), width=width)
    residuals.reset_sweeps()
    Jx, Ja = jacobian(x, 0.7)
    assert residuals.SWEEPS["forward"] == 1
    assert residuals.SWEEPS["reverse"] == math.ceil(n / width)
    assert jacobian.latest.vector_refused is None
    fx, fa = nad.jacfwd(outputs, (0, 1))(x, 0.7)
    np.testing.assert_allclose(Jx, fx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Ja, fa, rtol=1e-12, atol=1e-12)
    for i in range(n):
        assert_grad_close(Jx[i], central_diff(lambda *a: outputs(*a)[i], (x, 0.7), 0),
                          rtol=1e-6, atol=1e-8)


GENERATED = ["damped_oscillator", "rk4_logistic", "nested_break_continue", "ternary_ops",
             "welford_std", "matvec_quad", "logsumexp", "softmax_xent", "nbody_energy",
             "arr_mlp_layers", "tensor3_write", "max_drawdown"]


@pytest.mark.parametrize("name", GENERATED)
def test_corpus_programs_equal_one_sweep_each(name):
    """Programs of tests/corpus.py: the vector sweep equals a sweep per cotangent (and, where a
    refusal is recorded, the loop of sweeps still does)."""
    case = next(c for c in corpus.CORPUS if c.name == name)
    args = corpus.args_for(case, 0)
    out, vjp_fn = nad.vjp(case.fun, *args)
    cotangents = [1.0, -0.5, 2.0]
    one = [vjp_fn(c) for c in cotangents]
    many = vjp_fn.batched(cotangents)
    assert vjp_fn.vector_refused is None, vjp_fn.vector_refused
    for a, b in zip(one, many):
        for u, v in zip(a, b):
            if u is not None:
                np.testing.assert_allclose(v, u, rtol=1e-12, atol=1e-12)
