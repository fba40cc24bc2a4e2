"""Runtime helpers compile once per real argument type, never per constant.

numba compiles a dispatcher called from compiled code once per distinct argument type, and a
constant int in the caller is typed ``Literal[int](value)``: without care, a helper such as the
tape's growth would be compiled again for every constant the generated code passes it (a push
right after the tape's creation passes top 0; a reserve of a fixed size passes its size). Each
program below makes generated code pass different constants to the helpers (tape pushes and
reserves, integer tapes, checkpoint schedules and buffers, BLAS products with constant sizes,
axis reductions); afterwards no dispatcher of ``nbautodiff.kernels`` holds a ``Literal`` in any
of its signatures, and every gradient agrees with central differences. The tape's trip count,
which generated code calls at every taped loop, is such a helper (compiled once, for int64
bounds), not a function numba inlines into each call site.
"""
from __future__ import annotations

import importlib
import math
import pkgutil

import numpy as np
import pytest
from numba.core import types
from numba.core.dispatcher import Dispatcher

import nbautodiff as nad
import nbautodiff.kernels
from fd import assert_grad_close, central_diff


def pushes_first(x, n):
    s = 0.0
    for i in range(n):
        s = s + math.sin(x[i]) * x[i]
    t = s * s
    for i in range(n):
        for j in range(3):
            t = t + math.exp(x[i] * x[j] * 0.1)
    return t


def fixed_reserves(x):
    s = 1.0
    for i in range(4):
        s = s * math.cos(x[i % x.shape[0]] + s)
    for i in range(7):
        s = s + math.sin(s * x[0])
    k = 0
    while s < 3.0:
        s = s + x[1] * x[1] + 0.5
        k += 1
    return s * k


def branches(x, n):
    s = 0.0
    for i in range(n):
        if x[i] > 0.5:
            s = s + x[i] ** 3
        else:
            s = s - math.tanh(x[i] * s)
        j = i % 3
        s = s + x[j] * s * 0.1
    return s


def heat_marked(u0, alpha, steps):
    n = u0.shape[0]
    u = u0.copy()
    unew = np.zeros(n)
    for t in nad.checkpointed(range(steps), every=3):
        for i in range(1, n - 1):
            unew[i] = u[i] + alpha * (u[i - 1] - 2.0 * u[i] + u[i + 1]) - 0.1 * u[i] ** 3
        for i in range(1, n - 1):
            u[i] = unew[i]
    s = 0.0
    for i in range(n):
        s += u[i] * u[i]
    return s


def heat_binomial(u0, alpha, steps):
    n = u0.shape[0]
    u = u0.copy()
    unew = np.zeros(n)
    for t in nad.checkpointed(range(steps), snapshots=2):
        for i in range(1, n - 1):
            unew[i] = u[i] + alpha * (u[i - 1] - 2.0 * u[i] + u[i + 1])
        for i in range(1, n - 1):
            u[i] = unew[i]
    return math.sin(u[1]) + u[n // 2] ** 2


def dense(W, x):
    h = np.empty(3)
    for i in range(3):
        z = 0.0
        for j in range(4):
            z += W[i, j] * x[j]
        h[i] = math.tanh(z)
    s = 0.0
    for i in range(3):
        s += h[i] * h[i]
    return s


def reductions(A):
    return np.sum(np.max(A, axis=0) ** 2) + np.prod(A[0]) + np.sum(np.min(A, axis=1))


def _rng_array(shape, seed, lo=0.2, hi=0.9):
    return np.random.default_rng(seed).uniform(lo, hi, shape)


CASES = [
    ("pushes_first", pushes_first, lambda: (_rng_array(5, 1), 5), {}),
    ("fixed_reserves", fixed_reserves, lambda: (_rng_array(3, 2),), {}),
    ("branches", branches, lambda: (_rng_array(6, 3, 0.1, 0.9), 6), {}),
    ("heat_marked", heat_marked, lambda: (_rng_array(8, 4), 0.2, 7), {}),
    ("heat_binomial", heat_binomial, lambda: (_rng_array(6, 5), 0.2, 6), {}),
    ("dense_fastmath", dense, lambda: (_rng_array((3, 4), 6), _rng_array(4, 7)),
     {"fastmath": True}),
    ("reductions", reductions, lambda: (_rng_array((3, 4), 8),), {}),
]


def kernel_dispatchers():
    """Every numba dispatcher bound at the top of a module of ``nbautodiff.kernels`` (the GPU
    modules, which need CUDA, aside), by qualified name."""
    found = {}
    for info in pkgutil.iter_modules(nbautodiff.kernels.__path__):
        if info.name in ("gpu", "multigpu"):
            continue
        module = importlib.import_module(f"nbautodiff.kernels.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, Dispatcher) and value.__module__ == module.__name__:
                found[f"{info.name}.{name}"] = value
    return found


@pytest.mark.parametrize("name, fun, make_args, options", CASES, ids=[c[0] for c in CASES])
def test_gradient_matches_central_differences(name, fun, make_args, options):
    args = make_args()
    got = nad.grad(fun, **options)(*args)
    assert_grad_close(got, central_diff(fun, args), rtol=1e-6, atol=1e-8, label=name)


def test_no_helper_is_compiled_for_a_literal():
    for _, fun, make_args, options in CASES:
        nad.grad(fun, **options)(*make_args())
    x = _rng_array(3, 9)
    hessian = nad.hessian(fixed_reserves)(x)          # forward mode over the reverse code
    assert np.allclose(hessian[1], central_diff(lambda y: nad.grad(fixed_reserves)(y)[1], (x,)),
                       rtol=1e-5, atol=1e-7)
    dispatchers = kernel_dispatchers()
    literal = {name: [str(sig) for sig in dispatcher.signatures
                      if any(isinstance(t, types.Literal) for t in sig)]
               for name, dispatcher in dispatchers.items()}
    literal = {name: sigs for name, sigs in literal.items() if sigs}
    assert not literal, "\n".join(f"{name}: {sigs}" for name, sigs in sorted(literal.items()))
    assert (types.int64,) * 3 in dispatchers["tape.trip_count"].signatures
