"""Plain NumPy spellings differentiated (issue 18, item 10), against central differences, in
reverse (grad) and forward (jvp) mode, second order where cheap: np.array of list displays,
the ufunc names of the operators, loops over arrays (enumerate, zip), np.newaxis, np.full,
and library calls with constant arguments; a library call on an active value, and lists,
are refused with the user's line. Several spellings share one function to save compiles."""
from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

import nbautodiff as nad
from fd import assert_grad_close, central_diff, directional_diff

RNG = np.random.default_rng(1810)


def both_modes(f, args, argnums=(0,), rtol=1e-6, atol=1e-8):
    """Reverse (grad) and forward (jvp along a random direction) against central differences;
    the caller's arrays left as the function itself leaves them."""
    expected = central_diff(f, args, argnums)
    primal_args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    f(*primal_args)
    call = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    got = nad.grad(f, argnums=argnums)(*call)
    for k, (a, e) in enumerate(zip(got, expected)):
        assert_grad_close(a, e, rtol=rtol, atol=atol, label=f"{f.__name__} reverse, arg {k}")
    for mine, theirs in zip(call, primal_args):
        assert np.array_equal(mine, theirs)
    directions = [RNG.standard_normal(np.shape(args[k])) if isinstance(args[k], np.ndarray)
                  else 0.7 for k in argnums]
    tangents = tuple(directions[argnums.index(i)] if i in argnums else
                     (np.zeros_like(a) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
                      else None) for i, a in enumerate(args))
    _, t = nad.jvp(f, args, tangents)
    assert_grad_close(t, directional_diff(f, args, argnums, directions), rtol=rtol, atol=atol,
                      label=f"{f.__name__} forward")


def line_of(fun, needle):
    lines, start = inspect.getsourcelines(fun)
    return start + next(k for k, text in enumerate(lines) if needle in text)


def refused(fun, args, needle, construct):
    """``grad`` and ``jvp`` of ``fun`` refuse it, naming ``construct`` and the line of ``needle``."""
    for attempt in (lambda: nad.grad(fun)(*args),
                    lambda: nad.jvp(fun, args, tuple(np.ones_like(a) if isinstance(a, np.ndarray)
                                                     else 1.0 for a in args))):
        with pytest.raises(nad.AutodiffError) as info:
            attempt()
        message = str(info.value)
        assert f"line {line_of(fun, needle)}" in message, message
        assert construct in message, message
        assert "_nad" not in message and "numpy" not in message.split(":")[0], message


# ---- np.array of list displays ----------------------------------------------------------------

def arrays_of_elements(x):
    v = np.array([x[0] * 2.0, x[1], math.sin(x[0] * x[1])])
    A = np.array([[x[0], 1.0], [x[1] * x[2], np.cos(x[3])]])
    idx = np.array([0, 2, 4])                    # ints: an int array, for indexing
    w = np.array((x[4], x[3]), dtype=np.float64)
    y = np.array(x)                              # a copy: writing it leaves x alone
    y[0] = 3.0
    s = 0.0
    for k in range(3):
        s += x[idx[k]] * v[k]
    rows = np.array([x[:2], x[2:4] * 2.0])       # rows of arrays: a 2-D array
    return np.sum(v * v) + np.sum(A @ A) + np.linalg.det(A) + s + np.sum(w * y[:2]) + np.sum(y * x) + np.sum(rows ** 3)


def test_np_array_of_lists_of_expressions():
    x = RNG.standard_normal(5)
    both_modes(arrays_of_elements, (x,))


# ---- ufunc names -----------------------------------------------------------------------------

def ufuncs(x, y):
    a = np.add(x, y) * np.subtract(x, 1.0) + np.multiply(x, x) - np.divide(x, y + 3.0)
    b = np.negative(x) + np.power(x, 2) + np.square(y) + np.reciprocal(x + 3.0)
    c = np.true_divide(1.0, y + 4.0) + np.positive(x) + np.mod(x + 5.0, 2.0)
    s = np.add(x[0], y[1]) * np.multiply(x[1], 2.0) + np.reciprocal(y[0] + 5.0)
    return np.sum(a * b + c) + s


def test_ufunc_names_of_the_operators():
    x, y = RNG.standard_normal(4), RNG.standard_normal(4)
    both_modes(ufuncs, (x, y), argnums=(0, 1))
    H = nad.hessian(ufuncs)(x, y)
    expected = np.array([central_diff(lambda a: nad.grad(ufuncs)(a, y)[i], (x,))
                         for i in range(4)])
    assert_grad_close(H, expected, rtol=1e-5, atol=1e-7, label="hessian")


# ---- loops over arrays ------------------------------------------------------------------------

def iterations(x, y, A):
    s = 0.0
    for v in x:
        s += v * v
    for i, row in enumerate(A):
        s += i * np.sum(row * row)
    for a, b in zip(x, y):
        s += a * b
    for i, (a, b) in enumerate(zip(x, y[1:]), 1):
        s += i * a * math.sin(b)
        if i > 2:
            break
    for p, q in A:                  # the rows of A, unpacked
        s += p * q * q
    z = x
    for v in z:                     # rebinding the iterated name leaves the loop's array alone
        s += v * np.sum(z)
        z = z * 2.0
    return s


def test_loops_over_arrays_enumerate_and_zip():
    args = (RNG.standard_normal(5), RNG.standard_normal(5), RNG.standard_normal((3, 2)))
    both_modes(iterations, args, argnums=(0, 1, 2))


# ---- new axes, np.full, library calls as constants --------------------------------------------

def new_axes(x, n):
    outer = x[:, np.newaxis] * x[None, :]
    col = x[:, None]
    full = np.full((2, 3), x[0] * 3.0) + np.full(3, 2.0)
    like = np.full_like(x, x[1]) + np.full_like(x, 2, dtype=np.float64)
    idx = np.full(2, 1)                       # an int array
    k = np.argmax(x)                          # an int: zero derivative
    grid = np.linspace(0.0, 1.0, 5)           # a constant array
    c = math.lgamma(n / 2) + math.erf(0.5) * np.log10(n)
    return (np.sum(outer * outer) + np.sum(col * 2.0) + np.sum(x[np.newaxis] ** 2)
            + np.sum(full * full) + np.sum(like * x) + x[idx[0]] * x[k] + np.sum(grid * x) * c)


def test_new_axes_full_and_calls_with_constant_arguments():
    both_modes(new_axes, (RNG.standard_normal(5), 5))


# ---- refusals -------------------------------------------------------------------------------

def lgamma_of_active(x):
    y = x * 2.0
    return math.lgamma(y)


def shuffled(x):
    y = x * 1.0
    np.random.shuffle(y)
    return np.sum(y)


def written_view(x, n):
    B = np.asarray(n)
    B[0] = 2.0
    return np.sum(n * x)


def local_list(x):
    L = [x[0], x[1]]
    return L[0] * L[1]


def test_library_calls_without_rules_and_lists_are_refused_with_the_line():
    x = RNG.standard_normal(3)
    refused(lgamma_of_active, (0.7,), "math.lgamma(y)", "math.lgamma")
    refused(shuffled, (x,), "np.random.shuffle", "np.random.shuffle")
    with pytest.raises(nad.AutodiffError) as info:
        nad.grad(written_view)(x, np.ones(3))
    assert f"line {line_of(written_view, 'B[0] = 2.0')}" in str(info.value)   # the write
    assert "'asarray'" in str(info.value)
    refused(local_list, (x,), "L = [", "list")
