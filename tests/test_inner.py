"""Inner functions and lambdas bound to a name, differentiated like any other callee.

Gradients are compared with central differences (tests/fd.py) of the Python functions
themselves, on random inputs, for every float argument: Python runs the closures with its own
(late-binding) semantics, so the comparison also checks that the lifted calls read the values
Python reads. Refused constructs raise ``nad.AutodiffError`` naming the construct and the line
(found with ``inspect``, never hard-coded; in a cell, the cell's own line).
"""
from __future__ import annotations

import inspect
import math
import re

import numpy as np
import pytest

import corpus_helpers as ch
import nbautodiff as nad
from fd import assert_grad_close, central_diff, copy_args, evaluate


def helper(t):
    return 100.0 * t                     # shadowed by an inner function of the same name


def cube(t):
    return t * t * t


# ---- functions with inner functions ---------------------------------------------------------

def lambda_reads_enclosing_arrays(x, w):
    term = lambda i: w[i] * x[i] * x[i]  # noqa: E731
    s = 0.0
    for i in range(len(x)):
        s += term(i)
    return s


def inner_def_takes_arrays(x, y, n):
    def sqdist(a, b, k):
        d = 0.0
        for j in range(k):
            d += (a[j] - b[j]) ** 2
        return d

    return sqdist(x, y, n) + math.sqrt(sqdist(x, np.ones_like(x), n) + 1.0) if n > 0 else 0.0


def three_levels(x, a):
    c = 1.5

    def level1(i):
        b = a * c

        def level2(t):
            d = b + t

            def level3(u):
                return math.exp(-d * u) + c * u

            return level3(t) * b

        return level2(x[i])

    s = 0.0
    for i in range(len(x)):
        s += level1(i)
    return s


def lambda_calls_def_calls_module(x, k):
    def inner(t):
        return cube(k * t) + math.sin(t)

    outer = lambda t: inner(t) * inner(0.5 * t)  # noqa: E731
    s = 0.0
    for i in range(len(x)):
        s += outer(x[i])
    return s


def inner_shadows_global_helper(x):
    def helper(t):
        return t * t

    return helper(x) + x


def parameter_named_like_enclosing(x, y):
    sq = lambda x: x * x  # noqa: E731
    return sq(y) * x + sq(x)


def def_inside_loop(x, y):
    s = 0.0
    for i in range(len(x)):
        xi = x[i]

        def pull(t):
            return (t - xi) ** 2

        s += pull(y[i]) + pull(0.0)
    return s


def inner_in_conditions(x, c):
    level = lambda t: t * t * c  # noqa: E731
    s = 0.0
    k = 0
    while level(x + k) < 5.0 and k < 10:
        if level(x + k) > 0.5:
            s += level(x + k)
        else:
            s -= level(x - k)
        k += 1
    return s


def assigned_after_definition(x, y):
    f = lambda t: t * late  # noqa: E731, F821
    late = y * y
    out = f(x)
    late = math.cos(y)
    return out + f(x)


def inner_with_early_exits(x, limit):
    def first_above(lo):
        for i in range(len(x)):
            if x[i] > lo:
                return x[i] * limit
            if x[i] < -10.0:
                break
        return 0.0

    return first_above(0.5) + first_above(-0.5) * limit


def lambda_on_a_scalar_argument(a, b):
    f = lambda t: math.atan2(t, b) + t * b  # noqa: E731
    return f(a) * f(2.0 * a)


def inner_called_with_enclosing_result(x):
    def norm2(v):
        s = 0.0
        for i in range(len(v)):
            s += v[i] * v[i]
        return s

    y = np.zeros(len(x))
    for i in range(len(x)):
        y[i] = math.sin(x[i])
    return norm2(y) / (1.0 + norm2(x))


def whole_array_lambda_and_def(x, w):
    sq = lambda v: np.sum(v * v)  # noqa: E731

    def lin(v):
        return np.dot(w, v) + sq(w * v)

    return sq(x) + lin(np.exp(x))


def named_like_enclosing(x):
    def named_like_enclosing(t):
        return t * t * t
    return named_like_enclosing(x) + x


def named_like_imported_helper(x):
    # two different callees whose __name__ is 'softplus': each keeps its own variant
    def softplus(t):
        return t * t
    return softplus(x) + ch.softplus(x)


def sq_norm(x):
    s = 0.0
    for i in range(len(x)):
        s += 3.0 * x[i] ** 4
    return s


def module_function_named_like_imported(x):
    # the same, between a function of this module and one of corpus_helpers
    return sq_norm(x) + ch.sq_norm(x)


def _vec(rng, n=5, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, n)


CASES = [
    # (function, make_args(rng), argnums: every float argument)
    (lambda_reads_enclosing_arrays, lambda r: (_vec(r), _vec(r)), (0, 1)),
    (inner_def_takes_arrays, lambda r: (_vec(r), _vec(r), 4), (0, 1)),
    (three_levels, lambda r: (_vec(r, 4, 0.1, 1.0), float(r.uniform(0.3, 1.0))), (0, 1)),
    (lambda_calls_def_calls_module, lambda r: (_vec(r), float(r.uniform(0.5, 1.5))), (0, 1)),
    (inner_shadows_global_helper, lambda r: (float(r.uniform(-2, 2)),), 0),
    (parameter_named_like_enclosing, lambda r: (float(r.uniform(-2, 2)), float(r.uniform(-2, 2))),
     (0, 1)),
    (def_inside_loop, lambda r: (_vec(r), _vec(r)), (0, 1)),
    (inner_in_conditions, lambda r: (float(r.uniform(0.3, 0.4)), float(r.uniform(0.6, 0.7))),
     (0, 1)),
    (assigned_after_definition, lambda r: (float(r.uniform(-2, 2)), float(r.uniform(-2, 2))),
     (0, 1)),
    (inner_with_early_exits, lambda r: (r.permutation(np.linspace(-0.9, 0.9, 7)) + 0.01,
                                        float(r.uniform(0.5, 2))), (0, 1)),
    (lambda_on_a_scalar_argument, lambda r: (float(r.uniform(0.2, 1)), float(r.uniform(0.5, 2))),
     (0, 1)),
    (inner_called_with_enclosing_result, lambda r: (_vec(r),), 0),
    (whole_array_lambda_and_def, lambda r: (_vec(r), _vec(r)), (0, 1)),
    (named_like_enclosing, lambda r: (float(r.uniform(-2, 2)),), 0),
    (named_like_imported_helper, lambda r: (float(r.uniform(-2, 2)),), 0),
    (module_function_named_like_imported, lambda r: (_vec(r),), 0),
]


def _tuple(value, argnums):
    return value if isinstance(argnums, tuple) else (value,)


@pytest.mark.parametrize("fun, make_args, argnums", CASES, ids=[c[0].__name__ for c in CASES])
def test_gradient_matches_central_differences(fun, make_args, argnums):
    vg = nad.value_and_grad(fun, argnums=argnums)
    for seed in (0, 1, 2):
        args = make_args(np.random.default_rng(seed))
        saved = copy_args(args)
        value, grads = vg(*args)
        assert value == pytest.approx(evaluate(fun, saved), rel=1e-12, abs=1e-12)
        fds = _tuple(central_diff(fun, saved, argnums), argnums)
        for k, (ad, fd) in enumerate(zip(_tuple(grads, argnums), fds)):
            assert_grad_close(ad, fd, rtol=1e-6, atol=1e-8,
                              label=f"{fun.__name__} seed {seed} d/d(arg {_tuple(argnums, argnums)[k]})")


def test_reverse_activities_flow_through_inner_functions():
    rng = np.random.default_rng(3)
    x, w = rng.uniform(-1, 1, 6), rng.uniform(-1, 1, 6)
    df = nad.reverse(lambda_reads_enclosing_arrays, nad.Duplicated, nad.Duplicated, ret="Active")
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    value = df(x, dx, w, dw, 2.0)
    assert value == pytest.approx(lambda_reads_enclosing_arrays(x, w), rel=1e-12)
    fx, fw = central_diff(lambda_reads_enclosing_arrays, (x, w), (0, 1))
    assert_grad_close(dx, 2.0 * fx, rtol=1e-6, label="shadow of x")
    assert_grad_close(dw, 2.0 * fw, rtol=1e-6, label="shadow of w")


def test_inner_functions_get_reverse_variants_of_their_own():
    g = nad.grad(lambda_calls_def_calls_module)
    g(np.linspace(-1, 1, 4), 0.7)
    # the lambda is called through its own reverse variant, with k passed as its last argument
    assert re.search(r"outer__rev_\w+\(_nad_t\d+, k, ", g.source), g.source


# ---- refused, with the construct and the line -------------------------------------------------

def line_of(fun, needle, nth=0):
    lines, start = inspect.getsourcelines(fun)
    hits = [start + k for k, text in enumerate(lines) if needle in text]
    assert hits, f"{needle!r} not in the source of {fun.__name__}"
    return hits[nth]


def refuse(fun, args):
    with pytest.raises(nad.AutodiffError) as info:
        nad.grad(fun)(*args)
    return info.value


def assert_located(err, construct, line):
    message = str(err)
    # the construct must be named by the message itself, not by the 'in function' prefix
    assert re.search(construct, re.sub(r"^in function '[^']*', ", "", message), re.IGNORECASE), \
        f"construct /{construct}/ not named in: {message}"
    assert err.lineno == line, f"lineno {err.lineno}, expected {line}: {message}"
    assert f"line {line}" in message, message


def apply(f, t):
    return f(t)


def identity(f):
    return f


def returns_inner(x):
    def g(t):
        return t * x
    return g


def stores_inner(x):
    g = lambda t: t * t  # noqa: E731
    h = g
    return h(x)


def passes_inner(x):
    def g(t):
        return t * t
    return apply(g, x)


def passed_on_inside_a_lambda(x):
    def g(t):
        return t * t
    h = lambda t: apply(g, t)  # noqa: E731
    return h(x)


def immediately_invoked_lambda(x):
    return (lambda t: t * t)(x) + x


def lambda_as_argument(x):
    return apply(lambda t: t * t, x)


def lambda_to_two_names(x):
    f = g = lambda t: t * t  # noqa: E731
    return f(x) + g(x)


def _make_nonlocal_in_inner():
    def uses_nonlocal_in_inner(x):
        total = 0.0

        def add(t):
            nonlocal total
            total = total + t
            return total

        return add(x) * x
    return uses_nonlocal_in_inner


nonlocal_in_inner = _make_nonlocal_in_inner()


def self_recursive_inner(x):
    def power(t, n):
        if n == 0:
            return 1.0
        return t * power(t, n - 1)
    return power(x, 3)


def mutually_recursive_inner(x):
    def even(t, n):
        return 1.0 if n == 0 else t * odd(t, n - 1)

    def odd(t, n):
        return t if n == 0 else t * even(t, n - 1)
    return even(x, 4)


def defined_twice(x):
    if x > 0.0:
        f = lambda t: t * t  # noqa: E731
    else:
        f = lambda t: -t * t  # noqa: E731
    return f(x)


def rebound_to_a_value(x):
    def f(t):
        return t * t
    y = f(x)
    f = 2.0
    return y * f


def decorated_inner(x):
    @identity
    def f(t):
        return t * t
    return f(x)


def wrong_arity(x):
    f = lambda t, u: t * u  # noqa: E731
    return f(x)


def keyword_call(x):
    f = lambda t: t * t  # noqa: E731
    return f(t=x)


def hidden_captured_variable(x):
    c = 2.0

    def scaled(t):
        return t * c

    def wrapper(c):
        return scaled(c) + c

    return wrapper(x)


def called_before_definition(x):
    y = late(x)
    late = lambda t: t * t  # noqa: E731
    return y + late(x)


def unsupported_inside_inner(x):
    def f(t):
        out = [t, t]
        return out[0]
    return f(x) * x


REFUSED = [
    # (function, construct regex, needle on the line of the error)
    (returns_inner, r"inner function 'g' used as a value", "return g"),
    (stores_inner, r"lambda 'g' used as a value", "h = g"),
    (passes_inner, r"inner function 'g' used as a value", "apply(g, x)"),
    (passed_on_inside_a_lambda, r"inner function 'g' used as a value", "apply(g, t)"),
    (immediately_invoked_lambda, r"lambda that is not bound to a name", "(lambda t"),
    (lambda_as_argument, r"lambda that is not bound to a name", "apply(lambda"),
    (lambda_to_two_names, r"lambda assigned to anything but one name", "f = g = lambda"),
    (nonlocal_in_inner, r"closure over changing state.*nonlocal total", "nonlocal total"),
    (self_recursive_inner, r"recursion of inner function 'power'.*power -> power",
     "t * power(t"),
    (mutually_recursive_inner, r"recursion of inner function '(even|odd)'", "t * even(t"),
    (defined_twice, r"lambda 'f' is defined more than once", "f = lambda t: -t"),
    (rebound_to_a_value, r"inner function 'f' is assigned another value", "f = 2.0"),
    (decorated_inner, r"decorator on inner function 'f'", "@identity"),
    (wrong_arity, r"lambda 'f' takes 2 arguments, 1 given", "return f(x)"),
    (keyword_call, r"keyword arguments in the call to lambda 'f'", "return f(t=x)"),
    (called_before_definition, r"lambda 'late' is called before its definition", "y = late(x)"),
    (hidden_captured_variable, r"inner function 'scaled' reads 'c'.*rename", "scaled(c) + c"),
]


@pytest.mark.parametrize("fun, construct, needle", REFUSED, ids=[c[0].__name__ for c in REFUSED])
def test_refused_with_construct_and_line(fun, construct, needle):
    err = refuse(fun, (1.5,))
    assert isinstance(err, nad.AutodiffError)
    assert_located(err, construct, line_of(fun, needle))


def test_unsupported_construct_inside_an_inner_function_names_its_line():
    err = refuse(unsupported_inside_inner, (1.5,))
    assert_located(err, r"\blist\b", line_of(unsupported_inside_inner, "out = [t, t]"))
    assert err.function == "f"


# ---- through the %%autodiff magic (the ip fixture: conftest): the cell's own line numbers ----

INNER_CELL = '''import math

def spring_energy(x, k):
    rest = 0.5
    spring = lambda d: k * (d - rest) ** 2
    def bond(i):
        return spring(x[i + 1] - x[i]) + math.cos(x[i])
    s = 0.0
    for i in range(x.shape[0] - 1):
        s += bond(i)
    return s
'''


def test_magic_differentiates_inner_functions(ip):
    ip.user_ns.update(np=np)
    ip.run_cell_magic("autodiff", "--wrt x,k", INNER_CELL)
    ns = ip.user_ns
    x, k = np.random.default_rng(4).uniform(-1, 1, 6), 1.3
    gx, gk = ns["spring_energy_grad"](x, k)
    fx, fk = central_diff(ns["spring_energy"], (x, k), (0, 1))
    assert_grad_close(gx, fx, rtol=1e-6, label="d/dx")
    assert_grad_close(gk, fk, rtol=1e-6, label="d/dk")


RECURSIVE_CELL = '''def falls(x):
    def drop(t, n):
        if n == 0:
            return t
        return drop(0.5 * t, n - 1)
    return drop(x[0], 3)
'''

UNSUPPORTED_IN_INNER_CELL = '''def outer(x):
    s = 0.0
    def inner(t):
        with open(t):
            return t
    return inner(x[0]) + s
'''


@pytest.mark.parametrize("cell, construct, line", [
    (RECURSIVE_CELL, r"recursion of inner function 'drop'", 6),      # the %%autodiff line is 1
    (UNSUPPORTED_IN_INNER_CELL, r"\bwith\b", 5),
], ids=["recursion", "with_in_inner"])
def test_magic_errors_name_the_cell_line(ip, cell, construct, line):
    with pytest.raises(nad.AutodiffError) as info:
        ip.run_cell_magic("autodiff", "", cell)
    assert_located(info.value, construct, line)
    assert f"line {line} of the cell" in info.value._render_traceback_()[0]
