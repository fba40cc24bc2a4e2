"""The one table of derivative rules.

Each reverse rule is a tiny Python function: it receives ``g`` (the adjoint flowing into the
result), ``z`` (the result) and the operands, and returns one adjoint contribution per operand
(``None`` where the operand is not differentiable). The transforms never call these functions:
they read their source and substitute the statement's names, so each rule is also the code that
ends up in the generated derivative (as in Tangent).

Also here: the functions whose derivative is zero (``NON_DIFFERENTIABLE``), the casts that pass
the adjoint through, and the array constructors whose results do not depend on their inputs.
"""
from __future__ import annotations

import ast
import builtins
import copy
import inspect
import math
import textwrap
from dataclasses import dataclass

import numpy as np

from .codegen import instantiate, parameters
from .kernels import arrays as _nad_arrays  # the name generated code gives it (naming.ARRAY_MODULE)
from .kernels import products as _nad_blas  # (naming.PRODUCT_MODULE)
from .kernels import tape as _nad_tape      # (naming.TAPE_MODULE)


@dataclass(frozen=True)
class ReverseRule:
    """Adjoint templates of one primitive: ``adjoints[i]`` is the contribution to operand ``i``."""

    name: str
    spelling: str                  # how generated code calls the primitive, e.g. "math.sin"
    params: tuple[str, ...]
    adjoints: tuple[ast.expr | None, ...]

    def names_used(self, index: int) -> set[str]:
        """The template names (g, z, operands) read by the adjoint of operand ``index``."""
        expr = self.adjoints[index]
        if expr is None:
            return set()
        return {n.id for n in ast.walk(expr) if isinstance(n, ast.Name)} & {"g", "z", *self.params}


def _template(fn) -> tuple[tuple[str, ...], tuple[ast.expr | None, ...]]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0]
    params = tuple(parameters(tree))[2:]          # skip g, z
    returned = tree.body[-1].value
    elements = returned.elts if isinstance(returned, ast.Tuple) else [returned]
    adjoints = tuple(None if isinstance(e, ast.Constant) and e.value is None else e for e in elements)
    assert len(adjoints) == len(params), fn.__name__
    return params, adjoints


OPERATORS: dict[type, ReverseRule] = {}
CALLS: dict[int, ReverseRule] = {}           # keyed by id() of the primitive callable
_CALL_OBJECTS: list = []                     # keeps the keyed callables alive


def _rule(fn, spelling: str) -> ReverseRule:
    params, adjoints = _template(fn)
    return ReverseRule(fn.__name__, spelling, params, adjoints)


def _register(table_key, spelling: str, fn, *, operator: bool = False) -> None:
    rule = _rule(fn, spelling)
    if operator:
        OPERATORS[table_key] = rule
    else:
        for obj in table_key:
            CALLS[id(obj)] = rule
            _CALL_OBJECTS.append(obj)


def alias(obj, original) -> None:
    """Give callable ``obj`` the rule (and spelling) of the primitive ``original``: for a
    function computing the same thing (``kernels.vecmath.tanh`` for ``math.tanh``)."""
    CALLS[id(obj)] = CALLS[id(original)]
    _CALL_OBJECTS.append(obj)


def operator(op: type):
    """Register the rule of a Python operator (``ast.Add``...)."""
    def deco(fn):
        _register(op, "", fn, operator=True)
        return fn
    return deco


def primitive(spelling: str, *objects):
    """Register the rule of callables (``math.sin``, ``np.sin``...), emitted as ``spelling``."""
    def deco(fn):
        _register(objects, spelling, fn)
        return fn
    return deco


# ---- operators -------------------------------------------------------------------------------

@operator(ast.Add)
def add(g, z, x, y): return g, g
@operator(ast.Sub)
def sub(g, z, x, y): return g, -g
@operator(ast.Mult)
def mul(g, z, x, y): return g * y, g * x
@operator(ast.Div)
def div(g, z, x, y): return g / y, -g * (z / y)
# ``y - 1 + (y == 0) * (x == 0)``: the exponent of ``y * x ** (y - 1)`` where it matters; at
# ``x == y == 0`` the term is ``0 * 0 ** 0``, neither a division by zero nor 0 * inf. Only there:
# at ``y == 0 != x`` the term keeps ``x ** -1``, its derivative in ``y`` (forward over reverse).
@operator(ast.Pow)
def pow_(g, z, x, y):
    return g * y * x ** (y - 1 + (y == 0) * (x == 0)), g * z * math.log(x) if x > 0 else 0.0
@operator(ast.Mod)
def mod(g, z, x, y): return g, -g * math.floor(x / y)
@operator(ast.FloorDiv)
def floordiv(g, z, x, y): return None, None
@operator(ast.USub)
def neg(g, z, x): return -g
@operator(ast.UAdd)
def pos(g, z, x): return g

# ---- math and NumPy scalar functions ---------------------------------------------------------

@primitive("math.sin", math.sin, np.sin)
def sin(g, z, x): return g * math.cos(x)
@primitive("math.cos", math.cos, np.cos)
def cos(g, z, x): return -g * math.sin(x)
@primitive("math.tan", math.tan, np.tan)
def tan(g, z, x): return g * (1.0 + z * z)
@primitive("math.asin", math.asin, np.arcsin)
def asin(g, z, x): return g / math.sqrt(1.0 - x * x)
@primitive("math.acos", math.acos, np.arccos)
def acos(g, z, x): return -g / math.sqrt(1.0 - x * x)
@primitive("math.atan", math.atan, np.arctan)
def atan(g, z, x): return g / (1.0 + x * x)
@primitive("math.atan2", math.atan2, np.arctan2)
def atan2(g, z, y, x): return g * x / (x * x + y * y), -g * y / (x * x + y * y)
@primitive("math.sinh", math.sinh, np.sinh)
def sinh(g, z, x): return g * math.cosh(x)
@primitive("math.cosh", math.cosh, np.cosh)
def cosh(g, z, x): return g * math.sinh(x)
@primitive("math.tanh", math.tanh, np.tanh)
def tanh(g, z, x): return g * (1.0 - z * z)
@primitive("math.asinh", math.asinh, np.arcsinh)
def asinh(g, z, x): return g / math.sqrt(x * x + 1.0)
@primitive("math.acosh", math.acosh, np.arccosh)
def acosh(g, z, x): return g / math.sqrt(x * x - 1.0)
@primitive("math.atanh", math.atanh, np.arctanh)
def atanh(g, z, x): return g / (1.0 - x * x)
@primitive("math.exp", math.exp, np.exp)
def exp(g, z, x): return g * z
@primitive("math.expm1", math.expm1, np.expm1)
def expm1(g, z, x): return g * (z + 1.0)
@primitive("np.exp2", np.exp2)
def exp2(g, z, x): return g * z * 0.6931471805599453
@primitive("math.log", math.log, np.log)
def log(g, z, x): return g / x
@primitive("math.log1p", math.log1p, np.log1p)
def log1p(g, z, x): return g / (1.0 + x)
@primitive("math.log10", math.log10, np.log10)
def log10(g, z, x): return g / (x * 2.302585092994046)
@primitive("math.log2", math.log2, np.log2)
def log2(g, z, x): return g / (x * 0.6931471805599453)
@primitive("math.sqrt", math.sqrt, np.sqrt)
def sqrt(g, z, x): return g * 0.5 / z
@primitive("np.cbrt", np.cbrt)
def cbrt(g, z, x): return g / (3.0 * z * z)
@primitive("np.square", np.square)
def square(g, z, x): return 2.0 * g * x
@primitive("math.pow", math.pow, np.power, builtins.pow)
def power(g, z, x, y):
    return g * y * x ** (y - 1 + (y == 0) * (x == 0)), g * z * math.log(x) if x > 0 else 0.0
@primitive("math.hypot", math.hypot, np.hypot)
def hypot(g, z, x, y): return g * x / z if z > 0 else 0.0, g * y / z if z > 0 else 0.0
@primitive("math.erf", math.erf)
def erf(g, z, x): return g * 1.1283791670955126 * math.exp(-x * x)
@primitive("math.erfc", math.erfc)
def erfc(g, z, x): return -g * 1.1283791670955126 * math.exp(-x * x)
@primitive("abs", builtins.abs, np.abs, np.absolute)
def abs_(g, z, x): return g * np.sign(x)
@primitive("math.fabs", math.fabs, np.fabs)
def fabs(g, z, x): return g * np.sign(x)
@primitive("min", builtins.min, np.minimum, np.fmin)
def minimum(g, z, x, y): return g if x <= y else 0.0, 0.0 if x <= y else g
@primitive("max", builtins.max, np.maximum, np.fmax)
def maximum(g, z, x, y): return g if x >= y else 0.0, 0.0 if x >= y else g
@primitive("math.copysign", math.copysign, np.copysign)
def copysign(g, z, x, y): return g * np.sign(x) * math.copysign(1.0, y), None
@primitive("np.fmod", math.fmod, np.fmod)     # numba compiles np.fmod, not math.fmod
def fmod(g, z, x, y): return g, -g * math.trunc(x / y)
@primitive("float", builtins.float, np.float64, np.float32, np.double, np.single)
def to_float(g, z, x): return g

# Variadic min/max are rewritten as nested binary calls by normalisation.
VARIADIC = {id(builtins.min), id(builtins.max)}

# ---- zero derivative -------------------------------------------------------------------------

NON_DIFFERENTIABLE = {id(f): name for f, name in [
    (math.floor, "math.floor"), (math.ceil, "math.ceil"), (math.trunc, "math.trunc"),
    (np.floor, "np.floor"), (np.ceil, "np.ceil"), (np.trunc, "np.trunc"), (np.rint, "np.rint"),
    (builtins.round, "round"), (builtins.int, "int"), (builtins.bool, "bool"),
    (builtins.len, "len"), (np.sign, "np.sign"), (_nad_tape.trip_count, "_nad_tape.trip_count"),
    (math.isnan, "math.isnan"), (math.isinf, "math.isinf"), (math.isfinite, "math.isfinite"),
    (np.isnan, "np.isnan"), (np.isinf, "np.isinf"), (np.isfinite, "np.isfinite"),
    (np.int64, "np.int64"), (np.int32, "np.int32"), (np.intp, "np.intp"),
    (_nad_arrays.positions, "_nad_arrays.positions"),
]}

# Array constructors: the result's values do not depend on the (integer) arguments.
ARRAY_CONSTRUCTORS = {id(f): name for f, name in [
    (_nad_arrays.zeros_like, "_nad_arrays.zeros_like"),
    (np.zeros, "np.zeros"), (np.ones, "np.ones"), (np.empty, "np.empty"),
    (np.zeros_like, "np.zeros_like"), (np.ones_like, "np.ones_like"),
    (np.empty_like, "np.empty_like"), (np.arange, "np.arange"), (np.eye, "np.eye"),
    (np.identity, "np.identity"), (_nad_arrays.empty_for, "_nad_arrays.empty_for"),
]}
# Objects the generated code may name in keyword values (dtype=np.float32...).
DTYPES = {id(f): name for f, name in [
    (np.float64, "np.float64"), (np.float32, "np.float32"), (np.int64, "np.int64"),
    (np.int32, "np.int32"), (builtins.float, "np.float64"), (builtins.int, "np.int64"),
    (np.double, "np.float64"), (np.intp, "np.intp"),
]}
# ---- whole-array primitives -----------------------------------------------------------------
# Rules over arrays: ``g`` is the adjoint array (or scalar) of the result ``z``; each contribution
# already has its operand's shape, except for elementwise primitives (``elementwise=True``),
# whose contributions are summed down to each operand's shape (the adjoint of broadcasting).
# ``_nad_arrays`` is ``nbautodiff.kernels.arrays``. Elementwise operators and math/NumPy
# functions applied to arrays reuse the scalar rules above through :func:`array_template`.

ARRAY_CALLS: dict[tuple[int, bool], ReverseRule] = {}   # (id(callable), has axis) -> rule
ELEMENTWISE_ARRAY_CALLS: set[str] = set()                 # names of elementwise array rules


def array_primitive(spelling: str, *objects, axis: bool = False, elementwise: bool = False):
    """Register the whole-array rule of callables (with an ``axis`` operand when ``axis``)."""
    def deco(fn):
        rule = _rule(fn, spelling)
        for obj in objects:
            ARRAY_CALLS[(id(obj), axis)] = rule
            _CALL_OBJECTS.append(obj)
        if elementwise:
            ELEMENTWISE_ARRAY_CALLS.add(fn.__name__)
        return fn
    return deco


@array_primitive("np.sum", np.sum)
def sum_(g, z, x): return g
@array_primitive("_nad_arrays.sum_axis", np.sum, _nad_arrays.sum_axis, axis=True)
def sum_axis(g, z, x, axis): return _nad_arrays.expand_axis(g, x, axis), None
@array_primitive("np.mean", np.mean)
def mean(g, z, x): return g / x.size
@array_primitive("_nad_arrays.mean_axis", np.mean, _nad_arrays.mean_axis, axis=True)
def mean_axis(g, z, x, axis): return _nad_arrays.expand_axis(g, x, axis) / x.shape[axis], None
@array_primitive("np.prod", np.prod)
def prod(g, z, x): return _nad_arrays.prod_adjoint(g, x)
@array_primitive("np.max", np.max, np.amax)
def max_(g, z, x): return _nad_arrays.extremum_adjoint(g, x, z)
@array_primitive("np.min", np.min, np.amin)
def min_(g, z, x): return _nad_arrays.extremum_adjoint(g, x, z)
@array_primitive("_nad_arrays.max_axis", np.max, np.amax, _nad_arrays.max_axis, axis=True)
def max_axis(g, z, x, axis): return _nad_arrays.extremum_axis_adjoint(g, x, z, axis), None
@array_primitive("_nad_arrays.min_axis", np.min, np.amin, _nad_arrays.min_axis, axis=True)
def min_axis(g, z, x, axis): return _nad_arrays.extremum_axis_adjoint(g, x, z, axis), None
@array_primitive("np.dot", np.dot, np.matmul)
def dot(g, z, a, b): return _nad_arrays.matmul_left(g, a, b), _nad_arrays.matmul_right(g, a, b)
# np.outer flattens operands of any rank: each adjoint is computed flat, then given its shape.
@array_primitive("np.outer", np.outer)
def outer(g, z, a, b):
    return (np.reshape(g @ np.reshape(np.ascontiguousarray(b), (b.size,)).astype(g.dtype), a.shape),
            np.reshape(np.reshape(np.ascontiguousarray(a), (a.size,)).astype(g.dtype) @ g, b.shape))
@array_primitive("np.transpose", np.transpose)
def transpose(g, z, x): return np.transpose(g)
@array_primitive("np.reshape", np.reshape)
def reshape(g, z, x, shape): return np.reshape(np.ascontiguousarray(g), x.shape), None
@array_primitive("np.where", np.where, elementwise=True)
def where(g, z, c, x, y): return None, np.where(c, g, 0.0), np.where(c, 0.0, g)
@array_primitive("np.cumsum", np.cumsum)
def cumsum(g, z, x): return np.reshape(np.ascontiguousarray(np.cumsum(g[::-1])[::-1]), x.shape)
@array_primitive("np.cumsum", np.cumsum, axis=True)
def cumsum_axis(g, z, x, axis):
    return (_nad_arrays.expand_axis(_nad_arrays.sum_axis(g, axis), x, axis)
            - np.cumsum(g, axis) + g), None
@array_primitive("np.linalg.det", np.linalg.det)
def det(g, z, a): return g * _nad_arrays.det_cofactor(a)
@array_primitive("np.linalg.inv", np.linalg.inv)
def inv(g, z, a): return -(np.ascontiguousarray(z.T) @ np.ascontiguousarray(g)
                           @ np.ascontiguousarray(z.T))
@array_primitive("np.linalg.solve", np.linalg.solve)
def solve(g, z, a, b): return (_nad_arrays.solve_matrix_adjoint(g, a, z),
                               np.linalg.solve(np.ascontiguousarray(a.T), g))
@array_primitive("np.atleast_1d", np.atleast_1d)
def atleast_1d(g, z, x): return np.reshape(np.ascontiguousarray(g), x.shape)
@array_primitive("np.atleast_2d", np.atleast_2d)
def atleast_2d(g, z, x): return np.reshape(np.ascontiguousarray(g), x.shape)
@array_primitive("np.atleast_3d", np.atleast_3d)
def atleast_3d(g, z, x): return np.reshape(np.ascontiguousarray(g), x.shape)

@array_primitive("np.full", np.full)
def full(g, z, shape, value): return None, np.sum(g)
@array_primitive("np.full_like", np.full_like)
def full_like(g, z, a, value): return None, np.sum(g)

OPERATORS[ast.MatMult] = ARRAY_CALLS[(id(np.matmul), False)]

# NumPy's names of the operators: ``np.add(x, y)`` is normalised to ``x + y`` (and so has the
# operator's rule), ``np.reciprocal(x)`` to ``1.0 / x``.
UFUNC_OPERATORS = {id(f): op for f, op in [
    (np.add, ast.Add), (np.subtract, ast.Sub), (np.multiply, ast.Mult), (np.divide, ast.Div),
    (np.true_divide, ast.Div), (np.floor_divide, ast.FloorDiv), (np.mod, ast.Mod),
    (np.remainder, ast.Mod), (np.negative, ast.USub), (np.positive, ast.UAdd),
]}
RECIPROCAL = id(np.reciprocal)
# Library functions that write into an array argument: never called as a constant.
WRITE_ARGUMENTS = {id(f): name for f, name in [
    (np.random.shuffle, "np.random.shuffle"), (np.copyto, "np.copyto"),
    (np.fill_diagonal, "np.fill_diagonal"), (np.put, "np.put"), (np.place, "np.place"),
    (np.putmask, "np.putmask"),
]}

# Products that ``fastmath=True`` recognises in loop nests (:mod:`nbautodiff.transforms.raising`). An adjoint template
# whose first argument is the name ``into`` accumulates in place into the operand's shadow
# (``into``): a statement, not a contribution to add (see ``reverse_arrays.rule_adjoints``).
INTO = "into"


@array_primitive("_nad_blas.dot_rows", _nad_blas.dot_rows)
def dot_rows(g, z, a, ra, b, rb, M):
    return (_nad_blas.axpy_into(into, ra, g, b, rb, M), None,
            _nad_blas.axpy_into(into, rb, g, a, ra, M), None, None)
@array_primitive("_nad_blas.matvec_rows", _nad_blas.matvec_rows)
def matvec_rows(g, z, A, v, r, N, M):
    return (_nad_blas.ger_into(into, g, v, r, N, M),
            _nad_blas.gemv_t_into(into, r, A, g, N, M), None, None, None)
@array_primitive("_nad_blas.matmul_nt", _nad_blas.matmul_nt)
def matmul_nt(g, z, A, B, N, K, M):
    return (_nad_blas.mm_into(into, g, B, N, K, M),
            _nad_blas.mm_t_into(into, g, A, N, K, M), None, None, None)

# ---- forward mode ----------------------------------------------------------------------------
# A forward (tangent) template receives ``d`` (the tangent of one operand), ``z`` and the
# operands, and returns each operand's contribution to the result's tangent. For a scalar
# primitive it is the reverse template with ``g`` replaced by ``d`` (the partial derivative
# times the incoming value, in either direction), so scalar primitives need no second rule;
# whole-array primitives that are not elementwise have theirs below.

ARRAY_TANGENTS: dict[str, ReverseRule] = {}   # name of the reverse rule -> its tangent templates


def array_tangent(reverse_rule):
    """Register the tangent templates of the whole-array primitive ``reverse_rule``."""
    def deco(fn):
        ARRAY_TANGENTS[reverse_rule.__name__] = _rule(fn, "")
        return fn
    return deco


@array_tangent(sum_)
def sum_tangent(d, z, x): return np.sum(d)
@array_tangent(sum_axis)
def sum_axis_tangent(d, z, x, axis): return _nad_arrays.sum_axis(d, axis), None
@array_tangent(mean)
def mean_tangent(d, z, x): return np.mean(d)
@array_tangent(mean_axis)
def mean_axis_tangent(d, z, x, axis): return _nad_arrays.mean_axis(d, axis), None
@array_tangent(prod)
def prod_tangent(d, z, x): return np.sum(_nad_arrays.prod_adjoint(1.0, x) * d)
@array_tangent(max_)
def max_tangent(d, z, x): return np.sum(_nad_arrays.extremum_adjoint(1.0, x, z) * d)
@array_tangent(min_)
def min_tangent(d, z, x): return np.sum(_nad_arrays.extremum_adjoint(1.0, x, z) * d)
@array_tangent(max_axis)
def max_axis_tangent(d, z, x, axis):
    return _nad_arrays.extremum_axis_tangent(d, x, z, axis), None
@array_tangent(min_axis)
def min_axis_tangent(d, z, x, axis):
    return _nad_arrays.extremum_axis_tangent(d, x, z, axis), None
@array_tangent(dot)
def dot_tangent(d, z, a, b): return (np.dot(np.ascontiguousarray(d), np.ascontiguousarray(b)),
                                     np.dot(np.ascontiguousarray(a), np.ascontiguousarray(d)))
@array_tangent(dot_rows)
def dot_rows_tangent(d, z, a, ra, b, rb, M):
    return _nad_blas.dot_rows(d, ra, b, rb, M), None, _nad_blas.dot_rows(a, ra, d, rb, M), None, None
@array_tangent(matvec_rows)
def matvec_rows_tangent(d, z, A, v, r, N, M):
    return (_nad_blas.matvec_rows(d, v, r, N, M), _nad_blas.matvec_rows(A, d, r, N, M),
            None, None, None)
@array_tangent(matmul_nt)
def matmul_nt_tangent(d, z, A, B, N, K, M):
    return (_nad_blas.matmul_nt(d, B, N, K, M), _nad_blas.matmul_nt(A, d, N, K, M),
            None, None, None)
@array_tangent(outer)
def outer_tangent(d, z, a, b): return np.outer(d, b), np.outer(a, d)
@array_tangent(transpose)
def transpose_tangent(d, z, x): return np.transpose(d)
@array_tangent(reshape)
def reshape_tangent(d, z, x, shape): return np.reshape(np.ascontiguousarray(d), shape), None
@array_tangent(cumsum)
def cumsum_tangent(d, z, x): return np.cumsum(d)
@array_tangent(cumsum_axis)
def cumsum_axis_tangent(d, z, x, axis): return np.cumsum(d, axis), None
@array_tangent(det)
def det_tangent(d, z, a): return np.sum(_nad_arrays.det_cofactor(a) * d)
@array_tangent(inv)
def inv_tangent(d, z, a): return -(z @ np.ascontiguousarray(d) @ z)
@array_tangent(solve)
def solve_tangent(d, z, a, b): return (np.linalg.solve(a, -(np.ascontiguousarray(d) @ z)),
                                       np.linalg.solve(a, d))
@array_tangent(full)
def full_tangent(d, z, shape, value): return None, np.full_like(z, d)
@array_tangent(full_like)
def full_like_tangent(d, z, a, value): return None, np.full_like(z, d)
@array_tangent(atleast_1d)
def atleast_1d_tangent(d, z, x): return np.atleast_1d(d)
@array_tangent(atleast_2d)
def atleast_2d_tangent(d, z, x): return np.atleast_2d(d)
@array_tangent(atleast_3d)
def atleast_3d_tangent(d, z, x): return np.atleast_3d(d)


# ---- runtime helpers of generated code ---------------------------------------------------
# A derivative of a derivative differentiates generated code, which calls the helpers of
# nbautodiff.kernels. Each helper's tangent is one template over its parameters and ``d_<p>``,
# the tangents of its differentiable parameters: a sum whose terms are dropped when their
# tangents are all zero (an inactive operand), other inactive tangents becoming zeros. A helper
# that writes into one of its arguments (``writes``) is a statement; its template writes that
# argument's tangent. Reverse mode does not differentiate these calls.


@dataclass(frozen=True)
class HelperRule:
    name: str
    spelling: str
    params: tuple[str, ...]
    differentiable: tuple[str, ...]          # parameters with a tangent (d_<name> in the template)
    tangent: ast.expr | None                 # None: no tangent rule yet (refused)
    writes: int | None                       # position of the argument written in place
    accumulates: bool = False                # adds into ``writes`` (a term with no other
                                             # nonzero tangent adds nothing: dropped)


HELPERS: dict[int, HelperRule] = {}


def helper(spelling: str, obj, writes: int | None = None, accumulates: bool = False):
    """Register the tangent template of a runtime helper ``obj`` (see above)."""
    def deco(fn):
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0]
        names = tuple(parameters(tree))
        params = tuple(n for n in names if not n.startswith("d_"))
        differentiable = tuple(n[2:] for n in names if n.startswith("d_"))
        HELPERS[id(obj)] = HelperRule(fn.__name__, spelling, params, differentiable,
                                      tree.body[-1].value, writes, accumulates)
        _CALL_OBJECTS.append(obj)
        return fn
    return deco


@helper("_nad_tape.grown", _nad_tape.grown)
def grown_tangent(tape, top, extra, d_tape): return _nad_tape.grown(d_tape, top, extra)
@helper("_nad_tape.push_array", _nad_tape.push_array)
def push_array_tangent(tape, top, array, d_tape, d_array):
    return _nad_tape.push_array(d_tape, top, d_array)
@helper("_nad_tape.pop_array", _nad_tape.pop_array, writes=2)
def pop_array_tangent(tape, top, array, d_tape, d_array):
    return _nad_tape.pop_array(d_tape, top, d_array)
@helper("_nad_tape.add_into", _nad_tape.add_into, writes=0)
def add_into_tangent(target, source, d_target, d_source):
    return _nad_tape.add_into(d_target, d_source)
@helper("_nad_tape.copy_into", _nad_tape.copy_into, writes=0)
def copy_into_tangent(target, source, d_target, d_source):
    return _nad_tape.copy_into(d_target, d_source)
@helper("_nad_arrays.unbroadcast", _nad_arrays.unbroadcast)
def unbroadcast_tangent(c, like, d_c): return _nad_arrays.unbroadcast(d_c, like)
@helper("_nad_arrays.expand_axis", _nad_arrays.expand_axis)
def expand_axis_tangent(g, like, axis, d_g): return _nad_arrays.expand_axis(d_g, like, axis)
@helper("_nad_arrays.extremum_adjoint", _nad_arrays.extremum_adjoint)
def extremum_adjoint_tangent(g, x, z, d_g): return _nad_arrays.extremum_adjoint(d_g, x, z)
@helper("_nad_arrays.extremum_axis_adjoint", _nad_arrays.extremum_axis_adjoint)
def extremum_axis_adjoint_tangent(g, x, z, axis, d_g):
    return _nad_arrays.extremum_axis_adjoint(d_g, x, z, axis)
@helper("_nad_arrays.extremum_axis_tangent", _nad_arrays.extremum_axis_tangent)
def extremum_axis_tangent_tangent(d, x, z, axis, d_d):
    return _nad_arrays.extremum_axis_tangent(d_d, x, z, axis)
@helper("_nad_arrays.matmul_left", _nad_arrays.matmul_left)
def matmul_left_tangent(g, a, b, d_g, d_b):
    return _nad_arrays.matmul_left(d_g, a, b) + _nad_arrays.matmul_left(g, a, d_b)
@helper("np.ascontiguousarray", np.ascontiguousarray)
def ascontiguousarray_tangent(x, d_x): return np.ascontiguousarray(d_x)
@helper("_nad_arrays.matmul_right", _nad_arrays.matmul_right)
def matmul_right_tangent(g, a, b, d_g, d_a):
    return _nad_arrays.matmul_right(d_g, a, b) + _nad_arrays.matmul_right(g, d_a, b)


@helper("_nad_blas.axpy_into", _nad_blas.axpy_into, writes=0, accumulates=True)
def axpy_into_tangent(target, rt, g, x, rx, M, d_target, d_g, d_x):
    return (_nad_blas.axpy_into(d_target, rt, d_g, x, rx, M)
            + _nad_blas.axpy_into(d_target, rt, g, d_x, rx, M))
@helper("_nad_blas.ger_into", _nad_blas.ger_into, writes=0, accumulates=True)
def ger_into_tangent(target, g, v, r, N, M, d_target, d_g, d_v):
    return (_nad_blas.ger_into(d_target, d_g, v, r, N, M)
            + _nad_blas.ger_into(d_target, g, d_v, r, N, M))
@helper("_nad_blas.gemv_t_into", _nad_blas.gemv_t_into, writes=0, accumulates=True)
def gemv_t_into_tangent(target, r, A, g, N, M, d_target, d_A, d_g):
    return (_nad_blas.gemv_t_into(d_target, r, d_A, g, N, M)
            + _nad_blas.gemv_t_into(d_target, r, A, d_g, N, M))
@helper("_nad_blas.mm_into", _nad_blas.mm_into, writes=0, accumulates=True)
def mm_into_tangent(target, G, X, N, K, M, d_target, d_G, d_X):
    return (_nad_blas.mm_into(d_target, d_G, X, N, K, M)
            + _nad_blas.mm_into(d_target, G, d_X, N, K, M))
@helper("_nad_blas.mm_t_into", _nad_blas.mm_t_into, writes=0, accumulates=True)
def mm_t_into_tangent(target, G, X, N, K, M, d_target, d_G, d_X):
    return (_nad_blas.mm_t_into(d_target, d_G, X, N, K, M)
            + _nad_blas.mm_t_into(d_target, G, d_X, N, K, M))


@helper("_nad_arrays.scatter_add", _nad_arrays.scatter_add, writes=0, accumulates=True)
def scatter_add_tangent(into, selected, g, d_into, d_g):
    return _nad_arrays.scatter_add(d_into, selected, d_g)
@helper("_nad_arrays.stored_adjoint", _nad_arrays.stored_adjoint)
def stored_adjoint_tangent(into, selected, d_into):
    return _nad_arrays.stored_adjoint(d_into, selected)
@helper("_nad_arrays.zero_at", _nad_arrays.zero_at, writes=0)
def zero_at_tangent(into, selected, d_into): return _nad_arrays.zero_at(d_into, selected)


@helper("_nad_arrays.prod_adjoint", _nad_arrays.prod_adjoint)
def prod_adjoint_tangent(g, x, d_g, d_x): return _nad_arrays.prod_adjoint_tangent(g, x, d_g, d_x)
@helper("_nad_arrays.det_cofactor", _nad_arrays.det_cofactor)
def det_cofactor_tangent(a, d_a): return _nad_arrays.det_cofactor_tangent(a, d_a)
@helper("_nad_arrays.solve_matrix_adjoint", _nad_arrays.solve_matrix_adjoint)
def solve_matrix_adjoint_tangent(g, a, z, d_g, d_a, d_z):
    return _nad_arrays.solve_matrix_adjoint_tangent(g, a, z, d_g, d_a, d_z)


# Runtime modules whose calls in generated code have no tangent rules: the derivative that
# calls them cannot be differentiated again yet (module -> what it implements).
NOT_DIFFERENTIATED_AGAIN = {"nbautodiff.kernels.checkpoint": "the gradient of a checkpointed loop"}


def tangent_templates(rule: ReverseRule, on_arrays: bool) -> tuple[ast.expr | None, ...] | None:
    """The tangent templates of ``rule``'s operands (``on_arrays``: the operation is applied
    elementwise to arrays); None for a whole-array primitive without forward rule."""
    if rule.name in ARRAY_TANGENTS:
        return ARRAY_TANGENTS[rule.name].adjoints
    if rule.name not in ELEMENTWISE_ARRAY_CALLS and \
            any(rule is known for known in ARRAY_CALLS.values()):
        return None
    tangent = {"g": ast.Name(id="d", ctx=ast.Load())}
    templates = []
    for adjoint in rule.adjoints:
        template = None if adjoint is None else instantiate(adjoint, tangent)
        templates.append(array_template(template) if on_arrays and template else template)
    return tuple(templates)

# Methods of arrays that are spelled as NumPy functions (``x.sum(axis=0)`` is ``np.sum(x, axis=0)``).
ARRAY_METHOD_FUNCTIONS = {"sum": np.sum, "mean": np.mean, "prod": np.prod, "max": np.max,
                          "min": np.min, "dot": np.dot, "transpose": np.transpose,
                          "reshape": np.reshape, "cumsum": np.cumsum}
# math names whose NumPy (array) spelling differs.
_NUMPY_NAMES = {"asin": "arcsin", "acos": "arccos", "atan": "arctan", "asinh": "arcsinh",
                "acosh": "arccosh", "atanh": "arctanh", "atan2": "arctan2", "pow": "power"}


class _ToArrays(ast.NodeTransformer):
    def visit_Attribute(self, node: ast.Attribute) -> ast.expr:
        if isinstance(node.value, ast.Name) and node.value.id == "math":
            return ast.Attribute(value=ast.Name(id="np", ctx=ast.Load()),
                                 attr=_NUMPY_NAMES.get(node.attr, node.attr), ctx=ast.Load())
        return self.generic_visit(node)

    def visit_IfExp(self, node: ast.IfExp) -> ast.expr:
        self.generic_visit(node)
        return ast.Call(func=ast.parse("np.where", mode="eval").body,
                        args=[node.test, node.body, node.orelse], keywords=[])


def array_template(template: ast.expr) -> ast.expr:
    """A scalar rule's adjoint template made elementwise over arrays (``math.f`` -> ``np.f``,
    ``a if c else b`` -> ``np.where(c, a, b)``)."""
    return _ToArrays().visit(copy.deepcopy(template))


def numpy_spelling(obj) -> str | None:
    """``np.<name>`` for a NumPy callable (so generated code applies it to arrays too), else None."""
    name = getattr(obj, "__name__", None)
    if name and getattr(np, name, None) is obj:
        return f"np.{name}"
    return None


CONSTANTS = {"pi": math.pi, "e": math.e, "inf": math.inf, "nan": math.nan, "tau": math.tau}
# Array methods and attributes with a meaning of their own in the transforms.
ARRAY_METHODS = {"copy"}
ARRAY_ATTRIBUTES = {"shape", "size", "ndim", "nbytes"}


def spelling_of(obj) -> str | None:
    """How generated code names a known primitive, constructor or dtype; None if unknown."""
    key = id(obj)
    if key in CALLS:
        return CALLS[key].spelling
    for table in (NON_DIFFERENTIABLE, ARRAY_CONSTRUCTORS, DTYPES):
        if key in table:
            return table[key]
    return None
