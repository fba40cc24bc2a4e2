"""Bad input: unsupported constructs, missing source, wrong argument types.

Unsupported constructs raise ``nad.AutodiffError`` whose message names the construct and
``line N``, N being the line in this file (computed with ``inspect``, never hard-coded), also
in ``err.lineno``. Wrong argument types at call time raise ``TypeError`` (``ValueError`` allowed
for shapes) naming the argument.
"""
from __future__ import annotations

import contextlib
import importlib.util
import inspect
import linecache
import math
import os
import re
import signal

import numpy as np
import pytest

import nbautodiff as nad


def line_of(fun, needle, nth=0):
    """The absolute line number in this file of the nth line of ``fun``'s source containing needle."""
    lines, start = inspect.getsourcelines(inspect.unwrap(fun))
    hits = [start + k for k, text in enumerate(lines) if needle in text]
    assert hits, f"{needle!r} not in the source of {fun.__name__}"
    return hits[nth]


@contextlib.contextmanager
def deadline(seconds):
    """Fail (instead of hanging) if the block runs longer than ``seconds``."""
    def on_alarm(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s (hang?)")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def refuse(fun, args, argnums=0):
    """Differentiate ``fun`` at ``args``; return the AutodiffError raised (at grad or at call)."""
    with deadline(120):
        with pytest.raises(nad.AutodiffError) as info:
            nad.grad(fun, argnums=argnums)(*args)
    return info.value


def assert_located(err, construct, lines):
    """``err`` names ``construct`` (a regex) and one of ``lines`` (int or list) as 'line N'."""
    lines = [lines] if isinstance(lines, int) else list(lines)
    msg = str(err)
    # the construct must be named by the message itself, not just appear in a function's name
    body = re.sub(r"function '[^']*'", "function", msg)
    assert re.search(construct, body, re.IGNORECASE), f"construct /{construct}/ not named in: {msg}"
    assert err.lineno in lines, f"lineno {err.lineno}, expected {lines}: {msg}"
    assert f"line {err.lineno}" in msg, f"'line {err.lineno}' missing from: {msg}"


# ---- unsupported constructs -----------------------------------------------------------------

def uses_try(x):
    y = x * 2.0
    try:
        y = y / x
    except ZeroDivisionError:
        y = 0.0
    return y * x


def uses_try_finally(x):
    s = 0.0
    for i in range(3):
        try:
            s += x * i
        finally:
            s += 1.0
    return s


def uses_with(x):
    y = x * x
    with contextlib.nullcontext():
        y = y + x
    return y


def uses_yield(x):
    for i in range(3):
        yield x * i


def uses_genexpr(x):
    s = x[0]
    s = s + sum(x[i] * x[i] for i in range(len(x)))
    return s


def uses_listcomp(x):
    ys = [x[i] * 2.0 for i in range(len(x))]
    return ys[0] + x[1]


def uses_class(x):
    y = x + 1.0

    class Box:
        value = 1.0

    return y * x


_STATE = 0.0


def uses_global(x):
    global _STATE
    _STATE = x
    return x * x


def _make_nonlocal():
    total = 0.0

    def uses_nonlocal(x):
        nonlocal total
        total = total + x
        return total * x

    return uses_nonlocal


uses_nonlocal = _make_nonlocal()


def uses_dict(x):
    y = x * 3.0
    params = {"a": 2.0, "b": y}
    return params["a"] * x + params["b"]


def uses_string(x):
    y = x * x
    mode = "square"
    if mode == "square":
        y = y * 2.0
    return y


def recursive_power(x, n):
    if n == 0:
        return 1.0
    return x * recursive_power(x, n - 1)


def ping(x, n):
    if n <= 0:
        return x
    return pong(x * 1.1, n - 1)


def pong(x, n):
    return ping(x * x, n - 1) + 1.0


async def uses_async(x):
    return x * x


def uses_print(x):
    y = x * x
    print(y)
    return y


class Scaler:
    def __call__(self, v):
        return 2.0 * v


SCALER = Scaler()


def uses_object(x):
    y = x + 1.0
    return SCALER(y) * x


def helper_with_try(v):
    try:
        return v * v
    except ArithmeticError:
        return 0.0


def calls_bad_helper(x):
    s = 0.0
    for i in range(3):
        s += helper_with_try(x + i)
    return s


CASES = [
    # (function, args, construct regex, needle locating the line)
    (uses_try, (1.5,), r"\btry\b", "try:"),
    (uses_try_finally, (1.5,), r"\btry\b", "try:"),
    (uses_with, (1.5,), r"\bwith\b", "with contextlib"),
    (uses_yield, (1.5,), r"yield|generator", "yield x"),
    (uses_genexpr, (np.ones(3),), r"generator|comprehension", "sum("),
    (uses_listcomp, (np.ones(3),), r"comprehension", "ys = ["),
    (uses_class, (1.5,), r"\bclass\b", "class Box"),
    (uses_global, (1.5,), r"\bglobal\b", "global _STATE"),
    (uses_nonlocal, (1.5,), r"\bnonlocal\b", "nonlocal total"),
    (uses_dict, (1.5,), r"\bdict", "params = {"),
    (uses_string, (1.5,), r"\bstr(ing)?\b", 'mode = "square"'),
    (uses_print, (1.5,), r"\bprint\b", "print(y)"),
    (uses_object, (1.5,), r"SCALER|Scaler", "SCALER(y)"),
]


@pytest.mark.parametrize("fun, args, construct, needle", CASES, ids=[c[0].__name__ for c in CASES])
def test_unsupported_construct(fun, args, construct, needle):
    err = refuse(fun, args)
    assert_located(err, construct, line_of(fun, needle))


def test_async_function():
    err = refuse(uses_async, (1.5,))
    assert_located(err, r"\basync\b", line_of(uses_async, "async def"))


def test_recursion_is_refused_not_hanging():
    err = refuse(recursive_power, (1.5, 3))
    assert_located(err, r"recurs", line_of(recursive_power, "recursive_power(x, n - 1)"))


def test_mutual_recursion_is_refused():
    err = refuse(ping, (1.5, 4))
    assert_located(err, r"recurs", [line_of(ping, "return pong("), line_of(pong, "return ping(")])


def test_error_in_callee_points_at_callee_line():
    err = refuse(calls_bad_helper, (1.5,))
    assert_located(err, r"\btry\b", line_of(helper_with_try, "try:"))


def test_autodiff_error_is_raised_by_reverse_and_vjp_too():
    line = line_of(uses_try, "try:")
    with deadline(120), pytest.raises(nad.AutodiffError) as info:
        nad.reverse(uses_try, nad.Active)(1.5, 1.0)
    assert_located(info.value, r"\btry\b", line)
    with deadline(120), pytest.raises(nad.AutodiffError) as info:
        nad.vjp(uses_print, 1.5)
    assert_located(info.value, r"\bprint\b", line_of(uses_print, "print(y)"))


def uses_lambda(x):
    sq = lambda t: t * t  # noqa: E731
    return sq(x) + x


def test_inner_lambda_refused_or_correct():
    """A lambda inside the function: either refused with its line, or differentiated right."""
    try:
        g = nad.grad(uses_lambda)(1.5)
    except nad.AutodiffError as err:
        assert_located(err, r"lambda", line_of(uses_lambda, "lambda t"))
    else:
        assert g == pytest.approx(2.0 * 1.5 + 1.0, rel=1e-12)


def with_docstring(x):
    """A docstring is not a string value in active code."""
    return x * x


def test_docstring_is_fine():
    assert nad.grad(with_docstring)(3.0) == pytest.approx(6.0)


# ---- source not found -----------------------------------------------------------------------

def _exec_function():
    ns = {}
    exec("def from_exec(x):\n    return x * x\n", ns)
    return ns["from_exec"]


def _repl_lambda():
    return eval(compile("lambda x: x * x", "<stdin>", "eval"))


@pytest.mark.parametrize("make", [lambda: math.sin, _exec_function, _repl_lambda],
                         ids=["builtin", "exec_string", "repl_lambda"])
def test_source_not_found(make):
    fun = make()
    with deadline(120), pytest.raises(nad.AutodiffError, match=r"(?i)source"):
        nad.grad(fun)(0.5)


def test_source_file_deleted(tmp_path):
    path = tmp_path / "vanishing_module.py"
    path.write_text("def vanishing(x):\n    return x * x * x\n")
    spec = importlib.util.spec_from_file_location("vanishing_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    os.remove(path)
    linecache.clearcache()
    with deadline(120), pytest.raises(nad.AutodiffError, match=r"(?i)source"):
        nad.grad(module.vanishing)(0.5)


# ---- wrong argument types at call time ------------------------------------------------------

def area(radius, count):
    s = 0.0
    for i in range(count):
        s += math.pi * radius * radius
    return s


def total_mass(density, n):
    s = 0.0
    for i in range(n):
        s += density[i]
    return s * s


def test_string_argument():
    with pytest.raises(TypeError, match=r"\bradius\b"):
        nad.grad(area)("2.0", 3)


def test_list_argument():
    with pytest.raises(TypeError, match=r"\bdensity\b"):
        nad.grad(total_mass)([1.0, 2.0, 3.0], 3)


def test_int_array_where_float_array_is_duplicated():
    with pytest.raises(TypeError, match=r"\bdensity\b"):
        nad.reverse(total_mass, nad.Duplicated, nad.Const)(np.arange(3), np.zeros(3), 3, 1.0)


def test_int_array_to_grad():
    with pytest.raises(TypeError, match=r"\bdensity\b"):
        nad.grad(total_mass)(np.arange(3), 3)


def test_scalar_where_array_is_duplicated():
    with pytest.raises(TypeError, match=r"\bdensity\b"):
        nad.reverse(total_mass, nad.Duplicated, nad.Const)(1.0, 0.0, 3, 1.0)


def test_array_where_scalar_is_active():
    with pytest.raises(TypeError, match=r"\bradius\b"):
        nad.reverse(area, nad.Active, nad.Const)(np.ones(3), 3, 1.0)


def test_shadow_shape_differs():
    with pytest.raises((ValueError, TypeError), match=r"\bdensity\b"):
        nad.reverse(total_mass, nad.Duplicated, nad.Const)(np.ones(3), np.zeros(4), 3, 1.0)


def test_shadow_dtype_int():
    with pytest.raises(TypeError, match=r"\bdensity\b"):
        nad.reverse(total_mass, nad.Duplicated, nad.Const)(np.ones(3), np.zeros(3, dtype=np.int64),
                                                           3, 1.0)


def test_float_loop_bound_is_a_type_error_naming_the_argument():
    with pytest.raises(TypeError, match=r"'count' is a float"):
        nad.grad(area)(2.0, 3.0)
    with pytest.raises(TypeError, match=r"'n' is a float"):
        nad.reverse(total_mass, nad.Duplicated, nad.Const)(np.ones(3), np.zeros(3), 3.0, 1.0)


def test_missing_argument_is_named():
    with pytest.raises(TypeError, match=r"\bcount\b"):
        nad.grad(area)(2.0)


def test_too_many_arguments():
    with pytest.raises(TypeError):
        nad.grad(area)(2.0, 3, 4)
    with pytest.raises(TypeError):
        nad.value_and_grad(area)(2.0, 3, 4)


def test_missing_seed_for_active_return():
    with pytest.raises(TypeError):
        nad.reverse(area, nad.Active, nad.Const)(2.0, 3)


def test_wrong_number_of_activities():
    with pytest.raises((TypeError, ValueError, nad.AutodiffError)):
        nad.reverse(area, nad.Active)(2.0, 3, 1.0)


def test_unknown_activity_name():
    with pytest.raises(nad.AutodiffError, match="Actve"):
        nad.reverse(area, "Actve", "Const")(2.0, 3, 1.0)


def test_valid_call_after_type_errors_still_works():
    g = nad.grad(area)
    with pytest.raises(TypeError):
        g("x", 3)
    assert g(2.0, 3) == pytest.approx(3 * 2.0 * math.pi * 2.0, rel=1e-12)


def views_of_two_arrays(a, b, flag):
    v = a[1:]
    if flag > 0:
        v = b[1:]
    return np.sum(v)


def test_one_name_bound_to_views_of_different_arrays_is_refused_with_its_line():
    with pytest.raises(nad.AutodiffError, match=r"views of different arrays") as info:
        nad.grad(views_of_two_arrays)(np.ones(3), np.ones(3), 1)
    assert info.value.lineno == views_of_two_arrays.__code__.co_firstlineno + 1


def inplace_on_a_parameter(x):
    x *= 2.0
    return np.sum(x)


def inplace_on_an_alias(x):
    y = x.copy()
    z = y
    y *= 2.0
    return np.sum(z)


@pytest.mark.parametrize("fun, name, line", [(inplace_on_a_parameter, "x", 1),
                                             (inplace_on_an_alias, "y", 3)])
def test_in_place_operator_on_a_shared_array_is_refused_with_its_line(fun, name, line):
    with pytest.raises(nad.AutodiffError, match=rf"in-place operator on the array '{name}'") \
            as info:
        nad.grad(fun)(np.ones(3))
    assert info.value.lineno == fun.__code__.co_firstlineno + line
    # forward mode supports it (the store is a store into the array and its tangent)
    x, v = np.array([0.5, -1.0, 2.0]), np.array([1.0, 2.0, -0.5])
    assert nad.jvp(fun, (x,), (v,)) == (2.0 * 1.5, 2.0 * np.sum(v))
    expected = np.array([0.5, -1.0, 2.0])
    fun(expected)                                 # the caller's array ends as fun leaves it
    assert np.array_equal(x, expected)


# ---- tuples: the constructs that stay refused -------------------------------------------------

def tuple_variable_index(x, n):
    t = (x, x * 2.0)
    s = 0.0
    for i in range(n):
        s += t[i]
    return s


def tuple_starred_unpacking(x, y):
    a, *rest = (x, y, x)
    return a * y


def tuple_concatenation(x, y):
    t = (x,) + (y,)
    return t[0] * t[1]


def tuple_names_concatenated(x, y):
    t = (x, y)
    u = t + t
    return u[0] * u[3]


def tuple_repetition(x, y):
    t = (x, y) * 2
    return t[0]


def tuple_iteration(x, y):
    s = 0.0
    for v in (x, y):
        s += v * v
    return s


def tuple_name_iteration(x, y):
    t = (x, y)
    s = 0.0
    for v in t:
        s += v * v
    return s


def _tuple_taker(t):
    return t[0] * t[1]


def tuple_passed_to_callee(x, y):
    t = (x, y)
    return _tuple_taker(t) + x


TUPLE_CASES = [
    (tuple_variable_index, (0.5, 2), r"non-constant index", "s += t[i]"),
    (tuple_starred_unpacking, (0.5, 0.2), r"starred unpacking", "a, *rest"),
    (tuple_concatenation, (0.5, 0.2), r"tuple concatenation", "(x,) + (y,)"),
    (tuple_names_concatenated, (0.5, 0.2), r"tuple concatenation", "u = t + t"),
    (tuple_repetition, (0.5, 0.2), r"tuple repetition", "(x, y) * 2"),
    (tuple_iteration, (0.5, 0.2), r"iteration over a tuple", "for v in (x, y)"),
    (tuple_name_iteration, (0.5, 0.2), r"for loop over 't'", "for v in t"),
    (tuple_passed_to_callee, (0.5, 0.2), r"passing a tuple.*_tuple_taker", "_tuple_taker(t)"),
]


@pytest.mark.parametrize("fun, args, construct, needle", TUPLE_CASES,
                         ids=[c[0].__name__ for c in TUPLE_CASES])
def test_refused_tuple_construct(fun, args, construct, needle):
    err = refuse(fun, args, argnums=0)
    assert_located(err, construct, line_of(fun, needle))


@nad.custom_vjp
def _two_results(x):
    return x * x, math.sin(x)


@_two_results.defvjp
def _two_results_rule(g, z, x):
    return g


def calls_custom_with_two_results(x):
    a, b = _two_results(x)
    return a + b


def test_declared_rule_of_a_tuple_returning_function_is_refused_not_ignored():
    err = refuse(calls_custom_with_two_results, (0.5,))
    assert_located(err, r"custom rule '_two_results_rule'.*tuple",
                   line_of(_two_results_rule, "def _two_results_rule"))


def test_every_error_class_is_defined_in_errors_module():
    """Every exception class of the package lives in nbautodiff/errors.py (issue 19), so that
    one file lists what the tool can raise; the other modules import them from there."""
    import ast as ast_module
    from nbautodiff import _layout
    defined = {}
    for module, path in _layout.modules().items():
        for node in ast_module.walk(ast_module.parse(path.read_text())):
            if isinstance(node, ast_module.ClassDef) and any(
                    ast_module.unparse(base).split(".")[-1].endswith(("Error", "Exception"))
                    for base in node.bases):
                defined[node.name] = module
    assert defined and set(defined.values()) == {"nbautodiff.errors"}, defined
    import nbautodiff.errors as errors
    for name in ("BatchError", "OffloadError", "ParallelismError", "CellAutodiffError",
                 "NotLaneable", "NotReplayable"):
        assert isinstance(getattr(errors, name), type)
