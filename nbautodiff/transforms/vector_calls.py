"""Calls of ``math``/NumPy functions replaced by :mod:`nbautodiff.kernels.vecmath`.

vecmath's functions are branch-free, so a loop that calls them vectorises, and within 1 ulp
(``vecmath.MAX_ULP``); libm's results can differ from theirs in the last bit. Two opt-in uses
replace calls of normalised code: the lane loops of ``batch(..., vector_math=True)``
(:mod:`nbautodiff.transforms.lanes`) and derivative code under ``fastmath=True`` (:func:`substitute`, called by
:mod:`nbautodiff.pipeline.program` on the tree it transforms).

A replaced call keeps the derivative rule normalisation gave it, so the transforms
differentiate it as the original; generated code that calls vecmath can be differentiated
again (forward over reverse) because :func:`module` registers each vecmath function under the
rule of the function it replaces.
"""
from __future__ import annotations

import ast
import math
import threading

from numba import types as nbtypes

from nbautodiff import annotations as anno, naming, rules

_lock = threading.Lock()
_module = None


def module():
    """:mod:`nbautodiff.kernels.vecmath`, imported on first use (the import compiles its
    functions, or loads them from numba's cache), its functions registered with the rules of
    the functions they replace. Generated code sees it as ``naming.VECTOR_MATH``."""
    global _module
    with _lock:
        if _module is None:
            from nbautodiff.kernels import vecmath
            for dotted, name in vecmath.VECTOR_FUNCTIONS.items():
                if dotted.startswith("math."):
                    rules.alias(getattr(vecmath, name), _original(dotted))
            _module = vecmath
        return _module


def replacement(call: ast.Call, types: dict) -> str | None:
    """The name of the vecmath function that may replace ``call`` of normalised code, or None.

    It may when normalisation resolved the call to a derivative rule, vecmath has the function
    (with the same spelling, ``math.exp``, ``np.exp``...) and every argument is float64: a
    variable typed float64 in ``types`` or a float constant (vecmath computes in float64 and
    returns float64, so a float32 or integer call keeps its own function and type)."""
    if anno.get(call, anno.KIND, None) != "rule":
        return None
    name = module().VECTOR_FUNCTIONS.get(ast.unparse(call.func))
    if name is None or not all(_is_float64(arg, types) for arg in call.args):
        return None
    return name


def substitute(tree: ast.FunctionDef, types: dict) -> int:
    """Replace, in place, every call of normalised ``tree`` that :func:`replacement` allows by
    ``_nad_vm.<name>``; returns how many calls were replaced."""
    replaced = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = replacement(node, types)
            if name is not None:
                redirect(node, name)
                replaced += 1
    return replaced


def redirect(call: ast.Call, name: str) -> None:
    """Make ``call`` call vecmath's ``name`` (its annotations, hence its rule, kept)."""
    call.func = ast.Attribute(value=ast.Name(id=naming.VECTOR_MATH, ctx=ast.Load()), attr=name,
                              ctx=ast.Load())


def _is_float64(arg: ast.expr, types: dict) -> bool:
    if isinstance(arg, ast.Name):
        return types.get(arg.id) == nbtypes.float64
    return isinstance(arg, ast.Constant) and type(arg.value) is float


def _original(dotted: str):
    return getattr(math, dotted.split(".", 1)[1])
