"""The derivative protocol: :class:`Derivative`, and the checks of the values derived functions take.

Every derived function of the API is a :class:`Derivative`: what ``grad``, ``value_and_grad``,
``vjp`` (its pullback), ``reverse``, ``forward``, ``jacfwd``, ``jacrev``, ``hessian``, ``batch``,
``vmap`` and ``offload`` return. The protocol, which the transforms use to compose (``grad`` of
a derivative, ``batch`` of one, ``offload`` of one) and nothing else:

* ``d.primal``: the function it was made from; ``d.__name__``: ``<name>_<kind>`` (``f_grad``,
  ``f_grad_offload``, ``f_batch``...); ``d.kind``;
* ``d.source``: the generated code of its latest compiled call;
* ``d.options``: ``{"checkpoint": ..., "fastmath": ...}`` (also ``d.checkpoint``,
  ``d.fastmath``); ``d.with_options(checkpoint=..., fastmath=...)`` a copy with others;
* ``d.parameters``: the names of what it is called with (for ``reverse``, each argument and
  its shadows, then the seeds); ``d.function_name``: the name of the user's function;
* ``d.lower(args)``: a :class:`Lowered`, the compiled artifact that ``d(*args)`` calls once and
  the arguments converted for it (what forward mode over ``d`` and ``batch(d)`` differentiate or
  loop over); ``d.lower_refusal()`` says why a derivative has none (None when it has one);
* ``d.offloaded(runner)``: a copy whose compiled calls go through ``runner(dispatcher,
  arguments)`` (``offload`` runs them on a GPU);
* ``d.source_level``: True for a function whose own code the transforms read as a callee (a
  batch of a plain function): ``grad`` of it differentiates that code, not a lowered call.

A composition a derivative cannot take raises :class:`~nbautodiff.errors.AutodiffError` with
the reason. :class:`GeneratedDerivative` is the common base of those made from the user's
source (``reverse``, ``grad``, ``forward``): it reads the source once, compiles lazily once per
argument types and shows the generated code of its latest signature.
"""
from __future__ import annotations

import ast
import copy
import numbers
from dataclasses import dataclass, field

import numba
import numpy as np
from numba import types as nbtypes

from nbautodiff.errors import (AutodiffError, ArgnumsError, SourceNotFoundError,
                               UnsupportedConstructError, numba_locations, numba_reason)
from nbautodiff.frontend import checkpoint_markers, declarations as custom
from nbautodiff.frontend.source import function_source, user_location
from nbautodiff.pipeline import program
from nbautodiff.transforms.reverse.checkpointing import MemoryReport
from . import remat
from .activities import as_activity


def check_value(value, name: str, fname: str):
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


def is_float_array(value) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind == "f"


_ARRAY_TYPES: dict = {}


def typeof_value(value):
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
            if j != k and share_memory(values[k], values[j]):
                raise AutodiffError(
                    f"arguments '{names[k]}' and '{names[j]}' of {func.__name__}() share memory "
                    f"and {func.__name__}() writes '{names[k]}': derivatives need separate "
                    "arrays (pass a copy)", construct="overlapping arguments",
                    function=func.__name__)


def share_memory(a: np.ndarray, b: np.ndarray) -> bool:
    if not np.may_share_memory(a, b):
        return False
    try:
        return bool(np.shares_memory(a, b, max_work=10_000))
    except np.exceptions.TooHardError if hasattr(np, "exceptions") else Exception:
        return True


def copy_back(primals: list, low: "Lowered") -> None:
    """Leave the caller's arrays as the function leaves them: the generated code ran on copies
    of the arrays it writes and left their final contents there (``writeback``)."""
    for value, origin in zip(low.arguments, low.origins):
        if origin is not None and isinstance(value, np.ndarray) and \
                value is not primals[origin]:
            np.copyto(primals[origin], value)


def derived_name(fun, kind: str) -> str:
    """The ``__name__`` of a derived function: ``<name of fun>_<kind>`` (``f_grad``,
    ``f_grad_offload``, ``f_batch``): one scheme for every transform, nested ones included."""
    base = fun if isinstance(fun, str) else getattr(fun, "__name__", None) or type(fun).__name__
    return f"{base}_{kind}"


@dataclass(eq=False)
class Lowered:
    """A derived function at given arguments as one call of its generated code: what a
    transform of the derived function (forward mode over it, a batch of it) takes in turn."""
    dispatcher: object            # the generated function, compiled (``.py_func`` has source)
    arguments: list               # the values it is called with
    origins: list                 # per argument: position of the derived function's argument it
                                  # is, or None (an output buffer or a seed)
    outputs: list                 # positions of the arguments the call writes its output into
    assemble: object              # (returned value, arguments) -> the derived function's output
    primals: list = field(default_factory=list)   # the derived function's arguments, checked
    writes: frozenset = frozenset()   # positions among those that the function writes
    variant: object = None        # the compiled artifact (a program.Variant or ForwardVariant)


_UNSET = object()


class Derivative:
    """The protocol every derived function implements; see the module docstring."""

    kind = "derivative"
    source_level = False          # see the module docstring
    offloadable = False           # whether offloaded() can run its compiled calls elsewhere

    def __init__(self, fun, *, checkpoint=None, fastmath=False, name_of=None):
        self.primal = fun
        self.checkpoint = checkpoint_markers.parse_option(checkpoint)
        self.fastmath = fastmath_option(fastmath)
        self.memory: MemoryReport | None = None
        self._runner = None
        self.__name__ = derived_name(fun if name_of is None else name_of, self.kind)
        self.__qualname__ = self.__name__
        self.__doc__ = f"{self.kind} of {self.function_name} (generated by nbautodiff)"
        self.__wrapped__ = fun

    # -- what it was made from, its options ------------------------------------------------------
    @property
    def options(self) -> dict:
        return {"checkpoint": self.checkpoint, "fastmath": self.fastmath}

    @property
    def function_name(self) -> str:
        """The name of the user's function at the bottom of the composition."""
        inner = getattr(self.primal, "function_name", None)
        return inner if isinstance(inner, str) else \
            getattr(self.primal, "__name__", type(self.primal).__name__)

    @property
    def parameters(self) -> list[str]:
        """The parameters of the user's function (what the derived function is called with,
        for ``grad``, ``batch``... of it)."""
        inner = getattr(self.primal, "parameters", None)
        if isinstance(inner, list):
            return inner
        return function_source(custom.program_target(self.primal)).parameters

    def __repr__(self) -> str:
        return f"<nbautodiff {self.kind} of {self.function_name}>"

    def with_options(self, checkpoint=_UNSET, fastmath=_UNSET) -> "Derivative":
        """A copy of this derivative with other options (those not given kept)."""
        clone = copy.copy(self)
        if checkpoint is not _UNSET:
            clone.checkpoint = checkpoint_markers.parse_option(checkpoint)
        if fastmath is not _UNSET:
            clone.fastmath = fastmath_option(fastmath)
        clone._options_changed()
        return clone

    def _options_changed(self) -> None:
        """Forget what was built with the previous options (a copy made by with_options)."""
        self.memory = None

    # -- composition ---------------------------------------------------------------------------
    def lower_refusal(self) -> str | None:
        """Why :meth:`lower` cannot give one compiled call of this derivative (None if it can)."""
        return (f"a {self.kind} result runs several compiled calls, not one, so other "
                "transforms cannot take its generated code: transform the function first, "
                f"then take the {self.kind} (e.g. jacfwd(grad(f)), not grad of a Jacobian)")

    def lower(self, args) -> Lowered:
        """This derivative at ``args`` as one call of its compiled code (see :class:`Lowered`)."""
        raise AutodiffError(f"{self.__name__}: {self.lower_refusal()}",
                            construct=f"transform of a {self.kind} result",
                            function=self.function_name)

    def refuse_composition(self, transform: str) -> None:
        """An AutodiffError naming ``transform`` when this derivative cannot be lowered."""
        reason = self.lower_refusal()
        if reason is not None:
            raise AutodiffError(f"{transform} of {self.__name__} is not supported: {reason}",
                                construct=f"{transform} of a {self.kind} result",
                                function=self.function_name)

    def offloaded(self, runner) -> "Derivative":
        """A copy whose compiled calls run through ``runner(dispatcher, arguments)``."""
        if not self.offloadable:
            raise AutodiffError(f"offload of {self.__name__} is not supported: a {self.kind} "
                                "result runs several compiled calls; offload the derivative it "
                                "is made of, or the function", construct=f"offload of a {self.kind}",
                                function=self.function_name)
        clone = copy.copy(self)
        clone._runner = runner
        clone._prepare_offload()
        return clone

    def _prepare_offload(self) -> None:
        """Adapt a copy made by :meth:`offloaded` (a batch runs one GPU thread per slice)."""

    @property
    def runner(self):
        """What runs its compiled calls: None (here) or the runner given to :meth:`offloaded`."""
        return self._runner

    def run(self, dispatcher, arguments):
        """Run the compiled code ``dispatcher`` on ``arguments`` (on a GPU once offloaded).
        Generated code numba cannot compile for these arguments raises an AutodiffError at
        the user's line it was generated from, never numba's error about generated code."""
        try:
            if self._runner is None:
                return dispatcher(*arguments)
            return self._runner(dispatcher, arguments)
        except numba.core.errors.NumbaError as exc:
            raise self._compile_failure(exc) from None

    def _compile_failure(self, exc: Exception) -> AutodiffError:
        for path, line in numba_locations(exc):
            origin = user_location(path, line)
            if origin is not None:
                filename, lineno, function = origin
                break
        else:
            filename, lineno, function = None, None, self.function_name
        return AutodiffError(f"numba cannot compile the generated code of {self.__name__} for "
                             f"these arguments: {numba_reason(exc)}", construct="numba typing",
                             lineno=lineno, filename=filename, function=function)

    @property
    def source(self) -> str:
        raise AutodiffError(f"{self.__name__} has no generated code of its own")

    @property
    def tape_bytes(self) -> int | None:
        """Bytes of the tape and checkpoints of the last call (None before a first call)."""
        return None if self.memory is None else self.memory.total_bytes


def refuse_derivative(fun, transform: str, hint: str) -> None:
    """An AutodiffError when ``fun`` is a derivative that ``transform`` cannot take as a
    function of its own (``reverse`` of a gradient, say); ``hint`` says what to use."""
    if isinstance(fun, Derivative) and not fun.source_level:
        raise AutodiffError(f"{transform} of {fun.__name__} (a {fun.kind} result) is not "
                            f"supported: {hint}", construct=f"{transform} of a {fun.kind}",
                            function=fun.function_name)


class GeneratedDerivative(Derivative):
    """A derivative generated from the user's source (``reverse``, ``grad``, ``forward``)."""

    offloadable = True

    def __init__(self, fun, checkpoint=None, fastmath=False):
        inner, checkpoint = remat.resolve(fun, checkpoint)
        self._func = custom.program_target(inner)
        self._fs = function_source(self._func)
        self._variant: program.Variant | None = None
        super().__init__(fun, checkpoint=checkpoint, fastmath=fastmath,
                         name_of=self._func.__name__)

    @property
    def target(self):
        """The function the pipeline reads (the user's, or its declared-derivative wrapper)."""
        return self._func

    @property
    def function_name(self) -> str:
        return self._func.__name__

    @property
    def primal_parameters(self) -> list[str]:
        """The parameters of the user's function."""
        return self._fs.parameters

    @property
    def parameters(self) -> list[str]:
        return self._fs.parameters

    @property
    def variant(self):
        """The compiled artifact of the latest call (None before the first)."""
        return self._variant

    def _options_changed(self) -> None:
        super()._options_changed()
        self._variant = None

    def __repr__(self) -> str:
        return f"<nbautodiff {self.kind} of {self._func.__qualname__}>"

    def checked_arguments(self, args) -> list:
        """``args`` (one per parameter) as the engine takes them, or a TypeError."""
        names = self.primal_parameters
        if len(args) != len(names):
            raise TypeError(f"{self._func.__name__}() takes {len(names)} arguments "
                            f"({', '.join(names)}), got {len(args)}")
        values = [check_value(v, n, self._func.__name__) for v, n in zip(args, names)]
        refuse_overlapping(self._func, values)
        return values

    def _checked_activities(self, activities, allowed: tuple, mode: str,
                            ret_name: str | None = None) -> list:
        """``activities`` as :class:`Activity` objects, one per parameter, each in ``allowed``
        (an AutodiffError naming the parameter otherwise; with a hint where one more than the
        parameters was given, Rust-style, as the return's)."""
        names = self.primal_parameters
        if len(activities) != len(names):
            hint = ""
            if len(activities) == len(names) + 1:
                last = activities[-1]
                last = last.name if hasattr(last, "name") else last
                hint = (f"; if the last one is meant as the result's activity (Rust writes "
                        f"#[autodiff_{mode}(df, ..., {last})]), pass it as ret={last!r}")
            raise AutodiffError(f"{self._func.__name__}() has {len(names)} parameters "
                                f"({', '.join(names)}) but {len(activities)} activities were "
                                f"given{hint}")
        checked = [as_activity(a) for a in activities]
        for act, name in zip(checked, names):
            if act not in allowed:
                raise AutodiffError(f"activity {act} of '{name}' is not a {mode}-mode activity "
                                    f"(use one of {', '.join(a.name for a in allowed)})")
        return checked

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
        rank = {p: 0 for p in self.primal_parameters}
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
        for p in self.primal_parameters:
            if rank[p]:
                types.append(nbtypes.Array(nbtypes.float64, rank[p], "C"))
            else:
                types.append(nbtypes.int64 if p in integer else nbtypes.float64)
        return tuple(types)

def checked_return(ret, returns: dict, mode: str) -> str:
    """The name of return activity ``ret``, one of ``returns`` (an AutodiffError otherwise)."""
    name = ret.name if hasattr(ret, "name") else str(ret)
    if name not in returns:
        raise AutodiffError(f"ret={name!r} is not a {mode}-mode return activity "
                            f"(use one of {', '.join(returns)})")
    return name


def resolved_argnums(argnums, count: int, what: str) -> tuple[int, ...]:
    """``argnums`` (an int or a sequence) as non-negative positions among ``count`` arguments;
    an :class:`ArgnumsError` naming ``what`` for one out of range (the API and the gradient
    check both use this)."""
    resolved = []
    for k in argnums if isinstance(argnums, (tuple, list)) else (argnums,):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not -count <= k < count:
            raise ArgnumsError(f"argnums {k!r} is out of range for {what}"
                               if isinstance(k, (int, np.integer)) and not isinstance(k, bool)
                               else f"argnums must be an int or a tuple of ints, got {argnums!r}")
        resolved.append(int(k) % count)
    return tuple(resolved)


def fastmath_option(fastmath) -> bool:
    if not isinstance(fastmath, bool):
        raise AutodiffError(f"fastmath must be True or False, got {fastmath!r}")
    return fastmath
