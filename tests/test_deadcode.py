"""Derivatives that do not return the primal value do not compute it (``nbautodiff.transforms.deadcode``).

Unit tests of the dead-assignment pass on small generated-looking functions (what it must
remove and what it must keep), then end-to-end: ``grad`` drops the primal sum of a reduction
while ``value_and_grad`` and ``reverse(..., ret="Active")`` keep it, and all of them agree with
central differences and with the primal's value.
"""
from __future__ import annotations

import ast
import math
import textwrap

import numpy as np
import pytest

import nbautodiff as nad
from nbautodiff.transforms.deadcode import remove_dead_assignments

from fd import assert_grad_close, central_diff


def pruned(source: str) -> str:
    function = ast.parse(textwrap.dedent(source)).body[0]
    return ast.unparse(remove_dead_assignments(function))


def test_unused_chain_through_a_loop_carried_sum_is_removed():
    out = pruned("""
        def f(x, d_x):
            e = 0.0
            for i in range(x.shape[0]):
                t = math.sin(x[i])
                w = e + t
                e = w
                d_x[i] += math.cos(x[i])
            return (None,)
        """)
    assert "math.sin" not in out and "e = w" not in out and "w = e + t" not in out
    assert "d_x[i] += math.cos(x[i])" in out


@pytest.mark.parametrize("use", [
    "d[i] = t",                      # an array store reads it
    "return (t,)",                   # the result
    "if t > 0.0:\n    d[i] = 1.0",  # a branch test
    "helper(t)",                     # a call that may have effects
])
def test_a_value_something_needs_is_kept(use):
    body = textwrap.indent(f"t = x[i] * 2.0\n{use}\nreturn (None,)\n", "    ")
    out = pruned(f"def f(x, d, i):\n{body}")
    assert "t = x[i] * 2.0" in out


def test_array_alias_written_through_and_impure_values_are_kept():
    out = pruned("""
        def f(x, n):
            buf = np.zeros(n)
            view = buf
            view[0] = 1.0
            r = np.random.rand()
            k = 0
            while k < n:
                k += 1
            return (buf[0],)
        """)
    for kept in ("buf = np.zeros(n)", "view = buf", "r = np.random.rand()", "k += 1"):
        assert kept in out


def test_augmented_assignments_are_kept_they_may_write_an_array_in_place():
    out = pruned("""
        def f(u, d_u, g):
            d_u += np.outer(g, u)
            return (None,)
        """)
    assert "d_u += np.outer(g, u)" in out


def test_an_emptied_block_becomes_pass():
    out = pruned("""
        def f(x, n):
            for i in range(n):
                t = x[i]
            return (None,)
        """)
    compile(out, "<pruned>", "exec")
    assert "t = x[i]" not in out


def energy(pos, eps):
    n = pos.shape[0]
    e = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            dx = pos[i, 0] - pos[j, 0]
            dy = pos[i, 1] - pos[j, 1]
            r2 = dx * dx + dy * dy + 0.5
            e += eps * math.exp(-r2) / r2
    return e


def test_grad_skips_the_primal_value_and_value_and_grad_keeps_it():
    rng = np.random.default_rng(7)
    pos, eps = rng.normal(size=(9, 2)), 1.3
    fd = central_diff(energy, (pos, eps), 0)
    grad = nad.grad(energy)
    assert_grad_close(grad(pos.copy(), eps), fd, rtol=1e-6, atol=1e-9, label="grad")
    assert "_nad_result =" not in grad.source and "return (None," in grad.source

    both = nad.value_and_grad(energy)
    value, gradient = both(pos.copy(), eps)
    assert value == pytest.approx(energy(pos, eps), rel=1e-13)
    assert_grad_close(gradient, fd, rtol=1e-6, atol=1e-9, label="value_and_grad")
    assert "return (None," not in both.source

    shadow = np.zeros_like(pos)
    value = nad.reverse(energy, nad.Duplicated, nad.Const, ret="Active")(pos.copy(), shadow,
                                                                        eps, 1.0)
    assert value == pytest.approx(energy(pos, eps), rel=1e-13)
    assert_grad_close(shadow, fd, rtol=1e-6, atol=1e-9, label="reverse Active")
    shadow = np.zeros_like(pos)
    nothing = nad.reverse(energy, nad.Duplicated, nad.Const, ret="ActiveOnly")(pos.copy(), shadow,
                                                                              eps, 1.0)
    assert nothing is None
    assert_grad_close(shadow, fd, rtol=1e-6, atol=1e-9, label="reverse ActiveOnly")


def helper_sum(x, scale):
    s = 0.0
    for i in range(x.shape[0]):
        s += scale * x[i] * x[i]
    return s


def calls_helper(x, scale):
    return helper_sum(x, scale) * helper_sum(x, 2.0 * scale)


def test_callees_reverse_variants_do_not_return_values_the_caller_ignores():
    rng = np.random.default_rng(3)
    x, scale = rng.normal(size=6), 0.7
    derived = nad.value_and_grad(calls_helper, argnums=(0, 1))
    value, (gx, gscale) = derived(x.copy(), scale)
    assert value == pytest.approx(calls_helper(x, scale), rel=1e-13)
    fx, fscale = central_diff(calls_helper, (x, scale), (0, 1))
    assert_grad_close(gx, fx, rtol=1e-6, atol=1e-9, label="x")
    assert_grad_close(gscale, fscale, rtol=1e-6, atol=1e-9, label="scale")
    assert "helper_sum__rev_aa_r_adjonly" in derived.source
