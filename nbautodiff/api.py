"""The public API: JAX-style ``grad``/``value_and_grad``/``vjp`` over Enzyme-style ``reverse``.

Derived functions compile lazily, once per argument types (like ``numba.njit``), and carry
``.primal`` (the user's function), ``.source`` (the generated code of the latest compiled
signature, or of a signature guessed from the source before the first call) and ``.memory``
(the tape and checkpoint bytes of the last call, :class:`.checkpoint.MemoryReport`; its total is
``.tape_bytes``). ``checkpoint=`` checkpoints the function's outermost loops that need a tape
(see :mod:`.checkpoint` and :func:`.checkpoint.parse_option`).
"""
from __future__ import annotations

import ast
import numbers
from dataclasses import dataclass

import numba
import numpy as np
from numba import types as nbtypes

from . import checkpoint as checkpointing, custom, program, tuples, typeinfer
from .activities import (Active, Const, Duplicated, DuplicatedOnly, REVERSE_ARGUMENT,
                         as_activity, has_shadow)
from .errors import (AutodiffError, SourceNotFoundError, TapeMemoryError,
                     UnsupportedConstructError)
from .source import function_source

_RETURNS = {"Active": (True, True), "ActiveOnly": (True, False), "Const": (False, True),
            "DuplicatedOnly": (False, False)}


def _check_value(value, name: str, fname: str):
    """``value`` as the engine takes it, or a TypeError naming the argument."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "fiub" or value.dtype == np.float16:
            raise TypeError(f"argument '{name}' of {fname}(): arrays of dtype {value.dtype} are "
                            "not supported (use float64 or float32)")
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value) if not isinstance(value, np.float32) else value
    raise TypeError(f"argument '{name}' of {fname}(): expected a float, an int or a NumPy "
                    f"array, got {type(value).__name__}")


def _is_float_array(value) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind == "f"


_ARRAY_TYPES: dict = {}


def _typeof(value):
    """``numba.typeof(value)``; for a NumPy array memoised by what numba's type of it depends on
    (dtype, rank, contiguity, writeable, aligned), since numba builds a new type object on every
    call (tens of microseconds, paid per array argument of every derivative call)."""
    if type(value) is np.ndarray:
        flags = value.flags
        key = (value.dtype, value.ndim, flags.c_contiguous, flags.f_contiguous, flags.writeable,
               flags.aligned)
        typ = _ARRAY_TYPES.get(key)
        if typ is None:
            typ = _ARRAY_TYPES[key] = numba.typeof(value)
        return typ
    return numba.typeof(value)


def refuse_overlapping(func, values, names=None) -> None:
    """An AutodiffError when two array arguments of ``func`` share memory and ``func`` writes
    one of them: derivatives copy the arrays a function writes (and take one shadow or tangent
    per argument), so they would not see one argument's writes through the other."""
    arrays = [k for k, v in enumerate(values) if isinstance(v, np.ndarray)]
    if len(arrays) < 2:
        return
    writes = program.primal(func).writes
    if not writes:
        return
    names = names or function_source(func).parameters
    for k in sorted(writes):
        if k not in arrays:
            continue
        for j in arrays:
            if j != k and _share_memory(values[k], values[j]):
                raise AutodiffError(
                    f"arguments '{names[k]}' and '{names[j]}' of {func.__name__}() share memory "
                    f"and {func.__name__}() writes '{names[k]}': derivatives need separate "
                    "arrays (pass a copy)", construct="overlapping arguments",
                    function=func.__name__)


def _share_memory(a: np.ndarray, b: np.ndarray) -> bool:
    if not np.may_share_memory(a, b):
        return False
    try:
        return bool(np.shares_memory(a, b, max_work=10_000))
    except np.exceptions.TooHardError if hasattr(np, "exceptions") else Exception:
        return True


def _copy_back(primals: list, low) -> None:
    """Leave the caller's arrays as the function leaves them: the generated code ran on copies
    of the arrays it writes and left their final contents there (``writeback``)."""
    for value, origin in zip(low.arguments, low.origins):
        if origin is not None and isinstance(value, np.ndarray) and \
                value is not primals[origin]:
            np.copyto(primals[origin], value)


class _Derived:
    """What every derived function shares: the primal, the source, a readable repr."""

    kind = "derivative"

    def __init__(self, fun, checkpoint=None, fastmath=False):
        self.primal = fun
        self._func = custom.program_target(fun)
        self._fs = function_source(self._func)
        self._variant: program.Variant | None = None
        self.checkpoint = checkpointing.parse_option(checkpoint)
        self.fastmath = _fastmath_option(fastmath)
        self.memory: checkpointing.MemoryReport | None = None
        self.__name__ = f"{self._func.__name__}_{self.kind}"
        self.__qualname__ = self.__name__
        self.__doc__ = f"{self.kind} of {self._func.__name__} (generated by nbautodiff)"
        self.__wrapped__ = fun

    @property
    def parameters(self) -> list[str]:
        return self._fs.parameters

    def __repr__(self) -> str:
        return f"<nbautodiff {self.kind} of {self._func.__qualname__}>"

    @staticmethod
    def _invoke(dispatcher, arguments):
        """Run the generated code ``dispatcher`` (offload replaces this to run it on a GPU)."""
        return dispatcher(*arguments)

    def _arguments(self, args) -> list:
        names = self.parameters
        if len(args) != len(names):
            raise TypeError(f"{self._func.__name__}() takes {len(names)} arguments "
                            f"({', '.join(names)}), got {len(args)}")
        values = [_check_value(v, n, self._func.__name__) for v, n in zip(args, names)]
        refuse_overlapping(self._func, values)
        return values

    def _checked_activities(self, activities, allowed: tuple, mode: str) -> list:
        """``activities`` as :class:`Activity` objects, one per parameter, each in ``allowed``
        (an AutodiffError naming the parameter otherwise)."""
        names = self.parameters
        if len(activities) != len(names):
            raise AutodiffError(f"{self._func.__name__}() has {len(names)} parameters "
                                f"({', '.join(names)}) but {len(activities)} activities were given")
        checked = [as_activity(a) for a in activities]
        for act, name in zip(checked, names):
            if act not in allowed:
                raise AutodiffError(f"activity {act} of '{name}' is not a {mode}-mode activity "
                                    f"(use one of {', '.join(a.name for a in allowed)})")
        return checked

    @property
    def tape_bytes(self) -> int | None:
        """Bytes of the tape and checkpoints of the last call (None before a first call)."""
        return None if self.memory is None else self.memory.total_bytes

    @property
    def source(self) -> str:
        """Generated Python of the latest compiled signature (or of a guessed one before a call)."""
        if self._variant is None:
            self._variant = self._guess_variant()
        return self._variant.source

    def _activity_signature(self) -> tuple[list[bool], bool, bool]:
        """(active flag per argument, whether the result is seeded, whether the primal value is
        returned) of this derivative."""
        raise NotImplementedError

    def _guess_variant(self) -> program.Variant:
        flags, seeded, keep_value = self._activity_signature()
        try:
            return program.reverse_variant(self._func, self._guessed_types(), flags, seeded,
                                           writeback=True, keep_value=keep_value,
                                           checkpoint=self.checkpoint, fastmath=self.fastmath)
        except (UnsupportedConstructError, SourceNotFoundError):
            raise
        except (AutodiffError, TypeError) as exc:
            raise AutodiffError(f"cannot show the source before a first call ({exc}); call the "
                                "derived function once, then read .source") from None

    def _guessed_types(self) -> tuple:
        """Argument types read off the source: arrays by their indexing rank, loop bounds as ints."""
        tree = self._fs.tree
        rank = {p: 0 for p in self.parameters}
        integer = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
                    and node.value.id in rank:
                index = node.slice
                rank[node.value.id] = max(rank[node.value.id],
                                          len(index.elts) if isinstance(index, ast.Tuple) else 1)
                integer |= {n.id for n in ast.walk(index) if isinstance(n, ast.Name)}
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id == "range":
                integer |= {n.id for a in node.args for n in ast.walk(a) if isinstance(n, ast.Name)}
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id == "len" and node.args and isinstance(node.args[0], ast.Name):
                rank[node.args[0].id] = max(rank.get(node.args[0].id, 0), 1)
        types = []
        for p in self.parameters:
            if rank[p]:
                types.append(nbtypes.Array(nbtypes.float64, rank[p], "C"))
            else:
                types.append(nbtypes.int64 if p in integer else nbtypes.float64)
        return tuple(types)


class ReverseFunction(_Derived):
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
        self.ret = _checked_return(ret, _RETURNS, "reverse")
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
            value = _check_value(args[position], name, fname)
            position += 1
            if act is Active and isinstance(value, np.ndarray):
                raise TypeError(f"argument '{name}' of {fname}() is an array: use Duplicated, "
                                "not Active")
            if act in (Duplicated, DuplicatedOnly):
                if not _is_float_array(value):
                    raise TypeError(f"argument '{name}' of {fname}() is {type(value).__name__}"
                                    f"{'' if not isinstance(value, np.ndarray) else ' of ' + str(value.dtype)}: "
                                    "Duplicated needs a float32/float64 array")
                shadow = args[position]
                position += 1
                if not _is_float_array(shadow):
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
        argtypes = tuple(_typeof(v) for v in primals)
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
        self.memory = checkpointing.MemoryReport(*out[-1], tuple(variant.checkpointed))
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
    'binomial' or ('binomial', S); see :func:`.checkpoint.parse_option`). ``fastmath``: as for
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


class GradFunction(_Derived):
    """``grad(fun, argnums)`` (and ``value_and_grad``): the gradient of a scalar-valued ``fun``."""

    def __init__(self, fun, argnums=0, with_value=False, checkpoint=None, fastmath=False):
        self.kind = "value_and_grad" if with_value else "grad"
        super().__init__(fun, checkpoint, fastmath)
        self.tuple_result = isinstance(argnums, (tuple, list))
        count = len(self.parameters)
        self.argnums = _resolved_argnums(argnums, count,
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
        self.memory = checkpointing.MemoryReport(*out[-1], tuple(self._variant.checkpointed))
        _copy_back(primals, low)
        return low.assemble(out, low.arguments)

    def _activities(self, primals: list) -> list:
        """Per argument: Duplicated (a float array), Active (a float) or Const (not in argnums)."""
        names, fname = self.parameters, self._func.__name__
        activities = []
        for i, value in enumerate(primals):
            if i not in self.argnums:
                activities.append(Const)
            elif _is_float_array(value):
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
    differentiable element (see :func:`.tuples.seeded_leaves`), taken from ``seed``, nested
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


def _checked_return(ret, returns: dict, mode: str) -> str:
    """The name of return activity ``ret``, one of ``returns`` (an AutodiffError otherwise)."""
    name = ret.name if hasattr(ret, "name") else str(ret)
    if name not in returns:
        raise AutodiffError(f"ret={name!r} is not a {mode}-mode return activity "
                            f"(use one of {', '.join(returns)})")
    return name


def _resolved_argnums(argnums, count: int, what: str) -> tuple[int, ...]:
    """``argnums`` (an int or a sequence) as non-negative positions among ``count`` arguments;
    an AutodiffError naming ``what`` for one out of range."""
    resolved = []
    for k in argnums if isinstance(argnums, (tuple, list)) else (argnums,):
        if not isinstance(k, int) or not -count <= k < count:
            raise AutodiffError(f"argnums {k!r} is out of range for {what}")
        resolved.append(k % count)
    return tuple(resolved)


def grad(fun, argnums=0, checkpoint=None, fastmath=False) -> GradFunction:
    """Gradient of scalar-valued ``fun`` w.r.t. ``args[argnums]`` (a tuple for tuple ``argnums``).

    ``checkpoint``: checkpoint the outermost loops that need a tape, so that T iterations of an
    N-element state take O(N sqrt(T)) memory instead of O(N T): True or 'sqrt' (segments of
    sqrt(T) iterations), an int K (segments of K), 'binomial' (revolve) or ('binomial', S) for
    S snapshots. ``.memory`` reports the bytes of the last call. ``fun`` may itself be a
    derivative (``grad(grad(f))``): then forward mode over its generated code.

    ``fastmath=True`` allows the derivative to reassociate floating-point sums: reduction loops
    that are dot products or matrix-vector/matrix-matrix products (``z += W[i, j] * h[j]``) are
    computed by BLAS, in both sweeps (see :mod:`.raising`). Results change in the last bits
    (the value, and the gradient, of a differently ordered sum); off by default."""
    if hasattr(fun, "_lowered"):
        from .forward_api import GradOfDerivative
        return GradOfDerivative(fun, argnums)
    return GradFunction(fun, argnums, checkpoint=checkpoint, fastmath=fastmath)


def value_and_grad(fun, argnums=0, checkpoint=None, fastmath=False) -> GradFunction:
    """Like :func:`grad`, returning ``(fun(*args), gradient)``."""
    if hasattr(fun, "_lowered"):
        from .forward_api import GradOfDerivative
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
    activities = [Duplicated if _is_float_array(v) else
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


def _fastmath_option(fastmath) -> bool:
    if not isinstance(fastmath, bool):
        raise AutodiffError(f"fastmath must be True or False, got {fastmath!r}")
    return fastmath


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
    return _is_float_array(value) or (isinstance(value, (float, np.floating))
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
        wrt = _resolved_argnums(argnums, len(args), f"{len(args)} arguments")
        for k in wrt:
            value = args[k]
            if not (_is_float_array(value) or isinstance(value, (float, np.floating))):
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
