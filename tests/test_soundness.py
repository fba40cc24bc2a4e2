"""Every reproducer of issue 18 ("never a silently wrong gradient") as a test.

Each program runs in reverse, forward and batch mode through :mod:`soundness`: the result must be
right against central differences (batch: against single primal calls) with the caller's arrays
left exactly as the primal leaves them, or an ``AutodiffError`` naming the program's own line.
A wrong result, a crash, a different side effect, or a refusal naming NumPy's or generated code
fails with a report of the program and every mode's outcome.

Also: ``vjp`` of a returned transpose against ``fd.fd_vjp``; stale module state (a global array
changed in place or rebound, a helper redefined "in another cell") with the same gradient object
and a fresh one; and a two-state Kalman filter's log-likelihood, differentiated w.r.t. its noise
parameters (loop style, with small matrix products, and element by element).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import nbautodiff as nad
from fd import central_diff, copy_args
from soundness import (REFUSED, RIGHT, assert_sound, check_program, check_vjp, classify_refusal,
                       load_program)

_r = np.random.default_rng(18)
X6 = np.arange(1.0, 7.0)
V5 = _r.standard_normal(5)
A34 = _r.standard_normal((3, 4))
A33 = _r.standard_normal((3, 3))
A23 = _r.standard_normal((2, 3))
POS5 = np.array([0.3, -1.2, 0.8, 1.7, -0.4])


def case(name, src, args, argnums=0):
    return pytest.param(src, args, argnums, id=name)


VIEWS = [
    case("reshape-write", """
def f(x):
    B = x.reshape(2, 3)
    B[1, 0] = B[0, 0] * B[1, 1]
    return np.sum(x * x)
""", (X6,)),
    case("ascontiguousarray-write", """
def f(x):
    B = np.ascontiguousarray(x)
    B[1] = B[0] * B[2]
    return np.sum(x * x)
""", (X6,)),
    case("dot-T-1d-write", """
def f(x):
    B = x.T
    B[1] = B[0] * B[2]
    return np.sum(x * x)
""", (X6,)),
    case("dot-T-2d-write", """
def f(A):
    B = A.T
    B[0, 1] = B[0, 0] * B[1, 1]
    return np.sum(A * A)
""", (A23,)),
    case("np-transpose-write", """
def f(x):
    B = np.transpose(x)
    B[1] = B[0] * B[2]
    return np.sum(x * x)
""", (X6,)),
    case("np-transpose-2d-write", """
def f(A):
    B = np.transpose(A)
    B[2, 0] = B[0, 1] * B[1, 0]
    return np.sum(A * A)
""", (A23,)),
    case("np-reshape-write", """
def f(x):
    B = np.reshape(x, (3, 2))
    B[1] = B[0] * B[2]
    return np.sum(x * x)
""", (X6,)),
    case("asarray-write", """
def f(x):
    B = np.asarray(x)
    B[1] = B[0] * B[2]
    return np.sum(x * x)
""", (X6,)),
    case("full-slice-view-write", """
def f(x):
    B = x[:]
    B[1] = B[0] * B[2]
    return np.sum(x * x)
""", (X6,)),
    case("reshape-of-local-write", """
def f(x):
    y = x * 1.0
    B = y.reshape(2, 3)
    B[1, 0] = B[0, 0] * B[1, 1]
    return np.sum(y * x)
""", (X6,)),
    case("alias-write", """
def f(x):
    y = x * 1.0
    B = y
    B[2] = B[0] * B[1]
    return np.sum(y * y)
""", (V5,)),
    case("param-write", """
def f(x):
    x[1] = x[0] * x[2]
    return np.sum(x * x)
""", (V5,)),
    case("param-write-loop", """
def f(x):
    for i in range(1, len(x)):
        x[i] = x[i - 1] * x[i]
    return np.sum(x * x)
""", (V5,)),
    case("param-view-write", """
def f(x):
    y = x[1:]
    y[0] = x[0] * x[2]
    return np.sum(x * x)
""", (V5,)),
]

CALLEES = [
    case("callee-writes-returns-arg", """
def g(a):
    a[0] = 2 * a[0] + a[1]
    return a

def f(x):
    y = x * 1.0
    z = g(y)
    z[1] *= y[0]
    return np.sum(y * y)
""", (V5,)),
    case("callee-writes-returns-tuple", """
def g(a):
    a[0] = 2 * a[0] + a[1]
    return a, 1.0

def f(x):
    y = x * 1.0
    z, c = g(y)
    z[1] = z[1] * y[0]
    return np.sum(y * y) * c
""", (V5,)),
    case("callee-writes-returns-view", """
def g(a):
    a[0] = 2 * a[0] + a[1]
    return a[1:]

def f(x):
    y = x * 1.0
    z = g(y)
    z[0] = z[0] * y[0]
    return np.sum(y * y)
""", (V5,)),
    case("callee-returns-view-no-write", """
def g(a):
    return a[::2]

def f(x):
    y = x * 1.0
    z = g(y)
    z[1] = z[0] * z[2]
    return np.sum(y * x)
""", (V5,)),
]

OVERLAPS = [
    case("overlapping-slice-assign", """
def f(x):
    y = x * 1
    y[1:] = y[:-1]
    return np.sum(y * x)
""", (V5,)),
    case("overlapping-slice-assign-expr", """
def f(x):
    y = x * 1.0
    y[:-1] = y[1:] * y[:-1]
    return np.sum(y * x)
""", (V5,)),
    case("callee-same-array-twice", """
def g(a, b):
    for i in range(len(a)):
        a[i] = b[i] * b[0]

def f(x):
    y = x * 1.0
    g(y, y)
    return np.sum(y * x)
""", (V5,)),
    case("callee-overlapping-views", """
def g(a, b):
    for i in range(len(a)):
        a[i] = a[i] + b[i] * b[i]

def f(x):
    y = x * 1.0
    g(y[1:], y[:-1])
    return np.sum(y * x)
""", (V5,)),
]

REBINDING = [
    case("scalar-read-then-array-rebound-T1", """
def f(w):
    x = w * 1.0
    s = 0.0
    for t in range(1):
        v = x[0]
        s += v * v
        x = x + v
    return s
""", (np.array([1.5, 0.5]),)),
    case("scalar-read-then-array-rebound-T3", """
def f(w):
    x = w * 1.0
    s = 0.0
    for t in range(3):
        v = x[0]
        s += v * v
        x = x + v
    return s
""", (np.array([1.5, 0.5]),)),
    case("scalar-rebound-to-array", """
def f(x):
    y = x[0] * 2.0
    y = x * y
    return np.sum(y)
""", (V5,)),
    case("array-rebound-to-scalar", """
def f(x):
    x = np.sum(x)
    x = x * x
    return x
""", (V5,)),
    case("loop-variable-reassigned", """
def f(x):
    s = 0.0
    for i in range(len(x) - 1):
        i = i + 1
        s += x[i] ** 2
    return s
""", (V5,)),
]

INDEXING = [
    case("int-array-read-repeated", """
def f(x, idx):
    return np.sum(x[idx] ** 2)
""", (V5, np.array([0, 2, 2, 4]))),
    case("bool-mask-read", """
def f(x):
    return np.sum(x[x > 0] ** 2)
""", (POS5,)),
    case("rows-read", """
def f(A, rows):
    return np.sum(A[rows] ** 2)
""", (A34, np.array([0, 2, 2]))),
    case("int-array-write", """
def f(x, idx):
    y = np.zeros(5)
    y[idx] = x[:3] * 2.0
    return np.sum(y * y * x)
""", (V5, np.array([0, 2, 4]))),
    case("bool-mask-write", """
def f(x):
    y = x * 1.0
    y[y > 0] = y[y > 0] ** 2
    return np.sum(y * x)
""", (POS5,)),
    case("int-array-augmented-write-repeated", """
def f(x, idx):
    y = x * 1.0
    y[idx] += x[:3] * x[1:4]
    return np.sum(y * y)
""", (V5, np.array([0, 2, 2]))),
]

LOGIC = [
    case("or-returns-operand", """
def f(x):
    a = x[0] or x[1]
    return a * a
""", (V5,)),
    case("and-returns-operand", """
def f(x):
    a = x[0] and x[1]
    return a * a
""", (V5,)),
]

CRASHES = [
    case("noncontiguous-view-write", """
def f(x):
    y = x * 1.0
    e = y[::2]
    e[:] = e * e
    return np.sum(y * x)
""", (V5,)),
    case("callee-writes-column", """
def g(B):
    for i in range(B.shape[0]):
        B[i, 1] = B[i, 1] * B[i, 0]

def f(A):
    C = A * 1.0
    g(C)
    return np.sum(C * C)
""", (A33,)),
    case("callee-writes-column-view", """
def g(b):
    for i in range(b.shape[0]):
        b[i] = b[i] * 2.0 + b[0]

def f(A):
    C = A * 1.0
    g(C[:, 1])
    return np.sum(C * C)
""", (A33,)),
    case("callee-writes-column-slice", """
def g(B):
    B[:, 1] = B[:, 1] * B[:, 0]

def f(A):
    C = A * 1.0
    g(C)
    return np.sum(C * C)
""", (A33,)),
    case("pow-zero-at-zero", """
def f(x):
    return x ** 0 + x
""", (0.0,)),
    case("pow-zero-at-zero-array", """
def f(x):
    return np.sum(x ** 0 * x)
""", (np.array([0.0, 1.5, -2.0]),)),
    case("det-singular", """
def f(A):
    return np.linalg.det(A)
""", (np.array([[1.0, 2.0], [2.0, 4.0]]),)),
    case("zero-d-times-one-d-asarray", """
def f(x):
    a = np.sum(x * x)
    b = np.asarray(a) * x
    return np.sum(b)
""", (V5,)),
    case("zero-d-times-one-d-reshape", """
def f(x):
    a = x[0:1].reshape(())
    b = a * x
    return np.sum(b * x)
""", (V5,)),
    case("max-axis-minus-2", """
def f(A):
    return np.sum(np.max(A, axis=-2))
""", (A34,)),
    case("ellipsis-write", """
def f(x):
    y = x * 1.0
    y[...] = y * x
    return np.sum(y)
""", (V5,)),
    case("ellipsis-read", """
def f(x):
    y = x[...]
    return np.sum(y * x)
""", (V5,)),
    case("int-result", """
def f(x):
    n = 0
    for i in range(len(x)):
        if x[i] > 0.0:
            n += 1
    return n
""", (POS5,)),
]

REFUSALS = [
    case("np-full", """
def f(x):
    y = np.full(5, 2.0)
    return np.sum(y * x)
""", (V5,)),
    case("math-fmod", """
def f(x):
    return math.fmod(x, 0.7) * x
""", (1.3,)),
    case("np-fmod", """
def f(x):
    return np.sum(np.fmod(x, 0.7) * x)
""", (np.array([1.3, 2.2, 0.4]),)),
    case("fresh-local-inplace", """
def f(A, r):
    B = A * 1.0
    B += r
    return np.sum(B * B)
""", (V5, 0.3), (0, 1)),
    case("fresh-local-inplace-array", """
def f(A, r):
    B = A * 1.0
    B *= r
    return np.sum(B * A)
""", (V5, V5 + 1.0), (0, 1)),
    case("fresh-local-inplace-in-loop", """
def f(A, r):
    B = A * 1.0
    for t in range(3):
        B += r * B
    return np.sum(B * B)
""", (V5, 0.3), (0, 1)),
    case("fresh-local-inplace-2d", """
def f(A, r):
    B = A * 1.0
    B -= r
    B *= A
    return np.sum(B * B)
""", (A23, 0.3), (0, 1)),
]

#: Found by the differential tester (tests/differential.py) on main, minimised by hand.
FOUND = [
    case("batch-param-rebound-to-copy-then-written", """
def f(x):
    x = x * 1.0
    x[0] = x[1] * 2.0
    return np.sum(x * x)
""", (X6,)),
    case("batch-param-rebound-to-other-shape", """
def f(A):
    A = A.copy()
    A = A[0] * 2.0
    return np.sum(A * A)
""", (A33,)),
    case("batch-alias-inplace", """
def f(x):
    y = x * 1.0
    B = y
    B += y * B
    return np.sum(y * y)
""", (X6,)),
    case("batch-full-view-inplace", """
def f(x):
    y = x * 1.0
    V = y[:]
    V += np.sin(y)
    return np.sum(y * y)
""", (X6,)),
    case("scalar-rebound-to-array-then-slice-store", """
def f(x, y):
    c = x[0] * 2.0
    c = y * c
    c[1:3] = y[3:5] * x[1:3]
    return np.sum(c * c)
""", (X6, X6[::-1] * 0.3), (0, 1)),
    case("strided-slice-inplace", """
def f(x):
    y = x * 1.0
    y[::2] *= y[0:3]
    return np.sum(y * y)
""", (X6 * 0.3,)),
    case("or-with-constant-operand", """
def f(x):
    c = x[4] or 0.5
    return c * c
""", (V5,)),
    case("and-with-constant-first", """
def f(x):
    c = 1.5 and x[-1]
    return c * c
""", (V5,)),
    case("alias-survives-rebinding-of-local", """
def f(x):
    y = x * 1.0
    B = y
    y = y + 1.0
    B[1] = B[0] * B[2]
    return np.sum(y * y) + np.sum(B * B)
""", (X6 * 0.3,)),
    case("alias-survives-rebinding-of-param", """
def f(x):
    B = x
    x = x + 1.0
    B[1] = B[0] * B[2]
    return np.sum(x * x) + np.sum(B * B)
""", (X6 * 0.3,)),
    case("batch-view-inplace-by-own-element", """
def f(x):
    y = x.copy()
    V = y[1:5]
    V *= V[-1]
    return np.sum(y * y)
""", (X6 * 0.3,)),
    case("batch-alias-inplace-by-element-2d", """
def f(A):
    L = np.sin(A) + A
    B = L
    B -= L[0, 0]
    return np.sum(L * L)
""", (A33,)),
    case("batch-inplace-on-base-read-through-view", """
def f(x):
    y = x * 1.0
    V = y[1:]
    y -= 0.5
    return np.sum(V * V)
""", (X6 * 0.3,)),
    case("batch-zeros-local-augmented-then-rebound", """
def f(x, s):
    L1 = np.zeros((6,))
    L1[1] -= math.exp(-L1[-1] * L1[-1]) * s
    L1 = L1 + 1.0
    return np.sum(L1 * L1)
""", (X6 * 0.3, 1.078), (0, 1)),
    case("ascontiguousarray-read-only", """
def f(x):
    V = np.ascontiguousarray(x)
    return np.sum(V * V)
""", (X6 * 0.3,)),
    case("ascontiguousarray-of-transpose-read-only", """
def f(A):
    V = np.ascontiguousarray(A.T)
    return np.sum(V * V[:, 0:1])
""", (A23,)),
    case("kalman-minimal-scalar-read-then-matrix-rebound", """
def f(A):
    P = A * 1.0
    s = 0.0
    for t in range(2):
        S = P[0, 0] + 1.0
        s += math.log(S)
        P = P * 0.5 + A
    return s
""", (np.array([[1.5, 0.3], [0.2, 1.1]]),)),
    case("overlapping-strided-store-between-rebindings", """
def f(x):
    xc = x * 1.0
    xc = xc * xc
    c1 = np.sum(xc * xc[-1])
    xc[::2] = xc[1:4] * xc[1:4]
    xc = xc * c1
    return np.sum(xc * xc)
""", (np.array([0.64858921, 0.91920974, -0.53696241, -1.35097994, -0.11609253, 0.54231245]),)),
    case("strided-store-from-strided-view-then-rebound", """
def f(x):
    y = x * x
    c = np.sum(y * y[-1])
    y[::2] = y[1::2] * y[1::2]
    y = y * c
    return np.sum(y * y)
""", (np.array([0.65, 0.92, -0.54, -1.35, -0.12, 0.54]),)),
    case("store-reading-reversed-view-of-itself", """
def f(x):
    xc = x.copy()
    xc[:] = np.cos(xc[::-1]) * xc
    return np.sum(xc * xc)
""", (np.array([-1.383, 0.922, 0.977, 0.817, -0.467, -1.229]),)),
    case("base-written-read-through-reshape-view", """
def f(x):
    y = x * 1.0
    V = y.reshape(3, 2)
    y[0] = y[1] * y[2]
    return np.sum(V * V)
""", (X6 * 0.3,)),
]

ALL = VIEWS + CALLEES + OVERLAPS + REBINDING + INDEXING + LOGIC + CRASHES + REFUSALS + FOUND


@pytest.mark.parametrize("src, args, argnums", ALL)
def test_reproducer_is_right_or_refused_with_its_line(src, args, argnums):
    assert_sound(check_program(src, args, argnums))


# --- stores of a value that shares memory with the array written ------------------------------
# NumPy (and numba) read such a right-hand side whole before storing; reverse mode took the
# adjoint of the value (a view of the shadow being zeroed) after zeroing it: the gradient of
# an element stored again (idx=[1, 2, 2, 4]) was lost. Each such store now stores a copy.

IDX4 = np.array([1, 2, 2, 4])
MASK6 = np.array([False, True, True, False, True, False])

OVERLAPPING_STORES = [
    case("fancy-store-of-own-slice-through-alias", """
def f(x, idx):
    B1 = x
    B1[idx] = B1[0:4]
    return np.sum(x * x)
""", (X6 * 0.3, IDX4)),
    case("fancy-store-of-own-slice-twice", """
def f(x, idx):
    x[idx] = x[0:4] * 1.0
    x[idx] = x[1:5]
    return np.sum(x * np.sin(x))
""", (X6 * 0.3, IDX4)),
    case("fancy-row-store-of-own-rows", """
def f(A, idx):
    B = A * 1.0
    B[idx[0:2]] = B[0:2]
    return np.sum(B * B * A)
""", (A33, np.array([2, 1]))),
    case("fancy-store-of-own-slice-in-loop", """
def f(x, idx):
    y = x * 1.0
    for k in range(2):
        y[idx] = y[0:4]
        y[0] = y[0] * y[5]
    return np.sum(y * y)
""", (X6 * 0.3, IDX4)),
    case("full-slice-store-of-own-slice-then-loop-rebinding", """
def f(x, s):
    x = x * 1.0
    x[:] = x[0:6]
    for t in range(1):
        v2 = x[0]
        x = x + v2
    return np.sum(x * x)
""", (X6 * 0.3, 0.97), (0, 1)),
    case("shift-store-in-loop", """
def f(x):
    y = x * 1.0
    for k in range(3):
        y[1:] = y[:-1]
        y[0] = y[0] * 0.5 + y[5]
    return np.sum(y * y)
""", (X6 * 0.3,)),
]


@pytest.mark.parametrize("src, args, argnums", OVERLAPPING_STORES)
def test_store_of_overlapping_value_is_right_in_every_mode(src, args, argnums):
    assert_sound(check_program(src, args, argnums), allow=(RIGHT,))


# --- a name bound to several arrays in turn, written in between --------------------------------
# ``x = x * 1.0`` names the copy ``x_2 = t``; the loop rebinds ``x_2`` to a new array. The
# analysis kept one alias class per name, the last binding's: the store into the first array
# counted as a write of the loop's, so the views read by ``t2 * t3`` were not saved before it
# overwrote them, and their adjoints read the values stored.

REBOUND_AFTER_STORE = [
    case("in-place-slice-product-then-loop-rebinding", """
def f(x, s):
    x = x * 1.0
    x[1:] *= x[1:6]
    for t in range(1):
        v2 = x[0]
        x = x + v2
    return np.sum(x * x)
""", (np.array([-0.19, 0.98, 1.297, 1.36, 0.085, -0.836]), 0.44), (0, 1)),
    case("fancy-store-of-product-of-views-then-loop-rebinding", """
def f(x, idx):
    x = x * 1.0
    V1 = x.reshape(2, 3)
    x[idx] = x[1:5] * x[0:4]
    L6 = x[idx] * 1.0
    for t in range(2):
        v8 = x[0]
        x = x + v8
    return np.sum(x * x)
""", (np.array([0.193, -1.105, -1.066, -1.479, -0.845, 0.997]), np.array([1, 2, 2, 5]))),
    case("param-rebound-slice-product-store-then-rebound-in-loop", """
def f(x, c):
    x = x * 2.0
    x[0:3] = x[1:4] * x[2:5]
    for t in range(2):
        x = x * c
    return np.sum(x * x)
""", (X6 * 0.3, 0.8), (0, 1)),
]


@pytest.mark.parametrize("src, args, argnums", REBOUND_AFTER_STORE)
def test_store_between_rebindings_of_a_name_is_right_in_every_mode(src, args, argnums):
    assert_sound(check_program(src, args, argnums), allow=(RIGHT,))


# --- forward mode: an array made from an inactive array and a dual scalar ---------------------
# ``y = x + s`` with only ``s`` dual has the tangent of ``s`` (a float) as its one term; the
# copy that makes the tangent of a new array a new array was applied to it (numba: "Unknown
# attribute 'copy' of type float64"). Such a term is broadcast to the array's shape instead.

SCALAR_TANGENT_OF_ARRAY = [
    case("array-plus-dual-scalar", """
def f(x, s):
    y = x + s
    return np.sum(y * y)
""", (X6 * 0.3, 0.7), (1,)),
    case("dual-scalar-minus-array", """
def f(x, s):
    y = s - x
    return np.sum(y * np.sin(y))
""", (X6 * 0.3, 0.7), (1,)),
    case("dual-scalar-plus-array-2d", """
def f(A, s):
    B = 2.0 + s + A
    return np.sum(B * A)
""", (A23, 0.7), (1,)),
]


@pytest.mark.parametrize("src, args, argnums", SCALAR_TANGENT_OF_ARRAY)
def test_array_from_inactive_array_and_dual_scalar_is_right_in_every_mode(src, args, argnums):
    assert_sound(check_program(src, args, argnums), allow=(RIGHT,))

# --- arrays of different float widths -----------------------------------------------------------
# numba computes float32 with float64 in float64; an adjoint of float64 then meets a float32
# operand. The adjoint of ``np.outer`` multiplied them with ``@``, which numba types for one
# dtype only: a raw TypingError from generated code.

F32 = np.float32
MIXED_PRECISION = [
    case("outer-of-float32-and-float64", """
def f(a, b):
    return np.sum(np.outer(a, b) ** 2)
""", (V5[:3].astype(F32), X6[:4] * 0.3), (0, 1)),
    case("outer-of-float64-and-float32", """
def f(a, b):
    return np.sum(np.sin(np.outer(a, b)))
""", (X6[:4] * 0.3, V5[:3].astype(F32)), (0, 1)),
    case("loop-of-float32-with-float64", """
def f(a, b):
    c = a.copy()
    s = 0.0
    for i in range(a.shape[0]):
        c[i] = c[i] * b[i] + math.exp(a[i])
        s += c[i] * b[i]
    return s + np.sum(c * c)
""", (V5.astype(F32), POS5), (0, 1)),
    case("where-and-cumsum-of-mixed-widths", """
def f(a, b):
    return np.sum(np.where(a > 0.0, a, b) ** 2) + np.sum(np.cumsum(a) * b)
""", (V5.astype(F32), POS5), (0, 1)),
]


@pytest.mark.parametrize("src, args, argnums", MIXED_PRECISION)
def test_mixed_float_widths_are_right_in_every_mode(src, args, argnums):
    assert_sound(check_program(src, args, argnums, rtol=1e-4, atol=1e-4), allow=(RIGHT,))


def test_generated_code_numba_cannot_compile_is_a_located_autodiff_error():
    """The net under every compiled call: numba failing on generated code (here a stand-in that
    cannot type) is an AutodiffError naming the user's function, never numba's TypingError."""
    import numba

    def f(x):
        return x * x

    gradient = nad.grad(f)

    @numba.njit
    def untypable(x):
        return x.no_such_attribute

    with pytest.raises(nad.AutodiffError, match="numba cannot compile the generated code of "
                                                "f_grad") as info:
        gradient.run(untypable, [1.0])
    assert info.value.construct == "numba typing" and info.value.function == "f"


def test_masked_store_of_overlapping_value_is_refused_in_every_mode():
    """NumPy does not read the value whole before a boolean-mask store (its result depends on
    how it buffers), so the compiled primal and the derivatives would differ from it: refused
    with the line, in each mode (batch runs the compiled primal)."""
    src = """
def f(x, m):
    x[m] = x[0:3]
    return np.sum(x * x)
"""
    result = check_program(src, (X6 * 0.3, MASK6), 0)
    assert_sound(result, allow=(REFUSED,))
    assert all("line 4" in o.detail for o in result.outcomes.values()), result.report()
    fresh = check_program(src.replace("x[0:3]", "x[0:3] * 2.0"), (X6 * 0.3, MASK6), 0)
    assert_sound(fresh, allow=(RIGHT,))


# --- a store through a slice of another step than the slice of the same array it stores ------
# ``y[::2] = y[0:3]``: NumPy copies element by element (here y[4] gets the y[2] it has just
# overwritten), numba and the derivatives read the value whole first: every mode differed from
# the function (differential tester, seeds 30000090157 and 30000090196). Refused with the line;
# steps of the same size (``y[1:] = y[:-1]``, ``y[:] = y[::-1]``), where NumPy reads the value
# whole, stay right, and so does a copy.

@pytest.mark.parametrize("store, line_ok", [
    ("y[::2] = y[0:3]", False),
    ("y[1:4] = y[0:6:2]", False),
    ("y[::2] = y[0:3].copy()", True),
    ("y[1:] = y[:-1]", True),
    ("y[:] = y[::-1]", True),
    ("y[::-2] = y[1::2]", True),
])
def test_store_of_overlapping_slice_of_another_step(store, line_ok):
    src = f"""
def f(x):
    y = x * 1.0
    {store}
    return np.sum(y * y * np.arange(6.0))
"""
    result = check_program(src, (X6 * 0.3,), 0)
    if line_ok:
        assert_sound(result, allow=(RIGHT,))
    else:
        assert_sound(result, allow=(REFUSED,))
        assert all("line 5" in o.detail and "step" in o.detail
                   for o in result.outcomes.values()), result.report()


# --- vjp of an array result -------------------------------------------------------------------

@pytest.mark.parametrize("src, args", [
    pytest.param("""
def f(A):
    return A.T
""", (A23,), id="return-A-T"),
    pytest.param("""
def f(A):
    return np.transpose(A) * 2.0
""", (A23,), id="return-transpose-times-2"),
    pytest.param("""
def f(x):
    return x.reshape(2, 3).T
""", (X6,), id="return-reshape-T"),
])
def test_vjp_of_returned_transpose_matches_fd_vjp(src, args):
    out = load_program(src).f(*copy_args(args))
    cot = np.random.default_rng(3).standard_normal(out.shape)
    outcome = check_vjp(src, args, cot)
    assert outcome.status in (RIGHT, REFUSED), str(outcome)


# --- stale module state -----------------------------------------------------------------------

GLOBAL_ARRAY = """
W = np.array([1.0, 2.0, 3.0])

def f(x):
    return np.sum(W * x * x)
"""


def _expect_grad(g, f, x):
    expected = central_diff(f, (x,), 0)
    try:
        got = g(x.copy())
    except nad.AutodiffError as err:
        outcome = classify_refusal(err, f.__code__.co_filename)
        assert outcome.status == REFUSED, outcome.detail
        return
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("fresh", [False, True], ids=["same-grad-object", "fresh-grad"])
@pytest.mark.parametrize("change", ["in-place", "rebound"])
def test_global_array_changed_between_calls(fresh, change):
    mod = load_program(GLOBAL_ARRAY)
    x = np.array([0.5, -1.0, 2.0])
    g = nad.grad(mod.f)
    _expect_grad(g, mod.f, x)
    if change == "in-place":
        mod.W[:] = [4.0, -5.0, 6.0]
    else:
        mod.W = np.array([4.0, -5.0, 6.0])
    _expect_grad(nad.grad(mod.f) if fresh else g, mod.f, x)


HELPER = """
def h(t):
    return t * t

def f(x):
    return np.sum(h(x) * x)
"""


def _redefine(mod, text):
    """``text`` executed in ``mod``'s namespace from a file of its own, like a later cell."""
    path = mod.__file__[:-3] + "_cell2.py"
    with open(path, "w") as fh:
        fh.write(text)
    exec(compile(text, path, "exec"), mod.__dict__)       # noqa: S102 - a notebook cell


@pytest.mark.parametrize("fresh", [False, True], ids=["same-grad-object", "fresh-grad"])
def test_helper_redefined_between_calls(fresh):
    mod = load_program(HELPER)
    x = np.array([0.5, -1.0, 2.0])
    g = nad.grad(mod.f)
    _expect_grad(g, mod.f, x)
    _redefine(mod, "import numpy as np\n\ndef h(t):\n    return np.sin(t) * t * 3.0\n")
    _expect_grad(nad.grad(mod.f) if fresh else g, mod.f, x)


@pytest.mark.parametrize("fresh", [False, True], ids=["same-jvp", "fresh-jvp"])
def test_helper_redefined_between_calls_forward(fresh):
    mod = load_program(HELPER)
    x = np.array([0.5, -1.0, 2.0])
    v = np.array([1.0, 0.25, -0.5])
    nad.jvp(mod.f, (x.copy(),), (v,))
    _redefine(mod, "import numpy as np\n\ndef h(t):\n    return np.sin(t) * t * 3.0\n")
    expected = float(np.dot(central_diff(mod.f, (x,), 0), v))
    _, t = nad.jvp(mod.f, (x.copy(),), (v,))
    np.testing.assert_allclose(t, expected, rtol=1e-6, atol=1e-8)


# --- a Kalman filter ----------------------------------------------------------------------------

KALMAN_MATRIX = """
def f(log_q, log_r, ys, dt):
    q = math.exp(log_q)
    r = math.exp(log_r)
    F = np.eye(2)
    F[0, 1] = dt
    Q = np.zeros((2, 2))
    Q[0, 0] = q * dt ** 3 / 3.0
    Q[0, 1] = q * dt ** 2 / 2.0
    Q[1, 0] = Q[0, 1]
    Q[1, 1] = q * dt
    m = np.zeros(2)
    P = np.eye(2) * 10.0
    ll = 0.0
    for t in range(len(ys)):
        m = F @ m
        P = F @ P @ F.T + Q
        S = P[0, 0] + r
        K = P[:, 0] / S
        v = ys[t] - m[0]
        m = m + K * v
        P = P - np.outer(K, P[0, :])
        ll += -0.5 * (math.log(2.0 * math.pi * S) + v * v / S)
    return ll
"""

KALMAN_LOOPS = """
def predict(m, P, dt, Q):
    m[0] = m[0] + dt * m[1]
    p00 = P[0, 0] + dt * (P[0, 1] + P[1, 0]) + dt * dt * P[1, 1] + Q[0, 0]
    p01 = P[0, 1] + dt * P[1, 1] + Q[0, 1]
    p10 = P[1, 0] + dt * P[1, 1] + Q[1, 0]
    p11 = P[1, 1] + Q[1, 1]
    P[0, 0] = p00
    P[0, 1] = p01
    P[1, 0] = p10
    P[1, 1] = p11

def f(log_q, log_r, ys, dt):
    q = math.exp(log_q)
    r = math.exp(log_r)
    Q = np.zeros((2, 2))
    Q[0, 0] = q * dt ** 3 / 3.0
    Q[0, 1] = q * dt ** 2 / 2.0
    Q[1, 0] = Q[0, 1]
    Q[1, 1] = q * dt
    m = np.zeros(2)
    P = np.zeros((2, 2))
    P[0, 0] = 10.0
    P[1, 1] = 10.0
    K = np.zeros(2)
    ll = 0.0
    for t in range(len(ys)):
        predict(m, P, dt, Q)
        S = P[0, 0] + r
        for i in range(2):
            K[i] = P[i, 0] / S
        v = ys[t] - m[0]
        for i in range(2):
            m[i] += K[i] * v
        row = P[0, :].copy()
        for i in range(2):
            for j in range(2):
                P[i, j] -= K[i] * row[j]
        ll -= 0.5 * (math.log(2.0 * math.pi * S) + v * v / S)
    return ll
"""


def _observations(n=25, seed=7):
    rng = np.random.default_rng(seed)
    x, v, ys = 0.0, 1.0, []
    for _ in range(n):
        v += 0.3 * rng.standard_normal()
        x += 0.1 * v
        ys.append(x + 0.5 * rng.standard_normal())
    return np.array(ys)


@pytest.mark.parametrize("src", [pytest.param(KALMAN_MATRIX, id="matrix-ops"),
                                 pytest.param(KALMAN_LOOPS, id="element-loops")])
def test_kalman_filter_log_likelihood_gradient_in_noise_parameters(src):
    args = (np.log(0.09), np.log(0.25), _observations(), 0.1)
    result = check_program(src, args, (0, 1), modes=("reverse", "forward"))
    assert_sound(result, allow=(RIGHT,))


def test_kalman_filter_gradient_in_observations():
    args = (np.log(0.09), np.log(0.25), _observations(12), 0.1)
    assert_sound(check_program(KALMAN_MATRIX, args, (0, 1, 2)), allow=(RIGHT, REFUSED))


@pytest.mark.parametrize("src, args, argnums", [
    case("plain-loop", """
def f(x, s):
    acc = 0.0
    for i in range(len(x)):
        acc += math.sin(x[i] * s) * x[i]
    return acc
""", (V5, 0.7), (0, 1)),
    case("plain-local-writes", """
def f(A):
    B = np.zeros((2, 3))
    for i in range(2):
        for j in range(3):
            B[i, j] = A[i, j] * A[1 - i, j]
    return np.sum(B * A)
""", (A23,)),
    case("plain-callee", """
def g(a, c):
    return a * c + np.sin(a)

def f(x):
    y = g(x, x[0])
    return np.sum(y * y)
""", (V5,)),
])
def test_the_checker_finds_plain_programs_right_in_every_mode(src, args, argnums):
    """No false alarm: programs main has long differentiated are RIGHT in all three modes."""
    result = check_program(src, args, argnums)
    assert_sound(result, allow=(RIGHT,))


def test_refusal_classification_itself():
    """The classifier: the program's own line is REFUSED, NumPy's line is MISPLACED."""
    mod = load_program("def f(x):\n    return x\n")
    path = mod.__file__
    own = nad.AutodiffError("x", lineno=4, function="f", filename=path)
    assert classify_refusal(own, path).status == REFUSED
    foreign = nad.AutodiffError("x", lineno=325, function="full")
    assert classify_refusal(foreign, path).status != REFUSED
    assert classify_refusal(nad.AutodiffError("no line"), path).status != REFUSED
    assert os.path.exists(path)
