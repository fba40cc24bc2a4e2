"""The reverse-mode API: ``reverse`` (Rust ``#[autodiff_reverse]`` activities), ``vjp``, ``grad``
with tuple argnums, ``value_and_grad``, ``.source`` / ``.primal``, float32 and lazy compilation per
argument types. References are central differences (tests/fd.py) or closed forms.
"""
from __future__ import annotations

import ast
import math

import numpy as np
import pytest

import nbautodiff as nad

import corpus
from fd import assert_grad_close, central_diff, fd_vjp


# ---- functions under test -------------------------------------------------------------------

def weighted_energy(a, x, b, n):
    s = 0.0
    for i in range(n):
        s += a * x[i] * x[i] + math.sin(b * x[i])
    return s


def fill_output(x, c, out):
    for i in range(len(x)):
        out[i] = c * math.sin(x[i]) + x[i] * x[i]


def fill_output_and_sum(x, c, out):
    s = 0.0
    for i in range(len(x)):
        out[i] = c * x[i] * x[i]
        s += math.exp(x[i])
    return s


def local_array_out(x, n):
    m = len(x)
    out = np.empty(m)
    for i in range(m):
        out[i] = math.exp(-x[i]) * n + x[(i + 1) % m] ** 2
    return out


def matrix_out(a, s):
    r, c = a.shape
    out = np.zeros((r, c))
    for i in range(r):
        for j in range(c):
            out[i, j] = s * a[i, j] * a[(i + 1) % r, j] + math.tanh(a[i, j])
    return out


def sum_sq(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * x[i]
    return s


def matrix_energy(a, v):
    n, m = a.shape
    s = 0.0
    for i in range(n):
        t = 0.0
        for j in range(m):
            t += a[i, j] * v[j]
        s += t * t
    return s


def scaled_norm(x, c):
    s = 0.0
    for i in range(len(x)):
        s += c * x[i] * x[i]
    return s


def three_scalars(p, q, r):
    return p * q * q + math.exp(r * p) - q * r


A, X, B, N = 0.7, np.array([0.3, -1.2, 0.8, 1.5, -0.4]), 1.3, 5


def energy_fd():
    """Closed-form partials of weighted_energy at (A, X, B, N)."""
    da = float(np.sum(X * X))
    db = float(np.sum(X * np.cos(B * X)))
    dx = 2.0 * A * X + B * np.cos(B * X)
    return da, dx, db


# ---- reverse ---------------------------------------------------------------------------------

def test_reverse_active_duplicated_active_const():
    df = nad.reverse(weighted_energy, nad.Active, nad.Duplicated, nad.Active, nad.Const)
    x = X.copy()
    dx = np.zeros_like(x)
    out = df(A, x, dx, B, N, 1.0)
    assert isinstance(out, tuple) and len(out) == 3, "(primal, da, db) expected"
    value, da, db = out
    ea, ex, eb = energy_fd()
    assert math.isclose(value, weighted_energy(A, X, B, N), rel_tol=1e-12)
    assert_grad_close(da, ea, rtol=1e-12, atol=1e-14, label="da")
    assert_grad_close(db, eb, rtol=1e-12, atol=1e-14, label="db")
    assert_grad_close(dx, ex, rtol=1e-12, atol=1e-14, label="dx")
    assert np.array_equal(x, X), "the primal array must not change"


def test_reverse_shadow_accumulates():
    df = nad.reverse(weighted_energy, nad.Active, nad.Duplicated, nad.Active, nad.Const)
    _, ex, _ = energy_fd()
    dx = np.zeros_like(X)
    df(A, X.copy(), dx, B, N, 1.0)
    df(A, X.copy(), dx, B, N, 1.0)
    assert_grad_close(dx, 2.0 * ex, rtol=1e-12, atol=1e-14, label="dx after two calls")
    dx = np.full_like(X, 10.0)
    df(A, X.copy(), dx, B, N, 1.0)
    assert_grad_close(dx, 10.0 + ex, rtol=1e-12, atol=1e-14, label="dx pre-filled with 10")


def test_reverse_seed_scales_everything():
    df = nad.reverse(weighted_energy, nad.Active, nad.Duplicated, nad.Active, nad.Const)
    ea, ex, eb = energy_fd()
    dx = np.zeros_like(X)
    value, da, db = df(A, X.copy(), dx, B, N, -2.5)
    assert math.isclose(value, weighted_energy(A, X, B, N), rel_tol=1e-12), "seed must not scale the value"
    assert_grad_close(da, -2.5 * ea, rtol=1e-12, atol=1e-14, label="da")
    assert_grad_close(db, -2.5 * eb, rtol=1e-12, atol=1e-14, label="db")
    assert_grad_close(dx, -2.5 * ex, rtol=1e-12, atol=1e-14, label="dx")


def test_reverse_activity_names_as_strings():
    df = nad.reverse(weighted_energy, "Active", "Duplicated", "Active", "Const")
    ea, ex, eb = energy_fd()
    dx = np.zeros_like(X)
    value, da, db = df(A, X.copy(), dx, B, N, 1.0)
    assert_grad_close(da, ea, rtol=1e-12, atol=1e-14, label="da")
    assert_grad_close(db, eb, rtol=1e-12, atol=1e-14, label="db")
    assert_grad_close(dx, ex, rtol=1e-12, atol=1e-14, label="dx")


def test_reverse_active_order_with_const_between():
    # Active adjoints come back in argument order, Const ones are skipped
    ea, _, eb = energy_fd()
    df = nad.reverse(weighted_energy, nad.Active, nad.Const, nad.Active, nad.Const)
    value, da, db = df(A, X.copy(), B, N, 1.0)
    assert_grad_close(da, ea, rtol=1e-12, atol=1e-14, label="da")
    assert_grad_close(db, eb, rtol=1e-12, atol=1e-14, label="db")
    df = nad.reverse(weighted_energy, nad.Const, nad.Const, nad.Active, nad.Const)
    value, db = df(A, X.copy(), B, N, 1.0)
    assert_grad_close(db, eb, rtol=1e-12, atol=1e-14, label="db alone")
    p, q, r = 0.4, -0.9, 1.1
    df = nad.reverse(three_scalars, nad.Active, nad.Active, nad.Active)
    value, dp, dq, dr = df(p, q, r, 1.0)
    assert_grad_close(dp, q * q + r * math.exp(r * p), rtol=1e-12, atol=1e-14, label="dp")
    assert_grad_close(dq, 2 * p * q - r, rtol=1e-12, atol=1e-14, label="dq")
    assert_grad_close(dr, p * math.exp(r * p) - q, rtol=1e-12, atol=1e-14, label="dr")
    df = nad.reverse(three_scalars, nad.Const, nad.Active, nad.Const)
    value, dq = df(p, q, r, 1.0)
    assert_grad_close(dq, 2 * p * q - r, rtol=1e-12, atol=1e-14, label="dq alone")


def test_reverse_active_only_drops_primal():
    ea, ex, eb = energy_fd()
    df = nad.reverse(weighted_energy, nad.Active, nad.Duplicated, nad.Active, nad.Const,
                     ret="ActiveOnly")
    dx = np.zeros_like(X)
    out = df(A, X.copy(), dx, B, N, 1.0)
    assert isinstance(out, tuple) and len(out) == 2, "ActiveOnly: (da, db) expected"
    assert_grad_close(out[0], ea, rtol=1e-12, atol=1e-14, label="da")
    assert_grad_close(out[1], eb, rtol=1e-12, atol=1e-14, label="db")
    assert_grad_close(dx, ex, rtol=1e-12, atol=1e-14, label="dx")
    # a single adjoint comes back by itself
    df = nad.reverse(three_scalars, nad.Const, nad.Active, nad.Const, ret="ActiveOnly")
    dq = df(0.4, -0.9, 1.1, 1.0)
    assert isinstance(dq, float)
    assert_grad_close(dq, 2 * 0.4 * -0.9 - 1.1, rtol=1e-12, atol=1e-14, label="dq")


def test_reverse_single_item_is_not_a_tuple():
    df = nad.reverse(sum_sq, nad.Duplicated)
    x = np.array([1.0, -2.0, 0.5])
    dx = np.zeros(3)
    value = df(x, dx, 1.0)
    assert isinstance(value, float), f"a lone primal result comes back by itself, got {value!r}"
    assert value == pytest.approx(5.25)
    assert_grad_close(dx, 2.0 * x, rtol=1e-14, atol=0.0, label="dx")


def test_reverse_duplicated_only_argument():
    _, ex, _ = energy_fd()
    df = nad.reverse(weighted_energy, nad.Const, nad.DuplicatedOnly, nad.Const, nad.Const)
    dx = np.zeros_like(X)
    df(A, X.copy(), dx, B, N, 1.0)
    assert_grad_close(dx, ex, rtol=1e-12, atol=1e-14, label="dx (DuplicatedOnly)")
    df(A, X.copy(), dx, B, N, 1.0)
    assert_grad_close(dx, 2.0 * ex, rtol=1e-12, atol=1e-14, label="dx accumulates")


def test_reverse_duplicated_2d_and_float32():
    rng = np.random.default_rng(3)
    a, v = rng.uniform(-1, 1, (3, 4)), rng.uniform(-1, 1, 4)
    df = nad.reverse(matrix_energy, nad.Duplicated, nad.Duplicated)
    da, dv = np.zeros_like(a), np.zeros_like(v)
    value = df(a, da, v, dv, 1.0)
    y = a @ v
    assert value == pytest.approx(float(y @ y), rel=1e-12)
    assert_grad_close(da, 2 * np.outer(y, v), rtol=1e-12, atol=1e-14, label="dA")
    assert_grad_close(dv, 2 * a.T @ y, rtol=1e-12, atol=1e-14, label="dv")
    a32, v32 = a.astype(np.float32), v.astype(np.float32)
    da32, dv32 = np.zeros_like(a32), np.zeros_like(v32)
    df(a32, da32, v32, dv32, 1.0)
    assert da32.dtype == np.float32 and dv32.dtype == np.float32
    assert_grad_close(da32, 2 * np.outer(y, v), rtol=1e-4, atol=1e-5, label="dA float32")
    assert_grad_close(dv32, 2 * a.T @ y, rtol=1e-4, atol=1e-5, label="dv float32")


def test_reverse_ret_const_output_array_seeded_by_shadow():
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, 5)
    df = nad.reverse(fill_output, nad.Duplicated, nad.Const, nad.Duplicated, ret="Const")
    dx = np.zeros(5)
    out = np.zeros(5)
    dout = rng.uniform(-1, 1, 5)
    seed = dout.copy()
    result = df(x, dx, 0.8, out, dout)        # no seed argument with ret Const
    assert result is None
    ref = np.empty(5)
    fill_output(x, 0.8, ref)
    np.testing.assert_allclose(out, ref, rtol=1e-12, err_msg="the primal writes its output")
    assert_grad_close(dx, seed * (0.8 * np.cos(x) + 2.0 * x), rtol=1e-12, atol=1e-14,
                      label="dx from the output's shadow")


def test_reverse_ret_const_with_active_argument():
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, 4)
    df = nad.reverse(fill_output_and_sum, nad.Duplicated, nad.Active, nad.Duplicated,
                     ret=nad.Const)
    dx, out = np.zeros(4), np.zeros(4)
    dout = rng.uniform(-1, 1, 4)
    seed = dout.copy()
    value, dc = df(x, dx, 1.7, out, dout)
    assert value == pytest.approx(float(np.sum(np.exp(x))), rel=1e-12)
    # only the output array is seeded: the returned sum contributes nothing
    assert_grad_close(dc, float(np.sum(seed * x * x)), rtol=1e-12, atol=1e-14, label="dc")
    assert_grad_close(dx, seed * 2.0 * 1.7 * x, rtol=1e-12, atol=1e-14, label="dx")


def test_reverse_matches_grad_on_corpus():
    case = corpus.case_by_name("mlp_loss")
    args = corpus.args_for(case, 0)
    w1, b1, w2, x, target = args
    df = nad.reverse(corpus.mlp_loss, nad.Duplicated, nad.Duplicated, nad.Duplicated, nad.Const,
                     nad.Active)
    shadows = [np.zeros_like(w1), np.zeros_like(b1), np.zeros_like(w2)]
    value, dtarget = df(w1, shadows[0], b1, shadows[1], w2, shadows[2], x, target, 1.0)
    g = nad.grad(corpus.mlp_loss, argnums=(0, 1, 2, 4))(*args)
    assert value == pytest.approx(corpus.mlp_loss(*args), rel=1e-12)
    for s, e, name in zip(shadows + [dtarget], g, ("dw1", "db1", "dw2", "dtarget")):
        assert_grad_close(s, e, rtol=1e-12, atol=1e-14, label=name)


# ---- vjp -------------------------------------------------------------------------------------

def test_vjp_scalar_output():
    out, vjp_fn = nad.vjp(weighted_energy, A, X.copy(), B, N)
    assert math.isclose(out, weighted_energy(A, X, B, N), rel_tol=1e-12)
    cot = vjp_fn(1.0)
    assert isinstance(cot, tuple) and len(cot) == 4
    ea, ex, eb = energy_fd()
    assert_grad_close(cot[0], ea, rtol=1e-12, atol=1e-14, label="da")
    assert_grad_close(cot[1], ex, rtol=1e-12, atol=1e-14, label="dx")
    assert_grad_close(cot[2], eb, rtol=1e-12, atol=1e-14, label="db")
    assert cot[3] is None, "an int argument has no cotangent"
    cot2 = vjp_fn(3.0)
    assert_grad_close(cot2[1], 3.0 * ex, rtol=1e-12, atol=1e-14, label="dx, cotangent 3")
    assert_grad_close(cot2[0], 3.0 * ea, rtol=1e-12, atol=1e-14, label="da, cotangent 3")


def test_vjp_array_output():
    rng = np.random.default_rng(6)
    x = rng.uniform(-1, 1, 6)
    saved = x.copy()
    out, vjp_fn = nad.vjp(local_array_out, x, 3)
    assert isinstance(out, np.ndarray) and out.shape == (6,)
    np.testing.assert_allclose(out, local_array_out(saved, 3), rtol=1e-12)
    c1, c2 = rng.uniform(-1, 1, 6), rng.uniform(-1, 1, 6)
    dx1, dn = vjp_fn(c1)
    assert dn is None
    ref = fd_vjp(local_array_out, (saved, 3), c1, 0)
    assert_grad_close(dx1, ref, rtol=1e-6, atol=1e-9, label="vjp(c1) vs FD")
    # linear in the cotangent, and no state carried between calls
    dx2 = vjp_fn(c2)[0]
    dx12 = vjp_fn(c1 + c2)[0]
    assert_grad_close(dx12, dx1 + dx2, rtol=1e-12, atol=1e-14, label="vjp(c1 + c2)")
    assert_grad_close(vjp_fn(c1)[0], dx1, rtol=0, atol=0, label="vjp(c1) again")
    assert np.array_equal(x, saved)


def test_vjp_2d_array_output():
    rng = np.random.default_rng(7)
    a = rng.uniform(-1, 1, (3, 4))
    out, vjp_fn = nad.vjp(matrix_out, a, 0.6)
    np.testing.assert_allclose(out, matrix_out(a, 0.6), rtol=1e-12)
    cot = rng.uniform(-1, 1, (3, 4))
    da, ds = vjp_fn(cot)
    rda, rds = fd_vjp(matrix_out, (a, 0.6), cot, (0, 1))
    assert_grad_close(da, rda, rtol=1e-6, atol=1e-9, label="dA")
    assert_grad_close(ds, rds, rtol=1e-6, atol=1e-9, label="ds")


# ---- grad, value_and_grad --------------------------------------------------------------------

def test_grad_tuple_argnums_and_order():
    ea, ex, eb = energy_fd()
    g = nad.grad(weighted_energy, argnums=(0, 1, 2))
    da, dx, db = g(A, X.copy(), B, N)
    assert_grad_close(da, ea, rtol=1e-12, atol=1e-14, label="da")
    assert_grad_close(dx, ex, rtol=1e-12, atol=1e-14, label="dx")
    assert_grad_close(db, eb, rtol=1e-12, atol=1e-14, label="db")
    db2, da2 = nad.grad(weighted_energy, argnums=(2, 0))(A, X.copy(), B, N)
    assert_grad_close(db2, eb, rtol=1e-12, atol=1e-14, label="db, argnums (2, 0)")
    assert_grad_close(da2, ea, rtol=1e-12, atol=1e-14, label="da, argnums (2, 0)")
    (only,) = nad.grad(weighted_energy, argnums=(1,))(A, X.copy(), B, N)
    assert_grad_close(only, ex, rtol=1e-12, atol=1e-14, label="dx, argnums (1,)")
    assert isinstance(nad.grad(weighted_energy)(A, X.copy(), B, N), float)


def test_value_and_grad_tuple_argnums():
    ea, ex, eb = energy_fd()
    value, (dx, db) = nad.value_and_grad(weighted_energy, argnums=(1, 2))(A, X.copy(), B, N)
    assert math.isclose(value, weighted_energy(A, X, B, N), rel_tol=1e-12)
    assert_grad_close(dx, ex, rtol=1e-12, atol=1e-14, label="dx")
    assert_grad_close(db, eb, rtol=1e-12, atol=1e-14, label="db")


def test_grad_repeated_calls_do_not_accumulate():
    g = nad.grad(sum_sq)
    x = np.array([1.0, 2.0, -3.0])
    first = g(x)
    second = g(x)
    np.testing.assert_array_equal(first, 2.0 * x)
    np.testing.assert_array_equal(second, 2.0 * x)
    assert first is not second


def test_grad_of_numba_dispatcher():
    x = np.arange(6.0) + 0.1 * np.sin(np.arange(6.0))
    g = nad.grad(corpus.nj_spring_energy, argnums=(0, 1))(x, 1.3)
    ref = central_diff(corpus.nj_spring_energy.py_func, (x, 1.3), (0, 1))
    assert_grad_close(g[0], ref[0], rtol=1e-6, atol=1e-9, label="dx")
    assert_grad_close(g[1], ref[1], rtol=1e-6, atol=1e-9, label="dk")


# ---- derived functions: .source, .primal ----------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda f: nad.grad(f),
    lambda f: nad.grad(f, argnums=(0, 2)),
    lambda f: nad.value_and_grad(f),
    lambda f: nad.reverse(f, nad.Active, nad.Duplicated, nad.Active, nad.Const),
    lambda f: nad.reverse(f, nad.Active, nad.Const, nad.Const, nad.Const, ret="ActiveOnly"),
], ids=["grad", "grad_tuple", "value_and_grad", "reverse", "reverse_active_only"])
def test_derived_function_has_source_and_primal(make):
    d = make(weighted_energy)
    assert d.primal is weighted_energy
    src = d.source
    assert isinstance(src, str) and src.strip()
    ast.parse(src)                               # valid Python
    assert "weighted_energy" in src


def test_source_of_reverse_derivative_is_python_with_callees():
    d = nad.grad(corpus.calls_chain)
    d(0.3)
    src = d.source
    ast.parse(src)
    assert "calls_chain" in src


# ---- argument types: float32, lazy compilation per types -------------------------------------

def test_float32_then_float64_then_float32():
    g = nad.grad(corpus.rosenbrock)
    x64 = np.array([0.5, -0.3, 1.1, 0.9, -1.2])
    exact = np.zeros_like(x64)
    exact[:-1] += -400.0 * x64[:-1] * (x64[1:] - x64[:-1] ** 2) - 2.0 * (1.0 - x64[:-1])
    exact[1:] += 200.0 * (x64[1:] - x64[:-1] ** 2)
    x32 = x64.astype(np.float32)
    g32 = g(x32)
    assert isinstance(g32, np.ndarray) and g32.dtype.kind == "f" and g32.shape == (5,)
    assert_grad_close(g32, exact, rtol=1e-4, atol=1e-3, label="float32")
    g64 = g(x64)
    assert g64.dtype == np.float64
    assert_grad_close(g64, exact, rtol=1e-12, atol=1e-12, label="float64 after float32")
    assert_grad_close(g(x32), exact, rtol=1e-4, atol=1e-3, label="float32 again")


def test_const_scalar_int_then_float():
    g = nad.grad(scaled_norm)
    x = np.array([1.0, -2.0, 0.5])
    assert_grad_close(g(x, 2), 4.0 * x, rtol=1e-14, atol=0, label="c = 2 (int)")
    assert_grad_close(g(x, 2.5), 5.0 * x, rtol=1e-14, atol=0, label="c = 2.5 (float)")
    assert_grad_close(g(x.astype(np.float32), 3), 6.0 * x, rtol=1e-6, atol=0, label="float32, c = 3")


def test_different_ranks_and_sizes():
    g = nad.grad(corpus.tensor3_sum)
    for shape in [(2, 3, 4), (1, 1, 1), (3, 2, 2)]:
        t = np.random.default_rng(sum(shape)).uniform(-1, 1, shape)
        ref = central_diff(corpus.tensor3_sum, (t,), 0)
        assert_grad_close(g(t), ref, rtol=1e-6, atol=1e-9, label=f"shape {shape}")


# ---- memory layout and aliasing --------------------------------------------------------------

def two_arrays(a, b):
    s = 0.0
    for i in range(len(a)):
        s += a[i] * b[i] * b[i]
    return s


def test_non_contiguous_inputs():
    rng = np.random.default_rng(8)
    a = rng.uniform(-1, 1, (5, 4))
    x = rng.uniform(-1, 1, 10)
    at, xs = a.T, x[::2]                        # a transposed (F-order) and a strided view
    ga, gx = nad.grad(corpus.matvec_quad, argnums=(0, 1))(at, xs)
    ra, rx = central_diff(corpus.matvec_quad, (at, xs), (0, 1))
    assert ga.shape == at.shape and gx.shape == xs.shape
    assert_grad_close(ga, ra, rtol=1e-6, atol=1e-9, label="dA (transposed input)")
    assert_grad_close(gx, rx, rtol=1e-6, atol=1e-9, label="dx (strided input)")
    # a function that writes into its input, given a view: the base array changes as the
    # function itself changes it (through the view), no more
    y = rng.uniform(-1, 1, 12)
    before = y.copy()
    g = nad.grad(corpus.normalize_inplace)(y[1::2])
    expected = before.copy()
    corpus.normalize_inplace(expected[1::2])
    np.testing.assert_allclose(y, expected, rtol=1e-13, atol=0,
                               err_msg="the view of the input does not end as the function leaves it")
    assert_grad_close(g, central_diff(corpus.normalize_inplace, (before[1::2].copy(),), 0),
                      rtol=1e-6, atol=1e-9, label="d normalize_inplace (view)")


def test_same_array_for_two_arguments():
    z = np.array([0.5, -1.0, 2.0])
    ga, gb = nad.grad(two_arrays, argnums=(0, 1))(z, z)
    assert_grad_close(ga, z * z, rtol=1e-14, atol=0, label="d/da")
    assert_grad_close(gb, 2 * z * z, rtol=1e-14, atol=0, label="d/db")
    # one shadow for both: both adjoints are added into it
    dz = np.zeros(3)
    nad.reverse(two_arrays, nad.Duplicated, nad.Duplicated)(z, dz, z, dz, 1.0)
    assert_grad_close(dz, 3 * z * z, rtol=1e-14, atol=0, label="shared shadow")


def checked_log(x, floor):
    if x <= floor:
        raise ValueError("x must exceed the floor")
    return math.log(x - floor) * x


def test_raise_in_the_function_is_typed_and_raised_by_the_derivatives():
    x = 2.5
    assert nad.grad(checked_log)(x, 0.5) == pytest.approx(math.log(2.0) + x / 2.0, rel=1e-14)
    assert nad.jvp(checked_log, (x, 0.5), (1.0, 0.0))[1] == pytest.approx(
        math.log(2.0) + x / 2.0, rel=1e-14)
    with pytest.raises(ValueError, match="must exceed"):
        nad.grad(checked_log)(0.2, 0.5)
