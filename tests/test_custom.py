"""Custom derivatives (``nad.custom_vjp``/``defvjp``), ``nad.non_differentiable`` and the
``%%autodiff --custom/--nondiff`` options.

A rule that differs on purpose from the true derivative (straight-through, scaled) is checked
against the closed form of the rule: the derivative AD would compute differs, so only the rule
can give it. Rules equal to the true derivative are checked against central differences
(tests/fd.py) on random inputs, called directly, in loops and from nested callees, with their
arguments overwritten after the call.
"""
from __future__ import annotations

import inspect
import math

import numba
import numpy as np
import pytest
from IPython.core.error import UsageError

import nbautodiff as nad
from nbautodiff.frontend import declarations
from fd import assert_grad_close, central_diff


def line_of(fun, needle):
    """The line in this file of the first line of ``fun``'s source that contains ``needle``."""
    lines, start = inspect.getsourcelines(inspect.unwrap(fun))
    return next(start + k for k, text in enumerate(lines) if needle in text)


# ---- rules that differ from the true derivative: the rule must be what ran -------------------

def _clip(x):
    return min(max(x, -1.0), 1.0)


clip = nad.custom_vjp(_clip)


@clip.defvjp
def clip_straight_through(g, z, x):
    return g


@nad.custom_vjp
def damped(x, y):
    return x * y


@damped.defvjp
def damped_vjp(g, z, x, y):
    return 0.5 * g * y, None                 # half the true adjoint of x, none for y


def clipped_loss(x, c):
    s = 0.0
    for i in range(x.shape[0]):
        s += c[i] * clip(x[i] * x[i])
    return s


def test_straight_through_rule_runs_where_ad_would_give_zero(rng):
    x = rng.uniform(1.5, 3.0, size=6) * rng.choice([-1.0, 1.0], size=6)    # clip saturated
    c = rng.normal(size=6)
    expected = c * 2.0 * x                   # the rule passes g through clip: d/dx c*x*x
    assert_grad_close(nad.grad(clipped_loss)(x, c), expected, rtol=1e-12, label="custom rule")
    plain = nad.grad(_clip)(float(x[0] * x[0]))
    assert plain == 0.0 and nad.grad(clip)(float(x[0] * x[0])) == 1.0


def test_rule_is_used_by_grad_vjp_and_reverse_of_the_function_itself(rng):
    x, y = rng.normal(), rng.normal()
    assert nad.grad(damped, argnums=(0, 1))(x, y) == (0.5 * y, 0.0)
    value, g = nad.value_and_grad(damped)(x, y)
    assert value == x * y and g == 0.5 * y
    out, pullback = nad.vjp(damped, x, y)
    assert out == x * y and pullback(3.0) == (1.5 * y, 0.0)
    assert nad.reverse(damped, nad.Active, nad.Const)(x, y, 2.0) == (x * y, y)
    assert "damped_vjp" in nad.grad(damped).source


def nested_damped(x, y):
    return damped(x, y) + damped(y, x)


def test_rule_runs_in_a_callee(rng):
    x, y = rng.normal(), rng.normal()
    gx, gy = nad.grad(nested_damped, argnums=(0, 1))(x, y)
    assert gx == pytest.approx(0.5 * y) and gy == pytest.approx(0.5 * x)   # true: 2y, 2x


# ---- rules equal to the true derivative, against central differences ------------------------

@nad.custom_vjp
def softplus(x):
    return math.log1p(math.exp(x))


@softplus.defvjp
def softplus_vjp(g, z, x):
    return g / (1.0 + math.exp(-x))


@nad.custom_vjp
def logsumexp(a, t):
    m = a[0] / t
    for i in range(a.shape[0]):
        m = max(m, a[i] / t)
    s = 0.0
    for i in range(a.shape[0]):
        s += math.exp(a[i] / t - m)
    return t * (m + math.log(s))


@logsumexp.defvjp
def logsumexp_vjp(g, z, a, t):
    w = np.exp((a - z) / t)                 # softmax(a / t)
    return g * w, g * (z - np.sum(w * a)) / t


def lse_layer(a, t):
    return logsumexp(a, t) + 0.5 * softplus(t)


def time_loop(a, t, steps):
    """Calls in a loop, in a nested callee; both arguments overwritten after each call."""
    total = 0.0
    for k in range(steps):
        total += math.sin(lse_layer(a, t)) + softplus(a[k] * t)
        for i in range(a.shape[0]):
            a[i] = a[i] * 0.9 + 0.05 * t * a[i]
        t = t * 1.1 + 0.01 * total
    return total


def test_scalar_rule_matches_central_differences(rng):
    for x in rng.normal(scale=3.0, size=5):
        assert nad.grad(softplus)(x) == pytest.approx(central_diff(softplus, (x,), 0), rel=1e-8)


def test_array_rule_called_directly(rng):
    a, t = rng.normal(size=7), rng.uniform(0.5, 2.0)
    ga, gt = nad.grad(logsumexp, argnums=(0, 1))(a, t)
    fa, ft = central_diff(logsumexp, (a, t), (0, 1))
    assert_grad_close(ga, fa, rtol=1e-7, label="d/da")
    assert_grad_close(gt, ft, rtol=1e-7, label="d/dt")


def test_rules_in_a_loop_and_a_nested_callee_with_arguments_overwritten(rng):
    a, t = rng.normal(size=5), rng.uniform(0.5, 1.5)
    ga, gt = nad.grad(time_loop, argnums=(0, 1))(a.copy(), t, 4)
    fa, ft = central_diff(time_loop, (a, t, 4), (0, 1))
    assert_grad_close(ga, fa, rtol=1e-6, label="d/da")
    assert_grad_close(gt, ft, rtol=1e-6, label="d/dt")


def scores_logsumexp(X, w):
    """Whole-array code around a declared function."""
    z = np.tanh(X @ w)
    return logsumexp(z, 0.7) + 0.1 * np.sum(w * w)


def test_rule_called_from_whole_array_code(rng):
    X, w = rng.normal(size=(6, 3)), rng.normal(size=3)
    assert_grad_close(nad.grad(scores_logsumexp, argnums=1)(X, w), central_diff(scores_logsumexp, (X, w), 1), rtol=1e-7, label="d/dw")


def test_rule_with_float32_arrays_and_duplicated_shadows(rng):
    a = rng.normal(size=4).astype(np.float32)
    da = np.ones(4, np.float32)                  # the adjoint is added into the shadow
    value = nad.reverse(lse_layer, nad.Duplicated, nad.Const)(a, da, 0.8, 1.0)
    fa = central_diff(lse_layer, (a, 0.8), 0)
    assert value == pytest.approx(lse_layer(a.astype(np.float64), 0.8), rel=1e-5)
    assert_grad_close(da - 1.0, fa, rtol=1e-4, label="shadow of a")


@nad.custom_vjp
def squares(a):
    out = np.empty_like(a)
    for i in range(a.shape[0]):
        out[i] = a[i] * a[i]
    return out


@squares.defvjp
def squares_vjp(g, z, a):
    return 2.0 * g * a


def sum_of_sines_of_squares(a):
    b = squares(a)
    s = 0.0
    for i in range(b.shape[0]):
        s += math.sin(b[i])
    return s


def test_rule_of_a_function_returning_an_array(rng):
    a = rng.normal(size=5)
    assert_grad_close(nad.grad(sum_of_sines_of_squares)(a),
                      central_diff(sum_of_sines_of_squares, (a,), 0), rtol=1e-7, label="d/da")


def test_rule_without_z_does_not_recompute_the_primal():
    source = nad.grad(softplus).source
    assert "softplus_vjp(_nad_seed, 0.0, x)" in source and "= softplus(" not in source
    assert "= logsumexp(" in nad.grad(logsumexp).source              # its rule reads z


def test_declared_functions_stay_callable_from_python_and_numba(rng):
    x = float(rng.normal())
    assert softplus(x) == math.log1p(math.exp(x))

    @numba.njit
    def compiled(v):
        return softplus(v) * 2.0

    assert compiled(x) == pytest.approx(2.0 * math.log1p(math.exp(x)), rel=1e-15)
    assert nad.grad(compiled)(x) == pytest.approx(2.0 / (1.0 + math.exp(-x)), rel=1e-12)


# ---- non-differentiable functions -----------------------------------------------------------

@nad.non_differentiable
def largest_magnitude(a):
    m = 0.0
    for i in range(a.shape[0]):
        m = max(m, abs(a[i]))
    return m


def normalised_energy(a, w):
    m = largest_magnitude(a)
    s = 0.0
    for i in range(a.shape[0]):
        s += w * a[i] * a[i] / m
        m = m + largest_magnitude(a) * 0.0          # called again, in a loop
    return s


def test_non_differentiable_call_contributes_nothing(rng):
    a, w = rng.normal(size=6), rng.uniform(0.5, 2.0)
    m = np.max(np.abs(a))
    ga, gw = nad.grad(normalised_energy, argnums=(0, 1))(a, w)
    assert_grad_close(ga, 2.0 * w * a / m, rtol=1e-12, label="treated as constant")
    assert gw == pytest.approx(np.sum(a * a) / m, rel=1e-12)
    fa = central_diff(normalised_energy, (a, w), 0)          # the true gradient differs
    assert np.max(np.abs(fa - ga)) > 1e-3
    assert np.all(nad.grad(largest_magnitude)(a) == 0.0)
    assert largest_magnitude(a) == m


# ---- forward mode: tangent rules (defjvp); where a mode has no rule it refuses -------------

@nad.custom_vjp
def clip_both(x):
    return min(max(x, -1.0), 1.0)


@clip_both.defvjp
def clip_both_vjp(g, z, x):                 # straight-through in both modes
    return g


@clip_both.defjvp
def clip_both_jvp(z, x, dx):
    return dx


@nad.custom_vjp
def smooth_abs(a, eps):
    return np.sqrt(a * a + eps)


@smooth_abs.defvjp
def smooth_abs_vjp(g, z, a, eps):
    return g * a / z, np.sum(g * 0.5 / z)


@smooth_abs.defjvp
def smooth_abs_jvp(z, a, eps, da, deps):
    return (a * da + 0.5 * deps) / z


def clipped_squares(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += clip_both(x[i] * x[i]) * (i + 1.0)
    return s


def energy(a, eps):
    z = smooth_abs(a, eps)
    return np.sum(z * z * a)                # the value z is needed by the gradient


def test_tangent_rule_runs_in_forward_mode_and_agrees_with_the_reverse_rule(rng):
    x = rng.uniform(1.5, 3.0, size=4) * rng.choice([-1.0, 1.0], size=4)    # clip saturated
    v = rng.normal(size=4)
    weights = np.arange(1.0, 5.0)
    _, tangent = nad.jvp(clipped_squares, (x,), (v,))
    assert tangent == pytest.approx(np.sum(weights * 2 * x * v), rel=1e-12)   # AD of clip: 0
    np.testing.assert_allclose(nad.hessian(clipped_squares)(x), np.diag(2 * weights),
                               rtol=1e-14)
    a, eps = rng.normal(size=5), 0.3
    jacobian = nad.jacfwd(smooth_abs, argnums=(0, 1))(a, eps)
    reverse = nad.jacrev(smooth_abs, argnums=(0, 1))(a, eps)
    for forward_block, reverse_block, k in zip(jacobian, reverse, (0, 1)):
        np.testing.assert_allclose(forward_block, reverse_block, rtol=1e-14)
        np.testing.assert_allclose(forward_block, np.stack(
            [central_diff(lambda *args: smooth_abs(*args)[i], (a, eps), k) for i in range(5)]),
            rtol=1e-7, atol=1e-9)
    hessian = nad.hessian(energy)(a, eps)             # forward over reverse: both rules run
    grad_a = nad.grad(energy)
    expected = np.stack([central_diff(lambda u: grad_a(u, eps)[i], (a,)) for i in range(5)])
    np.testing.assert_allclose(hessian, expected, rtol=1e-6, atol=1e-8)


def value_needed(x):
    return softplus(x) ** 2                  # the gradient reads softplus(x)


def value_not_needed(x):
    return softplus(x) * 3.0


@pytest.mark.parametrize("mode", ["jvp", "hessian"])
def test_forward_mode_over_a_custom_vjp_without_tangent_rule_is_refused(mode):
    derive = {"jvp": lambda f: nad.jvp(f, (0.3,), (1.0,)),
              "hessian": lambda f: nad.hessian(f)(0.3)}[mode]
    with pytest.raises(nad.AutodiffError, match="softplus.*custom reverse rule.*defjvp"):
        derive(value_needed if mode == "hessian" else softplus)
    if mode == "hessian":          # the tangent of softplus(x) is not needed: only the rule's
        s = 1.0 / (1.0 + math.exp(-0.3))
        assert derive(value_not_needed) == pytest.approx(3.0 * s * (1.0 - s), rel=1e-12)


def damped_energy(a, w):
    m = largest_magnitude(a)
    return w * np.sum(a * a) * m * m


def test_non_differentiable_in_forward_mode_and_second_order(rng):
    a, w, v = rng.normal(size=5), 0.7, rng.normal(size=5)
    m = np.max(np.abs(a))
    assert nad.jvp(largest_magnitude, (a,), (v,)) == (m, 0.0)
    _, tangent = nad.jvp(damped_energy, (a, w), (v, 0.0))
    assert tangent == pytest.approx(2 * w * m * m * np.sum(a * v), rel=1e-12)
    # forward over reverse must treat it as a constant too (it differentiated through it)
    np.testing.assert_allclose(nad.hessian(damped_energy)(a, w), 2 * w * m * m * np.eye(5),
                               rtol=1e-13)


# ---- bad input ------------------------------------------------------------------------------

def test_rule_of_the_wrong_arity_names_the_rule():
    wrapped = nad.custom_vjp(lambda x, y: x * y)

    def two_few(g, z, x):
        return g

    with pytest.raises(nad.AutodiffError, match="custom rule 'two_few'.*4 positional"):
        wrapped.defvjp(two_few)


@nad.custom_vjp
def product(x, y):
    return x * y


@product.defvjp
def product_vjp_one_adjoint(g, z, x, y):
    return g * y


@nad.custom_vjp
def first(a):
    return a[0]


@first.defvjp
def first_vjp_scalar(g, z, a):
    return g


@nad.custom_vjp
def doubled(x):
    return 2.0 * x


@doubled.defvjp
def doubled_vjp_typo(g, z, x):
    scale = 2.0
    return g * scale * undefined_helper(x)  # noqa: F821


@nad.custom_vjp
def head_sum(a):
    return a[0] + a[1]


@head_sum.defvjp
def head_sum_vjp_short(g, z, a):
    return np.full(a.shape[0] - 1, g)


def test_rule_returning_the_wrong_number_of_adjoints_names_the_rule():
    with pytest.raises(nad.AutodiffError, match="custom rule 'product_vjp_one_adjoint'.*one "
                                                "adjoint per argument") as info:
        nad.grad(product)(1.0, 2.0)
    assert info.value.lineno == line_of(product_vjp_one_adjoint, "return")


def test_rule_returning_a_scalar_for_an_array_names_the_rule():
    with pytest.raises(nad.AutodiffError, match="first_vjp_scalar.*array argument 'a'"):
        nad.grad(first)(np.ones(3))


def test_rule_numba_cannot_compile_is_located():
    with pytest.raises(nad.AutodiffError, match="numba cannot compile the custom rule "
                                                "'doubled_vjp_typo'.*undefined_helper") as info:
        nad.grad(doubled)(1.0)
    assert info.value.lineno == line_of(doubled_vjp_typo, "undefined_helper")
    assert f"line {info.value.lineno}" in str(info.value)


def test_adjoint_of_the_wrong_shape_is_an_error_not_a_wrong_number():
    with pytest.raises(ValueError, match="head_sum_vjp_short.*shape"):
        nad.grad(head_sum)(np.ones(3))


def test_declared_function_writing_its_argument_is_refused():
    def scale_in_place(a):
        a[0] = 2.0 * a[0]
        return a[0]

    wrapped = nad.custom_vjp(scale_in_place, lambda g, z, a: 2.0 * g * np.ones_like(a))
    with pytest.raises(nad.AutodiffError, match="must not write") as info:
        nad.grad(wrapped)(np.ones(2))
    assert info.value.lineno == line_of(scale_in_place, "a[0] =")


def test_missing_rule_and_replaced_rule():
    def triple(x):
        return 3.0 * x

    wrapped = nad.custom_vjp(triple)
    with pytest.raises(nad.AutodiffError, match="has no rule"):
        nad.grad(wrapped)(1.0)
    wrapped.defvjp(lambda g, z, x: 3.0 * g)
    assert nad.grad(wrapped)(1.0) == 3.0
    with pytest.raises(nad.AutodiffError, match="cannot replace"):
        wrapped.defvjp(lambda g, z, x: 4.0 * g)
    with pytest.raises(nad.AutodiffError, match="already"):
        nad.non_differentiable(wrapped)


def test_rule_that_failed_to_compile_can_be_replaced():
    def halve(x):
        return 0.5 * x

    def broken(g, z, x):
        return g * "half"

    wrapped = nad.custom_vjp(halve, broken)
    with pytest.raises(nad.AutodiffError, match="numba cannot compile the custom rule 'broken'"):
        nad.grad(wrapped)(1.0)
    wrapped.defvjp(lambda g, z, x: 0.5 * g)
    assert nad.grad(wrapped)(1.0) == 0.5


# ---- %%autodiff --custom / --nondiff ---------------------------------------------------------

CELL = '''import math

def clip(x):
    return min(max(x, -1.0), 1.0)

def clip_rule(g, z, x):
    return g

def level(a):
    m = 0.0
    for i in range(a.shape[0]):
        m = max(m, abs(a[i]))
    return m

def loss(a):
    s = 0.0
    m = level(a)
    for i in range(a.shape[0]):
        s += clip(a[i] * m)
    return s
'''


def test_magic_options_declare_rules_and_constants(ip, rng):
    a = rng.uniform(1.0, 2.0, size=5) * rng.choice([-1.0, 1.0], size=5)
    result = ip.run_cell_magic("autodiff", "--custom clip=clip_rule --nondiff level", CELL)
    assert set(result.names) == {"clip_grad", "loss_grad"}             # not the rule, not level
    ns = ip.user_ns
    assert isinstance(ns["clip"], declarations.CustomVJP)
    assert isinstance(ns["level"], declarations.NonDifferentiable)
    m = np.max(np.abs(a))
    assert_grad_close(ns["loss_grad"](a), np.full(5, m), rtol=1e-12, label="closed form")
    assert ns["clip_grad"](5.0) == 1.0
    ip.run_cell_magic("autodiff", "--func loss", CELL)                  # no options: plain AD
    assert np.all(ip.user_ns["loss_grad"](a) == 0.0)


def test_magic_help_lists_the_options(ip):
    text = ip.run_cell_magic("autodiff", "--help", "raise RuntimeError('not run')").data
    assert "--custom F=RULE" in text and "--nondiff F" in text


@pytest.mark.parametrize("line, message", [
    ("--custom clip", "expected F=RULE"),
    ("--custom clip=missing_rule", "missing_rule: no such name"),
    ("--nondiff nowhere", "nowhere: no such name"),
    ("--custom clip=loss", "custom rule 'loss'.*positional"),
])
def test_magic_bad_options_are_usage_errors(ip, line, message):
    with pytest.raises(UsageError, match=message):
        ip.run_cell_magic("autodiff", line, CELL)
