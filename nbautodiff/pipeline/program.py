"""Compiled artifacts of user functions: normalised primals and reverse-mode variants.

This module drives the pipeline (source -> fence -> normalise -> types -> analysis ->
transform -> emit -> numba) and keeps its results in memory, keyed by the function's code and the
argument types, so every artifact is built once per process; across processes the artifacts
(generated source and numba's compiled code) come from :mod:`.cache`, where a variant found skips
everything after normalisation:

* :func:`primal` - the normalised function compiled with ``numba.njit``; callees are bound to
  their own primals. Recursion is refused (the callee graph must be acyclic). A primal is reused
  only while what it read from module state (globals, callees, closure variables) is unchanged
  (:mod:`nbautodiff.pipeline.module_state`, checked on each request, i.e. on every call of a derivative); else it
  is built again, and so is every variant made from it (they are keyed by the primal).
* :func:`reverse_variant` - ``f__rev_<code>`` for given argument types and activities, with the
  variants of its callees built on demand for the types and activities at each call site.

Functions with a declared derivative (wrappers of :mod:`nbautodiff.frontend.declarations`) get their primal and
reverse variants from that module.
"""
from __future__ import annotations

import ast
import math
import re
import threading
import types

import numba
import numpy as np
from numba import types as nbtypes

from nbautodiff import annotations as anno, cache, emit, naming
from nbautodiff.analysis import activity as analysis_mod
from nbautodiff.analysis import aliasing, arrayfence, tuples, typeinfer
from nbautodiff.errors import AutodiffError, UnsupportedConstructError
from nbautodiff.frontend import declarations, fence, lifting
from nbautodiff.frontend import source as source_mod
from nbautodiff.frontend.normalize import Normalized, normalize
from nbautodiff.frontend.source import (FunctionSource, function_source, python_function,
                                        record_generated, recording, resolve, specializes)
from nbautodiff.kernels import arrays as array_module
from nbautodiff.kernels import checkpoint as checkpoint_module, tape as tape_module
from nbautodiff.kernels import products as product_module
from nbautodiff.transforms import forward as forward_mode, raising, vector_calls
from nbautodiff.transforms.reverse import transform as reverse_mode
from . import custom_variants, module_state
from .artifacts import ForwardVariant, Primal, Variant

_lock = threading.RLock()
_building: list = []


_primals: dict = {}
_variants: dict = {}


def _base_namespace() -> dict:
    return {"math": math, "np": np, naming.TAPE_MODULE: tape_module,
            naming.ARRAY_MODULE: array_module, naming.PRODUCT_MODULE: product_module,
            naming.CHECKPOINT_MODULE: checkpoint_module}


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
        fs = lifting.lift(function_source(func))
        try:
            fence.check(fs)
        except UnsupportedConstructError as error:
            if not fs.generated:
                raise
            raise UnsupportedConstructError(
                f"{error.message}: the generated derivative {fs.name} uses it, so it cannot be "
                "differentiated again yet", construct=error.construct, lineno=error.lineno,
                filename=error.filename, function=error.function) from None
        normalized = normalize(fs)
        if not fs.generated:
            _merge_repeated_arguments(normalized)
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
    rendered = emit.render([normalized.tree], header=f"# primal of {fs.name}, normalised by nbautodiff\n"
                                                     "import math\nimport numpy as np")
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
    built.writes = _written_params(normalized, callee_primals)
    built.returns = aliasing.returned_params(normalized, _callee_returns)
    built.unloaded, built.callees = unloaded, callee_primals
    return built


_merged: dict = {}


def _merge_repeated_arguments(normalized: Normalized) -> None:
    """Calls that pass one array name for several parameters of a function that writes one of
    them (``g(y, y)``) call instead a version of the function with those parameters made one
    (``g__same(y)``, the later ones renamed to the first): its derivatives then see the
    aliasing, which a derivative of ``g`` itself, assuming distinct arrays, would not. A
    parameter that the function rebinds is left alone (then :mod:`nbautodiff.analysis.aliasing` refuses the call)."""
    for statement, _ in analysis_mod.walk_statements(normalized.tree.body):
        call = getattr(statement, "value", None)
        if not (isinstance(call, ast.Call) and anno.get(call, anno.KIND) == "user"
                and isinstance(anno.get(call, anno.TARGET), types.FunctionType)
                and not declarations.kind_of(anno.get(call, anno.TARGET))):
            continue
        names = [a.id if isinstance(a, ast.Name) else None for a in call.args]
        first = {}
        same = tuple(first.setdefault(n, k) if n is not None else k for k, n in enumerate(names))
        if same == tuple(range(len(names))) or not primal(anno.get(call, anno.TARGET)).writes:
            continue
        merged = _merged_callee(anno.get(call, anno.TARGET), same)
        if merged is None:
            continue
        binding = naming.unused(merged.__name__, lambda b: b in normalized.callees
                                and normalized.callees[b] is not merged)
        normalized.callees[binding] = merged
        call.func = ast.Name(id=binding, ctx=ast.Load())
        call.args = [a for k, a in enumerate(call.args) if same[k] == k]
        anno.set(call, anno.TARGET, merged)


def _merged_callee(func, same: tuple):
    """``func`` with parameter k replaced by parameter ``same[k]`` (a real function, its source
    registered), or None where a replaced parameter is rebound in its body."""
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
    :func:`_stored_in_place`), as NumPy does, so that aliases, views and the caller see the
    update; callees likewise. :attr:`Primal.dispatcher` rebinds the name instead (its source is
    what the transforms read when they differentiate code calling it); the outer batch layout
    calls this one, which gives the function's own results and side effects."""
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
    rendered = emit.render([_stored_in_place(prim.normalized.tree)],
                           header=f"# primal of {fs.name} (in-place operators store), "
                                  "normalised by nbautodiff\nimport math\nimport numpy as np")
    key = cache.key("primal-in-place", rendered.text, rendered.user_lines, prim.key,
                    {binding: prim.callees[binding].key for binding in callees}, origin=fs.func)
    entry = cache.artifact(key, lambda: cache.Built(f"{fs.name}_primal_in_place",
                                                    rendered.text))
    namespace = entry.load({**prim.unloaded, **callees})
    return entry.njit(namespace[fs.name])


def _stored_in_place(tree: ast.FunctionDef) -> ast.FunctionDef:
    """``tree`` with each rebinding that ends ``A op= ...`` (``A = t`` annotated ``IN_PLACE``)
    written ``A = in_place(A, t)``: an array is updated in place as NumPy does, so that aliases,
    views and the caller see the update (a number is rebound)."""
    tree = copy_tree(tree)
    for statement, _ in analysis_mod.walk_statements(tree.body):
        if isinstance(statement, ast.Assign) and anno.get(statement, anno.IN_PLACE, False) \
                and isinstance(statement.targets[0], ast.Name):
            name = statement.targets[0].id
            statement.value = ast.Call(
                func=ast.Attribute(value=ast.Name(id=naming.ARRAY_MODULE, ctx=ast.Load()),
                                   attr="in_place", ctx=ast.Load()),
                args=[ast.Name(id=name, ctx=ast.Load()), statement.value], keywords=[])
            ast.fix_missing_locations(ast.copy_location(statement.value, statement))
    return tree


def _written_params(normalized: Normalized, callee_primals: dict) -> set[int]:
    """Positions of parameters whose arrays the function writes: directly, via aliases or
    callees, and by in-place operators (``A += ...``: forward mode stores into the array, reverse
    mode refuses them on arrays the caller sees, generated code uses them on its buffers). In
    user code an in-place operator counts on a name bound to the array or to a slice of it."""
    generated = normalized.source.generated
    tree = normalized.tree
    params = [a.arg for a in tree.args.args]
    origin = {p: {p} for p in params}              # name -> parameters whose arrays it may hold
    bound = {p: {p} for p in params}               # ... that it is bound to, or to a slice of
    written = set()
    for statement, _ in analysis_mod.walk_statements(tree.body):
        if isinstance(statement, ast.Assign):
            target, value = statement.targets[0], statement.value
            if anno.get(statement, anno.IN_PLACE, False):     # `A += ...` on an argument's array
                written |= (origin if generated else bound).get(target.id, set())
            sources = set().union(*(origin.get(name, set()) for name in _held_names(value)))
            if isinstance(target, ast.Name) and sources:
                origin[target.id] = origin.get(target.id, set()) | sources
                bound[target.id] = bound.get(target.id, set()) | _bound_to(value, bound)
            elif isinstance(target, ast.Subscript) and target.value.id in origin:
                written |= origin[target.value.id]
        call = getattr(statement, "value", None)
        positions = []
        if isinstance(call, ast.Call) and anno.get(call, anno.KIND) == "user":
            positions = callee_primals[ast.unparse(call.func)].writes
        elif isinstance(call, ast.Call) and anno.get(call, anno.KIND) == "helper" \
                and anno.get(call, anno.TARGET).writes is not None:
            positions = [anno.get(call, anno.TARGET).writes]       # e.g. copy_into, the writeback
        for position in positions:
            arg = call.args[position]
            if isinstance(arg, ast.Name) and arg.id in origin:
                written |= origin[arg.id]
    return {params.index(p) for p in written}


def _bound_to(value: ast.expr, bound: dict) -> set:
    """The parameters whose arrays ``value`` is, or is a slice of (``x[1:]``); in user code an
    element ``x[i]`` may be a number, whose ``s += ...`` writes no array."""
    if isinstance(value, ast.Subscript):
        index = value.slice.elts if isinstance(value.slice, ast.Tuple) else [value.slice]
        if not any(isinstance(part, ast.Slice) for part in index):
            return set()
        value = value.value
    return bound.get(value.id, set()) if isinstance(value, ast.Name) else set()


def _held_names(value: ast.expr) -> list[str]:
    """Names whose arrays the value of ``value`` may be or hold: a name, the elements of a
    tuple display, the array (a view of it) or tuple that a subscript reads."""
    if isinstance(value, ast.Subscript):
        value = value.value
    nodes = value.elts if isinstance(value, ast.Tuple) else [value]
    return [node.id for node in nodes if isinstance(node, ast.Name)]


def types_of(prim: Primal, argtypes: tuple) -> tuple[dict, object]:
    """Variable types of ``prim`` for ``argtypes``, numba errors turned into located ones.

    A float ``range`` bound is a TypeError, as in Python (numba would truncate it)."""
    try:
        types, result_type = typeinfer.infer(prim.py_func, argtypes)
    except typeinfer.TypingError as exc:
        raise _located(prim, exc) from None
    _check_range_bounds(prim, types)
    return types, result_type


def _check_range_bounds(prim: Primal, types: dict) -> None:
    bounds_by_line = {loop.lineno: loop.iter for loop, _ in
                      analysis_mod.walk_statements(prim.fs.tree.body)
                      if isinstance(loop, ast.For) and isinstance(loop.iter, ast.Call)}
    for loop, _ in analysis_mod.walk_statements(prim.normalized.tree.body):
        if not (isinstance(loop, ast.For) and isinstance(loop.iter, ast.Call)):
            continue
        for bound in loop.iter.args:
            if isinstance(bound, ast.Name) and isinstance(types.get(bound.id), nbtypes.Float):
                original = bounds_by_line.get(loop.lineno, loop.iter)
                culprits = [n.id for n in ast.walk(original) if isinstance(n, ast.Name)
                            and isinstance(types.get(n.id), nbtypes.Float)
                            and n.id in prim.fs.parameters]
                which = f"argument '{culprits[0]}' is a float" if culprits else "it has a float"
                raise TypeError(f"{prim.fs.name}(): range() bounds must be integers, but "
                                f"in '{ast.unparse(original)}' (line {loop.lineno}) {which}; "
                                "pass an int (or convert with int(...))")


def _located(prim: Primal, exc: Exception) -> AutodiffError:
    text = str(exc)
    line = None
    for match in re.finditer(r'File "([^"]+)", line (\d+)', text):
        if match.group(1).endswith(prim.path.rsplit("/", 1)[-1]):
            line = prim.rendered.user_line(int(match.group(2)))
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), text)
    first = re.sub(r"\x1b\[[0-9;]*m", "", first)
    return prim.fs.error(f"numba cannot compile this code: {first}",
                         types.SimpleNamespace(lineno=line) if line else None,
                         construct="numba typing")


def signature_code(argtypes: tuple, active: list[bool], result_active: bool,
                   keep_value: bool = True) -> str:
    code = "".join("a" if flag else "c" for flag in active)
    return code + ("_r" if result_active else "") + ("" if keep_value else "_adjonly")


def reverse_variant(func, argtypes: tuple, active: list[bool], result_active: bool,
                    writeback: bool, keep_value: bool = True, checkpoint=None,
                    fastmath: bool = False) -> Variant:
    """The reverse-mode variant of ``func`` for ``argtypes``; ``active[i]``: argument i is active.

    Without ``keep_value`` the variant returns ``None`` in place of the primal result and does
    not compute it. ``checkpoint`` (a :class:`nbautodiff.frontend.checkpoint_markers.Schedule`) checkpoints the outermost
    loops of ``func`` that need a tape (loops marked in the source are checkpointed anyway).
    The variant returns ``(tape bytes, checkpoint bytes)`` of its call as its last item.
    ``fastmath``: products recognised in loop nests are computed by BLAS (:mod:`nbautodiff.transforms.raising`), in
    this variant and its callees'."""
    func = _specialized(func, argtypes)
    prim = primal(func)
    key = (prim, tuple(argtypes), tuple(active), result_active, writeback, keep_value,
           checkpoint, fastmath)
    with _lock:
        if cache.memoized(_variants, key):
            return _variants[key]
        if declarations.kind_of(func):
            built = custom_variants.reverse_variant(func, tuple(argtypes), list(active), result_active,
                                           keep_value)
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
    entry = cache.artifact(key, lambda: _generate_variant(prim, argtypes, active, result_active,
                                                          writeback, keep_value, checkpoint,
                                                          fastmath))
    data = entry.data
    dispatcher = _loaded(entry, prim)
    record_generated(entry.source_path, prim.fs, data["user_lines"])
    return Variant(data["name"], entry.text, entry.source_path, dispatcher, data["shadows"],
                   data["adjoint_positions"], data["result_type"], data["checkpointed"],
                   data["user_lines"])


def _generate_variant(prim: Primal, argtypes: tuple, active: list[bool], result_active: bool,
                      writeback: bool, keep_value: bool, checkpoint,
                      fastmath: bool = False) -> cache.Built:
    """The source of a reverse variant, and what :func:`_loaded` needs to load it."""
    fs, normalized = prim.fs, prim.normalized
    if fs.generated and naming.is_derivative_name(fs.name):
        raise AutodiffError(f"reverse mode of the generated derivative {fs.name} is not "
                            "supported: differentiate it in forward mode (nad.hessian, "
                            "nad.jvp(nad.grad(f), ...), nad.jacfwd)", construct="reverse over reverse")
    params, types, result_type = _typed(prim, argtypes)
    for name, flag, typ in zip(params, active, argtypes):
        if flag and not typeinfer.is_differentiable(typ):
            raise TypeError(f"argument '{name}' of {fs.name}() has type {typ}, which cannot be "
                            "differentiated (use a float or a float32/float64 array)")
    tree = copy_tree(normalized.tree)
    arrayfence.check(normalized, types, callee_returns=_callee_returns,
                     callee_writes=_callee_writes, tree=tree)
    result_active = result_active and tuples.has_differentiable(result_type)
    active_params = {p for p, flag in zip(params, active) if flag}
    tuples.split(tree, types, fs)
    vector_math = False
    if fastmath:
        types, vector_math = _fastmath_rewrite(tree, types)
    an = analysis_mod.analyse(tree, types, active_params, result_active, _callee_writes)
    _refuse_opaque(fs, tree, an)
    namespace = dict(prim.namespace)
    name = naming.reverse_name(fs.name, signature_code(argtypes, active, result_active,
                                                       keep_value)
                                + ("_ckpt" if checkpoint else "") + ("_fm" if fastmath else ""))
    callees = []

    def callee_variant(call: ast.Call, seeded: bool) -> reverse_mode.CalleeVariant:
        arg_types = tuple(_atom_type(arg, types) for arg in call.args)
        flags = [isinstance(arg, ast.Name) and an.is_active(arg.id) and
                 typeinfer.is_differentiable(t) for arg, t in zip(call.args, arg_types)]
        callee = reverse_variant(anno.get(call, anno.TARGET), arg_types, flags, seeded,
                                 writeback=False, keep_value=False, fastmath=fastmath)
        binding = _bind(namespace, callee.name, callee.dispatcher, name)
        callees.append((binding, _callee_binding(prim, call),
                        ("reverse", arg_types, flags, seeded, fastmath)))
        seeds = tuples.seeded_leaves(callee.result_type) \
            if tuples.is_tuple(callee.result_type) else None
        return reverse_mode.CalleeVariant(binding, callee.shadows, callee.adjoint_positions,
                                          seeds)

    tree = reverse_mode.transform(tree, an, fs, active_params=active_params,
                             result_active=result_active, writeback=writeback,
                             keep_value=keep_value, name=name,
                             callee_variant=callee_variant, callee_writes=_callee_writes,
                             checkpoint=checkpoint)
    anno.set(tree, anno.DOC, f"Reverse mode of {fs.name}: returns (result, adjoints of active "
             f"scalar arguments); active arguments: {', '.join(sorted(active_params)) or 'none'}.")
    shadows = [flag and typeinfer.is_array(t) for flag, t in zip(active, argtypes)]
    positions = [i for i, (flag, t) in enumerate(zip(active, argtypes))
                 if flag and not typeinfer.is_array(t)]
    return _generated(tree, f"reverse mode of {fs.name}", name, {
        "callees": callees, "shadows": shadows, "adjoint_positions": positions,
        "result_type": result_type, "checkpointed": anno.get(tree, anno.CHECKPOINTED),
        "vector_math": vector_math})


_forward_variants: dict = {}


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
            _forward_variants[key] = custom_variants.forward_variant(func, tuple(argtypes), list(duals),
                                                            result_dual, width)
        else:
            _forward_variants[key] = _build_forward(prim, tuple(argtypes), list(duals),
                                                    result_dual, width, fastmath)
        return _forward_variants[key]


def _build_forward(prim: Primal, argtypes: tuple, duals: list[bool], result_dual: bool,
                   width: int, fastmath: bool = False) -> ForwardVariant:
    key = cache.key("forward", prim.key, argtypes, duals, result_dual, width,
                    *(("fastmath",) if fastmath else ()))
    entry = cache.artifact(key, lambda: _generate_forward(prim, argtypes, duals, result_dual,
                                                          width, fastmath))
    data = entry.data
    record_generated(entry.source_path, prim.fs, data["user_lines"])
    return ForwardVariant(data["name"], entry.text, entry.source_path, _loaded(entry, prim),
                          data["duals"], data["result_dual"], data["result_type"], width)


def _generate_forward(prim: Primal, argtypes: tuple, duals: list[bool], result_dual: bool,
                      width: int, fastmath: bool = False) -> cache.Built:
    """The source of a forward variant, and what :func:`_loaded` needs to load it."""
    fs, normalized = prim.fs, prim.normalized
    params, types, result_type = _typed(prim, argtypes)
    duals = [flag and typeinfer.is_differentiable(typ) for flag, typ in zip(duals, argtypes)]
    tree = copy_tree(normalized.tree)
    arrayfence.check(normalized, types, in_place_shared=True, callee_returns=_callee_returns,
                     callee_writes=_callee_writes, tree=tree)
    result_dual = result_dual and tuples.has_differentiable(result_type)
    dual_params = {p for p, flag in zip(params, duals) if flag}
    tuples.split(tree, types, fs)
    vector_math = False
    if fastmath:
        types, vector_math = _fastmath_rewrite(tree, types)
    an = analysis_mod.analyse(tree, types, dual_params, result_dual, _callee_writes,
                              in_place_stores=True)
    _refuse_opaque(fs, tree, an)
    namespace = dict(prim.namespace)
    code = "".join("d" if flag else "c" for flag in duals) + ("_r" if result_dual else "") + \
        (f"_w{width}" if width > 1 else "") + ("_fm" if fastmath else "")
    name = naming.forward_name(fs.name, code)
    callees = []

    def callee_variant(call: ast.Call, flags: list[bool], dual_result: bool):
        arg_types = tuple(_atom_type(arg, types) for arg in call.args)
        callee = forward_variant(anno.get(call, anno.TARGET), arg_types, flags, dual_result, width,
                                 fastmath)
        binding = _bind(namespace, callee.name, callee.dispatcher, name)
        callees.append((binding, _callee_binding(prim, call),
                        ("forward", arg_types, flags, dual_result, width, fastmath)))
        return forward_mode.CalleeForward(binding, callee.duals, callee.result_dual)

    tree = forward_mode.transform(tree, an, fs, dual_params=dual_params, result_dual=result_dual,
                                  width=width, name=name, callee_variant=callee_variant)
    anno.set(tree, anno.DOC, f"Forward mode of {fs.name} ({width} direction{'s' * (width > 1)}): "
             f"returns {'(result, tangents...)' if result_dual else 'the result'}; dual "
             f"arguments: {', '.join(p for p in params if p in dual_params) or 'none'}.")
    return _generated(tree, f"forward mode of {fs.name}", name, {
        "callees": callees, "duals": duals, "result_dual": result_dual,
        "result_type": result_type, "vector_math": vector_math})


def _refuse_opaque(fs: FunctionSource, tree: ast.FunctionDef, an) -> None:
    """Refuse, with its line, a library call without a derivative rule that is not a constant
    (see :func:`nbautodiff.analysis.activity.opaque_call_refusal`)."""
    found = analysis_mod.opaque_call_refusal(tree, an)
    if found is not None:
        statement, reason = found
        raise fs.error(f"{reason}", statement, construct=ast.unparse(statement.value.func),
                       kind=UnsupportedConstructError)


def _specialized(func, argtypes: tuple):
    """``func``, or the function it runs for ``argtypes`` where that depends on the types."""
    return func.nad_specialize(tuple(argtypes)) if specializes(func) else func


def _typed(prim: Primal, argtypes: tuple) -> tuple[list[str], dict, object]:
    """(parameter names, variable types with the parameters' as given, result type)."""
    params = [a.arg for a in prim.normalized.tree.args.args]
    types, result_type = types_of(prim, argtypes)
    types.update(zip(params, argtypes))
    return params, types, result_type


def _callee_writes(call: ast.Call) -> set[int]:
    """Positions of the arguments the function called by ``call`` writes."""
    return primal(anno.get(call, anno.TARGET)).writes


def _callee_returns(call: ast.Call) -> dict | None:
    """{position: view kinds} of the arguments the result of the function called by ``call``
    may be or view; None when unknown (a declared rule's function: any of them)."""
    return getattr(primal(anno.get(call, anno.TARGET)), "returns", None)


def _bind(namespace: dict, callee_name: str, dispatcher, own_name: str) -> str:
    """Bind a callee's compiled variant in a generated module's ``namespace``; the name is
    ``callee_name`` unless two callees share a ``__name__`` or it is the module's own function."""
    binding = naming.unused(callee_name, lambda b: b == own_name or
                            namespace.get(b, dispatcher) is not dispatcher)
    namespace[binding] = dispatcher
    return binding


def _callee_binding(prim: Primal, call: ast.Call) -> str:
    """The name under which ``prim``'s namespace binds the callee of ``call`` (the call's own
    spelling: its annotations are deep copies, not the objects bound)."""
    binding = ast.unparse(call.func)
    if binding not in prim.normalized.callees:
        raise AssertionError(f"{prim.fs.name}: the callee {binding} of a variant is not bound")
    return binding


def _generated(tree: ast.FunctionDef, what: str, name: str, data: dict) -> cache.Built:
    """The artifact of generated function ``tree``; ``data`` holds its ``callees``: (binding,
    callee's binding in the primal, request of :func:`_callee_variant`) per bound variant."""
    rendered = emit.render([tree], header=f"# {what}, generated by nbautodiff\n"
                                          "import math\nimport numpy as np")
    return cache.Built(name, rendered.text, dict(data, name=name, user_lines=rendered.user_lines))


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


def _fastmath_rewrite(tree: ast.FunctionDef, types: dict) -> tuple[dict, bool]:
    """What ``fastmath=True`` changes in a variant's normalised ``tree`` (in place) before it is
    differentiated: products of rows computed by BLAS (:mod:`nbautodiff.transforms.raising`) and math functions by
    :mod:`.kernels.vecmath` (:mod:`nbautodiff.transforms.vector_calls`). Returns the types, the products' added,
    and whether the tree calls vecmath."""
    types = dict(types)
    raising.raise_products(tree, types)
    return types, vector_calls.substitute(tree, types) > 0


def copy_tree(tree: ast.FunctionDef) -> ast.FunctionDef:
    """A deep copy that keeps the annotations normalisation put on calls."""
    import copy
    return copy.deepcopy(tree)


def _atom_type(node: ast.expr, types: dict):
    if isinstance(node, ast.Name):
        return types[node.id]
    if isinstance(node, ast.Tuple):
        return nbtypes.UniTuple(nbtypes.int64, len(node.elts))
    return numba.typeof(node.value)
