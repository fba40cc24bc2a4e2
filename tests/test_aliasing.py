"""Aliases, views and side effects (issue 18, item 2): never a silently wrong derivative.

Each construct either gives the right derivative in reverse (``grad``) and forward (``jvp``)
mode, against central differences, or is refused with an ``AutodiffError`` naming the user's
line. Whatever the mode, the caller's arrays end exactly as the function itself leaves them.
The functions are compiled once per process (derivatives are shared between the tests)."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

import nbautodiff as nad
from fd import central_diff, copy_args, directional_diff


def line_of(fun, needle):
    lines, start = inspect.getsourcelines(fun)
    hits = [start + k for k, text in enumerate(lines) if needle in text]
    assert hits, f"{needle!r} not in the source of {fun.__name__}"
    return hits[0]


# ---- views the transforms follow: basic slicing, aliases, tuples ---------------------------

def slice_view_written(x):
    y = x * 1.0
    w = y[2:5]
    w[0] = w[1] * w[2]
    return np.sum(y * x)


def whole_slice_of_parameter(x):
    B = x[:]
    B[1] = B[0] * B[2]
    return np.sum(x * x)


def alias_through_tuple(x):
    y = x * 1.0
    t = (y, 2.0)
    z = t[0]
    z[1] = z[0] * t[1]
    return np.sum(y * y)


def row_view_of_matrix(A):
    C = A * 1.0
    r = C[1]
    r[0] = r[1] * r[2]
    return np.sum(C * C)


# ---- overlapping operands -----------------------------------------------------------------

def overlap_shift_right(x):
    y = x * 1
    y[1:] = y[:-1]
    return np.sum(y * x)


def overlap_shift_left(x):
    y = x * 1.0
    y[:-1] = y[1:]
    return np.sum(y * y * x)


def overlap_through_view(x):
    y = x * 1.0
    w = y[1:]
    w[:] = y[:-1]
    return np.sum(y * y * x)


def _scaled_copy(a, b):
    for i in range(len(a)):
        a[i] = b[i] * b[0]


def same_array_twice(x):
    y = x * 1.0
    _scaled_copy(y, y)
    return np.sum(y * x)


def _square_into(a, out):
    for i in range(len(a)):
        out[i] = a[i] * a[i] + a[0]


def same_array_twice_second_written(x):
    y = x * 1.0
    _square_into(y, y)
    return np.sum(y * x)


def _accumulate(a, b):
    for i in range(len(a)):
        a[i] = a[i] + b[i] * b[i]


def overlapping_views_to_a_callee(x):
    y = x * 1.0
    _accumulate(y[1:], y[:-1])
    return np.sum(y * x)


def disjoint_rows_to_a_callee(x):
    Y = x.reshape(2, 3) * 1.0
    _accumulate(Y[0], Y[1])
    return np.sum(Y * Y)


# ---- views made by calls, written through -------------------------------------------------

def write_through_reshape_method(x):
    B = x.reshape(2, 3)
    B[1, 0] = B[0, 0] * B[1, 1]
    return np.sum(x * x)


def write_through_np_reshape(x):
    B = np.reshape(x, (3, 2))
    B[1] = B[0] * B[2]
    return np.sum(x * x)


def write_through_transpose(x):
    B = x.T
    B[1] = B[0] * B[2]
    return np.sum(x * x)


def write_through_np_transpose(x):
    B = np.transpose(x)
    B[1] = B[0] * B[2]
    return np.sum(x * x)


def write_through_ascontiguousarray(x):
    B = np.ascontiguousarray(x)
    B[1] = B[0] * B[2]
    return np.sum(x * x)


def read_through_ascontiguousarray(x):
    B = np.ascontiguousarray(x)
    return np.sum(B * B * x)


def write_through_atleast_2d(x):
    B = np.atleast_2d(x)
    B[0, 1] = B[0, 0] * B[0, 2]
    return np.sum(x * x)


def write_through_row_of_reshape(x):
    y = x * 1.0
    B = y.reshape(2, 3)
    r = B[1]
    r[0] = r[1] * 2.0
    return np.sum(y * x)


def write_through_transpose_of_reshape(x):
    y = x * 1.0
    B = y.reshape(3, 2)
    B[1] = B[0] * B[2]
    C = B.T
    C[0, 0] = C[1, 1] ** 2
    return np.sum(y * x)


def transpose_product_then_write(A, x):
    C = A * 1.0
    T = C.T
    z = T @ x
    C[0, 1] = C[1, 0] * 3.0
    return np.sum(z * z) + np.sum(T * A)


def reshape_read_then_written_then_read(x):
    y = x * 1.0
    B = y.reshape(2, 3)
    s = np.sum(B * B * B)
    y[0] = y[1] * y[2]
    return s + np.sum(B * y.reshape(2, 3))


def write_through_transpose_in_loop(A):
    C = A * 1.0
    T = C.T
    for i in range(3):
        T[i, 0] = T[i, 0] * C[0, i] + 1.0
    return np.sum(C * C)


def transposes_rebound_in_loop_written(A):
    C = A * 1.0
    s = 0.0
    for i in range(2):
        T = C.T
        T[0, 1] = T[1, 0] * 2.0
        s += np.sum(T * T)
    return s


def write_root_of_transpose_read_later(A):
    C = A * 1.0
    T = C.T
    C[0, 1] = C[1, 0] * 3.0
    return np.sum(T * A)


def write_root_in_loop_after_transpose_product(x, A):
    B = A * 1.0
    s = 0.0
    for t in range(3):
        y = B.T @ x
        s += np.sum(y * y)
        B[0, 0] = B[0, 0] * 0.5 + x[0]
    return s


def in_place_operator_on_reshaped(x):
    y = x * 1.0
    B = y.reshape(2, 3)
    y += 1.0
    return np.sum(B * B)


def reshape_written_before_the_view(x):
    y = x * 1.0
    y[0] = y[1] * y[2]
    B = y.reshape(2, 3)
    return np.sum(B * B)


# ---- callees that return their argument, or a view of it ----------------------------------

def _bump(a):
    a[0] = 2 * a[0] + a[1]
    return a


def _bump_pair(a):
    a[0] = 2 * a[0] + a[1]
    return a, 1.0


def _bump_tail(a):
    a[0] = 2 * a[0] + a[1]
    return a[1:]


def _identity(a):
    return a


def callee_returns_argument_written(x):
    y = x * 1.0
    z = _bump(y)
    z[1] *= y[0]
    return np.sum(y * y)


def callee_returns_argument_in_tuple_written(x):
    y = x * 1.0
    z, c = _bump_pair(y)
    z[1] = z[1] * y[0]
    return np.sum(y * y)


def callee_returns_view_written(x):
    y = x * 1.0
    z = _bump_tail(y)
    z[0] = z[0] * y[0]
    return np.sum(y * y)


def callee_returns_argument_root_written(x):
    y = x * 1.0
    z = _identity(y)
    y[0] = y[1] * 2.0
    return np.sum(z * x)


def callee_returns_argument_read_only(x):
    y = x * 1.0
    z = _bump(y)
    return np.sum(y * z)


def _doubled(a):
    return a * 2.0


def callee_returns_fresh_written(x):
    y = x * 1.0
    z = _doubled(y)
    z[0] = z[0] * y[1]
    return np.sum(y * z)


# ---- side effects on the caller's arrays --------------------------------------------------

def writes_its_argument(x, y):
    x[0] = x[0] * y[1]
    for i in range(1, len(x)):
        x[i] = x[i] * x[i - 1]
    return np.sum(x * y)


def writes_through_a_parameter_slice(x):
    w = x[1:]
    w[0] = w[0] * x[0]
    return np.sum(x * x)


RIGHT = "right"


def refused(needle):
    return ("refused", needle)


v6 = lambda r: (r.uniform(-1.0, 1.0, 6),)                          # noqa: E731
m33 = lambda r: (r.uniform(-1.0, 1.0, (3, 3)),)                    # noqa: E731

# (function, arguments, reverse expectation, forward expectation)
CASES = [
    (slice_view_written, v6, RIGHT, RIGHT),
    (whole_slice_of_parameter, v6, RIGHT, RIGHT),
    (alias_through_tuple, v6, RIGHT, RIGHT),
    (row_view_of_matrix, m33, RIGHT, RIGHT),
    (overlap_shift_right, v6, RIGHT, RIGHT),
    (overlap_shift_left, v6, RIGHT, RIGHT),
    (overlap_through_view, v6, RIGHT, RIGHT),
    (same_array_twice, v6, RIGHT, RIGHT),
    (same_array_twice_second_written, v6, RIGHT, RIGHT),
    (overlapping_views_to_a_callee, v6, refused("_accumulate(y[1:]"), RIGHT),
    (disjoint_rows_to_a_callee, v6, RIGHT, RIGHT),
    (write_through_reshape_method, v6, RIGHT, RIGHT),
    (write_through_np_reshape, v6, RIGHT, RIGHT),
    (write_through_transpose, v6, RIGHT, RIGHT),
    (write_through_np_transpose, v6, RIGHT, RIGHT),
    (write_through_ascontiguousarray, v6, RIGHT, RIGHT),
    (write_through_atleast_2d, v6, RIGHT, RIGHT),
    (read_through_ascontiguousarray, v6, RIGHT, RIGHT),
    (write_through_row_of_reshape, v6, RIGHT, RIGHT),
    (write_through_transpose_of_reshape, v6, RIGHT, RIGHT),
    (write_root_of_transpose_read_later, m33, RIGHT, RIGHT),
    (transpose_product_then_write, lambda r: (r.uniform(-1, 1, (3, 3)), r.uniform(-1, 1, 3)),
     RIGHT, RIGHT),
    (reshape_read_then_written_then_read, v6, RIGHT, RIGHT),
    (write_through_transpose_in_loop, m33, RIGHT, RIGHT),
    (write_root_in_loop_after_transpose_product,
     lambda r: (r.uniform(-1, 1, 3), r.uniform(-1, 1, (3, 3))), refused("B[0, 0] ="), RIGHT),
    (in_place_operator_on_reshaped, v6, refused("y += 1.0"), RIGHT),
    (transposes_rebound_in_loop_written, m33, refused("T[0, 1] ="), refused("T[0, 1] =")),
    (reshape_written_before_the_view, v6, RIGHT, RIGHT),
    (callee_returns_argument_written, v6, refused("z[1] *="), refused("z[1] *=")),
    (callee_returns_argument_in_tuple_written, v6, refused("z[1] ="), refused("z[1] =")),
    (callee_returns_view_written, v6, refused("z[0] ="), refused("z[0] =")),
    (callee_returns_argument_root_written, v6, refused("y[0] ="), refused("y[0] =")),
    (callee_returns_argument_read_only, v6, RIGHT, RIGHT),
    (callee_returns_fresh_written, v6, RIGHT, RIGHT),
    (writes_its_argument, lambda r: (r.uniform(-1, 1, 5), r.uniform(-1, 1, 5)), RIGHT, RIGHT),
    (writes_through_a_parameter_slice, v6, RIGHT, RIGHT),
]

_GRADS: dict = {}


def _primal_effects(fun, args):
    expected = copy_args(args)
    fun(*expected)
    return expected


def _assert_as_primal(fun, args, call, label):
    for k, (got, want) in enumerate(zip(call, _primal_effects(fun, args))):
        if isinstance(want, np.ndarray):
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=0,
                                       err_msg=f"{label}: argument {k} does not end as "
                                               f"{fun.__name__} leaves it")


def _assert_refused(fun, needle, run):
    with pytest.raises(nad.AutodiffError) as info:
        run()
    line = line_of(fun, needle)
    assert info.value.lineno == line, f"{info.value} (expected line {line})"
    assert f"line {line}" in str(info.value)


@pytest.mark.parametrize("fun, make, reverse, forward", CASES,
                         ids=[case[0].__name__ for case in CASES])
def test_reverse_and_forward_right_or_refused(fun, make, reverse, forward):
    rng = np.random.default_rng(18)
    args = make(rng)
    argnums = tuple(range(len(args)))
    if reverse == RIGHT:
        grad = _GRADS.setdefault(fun, nad.grad(fun, argnums=argnums))
        expected = central_diff(fun, args, argnums)
        call = copy_args(args)
        got = grad(*call)
        for k, (g, e) in enumerate(zip(got, expected)):
            np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-8,
                                       err_msg=f"grad of {fun.__name__}, argument {k}")
        _assert_as_primal(fun, args, call, "grad")
    else:
        _assert_refused(fun, reverse[1], lambda: nad.grad(fun, argnums=argnums)(*copy_args(args)))
    directions = [rng.standard_normal(np.shape(a)) for a in args]
    if forward == RIGHT:
        call = copy_args(args)
        _, tangent = nad.jvp(fun, call, tuple(directions))
        expected = directional_diff(fun, args, argnums, directions)
        np.testing.assert_allclose(tangent, expected, rtol=1e-6, atol=1e-8,
                                   err_msg=f"jvp of {fun.__name__}")
        _assert_as_primal(fun, args, call, "jvp")
    else:
        _assert_refused(fun, forward[1], lambda: nad.jvp(fun, copy_args(args), tuple(directions)))


# ---- every entry point leaves the caller's arrays as the function leaves them ------------------

@pytest.mark.parametrize("entry", ["grad", "value_and_grad", "vjp", "jvp", "jacfwd", "jacrev",
                                   "hessian", "jvp_of_grad", "reverse", "forward"])
def test_every_entry_point_has_the_side_effects_of_the_function(entry):
    rng = np.random.default_rng(7)
    args = (rng.uniform(-1, 1, 5), rng.uniform(-1, 1, 5))
    call = copy_args(args)
    ones = np.ones(5)
    if entry in ("grad", "value_and_grad", "jacfwd", "jacrev", "hessian"):
        getattr(nad, entry)(writes_its_argument)(*call)
    elif entry == "vjp":
        nad.vjp(writes_its_argument, *call)[1](1.0)
    elif entry == "jvp":
        nad.jvp(writes_its_argument, call, (ones, ones))
    elif entry == "jvp_of_grad":
        nad.jvp(nad.grad(writes_its_argument), call, (ones, None))
    elif entry == "reverse":
        nad.reverse(writes_its_argument, nad.Duplicated, nad.Const)(call[0], np.zeros(5),
                                                                     call[1], 1.0)
    else:
        nad.forward(writes_its_argument, nad.Dual, nad.Const)(call[0], ones, call[1])
    _assert_as_primal(writes_its_argument, args, call, entry)


def test_second_order_of_a_function_writing_its_argument():
    rng = np.random.default_rng(3)
    x, y, v = rng.uniform(-1, 1, 5), rng.uniform(-1, 1, 5), rng.uniform(-1, 1, 5)
    g = nad.grad(writes_its_argument)
    h = 1e-5
    fd = (g(x + h * v, y) - g(x - h * v, y)) / (2 * h)
    _, hv = nad.jvp(g, (x.copy(), y), (v, None))
    np.testing.assert_allclose(hv, fd, rtol=1e-5, atol=1e-7)


def test_overlapping_arguments_of_a_function_that_writes_one_are_refused():
    z = np.linspace(0.5, 1.5, 5)
    for run in (lambda: nad.grad(writes_its_argument)(z, z),
                lambda: nad.grad(writes_its_argument)(z, z[::-1]),
                lambda: nad.jvp(writes_its_argument, (z, z), (z, z)),
                lambda: nad.vjp(writes_its_argument, z, z)):
        with pytest.raises(nad.AutodiffError, match="share memory"):
            run()
    assert np.array_equal(z, np.linspace(0.5, 1.5, 5))
    # disjoint halves of one array are fine
    w = np.linspace(0.5, 1.5, 10)
    nad.grad(writes_its_argument)(w[:5], w[5:])


@pytest.mark.parametrize("fun", [write_through_reshape_method, write_root_of_transpose_read_later])
def test_second_order_through_followed_views(fun):
    """Forward over reverse sees the views too: a Hessian-vector product against central
    differences of the gradient."""
    rng = np.random.default_rng(5)
    shape = (3, 3) if fun is write_root_of_transpose_read_later else (6,)
    x, v = rng.uniform(-1, 1, shape), rng.uniform(-1, 1, shape)
    g = nad.grad(fun)
    h = 1e-5
    fd = (g(x + h * v) - g(x - h * v)) / (2 * h)
    _, hv = nad.jvp(g, (x.copy(),), (v,))
    np.testing.assert_allclose(hv, fd, rtol=1e-5, atol=1e-6)
