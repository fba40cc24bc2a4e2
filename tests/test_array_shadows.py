"""Shadows of whole-array temporaries made by their first contribution (no zero fill).

An array made once at the top of a function and read only by elementwise operations gets its
shadow from the first contribution in the reverse sweep instead of zeros (``zeros_like``) plus
``+=``. Each test checks the gradient against central differences and, from ``.source``, that
the optimisation applied or (near misses) did not.
"""
from __future__ import annotations

import numpy as np

import nbautodiff as nad

from fd import assert_grad_close, central_diff


def check(fun, args, argnums):
    derived = nad.grad(fun, argnums=argnums)
    ad = derived(*[a.copy() if isinstance(a, np.ndarray) else a for a in args])
    fd = central_diff(fun, args, argnums)
    ad, fd = (ad, fd) if isinstance(argnums, tuple) else ((ad,), (fd,))
    for k, (a, f) in enumerate(zip(ad, fd)):
        assert_grad_close(a, f, rtol=1e-6, atol=1e-9, label=f"{fun.__name__} arg {k}")
    return derived.source


def logistic(w, b, X, y):
    z = X @ w + b
    p = 1.0 / (1.0 + np.exp(-z))
    return -np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p))


def test_a_chain_of_elementwise_temporaries_allocates_no_zero_shadows():
    rng = np.random.default_rng(0)
    args = (rng.normal(size=3), 0.2, rng.normal(size=(7, 3)), (rng.random(7) > 0.5) * 1.0)
    source = check(logistic, args, (0, 1))
    assert source.count("zeros_like(") == 1            # only the mean's operand, read by np.mean


def shared_adjoint(x):
    a = x * 1.5
    b = np.sin(x)
    w = a * 3.0
    z = a + b                  # reversed first: a and b get z's adjoint, copied, never aliased
    return np.sum(z * z) + np.sum(w * b)


def test_operands_given_the_same_adjoint_do_not_alias():
    x = np.random.default_rng(1).normal(size=5)
    source = check(shared_adjoint, (x,), 0)
    assert ".copy()" in source


def read_by_a_reduction(x):
    a = np.exp(x)
    b = a * 2.0
    return np.sum(b) + np.sum(a)


def test_an_array_a_reduction_reads_keeps_its_zero_shadow():
    x = np.random.default_rng(2).normal(size=4)
    source = check(read_by_a_reduction, (x,), 0)
    assert "_nad_d_a = _nad_arrays.zeros_like(a)" in source
    assert "_nad_d_b = _nad_arrays.zeros_like(b)" in source


def made_in_a_branch(x, flag):
    a = x * 2.0
    if flag > 0:
        a = np.exp(x)
    return np.sum(a * a)


def test_arrays_assigned_twice_or_in_branches_keep_their_zero_shadow():
    x = np.random.default_rng(3).normal(size=4)
    for flag in (1, -1):
        check(made_in_a_branch, (x, flag), 0)
