"""The artifacts of user functions: their compiled primals and derivative variants, each built once.

What happens to a function is the pipelines of :mod:`nbautodiff.pipeline.passes` (source -> fence
-> normalise -> types -> analysis -> transform -> source text); this module runs them, compiles
the result (``numba.njit``) and keeps it, in memory, keyed by the function's code and the
argument types, so every artifact is built once per process; across processes the artifacts
(generated source and numba's compiled code) come from :mod:`nbautodiff.cache`, where a variant
found skips its pipeline:

* :func:`primal` - the normalised function compiled with ``numba.njit``; callees are bound to
  their own primals. Recursion is refused (the callee graph must be acyclic). A primal is reused
  only while what it read from module state (globals, callees, closure variables) is unchanged
  (:mod:`nbautodiff.pipeline.module_state`, checked on each request, i.e. on every call of a
  derivative); else it is built again, and so is every variant made from it (they are keyed by
  the primal).
* :func:`reverse_variant` - ``f__rev_<code>`` for given argument types and activities, with the
  variants of its callees built on demand for the types and activities at each call site;
  :func:`forward_variant` likewise in forward mode.
* :func:`in_place_dispatcher` - the primal with in-place operators storing into arrays.

Functions with a declared derivative (wrappers of :mod:`nbautodiff.frontend.declarations`) get
their primal and variants from :mod:`nbautodiff.pipeline.custom_variants`.
"""
from __future__ import annotations

import ast
import math
import threading
import types

import numpy as np

from nbautodiff import annotations as anno, cache, emit, memo, naming
from nbautodiff.analysis import activity as analysis_mod
from nbautodiff.analysis import aliasing
from nbautodiff.frontend import declarations, lifting
from nbautodiff.frontend import source as source_mod
from nbautodiff.frontend.source import (FunctionSource, function_source, python_function,
                                        record_generated, recording, resolve, specializes)
from nbautodiff.kernels import arrays as array_module
from nbautodiff.kernels import checkpoint as checkpoint_module, tape as tape_module
from nbautodiff.kernels import products as product_module
from nbautodiff.transforms import vector_calls
from . import custom_variants, module_state, passes
from .artifacts import ForwardVariant, Primal, Variant
from .passes import copy_tree

_lock = threading.RLock()
_building: list = []


# The memos (see nbautodiff.memo: each entry lives as long as its owner, the key's first item):
_primals = memo.memo("primals")                  # (func, code) -> Primal
_variants = memo.memo("reverse variants")        # (primal, request...) -> Variant


def _base_namespace() -> dict:
    return {"math": math, "np": np, naming.TAPE_MODULE: tape_module,
            naming.ARRAY_MODULE: array_module, naming.PRODUCT_MODULE: product_module,
            naming.CHECKPOINT_MODULE: checkpoint_module}


# ---- primals ------------------------------------------------------------------------------------

def primal(func) -> Primal:
    """The compiled primal of ``func`` (a function, a numba dispatcher, or a wrapper of
    :mod:`nbautodiff.frontend.declarations`, whose primal is its original function)."""
    if declarations.kind_of(func):
        return custom_variants.primal(func)
    if specializes(func):
        return func.nad_primal()
    func = python_function(func)
    with _lock:
        key = (func, func.__code__)
        if cache.memoized(_primals, key) and _primals[key].hold():
            return _primals[key]
        if func in _building:
            chain = " -> ".join(f.__name__ for f in _building[_building.index(func):] + [func])
            caller = function_source(_building[-1])
            raise caller.error(f"recursion is not supported ({chain})",
                               _call_site(caller, func) or caller.tree, construct="recursion")
        _building.append(func)
        try:
            built = _build_primal(func)
        finally:
            _building.pop()
        _primals[key] = built
        return built


def _library_name(target) -> str:
    """The qualified name of a library callable (what its binding in a primal stands for)."""
    module = getattr(target, "__module__", None) or type(target).__module__
    return f"{module}.{getattr(target, '__qualname__', getattr(target, '__name__', repr(target)))}"


def _call_site(fs: FunctionSource, callee) -> ast.Call | None:
    """The first call in ``fs`` to ``callee``."""
    for node in ast.walk(fs.tree):
        if isinstance(node, ast.Call):
            target = resolve(fs, node.func)
            if target is callee or getattr(target, "py_func", None) is callee:
                return node
    return None


def _build_primal(func) -> Primal:
    with recording() as noted:
        state = passes.PRIMAL.run(passes.PrimalState(func, ARTIFACTS))
    fs, normalized, rendered = state.fs, state.normalized, state.rendered
    namespace = _base_namespace()
    global_arrays = cache.frozen(normalized.globals)
    namespace.update(global_arrays)
    callee_primals = {}
    for binding, callee in normalized.callees.items():
        callee_primals[binding] = primal(callee)
        # a wrapper (custom rule) or batched function stays itself, numba-callable, so that
        # differentiating this code again (forward over reverse) still sees what it declares
        namespace[binding] = callee_primals[binding].dispatcher \
            if isinstance(callee, types.FunctionType) else callee
    namespace.update(normalized.libraries)        # library callables called as constants
    unloaded = dict(namespace)
    key = cache.key("primal", rendered.text, rendered.user_lines,
                    emit.annotations(normalized.tree), fs.generated, global_arrays,
                    {binding: p.key for binding, p in callee_primals.items()},
                    {binding: _library_name(target)
                     for binding, target in normalized.libraries.items()}, origin=func)
    entry = cache.artifact(key, lambda: cache.Built(f"{fs.name}_primal", rendered.text))
    namespace = entry.load(namespace)
    dispatcher = entry.njit(namespace[fs.name])
    built = Primal(fs, normalized, rendered, entry.source_path, namespace, dispatcher,
                   key=entry.key, reads=module_state.reads(func, noted,
                                                           list(callee_primals.values())))
    built.writes = aliasing.written_params(normalized,
                                           lambda binding: callee_primals[binding].writes,
                                           callee_returns)
    built.returns = aliasing.returned_params(normalized, callee_returns)
    built.unloaded, built.callees = unloaded, callee_primals
    return built


_merged = memo.memo("merged callees")           # (func, code, same) -> function or None


def _merged_callee(func, same: tuple):
    """``func`` with parameter k replaced by parameter ``same[k]`` (a real function, its source
    registered), or None where a replaced parameter is rebound in its body (see
    :func:`nbautodiff.pipeline.passes.merge_repeated_arguments`)."""
    key = (func, func.__code__, same)
    if key in _merged:
        return _merged[key]
    fs = lifting.lift(function_source(func))
    params = fs.parameters
    renamed = {params[k]: params[j] for k, j in enumerate(same) if j != k}
    stored = {n.id for n in ast.walk(fs.tree) if isinstance(n, ast.Name)
              and isinstance(n.ctx, ast.Store)}
    if stored & (set(renamed) | set(renamed.values())) or fs.tree.args.defaults:
        _merged[key] = None
        return None
    tree = copy_tree(fs.tree)
    tree.args.args = [a for k, a in enumerate(tree.args.args) if same[k] == k]
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in renamed:
            node.id = renamed[node.id]
    tree.name = f"{func.__name__}__same_" + "_".join(map(str, same))
    module = ast.fix_missing_locations(ast.Module(body=[tree], type_ignores=[]))
    code = compile(module, fs.filename, "exec")
    body = next(c for c in code.co_consts if isinstance(c, types.CodeType))
    merged = types.FunctionType(body, fs.globals, tree.name)
    merged.__qualname__ = f"{func.__qualname__}__same"
    merged.__module__ = func.__module__
    source_mod.register(source_mod.FunctionSource(func=merged, tree=tree, filename=fs.filename,
                                                  closure=fs.closure))
    _merged[key] = merged
    return merged


def in_place_dispatcher(prim: Primal):
    """``prim`` compiled with each in-place operator on an array storing into that array (see
    :func:`nbautodiff.pipeline.passes.store_in_place`), as NumPy does, so that aliases, views
    and the caller see the update; callees likewise. :attr:`Primal.dispatcher` rebinds the name
    instead (its source is what the transforms read when they differentiate code calling it);
    the outer batch layout calls this one, which gives the function's own results and side
    effects."""
    with _lock:
        if prim.in_place is None:
            prim.in_place = _build_in_place(prim)
        return prim.in_place


def _build_in_place(prim: Primal):
    callees = {binding: in_place_dispatcher(callee)
               for binding, callee in prim.callees.items()
               if prim.unloaded.get(binding) is callee.dispatcher}
    marked = any(anno.get(statement, anno.IN_PLACE, False)
                 for statement, _ in analysis_mod.walk_statements(prim.normalized.tree.body))
    if not marked and all(callees[b] is prim.callees[b].dispatcher for b in callees):
        return prim.dispatcher
    fs = prim.fs
    rendered = passes.IN_PLACE_PRIMAL.run(passes.PrimalState(
        fs.func, ARTIFACTS, fs=fs, normalized=prim.normalized)).rendered
    key = cache.key("primal-in-place", rendered.text, rendered.user_lines, prim.key,
                    {binding: prim.callees[binding].key for binding in callees}, origin=fs.func)
    entry = cache.artifact(key, lambda: cache.Built(f"{fs.name}_primal_in_place",
                                                    rendered.text))
    namespace = entry.load({**prim.unloaded, **callees})
    return entry.njit(namespace[fs.name])


# ---- variants -----------------------------------------------------------------------------------

def reverse_variant(func, argtypes: tuple, active: list[bool], result_active: bool,
                    writeback: bool, keep_value: bool = True, checkpoint=None,
                    fastmath: bool = False) -> Variant:
    """The reverse-mode variant of ``func`` for ``argtypes``; ``active[i]``: argument i is active.

    Without ``keep_value`` the variant returns ``None`` in place of the primal result and does
    not compute it. ``checkpoint`` (a :class:`nbautodiff.frontend.checkpoint_markers.Schedule`)
    checkpoints the outermost loops of ``func`` that need a tape (loops marked in the source are
    checkpointed anyway). The variant returns ``(tape bytes, checkpoint bytes)`` of its call as
    its last item. ``fastmath``: products recognised in loop nests are computed by BLAS
    (:mod:`nbautodiff.transforms.raising`), in this variant and its callees'."""
    func = _specialized(func, argtypes)
    prim = primal(func)
    key = (prim, tuple(argtypes), tuple(active), result_active, writeback, keep_value,
           checkpoint, fastmath)
    with _lock:
        if cache.memoized(_variants, key):
            return _variants[key]
        if declarations.kind_of(func):
            built = custom_variants.reverse_variant(func, tuple(argtypes), list(active),
                                                    result_active, keep_value)
        else:
            built = _build_variant(prim, tuple(argtypes), list(active), result_active, writeback,
                                   keep_value, checkpoint, fastmath)
        _variants[key] = built
        return built


def _build_variant(prim: Primal, argtypes: tuple, active: list[bool], result_active: bool,
                   writeback: bool, keep_value: bool, checkpoint=None,
                   fastmath: bool = False) -> Variant:
    key = cache.key("reverse", prim.key, argtypes, active, result_active, writeback, keep_value,
                    checkpoint, *(("fastmath",) if fastmath else ()))
    entry = cache.artifact(key, lambda: passes.REVERSE.run(passes.VariantState(
        "reverse", prim, argtypes, active, result_active, ARTIFACTS, fastmath=fastmath,
        writeback=writeback, keep_value=keep_value, checkpoint=checkpoint)).built)
    data = entry.data
    dispatcher = _loaded(entry, prim)
    record_generated(entry.source_path, prim.fs, data["user_lines"])
    return Variant(data["name"], entry.text, entry.source_path, dispatcher, data["shadows"],
                   data["adjoint_positions"], data["result_type"], data["checkpointed"],
                   data["user_lines"])


_forward_variants = memo.memo("forward variants")    # (primal, request...) -> ForwardVariant


def forward_variant(func, argtypes: tuple, duals: list[bool], result_dual: bool,
                    width: int = 1, fastmath: bool = False) -> ForwardVariant:
    """The forward-mode variant of ``func`` for ``argtypes``; ``duals[i]``: argument i carries
    ``width`` tangents. A result that is not a float (array) is never dual. ``fastmath``: as
    for :func:`reverse_variant`."""
    func = _specialized(func, argtypes)
    prim = primal(func)
    key = (prim, tuple(argtypes), tuple(duals), result_dual, width, fastmath)
    with _lock:
        if cache.memoized(_forward_variants, key):
            pass
        elif declarations.kind_of(func):
            _forward_variants[key] = custom_variants.forward_variant(
                func, tuple(argtypes), list(duals), result_dual, width)
        else:
            _forward_variants[key] = _build_forward(prim, tuple(argtypes), list(duals),
                                                    result_dual, width, fastmath)
        return _forward_variants[key]


def _build_forward(prim: Primal, argtypes: tuple, duals: list[bool], result_dual: bool,
                   width: int, fastmath: bool = False) -> ForwardVariant:
    key = cache.key("forward", prim.key, argtypes, duals, result_dual, width,
                    *(("fastmath",) if fastmath else ()))
    entry = cache.artifact(key, lambda: passes.FORWARD.run(passes.VariantState(
        "forward", prim, argtypes, duals, result_dual, ARTIFACTS, fastmath=fastmath,
        width=width)).built)
    data = entry.data
    record_generated(entry.source_path, prim.fs, data["user_lines"])
    return ForwardVariant(data["name"], entry.text, entry.source_path, _loaded(entry, prim),
                          data["duals"], data["result_dual"], data["result_type"], width)


_checked_primals = memo.memo("checked primals")   # (primal, argtypes) -> True


def check_compiled_primal(prim: Primal, argtypes: tuple) -> None:
    """Raise a located :class:`AutodiffError` where the compiled primal of ``prim`` cannot run
    for ``argtypes`` as the Python function does (for code that runs the primal itself, such as
    a batch): numba cannot type it, or it (or a callee) stores through a boolean mask a value
    that may share memory with the array written (see
    :func:`nbautodiff.analysis.aliasing.refuse_overlapping_mask_stores`). Checked once per
    primal and types."""
    key = (prim, tuple(argtypes))
    with _lock:
        if key in _checked_primals:
            return
        types = passes.typed(prim, tuple(argtypes))[1]
        aliasing.refuse_overlapping_mask_stores(prim.normalized, types, callee_returns)
        for statement, _ in analysis_mod.walk_statements(prim.normalized.tree.body):
            call = getattr(statement, "value", None)
            if not (isinstance(call, ast.Call) and anno.get(call, anno.KIND) == "user"):
                continue
            target = anno.get(call, anno.TARGET)
            if declarations.kind_of(target) or specializes(target):
                continue                     # declared rules, batched callees: their own code
            check_compiled_primal(primal(target),
                                  tuple(passes.atom_type(arg, types) for arg in call.args))
        _checked_primals[key] = True


def _specialized(func, argtypes: tuple):
    """``func``, or the function it runs for ``argtypes`` where that depends on the types."""
    return func.nad_specialize(tuple(argtypes)) if specializes(func) else func


def callee_writes(call: ast.Call) -> set[int]:
    """Positions of the arguments the function called by ``call`` writes."""
    return primal(anno.get(call, anno.TARGET)).writes


def callee_returns(call: ast.Call) -> dict | None:
    """{position: view kinds} of the arguments the result of the function called by ``call``
    may be or view; None when unknown (a declared rule's function: any of them)."""
    return getattr(primal(anno.get(call, anno.TARGET)), "returns", None)


def _loaded(entry: cache.Entry, prim: Primal):
    """The dispatcher of variant ``entry`` of ``prim``, its callees' variants bound."""
    namespace = dict(prim.namespace)
    for binding, callee_binding, request in entry.data["callees"]:
        target = prim.normalized.callees[callee_binding]
        namespace[binding] = _callee_variant(target, *request).dispatcher
    if entry.data.get("vector_math"):
        namespace[naming.VECTOR_MATH] = vector_calls.module()
    return entry.njit(entry.load(namespace)[entry.data["name"]])


def _callee_variant(target, mode: str, argtypes: tuple, *signature):
    """The variant of callee ``target`` that a generated variant calls."""
    if mode == "reverse":
        flags, seeded, fastmath = signature
        return reverse_variant(target, argtypes, flags, seeded, writeback=False,
                               keep_value=False, fastmath=fastmath)
    flags, dual_result, width, fastmath = signature
    return forward_variant(target, argtypes, flags, dual_result, width, fastmath)


#: What the passes ask this module for (see :class:`nbautodiff.pipeline.passes.Artifacts`).
ARTIFACTS = passes.Artifacts(primal, reverse_variant, forward_variant, _merged_callee)
