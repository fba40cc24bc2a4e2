"""A corpus of plain, loop-style numeric Python functions for the reverse-mode tests.

Every function here is an ordinary module-level ``def`` (a few are numba ``@njit`` dispatchers)
written the way a user would write it in a notebook: ``math`` and ``numpy`` scalars, NumPy arrays
indexed in loops, branches, early returns, calls to helpers. Each one is registered with ``add``:

* ``name``: the test id (the function's name, plus ``[variant]`` for extra registrations);
* ``make_args(rng)``: random inputs from a NumPy Generator, away from kinks and domain edges
  (logs and square roots of positive numbers, asin/acos inside (-1, 1), no ties for
  abs/min/max/floor/branches, loop bounds that stay in range);
* ``argnums``: which arguments to differentiate (an int or a tuple, as given to ``nad.grad``);
* ``tags``: what the function exercises, for the coverage test (syntax features such as
  ``while`` or ``break`` are also found automatically from the source, see ``features``).

Nothing here imports nbautodiff: the corpus is also plain input for other tools.
"""
from __future__ import annotations

import ast
import inspect
import math
import textwrap
import zlib
from dataclasses import dataclass, field

import numba
import numpy as np

import corpus_helpers as ch
from budget import FULL_CORPUS, share  # noqa: F401 (the corpus tests read them here)
from corpus_helpers import nj_gauss, sigmoid, softplus


@dataclass(frozen=True)
class Case:
    name: str
    fun: object
    make_args: object
    argnums: object = 0
    tags: frozenset = field(default_factory=frozenset)
    rtol: float | None = None

    @property
    def python_function(self):
        return getattr(self.fun, "py_func", self.fun)

    def wrt(self):
        """argnums as a tuple."""
        return (self.argnums,) if isinstance(self.argnums, int) else tuple(self.argnums)

    def is_float32(self, args):
        return any(isinstance(a, np.ndarray) and a.dtype == np.float32 for a in args)

    def __repr__(self):
        return f"Case({self.name})"


CORPUS: list[Case] = []


def add(fun, make_args, argnums=0, *, name=None, tags=(), rtol=None):
    """Register ``fun`` in the corpus; returns ``fun`` unchanged."""
    case = Case(name or fun.__name__, fun, make_args, argnums, frozenset(tags), rtol)
    if any(c.name == case.name for c in CORPUS):
        raise ValueError(f"duplicate corpus name {case.name}")
    CORPUS.append(case)
    return fun


def args_for(case, seed):
    """The random arguments of ``case`` for ``seed``: reproducible, and distinct per case."""
    rng = np.random.default_rng([zlib.crc32(case.name.encode()), seed])
    return case.make_args(rng)


# --------------------------------------------------------------------------------------------
# argument factories
# --------------------------------------------------------------------------------------------

def unif(rng, lo, hi, shape=None, dtype=np.float64):
    if shape is None:
        return float(rng.uniform(lo, hi))
    return rng.uniform(lo, hi, shape).astype(dtype)


def signed(rng, lo, hi, shape=None):
    """Magnitude in [lo, hi] with a random sign (keeps values away from 0)."""
    if shape is None:
        return float(rng.uniform(lo, hi) * rng.choice([-1.0, 1.0]))
    return rng.uniform(lo, hi, shape) * rng.choice([-1.0, 1.0], shape)


def off_integer(rng, lo, hi, shape=None, margin=0.15):
    """Values in [lo, hi) whose fractional part lies in [margin, 1 - margin]."""
    k = rng.integers(lo, hi, shape)
    f = rng.uniform(margin, 1.0 - margin, shape)
    if shape is None:
        return float(k + f)
    return (k + f).astype(np.float64)


def spaced(rng, n, lo, hi):
    """n distinct values in [lo, hi], pairwise at least 0.4 * (hi - lo) / (n - 1) apart, shuffled."""
    base = np.linspace(lo, hi, n)
    d = (hi - lo) / max(n - 1, 1)
    vals = base + rng.uniform(-0.3 * d, 0.3 * d, n)
    rng.shuffle(vals)
    return vals


def f32(a):
    return np.asarray(a, dtype=np.float32)


# ============================================================================================
# 1. math and NumPy scalar functions: one function per rule, both spellings where NumPy has one
# ============================================================================================

def rule_sin(x, y):
    return math.sin(x) * y + np.sin(x * y)


add(rule_sin, lambda r: (unif(r, -2, 2), unif(r, -2, 2)), (0, 1), tags={"float_scalar"})


def rule_cos(x, y):
    return math.cos(x) + np.cos(x * y) * y


add(rule_cos, lambda r: (unif(r, -2, 2), unif(r, -2, 2)), (0, 1), tags={"float_scalar"})


def rule_tan(x):
    return math.tan(x) + np.tan(0.5 * x) * x


add(rule_tan, lambda r: (unif(r, -1.2, 1.2),), tags={"float_scalar"})


def rule_asin(x):
    s = 0.0
    for i in range(len(x)):
        s += math.asin(x[i]) * (i + 1) + np.arcsin(0.5 * x[i])
    return s


add(rule_asin, lambda r: (unif(r, -0.9, 0.9, 6),))


def rule_acos(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += math.acos(x[i]) * x[i] - np.arccos(x[i] * x[i])
    return s


add(rule_acos, lambda r: (signed(r, 0.1, 0.9, 6),))


def rule_atan(x, y):
    return math.atan(x * y) + np.arctan(x - y)


add(rule_atan, lambda r: (unif(r, -2, 2), unif(r, -2, 2)), (0, 1), tags={"float_scalar"})


def rule_atan2(y, x):
    s = 0.0
    for i in range(len(y)):
        s += math.atan2(y[i], x[i]) * (i + 1) + np.arctan2(x[i], y[i])
    return s


# all four quadrants, away from the axes (and so from atan2's branch cut)
add(rule_atan2, lambda r: (signed(r, 0.2, 2.0, 8), signed(r, 0.2, 2.0, 8)), (0, 1))


def rule_sinh(x):
    return math.sinh(x) * np.sinh(0.3 * x) + math.sinh(x)


add(rule_sinh, lambda r: (unif(r, -2, 2),), tags={"float_scalar"})


def rule_cosh(x):
    return math.cosh(x) / np.cosh(0.5 * x + 0.1)


add(rule_cosh, lambda r: (unif(r, -2, 2),), tags={"float_scalar"})


def rule_tanh(x, y):
    return math.tanh(x * y) + np.tanh(x) * y


add(rule_tanh, lambda r: (unif(r, -2, 2), unif(r, -2, 2)), (0, 1), tags={"float_scalar"})


def rule_exp(x):
    return math.exp(x) - np.exp(-x * x)


add(rule_exp, lambda r: (unif(r, -2, 2),), tags={"float_scalar"})


def rule_expm1(x):
    return math.expm1(x) * np.expm1(0.5 * x) + math.expm1(-x)


add(rule_expm1, lambda r: (unif(r, -2, 2),), tags={"float_scalar"})


def rule_log(x):
    return math.log(x) + np.log(x * x + 1.0)


add(rule_log, lambda r: (unif(r, 0.2, 5.0),), tags={"float_scalar"})


def rule_log1p(x):
    s = 0.0
    for i in range(len(x)):
        s += math.log1p(x[i]) * np.log1p(x[i] * x[i])
    return s


add(rule_log1p, lambda r: (unif(r, -0.5, 3.0, 7),))


def rule_log10(x):
    return math.log10(x) + np.log10(3.0 * x) * x


add(rule_log10, lambda r: (unif(r, 0.2, 5.0),), tags={"float_scalar"})


def rule_log2(x):
    return math.log2(x) * x + np.log2(x + 1.0)


add(rule_log2, lambda r: (unif(r, 0.2, 5.0),), tags={"float_scalar"})


def rule_sqrt(x, y):
    return math.sqrt(x) + np.sqrt(x * y)


add(rule_sqrt, lambda r: (unif(r, 0.2, 4.0), unif(r, 0.2, 4.0)), (0, 1), tags={"float_scalar"})


def rule_pow(x, y):
    return math.pow(x, y) + np.power(x, 1.5) + np.power(2.0, y) + np.power(x, y)


add(rule_pow, lambda r: (unif(r, 0.3, 3.0), unif(r, -1.5, 2.5)), (0, 1), tags={"float_scalar"})


def rule_starstar(x, y, n):
    return x ** 2 + x ** 3.5 + x ** y + y ** n + 2.0 ** x + x ** -1.5 + (x * y) ** 0.5


add(rule_starstar, lambda r: (unif(r, 0.3, 3.0), unif(r, 0.3, 2.0), int(r.integers(2, 5))),
    (0, 1), tags={"float_scalar", "int_scalar", "int_mixed"})


def rule_builtin_pow(x):
    return pow(x, 3) + pow(x, 0.5) * x


add(rule_builtin_pow, lambda r: (unif(r, 0.3, 3.0),), tags={"float_scalar"})


def rule_hypot(x, y):
    return math.hypot(x, y) + np.hypot(2.0 * x, y - 1.0) * x


add(rule_hypot, lambda r: (unif(r, 0.5, 2.0), unif(r, -2.0, 2.0)), (0, 1), tags={"float_scalar"})


def rule_erf(x):
    return math.erf(x) * x + math.erf(0.5 * x - 0.3)


add(rule_erf, lambda r: (unif(r, -2, 2),), tags={"float_scalar"})


def rule_erfc(x):
    s = 0.0
    for i in range(len(x)):
        s += math.erfc(x[i]) ** 2 + math.erfc(-x[i]) * x[i]
    return s


add(rule_erfc, lambda r: (unif(r, -2, 2, 6),))


def rule_abs(x):
    s = 0.0
    for i in range(len(x)):
        s += abs(x[i]) * x[i] + np.abs(2.0 * x[i]) + abs(x[i] - 3.0)
    return s


add(rule_abs, lambda r: (signed(r, 0.2, 2.0, 8),))


def rule_fabs(x):
    s = 0.0
    for i in range(len(x)):
        s += math.fabs(x[i]) + np.fabs(x[i]) * x[i]
    return s


add(rule_fabs, lambda r: (signed(r, 0.2, 2.0, 8),))


def rule_minmax(x, y):
    s = 0.0
    for i in range(len(x)):
        s += 2.0 * min(x[i], y[i]) + max(x[i], y[i]) ** 2 + min(x[i], 0.5) + max(0.0, y[i])
    return s


def _minmax_args(r):
    while True:
        x = spaced(r, 8, -2.0, 2.0)
        y = x + signed(r, 0.2, 1.0, 8)
        if np.all(np.abs(x - 0.5) > 0.05) and np.all(np.abs(y) > 0.05):
            return x, y


add(rule_minmax, _minmax_args, (0, 1))


def rule_np_minmax(x, y):
    s = 0.0
    for i in range(len(x)):
        s += np.minimum(x[i], y[i]) * x[i] + np.maximum(x[i], y[i])
    return s


add(rule_np_minmax, _minmax_args, (0, 1))


def rule_floor_ceil(x):
    s = 0.0
    for i in range(len(x)):
        k = math.floor(x[i])
        c = math.ceil(x[i])
        s += (x[i] - k) * (c - x[i]) + k * x[i]
    return s


add(rule_floor_ceil, lambda r: (off_integer(r, -3, 3, 8),), tags={"nondiff"})


def rule_np_floor_ceil(x):
    s = 0.0
    for i in range(len(x)):
        s += np.floor(x[i]) * x[i] + np.ceil(2.0 * x[i]) + (x[i] - np.floor(x[i])) ** 2
    return s


# 2 * x must also stay away from integers: fractional part of x in [0.1, 0.4] or [0.6, 0.9]
add(rule_np_floor_ceil,
    lambda r: (r.integers(-3, 3, 8) + r.uniform(0.1, 0.4, 8) + 0.5 * r.integers(0, 2, 8),),
    tags={"nondiff"})


def rule_copysign(x, y):
    s = 0.0
    for i in range(len(x)):
        s += math.copysign(x[i], y[i]) * x[i] + np.copysign(x[i] * x[i], y[i]) + y[i] * 0.5
    return s


add(rule_copysign, lambda r: (signed(r, 0.2, 2.0, 7), signed(r, 0.2, 2.0, 7)), (0, 1))


# ============================================================================================
# 2. scalars: float and int arguments, reassignment, tuple assignment, int code
# ============================================================================================

def int_power(x, n):
    r = 1.0
    for i in range(n):
        r = r * x
    return r + x ** n - n * x


add(int_power, lambda r: (unif(r, -1.5, 1.5), int(r.integers(2, 7))),
    tags={"float_scalar", "int_scalar", "int_mixed"})


def fib_tanh(x, y, n):
    a, b = x, y
    for i in range(n):
        a, b = b, a + 0.5 * b * math.tanh(a)
    return b


add(fib_tanh, lambda r: (unif(r, -1, 1), unif(r, -1, 1), 6), (0, 1),
    tags={"float_scalar", "int_scalar", "reassign_loop"})


def rotate_point(px, py, theta, steps):
    c, s = math.cos(theta), math.sin(theta)
    for k in range(steps):
        px, py = c * px - s * py, s * px + c * py
    return px * px + 2.0 * py


add(rotate_point, lambda r: (unif(r, -1, 1), unif(r, -1, 1), unif(r, 0.1, 1.0), 5), (0, 1, 2),
    tags={"float_scalar", "reassign_loop"})


def reassign_many(x):
    t = x * x
    t = math.sin(t) + x
    t = t * t - x
    t = math.exp(-t)
    t = t / (1.0 + x * x)
    t = t + x
    return t


add(reassign_many, lambda r: (unif(r, -1.5, 1.5),), tags={"float_scalar", "reassign"})


def reassign_in_loop(x, n):
    y = x
    for i in range(n):
        z = y * y
        y = math.cos(z) + 0.5 * y
        z = y - x
        y = y + 0.1 * z
    return y


add(reassign_in_loop, lambda r: (unif(r, -1, 1), 7), tags={"float_scalar", "reassign_loop"})


def mixed_int_code(x, n):
    k = (n * 7 + 3) % 5
    m = n // 2
    idx = (k + m) % len(x)
    j = k
    while j >= len(x):
        j -= len(x)
    return x[idx] * n + x[m] ** 2 * k + x[j] * (k - m)


add(mixed_int_code, lambda r: (unif(r, -1, 1, 6), int(r.integers(3, 12))),
    tags={"int_scalar", "int_mixed", "nondiff"})


def trapezoid_integral(a, n, m):
    h = 1.0 / n
    s = 0.5 * (math.sin(0.0) + math.sin(a))
    for i in range(1, n):
        t = i * h
        s += math.sin(a * t)
    return s * h * m


add(trapezoid_integral, lambda r: (unif(r, 0.5, 3.0), 20, 3),
    tags={"float_scalar", "int_scalar", "int_mixed"})


def damped_oscillator(x0, v0, k, c, n):
    dt = 0.05
    x = x0
    v = v0
    for i in range(n):
        a = -k * x - c * v
        v = v + dt * a
        x = x + dt * v
    return x * x + 0.25 * v * v


add(damped_oscillator,
    lambda r: (unif(r, -1, 1), unif(r, -1, 1), unif(r, 0.5, 2.0), unif(r, 0.1, 0.5), 30),
    (0, 1, 2, 3), tags={"float_scalar", "reassign_loop"})


def logistic_map(x, rate, n):
    for i in range(n):
        x = rate * x * (1.0 - x)
    return x


add(logistic_map, lambda r: (unif(r, 0.2, 0.8), unif(r, 2.0, 2.9), 8), (0, 1),
    tags={"float_scalar", "reassign_loop"})


def rk4_logistic(y0, k, n):
    dt = 0.1
    y = y0
    for i in range(n):
        k1 = k * y * (1.0 - y)
        y1 = y + 0.5 * dt * k1
        k2 = k * y1 * (1.0 - y1)
        y2 = y + 0.5 * dt * k2
        k3 = k * y2 * (1.0 - y2)
        y3 = y + dt * k3
        k4 = k * y3 * (1.0 - y3)
        y = y + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return y


add(rk4_logistic, lambda r: (unif(r, 0.1, 0.5), unif(r, 0.5, 2.0), 10), (0, 1),
    tags={"float_scalar", "reassign_loop"})


def lotka_volterra(x0, y0, a, b, steps):
    dt = 0.02
    x, y = x0, y0
    for t in range(steps):
        dx = a * x - b * x * y
        dy = b * x * y - 0.8 * y
        x, y = x + dt * dx, y + dt * dy
    return x + 2.0 * y


add(lotka_volterra,
    lambda r: (unif(r, 0.5, 1.5), unif(r, 0.5, 1.5), unif(r, 0.5, 1.5), unif(r, 0.2, 0.6), 25),
    (0, 1, 2, 3), tags={"float_scalar", "reassign_loop"})


def int_only_weights(x, n):
    # integer arithmetic feeding float math; the int results contribute no derivative
    total = 0
    for i in range(n):
        total += i * i % 7
    w = total / (n + 1)
    return w * x * x + (total // 3) * x


add(int_only_weights, lambda r: (unif(r, -2, 2), 9), tags={"int_scalar", "int_mixed", "nondiff"})


# ============================================================================================
# 3. control flow: while, if/elif/else, break, continue, early return, ternaries, bool ops
# ============================================================================================

def newton_sqrt(a):
    """Square root by Newton's method, stopped by a tolerance."""
    x = a
    it = 0
    while abs(x * x - a) > 1e-14 * a and it < 60:
        x = 0.5 * (x + a / x)
        it += 1
    return x


add(newton_sqrt, lambda r: (unif(r, 0.5, 9.0),), tags={"float_scalar"})


def newton_kepler(m, e):
    """Solve Kepler's equation E - e sin E = M; E(M, e) by Newton with break."""
    big_e = m
    it = 0
    while it < 40:
        f = big_e - e * math.sin(big_e) - m
        dfe = 1.0 - e * math.cos(big_e)
        step = f / dfe
        big_e = big_e - step
        it += 1
        if abs(step) < 1e-15:
            break
    return big_e


add(newton_kepler, lambda r: (unif(r, 0.3, 2.5), unif(r, 0.05, 0.6)), (0, 1),
    tags={"float_scalar"})


def newton_cubic_fixed(c):
    # fixed number of Newton steps for x^3 + x = c
    x = 0.0
    k = 0
    while k < 12:
        x = x - (x * x * x + x - c) / (3.0 * x * x + 1.0)
        k += 1
    return x


add(newton_cubic_fixed, lambda r: (unif(r, -3.0, 3.0),), tags={"float_scalar"})


def geometric_while(x, r):
    s = 0.0
    t = x
    i = 0
    while t > 1e-3 * x and i < 100:
        s += t
        t = t * r
        i += 1
    return s


# r = 1e-3 ** (1 / (k + u)): the trip count (about k + u) stays put under small perturbations
add(geometric_while,
    lambda r: (unif(r, 0.5, 2.0), 1e-3 ** (1.0 / (int(r.integers(6, 12)) + unif(r, 0.2, 0.8)))),
    (0, 1),
    tags={"float_scalar", "data_bounds"})


def while_true_break(x):
    s = 0.0
    k = 0
    while True:
        s += math.sin(x * k) / (k + 1)
        k += 1
        if k >= 6:
            break
    return s


add(while_true_break, lambda r: (unif(r, -2, 2),), tags={"float_scalar"})


def piecewise_elif(x):
    s = 0.0
    for i in range(len(x)):
        v = x[i]
        if v < -1.0:
            y = -2.0 * v - 1.0
        elif v < 0.0:
            y = v * v
        elif v < 1.0:
            y = math.sin(v)
        else:
            y = math.log(v) + math.sin(1.0)
        s += y * (1.0 + 0.1 * i)
    return s


add(piecewise_elif, lambda r: (r.choice([-1.5, -0.5, 0.5, 1.5], 10) + r.uniform(-0.4, 0.4, 10),))


def early_return_scalar(x):
    if x > 2.0:
        return x * x
    elif x < -1.0:
        return -x * math.exp(x)
    if x > 0.5:
        return math.sin(x) + 1.0
    return math.cos(x) * x


for _lo, _hi, _tag in ((2.2, 3.0, "gt2"), (-2.0, -1.2, "lt-1"), (0.7, 1.8, "mid"),
                       (-0.8, 0.3, "else")):
    add(early_return_scalar, (lambda lo, hi: lambda r: (unif(r, lo, hi),))(_lo, _hi),
        name=f"early_return_scalar[{_tag}]", tags={"float_scalar"})


def early_return_loop(x, thr):
    s = 0.0
    for i in range(len(x)):
        if x[i] > thr:
            return s + x[i] * i
        s += math.exp(-x[i]) * thr
    return s


def _early_loop_args(r, hit):
    x = unif(r, -1.0, 0.5, 9)
    if hit:
        x[int(r.integers(2, 8))] = 1.5
    return x, 1.0


add(early_return_loop, lambda r: _early_loop_args(r, True), (0, 1),
    name="early_return_loop[hit]", tags={"return_in_loop"})
add(early_return_loop, lambda r: _early_loop_args(r, False), (0, 1),
    name="early_return_loop[miss]", tags={"return_in_loop"})


def first_root_scan(c, h):
    # scan f(t) = cos(c t) for the first sign change, return inside the loop
    t = 0.0
    f_prev = 1.0
    for k in range(1, 200):
        t = k * h
        f = math.cos(c * t)
        if f < 0.0:
            # linear interpolation between the last two samples
            return t - h * f / (f - f_prev)
        f_prev = f
    return t


add(first_root_scan, lambda r: (unif(r, 1.0, 2.0), 0.05 + 0.001 * unif(r, 0, 1)), (0, 1),
    tags={"return_in_loop", "float_scalar"})


def break_when_exceeds(x, limit):
    s = 0.0
    for i in range(len(x)):
        s += x[i] * x[i]
        if s > limit:
            break
    return s * x[0]


def _break_args(r):
    x = unif(r, 0.5, 1.0, 10)
    cs = np.cumsum(x * x)
    limit = 0.5 * (cs[4] + cs[5])
    return x, limit


add(break_when_exceeds, _break_args, (0, 1))


def continue_skip(x):
    s = 0.0
    for i in range(len(x)):
        if x[i] < 0.0:
            continue
        if i % 3 == 0:
            continue
        s += x[i] ** 1.5
    return s


add(continue_skip, lambda r: (signed(r, 0.2, 2.0, 12),))


def nested_break_continue(a):
    n, m = a.shape
    s = 0.0
    for i in range(n):
        if i == 1:
            continue
        for j in range(m):
            if a[i, j] < -0.5:
                break
            if j % 2 == 1:
                continue
            s += a[i, j] * a[i, j] * (i + 1)
    return s


def _nbc_args(r):
    a = unif(r, -0.3, 1.0, (4, 6))
    a[0, 3] = -0.9
    a[2, 1] = -0.8
    return (a,)


add(nested_break_continue, _nbc_args, tags={"array2d", "nested"})


def ternary_ops(x):
    s = 0.0
    for i in range(len(x)):
        v = x[i]
        s += v if v > 0.0 else 0.1 * v
        w = math.exp(v) if i % 2 == 0 else math.cos(v)
        s += w * (2.0 if v < 0.5 else 3.0)
    return s


add(ternary_ops, lambda r: (r.choice([-0.45, 0.25, 0.8], 10) + unif(r, -0.15, 0.15, 10),))


def leaky_relu_sum(x, alpha):
    s = 0.0
    for i in range(len(x)):
        s += x[i] if x[i] > 0 else alpha * x[i]
    return s * s


add(leaky_relu_sum, lambda r: (signed(r, 0.1, 2.0, 9), unif(r, 0.01, 0.3)), (0, 1))


def boolops_cond(x, y):
    s = 0.0
    for i in range(len(x)):
        if x[i] > 0.0 and y[i] > 0.0:
            s += x[i] * y[i]
        elif x[i] < 0.0 or not (y[i] < 0.5):
            s += math.sin(x[i]) - y[i]
        else:
            s += x[i] * x[i] * y[i]
    return s


add(boolops_cond,
    lambda r: (signed(r, 0.1, 2.0, 12), r.choice([-1.0, 0.25, 1.2], 12) + unif(r, -0.15, 0.15, 12)),
    (0, 1))


def not_and_or_scalar(x, y):
    if not (x > 1.0) and (y > 0.0 or x < -1.0):
        return x * y
    return x + y * y


for _x, _y, _tag in (((0.2, 0.8), (0.2, 0.9), "first"), ((1.2, 2.0), (-1, 1), "second"),
                     ((-2.0, -1.3), (-1.0, -0.2), "third")):
    add(not_and_or_scalar,
        (lambda xs, ys: lambda r: (unif(r, *xs), unif(r, *ys)))(_x, _y), (0, 1),
        name=f"not_and_or_scalar[{_tag}]", tags={"float_scalar"})


def compare_count(x):
    cnt = 0
    s = 0.0
    for i in range(len(x)):
        if x[i] > 0.5:
            cnt += 1
        s += x[i] * x[i]
    return cnt * s / len(x)


add(compare_count, lambda r: (spaced(r, 10, 0.0, 1.0) + 0.02,), tags={"nondiff"})


# ============================================================================================
# 4. range: any start/stop/step, negative steps, nested, data-dependent bounds
# ============================================================================================

def strided_sum(x, start, stop, step):
    s = 0.0
    for i in range(start, stop, step):
        s += x[i] * x[i] * (i + 1) + math.sin(x[i])
    return s


for _args, _tag in (((1, 10, 2), "1:10:2"), ((9, -1, -1), "9:-1:-1"), ((8, 0, -3), "8:0:-3"),
                    ((0, 10, 1), "0:10:1"), ((3, 3, 1), "empty"), ((2, 9, 4), "2:9:4")):
    add(strided_sum, (lambda a: lambda r: (unif(r, -1, 1, 10),) + a)(_args),
        name=f"strided_sum[{_tag}]", tags={"int_scalar", "range_args"})


def range_literal_steps(x):
    n = len(x)
    s = 0.0
    for i in range(0, n, 3):
        s += x[i] ** 2
    for i in range(n - 1, 0, -2):
        s += x[i] * x[i - 1]
    for i in range(3, -1, -1):
        s -= math.cos(x[i]) * i
    for i in range(n - 2, 1, -3):
        s += x[i + 1] * x[i - 2]
    return s


add(range_literal_steps, lambda r: (unif(r, -1, 1, 11),), tags={"range_negative"})


def horner(c, x):
    s = 0.0
    for i in range(len(c) - 1, -1, -1):
        s = s * x + c[i]
    return s


add(horner, lambda r: (unif(r, -1, 1, 6), unif(r, -1.5, 1.5)), (0, 1),
    tags={"range_negative", "reassign_loop"})


def clenshaw_chebyshev(c, x):
    b1 = 0.0
    b2 = 0.0
    for k in range(len(c) - 1, 0, -1):
        b1, b2 = 2.0 * x * b1 - b2 + c[k], b1
    return x * b1 - b2 + c[0]


add(clenshaw_chebyshev, lambda r: (unif(r, -1, 1, 7), unif(r, -0.9, 0.9)), (0, 1),
    tags={"range_negative", "reassign_loop"})


def reverse_cumsum_sq(x):
    n = len(x)
    c = np.zeros_like(x)
    acc = 0.0
    for i in range(n - 1, -1, -1):
        acc += x[i]
        c[i] = acc * acc
    s = 0.0
    for i in range(n):
        s += c[i] * (i + 1)
    return s


add(reverse_cumsum_sq, lambda r: (unif(r, -1, 1, 8),), tags={"range_negative", "np_alloc"})


def nested_triangular(a):
    n = a.shape[0]
    s = 0.0
    for i in range(n):
        for j in range(i, n):
            s += a[i, j] * a[j, i] + math.sin(a[i, j])
    return s


add(nested_triangular, lambda r: (unif(r, -1, 1, (5, 5)),), tags={"array2d", "nested"})


def nested_three(t):
    s = 0.0
    for i in range(t.shape[0]):
        for j in range(i + 1):
            for k in range(t.shape[2] - 1, j - 1, -1):
                s += t[i, j, k] * t[i, j, k] * (1 + i - j)
    return s


add(nested_three, lambda r: (unif(r, -1, 1, (3, 3, 4)),),
    tags={"array3d", "nested", "range_negative"})


def prefix_until_threshold(x, thresh):
    n = len(x)
    m = 0
    while m < n and x[m] < thresh:
        m += 1
    s = 0.0
    for i in range(m, n):
        s += x[i] ** 2
    for i in range(m):
        s += math.sin(x[i]) * thresh
    return s


def _prefix_args(r):
    x = np.sort(spaced(r, 9, 0.0, 2.0))
    x[[2, 6]] = x[[6, 2]]
    thresh = float(0.5 * (x[4] + x[5]))
    return x, thresh


add(prefix_until_threshold, _prefix_args, (0, 1), tags={"data_bounds"})


def count_then_loop(x):
    k = 0
    for i in range(len(x)):
        if x[i] > 0.0:
            k += 1
    s = 0.0
    for j in range(k):
        s += x[j] * x[j]
    for j in range(k, len(x)):
        s -= x[j] * 0.5
    return s


add(count_then_loop, lambda r: (signed(r, 0.1, 1.0, 10),), tags={"data_bounds"})


def loop_bound_from_value(x, a):
    # the trip count is an int computed from a float input: floor contributes no derivative
    n = math.floor(a)
    s = 0.0
    for i in range(n):
        s += math.exp(-a * i) * x[i % len(x)]
    return s


add(loop_bound_from_value, lambda r: (unif(r, -1, 1, 5), off_integer(r, 3, 9)), (0, 1),
    tags={"data_bounds", "nondiff"})


# ============================================================================================
# 5. arrays: 1-D, 2-D, 3-D; indexing, indexed and augmented assignment, allocation, copies
# ============================================================================================

def rosenbrock(x):
    s = 0.0
    for i in range(len(x) - 1):
        s += 100.0 * (x[i + 1] - x[i] * x[i]) ** 2 + (1.0 - x[i]) ** 2
    return s


add(rosenbrock, lambda r: (unif(r, -1.5, 1.5, 6),), tags={"array1d"})
add(rosenbrock, lambda r: (f32(unif(r, -1.5, 1.5, 6)),), name="rosenbrock[f32]",
    tags={"float32"})


def sum_sq_shape(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * x[i]
    return 0.5 * s


add(sum_sq_shape, lambda r: (unif(r, -2, 2, 7),), tags={"array1d"})


def variance_two_pass(x):
    n = len(x)
    mean = 0.0
    for i in range(n):
        mean += x[i]
    mean = mean / n
    var = 0.0
    for i in range(n):
        var += (x[i] - mean) ** 2
    return var / (n - 1)


add(variance_two_pass, lambda r: (unif(r, -2, 2, 9),), tags={"reassign"})


def welford_std(x):
    mean = 0.0
    m2 = 0.0
    count = 0
    for i in range(len(x)):
        count += 1
        delta = x[i] - mean
        mean += delta / count
        m2 += delta * (x[i] - mean)
    return math.sqrt(m2 / (count - 1))


add(welford_std, lambda r: (unif(r, -2, 2, 9),), tags={"reassign_loop", "int_mixed"})


def normalize_inplace(x):
    # writes into its input array
    s = 0.0
    for i in range(len(x)):
        s += x[i] * x[i]
    s = math.sqrt(s)
    for i in range(len(x)):
        x[i] = x[i] / s
    t = 0.0
    for i in range(len(x)):
        t += x[i] ** 3 * (i + 1)
    return t


add(normalize_inplace, lambda r: (unif(r, -2, 2, 6),), tags={"writes_input", "inplace"})


def scale_input_inplace(x, c):
    for i in range(len(x)):
        x[i] *= c
        x[i] += 1.0
        x[i] -= 0.25 * x[i] * x[i]
    s = 0.0
    for i in range(len(x)):
        s += x[i] * x[i]
    return s


add(scale_input_inplace, lambda r: (unif(r, -1, 1, 7), unif(r, 0.5, 1.5)), (0, 1),
    tags={"writes_input", "inplace", "aug_assign"})


def copy_then_modify(x):
    y = x.copy()
    n = len(y)
    for i in range(n):
        y[i] = y[i] * y[i]
    y[0] = y[n - 1] * 3.0
    s = 0.0
    for i in range(n):
        s += y[i] * x[i]
    return s


add(copy_then_modify, lambda r: (unif(r, -1, 1, 6),), tags={"copy", "inplace"})


def cumprod_sum(x):
    n = len(x)
    c = np.ones(n)
    c[0] = x[0]
    for i in range(1, n):
        c[i] = c[i - 1] * x[i]
    s = 0.0
    for i in range(n):
        s += c[i]
    return s


add(cumprod_sum, lambda r: (unif(r, 0.5, 1.5, 8),), tags={"np_alloc"})
add(cumprod_sum, lambda r: (f32(unif(r, 0.5, 1.5, 8)),), name="cumprod_sum[f32]",
    tags={"float32"})


def prefix_sums_empty(x):
    n = len(x)
    c = np.empty(n)
    c[0] = x[0]
    for i in range(1, n):
        c[i] = c[i - 1] + x[i]
    s = 0.0
    for i in range(n):
        s += c[i] * c[i]
    return s


add(prefix_sums_empty, lambda r: (unif(r, -1, 1, 8),), tags={"np_alloc"})


def zeros_like_accumulate(x, y):
    z = np.zeros_like(x)
    for i in range(len(x)):
        z[i] += x[i] * y[i]
        z[i] -= 0.5 * y[i]
        z[i] *= 1.0 + x[i]
    s = 0.0
    for i in range(len(z)):
        s += z[i] * z[i]
    return s


add(zeros_like_accumulate, lambda r: (unif(r, -1, 1, 7), unif(r, -1, 1, 7)), (0, 1),
    tags={"np_alloc", "aug_assign"})


def ones_weights(x):
    w = np.ones(len(x))
    for i in range(len(x)):
        w[i] = w[i] * (1.0 + 0.1 * i) + x[i] * 0.2
    s = 0.0
    for i in range(len(x)):
        s += w[i] * x[i]
    return s


add(ones_weights, lambda r: (unif(r, -1, 1, 7),), tags={"np_alloc"})


def empty_like_2d(a):
    b = np.empty_like(a)
    n, m = a.shape
    for i in range(n):
        for j in range(m):
            b[i, j] = a[i, j] * a[i, (j + 1) % m]
    s = 0.0
    for i in range(n):
        for j in range(m):
            s += b[i, j] * (i - j)
    return s


add(empty_like_2d, lambda r: (unif(r, -1, 1, (4, 5)),), tags={"np_alloc", "array2d"})


def zeros_2d_aug(a):
    n, m = a.shape
    out = np.zeros((n, m))
    for i in range(n):
        for j in range(m):
            out[i, j] += a[i, j] * 2.0
            out[i, j] -= a[(i + 1) % n, j] * a[i, j]
            out[i, j] *= a[i, j]
    s = 0.0
    for i in range(n):
        for j in range(m):
            s += out[i, j]
    return s


add(zeros_2d_aug, lambda r: (unif(r, -1, 1, (4, 3)),),
    tags={"np_alloc", "array2d", "aug_assign"})


def matvec_quad(a, x):
    n, m = a.shape
    y = np.zeros(n)
    for i in range(n):
        for j in range(m):
            y[i] += a[i, j] * x[j]
    s = 0.0
    for i in range(n):
        s += y[i] * y[i]
    return 0.5 * s


add(matvec_quad, lambda r: (unif(r, -1, 1, (4, 5)), unif(r, -1, 1, 5)), (0, 1),
    tags={"array2d", "np_alloc"})
add(matvec_quad, lambda r: (f32(unif(r, -1, 1, (4, 5))), f32(unif(r, -1, 1, 5))), (0, 1),
    name="matvec_quad[f32]", tags={"float32", "array2d"})


def matmul_frobenius(a, b):
    n = a.shape[0]
    k = a.shape[1]
    p = b.shape[1]
    c = np.zeros((n, p))
    for i in range(n):
        for j in range(p):
            for l in range(k):
                c[i, j] += a[i, l] * b[l, j]
    s = 0.0
    for i in range(n):
        for j in range(p):
            s += c[i, j] * c[i, j]
    return s


add(matmul_frobenius, lambda r: (unif(r, -1, 1, (3, 4)), unif(r, -1, 1, (4, 2))), (0, 1),
    tags={"array2d", "nested"})


def cholesky_logdet(a):
    n = a.shape[0]
    m = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            acc = 0.0
            for k in range(n):
                acc += a[i, k] * a[j, k]
            m[i, j] = acc
        m[i, i] += n
    lo = np.zeros((n, n))
    for j in range(n):
        d = m[j, j]
        for k in range(j):
            d -= lo[j, k] * lo[j, k]
        lo[j, j] = math.sqrt(d)
        for i in range(j + 1, n):
            v = m[i, j]
            for k in range(j):
                v -= lo[i, k] * lo[j, k]
            lo[i, j] = v / lo[j, j]
    s = 0.0
    for i in range(n):
        s += 2.0 * math.log(lo[i, i])
    return s


add(cholesky_logdet, lambda r: (unif(r, -1, 1, (4, 4)),), tags={"array2d", "nested"})


def power_iteration(a, iters):
    n = a.shape[0]
    v = np.ones(n)
    w = np.empty(n)
    for t in range(iters):
        for i in range(n):
            acc = 0.0
            for j in range(n):
                acc += (a[i, j] + a[j, i]) * v[j]
            w[i] = acc
        norm = 0.0
        for i in range(n):
            norm += w[i] * w[i]
        norm = math.sqrt(norm)
        for i in range(n):
            v[i] = w[i] / norm
    rq = 0.0
    for i in range(n):
        for j in range(n):
            rq += v[i] * (a[i, j] + a[j, i]) * v[j]
    return rq


add(power_iteration, lambda r: (np.eye(4) * 2.0 + unif(r, 0.0, 0.3, (4, 4)), 6),
    tags={"array2d", "inplace", "int_scalar"})


def tensor3_sum(t):
    a, b, c = t.shape
    s = 0.0
    for i in range(a):
        for j in range(b):
            for k in range(c):
                s += t[i, j, k] ** 2 * (1.0 + i) + np.tanh(t[i, j, k]) * (j - k)
    return s


add(tensor3_sum, lambda r: (unif(r, -1, 1, (2, 3, 4)),), tags={"array3d", "nested"})
add(tensor3_sum, lambda r: (f32(unif(r, -1, 1, (2, 3, 4))),), name="tensor3_sum[f32]",
    tags={"array3d", "float32"})


def tensor3_contract(t, v):
    a = t.shape[0]
    b = t.shape[1]
    out = np.zeros((a, b))
    for i in range(a):
        for j in range(b):
            for k in range(t.shape[2]):
                out[i, j] += t[i, j, k] * v[k]
    s = 0.0
    for i in range(a):
        for j in range(b):
            s += math.exp(-out[i, j] ** 2)
    return s


add(tensor3_contract, lambda r: (unif(r, -1, 1, (3, 2, 4)), unif(r, -1, 1, 4)), (0, 1),
    tags={"array3d", "np_alloc"})


def tensor3_write(t):
    a, b, c = t.shape
    out = np.empty((a, b, c))
    for i in range(a):
        for j in range(b):
            for k in range(c):
                out[i, j, k] = t[i, j, k] * t[(i + 1) % a, j, k]
                out[i, j, k] -= 0.5 * t[i, j, (k + 1) % c]
    s = 0.0
    for i in range(a):
        for j in range(b):
            for k in range(c):
                s += out[i, j, k] * (k + 1)
    return s


add(tensor3_write, lambda r: (unif(r, -1, 1, (3, 2, 3)),),
    tags={"array3d", "np_alloc", "aug_assign"})


def image_conv_channels(img, w):
    ch_, h, wd = img.shape
    kh, kw = w.shape
    out = np.zeros((ch_, h - kh + 1, wd - kw + 1))
    for c in range(ch_):
        for i in range(h - kh + 1):
            for j in range(wd - kw + 1):
                for p in range(kh):
                    for q in range(kw):
                        out[c, i, j] += img[c, i + p, j + q] * w[p, q]
    s = 0.0
    for c in range(ch_):
        for i in range(out.shape[1]):
            for j in range(out.shape[2]):
                s += math.tanh(out[c, i, j])
    return s


add(image_conv_channels, lambda r: (unif(r, -1, 1, (2, 4, 4)), unif(r, -1, 1, (2, 2))), (0, 1),
    tags={"array3d", "array2d", "nested", "np_alloc"})


def conv1d_valid(x, w):
    n = len(x)
    m = len(w)
    out = np.zeros(n - m + 1)
    for i in range(n - m + 1):
        for k in range(m):
            out[i] += x[i + k] * w[k]
    s = 0.0
    for i in range(len(out)):
        s += out[i] * out[i]
    return s


add(conv1d_valid, lambda r: (unif(r, -1, 1, 9), unif(r, -1, 1, 3)), (0, 1),
    tags={"np_alloc", "aug_assign"})


def logsumexp(x):
    m = x[0]
    for i in range(1, len(x)):
        if x[i] > m:
            m = x[i]
    s = 0.0
    for i in range(len(x)):
        s += math.exp(x[i] - m)
    return m + math.log(s)


add(logsumexp, lambda r: (spaced(r, 8, -3.0, 3.0),))
add(logsumexp, lambda r: (f32(spaced(r, 8, -3.0, 3.0)),), name="logsumexp[f32]",
    tags={"float32"})


def softmax_xent(logits, label):
    n = len(logits)
    m = logits[0]
    for i in range(n):
        m = max(m, logits[i])
    z = 0.0
    for i in range(n):
        z += np.exp(logits[i] - m)
    return -(logits[label] - m - np.log(z))


add(softmax_xent, lambda r: (spaced(r, 6, -2.0, 2.0), int(r.integers(0, 6))),
    tags={"int_scalar"})


def attention_pool(q, k, v):
    n, d = k.shape
    scores = np.empty(n)
    for i in range(n):
        acc = 0.0
        for j in range(d):
            acc += q[j] * k[i, j]
        scores[i] = acc / math.sqrt(d)
    mx = scores[0]
    for i in range(1, n):
        if scores[i] > mx:
            mx = scores[i]
    z = 0.0
    for i in range(n):
        scores[i] = math.exp(scores[i] - mx)
        z += scores[i]
    out = np.zeros(v.shape[1])
    for i in range(n):
        for j in range(v.shape[1]):
            out[j] += scores[i] / z * v[i, j]
    s = 0.0
    for j in range(len(out)):
        s += out[j] * out[j]
    return s


add(attention_pool,
    lambda r: (unif(r, -1, 1, 3), unif(r, -1, 1, (5, 3)), unif(r, -1, 1, (5, 2))), (0, 1, 2),
    tags={"array2d", "np_alloc", "inplace"})


def layer_norm_loss(x, g, b):
    n = len(x)
    mu = 0.0
    for i in range(n):
        mu += x[i]
    mu /= n
    var = 0.0
    for i in range(n):
        var += (x[i] - mu) * (x[i] - mu)
    var /= n
    inv = 1.0 / math.sqrt(var + 1e-5)
    s = 0.0
    for i in range(n):
        y = (x[i] - mu) * inv * g[i] + b[i]
        s += y * y * (i + 1)
    return s


add(layer_norm_loss, lambda r: (unif(r, -1, 1, 6), unif(r, 0.5, 1.5, 6), unif(r, -1, 1, 6)),
    (0, 1, 2), tags={"aug_assign"})


def mlp_loss(w1, b1, w2, x, target):
    h_n, d = w1.shape
    h = np.empty(h_n)
    for i in range(h_n):
        a = b1[i]
        for j in range(d):
            a += w1[i, j] * x[j]
        h[i] = math.tanh(a)
    y = 0.0
    for i in range(h_n):
        y += w2[i] * h[i]
    return 0.5 * (y - target) ** 2


add(mlp_loss,
    lambda r: (unif(r, -1, 1, (4, 3)), unif(r, -1, 1, 4), unif(r, -1, 1, 4), unif(r, -1, 1, 3),
               unif(r, -1, 1)), (0, 1, 2, 3, 4), tags={"array2d"})


def rnn_loss(wh, wx, xs, h0):
    steps, d_in = xs.shape
    hn = wh.shape[0]
    h = h0.copy()
    for t in range(steps):
        h_new = np.empty(hn)
        for i in range(hn):
            a = 0.0
            for j in range(hn):
                a += wh[i, j] * h[j]
            for k in range(d_in):
                a += wx[i, k] * xs[t, k]
            h_new[i] = math.tanh(a)
        h = h_new
    s = 0.0
    for i in range(hn):
        s += h[i] * (i + 1)
    return s


add(rnn_loss,
    lambda r: (unif(r, -0.8, 0.8, (3, 3)), unif(r, -0.8, 0.8, (3, 2)), unif(r, -1, 1, (5, 2)),
               unif(r, -0.5, 0.5, 3)), (0, 1, 2, 3),
    tags={"array2d", "reassign_loop", "copy", "np_alloc"})


def gru_like_inplace(w, xs, h0):
    # a gated recurrent cell updating its state array in place
    n = len(h0)
    h = h0.copy()
    for t in range(xs.shape[0]):
        for i in range(n):
            z = sigmoid(w[i, 0] * xs[t] + w[i, 1] * h[i])
            cand = math.tanh(w[i, 2] * xs[t] + w[i, 3] * h[(i + 1) % n])
            h[i] = (1.0 - z) * h[i] + z * cand
    s = 0.0
    for i in range(n):
        s += h[i] * h[i]
    return s


add(gru_like_inplace, lambda r: (unif(r, -1, 1, (3, 4)), unif(r, -1, 1, 5), unif(r, -1, 1, 3)),
    (0, 1, 2), tags={"inplace", "array2d", "call_imported"})


def linreg_loss(w, b, xmat, y):
    n, d = xmat.shape
    loss = 0.0
    for i in range(n):
        pred = b
        for j in range(d):
            pred += xmat[i, j] * w[j]
        r = pred - y[i]
        loss += r * r
    return loss / n


add(linreg_loss,
    lambda r: (unif(r, -1, 1, 3), unif(r, -1, 1), unif(r, -1, 1, (6, 3)), unif(r, -1, 1, 6)),
    (0, 1, 2), tags={"array2d", "float_scalar"})


def huber_loss(res, delta):
    s = 0.0
    for i in range(len(res)):
        a = abs(res[i])
        if a <= delta:
            s += 0.5 * res[i] * res[i]
        else:
            s += delta * (a - 0.5 * delta)
    return s


add(huber_loss, lambda r: (r.choice([-1.6, -0.4, 0.4, 1.6], 10) + unif(r, -0.3, 0.3, 10), 1.0),
    (0, 1))


def ewma_last(x, alpha):
    m = x[0]
    for i in range(1, len(x)):
        m = alpha * x[i] + (1.0 - alpha) * m
    return m * m


add(ewma_last, lambda r: (unif(r, -1, 1, 10), unif(r, 0.1, 0.9)), (0, 1),
    tags={"reassign_loop"})


def trapz_weighted(y, dx):
    n = len(y)
    s = 0.5 * (y[0] + y[n - 1])
    for i in range(1, n - 1):
        s += y[i]
    return s * dx


add(trapz_weighted, lambda r: (unif(r, -1, 1, 9), unif(r, 0.1, 0.5)), (0, 1))


def poly_fit_loss(coef, xs, ys):
    loss = 0.0
    for i in range(len(xs)):
        p = 0.0
        for k in range(len(coef) - 1, -1, -1):
            p = p * xs[i] + coef[k]
        loss += (p - ys[i]) ** 2
    return loss


add(poly_fit_loss, lambda r: (unif(r, -1, 1, 4), unif(r, -1, 1, 7), unif(r, -1, 1, 7)),
    (0, 1, 2), tags={"range_negative", "reassign_loop"})


def bubble_sorted_weights(x):
    # an ordered weighted average: sort a copy with swaps, then weight by rank
    y = x.copy()
    n = len(y)
    for i in range(n):
        for j in range(n - 1 - i):
            if y[j] > y[j + 1]:
                y[j], y[j + 1] = y[j + 1], y[j]
    s = 0.0
    for i in range(n):
        s += y[i] * (i + 1) * y[i]
    return s


add(bubble_sorted_weights, lambda r: (spaced(r, 7, -2.0, 2.0),), tags={"copy", "inplace"})


def argmax_pick(x):
    k = 0
    for i in range(1, len(x)):
        if x[i] > x[k]:
            k = i
    s = 0.0
    for i in range(len(x)):
        if i != k:
            s += x[i]
    return x[k] ** 2 + s


add(argmax_pick, lambda r: (spaced(r, 8, -2.0, 2.0),), tags={"nondiff"})


def max_drawdown(x):
    peak = x[0]
    dd = 0.0
    for i in range(1, len(x)):
        if x[i] > peak:
            peak = x[i]
        d = peak - x[i]
        if d > dd:
            dd = d
    return dd


add(max_drawdown, lambda r: (np.array([1.0, 2.0, 1.2, 1.5, 0.4, 0.9, 2.5, 1.9])
                             + unif(r, -0.05, 0.05, 8),))


def bisect_interp(xs, ys, t):
    lo = 0
    hi = len(xs) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if xs[mid] <= t:
            lo = mid
        else:
            hi = mid
    w = (t - xs[lo]) / (xs[hi] - xs[lo])
    return (1.0 - w) * ys[lo] + w * ys[hi]


def _bisect_args(r):
    xs = np.sort(spaced(r, 9, 0.0, 8.0))
    k = int(r.integers(0, 8))
    t = float(xs[k] + (xs[k + 1] - xs[k]) * r.uniform(0.2, 0.8))
    return xs, unif(r, -1, 1, 9), t


add(bisect_interp, _bisect_args, (0, 1, 2), tags={"data_bounds", "float_scalar"})


def lookup_linear(table, ts):
    s = 0.0
    for i in range(len(ts)):
        k = math.floor(ts[i])
        w = ts[i] - k
        s += (1.0 - w) * table[k] + w * table[k + 1]
    return s


add(lookup_linear, lambda r: (unif(r, -1, 1, 8), off_integer(r, 0, 7, 5)), (0, 1),
    tags={"nondiff"})


def bilinear_lookup(grid, px, py):
    i = math.floor(px)
    j = math.floor(py)
    fx = px - i
    fy = py - j
    return ((1.0 - fx) * (1.0 - fy) * grid[i, j] + fx * (1.0 - fy) * grid[i + 1, j]
            + (1.0 - fx) * fy * grid[i, j + 1] + fx * fy * grid[i + 1, j + 1])


add(bilinear_lookup, lambda r: (unif(r, -1, 1, (5, 4)), off_integer(r, 0, 4), off_integer(r, 0, 3)),
    (0, 1, 2), tags={"array2d", "nondiff", "float_scalar"})


# ---- PDEs and particles -------------------------------------------------------------------

def heat_explicit(u0, kappa, steps):
    """1-D heat equation, explicit Euler; the state is updated in place from a copy."""
    u = u0.copy()
    n = len(u)
    for t in range(steps):
        old = u.copy()
        for i in range(1, n - 1):
            u[i] = old[i] + kappa * (old[i - 1] - 2.0 * old[i] + old[i + 1])
    s = 0.0
    for i in range(n):
        s += u[i] * u[i]
    return s


add(heat_explicit, lambda r: (unif(r, -1, 1, 8), unif(r, 0.1, 0.4), 12), (0, 1),
    tags={"copy", "inplace", "reassign_loop"})
add(heat_explicit, lambda r: (f32(unif(r, -1, 1, 8)), unif(r, 0.1, 0.4), 12), (0, 1),
    name="heat_explicit[f32]", tags={"float32"})


def heat_swap(u0, kappa, steps):
    n = len(u0)
    u = u0.copy()
    v = np.zeros(n)
    for t in range(steps):
        v[0] = u[0]
        v[n - 1] = u[n - 1]
        for i in range(1, n - 1):
            v[i] = u[i] + kappa * (u[i - 1] - 2.0 * u[i] + u[i + 1])
        u, v = v, u
    s = 0.0
    for i in range(n):
        s += u[i] * u[i] * (i + 1)
    return s


add(heat_swap, lambda r: (unif(r, -1, 1, 8), unif(r, 0.1, 0.4), 9), (0, 1),
    tags={"inplace", "reassign_loop", "np_alloc"})


def heat_alloc(u0, kappa, steps):
    u = u0
    n = len(u0)
    for t in range(steps):
        un = np.empty_like(u)
        un[0] = u[0]
        un[n - 1] = u[n - 1]
        for i in range(1, n - 1):
            un[i] = u[i] + kappa * (u[i + 1] - 2.0 * u[i] + u[i - 1]) - 0.01 * u[i] ** 3
        u = un
    s = 0.0
    for i in range(n):
        s += math.sin(u[i])
    return s


add(heat_alloc, lambda r: (unif(r, -1, 1, 8), unif(r, 0.1, 0.4), 10), (0, 1),
    tags={"np_alloc", "reassign_loop"})


def wave_leapfrog(u0, c2, steps):
    n = len(u0)
    prev = u0.copy()
    cur = u0.copy()
    for t in range(steps):
        nxt = np.zeros(n)
        for i in range(1, n - 1):
            nxt[i] = 2.0 * cur[i] - prev[i] + c2 * (cur[i - 1] - 2.0 * cur[i] + cur[i + 1])
        prev = cur
        cur = nxt
    s = 0.0
    for i in range(n):
        s += cur[i] * cur[i]
    return s


add(wave_leapfrog, lambda r: (unif(r, -1, 1, 7), unif(r, 0.1, 0.5), 8), (0, 1),
    tags={"np_alloc", "reassign_loop", "copy"})


def gauss_seidel_smooth(x, passes):
    y = x.copy()
    n = len(y)
    for p in range(passes):
        for i in range(1, n - 1):
            y[i] = 0.25 * y[i - 1] + 0.5 * y[i] + 0.25 * y[i + 1] + 0.1 * math.sin(y[i])
    s = 0.0
    for i in range(n):
        s += y[i] ** 2 * (i + 1)
    return s


add(gauss_seidel_smooth, lambda r: (unif(r, -1, 1, 8), 4), tags={"inplace", "copy"})


def jacobi_tridiag(diag, b, iters):
    n = len(b)
    x = np.zeros(n)
    for it in range(iters):
        xn = np.empty(n)
        for i in range(n):
            s = b[i]
            if i > 0:
                s += x[i - 1]
            if i < n - 1:
                s += x[i + 1]
            xn[i] = s / diag[i]
        for i in range(n):
            x[i] = xn[i]
    r = 0.0
    for i in range(n):
        r += x[i] * (i + 1)
    return r


add(jacobi_tridiag, lambda r: (unif(r, 3.0, 5.0, 6), unif(r, -1, 1, 6), 15), (0, 1),
    tags={"inplace", "np_alloc"})


def nbody_energy(pos, mass):
    n = pos.shape[0]
    e = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            dx = pos[i, 0] - pos[j, 0]
            dy = pos[i, 1] - pos[j, 1]
            dz = pos[i, 2] - pos[j, 2]
            r = math.sqrt(dx * dx + dy * dy + dz * dz)
            e -= mass[i] * mass[j] / r
    return e


def _cloud(r, n, dim):
    # jittered grid: particles stay well apart
    g = np.array([[i % 2, (i // 2) % 2, i // 4] for i in range(n)], dtype=float)[:, :dim]
    return 1.5 * g + unif(r, -0.2, 0.2, (n, dim))


add(nbody_energy, lambda r: (_cloud(r, 6, 3), unif(r, 0.5, 2.0, 6)), (0, 1),
    tags={"array2d", "nested"})


def nbody_step_energy(pos, vel, dt, steps):
    n = pos.shape[0]
    p = pos.copy()
    v = vel.copy()
    for s in range(steps):
        for i in range(n):
            ax = 0.0
            ay = 0.0
            for j in range(n):
                if j == i:
                    continue
                dx = p[j, 0] - p[i, 0]
                dy = p[j, 1] - p[i, 1]
                r2 = dx * dx + dy * dy + 0.1
                inv = 1.0 / (r2 * math.sqrt(r2))
                ax += dx * inv
                ay += dy * inv
            v[i, 0] += dt * ax
            v[i, 1] += dt * ay
        for i in range(n):
            p[i, 0] += dt * v[i, 0]
            p[i, 1] += dt * v[i, 1]
    ke = 0.0
    for i in range(n):
        ke += 0.5 * (v[i, 0] ** 2 + v[i, 1] ** 2)
    return ke


add(nbody_step_energy,
    lambda r: (_cloud(r, 4, 2), unif(r, -0.3, 0.3, (4, 2)), unif(r, 0.01, 0.05), 5), (0, 1, 2),
    tags={"array2d", "inplace", "aug_assign", "copy"})


def lennard_jones(pos):
    n = len(pos)
    e = 0.0
    for i in range(n - 1):
        for j in range(i + 1, n):
            r2 = 0.0
            for d in range(pos.shape[1]):
                diff = pos[i, d] - pos[j, d]
                r2 += diff * diff
            inv6 = 1.0 / (r2 * r2 * r2)
            e += 4.0 * (inv6 * inv6 - inv6)
    return e


add(lennard_jones, lambda r: (1.2 * _cloud(r, 5, 3) / 1.5,), tags={"array2d", "nested", "len"})


def spring_chain(x, k):
    e = 0.0
    for i in range(len(x) - 1):
        d = x[i + 1] - x[i] - 1.0
        e += 0.5 * k[i] * d * d
    return e


add(spring_chain, lambda r: (np.arange(6.0) + unif(r, -0.3, 0.3, 6), unif(r, 0.5, 2.0, 5)), (0, 1))


def gradient_descent_unrolled(x0, lr, steps):
    x = x0
    for i in range(steps):
        g = 2.0 * (x - 1.0) + 0.4 * x ** 3
        x = x - lr * g
    return (x - 1.0) ** 2


add(gradient_descent_unrolled, lambda r: (unif(r, -1.0, 2.0), unif(r, 0.02, 0.1), 15), (0, 1),
    tags={"float_scalar", "reassign_loop"})


def mixed_precision(x32, y64, c):
    s = 0.0
    for i in range(len(x32)):
        s += x32[i] * y64[i] * c + math.sin(x32[i])
    return s


add(mixed_precision,
    lambda r: (f32(unif(r, -1, 1, 6)), unif(r, -1, 1, 6), unif(r, 0.5, 1.5)), (0, 1, 2),
    tags={"float32"})


def f32_stats(x):
    n = x.shape[0]
    m = 0.0
    for i in range(n):
        m += x[i]
    m /= n
    v = 0.0
    for i in range(n):
        v += (x[i] - m) ** 2
    return math.sqrt(v / n) + math.exp(m)


add(f32_stats, lambda r: (f32(unif(r, -1, 1, 9)),), tags={"float32"})


def f32_2d_inplace(a):
    b = a.copy()
    n, m = b.shape
    for i in range(n):
        for j in range(1, m):
            b[i, j] += 0.5 * b[i, j - 1]
    s = 0.0
    for i in range(n):
        for j in range(m):
            s += b[i, j] * b[i, j]
    return s


add(f32_2d_inplace, lambda r: (f32(unif(r, -1, 1, (3, 4))),),
    tags={"float32", "array2d", "copy", "aug_assign"})


def len_2d_rows(a, x):
    s = 0.0
    for i in range(len(a)):
        s += a[i, 0] * x[i] + a[i, len(x) - 1 - i] ** 2
    return s


add(len_2d_rows, lambda r: (unif(r, -1, 1, (4, 4)), unif(r, -1, 1, 4)), (0, 1),
    tags={"array2d", "len"})


def shape_tuple_unpack_3d(t, w):
    a, b, c = t.shape
    s = 0.0
    for i in range(a):
        for k in range(c):
            col = 0.0
            for j in range(b):
                col += t[i, j, k] * w[j]
            s += col * col
    return s


add(shape_tuple_unpack_3d, lambda r: (unif(r, -1, 1, (2, 3, 2)), unif(r, -1, 1, 3)), (0, 1),
    tags={"array3d"})


# ============================================================================================
# 6. calls: same module, imported module, numba dispatchers
# ============================================================================================

def _smoothstep(v):
    t = v * v * (3.0 - 2.0 * v)
    return t


def _pair_energy(a, b, k):
    d = a - b
    return 0.5 * k * d * d


def calls_same_module(x):
    s = 0.0
    for i in range(len(x) - 1):
        s += _smoothstep(x[i]) + _pair_energy(x[i], x[i + 1], 2.0)
    return s


add(calls_same_module, lambda r: (unif(r, 0.1, 0.9, 6),), tags={"call_same_module"})


def _level3(v):
    return math.exp(-v * v)


def _level2(v, w):
    return _level3(v) * w + _level3(w)


def _level1(v):
    return _level2(v, 0.5 * v) + v


def calls_chain(x):
    return _level1(x) * _level1(x * 0.3)


add(calls_chain, lambda r: (unif(r, -1.5, 1.5),), tags={"call_same_module", "float_scalar"})


def _weighted_norm(x, w, n):
    s = 0.0
    for i in range(n):
        s += w[i] * x[i] * x[i]
    return math.sqrt(s)


def calls_with_arrays(x, w):
    return _weighted_norm(x, w, len(x)) + _weighted_norm(w, x, 3) * 0.5


add(calls_with_arrays, lambda r: (unif(r, 0.2, 1.0, 6), unif(r, 0.2, 1.0, 6)), (0, 1),
    tags={"call_same_module"})


def _fill_squares(x, out):
    for i in range(len(x)):
        out[i] = x[i] * x[i] + math.sin(x[i])


def calls_helper_writes(x):
    tmp = np.zeros_like(x)
    _fill_squares(x, tmp)
    s = 0.0
    for i in range(len(tmp)):
        s += tmp[i] * (i + 1)
    _fill_squares(tmp, tmp)
    for i in range(len(tmp)):
        s += tmp[i]
    return s


add(calls_helper_writes, lambda r: (unif(r, -1, 1, 6),),
    tags={"call_same_module", "np_alloc", "inplace"})


def _first_above(x, thr):
    for i in range(len(x)):
        if x[i] > thr:
            return x[i] * thr
    return 0.0


def calls_helper_early_return(x):
    return _first_above(x, 0.5) + _first_above(x, 10.0) + x[0]


add(calls_helper_early_return, lambda r: (np.array([0.1, 0.2, 0.9, 1.3]) + unif(r, -0.05, 0.05, 4),),
    tags={"call_same_module", "return_in_loop"})


def calls_imported_module(c, x):
    s = ch.sq_norm(x)
    for i in range(len(x)):
        s += ch.poly3(c[0], c[1], c[2], c[3], x[i])
    return s


add(calls_imported_module, lambda r: (unif(r, -1, 1, 4), unif(r, -1, 1, 5)), (0, 1),
    tags={"call_imported"})


def calls_from_import(w, x, y):
    loss = 0.0
    for i in range(len(y)):
        z = w[0] * x[i] + w[1]
        loss += softplus(z) - y[i] * z
        loss += 0.1 * sigmoid(z)
    return loss


add(calls_from_import,
    lambda r: (unif(r, -1, 1, 2), signed(r, 0.2, 2.0, 8), r.integers(0, 2, 8).astype(float)),
    (0, 1), tags={"call_imported"})


def calls_imported_array_return(u0, c, steps):
    u = u0.copy()
    for t in range(steps):
        u = ch.stencil(u, c)
    return ch.sq_norm(u)


add(calls_imported_array_return, lambda r: (unif(r, -1, 1, 7), unif(r, 0.1, 0.4), 5), (0, 1),
    tags={"call_imported", "reassign_loop", "copy"})


def calls_imported_inplace(x, a):
    y = np.ones(len(x))
    ch.axpy_inplace(a, x, y)
    ch.axpy_inplace(a * a, y, y)
    s = 0.0
    for i in range(len(y)):
        s += y[i] * y[i]
    return s


add(calls_imported_inplace, lambda r: (unif(r, -1, 1, 6), unif(r, 0.2, 1.2)), (0, 1),
    tags={"call_imported", "inplace", "np_alloc"})


def calls_imported_2d(a, x):
    s = 0.0
    for i in range(a.shape[0]):
        r = ch.row_dot(a, i, x)
        s += r * r
    return s


add(calls_imported_2d, lambda r: (unif(r, -1, 1, (3, 4)), unif(r, -1, 1, 4)), (0, 1),
    tags={"call_imported", "array2d"})


def calls_njit_scalar(x, mu):
    s = 0.0
    for i in range(len(x)):
        s += ch.nj_sq(x[i] - mu) + nj_gauss(x[i], mu, 0.7)
    return s


add(calls_njit_scalar, lambda r: (unif(r, -1, 1, 6), unif(r, -0.5, 0.5)), (0, 1),
    tags={"call_njit"})


def calls_njit_array(x, c):
    out = np.empty_like(x)
    ch.nj_scale_into(x, c, out)
    return ch.nj_dot(out, x) + ch.nj_dot(out, out)


add(calls_njit_array, lambda r: (unif(r, -1, 1, 6), unif(r, 0.5, 1.5)), (0, 1),
    tags={"call_njit", "np_alloc"})


def calls_njit_branch(x):
    s = 0.0
    for i in range(len(x)):
        s += ch.nj_leaky(x[i]) * x[i] + ch.nj_leaky(-x[i])
    return s


add(calls_njit_branch, lambda r: (signed(r, 0.1, 2.0, 8),), tags={"call_njit"})


@numba.njit
def nj_spring_energy(x, k):
    e = 0.0
    for i in range(x.shape[0] - 1):
        d = x[i + 1] - x[i] - 1.0
        e += 0.5 * k * d * d + 0.1 * math.cos(x[i])
    return e


add(nj_spring_energy, lambda r: (np.arange(6.0) + unif(r, -0.3, 0.3, 6), unif(r, 0.5, 2.0)),
    (0, 1), tags={"njit_toplevel"})


@numba.njit
def nj_toplevel_calls(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += ch.nj_sq(x[i]) * ch.nj_leaky(x[i])
    return s + ch.nj_dot(x, x)


add(nj_toplevel_calls, lambda r: (signed(r, 0.1, 2.0, 6),), tags={"njit_toplevel", "call_njit"})


def _softplus_local(v):
    if v > 20.0:
        return v
    return math.log1p(math.exp(v))


def logistic_regression(w, b, xmat, y):
    n, d = xmat.shape
    loss = 0.0
    for i in range(n):
        z = b
        for j in range(d):
            z += xmat[i, j] * w[j]
        loss += _softplus_local(z) - y[i] * z
    reg = 0.0
    for j in range(d):
        reg += w[j] * w[j]
    return loss / n + 0.01 * reg


add(logistic_regression,
    lambda r: (unif(r, -1, 1, 3), unif(r, -0.5, 0.5), unif(r, -2, 2, (8, 3)),
               r.integers(0, 2, 8).astype(float)), (0, 1, 2),
    tags={"call_same_module", "array2d"})


# ============================================================================================
# 7. more realistic kernels built on the special functions
# ============================================================================================

def gaussian_cdf_nll(x, mu, sigma):
    # censored-data likelihood: log of normal CDF and survival function
    s = 0.0
    for i in range(len(x)):
        z = (x[i] - mu) / (sigma * math.sqrt(2.0))
        if i % 2 == 0:
            s -= math.log(0.5 * (1.0 + math.erf(z)))
        else:
            s -= math.log(0.5 * math.erfc(z))
    return s


add(gaussian_cdf_nll, lambda r: (unif(r, -1.5, 1.5, 8), unif(r, -0.3, 0.3), unif(r, 0.8, 1.5)),
    (0, 1, 2))


def polar_features(xy):
    n = xy.shape[0]
    s = 0.0
    for i in range(n):
        rad = math.hypot(xy[i, 0], xy[i, 1])
        ang = math.atan2(xy[i, 1], xy[i, 0])
        s += rad * math.cos(2.0 * ang) + np.hypot(rad, 1.0) * np.arctan2(ang, 2.0)
    return s


add(polar_features, lambda r: (signed(r, 0.3, 2.0, (6, 2)),), tags={"array2d"})


def entropy_bits(logits):
    n = len(logits)
    mx = max(logits[0], logits[1])
    for i in range(2, n):
        mx = max(mx, logits[i])
    z = 0.0
    for i in range(n):
        z += math.exp(logits[i] - mx)
    h = 0.0
    for i in range(n):
        p = math.exp(logits[i] - mx) / z
        h -= p * math.log2(p)
    return h + 0.1 * np.log10(z) + 0.1 * np.log2(z)


add(entropy_bits, lambda r: (spaced(r, 6, -2.0, 2.0),))


def haversine_total(lat, lon):
    rad = 6371.0
    total = 0.0
    for i in range(len(lat) - 1):
        dlat = lat[i + 1] - lat[i]
        dlon = lon[i + 1] - lon[i]
        a = math.sin(0.5 * dlat) ** 2 + math.cos(lat[i]) * math.cos(lat[i + 1]) * np.sin(0.5 * dlon) ** 2
        total += 2.0 * rad * math.asin(math.sqrt(a))
    return total


add(haversine_total, lambda r: (np.cumsum(unif(r, 0.05, 0.2, 6)) - 0.5, np.cumsum(unif(r, 0.05, 0.2, 6))),
    (0, 1))


def vector_angle(u, v):
    uu = 0.0
    vv = 0.0
    uv = 0.0
    for i in range(len(u)):
        uu += u[i] * u[i]
        vv += v[i] * v[i]
        uv += u[i] * v[i]
    c = uv / math.sqrt(uu * vv)
    return math.acos(c) + np.arccos(0.5 * c) + np.arcsin(0.5 * c)


def _angle_args(r):
    while True:
        u, v = unif(r, -1, 1, 4), unif(r, -1, 1, 4)
        c = u @ v / math.sqrt((u @ u) * (v @ v))
        if abs(c) < 0.9:
            return u, v


add(vector_angle, _angle_args, (0, 1))


def total_variation(x, eps):
    s = 0.0
    for i in range(1, len(x)):
        d = x[i] - x[i - 1]
        s += math.fabs(d) + eps * math.log1p(math.expm1(-abs(d)) + 1.0)
        s += np.copysign(d * d, d) + math.copysign(eps, d)
    return s


add(total_variation, lambda r: (np.cumsum(signed(r, 0.1, 0.5, 8)), unif(r, 0.1, 0.5)), (0, 1))


# ============================================================================================
# 8. trip counts and loop semantics that a reverse pass can get wrong
# ============================================================================================

def long_while_decay(x, rate):
    # a data-dependent trip count in the hundreds: anything recorded per iteration must grow
    s = 0.0
    v = x
    while v > 1e-2:
        v = v * rate
        s += math.sin(v) * v
    return s


def _decay_args(r):
    # x = 1e-2 * rate ** -(k + u): about k + u iterations, u far from an integer, x in [1, 2.1]
    rate = unif(r, 0.975, 0.985)
    k = math.floor(math.log(100.0 * unif(r, 1.0, 2.0)) / -math.log(rate))
    return 1e-2 * rate ** -(k + unif(r, 0.3, 0.7)), rate


add(long_while_decay, _decay_args, 0, tags={"data_bounds", "float_scalar"})


def collatz_weighted(x, n):
    s = 0.0
    while n != 1:
        if n % 2 == 0:
            n = n // 2
        else:
            n = 3 * n + 1
        s = s * 0.9 + math.sin(x + 1e-3 * n) * x
    return s


add(collatz_weighted, lambda r: (unif(r, -1.0, 1.0), int(r.choice([27, 97, 871]))), 0,
    tags={"int_scalar", "int_mixed", "data_bounds", "float_scalar"})


def ragged_loops(x):
    s = 0.0
    for i in range(len(x)):
        j = 0
        t = x[i]
        while j < i * 3 + 1:
            t = math.sin(t) + 0.5 * t
            j += 1
            if t > 5.0:
                break
        s += t * t
    return s


add(ragged_loops, lambda r: (unif(r, -1, 1, 6),), tags={"nested", "data_bounds"})


def range_bound_reassigned(x):
    n = len(x)
    s = 0.0
    for i in range(n):
        n = n - 1          # range() was evaluated once: this does not shorten the loop
        s += x[i] * x[n] * (i + 1)
    return s + n


add(range_bound_reassigned, lambda r: (unif(r, -1, 1, 7),), tags={"reassign_loop", "int_mixed"})


def loop_var_after_loop(x):
    s = 0.0
    for i in range(len(x) - 2):
        s += x[i] * x[i + 1]
    return s * x[i]        # i keeps its last value


add(loop_var_after_loop, lambda r: (unif(r, -1, 1, 6),))


def nested_search_return(a, thr):
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            if a[i, j] > thr:
                return a[i, j] * thr + i * a[0, 0]
    return thr * a[0, 0]


def _search_args(r, hit):
    a = unif(r, -1.0, 0.5, (4, 3))
    if hit:
        a[2, 1] = 0.9
    return a, 0.7


add(nested_search_return, lambda r: _search_args(r, True), (0, 1),
    name="nested_search_return[hit]", tags={"return_in_loop", "array2d"})
add(nested_search_return, lambda r: _search_args(r, False), (0, 1),
    name="nested_search_return[miss]", tags={"return_in_loop", "array2d"})


def accumulate_same_slot(x):
    acc = np.zeros(3)
    for i in range(len(x)):
        acc[i % 3] += x[i] * x[i]
        acc[(i + 1) % 3] -= 0.5 * x[i]
        acc[i % 3] *= 0.9
    return acc[0] * acc[1] + acc[2]


add(accumulate_same_slot, lambda r: (unif(r, -1, 1, 8),), tags={"np_alloc", "aug_assign"})


def sgd_step_decay(x0, steps):
    # unrolled optimisation with a step-decay learning-rate schedule (lr itself is inactive)
    x = x0
    lr = 0.2
    for k in range(steps):
        if k % 4 == 3:
            lr = lr * 0.5
        g = 2.0 * (x - 1.0) + 0.4 * x ** 3
        x = x - lr * g
    return (x - 1.0) ** 2 + x


add(sgd_step_decay, lambda r: (unif(r, -1.0, 2.0), 10), tags={"float_scalar", "reassign_loop"})


def triangular_schedule(x):
    # an inactive weight advanced by an inner loop whose trip count grows with i
    s = 0.0
    w = 0.0
    for i in range(len(x)):
        for j in range(i):
            w += 0.1
        s += math.sin(x[i] * w) + x[i]
    return s


add(triangular_schedule, lambda r: (unif(r, -1, 1, 6),), tags={"nested", "data_bounds"})


# ============================================================================================
# 9. everyday Python idioms around the required items
# ============================================================================================

GRAVITY = 9.81
N_SUBSTEPS = 40


def projectile_height(v, angle, drag):
    # module-level constants and math.pi
    dt = 1.0 / N_SUBSTEPS
    vx = v * math.cos(angle * math.pi / 180.0)
    vy = v * math.sin(angle * math.pi / 180.0)
    y = 0.0
    ymax = 0.0
    for k in range(N_SUBSTEPS):
        vx -= drag * vx * dt
        vy -= (GRAVITY + drag * vy) * dt
        y += vy * dt
        ymax = max(ymax, y)
    return ymax + 0.1 * vx


add(projectile_height, lambda r: (unif(r, 12.0, 15.0), unif(r, 50.0, 70.0), unif(r, 0.05, 0.2)),
    (0, 1, 2), tags={"float_scalar"})


def neg_base_powers(x):
    s = 0.0
    for i in range(len(x)):
        v = x[i]
        s += v ** 2 + v ** 3 + v ** 3.0 + np.power(v, 2) + math.pow(v, 2.0) + v ** -2
    return s


add(neg_base_powers, lambda r: (unif(r, -2.0, -0.5, 6),))


def clamped_stencil(x):
    n = len(x)
    s = 0.0
    for i in range(n):
        left = x[max(i - 1, 0)]
        right = x[min(i + 1, n - 1)]
        s += (left - 2.0 * x[i] + right) ** 2
    return s + x[-1] * x[0] + x[-2]


add(clamped_stencil, lambda r: (unif(r, -1, 1, 7),), tags={"int_mixed"})


def chained_compare_window(x, lo, hi):
    s = 0.0
    for i in range(len(x)):
        inside = lo < x[i] < hi
        if inside:
            s += (x[i] - lo) * (hi - x[i])
        elif x[i] >= hi:
            s += 0.5 * x[i]
    return s


def _window_args(r):
    lo, hi = -0.5, 0.6
    x = r.choice([-0.9, 0.0, 1.0], 10) + unif(r, -0.25, 0.25, 10)
    return x, lo, hi


add(chained_compare_window, _window_args, (0, 1, 2))


def param_reassigned(x, c):
    x = x.copy()
    c *= 2.0
    for i in range(len(x)):
        x[i] = x[i] * c
    c += x[0]
    s = 0.0
    for i in range(len(x)):
        s += x[i] * x[i] * c
    return s


add(param_reassigned, lambda r: (unif(r, -1, 1, 5), unif(r, 0.5, 1.5)), (0, 1),
    tags={"copy", "reassign", "aug_assign"})


def alloc_with_dtype(a):
    n, m = a.shape
    rows = np.zeros(n, dtype=np.float64)
    cols = np.empty((m,), np.float64)
    grid = np.ones((n, m))
    for j in range(m):
        cols[j] = 0.0
    for i in range(n):
        for j in range(m):
            grid[i, j] += a[i, j] ** 2
            rows[i] += grid[i, j]
            cols[j] += a[i, j] * rows[i]
    s = 0.0
    for j in range(m):
        s += cols[j]
    return s


add(alloc_with_dtype, lambda r: (unif(r, -1, 1, (3, 4)),), tags={"np_alloc", "array2d"})


def ignores_an_argument(x, y, z):
    # y never reaches the result; z only through a comparison
    s = 0.0
    for i in range(len(x)):
        s += x[i] * x[i]
    t = y * 2.0
    if z > 0.0:
        s = s * 2.0
    return s


add(ignores_an_argument, lambda r: (unif(r, -1, 1, 4), unif(r, -1, 1), unif(r, 0.2, 1.0)),
    (0, 1, 2), tags={"nondiff"})


def bool_flags(x):
    s = 0.0
    for i in range(len(x)):
        positive = x[i] > 0.0
        big = abs(x[i]) > 1.0
        if positive and not big:
            s += x[i] ** 3
        elif big:
            s += 2.0 * x[i]
        else:
            s -= x[i] * x[i]
    return s


add(bool_flags, lambda r: (r.choice([-1.5, -0.5, 0.5, 1.5], 10) + unif(r, -0.3, 0.3, 10),))


def constant_branch_return(x):
    if x > 5.0:
        return 5.0
    if x < -5.0:
        return 0
    return x * math.exp(-x)


add(constant_branch_return, lambda r: (unif(r, 5.5, 7.0),), name="constant_branch_return[cap]",
    tags={"float_scalar"})
add(constant_branch_return, lambda r: (unif(r, -7.0, -5.5),), name="constant_branch_return[zero]",
    tags={"float_scalar"})
add(constant_branch_return, lambda r: (unif(r, -2.0, 2.0),), name="constant_branch_return[smooth]",
    tags={"float_scalar"})


def float_int_conversions(x, n):
    h = 1.0 / float(n)
    s = 0.0
    for i in range(n):
        k = int(x * 3.0) + i
        s += math.sin(x * float(i) * h) + k * 0.0 + float(k % 2) * x
    return s


add(float_int_conversions, lambda r: (off_integer(r, 0, 3) / 3.0, 10), 0,
    tags={"int_mixed", "nondiff"})


def calls_helper_writes_input(x, y):
    # a callee writes into the caller's input array y
    ch.axpy_inplace(0.5, x, y)
    s = 0.0
    for i in range(len(y)):
        s += y[i] * y[i] + x[i]
    return s


add(calls_helper_writes_input, lambda r: (unif(r, -1, 1, 5), unif(r, -1, 1, 5)), (0, 1),
    tags={"call_imported", "writes_input", "inplace"})


# ============================================================================================
# whole-array NumPy (issue 3): broadcasting, reductions, products, linear algebra, mixed loops
# ============================================================================================

def arr_exp_sum(x):
    return np.sum(np.exp(x) * 2.0 - x)


add(arr_exp_sum, lambda r: (unif(r, -1, 1, 6),), tags={"array_expr"})


def arr_broadcast_ranks(M, v, c):
    # (m, n) with (n,) and a scalar: contributions summed back over the broadcast axis
    z = M * v + c * M - v / c
    return np.sum(z * z)


add(arr_broadcast_ranks, lambda r: (unif(r, -1, 1, (4, 3)), unif(r, -1, 1, 3), unif(r, 0.5, 2)),
    (0, 1, 2), tags={"array_expr", "broadcast"})


def arr_broadcast_column(M, col):
    # a (m, 1) column broadcast against (m, n)
    return np.sum(np.sin(M - col) ** 2)


add(arr_broadcast_column, lambda r: (unif(r, -1, 1, (3, 4)), unif(r, -1, 1, (3, 1))), (0, 1),
    tags={"array_expr", "broadcast"})


def arr_ufuncs(x, y):
    a = np.tanh(x) + np.log(y) * np.sqrt(y) - np.abs(x) ** 1.5
    b = np.maximum(x, y) * np.minimum(x, 0.3) + np.arctan2(x, y) + np.hypot(x, y)
    return np.sum(a * b + np.expm1(x) / np.cosh(y))


add(arr_ufuncs, lambda r: (signed(r, 0.2, 1.0, 5), unif(r, 0.5, 2.0, 5)), (0, 1),
    tags={"array_expr", "ufunc"})


def arr_power_arrays(x, p):
    return np.sum(x ** p + np.power(p, 2.0))


add(arr_power_arrays, lambda r: (unif(r, 0.5, 2.0, 4), unif(r, 0.5, 2.5, 4)), (0, 1),
    tags={"array_expr"})


def arr_reductions(X):
    return (np.sum(X) * np.mean(X) + np.prod(X) + np.max(X) - np.min(X)
            + np.sum(np.sum(X, axis=0) ** 2) + np.sum(np.mean(X, axis=1) ** 3))


add(arr_reductions, lambda r: (spaced(r, 12, 0.5, 1.5).reshape(3, 4),), tags={"array_expr"})


def arr_axis_extrema(X):
    return np.sum(np.max(X, axis=1)) * np.sum(np.min(X, axis=0))


add(arr_axis_extrema, lambda r: (spaced(r, 12, -2.0, 2.0).reshape(4, 3),), tags={"array_expr"})


def arr_prod_with_zero(x):
    # the product's adjoint is exact with a zero element (no division by x)
    y = x.copy()
    y[1] = 0.0
    return np.prod(y) + np.prod(x)


add(arr_prod_with_zero, lambda r: (unif(r, 0.5, 1.5, 5),), tags={"array_expr"})


def arr_matvec(A, x, b):
    return np.sum((A @ x - b) ** 2)


add(arr_matvec, lambda r: (unif(r, -1, 1, (4, 3)), unif(r, -1, 1, 3), unif(r, -1, 1, 4)), (0, 1, 2),
    tags={"array_expr", "matmul"})


def arr_matmul_shapes(A, B, u, v):
    # every rank pairing of @ and np.dot
    C = A @ B
    w = u @ A
    return np.sum(C * C) + np.dot(w, v) + np.dot(u, u) + np.sum(np.dot(A.T, u))


add(arr_matmul_shapes, lambda r: (unif(r, -1, 1, (3, 4)), unif(r, -1, 1, (4, 2)),
                                   unif(r, -1, 1, 3), unif(r, -1, 1, 4)), (0, 1, 2, 3),
    tags={"array_expr", "matmul"})


def arr_outer_transpose(u, v):
    M = np.outer(u, v)
    N = M.T @ M + np.transpose(M) @ np.ones(u.shape[0]).reshape(-1, 1)
    return np.sum(N)


add(arr_outer_transpose, lambda r: (unif(r, -1, 1, 3), unif(r, -1, 1, 4)), (0, 1),
    tags={"array_expr", "matmul"})


def arr_reshape_chain(x):
    z = x.reshape(2, 3).sum(axis=1)
    return np.dot(z, z) + x.T @ x + np.sum(np.atleast_2d(x) ** 2) + np.sum(np.atleast_3d(x))


add(arr_reshape_chain, lambda r: (unif(r, -1, 1, 6),), tags={"array_expr"})


def arr_where(x, y):
    return np.sum(np.where(x > 0.0, x * y, y * y) + np.where(y > 0.5, 1.0, x))


add(arr_where, lambda r: (signed(r, 0.2, 1.0, 6), spaced(r, 6, 0.0, 1.0)), (0, 1),
    tags={"array_expr"})


def arr_cumsum(x):
    c = np.cumsum(x * x)
    return np.sum(c * np.arange(c.shape[0]))


add(arr_cumsum, lambda r: (unif(r, -1, 1, 5),), tags={"array_expr"})


def arr_linalg(A, b):
    x = np.linalg.solve(A, b)
    return np.linalg.det(A) + np.sum(x * x) + np.sum(np.linalg.inv(A) ** 2)


def _well_conditioned(r, n):
    return np.eye(n) * 2.0 + unif(r, -0.3, 0.3, (n, n))


add(arr_linalg, lambda r: (_well_conditioned(r, 3), unif(r, -1, 1, 3)), (0, 1),
    tags={"array_expr", "linalg"})


def arr_solve_matrix_rhs(A, B):
    return np.sum(np.linalg.solve(A, B) ** 2)


add(arr_solve_matrix_rhs, lambda r: (_well_conditioned(r, 3), unif(r, -1, 1, (3, 2))), (0, 1),
    tags={"array_expr", "linalg"})


def arr_logistic_loss(X, y, w, b):
    z = X @ w + b
    p = 1.0 / (1.0 + np.exp(-z))
    return -np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)) + 0.01 * np.sum(w * w)


add(arr_logistic_loss, lambda r: (unif(r, -1, 1, (8, 3)), (unif(r, 0, 1, 8) > 0.5).astype(np.float64),
                                  unif(r, -1, 1, 3), unif(r, -0.5, 0.5)), (2, 3),
    tags={"array_expr", "model"})


def arr_rnn(W, U, h0, u):
    # array state rebound at every step of a loop
    h = h0
    for t in range(u.shape[0]):
        h = np.tanh(W @ h + U * u[t])
    return np.sum(h * h)


add(arr_rnn, lambda r: (unif(r, -0.5, 0.5, (3, 3)), unif(r, -1, 1, 3), unif(r, -1, 1, 3),
                        unif(r, -1, 1, 5)), (0, 1, 2, 3), tags={"array_expr", "loop_carried_array"})


def arr_mlp_layers(W1, W2, x):
    h = np.maximum(W1 @ x, 0.05 * (W1 @ x))
    out = W2 @ h
    return np.sum(out * out) + np.sum(np.exp(-np.abs(h)))


add(arr_mlp_layers, lambda r: (unif(r, -1, 1, (4, 3)), unif(r, -1, 1, (2, 4)), signed(r, 0.3, 1, 3)),
    (0, 1, 2), tags={"array_expr", "model"})


def arr_result_written_later(x):
    # the adjoint of exp reads its result, which is overwritten afterwards: saved on the tape
    y = np.exp(x)
    s = np.sum(y * x)
    y[0] = 0.0
    for i in range(y.shape[0]):
        s += y[i]
    return s


add(arr_result_written_later, lambda r: (unif(r, -1, 1, 4),), tags={"array_expr", "inplace"})


def arr_operand_written_later(x, w):
    v = w.copy()
    z = np.sum(x * v)
    for i in range(v.shape[0]):
        v[i] = v[i] * 3.0
    return z * np.sum(v * x)


add(arr_operand_written_later, lambda r: (unif(r, -1, 1, 4), unif(r, -1, 1, 4)), (0, 1),
    tags={"array_expr", "inplace"})


def arr_mixed_loops(x):
    y = np.sin(x) * x
    s = 0.0
    for i in range(1, y.shape[0]):
        s += (y[i] - y[i - 1]) ** 2
    return s + np.sum(y)


add(arr_mixed_loops, lambda r: (unif(r, -1, 1, 6),), tags={"array_expr"})


def arr_rebound_straight(x, b):
    z = x * 2.0
    z = z + b
    z = np.exp(z) / np.sum(np.exp(z))
    return np.sum(z * x)


add(arr_rebound_straight, lambda r: (unif(r, -1, 1, 5), unif(r, -1, 1)), (0, 1),
    tags={"array_expr"})


def arr_whole_read_in_storing_loop(x):
    # a loop that stores y[i] and reads all of y through np.sum: its reversal must run backwards
    y = x * x
    s = 0.0
    for i in range(y.shape[0]):
        s += np.dot(y, y) * x[i]
        y[i] = x[i] * 0.5
    return s


add(arr_whole_read_in_storing_loop, lambda r: (unif(r, -1, 1, 4),), tags={"array_expr", "inplace"})


def slice_differences(x):
    d = x[1:] - x[:-1]
    return np.sum(d * d) + np.sum(x[::2] * x[1::2])


add(slice_differences, lambda r: (unif(r, -1, 1, 8),), tags={"array_expr", "slicing"})


def slice_rows_and_columns(A, v):
    B = A.copy()
    B[1] = v * 2.0
    B[:, 0] = 0.5
    r = B[2]
    return np.sum(B * B) + np.dot(r, r) + np.sum(A[::2, 1:] ** 3)


add(slice_rows_and_columns, lambda r: (unif(r, -1, 1, (4, 3)), unif(r, -1, 1, 3)), (0, 1),
    tags={"array_expr", "slicing", "index_write"})


def slice_write_through_view(x):
    y = x.copy()
    w = y[2:5]
    w[0] = w[1] * 3.0
    s = 0.0
    for i in range(y.shape[0]):
        s += y[i] * y[i]
    return s


add(slice_write_through_view, lambda r: (unif(r, -1, 1, 6),), tags={"slicing", "inplace"})


def slice_row_in_loop(M):
    s = 0.0
    for i in range(M.shape[0]):
        row = M[i]
        s += np.sum(np.exp(row)) * M[i, 0]
    return s


add(slice_row_in_loop, lambda r: (unif(r, -1, 1, (3, 4)),), tags={"array_expr", "slicing"})


def slice_bounds_from_data(x, k):
    head = x[:k]
    tail = x[k:]
    return np.sum(head ** 2) * np.sum(np.sin(tail))


add(slice_bounds_from_data, lambda r: (unif(r, -1, 1, 7), 3), tags={"array_expr", "slicing"})


def slice_store_scalar_broadcast(x, c):
    y = x.copy()
    y[1:4] = c
    return np.sum(y * x)


add(slice_store_scalar_broadcast, lambda r: (unif(r, -1, 1, 6), unif(r, -1, 1)), (0, 1),
    tags={"slicing", "index_write"})


def arr_inplace_operators(x, c):
    # in-place operators on a local array nothing else refers to (rebinding is the same)
    y = x * 1.0
    y *= c
    y += x * x
    for k in range(3):
        y -= 0.1 * np.sin(y)
    return np.sum(y * y)


add(arr_inplace_operators, lambda r: (unif(r, -1, 1, 5), unif(r, 0.5, 1.5)), (0, 1),
    tags={"array_expr", "aug_assign"})


def arr_float32(x):
    return np.sum(np.sin(x) * x)


add(arr_float32, lambda r: (unif(r, -1, 1, 5, np.float32),), tags={"array_expr", "float32"})


def arr_branch(x, flag):
    if flag > 0:
        y = x * x
    else:
        y = np.exp(x)
    return np.sum(y)


add(arr_branch, lambda r: (unif(r, -1, 1, 4), 1), name="arr_branch[then]", tags={"array_expr"})
add(arr_branch, lambda r: (unif(r, -1, 1, 4), -1), name="arr_branch[else]", tags={"array_expr"})


def arr_callee(A, x):
    return ch.quadratic_form(A, x) + np.sum(A)


add(arr_callee, lambda r: (unif(r, -1, 1, (3, 3)), unif(r, -1, 1, 3)), (0, 1),
    tags={"array_expr", "call_imported"})


# ============================================================================================
# inner functions and lambdas bound to a name (issue 3), differentiated like any other callee
# ============================================================================================

def inner_def_reads_constants(x, c):
    # an inner def that reads a constant and a scalar argument of the enclosing function
    half = 0.5

    def poly(t):
        return half * c * t * t + math.sin(c * t)

    s = 0.0
    for i in range(len(x)):
        s += poly(x[i])
    return s


add(inner_def_reads_constants, lambda r: (unif(r, -1, 1, 6), unif(r, 0.5, 1.5)), (0, 1),
    tags={"inner_def"})


def lambda_weighted_squares(x, w):
    sq = lambda t: t * t  # noqa: E731
    s = 0.0
    for i in range(len(x)):
        s += w[i] * sq(x[i] - w[i])
    return s


add(lambda_weighted_squares, lambda r: (unif(r, -1, 1, 5), unif(r, -1, 1, 5)), (0, 1),
    tags={"lambda"})


def nested_inner_defs(x, a):
    # a def inside a def inside the function; each level reads the one around it
    def row_term(i):
        b = a * x[i]

        def smooth(t):
            return math.log1p(b * b + t * t)

        return smooth(x[i + 1]) - smooth(a)

    s = 0.0
    for i in range(len(x) - 1):
        s += row_term(i)
    return s


add(nested_inner_defs, lambda r: (unif(r, -1, 1, 6), unif(r, 0.3, 1.2)), (0, 1),
    tags={"inner_def"})


def lambda_calls_inner_def(m, k):
    # a lambda calls an inner def; both read k; a 2-D array read in two loops
    def act(t):
        return math.tanh(k * t)

    pair = lambda u, v: act(u) * act(v) + u  # noqa: E731
    s = 0.0
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            s += pair(m[i, j], m[j, i])
    return s


add(lambda_calls_inner_def, lambda r: (unif(r, -1, 1, (3, 3)), unif(r, 0.5, 1.5)), (0, 1),
    tags={"inner_def", "lambda", "nested_loop"})


def inner_def_writes_enclosing_array(x, y):
    # the inner function writes into an array of the enclosing function (through the reference)
    out = np.zeros(len(x))

    def deposit(i, v):
        out[i] += v
        if i + 1 < len(out):
            out[i + 1] += 0.5 * v

    for i in range(len(x)):
        deposit(i, x[i] * y[i])
    s = 0.0
    for i in range(len(out)):
        s += out[i] * out[i]
    return s


add(inner_def_writes_enclosing_array, lambda r: (unif(r, -1, 1, 5), unif(r, -1, 1, 5)), (0, 1),
    tags={"inner_def", "inplace"})


def lambda_late_binding(x, c):
    # Python closures read a variable when called: scale changes after the definition and in
    # the loop, and each call sees its current value
    scale = c
    f = lambda t: scale * math.exp(t)  # noqa: E731
    s = f(x[0])
    for i in range(1, len(x)):
        scale = scale * x[i]
        s += f(x[i])
    return s


add(lambda_late_binding, lambda r: (unif(r, -1, 1, 4), unif(r, 0.5, 1.5)), (0, 1),
    tags={"lambda", "reassign_loop"})


# ============================================================================================
# tuples (issue 3): packing, unpacking, indexing, several results, callees returning tuples
# ============================================================================================

def polar(x, y):
    """Two results: a callee of several corpus functions (not itself in the corpus)."""
    return math.sqrt(x * x + y * y), math.atan2(y, x)


def tup_pack_index(x, y):
    t = (x * y, math.sin(x), y)
    u = t[0] + t[-1] * t[1]
    return u * t[2] + t[-3]


add(tup_pack_index, lambda r: (unif(r, -1.5, 1.5), unif(r, -1.5, 1.5)), (0, 1),
    tags={"tuple"})


def tup_unpack_nested(x, y, z):
    t = (x, (y * z, math.exp(z)))
    a, (b, c) = t
    inner = t[1]
    return a * b + c * inner[0] - inner[1] * x


add(tup_unpack_nested, lambda r: (unif(r, -1, 1), unif(r, -1, 1), unif(r, -1, 1)), (0, 1, 2),
    tags={"tuple"})


def tup_reduce_results(x, y):
    r, theta = polar(x, y)
    return r * math.cos(theta) + r * r * math.sin(theta)


add(tup_reduce_results, lambda r: (signed(r, 0.3, 1.5), signed(r, 0.3, 1.5)), (0, 1),
    tags={"tuple_result", "tuple", "call_same_module"})


def tup_result_indexed(x, y):
    # a callee's tuple used whole, indexed, and one element ignored
    p = polar(x + y, y)
    q = polar(x, 1.0)
    return p[0] * p[1] + q[0]


add(tup_result_indexed, lambda r: (unif(r, 0.3, 1.5), unif(r, 0.3, 1.5)), (0, 1),
    tags={"tuple_result", "tuple", "call_same_module"})


def _step(a, b, h):
    # an early return of one tuple, the final return of another
    if a > b:
        return b, a + h * math.sin(b)
    return a + h * b, b - h * a * a


def tup_callee_in_loop(x, y, n):
    a, b = x, y
    for i in range(n):
        a, b = _step(a, b, 0.3)
    return a * b + a


add(tup_callee_in_loop, lambda r: (unif(r, -1, 1), unif(r, -1, 1), 5), (0, 1),
    tags={"tuple_result", "tuple", "call_same_module", "reassign_loop"})


def tup_swap_recurrence(x, y, n):
    a, b = x, y
    s = 0.0
    for i in range(n):
        a, b = b, a + 0.5 * math.tanh(b)
        s += a * b
    return s


add(tup_swap_recurrence, lambda r: (unif(r, -1, 1), unif(r, -1, 1), 6), (0, 1),
    tags={"tuple", "reassign_loop"})


def tup_state_in_loop(x, y):
    state = (x, y)
    for i in range(4):
        state = (state[1], math.sin(state[0]) + 0.5 * state[1])
    last, before = state[1], state[0]
    return last * last + before


add(tup_state_in_loop, lambda r: (unif(r, -1.5, 1.5), unif(r, -1.5, 1.5)), (0, 1),
    tags={"tuple", "reassign_loop"})


def tup_arrays(x, c):
    t = (np.sin(x), np.cos(x) * c, x.shape[0])
    a, b, n = t
    return np.sum(a * b) / n + np.sum(t[0] ** 2)


add(tup_arrays, lambda r: (unif(r, -1, 1, 5), unif(r, 0.5, 1.5)), (0, 1),
    tags={"tuple", "array_expr"})


def tup_array_results(x, c):
    # a callee returning a tuple of arrays; one element unused (it takes a zero seed)
    up, down = ch.exp_pair(x, c)
    first = ch.exp_pair(x * x, c)[0]
    return np.sum(up * x) + np.sum(first)


add(tup_array_results, lambda r: (unif(r, -1, 1, 4), unif(r, 0.5, 1.5)), (0, 1),
    tags={"tuple_result", "tuple", "call_imported", "array_expr"})


def tup_arrays_swapped_in_loop(u, v):
    pair = (u.copy(), v.copy())
    for i in range(3):
        a, b = pair
        pair = (b * 0.5 + a, np.tanh(a) - b)
    return np.sum(pair[0] * pair[1])


add(tup_arrays_swapped_in_loop, lambda r: (unif(r, -1, 1, 4), unif(r, -1, 1, 4)), (0, 1),
    tags={"tuple", "array_expr", "reassign_loop"})


def tup_results_with_int(x, w):
    s, q, n = ch.moments(x)
    mean = s / n
    return q / n - mean * mean + np.sum(w * x) * mean


add(tup_results_with_int, lambda r: (unif(r, -1, 1, 6), unif(r, -1, 1, 6)), (0, 1),
    tags={"tuple_result", "tuple", "call_imported"})


def tup_ints_drive_loops(x, n):
    t = (x, n, 2.0 * x)
    total = 0.0
    for i in range(t[1]):
        total += t[0] * i + math.sin(t[2] * total)
    return total


add(tup_ints_drive_loops, lambda r: (unif(r, -1, 1), int(r.integers(2, 6))),
    tags={"tuple", "int_mixed"})


def tup_njit_callee(x, y):
    s = 0.0
    for i in range(len(x)):
        r, theta = ch.nj_polar(x[i], y)
        s += r * math.cos(2.0 * theta)
    return s


add(tup_njit_callee, lambda r: (signed(r, 0.3, 1.5, 4), signed(r, 0.3, 1.5)), (0, 1),
    tags={"tuple_result", "tuple", "call_njit"})


def _nested_results(x, y):
    r, theta = polar(x, y)
    return r * 2.0, (theta, r + theta)


def tup_nested_results(x, y):
    p, (q, s) = _nested_results(x, y)
    whole = _nested_results(y, x)
    return p * q + s + whole[1][1] * whole[0]


add(tup_nested_results, lambda r: (unif(r, 0.3, 1.5), unif(r, 0.3, 1.5)), (0, 1),
    tags={"tuple_result", "tuple", "call_same_module"})


def tup_conditional(x, y):
    t = (x, y) if x > y else (y * y, x)
    hi, lo = t
    return hi * 2.0 + lo * math.exp(hi)


add(tup_conditional, lambda r: tuple(spaced(r, 2, -1.0, 1.0)), (0, 1),
    tags={"tuple", "ternary"})


def tup_lambda_results(x, c):
    sc = lambda v: (math.sin(c * v), math.cos(c * v))  # noqa: E731
    s = 0.0
    for i in range(len(x)):
        a, b = sc(x[i])
        s += a * b + a
    return s


add(tup_lambda_results, lambda r: (unif(r, -1, 1, 5), unif(r, 0.5, 1.5)), (0, 1),
    tags={"tuple_result", "tuple", "lambda"})


def tup_returned_through(x, y):
    # a tuple result passed through another callee's return unchanged
    return _pass_through(x, y)[1] * y


def _pass_through(x, y):
    r = polar(x, y)
    return r


add(tup_returned_through, lambda r: (unif(r, 0.3, 1.5), unif(r, 0.3, 1.5)), (0, 1),
    tags={"tuple_result", "tuple", "call_same_module"})


# ============================================================================================
# feature detection for the coverage test
# ============================================================================================

MATH_NAMES = {
    "sin": ("math.sin", "np.sin"), "cos": ("math.cos", "np.cos"), "tan": ("math.tan", "np.tan"),
    "asin": ("math.asin", "np.arcsin"), "acos": ("math.acos", "np.arccos"),
    "atan": ("math.atan", "np.arctan"), "atan2": ("math.atan2", "np.arctan2"),
    "sinh": ("math.sinh", "np.sinh"), "cosh": ("math.cosh", "np.cosh"),
    "tanh": ("math.tanh", "np.tanh"), "exp": ("math.exp", "np.exp"),
    "expm1": ("math.expm1", "np.expm1"), "log": ("math.log", "np.log"),
    "log1p": ("math.log1p", "np.log1p"), "log10": ("math.log10", "np.log10"),
    "log2": ("math.log2", "np.log2"), "sqrt": ("math.sqrt", "np.sqrt"),
    "pow": ("math.pow", "np.power"), "hypot": ("math.hypot", "np.hypot"),
    "erf": ("math.erf",), "erfc": ("math.erfc",), "abs": ("abs", "np.abs"),
    "fabs": ("math.fabs", "np.fabs"), "min": ("min", "np.minimum"),
    "max": ("max", "np.maximum"), "floor": ("math.floor", "np.floor"),
    "ceil": ("math.ceil", "np.ceil"), "copysign": ("math.copysign", "np.copysign"),
}


def _dotted(node):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def features(fun):
    """Syntax features of ``fun``'s source (a set of strings), for the coverage test."""
    py = getattr(fun, "py_func", fun)
    tree = ast.parse(textwrap.dedent(inspect.getsource(py)))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.While):
            found.add("while")
        elif isinstance(node, ast.Break):
            found.add("break")
        elif isinstance(node, ast.Continue):
            found.add("continue")
        elif isinstance(node, ast.IfExp):
            found.add("ternary")
        elif isinstance(node, ast.BoolOp):
            found.add("boolop")
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            found.add("not")
        elif isinstance(node, ast.If):
            found.add("if")
            if node.orelse and isinstance(node.orelse[0], ast.If):
                found.add("elif")
            elif node.orelse:
                found.add("else")
        elif isinstance(node, ast.AugAssign):
            found.add("aug_assign")
            if isinstance(node.target, ast.Subscript):
                found.add("aug_assign_index")
            found.add(f"aug_{type(node.op).__name__}")
        elif isinstance(node, ast.Assign):
            for tgt in node.targets:
                if isinstance(tgt, ast.Subscript):
                    found.add("index_write")
                if isinstance(tgt, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    found.add("tuple_assign")
                elif isinstance(tgt, ast.Tuple):
                    found.add("tuple_unpack")
                elif isinstance(node.value, ast.Tuple):
                    found.add("tuple_pack")
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            found.add("index_read")
        elif isinstance(node, ast.Attribute) and node.attr == "shape":
            found.add("shape")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            found.add("**")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name == "range":
                found.add(f"range{len(node.args)}")
                if len(node.args) == 3:
                    step = node.args[2]
                    if isinstance(step, ast.UnaryOp) and isinstance(step.op, ast.USub):
                        found.add("range_negative_step")
            elif name == "len":
                found.add("len")
            elif name and name.endswith(".copy"):
                found.add("copy")
            elif name in ("np.empty", "np.zeros", "np.ones", "np.empty_like", "np.zeros_like"):
                found.add(name)
            if name:
                found.add(f"call:{name}")
        if isinstance(node, (ast.For, ast.While)):
            for inner in ast.walk(node):
                if inner is not node and isinstance(inner, (ast.For, ast.While)):
                    found.add("nested_loop")
    # early return: a return that is not the last statement of the body
    body = tree.body[0].body
    nested = {id(n) for d in ast.walk(tree.body[0]) if d is not tree.body[0]
              and isinstance(d, (ast.FunctionDef, ast.Lambda)) for n in ast.walk(d)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Return) and node is not body[-1] and id(node) not in nested:
            found.add("early_return")
    return found


def case_by_name(name):
    for c in CORPUS:
        if c.name == name:
            return c
    raise KeyError(name)



