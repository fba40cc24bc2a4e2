"""Derivatives of batched functions: code calling ``nad.batch(f)`` differentiated in both modes
and to second order, and ``grad``/``jacrev``/``vjp`` of a batched function itself, against
central differences, closed forms and the per-example loop."""
from __future__ import annotations

import math

import numba
import numpy as np
import pytest

import nbautodiff as nad
from fd import assert_grad_close, central_diff, directional_diff, fd_vjp


def neuron(w, x):
    """One example x through a unit with weights w (unbatched)."""
    s = 0.0
    for j in range(x.shape[0]):
        s += w[j] * x[j]
    return math.tanh(s) + 0.1 * s * s


def squashed(a, x, c):
    """An array result: tanh(a @ x) * c, written as loops."""
    out = np.zeros(a.shape[0])
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            out[i] += a[i, j] * x[j]
        out[i] = math.tanh(out[i]) * c
    return out


def moments(x):
    """A tuple result: (mean, an int, the centred values)."""
    mean = 0.0
    for i in range(x.shape[0]):
        mean += x[i]
    mean = mean / x.shape[0]
    return mean, x.shape[0], (x - mean) ** 2


NEURONS = nad.batch(neuron, (None, 0))
NEURONS_PARALLEL = nad.batch(neuron, (None, 0), parallel=True)


def loss_serial(w, xs):
    return np.sum(NEURONS(w, xs) ** 2)


def loss_parallel(w, xs):
    return np.sum(NEURONS_PARALLEL(w, xs) ** 2)


LOSSES = {False: loss_serial, True: loss_parallel}


def closed_forms(w, xs):
    """(loss, gradient w.r.t. w, gradients w.r.t. each example, Hessian w.r.t. w)."""
    s = xs @ w
    t = np.tanh(s)
    y = t + 0.1 * s * s
    dy = 1 - t * t + 0.2 * s
    d2y = -2 * t * (1 - t * t) + 0.2
    return (np.sum(y * y), (2 * y * dy) @ xs, (2 * y * dy)[:, None] * w,
            np.einsum("n,ni,nj->ij", 2 * (dy * dy + y * d2y), xs, xs))


@pytest.fixture
def data(rng):
    return rng.normal(size=4) * 0.5, rng.normal(size=(7, 4))


@pytest.mark.parametrize("parallel", [False, True])
def test_grad_of_a_loss_calling_a_batched_function(data, parallel):
    w, xs = data
    loss = LOSSES[parallel]
    value, (gw, gxs) = nad.value_and_grad(loss, argnums=(0, 1))(w, xs)
    closed_value, closed_w, closed_xs, _ = closed_forms(w, xs)
    np.testing.assert_allclose(value, closed_value, rtol=1e-13)
    assert_grad_close(gw, closed_w, rtol=1e-12, atol=1e-12, label="w (unbatched: summed)")
    assert_grad_close(gxs, closed_xs, rtol=1e-12, atol=1e-12, label="xs (per example)")
    fd_w, fd_xs = central_diff(loss, (w, xs), argnums=(0, 1))
    assert_grad_close(gw, fd_w, rtol=1e-8, atol=1e-9)
    assert_grad_close(gxs, fd_xs, rtol=1e-8, atol=1e-9)
    # the per-example loop: each example's gradient of its own square
    per_example = nad.grad(square_of_neuron, argnums=(0, 1))
    loop = [per_example(w, x) for x in xs]
    np.testing.assert_allclose(gw, sum(g[0] for g in loop), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gxs, [g[1] for g in loop], rtol=1e-12, atol=1e-14)


def square_of_neuron(w, x):
    return neuron(w, x) ** 2


@numba.njit
def compiled_total(w, xs):
    return NEURONS(w, xs).sum()


def test_numba_code_calls_a_batched_function_and_is_differentiated(data):
    w, xs = data
    assert compiled_total(w, xs) == pytest.approx(sum(neuron(w, x) for x in xs), rel=1e-14)
    assert_grad_close(nad.grad(compiled_total)(w, xs), central_diff(compiled_total, (w, xs)),
                      rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("parallel", [False, True])
def test_forward_mode_and_second_order_of_a_loss_calling_a_batched_function(data, rng,
                                                                              parallel):
    w, xs = data
    loss = LOSSES[parallel]
    v, dxs = rng.normal(size=4), rng.normal(size=xs.shape)
    value, tangent = nad.jvp(loss, (w, xs), (v, dxs))
    np.testing.assert_allclose(value, closed_forms(w, xs)[0], rtol=1e-13)
    np.testing.assert_allclose(tangent, directional_diff(loss, (w, xs), (0, 1), (v, dxs)),
                               rtol=1e-8)
    _, closed_w, _, closed_hessian = closed_forms(w, xs)
    forward = nad.forward(loss, nad.Dual, nad.Const, ret="DualOnly", width=2)
    t1, t2 = forward(w, v, -v, xs)
    np.testing.assert_allclose([t1, t2], [closed_w @ v, -closed_w @ v], rtol=1e-12)
    hessian = nad.hessian(loss)(w, xs)
    np.testing.assert_allclose(hessian, closed_hessian, rtol=1e-11, atol=1e-12)
    grad_w = nad.grad(loss)
    fd_hessian = np.array([central_diff(lambda u: grad_w(u, xs)[k], (w,)) for k in range(4)])
    np.testing.assert_allclose(hessian, fd_hessian, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("parallel", [False, True])
def test_vjp_and_jacobians_of_a_batched_function_itself(rng, parallel):
    a, xs = rng.normal(size=(3, 4)), rng.normal(size=(4, 5))
    batched = nad.batch(squashed, (None, 1, None), out_axes=1, parallel=parallel)
    out, pullback = nad.vjp(batched, a, xs, 1.5)
    assert out.shape == (3, 5)
    np.testing.assert_array_equal(out, batched(a, xs, 1.5))
    cotangent = rng.normal(size=out.shape)
    da, dxs, dc = pullback(cotangent)
    fd = fd_vjp(batched, (a, xs, 1.5), cotangent, argnums=(0, 1, 2))
    assert_grad_close(da, fd[0], rtol=1e-8, atol=1e-9, label="a (unbatched: summed)")
    assert_grad_close(dxs, fd[1], rtol=1e-8, atol=1e-9, label="xs (batched along axis 1)")
    assert_grad_close(dc, fd[2], rtol=1e-8, atol=1e-9, label="c (an unbatched float)")
    jacobian = nad.jacrev(batched, argnums=1)(a, xs, 1.5)
    assert jacobian.shape == (3, 5, 4, 5)
    np.testing.assert_allclose(nad.jacfwd(batched, argnums=1)(a, xs, 1.5), jacobian,
                               rtol=1e-13, atol=1e-15)
    for k in range(5):          # slice k of the output depends on slice k of xs only
        np.testing.assert_allclose(jacobian[:, k, :, k], nad.jacrev(squashed, 1)(a, xs[:, k], 1.5),
                                   rtol=1e-13)
        assert not np.any(np.delete(jacobian[:, k], k, axis=-1))


def test_tuple_results_and_grad_of_a_batched_scalar_function(rng):
    xs = rng.normal(size=(6, 3))
    (means, counts, centred), pullback = nad.vjp(MOMENTS, xs)
    assert centred.shape == (3, 6) and np.array_equal(counts, [3] * 6)
    seeds = (rng.normal(size=6), None, rng.normal(size=(3, 6)))
    (dxs,) = pullback(seeds)
    expected = central_diff(lambda x: float(np.sum(seeds[0] * MOMENTS(x)[0])
                                            + np.sum(seeds[2] * MOMENTS(x)[2])), (xs,))
    assert_grad_close(dxs, expected, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(nad.grad(sum_of_means)(xs), np.full(xs.shape, 1 / 3),
                               rtol=1e-14)


MOMENTS = nad.batch(moments, 0, out_axes=(0, 0, 1))


def sum_of_means(xs):
    means, counts, centred = MOMENTS(xs)
    return np.sum(means)


@nad.non_differentiable
def frozen(x):
    return x


@nad.custom_vjp
def rounded(x):
    return np.floor(x)


@rounded.defvjp
def rounded_vjp(g, z, x):        # straight-through: the rule, not AD of floor (zero)
    return g


def with_declared_rules(x, c):
    return x * frozen(x) + c * rounded(x)


WITH_RULES = nad.batch(with_declared_rules, (0, None))


def loss_with_rules(xs, c):
    return np.sum(WITH_RULES(xs, c))


def test_declared_rules_of_the_batched_function_are_used(rng):
    xs = rng.uniform(-2, 2, 9)
    gxs, gc = nad.grad(loss_with_rules, argnums=(0, 1))(xs, 0.5)
    np.testing.assert_allclose(gxs, xs + 0.5, rtol=1e-15)     # frozen: constant; rounded: 1
    np.testing.assert_allclose(gc, np.sum(np.floor(xs)), rtol=1e-15)


def batch_size_mismatch(xs, ys):
    return np.sum(PAIRS(xs, ys))


def pair(x, y):
    return x * y


PAIRS = nad.batch(pair)


def writes_shared(x, out):
    out[0] = x
    return x


RACING = nad.batch(writes_shared, (0, None), parallel=True)


def racing_loss(xs, out):
    return np.sum(RACING(xs, out))


def test_refusals_and_checks(rng):
    per_example = nad.batch(nad.grad(neuron), (None, 0))

    def loss_of_per_example_gradients(w, xs):
        return np.sum(per_example(w, xs))

    with pytest.raises(nad.AutodiffError, match="batch of a derivative of neuron"):
        nad.grad(loss_of_per_example_gradients)(np.ones(4), np.ones((3, 4)))
    with pytest.raises(ValueError, match="argument 'y' does not have the batch size of 'x'"):
        nad.grad(batch_size_mismatch)(np.ones(3), np.ones(4))
    with pytest.raises(nad.AutodiffError, match="writes argument 'out'.*race"):
        nad.vjp(RACING, np.ones(3), np.zeros(1))
    with pytest.raises(nad.AutodiffError, match="writes argument 'out'.*race"):
        nad.grad(racing_loss)(np.ones(3), np.zeros(1))       # from compiled code
    with pytest.raises(nad.AutodiffError, match="argument 'x' of neuron.. is batched .in_axes "
                                                "0. but is a float64"):
        nad.grad(NEURONS, argnums=0)(np.ones(4), 1.0)
