"""nad.batch: equal to a Python loop of single compiled calls, composition with grad, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest

import nbautodiff as nad
from nbautodiff.pipeline import program


def black_scholes(s, k, t, r, v):
    sqrt_t = math.sqrt(t)
    d1 = (math.log(s / k) + (r + 0.5 * v * v) * t) / (v * sqrt_t)
    d2 = d1 - v * sqrt_t
    return s * 0.5 * math.erfc(-d1 / math.sqrt(2.0)) - \
        k * math.exp(-r * t) * 0.5 * math.erfc(-d2 / math.sqrt(2.0))


def piecewise(x, y):
    if x > y:
        return x * x - math.sin(y)
    return math.exp(0.3 * x) * y


def rosenbrock(x):
    s = 0.0
    for i in range(x.shape[0] - 1):
        s += 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return s


def weighted_norm(x, w, p):
    s = 0.0
    for i in range(x.shape[0]):
        s += w[i] * abs(x[i]) ** p
    return s ** (1.0 / p)


def matvec(a, x):
    out = np.zeros(a.shape[0])
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            out[i] += a[i, j] * x[j]
    return out


def stats(x):
    total = 0.0
    count = 0
    for i in range(x.shape[0]):
        if x[i] > 0.0:
            total += x[i]
            count += 1
    return total, count, x * 2.0


def scale_in_place(x, c):
    for i in range(x.shape[0]):
        x[i] = c * x[i]


def accumulate(x, out):
    for i in range(x.shape[0]):
        out[i] += x[i]
    return out[0]


def _slice(value, axis, i):
    if axis is None:
        return value
    element = value[(slice(None),) * axis + (i,)]
    return element.item() if value.ndim == 1 else element


def looped(fun, args, in_axes, n):
    """The Python loop of single calls of nbautodiff's compiled primal (or of a derivative)."""
    call = fun if isinstance(fun, nad.Derivative) else program.primal(fun).dispatcher
    axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
    return [call(*[_slice(a, ax, i) for a, ax in zip(args, axes)]) for i in range(n)]


rng = np.random.default_rng(20261121)
N = 37


def case_args():
    return {
        "black_scholes": (black_scholes, (rng.uniform(50, 150, N), 100.0, rng.uniform(0.1, 2, N),
                                          0.03, rng.uniform(0.1, 0.6, N)),
                          (0, None, 0, None, 0)),
        "black_scholes_all": (black_scholes, tuple(rng.uniform(0.5, 1.5, N) for _ in range(5)), 0),
        "piecewise": (piecewise, (rng.normal(size=N), rng.normal(size=N)), 0),
        "rosenbrock_rows": (rosenbrock, (rng.normal(size=(N, 6)),), 0),
        "rosenbrock_columns": (rosenbrock, (rng.normal(size=(5, N)),), 1),
        "rosenbrock_last_of_3d": (rosenbrock, (rng.normal(size=(2, 4, N))[0],), 1),
        "weighted_norm": (weighted_norm, (rng.normal(size=(N, 4)), rng.uniform(0, 1, 4), 3.0),
                          (0, None, None)),
        "weighted_norm_p": (weighted_norm, (rng.normal(size=4), rng.uniform(0, 1, (4, N)),
                                            rng.uniform(1, 3, N)), (None, 1, 0)),
    }


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("case", sorted(case_args()))
def test_scalar_results_equal_the_loop_exactly(case, parallel):
    fun, args, in_axes = case_args()[case]
    out = nad.batch(fun, in_axes, parallel=parallel)(*args)
    expected = np.array(looped(fun, args, in_axes, N))
    assert out.shape == (N,) and out.dtype == expected.dtype
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("out_axes", [0, 1, -1])
def test_array_results_and_out_axes(out_axes, parallel):
    a, xs = rng.normal(size=(3, 4)), rng.normal(size=(N, 4))
    out = nad.batch(matvec, (None, 0), out_axes, parallel)(a, xs)
    expected = np.stack(looped(matvec, (a, xs), (None, 0), N), axis=out_axes)
    assert out.shape == expected.shape == ((N, 3) if out_axes == 0 else (3, N))
    assert np.array_equal(out, expected)


def test_tuple_results_with_an_out_axis_per_element():
    xs = rng.normal(size=(5, N))
    total, count, doubled = nad.batch(stats, 1, (0, 0, 1))(xs)
    expected = looped(stats, (xs,), 1, N)
    assert np.array_equal(total, [e[0] for e in expected])
    assert count.dtype.kind == "i" and np.array_equal(count, [e[1] for e in expected])
    assert np.array_equal(doubled, np.stack([e[2] for e in expected], axis=1))


def test_in_place_function_writes_each_slice():
    xs = rng.normal(size=(N, 3))
    expected = xs.copy()
    for i in range(N):
        expected[i] *= 1.5
    assert nad.batch(scale_in_place, (0, None))(xs, 1.5) is None
    assert np.array_equal(xs, expected)


def test_source_is_readable_and_cached():
    batched = nad.batch(piecewise, layout="outer")
    with pytest.raises(nad.AutodiffError, match="call it once"):
        batched.source
    x, y = rng.normal(size=N), rng.normal(size=N)
    batched(x, y)
    assert "def piecewise__batch_00_o0(x, y):" in batched.source
    assert "for _nad_i in range(_nad_n):" in batched.source
    variant = batched.variant
    other = nad.batch(piecewise, layout="outer")
    other(y, x)
    assert other.variant is variant                  # cached per types, axes and parallelism
    other(x[:3], y[:3].astype(np.float32))
    assert other.variant is not variant and "float32" in str(other.variant.dispatcher.signatures)
    parallel = nad.batch(piecewise, parallel=True, layout="outer")
    parallel(x, y)
    assert "numba.prange(_nad_n)" in parallel.source


@pytest.mark.parametrize("parallel", [False, True])
def test_batch_of_grad_gives_per_example_gradients(parallel):
    xs = rng.normal(size=(N, 5))
    grads = nad.batch(nad.grad(rosenbrock), parallel=parallel)(xs)
    expected = np.array(looped(nad.grad(rosenbrock), (xs,), 0, N))
    assert np.array_equal(grads, expected)
    # against the closed form, so the comparison cannot pass by sharing a bug
    x = xs[3]
    closed = np.zeros(5)
    closed[:-1] = -400 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2 * (1 - x[:-1])
    closed[1:] += 200 * (x[1:] - x[:-1] ** 2)
    np.testing.assert_allclose(grads[3], closed, rtol=1e-12, atol=1e-12)


def test_batch_of_grad_with_unbatched_and_scalar_arguments():
    xs, w, ps = rng.normal(size=(4, N)), rng.uniform(0.5, 1, 4), rng.uniform(1.5, 3, N)
    derived = nad.grad(weighted_norm, argnums=(0, 2))
    gx, gp = nad.batch(derived, (1, None, 0), out_axes=(1, 0))(xs, w, ps)
    expected = looped(derived, (xs, w, ps), (1, None, 0), N)
    assert gx.shape == (4, N) and gp.shape == (N,)
    assert np.array_equal(gx, np.stack([e[0] for e in expected], axis=1))
    assert np.array_equal(gp, [e[1] for e in expected])


def test_batch_of_value_and_grad():
    x, y = rng.normal(size=N), rng.normal(size=N)
    values, grads = nad.batch(nad.value_and_grad(piecewise, argnums=(0, 1)))(x, y)
    expected = looped(nad.value_and_grad(piecewise, argnums=(0, 1)), (x, y), 0, N)
    assert np.array_equal(values, [e[0] for e in expected])
    assert np.array_equal(grads[0], [e[1][0] for e in expected])
    assert np.array_equal(grads[1], [e[1][1] for e in expected])


def test_bad_input_names_the_argument():
    x, y = rng.normal(size=N), rng.normal(size=N + 1)
    with pytest.raises(nad.AutodiffError, match="argument 'y' of piecewise.*batch size 38.*'x'"):
        nad.batch(piecewise)(x, y)
    with pytest.raises(ValueError, match="in_axes 2 is out of range for argument 'x' of "
                                         "rosenbrock.*2 dimensions"):
        nad.batch(rosenbrock, 2)(rng.normal(size=(3, 4)))
    with pytest.raises(nad.AutodiffError, match="in_axes has 1 entries but piecewise.. has 2 "
                                                "parameters .x, y."):
        nad.batch(piecewise, (0,))
    with pytest.raises(nad.AutodiffError, match="argument 'y' of piecewise.. is batched .* float"):
        nad.batch(piecewise)(x, 2.0)
    with pytest.raises(nad.AutodiffError, match="batches no argument"):
        nad.batch(piecewise, (None, None))
    with pytest.raises(nad.AutodiffError, match="out_axes 2 is out of range for the result of "
                                                "matvec"):
        nad.batch(matvec, (None, 0), 2)(rng.normal(size=(3, 4)), rng.normal(size=(N, 4)))
    with pytest.raises(nad.AutodiffError, match="out_axes must be an int"):
        nad.batch(matvec, out_axes=None)
    with pytest.raises(nad.AutodiffError, match="writes argument 'out'.*not batched.*race"):
        nad.batch(accumulate, (0, None), parallel=True)(rng.normal(size=(N, 2)), np.zeros(2))
    with pytest.raises(nad.AutodiffError, match="size 0"):
        nad.batch(matvec, (None, 0))(np.ones((2, 2)), np.ones((0, 2)))


def test_batched_code_is_differentiable_in_both_modes():
    x = rng.uniform(0.1, 1.0, 6)
    batched = nad.batch(piecewise, (0, None))
    batched(x, 2.0)
    jacobian = nad.jacfwd(batched.variant.dispatcher)(x, 2.0)
    closed = np.where(x > 2.0, 2 * x, 0.3 * np.exp(0.3 * x) * 2.0)
    np.testing.assert_allclose(jacobian, np.diag(closed), rtol=1e-13)
    np.testing.assert_allclose(nad.jacrev(batched.variant.dispatcher)(x, 2.0), jacobian,
                               rtol=1e-13)


def test_per_example_gradients_of_an_unbatched_argument():
    xs, w = rng.normal(size=(N, 4)), rng.uniform(0.5, 1, 4)
    derived = nad.grad(weighted_norm, argnums=1)
    grads = nad.batch(derived, (0, None, None))(xs, w, 2.0)
    assert grads.shape == (N, 4)
    assert np.array_equal(grads, looped(derived, (xs, w, 2.0), (0, None, None), N))
    norms = np.sqrt(np.abs(xs) ** 2 @ w)
    np.testing.assert_allclose(grads, np.abs(xs) ** 2 / (2 * norms[:, None]), rtol=1e-12)
