"""The public API: JAX-style ``grad``/``value_and_grad``/``vjp`` over Enzyme-style ``reverse``.

Derived functions compile lazily, once per argument types (like ``numba.njit``), and carry
``.primal`` (the user's function), ``.source`` (the generated code of the latest compiled
signature, or of a signature guessed from the source before the first call) and ``.memory``
(the tape and checkpoint bytes of the last call, :class:`nbautodiff.transforms.reverse.checkpointing.MemoryReport`; its total is
``.tape_bytes``). ``checkpoint=`` checkpoints the function's outermost loops that need a tape
(see :mod:`nbautodiff.transforms.reverse.checkpointing` and :func:`nbautodiff.frontend.checkpoint_markers.parse_option`).
"""
from __future__ import annotations

import ast
import numbers
from dataclasses import dataclass

import numpy as np
from numba import types as nbtypes

from nbautodiff.analysis import tuples, typeinfer
from nbautodiff.errors import AutodiffError, TapeMemoryError
from nbautodiff.frontend import declarations as custom
from nbautodiff.frontend.source import function_source
from nbautodiff.pipeline import program
from nbautodiff.transforms.reverse.checkpointing import MemoryReport
from .activities import Active, Const, Duplicated, DuplicatedOnly, REVERSE_ARGUMENT, has_shadow
from .derivative import (Derivative, check_value, checked_return, copy_back, is_float_array,
                         refuse_overlapping, resolved_argnums, typeof_value)
from .forward import GradOfDerivative, jacfwd

_RETURNS = {"Active": (True, True), "ActiveOnly": (True, False), "Const": (False, True),
            "DuplicatedOnly": (False, False)}


class ReverseFunction(Derivative):
    """``reverse(fun, *activities, ret=...)``: Rust ``#[autodiff_reverse]`` calling convention.

    Call with each argument followed by its shadow where its activity is ``Duplicated`` or
    ``DuplicatedOnly``, and a seed last when ``ret`` is ``Active``/``ActiveOnly``. Returns the
    primal result (unless ``ret`` ends in ``Only``) then the adjoints of ``Active`` arguments;
    a single item is returned bare. Adjoints of arrays are added into their shadows. For a
    function returning a tuple the seed is a tuple too, nested like the result: a float or an
    array per differentiable element, None (or 0) for an int.
    """

    kind = "reverse"
    scalar_output_for: str | None = None     # set by grad: a tuple or array result is refused

    def __init__(self, fun, activities, ret="Active", checkpoint=None, fastmath=False):
        super().__init__(fun, checkpoint, fastmath)
        self.activities = self._checked_activities(activities, REVERSE_ARGUMENT, "reverse")
        self.ret = checked_return(ret, _RETURNS, "reverse")
        self.seeded, self.returns_primal = _RETURNS[self.ret]

    def __call__(self, *args):
        names, fname = self.parameters, self._func.__name__
        expected = len(names) + sum(has_shadow(a) for a in self.activities) + self.seeded
        if len(args) != expected:
            raise TypeError(f"{self.__name__}() takes {expected} arguments (each Duplicated "
                            f"argument followed by its shadow{', then the seed' if self.seeded else ''}"
                            f"), got {len(args)}")
        primals, shadows, position = [], [], 0
        for act, name in zip(self.activities, names):
            value = check_value(args[position], name, fname)
            position += 1
            if act is Active and isinstance(value, np.ndarray):
                raise TypeError(f"argument '{name}' of {fname}() is an array: use Duplicated, "
                                "not Active")
            if act in (Duplicated, DuplicatedOnly):
                if not is_float_array(value):
                    raise TypeError(f"argument '{name}' of {fname}() is {type(value).__name__}"
                                    f"{'' if not isinstance(value, np.ndarray) else ' of ' + str(value.dtype)}: "
                                    "Duplicated needs a float32/float64 array")
                shadow = args[position]
                position += 1
                if not is_float_array(shadow):
                    got = str(shadow.dtype) if isinstance(shadow, np.ndarray) else \
                        type(shadow).__name__
                    raise TypeError(f"shadow of argument '{name}' of {fname}() must be a float "
                                    f"array, got {got}")
                if shadow.shape != value.shape:
                    raise ValueError(f"shadow of argument '{name}' of {fname}() must have shape "
                                     f"{value.shape}, got {shadow.shape}")
                shadows.append(shadow)
            else:
                shadows.append(None)
            primals.append(value)
        seed = args[position] if self.seeded else None
        refuse_overlapping(self._func, primals)
        return self._run(primals, shadows, seed)

    def _flags(self) -> list[bool]:
        return [a is not Const for a in self.activities]

    def _variant_for(self, primals) -> program.Variant:
        argtypes = tuple(typeof_value(v) for v in primals)
        variant = program.reverse_variant(self._func, argtypes, self._flags(), self.seeded,
                                          writeback=True, keep_value=self.returns_primal,
                                          checkpoint=self.checkpoint, fastmath=self.fastmath)
        result = variant.result_type
        if self.scalar_output_for and (tuples.is_tuple(result) or typeinfer.is_array(result)):
            what = "a tuple" if tuples.is_tuple(result) else "an array"
            raise AutodiffError(f"{self.scalar_output_for} requires a scalar output, but "
                                f"{self._func.__name__}() returns {what} ({result}): use "
                                "nad.vjp or nad.jacrev", construct="non-scalar output",
                                function=self._func.__name__)
        if self.scalar_output_for and self.seeded and not tuples.has_differentiable(result):
            returns = [n for n in ast.walk(self._fs.tree) if isinstance(n, ast.Return)]
            raise AutodiffError(f"{self.scalar_output_for} requires a float output, but "
                                f"{self._func.__name__}() returns {result}: an int or bool "
                                "result has no derivative (no cotangent: nad.jacrev gives None "
                                "for it, nad.vjp zero adjoints)", construct=f"{result} output",
                                lineno=returns[-1].lineno if returns else None,
                                filename=self._fs.filename, function=self._func.__name__)
        if self.seeded and not tuples.has_differentiable(variant.result_type):
            raise TypeError(f"{self._func.__name__}() returns {variant.result_type}; ret=Active "
                            "needs a float (or float array) result: use ret='Const'")
        self._variant = variant
        return variant

    def _run(self, primals, shadows, seed):
        variant = self._variant_for(primals)
        call = []
        for value, shadow, has in zip(primals, shadows, variant.shadows):
            call.append(value)
            if has:
                call.append(shadow)
        if self.seeded and tuples.is_tuple(variant.result_type):
            call += _seed_arguments(seed, variant.result_type, self._func.__name__)
        elif self.seeded:
            call.append(seed if isinstance(seed, np.ndarray) else float(seed))
        try:
            out = self._invoke(variant.dispatcher, call)
        except TapeMemoryError as error:
            raise TapeMemoryError(error.message, construct=error.construct,
                                  function=self._func.__name__) from None
        self.memory = MemoryReport(*out[-1], tuple(variant.checkpointed))
        items = list(out[1:-1])
        if self.returns_primal and variant.result_type != nbtypes.none:
            items.insert(0, out[0])
        if not items:
            return None
        return items[0] if len(items) == 1 else tuple(items)

    def _activity_signature(self) -> tuple[list[bool], bool, bool]:
        return self._flags(), self.seeded, self.returns_primal


def reverse(fun, *activities, ret="Active", checkpoint=None, fastmath=False) -> ReverseFunction:
    """Reverse mode with Enzyme/Rust activities; see :class:`ReverseFunction`. ``checkpoint``:
    checkpoint the outermost loops that need a tape (True or 'sqrt', a segment length K,
    'binomial' or ('binomial', S); see :func:`nbautodiff.frontend.checkpoint_markers.parse_option`). ``fastmath``: as for
    :func:`grad`."""
    return ReverseFunction(fun, activities, ret, checkpoint, fastmath)


@dataclass(eq=False)
class Lowered:
    """A derived function at given arguments as one call of its generated code: what a
    transform of the derived function (forward over reverse) differentiates in turn."""
    dispatcher: object            # the generated function, compiled (``.py_func`` has source)
    arguments: list               # the values it is called with
    origins: list                 # per argument: position of the derived function's argument it
                                  # is, or None (an output buffer or a seed)
    outputs: list                 # positions of the arguments the call writes its output into
    assemble: object              # (returned value, arguments) -> the derived function's output


class GradFunction(Derivative):
    """``grad(fun, argnums)`` (and ``value_and_grad``): the gradient of a scalar-valued ``fun``."""

    def __init__(self, fun, argnums=0, with_value=False, checkpoint=None, fastmath=False):
        self.kind = "value_and_grad" if with_value else "grad"
        super().__init__(fun, checkpoint, fastmath)
        self.tuple_result = isinstance(argnums, (tuple, list))
        count = len(self.parameters)
        self.argnums = resolved_argnums(argnums, count,
                                         f"{self._func.__name__}() with {count} parameters")
        self.with_value = with_value

    def __call__(self, *args):
        primals = self._arguments(args)
        activities = self._activities(primals)
        low = self._lowered(primals, activities)
        try:
            out = self._invoke(low.dispatcher, low.arguments)
        except TapeMemoryError as error:
            raise TapeMemoryError(error.message, construct=error.construct,
                                  function=self._func.__name__) from None
        self.memory = MemoryReport(*out[-1], tuple(self._variant.checkpointed))
        copy_back(primals, low)
        return low.assemble(out, low.arguments)

    def _activities(self, primals: list) -> list:
        """Per argument: Duplicated (a float array), Active (a float) or Const (not in argnums)."""
        names, fname = self.parameters, self._func.__name__
        activities = []
        for i, value in enumerate(primals):
            if i not in self.argnums:
                activities.append(Const)
            elif is_float_array(value):
                activities.append(Duplicated)
            elif isinstance(value, (float, np.floating)):
                activities.append(Active)
            else:
                raise TypeError(f"cannot differentiate {fname}() with respect to argument "
                                f"'{names[i]}' of type {type(value).__name__}"
                                f"{' ' + str(value.dtype) if isinstance(value, np.ndarray) else ''}"
                                ": pass a float or a float array")
        return activities

    def _lowered(self, primals: list, activities: list) -> Lowered:
        """This gradient at ``primals`` as one call of its generated reverse variant."""
        derived = ReverseFunction(self._func, activities,
                                  "Active" if self.with_value else "ActiveOnly", self.checkpoint,
                                  self.fastmath)
        derived.scalar_output_for = self.kind
        variant = derived._variant_for(primals)
        self._variant = variant
        prim = program.primal(self._func)
        arguments, origins, shadow_at = [], [], {}
        for i, (value, activity) in enumerate(zip(primals, activities)):
            arguments.append(value.copy() if i in prim.writes and isinstance(value, np.ndarray)
                             else value)
            origins.append(i)
            if activity is Duplicated:
                shadow_at[i] = len(arguments)
                arguments.append(np.zeros_like(value))
                origins.append(None)
        arguments.append(1.0)
        origins.append(None)
        argnums, with_value, tuple_result = self.argnums, self.with_value, self.tuple_result

        def assemble(out, args):
            scalars = iter(out[1:-1])
            grads = {i: (args[shadow_at[i]] if i in shadow_at else next(scalars))
                     for i in sorted(argnums)}
            gradient = tuple(grads[i] for i in argnums) if tuple_result else grads[argnums[0]]
            return (out[0], gradient) if with_value else gradient

        return Lowered(variant.dispatcher, arguments, origins, sorted(shadow_at.values()),
                       assemble)

    def _activity_signature(self) -> tuple[list[bool], bool, bool]:
        return [i in self.argnums for i in range(len(self.parameters))], True, self.with_value


def _seed_arguments(seed, typ, fname: str, where: str = "the seed") -> list:
    """The seed arguments of a reverse variant whose result has tuple type ``typ``: one per
    differentiable element (see :func:`nbautodiff.analysis.tuples.seeded_leaves`), taken from ``seed``, nested
    like the result, where the elements that are not differentiable take None or 0."""
    if tuples.is_tuple(typ):
        count = len(typ.types)
        if not isinstance(seed, (tuple, list)) or len(seed) != count:
            got = f"{len(seed)} entries" if isinstance(seed, (tuple, list)) else \
                type(seed).__name__
            raise TypeError(f"{where} of {fname}() must be a tuple of {count} entries, one per "
                            f"element of its result ({typ}), got {got}")
        return [argument for k, (part, element) in enumerate(zip(seed, typ.types))
                for argument in _seed_arguments(part, element, fname, f"{where}[{k}]")]
    typ = nbtypes.unliteral(typ)
    if not typeinfer.is_differentiable(typ):
        if seed is not None and not (np.ndim(seed) == 0 and seed == 0):
            raise TypeError(f"{where} of {fname}() belongs to an element of type {typ}, which "
                            "has no derivative: pass None (or 0)")
        return []
    if typeinfer.is_array(typ):
        value = np.asarray(seed) if seed is not None else None
        if value is None or value.ndim != typ.ndim or value.dtype.kind not in "fiu":
            raise TypeError(f"{where} of {fname}() must be an array of {typ.ndim} dimensions, "
                            f"like the element of its result, got {type(seed).__name__}")
        return [value if value.dtype.kind == "f" else value.astype(np.float64)]
    if not isinstance(seed, numbers.Real) or isinstance(seed, bool):
        raise TypeError(f"{where} of {fname}() must be a number, got {type(seed).__name__}")
    return [float(seed)]


def grad(fun, argnums=0, checkpoint=None, fastmath=False) -> GradFunction:
    """Gradient of scalar-valued ``fun`` w.r.t. ``args[argnums]`` (a tuple for tuple ``argnums``).

    ``checkpoint``: checkpoint the outermost loops that need a tape, so that T iterations of an
    N-element state take O(N sqrt(T)) memory instead of O(N T): True or 'sqrt' (segments of
    sqrt(T) iterations), an int K (segments of K), 'binomial' (revolve) or ('binomial', S) for
    S snapshots. ``.memory`` reports the bytes of the last call. ``fun`` may itself be a
    derivative (``grad(grad(f))``): then forward mode over its generated code.

    ``fastmath=True`` allows the derivative to reassociate floating-point sums: reduction loops
    that are dot products or matrix-vector/matrix-matrix products (``z += W[i, j] * h[j]``) are
    computed by BLAS, in both sweeps (see :mod:`nbautodiff.transforms.raising`). Results change in the last bits
    (the value, and the gradient, of a differently ordered sum); off by default."""
    if hasattr(fun, "_lowered"):
        return GradOfDerivative(fun, argnums)
    return GradFunction(fun, argnums, checkpoint=checkpoint, fastmath=fastmath)


def value_and_grad(fun, argnums=0, checkpoint=None, fastmath=False) -> GradFunction:
    """Like :func:`grad`, returning ``(fun(*args), gradient)``."""
    if hasattr(fun, "_lowered"):
        return GradOfDerivative(fun, argnums, with_value=True)
    return GradFunction(fun, argnums, with_value=True, checkpoint=checkpoint, fastmath=fastmath)


def vjp(fun, *primals, checkpoint=None, fastmath=False):
    """``(fun(*primals), vjp_fn)``; ``vjp_fn(cotangent)`` returns one adjoint per primal.

    The adjoint of an argument that cannot be differentiated (an int, an int array) is None.
    The output may be a scalar or an array (then the cotangent is an array of its shape), or a
    tuple of those, nested to any depth: then the cotangent is a tuple with one entry per
    output, nested the same way, where outputs that cannot be differentiated (ints) take None
    (or 0). ``checkpoint``, ``fastmath``: as for :func:`grad`.
    """
    func = custom.program_target(fun)
    checked = ReverseFunction(func, [Const] * len(function_source(func).parameters))._arguments(primals)
    activities = [Duplicated if is_float_array(v) else
                  Active if isinstance(v, (float, np.floating)) else Const for v in checked]
    derived = ReverseFunction(func, activities, "ActiveOnly", checkpoint, fastmath)
    prim = program.primal(func)
    refuse_overlapping(func, checked)
    saved = [v.copy() if isinstance(v, np.ndarray) and i in prim.writes else v
             for i, v in enumerate(checked)]
    out = prim.dispatcher(*checked)        # the caller's arrays end as the function leaves them

    def vjp_fn(cotangent):
        cotangent = _cotangent_like(out, cotangent)
        if not _any_differentiable(out):           # only ints: no cotangent, zero adjoints
            return tuple(np.zeros_like(v) if a is Duplicated else 0.0 if a is Active else None
                         for v, a in zip(checked, activities))
        inputs = [v.copy() if isinstance(v, np.ndarray) else v for v in saved]
        shadows = [np.zeros_like(v) if a is Duplicated else None
                   for v, a in zip(inputs, activities)]
        result = derived._run(inputs, shadows, cotangent)
        scalars = iter(result if isinstance(result, tuple) else (result,))
        return tuple(shadows[i] if a is Duplicated else next(scalars) if a is Active else None
                     for i, a in enumerate(activities))

    vjp_fn.primal = fun
    vjp_fn.source = property(lambda: derived.source)
    return out, vjp_fn


def _cotangent_like(out, cotangent, where: str = "cotangent"):
    """``cotangent`` checked against the output ``out`` and converted: a float64 array of its
    shape for an array, a float for a float, for a tuple a tuple of those (None where an
    element has no derivative)."""
    if isinstance(out, tuple):
        if not isinstance(cotangent, (tuple, list)) or len(cotangent) != len(out):
            raise ValueError(f"{where} must be a tuple of {len(out)} entries, one per output, "
                             f"got {type(cotangent).__name__}"
                             + (f" of {len(cotangent)}" if isinstance(cotangent, (tuple, list))
                                else ""))
        return tuple(_cotangent_like(o, c, f"{where}[{k}]")
                     for k, (o, c) in enumerate(zip(out, cotangent)))
    if not _differentiable_output(out):
        if cotangent is not None and not (np.ndim(cotangent) == 0 and cotangent == 0):
            raise ValueError(f"{where} belongs to an output of type "
                             f"{getattr(out, 'dtype', type(out).__name__)}, which has no "
                             "derivative: pass None (or 0)")
        return None
    if isinstance(out, np.ndarray):
        cotangent = np.asarray(cotangent, dtype=np.float64)
        if cotangent.shape != out.shape:
            raise ValueError(f"{where} of shape {cotangent.shape} does not match the "
                             f"output's shape {out.shape}")
        return cotangent
    return float(cotangent)


def _any_differentiable(out) -> bool:
    """Whether output ``out`` (a tuple nested to any depth) has a float or float array."""
    if isinstance(out, tuple):
        return any(_any_differentiable(o) for o in out)
    return _differentiable_output(out)


def _differentiable_output(value) -> bool:
    return is_float_array(value) or (isinstance(value, (float, np.floating))
                                      and not isinstance(value, bool))


def jacrev(fun, argnums=0):
    """The Jacobian of ``fun`` by reverse mode: ``jacrev(fun, argnums)(*args)``.

    One reverse sweep per element of the output (the derivative is compiled once). For an
    output of shape ``S`` and an argument of shape ``A`` (``()`` for a float) the Jacobian has
    shape ``S + A``; a tuple ``argnums`` gives a tuple of Jacobians. A function returning a
    tuple (nested to any depth) gives a tuple of Jacobians, one per output, nested the same way
    (as in JAX), each of them a tuple for a tuple ``argnums``; an output that cannot be
    differentiated (an int) has None. Arguments that are not differentiated may be anything
    ``fun`` accepts; differentiated ones must be floats or float arrays.
    """
    def jacobian(*args):
        wrt = resolved_argnums(argnums, len(args), f"{len(args)} arguments")
        for k in wrt:
            value = args[k]
            if not (is_float_array(value) or isinstance(value, (float, np.floating))):
                raise TypeError(f"jacrev cannot differentiate with respect to argument {k} of "
                                f"type {type(value).__name__}: pass a float or a float array")
        out, pullback = vjp(fun, *args)

        def of_output(value, path):
            if isinstance(value, tuple):
                return tuple(of_output(v, path + (k,)) for k, v in enumerate(value))
            if not _differentiable_output(value):          # an int output: no Jacobian
                return None
            blocks = _jacobian_blocks(np.shape(value), lambda basis: _placed(out, path, basis),
                                      pullback, args, wrt)
            return tuple(blocks) if isinstance(argnums, (tuple, list)) else blocks[0]

        return of_output(out, ())

    jacobian.__name__ = f"{getattr(fun, '__name__', 'fun')}_jacrev"
    return jacobian


def _jacobian_blocks(shape: tuple, cotangent_with, pullback, args, wrt) -> list[np.ndarray]:
    """The Jacobians of one output of ``shape`` w.r.t. ``args[k]`` for k in ``wrt``: one
    pullback per element of the output, of ``cotangent_with(basis vector)``."""
    blocks = [np.empty(shape + np.shape(args[k])) for k in wrt]
    for flat_index in range(int(np.prod(shape))):
        index = np.unravel_index(flat_index, shape)
        basis = np.zeros(shape)
        basis[index] = 1.0
        adjoints = pullback(cotangent_with(basis if shape else 1.0))
        for block, k in zip(blocks, wrt):
            block[index] = adjoints[k]
    return blocks


def _placed(out, path: tuple, value):
    """A cotangent for output ``out`` that is ``value`` at ``path`` and zero elsewhere."""
    if not path:
        return value
    return tuple(_placed(o, path[1:], value) if k == path[0] else _zero_cotangent(o)
                 for k, o in enumerate(out))


def _zero_cotangent(out):
    if isinstance(out, tuple):
        return tuple(_zero_cotangent(o) for o in out)
    if not _differentiable_output(out):
        return None
    return np.zeros(out.shape) if isinstance(out, np.ndarray) else 0.0


def hessian(fun, argnums=0, fastmath=False):
    """The Hessian of scalar ``fun``: ``jacfwd(grad(fun, argnums), argnums)``, forward mode
    over the generated reverse code. For an argument of shape ``A`` it has shape ``A + A``; a
    tuple ``argnums`` gives nested tuples ``H[i][j]`` (as JAX). ``fastmath``: that of the
    gradient (see :func:`.grad`)."""
    return jacfwd(grad(fun, argnums, fastmath=fastmath), argnums)
