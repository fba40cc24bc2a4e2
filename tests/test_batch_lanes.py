"""nad.batch's inner layout (the batch loop innermost, lanes): equal to single calls bit for bit,
what it refuses, and how ``layout="auto"`` falls back to a call per slice."""
from __future__ import annotations

import math

import numpy as np
import pytest

import nbautodiff as nad
from nbautodiff.transforms import lanes

from test_batch import accumulate, black_scholes, looped, matvec, piecewise, rosenbrock, \
    scale_in_place, stats, weighted_norm

rng = np.random.default_rng(20261207)
N = lanes.BLOCK + 37          # two blocks, the second one partial


def newton_sqrt(a, tol):
    """A while loop whose trip count differs between slices."""
    x = a
    while abs(x * x - a) > tol * a:
        x = 0.5 * (x + a / x)
    return x


def mlp(x, w1, b1, w2, b2):
    out = b2
    for j in range(w1.shape[0]):
        h = b1[j]
        for i in range(x.shape[0]):
            h += w1[j, i] * x[i]
        out += w2[j] * math.tanh(h)
    return out


def partial_sums(x, n):
    """A loop whose bound is batched, an early exit, and an int result."""
    s = 0.0
    count = 0
    for i in range(n):
        if x[i] < -1.5:
            break
        s += x[i]
        count += 1
    return s, count


def with_buffer(x):
    """A local array that holds different values for each slice."""
    tmp = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        tmp[i] = x[i] * x[i]
    return np.sum(tmp) + tmp[0]


def square(v):
    return v * v + 1.0


def calls_a_callee(x, c):
    s = 0.0
    for i in range(x.shape[0]):
        s += square(x[i] - c)
    return s


def uniform_branch(x, flag, scale):
    s = 0.0
    if flag > 0:
        for i in range(x.shape[0]):
            s += scale * x[i]
    else:
        s = -1.0
    return s > 0.0, s


def weighted_frobenius(m):
    s = 0.0
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            s += (i + 1.0) * m[i, j] * m[i, j]
    return s


def cases():
    return {
        "black_scholes": (black_scholes, tuple(rng.uniform(0.5, 1.5, N) for _ in range(5)), 0),
        "piecewise": (piecewise, (rng.normal(size=N), rng.normal(size=N)), 0),
        "rosenbrock_columns": (rosenbrock, (rng.normal(size=(5, N)),), 1),
        "frobenius_middle_axis": (weighted_frobenius, (rng.normal(size=(4, N, 3)),), 1),
        "weighted_norm_p": (weighted_norm, (rng.normal(size=4), rng.uniform(0, 1, (4, N)),
                                            rng.uniform(1, 3, N)), (None, 1, 0)),
        "newton_sqrt": (newton_sqrt, (rng.uniform(0.1, 100, N), 1e-12), (0, None)),
        "mlp": (mlp, (rng.normal(size=(N, 3)), rng.normal(size=(5, 3)), rng.normal(size=5),
                      rng.normal(size=5), 0.1), (0, None, None, None, None)),
        "partial_sums": (partial_sums, (rng.normal(size=(N, 6)), rng.integers(0, 7, N)), 0),
        "with_buffer": (with_buffer, (rng.normal(size=(N, 4)),), 0),
        "calls_a_callee": (calls_a_callee, (rng.normal(size=(N, 3)), rng.normal(size=N)), 0),
        "uniform_branch": (uniform_branch, (rng.normal(size=(N, 3)), 1, rng.normal(size=N)),
                           (0, None, 0)),
    }


def _equal(out, expected):
    if isinstance(out, tuple):
        columns = list(zip(*expected))
        return all(_equal(o, list(c)) for o, c in zip(out, columns))
    expected = np.array(expected)
    return out.shape == expected.shape and out.dtype == expected.dtype and \
        np.array_equal(out, expected)


#: parallel=True compiles slowly (numba's parfors): a few cases cover blocks across threads
PARALLEL_CASES = ("mlp", "newton_sqrt", "partial_sums", "with_buffer")


@pytest.mark.parametrize("case, parallel", [(case, False) for case in sorted(cases())]
                         + [(case, True) for case in PARALLEL_CASES])
def test_inner_layout_equals_single_calls_bit_for_bit(case, parallel):
    fun, args, in_axes = cases()[case]
    batched = nad.batch(fun, in_axes, parallel=parallel, layout="inner")
    out = batched(*args)
    assert batched.variant.layout == "inner"
    assert _equal(out, looped(fun, args, in_axes, N))
    assert "_nad_lanes" in batched.source


def test_varying_values_live_in_lane_arrays_and_uniform_code_runs_once_per_block():
    batched = nad.batch(mlp, (0, None, None, None, None), layout="inner")
    batched(*cases()["mlp"][1])
    source = batched.source
    # h and out cross the loops over j and i: one value per lane; the weights stay scalars
    assert "_nad_lane_h = np.empty(512" in source and "_nad_lane_out = np.empty(512" in source
    assert "w1[j, i]" in source and "_nad_lane_w1" not in source
    # the innermost loops are over lanes
    lines = [line.strip() for line in source.splitlines()]
    inner = lines.index("for i in range(0, _nad_t4, 1):")
    assert lines[inner + 2] == "for _nad_l in range(_nad_lanes):"


def test_auto_falls_back_to_a_call_per_slice_and_says_why():
    a, xs = rng.normal(size=(3, 4)), rng.normal(size=(N, 4))
    batched = nad.batch(matvec, (None, 0))
    out = batched(a, xs)
    assert batched.variant.layout == "outer" and "returns an array" in batched.variant.layout_note
    assert np.array_equal(out, np.stack(looped(matvec, (a, xs), (None, 0), N)))
    shared = np.zeros(2)
    batched = nad.batch(accumulate, (0, None))
    batched(rng.normal(size=(N, 2)), shared)
    assert batched.variant.layout == "outer" and "'out'" in batched.variant.layout_note


def test_inner_layout_refusals_name_the_reason():
    with pytest.raises(nad.AutodiffError, match="layout='inner'.*returns an array"):
        nad.batch(stats, 1, layout="inner")(rng.normal(size=(5, N)))
    with pytest.raises(nad.AutodiffError, match="layout='inner'.*writes argument 'out'.*every "
                                                "slice shares"):
        nad.batch(accumulate, (0, None), layout="inner")(rng.normal(size=(N, 2)), np.zeros(2))
    with pytest.raises(nad.AutodiffError, match="layout='inner' batches plain functions"):
        nad.batch(nad.grad(rosenbrock), layout="inner")(rng.normal(size=(N, 3)))
    with pytest.raises(nad.AutodiffError, match="layout must be one of"):
        nad.batch(rosenbrock, layout="sideways")


def test_in_place_writes_to_batched_slices():
    xs = rng.normal(size=(N, 3))
    expected = xs * 1.5
    batched = nad.batch(scale_in_place, (0, None), layout="inner")
    assert batched(xs, 1.5) is None and batched.variant.layout == "inner"
    assert np.array_equal(xs, expected)


def test_inner_layout_is_a_cached_artifact():
    fun, args, in_axes = cases()["newton_sqrt"]
    first = nad.batch(fun, in_axes, layout="inner")
    first(*args)
    second = nad.batch(fun, in_axes, layout="inner")
    second(*args)
    assert second.variant is first.variant
    assert nad.batch(fun, in_axes, layout="outer")(*args) is not None


def softplus_sum(x, scale):
    s = math.exp(scale)                # uniform: stays the C library's
    for i in range(x.shape[0]):
        s += math.log1p(math.exp(x[i])) + math.tanh(x[i]) ** 2
    return s


def test_vector_math_replaces_lane_calls_within_their_accuracy():
    from nbautodiff.kernels import vecmath
    xs = rng.normal(size=(N, 5))
    batched = nad.batch(softplus_sum, (0, None), layout="inner", vector_math=True)
    out = batched(xs, 0.3)
    source = batched.source
    assert "_nad_vm.exp(" in source and "_nad_vm.log1p(" in source and "_nad_vm.tanh(" in source
    assert "math.exp(scale)" in source                    # a uniform call is left alone
    expected = np.array(looped(softplus_sum, (xs, 0.3), (0, None), N))
    # every term is positive, so each 1-ulp function moves the sum by a few ulp at most
    assert np.max(np.abs(out - expected) / expected) < 8 * np.finfo(float).eps
    assert not np.array_equal(out, expected) or max(vecmath.MAX_ULP.values()) == 0.5
    plain = nad.batch(softplus_sum, (0, None), layout="inner")(xs, 0.3)
    assert np.array_equal(plain, expected)                # without it: bit for bit


def test_small_slices_are_read_from_a_lane_major_copy():
    small = rng.normal(size=(N, 6))
    batched = nad.batch(rosenbrock, layout="inner")
    assert np.array_equal(batched(small), looped(rosenbrock, (small,), 0, N))
    assert "_nad_soa_x[_nad_s0, _nad_l] = x[_nad_i, _nad_s0]" in batched.source
    large = rng.normal(size=(40, 100))               # 100 elements a slice: read in place
    assert np.array_equal(batched(large), looped(rosenbrock, (large,), 0, 40))
    assert "_nad_soa_" not in batched.source
    columns = rng.normal(size=(6, N))                 # batched along the last axis: contiguous
    batched(columns.T.copy())
    assert "_nad_soa_" in batched.source
    by_columns = nad.batch(rosenbrock, 1, layout="inner")
    assert np.array_equal(by_columns(columns), looped(rosenbrock, (columns,), 1, N))
    assert "_nad_soa_" not in by_columns.source
    xs = rng.normal(size=(N, 3))
    written = nad.batch(scale_in_place, (0, None), layout="inner")
    written(xs, 2.0)
    assert "_nad_soa_" not in written.source             # written arrays are never copied
