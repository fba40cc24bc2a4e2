"""Types of a normalised function's variables, from numba's own type inference.

:func:`infer` runs numba's front end and type inference (no code generation) on the compiled
primal of a function for given argument types, and returns one type per variable name: numba
unifies the types of all assignments to a name, which is the type the generated code will see.
"""
from __future__ import annotations

from types import SimpleNamespace

from numba import types as nbtypes
from numba.core import compiler, errors as nberrors, typed_passes
from numba.core.compiler_lock import global_compiler_lock
from numba.core.rewrites import rewrite_registry
from numba.core.registry import cpu_target

_refreshed = False


@global_compiler_lock
def infer(py_func, argtypes: tuple) -> tuple[dict[str, nbtypes.Type], nbtypes.Type]:
    """(variable name -> numba type, return type) of ``py_func`` for ``argtypes``.

    Raises numba's ``TypingError`` when the function does not type (the caller locates it).
    Like every use of numba's typing machinery here, it holds numba's compiler lock: typing
    fills numba's registries lazily (``refresh``), and another thread compiling at the same time
    (the background warm-up, a user's thread) would see them half filled."""
    if not _refreshed:
        refresh()
    ir = compiler.run_frontend(py_func)
    state = SimpleNamespace(func_ir=ir, typingctx=cpu_target.typing_context,
                            targetctx=cpu_target.target_context, typemap=None, calltypes=None,
                            args=argtypes, locals={})
    rewrite_registry.apply("before-inference", state)     # e.g. `raise E(...)` as a static raise
    result = typed_passes.type_inference_stage(cpu_target.typing_context,
                                               cpu_target.target_context, ir, argtypes, None)
    names: dict[str, nbtypes.Type] = {}
    for name, typ in result.typemap.items():
        if name.startswith("$") or name.startswith("arg."):
            continue
        base = name.split(".")[0]
        names[base] = typ if base not in names else _unify(names[base], typ)
    return names, result.return_type


@global_compiler_lock
def refresh() -> None:
    """Make numba's typing see the extensions registered so far (an ``overload`` made after a
    first inference, such as the stand-in of a batched function)."""
    global _refreshed
    cpu_target.typing_context.refresh()
    cpu_target.target_context.refresh()
    _refreshed = True


@global_compiler_lock
def function_type(func):
    """The numba type of Python function ``func`` (one with an ``overload``) as a value."""
    return cpu_target.typing_context.resolve_value_type(func)


@global_compiler_lock
def _unify(a, b):
    if a == b:
        return a
    unified = cpu_target.typing_context.unify_pairs(a, b)
    return unified if unified is not None else a


def is_float_scalar(typ) -> bool:
    return isinstance(typ, nbtypes.Float)


def is_float_array(typ) -> bool:
    return isinstance(typ, nbtypes.Array) and isinstance(typ.dtype, nbtypes.Float)


def is_array(typ) -> bool:
    return isinstance(typ, nbtypes.Array)


def is_differentiable(typ) -> bool:
    return is_float_scalar(typ) or is_float_array(typ)


def is_differentiable_list(typ) -> bool:
    """A list of floats or float arrays (the reference stacks of generated code)."""
    return isinstance(typ, nbtypes.List) and is_differentiable(typ.dtype)


def element_kind(typ) -> str:
    """'float' or 'int': which tape stores values of this (scalar or array element) type."""
    scalar = typ.dtype if isinstance(typ, nbtypes.Array) else typ
    return "float" if isinstance(scalar, nbtypes.Float) else "int"


def zero_literal(typ) -> str:
    """Source of a zero of scalar type ``typ``."""
    if isinstance(typ, nbtypes.Boolean):
        return "False"
    if typ == nbtypes.float64:
        return "0.0"
    if typ == nbtypes.int64:
        return "0"
    if isinstance(typ, (nbtypes.Float, nbtypes.Integer)):
        return f"np.{typ}(0)"
    raise TypeError(f"no zero for {typ}")


def to_tape_source(name: str, typ) -> str:
    """Source of scalar ``name`` as stored on the tape of its :func:`element_kind`."""
    return name if element_kind(typ) == "float" else f"np.int64({name})"


def from_tape_source(value: str, typ) -> str:
    """Source of tape element ``value`` converted back to scalar type ``typ``."""
    if isinstance(typ, nbtypes.Boolean):
        return f"{value} != 0"
    if typ not in (nbtypes.float64, nbtypes.int64):
        return f"np.{typ}({value})"
    return value


TypingError = nberrors.TypingError
