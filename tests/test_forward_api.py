"""The forward-mode API: calling conventions, return activities and bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest

import nbautodiff as nad

from test_custom import softplus   # a function with a custom reverse rule


def poly(x, a):
    s = 0.0
    for i in range(x.shape[0]):
        s += a * x[i] ** 3 - x[i]
    return s


def scale_into(x, out):
    for i in range(x.shape[0]):
        out[i] = 2.0 * x[i] * x[i]


def uses_custom(x):
    return softplus(x[0]) * x[1]


X = np.array([0.5, -1.0, 2.0])


def expected_tangent(dx, da, a=1.5):
    return float(np.sum(3 * a * X ** 2 * dx - dx) + np.sum(X ** 3) * da)


def test_return_activities():
    dx = np.array([1.0, 0.5, -0.25])
    value, tangent = nad.forward(poly, nad.Dual, nad.Dual)(X, dx, 1.5, 2.0)
    assert math.isclose(value, poly(X, 1.5), rel_tol=1e-14)
    assert math.isclose(tangent, expected_tangent(dx, 2.0), rel_tol=1e-13)
    only = nad.forward(poly, nad.Dual, nad.Const, ret="DualOnly")(X, dx, 1.5)
    assert math.isclose(only, expected_tangent(dx, 0.0), rel_tol=1e-13)
    assert nad.forward(poly, nad.Dual, nad.Const, ret="Const")(X, dx, 1.5) == poly(X, 1.5)


def test_vector_mode_gives_every_direction():
    directions = [np.eye(3)[k] for k in range(3)]
    value, tangents = nad.forward(poly, "Dual", "Const", width=3)(X, *directions, 1.5)
    assert len(tangents) == 3
    np.testing.assert_allclose(tangents, nad.grad(poly)(X, 1.5), rtol=1e-13)


def test_tangents_of_written_arrays_are_written():
    out, d_out = np.zeros(3), np.zeros(3)
    nad.forward(scale_into, nad.Dual, nad.Dual, ret="Const")(X, np.ones(3), out, d_out)
    np.testing.assert_allclose(out, 2 * X * X)
    np.testing.assert_allclose(d_out, 4 * X)


def test_jacfwd_matches_jacrev():
    J = nad.jacfwd(poly, (0, 1))(X, 1.5)
    R = nad.jacrev(poly, (0, 1))(X, 1.5)
    for a, b in zip(J, R):
        np.testing.assert_allclose(a, b, rtol=1e-13)


@pytest.mark.parametrize("width", [0, -1, 1.5, True])
def test_bad_width(width):
    with pytest.raises(nad.AutodiffError, match="width"):
        nad.forward(poly, nad.Dual, nad.Const, width=width)


def test_reverse_activity_refused():
    with pytest.raises(nad.AutodiffError, match="not a forward-mode activity"):
        nad.forward(poly, nad.Duplicated, nad.Const)


def test_wrong_number_of_tangents():
    with pytest.raises(TypeError, match="each Dual argument followed by 2 tangents"):
        nad.forward(poly, nad.Dual, nad.Const, width=2)(X, X, 1.5)


def test_tangent_shape_names_the_argument():
    with pytest.raises(ValueError, match="tangent of argument 'x'.*shape"):
        nad.forward(poly, nad.Dual, nad.Const)(X, np.ones(4), 1.5)
    with pytest.raises(TypeError, match="tangent of argument 'x'"):
        nad.forward(poly, nad.Dual, nad.Const)(X, 1.0, 1.5)


def test_custom_vjp_callee_is_refused_in_forward_mode_with_its_line():
    with pytest.raises(nad.AutodiffError, match=r"line \d+.*custom reverse rule"):
        nad.jvp(uses_custom, (X,), (np.ones(3),))


def test_dualv_one_tangent_holds_every_direction():
    """Rust's Dualv: one tangent argument N times longer; written tangents land in it."""
    directions = np.random.default_rng(2).standard_normal((3, 3))
    value, tangents = nad.forward(poly, nad.Dualv, nad.Const, width=3)(X, directions.ravel(), 1.5)
    _, expected = nad.forward(poly, nad.Dual, nad.Const, width=3)(X, *directions, 1.5)
    np.testing.assert_allclose(tangents, expected, rtol=1e-15)
    out, d_out = np.zeros(3), np.zeros((2, 3))
    nad.forward(scale_into, nad.Dualv, nad.Dualv, ret="Const", width=2)(
        X, np.stack([np.ones(3), X]), out, d_out)
    np.testing.assert_allclose(d_out, [4 * X, 4 * X * X])


def test_dualv_tangent_of_the_wrong_size_names_the_argument():
    with pytest.raises(ValueError, match="Dualv tangent of argument 'x'"):
        nad.forward(poly, nad.Dualv, nad.Const, width=2)(X, np.ones(5), 1.5)
