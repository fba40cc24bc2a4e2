"""``fastmath=True``: reduction loops recognised as products and computed by BLAS (raising.py),
math functions computed by ``kernels.vecmath`` (vector_calls.py).

Each function is differentiated with and without ``fastmath``: in reverse mode (``grad``), in
forward mode (``jvp``) and to second order (``hessian``, forward mode over the generated reverse
code that calls the products' in-place adjoints), against central differences and against the
unoptimised derivative (equal up to reassociation, relative 1e-12). The generated code must call
the product (``_nad_blas``) where the pattern matches exactly and leave the loop alone where it
does not; it calls vecmath (``_nad_vm``) for float64 calls of the functions vecmath has, and
libm for the others.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import nbautodiff as nad
from fd import assert_grad_close, central_diff, directional_diff


def rnn(W, U, xs, h0, target):
    steps = xs.shape[0]
    m = xs.shape[1]
    n = h0.shape[0]
    h = h0.copy()
    h_new = np.empty(n)
    for t in range(steps):
        for i in range(n):
            z = 0.0
            for j in range(n):
                z += W[i, j] * h[j]
            for j in range(m):
                z += U[i, j] * xs[t, j]
            h_new[i] = math.tanh(z)
        for i in range(n):
            h[i] = h_new[i]
    loss = 0.0
    for i in range(n):
        r = h[i] - target[i]
        loss += r * r
    return loss


def mlp(W1, b1, W2, b2, X, Y):
    n = X.shape[0]
    d = X.shape[1]
    h = W1.shape[0]
    o = W2.shape[0]
    hidden = np.empty(h)
    loss = 0.0
    for i in range(n):
        for a in range(h):
            z = b1[a]
            for j in range(d):
                z += W1[a, j] * X[i, j]
            hidden[a] = math.tanh(z)
        for k in range(o):
            y = b2[k]
            for a in range(h):
                y = y + hidden[a] * W2[k, a]          # operands the other way round
            r = y - Y[i, k]
            loss += r * r
    return loss / n


def dot_then_square(x, w):
    s = 0.0
    for j in range(x.shape[0]):
        s += x[j] * w[j]
    return s * s + math.sin(s)


def gram(X):
    n = X.shape[0]
    total = 0.0
    for i in range(n):
        for k in range(n):
            g = 0.0
            for j in range(X.shape[1]):
                g += X[i, j] * X[k, j]
            total += math.exp(-0.1 * g) * (i + 1.0) / (k + 2.0)
    return total


def column_sums(A, v):                # A[j, i]: a column, not a row: left as a loop
    total = 0.0
    for i in range(A.shape[1]):
        s = 0.0
        for j in range(A.shape[0]):
            s += A[j, i] * v[j]
        total += s * s
    return total


def writes_operand(A, v):             # w changes inside the loop over i: a dot per i, in place
    n = v.shape[0]
    w = v.copy()
    total = 0.0
    for i in range(n):
        s = 0.0
        for j in range(n):
            s += A[i, j] * w[j]
        w[i] = math.tanh(s)
        total += s
    return total


def reads_after(A, v):                # the product temporary is read after the loop
    n = v.shape[0]
    total = 0.0
    p = 0.0
    for i in range(n):
        s = 0.0
        for j in range(n):
            p = A[i, j] * v[j]
            s = s + p
        total += s * s
    return total + p


def _inputs(rng):
    n, m, T = 5, 3, 4
    return {
        rnn: ((0.5 * rng.standard_normal((n, n)), rng.standard_normal((n, m)),
               rng.standard_normal((T, m)), 0.1 * rng.standard_normal(n),
               0.5 * rng.standard_normal(n)), (0, 1, 3)),
        mlp: ((rng.standard_normal((6, 4)) / 2, 0.1 * rng.standard_normal(6),
               rng.standard_normal((2, 6)) / 2, 0.1 * rng.standard_normal(2),
               rng.standard_normal((7, 4)), rng.standard_normal((7, 2))), (0, 1, 2, 3)),
        dot_then_square: ((rng.standard_normal(9), rng.standard_normal(9)), (0, 1)),
        gram: ((0.5 * rng.standard_normal((4, 3)),), (0,)),
        column_sums: ((rng.standard_normal((4, 3)), rng.standard_normal(4)), (0, 1)),
        writes_operand: ((0.5 * rng.standard_normal((4, 4)), rng.standard_normal(4)), (0, 1)),
        reads_after: ((rng.standard_normal((4, 4)), rng.standard_normal(4)), (0, 1)),
    }


RAISED = {rnn: 2, mlp: 2, dot_then_square: 1, gram: 1, column_sums: 0, writes_operand: 1,
          reads_after: 0}
# gram: its reduction's bound (X.shape[1]) is computed inside the loops, so the product cannot
# move out of them: a dot per (i, k), in place
KIND = {rnn: "matvec_rows", mlp: "matmul_nt", gram: "dot_rows", writes_operand: "dot_rows"}
FUNCTIONS = list(RAISED)


@pytest.fixture
def cases(rng):
    return _inputs(rng)


def _as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


@pytest.mark.parametrize("fun", FUNCTIONS, ids=lambda f: f.__name__)
def test_reverse_matches_fd_and_unoptimised(fun, cases):
    args, argnums = cases[fun]
    fast = nad.grad(fun, argnums, fastmath=True)
    got = _as_tuple(fast(*args))
    unoptimised = nad.grad(fun, argnums)
    plain = _as_tuple(unoptimised(*args))
    fd = _as_tuple(central_diff(fun, args, argnums))
    for k, (g, p, f) in enumerate(zip(got, plain, fd)):
        assert_grad_close(g, f, rtol=1e-6, atol=1e-8, label=f"{fun.__name__} d/d arg {k}")
        np.testing.assert_allclose(g, p, rtol=1e-12, atol=1e-13)
    products = re.findall(r"= _nad_blas\.(?:dot_rows|matvec_rows|matmul_nt)\(", fast.source)
    assert len(products) == RAISED[fun], fast.source
    if fun in KIND:
        assert f"= _nad_blas.{KIND[fun]}(" in fast.source
    if fun is writes_operand:
        assert "matvec_rows" not in fast.source
    assert "_nad_blas" not in unoptimised.source


@pytest.mark.parametrize("fun", FUNCTIONS, ids=lambda f: f.__name__)
def test_value_and_grad_value(fun, cases):
    args, argnums = cases[fun]
    value, _ = nad.value_and_grad(fun, argnums, fastmath=True)(*args)
    assert value == pytest.approx(fun(*args), rel=1e-12, abs=1e-13)


@pytest.mark.parametrize("fun", FUNCTIONS, ids=lambda f: f.__name__)
def test_forward_matches_fd_and_unoptimised(fun, cases, rng):
    args, argnums = cases[fun]
    tangents = [rng.standard_normal(np.shape(a)) if k in argnums else None
                for k, a in enumerate(args)]
    value, tangent = nad.jvp(fun, args, tangents, fastmath=True)
    _, plain = nad.jvp(fun, args, tangents)
    fd = directional_diff(fun, args, argnums, [tangents[k] for k in argnums])
    assert value == pytest.approx(fun(*args), rel=1e-12, abs=1e-13)
    assert tangent == pytest.approx(fd, rel=1e-6, abs=1e-8)
    assert tangent == pytest.approx(plain, rel=1e-12, abs=1e-13)
    derived = nad.forward(fun, *[nad.Dual if k in argnums else nad.Const
                                 for k in range(len(args))], fastmath=True)
    call = []
    for k, a in enumerate(args):
        call += [a, tangents[k]] if k in argnums else [a]
    _, again = derived(*call)
    assert again == pytest.approx(tangent, rel=1e-14, abs=1e-15)
    assert ("_nad_blas" in derived.source) is bool(RAISED[fun])


def hessian_vector_products(fun, args, k, direction):
    """(the fast Hessian times ``direction``, the fast and the plain Hessian-vector products by
    forward mode over the reverse code, one pass each)."""
    tangents = [direction if j == k else None for j in range(len(args))]
    fast = nad.hessian(fun, k, fastmath=True)(*args)
    contracted = np.tensordot(fast, direction, axes=np.ndim(direction))
    _, hv = nad.jvp(nad.grad(fun, k, fastmath=True), args, tangents)
    _, plain = nad.jvp(nad.grad(fun, k), args, tangents)
    return contracted, hv, plain


@pytest.mark.parametrize("fun", [rnn, mlp, dot_then_square, gram], ids=lambda f: f.__name__)
def test_second_order_forward_over_reverse(fun, cases, rng):
    """The Hessian differentiates the generated reverse code, products and in-place adjoints
    included. Along a random direction (a wrong entry of the Hessian changes the product): the
    fast Hessian (vector mode) against the fast Hessian-vector product (one tangent), that
    against the unoptimised one, and against central differences of the unoptimised gradient.
    (This spares compiling the unoptimised Hessian in vector mode, the slowest part.)"""
    args, argnums = cases[fun]
    k = argnums[0]
    direction = rng.standard_normal(np.shape(args[k]))
    contracted, hv, plain = hessian_vector_products(fun, args, k, direction)
    np.testing.assert_allclose(contracted, hv, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(hv, plain, rtol=1e-10, atol=1e-11)
    gradient = nad.grad(fun, k)
    h = 1e-5

    def at(t):
        call = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        call[k] = call[k] + t * direction
        return gradient(*call)
    assert_grad_close(hv, (at(h) - at(-h)) / (2 * h), rtol=1e-5, atol=1e-7, label="H v")


def test_bounds_beyond_the_operands_raise(rng):
    def dot_n(x, w, n):
        s = 0.0
        for j in range(n):
            s += x[j] * w[j]
        return s * s

    x, w = rng.standard_normal(4), rng.standard_normal(4)
    g = nad.grad(dot_n, 0, fastmath=True)
    np.testing.assert_allclose(g(x, w, 3), nad.grad(dot_n, 0)(x, w, 3), rtol=1e-12)
    assert g(x, w, 0) == pytest.approx(np.zeros(4))
    with pytest.raises(IndexError):
        g(x, w, 5)


def test_fastmath_option_is_checked():
    with pytest.raises(nad.AutodiffError, match="fastmath"):
        nad.grad(dot_then_square, fastmath="yes")


def special_functions(x, y):
    """Every function vecmath replaces under fastmath, and two it must not (a float32 value, an
    integer constant)."""
    s = 0.0
    for i in range(x.shape[0]):
        a = x[i]
        s += math.tanh(a) * math.exp(0.3 * a) + math.log(1.5 + a) * math.sinh(a)
        s += math.cosh(0.5 * a) + math.expm1(a) * math.log1p(0.5 + a)
        s += math.erf(a) * math.erfc(0.7 * a) + np.tanh(a * y[i])
    f = np.float32(0.25)
    return s + math.exp(f) + math.exp(2)


def test_vecmath_replaces_float64_calls_in_both_modes_and_second_order(rng):
    x, y = rng.uniform(-0.4, 0.4, 6), rng.standard_normal(6)
    fast = nad.grad(special_functions, (0, 1), fastmath=True)
    plain = nad.grad(special_functions, (0, 1))
    fd = central_diff(special_functions, (x, y), (0, 1))
    for got, expected, reference in zip(fast(x, y), plain(x, y), fd):
        assert_grad_close(got, reference, rtol=1e-6, atol=1e-8, label="vecmath grad")
        np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-14)
    called = set(re.findall(r"_nad_vm\.(\w+)\(", fast.source))
    assert called == {"tanh", "exp", "log", "sinh", "cosh", "expm1", "log1p", "erf", "erfc"}
    assert "_nad_vm" not in plain.source
    derived = nad.forward(special_functions, nad.Dual, nad.Const, fastmath=True)
    assert re.search(r"= math\.exp\(f\)\n", derived.source)      # float32: libm, float32
    assert re.search(r"= math\.exp\(2\)\n", derived.source)      # an integer constant
    tangents = [rng.standard_normal(6), rng.standard_normal(6)]
    value, tangent = nad.jvp(special_functions, (x, y), tangents, fastmath=True)
    assert value == pytest.approx(nad.jvp(special_functions, (x, y), tangents)[0], rel=1e-13)
    assert tangent == pytest.approx(directional_diff(special_functions, (x, y), (0, 1), tangents),
                                    rel=1e-6, abs=1e-8)
    contracted, hv, plain_hv = hessian_vector_products(special_functions, (x, y), 0,
                                                       tangents[0])
    np.testing.assert_allclose(contracted, hv, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(hv, plain_hv, rtol=1e-10, atol=1e-11)


FRESH_PROCESS = """
import json, sys
import numpy as np
import nbautodiff as nad
import test_fastmath as t
args = [np.asarray(a) for a in json.loads(sys.argv[1])]
grad = nad.grad(t.mlp, 0, fastmath=True)
print(json.dumps({"grad": grad(*args).tolist(),
                  "hessian": nad.hessian(t.mlp, 0, fastmath=True)(*args).tolist(),
                  "vecmath": "_nad_vm.tanh(" in grad.source,
                  "from_cache": nad.cache.info().hits}))
"""


def test_a_fresh_process_loads_vecmath_code_from_the_cache_and_differentiates_it(cases):
    """The fastmath gradient read from the cache by another process binds vecmath, and forward
    mode over it (the Hessian) still finds vecmath's functions' rules."""
    args, _ = cases[mlp]
    expected_grad = nad.grad(mlp, 0, fastmath=True)(*args)
    expected_hessian = nad.hessian(mlp, 0, fastmath=True)(*args)
    process = subprocess.run([sys.executable, "-c", FRESH_PROCESS,
                              json.dumps([np.asarray(a).tolist() for a in args])],
                             capture_output=True, text=True, timeout=600,
                             env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                                 [os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")])))
    assert process.returncode == 0, process.stderr
    seen = json.loads(process.stdout.strip().splitlines()[-1])
    assert seen["vecmath"] and seen["from_cache"] > 0
    np.testing.assert_array_equal(seen["grad"], expected_grad)
    np.testing.assert_array_equal(seen["hessian"], expected_hessian)
