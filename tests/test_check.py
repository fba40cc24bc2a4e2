"""check_grad: accepts right gradients, flags wrong ones, renders as HTML, text and a plot.

Most tests inject hand-written gradients (``gradient=``) to test the checker on its own; the
last ones run it on nbautodiff's own derivatives.
"""
import math

import numpy as np
import pytest

import nbautodiff as nad
from nbautodiff.checks.check import GradientCheck, check_grad, gradient_of_reverse
from nbautodiff.checks.report import figure_png


def rosen(x):
    s = 0.0
    for i in range(x.shape[0] - 1):
        s += 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return s


def rosen_grad(x):
    g = np.zeros(x.shape, dtype=np.float64)
    for i in range(x.shape[0] - 1):
        g[i] += -400.0 * x[i] * (x[i + 1] - x[i] ** 2) - 2.0 * (1.0 - x[i])
        g[i + 1] += 200.0 * (x[i + 1] - x[i] ** 2)
    return g


def mixed(a, x, n):
    return a * math.sin(x[0, 1]) + a * a * x[1, 0] * n + x[0, 0] * x[1, 1]


def mixed_grad(a, x, n):
    gx = np.array([[x[1, 1], a * math.cos(x[0, 1])], [a * a * n, x[0, 0]]])
    return math.sin(x[0, 1]) + 2 * a * x[1, 0] * n, gx


@pytest.fixture
def x():
    return np.random.default_rng(7).normal(size=6)


def test_accepts_a_right_gradient(x):
    check = check_grad(rosen, x, gradient=rosen_grad)
    assert isinstance(check, GradientCheck)
    assert check.ok and check.max_rel_error < 1e-8
    assert [row.label for row in check.rows] == [f"x[{i}]" for i in range(6)]
    assert all(len(row.fd_sweep) == len(check.steps) for row in check.rows)


@pytest.mark.parametrize("wrong", [
    lambda g: g * np.where(np.arange(g.size) == 3, 1.001, 1.0),   # one component 0.1% off
    lambda g: -g,                                                  # sign flipped
    lambda g: np.where(np.arange(g.size) == 5, 0.0, g),            # a component dropped
])
def test_flags_a_wrong_gradient(x, wrong):
    check = check_grad(rosen, x, gradient=lambda x: wrong(rosen_grad(x)))
    assert not check.ok
    assert check.failures and check.max_rel_error > 1e-4


def test_step_is_not_chosen_by_agreement_with_the_gradient():
    # FD(h) = 3 + h^2 for x**3 at 1: the largest step of the sweep (0.1) gives 3.01 exactly,
    # the wrong value claimed here; the check must still use a small step and refuse it.
    check = check_grad(lambda x: x ** 3, 1.0, gradient=lambda x: 3.01)
    assert not check.ok
    assert check.rows[0].step < 1e-3
    assert abs(check.rows[0].fd - 3.0) < 1e-8


def test_several_arguments_scalar_and_rank_2():
    a, x2 = 0.7, np.random.default_rng(1).normal(size=(2, 2))
    check = check_grad(mixed, a, x2, 3, argnums=(0, 1), gradient=mixed_grad)
    assert check.ok
    assert [row.label for row in check.rows] == ["a", "x[0, 0]", "x[0, 1]", "x[1, 0]", "x[1, 1]"]
    wrong = check_grad(mixed, a, x2, 3, argnums=(0, 1),
                       gradient=lambda *args: (mixed_grad(*args)[0] + 1e-3, mixed_grad(*args)[1]))
    assert [row.label for row in wrong.failures] == ["a"]


def test_float32_arrays_get_a_looser_tolerance(x):
    check = check_grad(rosen, x.astype(np.float32), gradient=rosen_grad)
    assert check.rtol > 1e-4 and check.ok
    assert not check_grad(rosen, x.astype(np.float32), gradient=lambda x: 1.05 * rosen_grad(x)).ok


def test_small_gradient_near_the_minimum_is_accepted():
    check = check_grad(rosen, np.ones(4) + 1e-7, gradient=rosen_grad)
    assert check.ok and check.scale < 1e-4


def test_nan_gradient_fails(x):
    check = check_grad(rosen, x, gradient=lambda x: np.full(x.shape, np.nan))
    assert not check.ok and math.isinf(check.max_rel_error)


def test_arguments_are_not_modified_even_by_a_mutating_function():
    def overwrite(x):
        for i in range(x.shape[0]):
            x[i] = x[i] * x[i]
        return x.sum()

    x0 = np.array([0.5, -2.0, 3.0])
    keep = x0.copy()
    check = check_grad(overwrite, x0, gradient=lambda x: 2.0 * x)
    assert check.ok
    np.testing.assert_array_equal(x0, keep)


def test_argument_errors():
    with pytest.raises(ValueError, match="shape"):
        check_grad(rosen, np.ones(3), gradient=lambda x: np.ones(2))
    with pytest.raises(TypeError, match="'x'"):
        check_grad(rosen, np.arange(3), gradient=lambda x: x)
    with pytest.raises(ValueError, match="argnums"):
        check_grad(rosen, np.ones(3), argnums=1, gradient=rosen_grad)


def test_max_components_samples(x):
    big = np.random.default_rng(3).normal(size=30)
    check = check_grad(rosen, big, gradient=rosen_grad, max_components=5)
    assert len(check.rows) == 5 and check.skipped == 25 and check.ok


def test_html_text_and_plot(x):
    bad = check_grad(rosen, x, gradient=lambda x: rosen_grad(x) * 1.01)
    html = bad._repr_html_()
    assert "<table" in html and html.count("<tr") == 1 + 6
    assert "FAILED" in html and "x[3]" in html
    text = str(bad)
    assert text.startswith("gradient check FAILED") and "FAIL" in text.splitlines()[2]
    good = check_grad(rosen, x, gradient=rosen_grad)
    assert "passed" in good._repr_html_() and "passed" in str(good)

    fig = good.plot()
    assert type(fig).__name__ == "Figure"
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert len([line for line in ax.get_lines() if line.get_label() in
                {row.label for row in good.rows}]) == 6
    assert figure_png(fig)[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_summarises_many_components():
    check = check_grad(rosen, np.random.default_rng(4).normal(size=40), gradient=rosen_grad)
    labels = [line.get_label() for line in check.plot(max_curves=10).axes[0].get_lines()]
    assert "median" in labels and len(labels) < 10
    assert check.ok
    for report in (check._repr_html_(), str(check)):
        assert "all 40 components agree; the 5 with the largest errors shown" in report
    assert str(check).count(" ok") == 5


def test_a_failing_check_shows_every_failing_component():
    x = np.random.default_rng(5).normal(size=60)
    wrong = rosen_grad(x)
    wrong[[3, 17, 41]] += 1.0                          # three wrong components
    check = check_grad(rosen, x, gradient=lambda y: np.where(
        np.isin(np.arange(y.size), [3, 17, 41]), rosen_grad(y) + 1.0, rosen_grad(y)))
    assert not check.ok
    text = str(check)
    assert text.count("FAIL") >= 3 and "3 outside the tolerance, every one shown" in text
    for label in ("[3]", "[17]", "[41]"):
        assert label in text


def test_gradient_of_reverse_follows_the_rust_signature():
    def rev(a, x, dx, n, seed):           # reverse(mixed, Active, Duplicated, Const)
        ga, gx = mixed_grad(a, x, n)
        dx += seed * gx
        return mixed(a, x, n), seed * ga

    gradient, argnums = gradient_of_reverse(rev, ["Active", nad.Duplicated, "Const"])
    assert argnums == (0, 1)
    x2 = np.random.default_rng(2).normal(size=(2, 2))
    assert check_grad(mixed, 0.3, x2, 2, argnums=argnums, gradient=gradient).ok


def test_default_gradient_is_nbautodiff_grad(monkeypatch, x):
    calls = []

    def fake_grad(fun, argnums=0):
        calls.append((fun, argnums))
        return rosen_grad

    monkeypatch.setattr("nbautodiff.api.reverse.grad", fake_grad)
    assert nad.check_grad(rosen, x).ok
    assert calls == [(rosen, 0)]


# End to end: nbautodiff's own derivatives, against central differences.

def test_engine_gradient_passes(x):
    check = nad.check_grad(rosen, x)
    assert check.ok, str(check)


def test_engine_several_arguments_pass():
    x2 = np.random.default_rng(5).normal(size=(2, 2))
    check = nad.check_grad(mixed, 1.3, x2, 2, argnums=(0, 1))
    assert check.ok, str(check)


def test_engine_reverse_passes():
    activities = ("Active", "Duplicated", "Const")
    gradient, argnums = gradient_of_reverse(nad.reverse(mixed, *activities), activities)
    x2 = np.random.default_rng(6).normal(size=(2, 2))
    check = check_grad(mixed, -0.4, x2, 3, argnums=argnums, gradient=gradient)
    assert check.ok, str(check)


# The complex step and forward mode next to central differences.

def scaled(x, c):
    return c * math.exp(x) * math.sin(3.0 * x)


def test_complex_step_and_forward_mode_are_compared():
    check = nad.check_grad(scaled, 0.4, 2.0, argnums=(0, 1))
    assert check.reference == "complex step" and not check.unavailable
    assert check.methods == ["central differences", "complex step", "forward mode"]
    exact = 2.0 * math.exp(0.4) * (math.sin(1.2) + 3.0 * math.cos(1.2))
    assert abs(check.rows[0].cs - exact) <= 1e-14 * abs(exact)
    assert abs(check.rows[0].forward - exact) <= 1e-14 * abs(exact)
    assert "complex step" in str(check).splitlines()[1] and "forward mode" in check._repr_html_()


def test_forward_mode_exposes_a_wrong_reverse_gradient(x):
    check = nad.check_grad(rosen, x, gradient=lambda x: rosen_grad(x) * (1.0 + 1e-3))
    assert not check.ok and all(r.forward_error > check.rtol for r in check.rows)
    assert all(r.cs_error < 1e-12 for r in check.rows) is False
    assert "Forward and reverse mode disagree" in check.explain()


def test_methods_that_cannot_run_say_why():
    check = check_grad(lambda x: x ** 3, 1.0, gradient=lambda x: 3.0)
    assert check.ok and check.reference == "central differences"
    assert "source" in check.unavailable["complex step"]
    assert "source" in check.unavailable["forward mode"]
    assert "does not apply here" in check.explain()
    plain = check_grad(rosen, np.ones(3), gradient=rosen_grad, complex_step=False, forward=False)
    assert plain.methods == ["central differences"] and "complex step" not in str(plain)


@nad.custom_vjp
def softplus(v):
    return math.log1p(math.exp(v))


@softplus.defvjp
def softplus_vjp(g, z, v):
    return g / (1.0 + math.exp(-v))


def uses_softplus(a):
    return softplus(a) * a


def test_complex_step_does_not_claim_to_check_a_declared_rule():
    check = nad.check_grad(uses_softplus, 0.3)
    assert check.ok and check.reference == "central differences"
    assert "softplus" in check.unavailable["complex step"]
    assert "declared" in check.unavailable["complex step"]
