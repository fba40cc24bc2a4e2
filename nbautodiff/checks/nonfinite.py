"""Where a gradient first becomes NaN or infinite: an instrumented copy of the reverse variant.

:func:`first_nonfinite` takes the reverse variant that ``nbautodiff.grad`` runs for the given
arguments, adds after every statement that writes an adjoint (``_nad_b_*``, ``_nad_g``, a local
sum, an element or slice of a shadow ``_nad_d_*``) a test of the written value, and compiles
the copy with NumPy's error model (a division by zero gives inf, not ``ZeroDivisionError``, as
in the primal). The first test that fails records its line in the generated source, which the
variant maps back to the user's line (the adjoint code of a statement carries its line).
"""
from __future__ import annotations

import ast
import linecache
import math
from dataclasses import dataclass

import numba
import numpy as np
from numba import types as nbtypes
from numba.extending import overload

from nbautodiff import memo, naming
from nbautodiff.frontend.source import function_source

RECORD = "_nad_nonfinite"
_ADJOINT_PREFIXES = (naming.ADJOINT, naming.GRAD_TMP, naming.ACCUMULATOR)


@dataclass(frozen=True)
class NonFinite:
    """The first statement of the reverse sweep that wrote a NaN or an infinity into an
    adjoint: the user's ``lineno`` (None when the statement has no line of the user's),
    ``filename``, ``text`` of that line, the ``variable`` written (as in generated code)."""

    lineno: int | None
    filename: str
    text: str
    variable: str
    generated_line: int


def all_finite(value) -> bool:
    """Whether a scalar or every element of an array is finite (a numba helper)."""
    return bool(np.all(np.isfinite(value)))


@overload(all_finite)
def _all_finite(value):
    if isinstance(value, nbtypes.Array):
        return lambda value: np.all(np.isfinite(value))
    if isinstance(value, (nbtypes.Float, nbtypes.Integer)):
        return lambda value: math.isfinite(value)
    return lambda value: True


_instrumented = memo.memo("instrumented variants")   # (variant,) -> instrumented dispatcher


def first_nonfinite(gradient, args) -> NonFinite | None:
    """Run ``gradient`` (an ``nbautodiff.grad`` function) instrumented at ``args``; the first
    non-finite adjoint written, or None when every adjoint stays finite."""
    lowered = gradient.lower(args)
    variant = lowered.variant
    run = _instrumented.get((variant,))
    if run is None:
        run = _instrumented[(variant,)] = _instrument(variant)
    record = np.zeros(1, dtype=np.int64)
    run(*lowered.arguments, record)
    line = int(record[0])
    if line == 0:
        return None
    fs = function_source(gradient.target)
    user_line = _user_lines(variant, fs)[line - 1]
    text = linecache.getline(fs.filename, user_line).strip() if user_line else ""
    written = variant.source.splitlines()[line - 1].strip().split("=")[0].strip(" +-*/")
    return NonFinite(user_line, fs.filename, text, written, line)


def _user_lines(variant, fs) -> list:
    """The user's line of each line of the variant's source: its own where it lies inside the
    function, else that of the closest line before it that does (statements added by later
    passes, such as local sums, belong to the statement they follow)."""
    first, last = fs.tree.lineno, getattr(fs.tree, "end_lineno", None) or fs.tree.lineno
    lines, current = [], None
    for line in variant.user_lines:
        if line is not None and first < line <= last:
            current = line
        lines.append(current)
    return lines


def _instrument(variant):
    """The variant's function with a record parameter and a finiteness test after each write
    of an adjoint, compiled with ``error_model='numpy'``."""
    module = ast.parse(variant.source)
    function = next(node for node in module.body if isinstance(node, ast.FunctionDef)
                    and node.name == variant.name)
    function.args.args.append(ast.arg(arg=RECORD))
    function.body = _checked(function.body)
    ast.fix_missing_locations(module)
    namespace = dict(variant.dispatcher.py_func.__globals__)
    namespace["_nad_all_finite"] = all_finite
    code = compile(module, variant.path, "exec")
    exec(code, namespace)
    return numba.njit(error_model="numpy")(namespace[variant.name])


def _checked(body: list) -> list:
    out = []
    for statement in body:
        for field in ("body", "orelse"):
            if isinstance(statement, (ast.If, ast.For, ast.While)):
                setattr(statement, field, _checked(getattr(statement, field)))
        out.append(statement)
        target = _adjoint_target(statement)
        if target is not None:
            test = ast.parse(f"if not _nad_all_finite({ast.unparse(target)}):\n"
                             f"    if {RECORD}[0] == 0:\n"
                             f"        {RECORD}[0] = {statement.lineno}").body[0]
            out.append(test)
    return out


def _adjoint_target(statement: ast.stmt) -> ast.expr | None:
    """What ``statement`` writes when it writes an adjoint: a name or a shadow's element."""
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
        target = statement.targets[0]
    elif isinstance(statement, ast.AugAssign):
        target = statement.target
    else:
        return None
    if isinstance(target, ast.Name) and target.id.startswith(_ADJOINT_PREFIXES):
        return ast.Name(id=target.id, ctx=ast.Load())
    if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) \
            and target.value.id.startswith(naming.SHADOW):
        return ast.Subscript(value=target.value, slice=target.slice, ctx=ast.Load())
    if isinstance(target, ast.Name) and target.id.startswith(naming.SHADOW):
        return ast.Name(id=target.id, ctx=ast.Load())
    return None
