"""Rule tests generated from the rules table itself (issue 19, item 4), after autograd's
``check_grads`` and ``test_systematic.py``: every entry of :mod:`nbautodiff.rules` is
differentiated in reverse mode (``nad.grad``), forward mode (``nad.jvp``) and to second order
(``nad.jvp(nad.grad(f))``, and ``nad.hessian`` for scalar rules of several operands) at a random
point of its domain, against central differences. The entries are read from the tables, so a rule
registered tomorrow gets a test tomorrow; an entry this file knows no domain for fails
``test_every_table_entry_has_a_recipe`` (and its own test) with "add a domain for rule X".

How an entry becomes a program (written to a file of its own by ``soundness.load_program``, so
nbautodiff reads its source like any module's)::

    def f(x, y):                       # a scalar entry: CALLS, OPERATORS, UFUNC_OPERATORS...
        z = math.atan2(x, y)
        return z * (0.5 * z + 1.3)     # so the adjoint flowing into the rule is not 1

    def f(a, w):                       # an array entry: ARRAY_CALLS (and @, the constructors)
        z = np.sum(a, axis=1)
        return np.sum(np.sin(z) * w)   # every element of z matters, each differently

* scalar entries: ``OPERATORS`` (but ``@``), ``CALLS`` (one test per callable: ``math.sin`` and
  ``np.sin`` each), ``UFUNC_OPERATORS`` and ``np.reciprocal`` (normalised to operators),
  ``NON_DIFFERENTIABLE`` (as ``x * x * (1.0 + floor(x))``) and the vecmath aliases (``rules.alias``:
  the same rule under ``fastmath=True``), at a point of ``SCALAR_DOMAINS[rule name]``; the first
  spelling of each rule (and each alias) to second order, with ``nad.hessian`` too where the
  rule has mixed partials, the other spellings (which only resolve to the same rule) to first
  order;
* elementwise: every scalar rule with a NumPy spelling, applied to arrays with broadcasting (the
  scalar templates made elementwise by ``rules.array_template``, summed down by ``unbroadcast``),
  to second order where the templates branch (``np.where``, ``np.sign``...);
* array entries: ``ARRAY_CALLS`` with ``ARRAY_RECIPES[rule name]`` (shapes, well-conditioned
  matrices, distinct values for max/min, an axis constant), ``@``, the array methods
  (``ARRAY_METHOD_FUNCTIONS``: ``a.sum(axis=1)``) and the user-facing ``ARRAY_CONSTRUCTORS``
  (``CONSTRUCTOR_RECIPES``, first order); the forward rules (``ARRAY_TANGENTS``) are those
  tests' forward halves;
* generated-code entries: ``HELPERS`` (runtime helpers of generated code, with tangent rules so
  that reverse code can be differentiated again) and the names of the other tables that only
  generated code calls (``_nad_tape.trip_count``, ``_nad_arrays.sum_axis``, the BLAS products of
  ``fastmath=True``...): ``GENERATED_CODE_CASES`` names, for each, programs whose generated
  reverse code calls it; the test asserts that it does (``grad(f).source``) and checks
  ``jvp(grad(f))``, which runs the helper's tangent rule, against differences of the gradient.
  A helper no reverse code calls (``extremum_axis_tangent``, called by forward code, which no
  public transform differentiates again) is called by the program itself, in forward mode.

Not here, having no derivative to check: ``DTYPES``, ``WRITE_ARGUMENTS``, ``CONSTANTS``,
``ARRAY_METHODS``/``ARRAY_ATTRIBUTES`` and ``NOT_DIFFERENTIATED_AGAIN`` (its refusal is a test
of ``test_higher_order``); ``VARIADIC`` is the variadic variant of min and max.

Each case is checked once per process (``check_case`` keeps the generated reverse source), so a
generated-code test that names an array test's case costs nothing more. Compiling dominates the
time (grouping many primitives into one function saves about 10%: numba's cost is per
operation), so the reductions above are where the minutes go.

Within the suite's time budget (tests/budget.py), second order runs on half of the cases (a
fixed half, by a hash of the case's name), and the spellings of a scalar rule after its first
(``np.sin`` beside ``math.sin``) on half of them; ``NBAUTODIFF_FULL_CORPUS=1`` runs it on all of them.

Tolerances: first order ``rtol=1e-5`` against Richardson-extrapolated central differences
(``fd.py``), second order ``rtol=1e-4`` against a Richardson central difference of the AD
gradient along the tangent direction.
"""
from __future__ import annotations

import ast
import builtins
import math
import re
import textwrap
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numba
import numpy as np
import pytest

import nbautodiff as nad
from nbautodiff import naming, rules
import budget
from fd import assert_grad_close, central_diff, copy_args, directional_diff, max_abs
from soundness import load_program

SEED = 1904


def _fastmath_probe(x):
    return math.exp(x) * math.log(x)


# vecmath's functions enter the table (rules.alias) the first time a fastmath derivative is
# built: build one, so that they are enumerated (and tested) like every other entry.
nad.grad(_fastmath_probe, fastmath=True)(1.5)

# ---------------------------------------------------------------------------------------------
# domains: where each rule is evaluated (random points, away from kinks and singularities)


def uniform(lo, hi):
    return lambda rng, shape: rng.uniform(lo, hi, shape)


def away(lo, hi):
    """|x| in (lo, hi), either sign: away from the kink of abs at 0 or the pole of 1/x."""
    return lambda rng, shape: rng.choice((-1.0, 1.0), shape) * rng.uniform(lo, hi, shape)


def independent(*samplers):
    return lambda rng, shapes: tuple(s(rng, shape) for s, shape in zip(samplers, shapes))


def apart(rng, shapes):
    """Two operands at least 0.2 apart (the kink of min/max where they are equal)."""
    y = rng.uniform(-2.0, 2.0, shapes[1])
    return y + away(0.2, 1.0)(rng, shapes[0]), y


def off_multiple(rng, shapes):
    """``x / y`` at least 0.15 from an integer (the jumps of floor, trunc, % and //)."""
    y = away(0.7, 1.9)(rng, shapes[1])
    k = rng.integers(-3, 4, shapes[0])
    return (k + rng.uniform(0.15, 0.85, shapes[0])) * y, y


def three_apart(rng, shapes):
    """Three operands pairwise at least 0.7 apart (variadic min/max)."""
    base = rng.permutation(np.array([-1.5, 0.0, 1.5]))
    return tuple(b + rng.uniform(-0.35, 0.35, s) for b, s in zip(base, shapes))


def exponent_zero(rng, shapes):
    """``x ** y`` at ``y == 0`` exactly (a parameter started at 0): ``x ** (y - 1)`` matters
    there to second order, though ``y * x ** (y - 1)`` is 0."""
    return rng.uniform(0.3, 2.0, shapes[0]), np.zeros(shapes[1])


def off_integer(rng, shape):
    """An integer plus 0.1 to 0.4: away from the jumps of floor, ceil, round, int, sign."""
    return rng.integers(-2, 3, shape) + rng.uniform(0.1, 0.4, shape)


ANY = uniform(-2.0, 2.0)

# By rule name (``ReverseRule.name``): a sampler ``(rng, shapes) -> operands``.
SCALAR_DOMAINS: dict[str, Callable] = {
    # operators (and the NumPy ufuncs normalised to them)
    "add": independent(ANY, ANY), "sub": independent(ANY, ANY), "mul": independent(ANY, ANY),
    "div": independent(ANY, away(0.5, 2.0)),
    "pow_": independent(uniform(0.3, 2.0), uniform(0.5, 2.5)),
    "mod": off_multiple, "floordiv": off_multiple,
    "neg": independent(ANY), "pos": independent(ANY),
    "reciprocal": independent(away(0.3, 2.0)),
    # math / NumPy functions
    "sin": independent(uniform(-3, 3)), "cos": independent(uniform(-3, 3)),
    "tan": independent(uniform(-1.2, 1.2)),
    "asin": independent(uniform(-0.8, 0.8)), "acos": independent(uniform(-0.8, 0.8)),
    "atan": independent(uniform(-3, 3)), "atan2": independent(away(0.3, 2), away(0.3, 2)),
    "sinh": independent(ANY), "cosh": independent(ANY), "tanh": independent(ANY),
    "asinh": independent(uniform(-3, 3)), "acosh": independent(uniform(1.2, 3.0)),
    "atanh": independent(uniform(-0.8, 0.8)),
    "exp": independent(ANY), "expm1": independent(ANY), "exp2": independent(ANY),
    "log": independent(uniform(0.3, 3)), "log1p": independent(uniform(-0.5, 2)),
    "log10": independent(uniform(0.3, 3)), "log2": independent(uniform(0.3, 3)),
    "sqrt": independent(uniform(0.3, 3)), "cbrt": independent(away(0.3, 3)),
    "square": independent(ANY),
    "power": independent(uniform(0.3, 2.0), uniform(0.5, 2.5)),
    "hypot": independent(away(0.3, 2), away(0.3, 2)),
    "erf": independent(ANY), "erfc": independent(ANY),
    "abs_": independent(away(0.2, 2)), "fabs": independent(away(0.2, 2)),
    "minimum": apart, "maximum": apart,
    "copysign": independent(away(0.3, 2), away(0.3, 2)),
    "fmod": off_multiple,
    "to_float": independent(ANY),
}

# More spellings of a rule (scalar arguments): (label, parameters, body setting z, sampler).
SCALAR_VARIANTS: dict[str, list] = {
    "pow_": [("integer exponent, negative base", ("x",), "z = x ** 3", independent(ANY)),
             ("constant base", ("x",), "z = 1.7 ** x", independent(ANY)),
             ("exponent 0", ("x", "y"), "z = x ** y", exponent_zero)],
    "power": [("exponent 0", ("x", "y"), "z = math.pow(x, y)", exponent_zero)],
    "minimum": [("variadic", ("x", "y", "u"), "z = min(x, y, u)", three_apart)],
    "maximum": [("variadic", ("x", "y", "u"), "z = max(x, y, u)", three_apart)],
}

# Tolerances (rtol of first order, of second order) by spelling, where the default is wrong.
TOLERANCES = {"np.float32": (1e-2, 1e-2)}     # the differences see float32 rounding

# Rules with a NumPy callable that have no elementwise (array) form.
NOT_ELEMENTWISE = {"to_float": "np.float64(x) converts one number; it is not a ufunc on arrays"}

OPERATOR_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**",
                    ast.Mod: "%", ast.FloorDiv: "//", ast.USub: "-", ast.UAdd: "+",
                    ast.MatMult: "@"}

# NON_DIFFERENTIABLE entries: ``z = x * x * (1.0 + PRIM(x))`` at ``off_integer`` points, unless
# spelled otherwise here.
NONDIFF_OVERRIDES = {"len": (("a",), "z = a[0] * a[1] * len(a)",
                             lambda rng: (rng.uniform(-2, 2, 3),))}


def distinct(shape):
    """Values pairwise at least 0.1 apart (no ties for max/min)."""
    def make(rng):
        n = int(np.prod(shape))
        return (rng.permutation(n) * 0.3 - 0.15 * n + rng.uniform(-0.1, 0.1, n)).reshape(shape)
    return make


def well_conditioned(n):
    return lambda rng: 2.0 * np.eye(n) + 0.3 * rng.standard_normal((n, n))


def normal(*shape):
    return lambda rng: rng.standard_normal(shape)


@dataclass(frozen=True)
class Recipe:
    """How an array entry is called: ``z = ENTRY(*operands<keywords>)``, ``make(rng)`` giving the
    values of ``params``."""

    params: tuple
    operands: tuple
    make: Callable
    keywords: str = ""
    label: str = ""


def _args(*makers):
    return lambda rng: tuple(m(rng) for m in makers)


def _scaled_signs(shape, zero=False):
    def make(rng):
        a = rng.choice((-1.0, 1.0), shape) * rng.uniform(0.5, 1.5, shape)
        if zero:
            a.flat[1] = 0.0
        return a
    return make


# By rule name. The first entry of a rule runs every recipe; other spellings of it the first.
ARRAY_RECIPES: dict[str, list[Recipe]] = {
    "sum_": [Recipe(("a",), ("a",), _args(normal(3, 4)))],
    "sum_axis": [Recipe(("a",), ("a",), _args(normal(2, 3, 4)), ", axis=1"),
                 Recipe(("a",), ("a",), _args(normal(5)), ", axis=0", label="vector, axis 0")],
    "mean": [Recipe(("a",), ("a",), _args(normal(3, 4)))],
    "mean_axis": [Recipe(("a",), ("a",), _args(normal(2, 3, 4)), ", axis=1")],
    "prod": [Recipe(("a",), ("a",), _args(_scaled_signs((2, 3)))),
             Recipe(("a",), ("a",), _args(_scaled_signs((2, 3), zero=True)), label="a zero")],
    "max_": [Recipe(("a",), ("a",), _args(distinct((3, 4))))],
    "min_": [Recipe(("a",), ("a",), _args(distinct((3, 4))))],
    "max_axis": [Recipe(("a",), ("a",), _args(distinct((2, 3, 4))), ", axis=1"),
                 Recipe(("a",), ("a",), _args(distinct((5,))), ", axis=0", label="vector, axis 0")],
    "min_axis": [Recipe(("a",), ("a",), _args(distinct((2, 3, 4))), ", axis=1")],
    "dot": [Recipe(("a", "b"), ("a", "b"), _args(normal(3, 4), normal(4, 2)),
                   label="matrix matrix"),
            Recipe(("a", "b"), ("a", "b"), _args(normal(3, 4), normal(4)), label="matrix vector"),
            Recipe(("a", "b"), ("a", "b"), _args(normal(4), normal(4, 3)), label="vector matrix"),
            Recipe(("a", "b"), ("a", "b"), _args(normal(4), normal(4)), label="vector vector")],
    "outer": [Recipe(("a", "b"), ("a", "b"), _args(normal(3), normal(4))),
              Recipe(("a", "b"), ("a", "b"), _args(normal(2, 2), normal(1, 3)),
                     label="operands flattened")],
    "transpose": [Recipe(("a",), ("a",), _args(normal(3, 4)))],
    "reshape": [Recipe(("a",), ("a", "(4, 3)"), _args(normal(3, 4)))],
    "where": [Recipe(("a", "b"), ("a > 0.0", "a", "b"),
                     _args(lambda r: away(0.2, 2)(r, (3, 4)), normal(4)))],
    "cumsum": [Recipe(("a",), ("a",), _args(normal(3, 4)))],
    "cumsum_axis": [Recipe(("a",), ("a",), _args(normal(2, 3, 4)), ", axis=1")],
    "det": [Recipe(("a",), ("a",), _args(well_conditioned(3)))],
    "inv": [Recipe(("a",), ("a",), _args(well_conditioned(3)))],
    "solve": [Recipe(("a", "b"), ("a", "b"), _args(well_conditioned(3), normal(3)), label="vector"),
              Recipe(("a", "b"), ("a", "b"), _args(well_conditioned(3), normal(3, 2)),
                     label="matrix")],
    "atleast_1d": [Recipe(("a",), ("a",), _args(normal(3)))],
    "atleast_2d": [Recipe(("a",), ("a",), _args(normal(3)))],
    "atleast_3d": [Recipe(("a",), ("a",), _args(normal(3, 4)))],
    "full": [Recipe(("s",), ("(3, 4)", "s"), lambda r: (float(r.standard_normal()),))],
    "full_like": [Recipe(("a", "s"), ("a", "s"), lambda r: (r.standard_normal((3, 4)),
                                                             float(r.standard_normal())))],
}

# User-facing array constructors, by spelling: (parameters, body setting z, arguments).
CONSTRUCTOR_RECIPES = {
    "np.zeros": (("a",), "z = np.zeros(a.shape[0])\nz += a * a", _args(normal(4))),
    "np.ones": (("a",), "z = np.ones((2, a.shape[0]))\nz[0] = a * a", _args(normal(4))),
    "np.empty": (("a",), "z = np.empty(a.shape[0])\nfor i in range(a.shape[0]):\n"
                         "    z[i] = a[i] * a[i]", _args(normal(4))),
    "np.zeros_like": (("a",), "z = np.zeros_like(a)\nz[1:] = a[:-1] * a[1:]", _args(normal(4))),
    "np.ones_like": (("a",), "z = np.ones_like(a)\nz[0] = a[1] * a[2]", _args(normal(4))),
    "np.empty_like": (("a",), "z = np.empty_like(a)\nz[:] = np.sin(a) * a", _args(normal(4))),
    "np.arange": (("a",), "z = np.arange(a.shape[0]) * a * a", _args(normal(4))),
    "np.eye": (("a",), "z = (np.eye(3) + a) @ a", _args(normal(3, 3))),
    "np.identity": (("a",), "z = np.identity(3) * 2.0 + a * a", _args(normal(3, 3))),
}

# ---------------------------------------------------------------------------------------------
# cases: one program, its arguments, the checks


ALL_MODES = ("reverse", "forward", "second")
FIRST_ORDER = ("reverse", "forward")


@dataclass
class Case:
    id: str
    params: tuple
    body: str                          # statements that set z
    make: Callable                     # rng -> the values of params
    fastmath: bool = False
    hessian: bool = False              # also nad.hessian (of scalar arguments only)
    rtol: tuple = (1e-5, 1e-4)         # first order, second order
    imports: str = ""
    modes: tuple = ALL_MODES
    expect_in_source: tuple = ()       # regexes the reverse source must match
    compiled_primal: bool = False      # the reference runs f compiled by numba (it calls
                                       # helpers that only compiled code can call)


def _module_text(case: Case, weighted: bool) -> str:
    body = textwrap.indent(textwrap.dedent(case.body).strip("\n"), "    ")
    params = ", ".join(case.params)
    loss = "np.sum(np.sin(z) * w)" if weighted else "z * (0.5 * z + 1.3)"   # (as reference)
    return (f"{case.imports}\n\ndef out({params}):\n{body}\n    return z\n\n\n"
            f"def f({params}{', w' if weighted else ''}):\n{body}\n    return {loss}\n")


def _is_float(value) -> bool:
    if isinstance(value, np.ndarray):
        return value.dtype.kind == "f"
    return isinstance(value, float)


def _fd_of_gradient(gradient, args, wrt, directions, rel_step=1e-3):
    """Richardson central difference of the AD gradient (a tuple, one per ``wrt``) along
    ``directions``: the Hessian-vector product to compare forward over reverse with."""
    scale = max([1.0] + [max_abs(args[k]) for k in wrt])
    h = rel_step * scale

    def at(t):
        call = list(copy_args(args))
        for k, d in zip(wrt, directions):
            call[k] = call[k] + t * d
        return [np.asarray(v, dtype=np.float64) for v in gradient(*call)]

    def central(step):
        return [(p - m) / (2.0 * step) for p, m in zip(at(step), at(-step))]

    coarse, fine = central(h), central(h / 2.0)
    return [(4.0 * b - a) / 3.0 for a, b in zip(coarse, fine)]


def _atol(expected, rtol):
    return rtol * 1e-2 * max(1.0, max_abs(*expected))


# The reverse source of each case checked in this process (cases are shared between tests).
_CHECKED: dict[str, str] = {}

# Constructs the tool refuses (AutodiffError), by case id: (modes refused, reason). A refusal
# that stops (the construct now differentiated) fails the test: then remove its entry here.
_ZERO_D = ("a reduction along the only axis of a vector leaves a 0-d array; in the forward "
           "variant of the reverse code its adjoint (d_z += ...) is typed as a float, which "
           "{} does not take (numba typing: AutodiffError 'numba cannot compile this code')")
EXPECTED_REFUSALS: dict[str, tuple] = {
    "np.sum[axis] / vector, axis 0": (("second",), _ZERO_D.format("_nad_arrays.expand_axis")),
    "np.max[axis] / vector, axis 0": (("second",),
                                      _ZERO_D.format("_nad_arrays.extremum_axis_adjoint")),
}


def check_case(case: Case) -> str:
    """Check ``case`` in each of its modes against central differences; returns the generated
    reverse source (empty when reverse mode is not checked)."""
    if case.id in _CHECKED:
        return _CHECKED[case.id]
    rng = np.random.default_rng([SEED, zlib.crc32(case.id.encode())])
    args = tuple(case.make(rng))
    probe = load_program(_module_text(case, False)).out
    if case.compiled_primal:
        probe = numba.njit(probe)
    z = probe(*copy_args(args))
    weighted = np.ndim(z) > 0
    assert np.all(np.isfinite(z)), f"{case.id}: the primal is not finite at {args}"
    if weighted:
        args += (rng.uniform(0.5, 1.5, np.shape(z)),)
    f = load_program(_module_text(case, weighted)).f
    count = len(case.params)

    def reference(*values):             # f, with z from the probe (compiled where it must be)
        z = probe(*values[:count])
        return float(np.sum(np.sin(z) * values[count])) if weighted else z * (0.5 * z + 1.3)

    wrt = tuple(k for k, a in enumerate(args[:len(case.params)]) if _is_float(a))
    names = [case.params[k] for k in wrt]
    first, second = case.rtol
    refused_modes, reason = EXPECTED_REFUSALS.get(case.id, ((), ""))

    def refused(mode, attempt):
        if mode not in refused_modes:
            return False
        try:
            attempt()
        except nad.AutodiffError as error:
            assert re.search(r"line \d+", str(error)), f"{case.id}: a refusal names no line: {error}"
            return True
        pytest.fail(f"{case.id}: {mode} mode is no longer refused ({reason}): remove its entry "
                    "from EXPECTED_REFUSALS")

    directions = tuple(rng.uniform(-1.0, 1.0, np.shape(args[k])) if isinstance(args[k], np.ndarray)
                       else float(rng.uniform(-1.0, 1.0)) for k in wrt)
    tangents = tuple(directions[wrt.index(k)] if k in wrt else None for k in range(len(args)))
    source = ""
    gradient = nad.grad(f, argnums=wrt, fastmath=case.fastmath)
    if "reverse" in case.modes and not refused("reverse", lambda: gradient(*copy_args(args))):
        got = gradient(*copy_args(args))
        expected = central_diff(reference, args, wrt)
        for name, g, e in zip(names, got, expected):
            assert_grad_close(g, e, rtol=first, atol=_atol(expected, first),
                              label=f"{case.id}: reverse, d/d{name}")
        source = gradient.source
        for pattern in case.expect_in_source:
            assert re.search(pattern, source), \
                f"{case.id}: the reverse code does not call {pattern}:\n{source}"
    if "forward" in case.modes and not refused(
            "forward", lambda: nad.jvp(f, copy_args(args), tangents, fastmath=case.fastmath)):
        _, tangent = nad.jvp(f, copy_args(args), tangents, fastmath=case.fastmath)
        expected = directional_diff(reference, args, wrt, directions)
        assert_grad_close(tangent, expected, rtol=first, atol=_atol([expected], first),
                          label=f"{case.id}: forward")
    if "second" in case.modes and budget.sampled(case.id, 2) and not refused(
            "second", lambda: nad.jvp(gradient, copy_args(args), tangents)):
        _, hv = nad.jvp(gradient, copy_args(args), tangents)
        expected = _fd_of_gradient(gradient, args, wrt, directions)
        for name, h, e in zip(names, hv, expected):
            assert_grad_close(h, e, rtol=second, atol=_atol(expected, second),
                              label=f"{case.id}: forward over reverse (H v), d/d{name}")
        if case.hessian:
            hessian = nad.hessian(f, argnums=wrt, fastmath=case.fastmath)(*copy_args(args))
            for j, k in enumerate(wrt):
                unit = tuple(1.0 if i == j else 0.0 for i in range(len(wrt)))
                column = _fd_of_gradient(gradient, args, wrt, unit)
                for i, name in enumerate(names):
                    assert_grad_close(hessian[i][j], column[i], rtol=second,
                                      atol=_atol(column, second),
                                      label=f"{case.id}: hessian, d2/d{name} d{case.params[k]}")
    _CHECKED[case.id] = source
    return source


# ---------------------------------------------------------------------------------------------
# the table, enumerated


@dataclass(frozen=True)
class Entry:
    table: str
    key: str              # the test id: how code spells the entry
    rule: str             # the name domains and recipes are keyed by
    obj: object = None
    internal: bool = False            # only generated code calls it
    extra: dict = field(default_factory=dict, compare=False, hash=False)


def _user_spelling(obj) -> str | None:
    """How user code names ``obj`` (``math.sin``, ``np.linalg.det``, ``abs``), None for a
    runtime helper of generated code."""
    name = getattr(obj, "__name__", None)
    if not name:
        return None
    for prefix, module in (("math", math), ("np", np), ("np.linalg", np.linalg)):
        if getattr(module, name, None) is obj:
            return f"{prefix}.{name}"
    if getattr(builtins, name, None) is obj:
        return name
    return None


def _objects():
    seen, unique = set(), []
    for obj in rules._CALL_OBJECTS:
        if id(obj) not in seen:
            seen.add(id(obj))
            unique.append(obj)
    return unique


def _is_array_rule(rule) -> bool:
    return any(rule is known for known in rules.ARRAY_CALLS.values())


def _alias_original(obj):
    """The user-facing callable whose rule ``obj`` was given by ``rules.alias``."""
    rule = rules.CALLS[id(obj)]
    for other in _objects():
        spelling = _user_spelling(other)
        if spelling and rules.CALLS.get(id(other)) is rule and \
                spelling.split(".")[-1] == getattr(obj, "__name__", None):
            return other
    return None


def scalar_entries() -> list[Entry]:
    entries = []
    for op, rule in rules.OPERATORS.items():
        if not _is_array_rule(rule):
            entries.append(Entry("OPERATORS", f"operator {op.__name__}", rule.name, op))
    for obj in _objects():
        if id(obj) not in rules.CALLS:
            continue
        rule = rules.CALLS[id(obj)]
        spelling = _user_spelling(obj)
        if spelling is not None:
            entries.append(Entry("CALLS", spelling, rule.name, obj))
        else:               # an alias (rules.alias): the same rule, for another function
            original = _alias_original(obj)
            key = f"fastmath {_user_spelling(original) if original else repr(obj)}"
            entries.append(Entry("CALLS (alias)", key, rule.name, obj,
                                 extra={"original": original}))
    for key, op in rules.UFUNC_OPERATORS.items():
        obj = next((o for o in vars(np).values() if id(o) == key), None)
        entries.append(Entry("UFUNC_OPERATORS", _user_spelling(obj) or str(key),
                             rules.OPERATORS[op].name, obj))
    reciprocal = next(o for o in vars(np).values() if id(o) == rules.RECIPROCAL)
    entries.append(Entry("RECIPROCAL", _user_spelling(reciprocal), "reciprocal", reciprocal))
    for key, spelling in rules.NON_DIFFERENTIABLE.items():
        entries.append(Entry("NON_DIFFERENTIABLE", spelling, spelling,
                             internal=spelling.startswith(naming.RESERVED)))
    return entries


def array_entries() -> list[Entry]:
    entries = []
    for obj in _objects():
        for axis in (False, True):
            rule = rules.ARRAY_CALLS.get((id(obj), axis))
            if rule is None:
                continue
            spelling = _user_spelling(obj)
            key = (spelling or rule.spelling) + ("[axis]" if axis else "")
            entries.append(Entry("ARRAY_CALLS", key, rule.name, obj, internal=spelling is None,
                                 extra={"spelling": spelling or rule.spelling}))
    for op, rule in rules.OPERATORS.items():
        if _is_array_rule(rule):
            entries.append(Entry("OPERATORS", f"operator {op.__name__}", rule.name, op,
                                 extra={"symbol": OPERATOR_SYMBOLS.get(op)}))
    for method, function in rules.ARRAY_METHOD_FUNCTIONS.items():
        for axis in (False, True):
            rule = rules.ARRAY_CALLS.get((id(function), axis))
            if rule is not None:
                entries.append(Entry("ARRAY_METHOD_FUNCTIONS", f".{method}" + "[axis]" * axis,
                                     rule.name, function, extra={"method": method}))
    for key, spelling in rules.ARRAY_CONSTRUCTORS.items():
        entries.append(Entry("ARRAY_CONSTRUCTORS", spelling, spelling,
                             internal=spelling.startswith(naming.RESERVED)))
    return entries


def helper_entries() -> list[Entry]:
    return [Entry("HELPERS", helper.spelling, helper.name, internal=True)
            for helper in rules.HELPERS.values()]


SCALAR = [e for e in scalar_entries() if not e.internal]
ARRAYS = [e for e in array_entries() if not e.internal]
GENERATED = helper_entries() + [e for e in scalar_entries() + array_entries() if e.internal]


class MissingRecipe(Exception):
    pass


def _missing(entry, where):
    return MissingRecipe(f"add a domain for rule {entry.rule!r} ({entry.table}: {entry.key}) "
                         f"to {where} in tests/test_rules_table.py")


def _case_id(entry, label=""):
    return entry.key + (f" / {label}" if label else "")


def _scalar_cases(entry: Entry) -> list[Case]:
    rtol = TOLERANCES.get(entry.key, (1e-5, 1e-4))
    if entry.table == "NON_DIFFERENTIABLE":
        if entry.key in NONDIFF_OVERRIDES:
            params, body, make = NONDIFF_OVERRIDES[entry.key]
            return [Case(_case_id(entry), params, body, make)]
        return [Case(_case_id(entry), ("x",), f"z = x * x * (1.0 + {entry.key}(x))",
                     lambda rng: (float(off_integer(rng, ())),))]
    if entry.rule not in SCALAR_DOMAINS:
        raise _missing(entry, "SCALAR_DOMAINS")
    fastmath, expect = False, ()
    if entry.table == "OPERATORS":
        rule = rules.OPERATORS[entry.obj]
        symbol = OPERATOR_SYMBOLS.get(entry.obj)
        if symbol is None:
            raise MissingRecipe(f"add the symbol of operator {entry.obj.__name__} to "
                                "OPERATOR_SYMBOLS in tests/test_rules_table.py")
        params = rule.params
        call = f"{symbol}x" if len(params) == 1 else f"x {symbol} y"
        params = ("x", "y")[:len(params)]
    elif entry.table == "RECIPROCAL":
        params, call = ("x",), f"{entry.key}(x)"
    elif entry.table == "UFUNC_OPERATORS":
        params = ("x", "y")[:len(rules.OPERATORS[rules.UFUNC_OPERATORS[id(entry.obj)]].params)]
        call = f"{entry.key}({', '.join(params)})"
    else:
        rule = rules.CALLS[id(entry.obj)]
        spelling = entry.key
        if entry.table == "CALLS (alias)":
            original = entry.extra["original"]
            if original is None or "vecmath" not in str(getattr(entry.obj, "__module__", "")):
                raise MissingRecipe(f"add a recipe for {entry.obj!r}, given the rule "
                                    f"{entry.rule!r} by rules.alias, in tests/test_rules_table.py")
            spelling, fastmath = _user_spelling(original), True
            expect = (re.escape(f"{naming.VECTOR_MATH}.{entry.obj.__name__}("),)
        params = ("x", "y", "u")[:len(rule.params)]
        call = f"{spelling}({', '.join(params)})"
    sampler = SCALAR_DOMAINS[entry.rule]
    # The rule's first spelling (and a vecmath alias, whose point is that forward mode over
    # reverse code calling it works) to second order; its other spellings, which only resolve
    # to the same rule, to first order.
    first = entry is _first_entry(entry.rule) or entry.table in ("CALLS (alias)", "RECIPROCAL")
    # The Hessian where there are mixed partials (of one operand, H v is all of H).
    cases = [Case(_case_id(entry), params, f"z = {call}", _scalars(sampler, len(params)),
                  fastmath=fastmath, hessian=first and len(params) > 1, rtol=rtol,
                  expect_in_source=expect, modes=ALL_MODES if first else FIRST_ORDER)]
    if entry is _first_entry(entry.rule):
        for label, vparams, body, vsampler in SCALAR_VARIANTS.get(entry.rule, []):
            cases.append(Case(_case_id(entry, label), vparams, body,
                              _scalars(vsampler, len(vparams)), hessian=len(vparams) > 1,
                              rtol=rtol))
    return cases


def _scalars(sampler, count):
    return lambda rng: tuple(float(v) for v in sampler(rng, ((),) * count))


def _first_entry(rule_name):
    """The first operator or call of a rule: it runs the rule's SCALAR_VARIANTS too."""
    return next((e for e in SCALAR if e.table in ("OPERATORS", "CALLS") and e.rule == rule_name),
                None)


def _elementwise_rules() -> list[tuple]:
    """(rule name, spelling on arrays, number of operands, rule) of every scalar rule that NumPy
    applies elementwise: the operators and the rules with a NumPy callable."""
    found = {}
    for op, rule in rules.OPERATORS.items():
        if not _is_array_rule(rule) and op in OPERATOR_SYMBOLS:
            found.setdefault(rule.name, (OPERATOR_SYMBOLS[op], rule))
    for entry in SCALAR:
        if entry.table == "CALLS" and entry.key.startswith("np.") and \
                entry.rule not in NOT_ELEMENTWISE:
            found.setdefault(entry.rule, (entry.key, rules.CALLS[id(entry.obj)]))
    return [(name, spelling, len(rule.params), rule) for name, (spelling, rule) in found.items()]


_PIECEWISE_CALLS = set(rules.NON_DIFFERENTIABLE.values())


def _branches(rule) -> bool:
    """Whether the adjoint templates of a scalar rule branch (``a if c else b``, made
    ``np.where`` on arrays; a comparison) or call a piecewise-constant function (``np.sign``,
    ``math.floor``): what forward mode over their elementwise form must handle apart."""
    for template in rule.adjoints:
        for node in ast.walk(template) if template is not None else ():
            if isinstance(node, (ast.IfExp, ast.Compare)) or isinstance(node, ast.Call) and \
                    ast.unparse(node.func) in _PIECEWISE_CALLS:
                return True
    return False


def _elementwise_case(rule_name, spelling, count, rule) -> Case:
    if rule_name not in SCALAR_DOMAINS:
        raise MissingRecipe(f"add a domain for rule {rule_name!r} to SCALAR_DOMAINS in "
                            "tests/test_rules_table.py")
    params = ("a", "b")[:count]
    if spelling.startswith("np."):
        call = f"{spelling}({', '.join(params)})"
    else:
        call = f"{spelling}a" if count == 1 else f"a {spelling} b"
    shapes = ((2, 3), (3,))[:count]         # the second operand broadcast along the rows
    sampler = SCALAR_DOMAINS[rule_name]
    # Second order on arrays where the elementwise templates branch; the others' templates are
    # np.<f> calls and arithmetic, which every array test differentiates to second order (its
    # loss, sum(sin(z) * w)), and which their scalar tests check to second order.
    return Case(f"elementwise {rule_name}: {call}", params, f"z = {call}",
                lambda rng: tuple(np.asarray(v, dtype=np.float64)
                                  for v in sampler(rng, shapes)),
                modes=ALL_MODES if _branches(rule) else FIRST_ORDER)


def _array_cases(entry: Entry) -> list[Case]:
    if entry.table == "ARRAY_CONSTRUCTORS":
        if entry.key not in CONSTRUCTOR_RECIPES:
            raise _missing(entry, "CONSTRUCTOR_RECIPES")
        params, body, make = CONSTRUCTOR_RECIPES[entry.key]
        # First order: a constructor's result is a constant; forward over reverse code that
        # makes arrays is exercised by the other tests (np.zeros in the fastmath loops, the
        # shadows every reverse code allocates).
        return [Case(_case_id(entry), params, body, make, modes=FIRST_ORDER)]
    if entry.rule not in ARRAY_RECIPES:
        raise _missing(entry, "ARRAY_RECIPES")
    recipes = ARRAY_RECIPES[entry.rule]
    first = next(e for e in ARRAYS if e.rule == entry.rule)
    if first is not entry:
        recipes = recipes[:1]
    cases = []
    for n, recipe in enumerate(recipes):
        if entry.table == "OPERATORS":
            symbol = entry.extra["symbol"]
            if symbol is None:
                raise MissingRecipe(f"add the symbol of operator {entry.obj.__name__} to "
                                    "OPERATOR_SYMBOLS in tests/test_rules_table.py")
            call = f" {symbol} ".join(recipe.operands)
        elif entry.table == "ARRAY_METHOD_FUNCTIONS":       # a.sum(axis=1)
            rest = ", ".join(recipe.operands[1:]) + recipe.keywords
            call = f"{recipe.operands[0]}.{entry.extra['method']}({rest.lstrip(', ')})"
        else:
            call = f"{entry.extra['spelling']}({', '.join(recipe.operands)}{recipe.keywords})"
        cases.append(Case(_case_id(entry, recipe.label if n else ""), recipe.params,
                          f"z = {call}", recipe.make))
    return cases


# ---------------------------------------------------------------------------------------------
# programs whose generated code calls the runtime helpers


def _program(id, params, body, make, **options):
    return Case(id, params, body, make, **options)


PROGRAMS = {case.id: case for case in [
    _program("loop: a scalar overwritten", ("a",), """
        z = 1.0
        for i in range(a.shape[0]):
            z = z * math.sin(a[i]) + a[i]
        """, _args(normal(4))),
    _program("loop: an integer overwritten", ("a", "idx"), """
        z = 0.0
        k = 0
        for i in range(3):
            k = idx[k]
            z = z * a[k] + math.sin(z + a[i])
        """, lambda r: (r.standard_normal(4), np.array([1, 2, 3, 0]))),
    _program("loop: an array written in place", ("a",), """
        y = a.copy()
        for i in range(3):
            y[:] = np.sin(y) * a
        z = np.sum(y * y)
        """, _args(normal(4))),
    _program("index arrays", ("a", "idx"), """
        y = a[idx]
        t = a.copy()
        t[idx] = y * y
        z = np.sum(np.sin(t) * a)
        """, lambda r: (r.standard_normal(5), np.array([0, 2, 3]))),
    _program("writes its argument", ("a",), """
        a[0] = a[0] * a[1]
        z = np.sum(np.sin(a) * a)
        """, _args(normal(4))),
    _program("list display", ("a",), """
        v = np.array([a[0] * a[1], a[2], 1.0])
        z = np.sum(np.sin(v) * v)
        """, _args(normal(3))),
    _program("fastmath: dot product loop", ("a", "b"), """
        z = 0.0
        for j in range(a.shape[0]):
            z += a[j] * b[j]
        """, _args(normal(4), normal(4)), fastmath=True),
    _program("fastmath: matrix-vector loop", ("m", "v"), """
        n, k = m.shape[0], m.shape[1]
        z = np.zeros(n)
        for i in range(n):
            s = 0.0
            for j in range(k):
                s += m[i, j] * v[j]
            z[i] = math.tanh(s)
        """, _args(normal(3, 4), normal(4)), fastmath=True),
    _program("fastmath: matrix-matrix loop", ("p", "q"), """
        n, k, l = p.shape[0], q.shape[0], p.shape[1]
        z = np.zeros((n, k))
        for i in range(n):
            for r in range(k):
                s = 0.0
                for j in range(l):
                    s += p[i, j] * q[r, j]
                z[i, r] = s
        """, _args(normal(3, 4), normal(2, 4)), fastmath=True),
    # extremum_axis_tangent is called by forward code only, which no public transform
    # differentiates again: the program calls it (under a name of its own), forward mode only.
    _program("calls extremum_axis_tangent", ("d", "a"), """
        m = kernel_arrays.max_axis(a, 1)
        z = kernel_arrays.extremum_axis_tangent(d, a, m, 1)
        """, _args(normal(2, 3, 4), distinct((2, 3, 4))), compiled_primal=True,
        imports="from nbautodiff.kernels import arrays as kernel_arrays", modes=("forward",)),
]}

# Spelling in generated code -> the cases whose generated reverse code calls it (or, for a
# "calls ..." program, whose own code does).
GENERATED_CODE_CASES = {
    "_nad_tape.grown": ["loop: a scalar overwritten", "loop: an integer overwritten"],
    "_nad_tape.push_array": ["loop: an array written in place"],
    "_nad_tape.pop_array": ["loop: an array written in place"],
    "_nad_tape.add_into": ["index arrays"],
    "_nad_tape.copy_into": ["writes its argument"],
    "_nad_tape.trip_count": ["loop: a scalar overwritten"],
    "_nad_arrays.unbroadcast": ["elementwise sin: np.sin(a)"],
    "_nad_arrays.zeros_like": ["elementwise sin: np.sin(a)"],
    "_nad_arrays.expand_axis": ["np.sum[axis]"],
    "_nad_arrays.sum_axis": ["np.sum[axis]"],
    "_nad_arrays.mean_axis": ["np.mean[axis]"],
    "_nad_arrays.max_axis": ["np.max[axis]"],
    "_nad_arrays.min_axis": ["np.min[axis]"],
    "_nad_arrays.extremum_adjoint": ["np.max", "np.min"],
    "_nad_arrays.extremum_axis_adjoint": ["np.max[axis]", "np.min[axis]"],
    "_nad_arrays.extremum_axis_tangent": ["calls extremum_axis_tangent"],
    "_nad_arrays.matmul_left": ["np.dot", "np.dot / matrix vector", "np.dot / vector matrix"],
    "_nad_arrays.matmul_right": ["np.dot", "np.dot / matrix vector", "np.dot / vector matrix"],
    "np.ascontiguousarray": ["np.reshape"],
    "_nad_arrays.scatter_add": ["index arrays"],
    "_nad_arrays.stored_adjoint": ["index arrays"],
    "_nad_arrays.zero_at": ["index arrays"],
    "_nad_arrays.positions": ["index arrays"],
    "_nad_arrays.empty_for": ["list display"],
    "_nad_arrays.prod_adjoint": ["np.prod", "np.prod / a zero"],
    "_nad_arrays.det_cofactor": ["np.linalg.det"],
    "_nad_arrays.solve_matrix_adjoint": ["np.linalg.solve", "np.linalg.solve / matrix"],
    "_nad_blas.dot_rows": ["fastmath: dot product loop"],
    "_nad_blas.axpy_into": ["fastmath: dot product loop"],
    "_nad_blas.matvec_rows": ["fastmath: matrix-vector loop"],
    "_nad_blas.ger_into": ["fastmath: matrix-vector loop"],
    "_nad_blas.gemv_t_into": ["fastmath: matrix-vector loop"],
    "_nad_blas.matmul_nt": ["fastmath: matrix-matrix loop"],
    "_nad_blas.mm_into": ["fastmath: matrix-matrix loop"],
    "_nad_blas.mm_t_into": ["fastmath: matrix-matrix loop"],
}


def _all_cases() -> dict[str, Case]:
    cases = dict(PROGRAMS)
    for entry in SCALAR:
        try:
            cases.update((c.id, c) for c in _scalar_cases(entry))
        except MissingRecipe:
            pass
    for entry in ARRAYS:
        try:
            cases.update((c.id, c) for c in _array_cases(entry))
        except MissingRecipe:
            pass
    for rule_name, spelling, count, rule in _elementwise_rules():
        try:
            case = _elementwise_case(rule_name, spelling, count, rule)
            cases[case.id] = case
        except MissingRecipe:
            pass
    return cases


CASES = _all_cases()


def _generated_cases(entry: Entry) -> list[Case]:
    spelling = entry.extra.get("spelling", entry.key) if entry.table == "ARRAY_CALLS" \
        else entry.key
    if spelling not in GENERATED_CODE_CASES:
        raise MissingRecipe(f"add a program whose generated code calls {spelling} "
                            f"({entry.table}: rule {entry.rule!r}) to GENERATED_CODE_CASES in "
                            "tests/test_rules_table.py")
    missing = [c for c in GENERATED_CODE_CASES[spelling] if c not in CASES]
    if missing:
        raise MissingRecipe(f"GENERATED_CODE_CASES[{spelling!r}] names unknown cases {missing}")
    return [CASES[c] for c in GENERATED_CODE_CASES[spelling]]


def _resolve(fn, entry):
    try:
        return fn(entry)
    except MissingRecipe as missing:
        pytest.fail(str(missing))


# ---------------------------------------------------------------------------------------------
# the tests


def test_every_table_entry_has_a_recipe():
    """Every key of every table is enumerated above and has a domain or recipe here (no
    compilation): a rule registered without one fails with what to add."""
    listed = {id(o) for o in rules._CALL_OBJECTS}
    assert set(rules.CALLS) <= listed
    assert {key for key, _ in rules.ARRAY_CALLS} <= listed
    assert set(rules.HELPERS) <= listed
    enumerated = {e.obj for e in SCALAR + ARRAYS if e.table == "OPERATORS"}
    assert enumerated == set(rules.OPERATORS), set(rules.OPERATORS) - enumerated
    problems = []
    for entry in SCALAR:
        try:
            _scalar_cases(entry)
        except MissingRecipe as missing:
            problems.append(str(missing))
    for entry in ARRAYS:
        try:
            _array_cases(entry)
        except MissingRecipe as missing:
            problems.append(str(missing))
    for rule_name, spelling, count, rule in _elementwise_rules():
        try:
            _elementwise_case(rule_name, spelling, count, rule)
        except MissingRecipe as missing:
            problems.append(str(missing))
    for entry in GENERATED:
        try:
            _generated_cases(entry)
        except MissingRecipe as missing:
            problems.append(str(missing))
    # every forward rule of a whole-array primitive is the forward half of a tested entry
    tested = {e.rule for e in ARRAYS + GENERATED}
    problems += [f"ARRAY_TANGENTS[{name!r}] belongs to no tested array rule"
                 for name in rules.ARRAY_TANGENTS if name not in tested]
    problems += [f"EXPECTED_REFUSALS[{c!r}] is no case" for c in EXPECTED_REFUSALS if c not in CASES]
    spellings = {e.extra.get("spelling", e.key) for e in GENERATED}
    problems += [f"GENERATED_CODE_CASES[{s!r}] is no table entry of generated code"
                 for s in GENERATED_CODE_CASES if s not in spellings]
    assert not problems, "\n".join(problems)


def _runs_by_default(entry: Entry) -> bool:
    """Every rule's first spelling and alias; a fixed half of its other spellings (which only
    resolve to the same rule) within the suite's time budget, all in the full suite."""
    first = entry is _first_entry(entry.rule) or entry.table in ("CALLS (alias)", "RECIPROCAL")
    return first or entry.table == "NON_DIFFERENTIABLE" or budget.sampled(entry.key, 2)


SCALAR_RUN = [e for e in SCALAR if _runs_by_default(e)]


@pytest.mark.parametrize("entry", SCALAR_RUN, ids=[e.key for e in SCALAR_RUN])
def test_scalar_rule(entry):
    for case in _resolve(_scalar_cases, entry):
        check_case(CASES.get(case.id, case))


ELEMENTWISE = _elementwise_rules()


@pytest.mark.parametrize("rule_name, spelling, count, rule", ELEMENTWISE,
                         ids=[name for name, _, _, _ in ELEMENTWISE])
def test_elementwise_rule(rule_name, spelling, count, rule):
    try:
        case = _elementwise_case(rule_name, spelling, count, rule)
    except MissingRecipe as missing:
        pytest.fail(str(missing))
    check_case(CASES.get(case.id, case))


@pytest.mark.parametrize("entry", ARRAYS, ids=[e.key for e in ARRAYS])
def test_array_rule(entry):
    for case in _resolve(_array_cases, entry):
        check_case(CASES.get(case.id, case))


@pytest.mark.parametrize("entry", GENERATED, ids=[f"{e.table}:{e.key}" for e in GENERATED])
def test_generated_code_entry(entry):
    """The entry is called by the generated reverse code of its cases (their own code, for a
    program that calls it), and forward mode over that code is right (``check_case``)."""
    spelling = entry.extra.get("spelling", entry.key)
    for case in _resolve(_generated_cases, entry):
        source = check_case(case)
        if "reverse" in case.modes:
            text, pattern = source, re.escape(spelling) + r"\("
        else:                           # the program's own call (under a name of its own)
            text, pattern = case.body, r"\." + re.escape(spelling.split(".")[-1]) + r"\("
        assert re.search(pattern, text), \
            f"{spelling}: not called by the code of {case.id!r}:\n{text}"
