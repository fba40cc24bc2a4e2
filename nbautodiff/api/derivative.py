"""What every derived function shares: :class:`Derivative`, and the checks of the values it takes.

A derived function (``grad``, ``vjp``, ``jvp``, ``reverse``, ``forward``...) is a
:class:`Derivative`: it holds the user's function (``.primal``), reads its source once,
compiles lazily once per argument types, and shows the generated code of its latest signature
(``.source``). The helpers here check arguments the same way for every transform.
"""
from __future__ import annotations

import ast
import numbers

import numba
import numpy as np
from numba import types as nbtypes

from nbautodiff.errors import AutodiffError, SourceNotFoundError, UnsupportedConstructError
from nbautodiff.frontend import checkpoint_markers, declarations as custom
from nbautodiff.frontend.source import function_source
from nbautodiff.pipeline import program
from nbautodiff.transforms.reverse.checkpointing import MemoryReport
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


def copy_back(primals: list, low) -> None:
    """Leave the caller's arrays as the function leaves them: the generated code ran on copies
    of the arrays it writes and left their final contents there (``writeback``)."""
    for value, origin in zip(low.arguments, low.origins):
        if origin is not None and isinstance(value, np.ndarray) and \
                value is not primals[origin]:
            np.copyto(primals[origin], value)


class Derivative:
    """What every derived function shares: the primal, the source, a readable repr."""

    kind = "derivative"

    def __init__(self, fun, checkpoint=None, fastmath=False):
        self.primal = fun
        self._func = custom.program_target(fun)
        self._fs = function_source(self._func)
        self._variant: program.Variant | None = None
        self.checkpoint = checkpoint_markers.parse_option(checkpoint)
        self.fastmath = fastmath_option(fastmath)
        self.memory: MemoryReport | None = None
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
        values = [check_value(v, n, self._func.__name__) for v, n in zip(args, names)]
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


def checked_return(ret, returns: dict, mode: str) -> str:
    """The name of return activity ``ret``, one of ``returns`` (an AutodiffError otherwise)."""
    name = ret.name if hasattr(ret, "name") else str(ret)
    if name not in returns:
        raise AutodiffError(f"ret={name!r} is not a {mode}-mode return activity "
                            f"(use one of {', '.join(returns)})")
    return name


def resolved_argnums(argnums, count: int, what: str) -> tuple[int, ...]:
    """``argnums`` (an int or a sequence) as non-negative positions among ``count`` arguments;
    an AutodiffError naming ``what`` for one out of range."""
    resolved = []
    for k in argnums if isinstance(argnums, (tuple, list)) else (argnums,):
        if not isinstance(k, int) or not -count <= k < count:
            raise AutodiffError(f"argnums {k!r} is out of range for {what}")
        resolved.append(k % count)
    return tuple(resolved)


def fastmath_option(fastmath) -> bool:
    if not isinstance(fastmath, bool):
        raise AutodiffError(f"fastmath must be True or False, got {fastmath!r}")
    return fastmath
