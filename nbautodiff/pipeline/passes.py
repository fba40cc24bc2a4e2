"""The passes each artifact goes through, in order: one named list per kind of artifact.

numba's ``DefaultPassBuilder`` is the model. A :class:`Pipeline` is a list of named
:class:`Pass` es; a pass is a function of the previous pass's output: a record (a
:class:`PrimalState` for a primal, a :class:`VariantState` for a derivative variant) that each
pass reads and returns, with its own part added. So what happens to a function is read here, top
to bottom, in :data:`PRIMAL`, :data:`IN_PLACE_PRIMAL`, :data:`REVERSE` and :data:`FORWARD`
(``python -m nbautodiff.pipeline`` prints them). The reverse and forward pipelines share
every pass but the one that differentiates (and the reverse one refuses reverse over reverse
first); they differ in a few options that the request carries (forward mode stores in-place
operators into arrays).

:mod:`nbautodiff.pipeline.program` keeps the artifacts: it builds each one once, caches it
(:mod:`nbautodiff.cache`) and compiles it, running these pipelines to make their source; this
module never imports it. A pass that needs another artifact (the primal of a callee, a
callee's variant) asks the record's ``artifacts`` (:class:`Artifacts`, program's builders).

Batched and offloaded functions are made from a primal by the API
(:mod:`nbautodiff.api.batch`, :mod:`nbautodiff.api.offload`), not here: the batched one by
:mod:`nbautodiff.transforms.batching` (the outer layout, a loop calling a compiled primal or
variant per slice; the inner layout, :mod:`nbautodiff.transforms.lanes` over the primal's
normalised tree), the offloaded one by :mod:`nbautodiff.transforms.offloading`.
"""
from __future__ import annotations

import ast
import copy
import types
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numba
from numba import types as nbtypes

from nbautodiff import annotations as anno, cache, emit, naming
from nbautodiff.analysis import activity as analysis_mod
from nbautodiff.analysis import aliasing, arrayfence, tuples, typeinfer
from nbautodiff.codegen import parameters
from nbautodiff.errors import (AutodiffError, UnsupportedConstructError, numba_locations,
                               numba_reason)
from nbautodiff.frontend import declarations, fence, lifting
from nbautodiff.frontend.normalize import Normalized, normalize
from nbautodiff.frontend.source import FunctionSource, function_source
from nbautodiff.transforms import forward as forward_mode, raising, vector_calls
from nbautodiff.transforms.reverse import transform as reverse_mode
from .artifacts import Primal


# ---- passes and pipelines ---------------------------------------------------------------------

@dataclass(frozen=True)
class Pass:
    """A named step: ``function(state) -> state``."""
    name: str
    function: Callable

    @property
    def doc(self) -> str:
        """The first line of the function's docstring: what the pass does."""
        return (self.function.__doc__ or "").strip().splitlines()[0]


@dataclass(frozen=True)
class Pipeline:
    """What one kind of artifact goes through: its passes, run in order on one record."""
    name: str
    passes: tuple

    def run(self, state):
        for step in self.passes:
            state = step.function(state)
        return state

    def __str__(self) -> str:
        width = max(len(step.name) for step in self.passes)
        return f"{self.name}:\n" + "\n".join(f"  {step.name:<{width}}  {step.doc}"
                                            for step in self.passes)


class Artifacts(NamedTuple):
    """What the passes ask :mod:`nbautodiff.pipeline.program` for: the primal of a function,
    the variants of a callee, and a function with some parameters merged
    (:func:`merge_repeated_arguments`)."""
    primal: Callable              # (func) -> Primal
    reverse_variant: Callable     # (func, argtypes, active, result_active, ...) -> Variant
    forward_variant: Callable     # (func, argtypes, duals, result_dual, width, fastmath)
    merged_callee: Callable       # (func, same) -> function or None


# ---- the primal: a function's source to a normalised function -----------------------------------

@dataclass(eq=False)
class PrimalState:
    """The record the passes of a primal hand on."""
    func: types.FunctionType          # the function (the request)
    artifacts: Artifacts
    fs: FunctionSource | None = None  # its source, inner functions lifted
    normalized: Normalized | None = None
    in_place: bool = False            # in-place operators store into arrays (IN_PLACE_PRIMAL)
    tree: ast.FunctionDef | None = None   # the function to render
    rendered: emit.Rendered | None = None


def lift(state: PrimalState) -> PrimalState:
    """Parse the source; lift inner functions and named lambdas into callees.

    (:mod:`nbautodiff.frontend.source`, :mod:`nbautodiff.frontend.lifting`)"""
    state.fs = lifting.lift(function_source(state.func))
    return state


def fence_source(state: PrimalState) -> PrimalState:
    """Refuse unsupported constructs, with their line.

    (:mod:`nbautodiff.frontend.fence`) In generated code (a derivative differentiated again)
    the error says so."""
    fs = state.fs
    try:
        fence.check(fs)
    except UnsupportedConstructError as error:
        if not fs.generated:
            raise
        raise UnsupportedConstructError(
            f"{error.message}: the generated derivative {fs.name} uses it, so it cannot be "
            "differentiated again yet", construct=error.construct, lineno=error.lineno,
            filename=error.filename, function=error.function) from None
    return state


def normalize_source(state: PrimalState) -> PrimalState:
    """Three-address form, every call resolved and annotated.

    Loops over indices, structured control flow, one name per binding
    (:mod:`nbautodiff.frontend.normalize`)."""
    state.normalized = normalize(state.fs)
    state.tree = state.normalized.tree
    return state


def merge_repeated_arguments(state: PrimalState) -> PrimalState:
    """Give ``g(y, y)`` a callee with those parameters made one.

    Calls that pass one array name for several parameters of a function that writes one of
    them (``g(y, y)``) call instead a version of the function with those parameters made one
    (``g__same(y)``, the later ones renamed to the first): its derivatives then see the
    aliasing, which a derivative of ``g`` itself, assuming distinct arrays, would not. A
    parameter that the function rebinds is left alone (then
    :mod:`nbautodiff.analysis.aliasing` refuses the call). Not in generated code."""
    if state.fs.generated:
        return state
    normalized, artifacts = state.normalized, state.artifacts
    for statement, _ in analysis_mod.walk_statements(normalized.tree.body):
        call = getattr(statement, "value", None)
        if not (isinstance(call, ast.Call) and anno.get(call, anno.KIND) == "user"
                and isinstance(anno.get(call, anno.TARGET), types.FunctionType)
                and not declarations.kind_of(anno.get(call, anno.TARGET))):
            continue
        names = [a.id if isinstance(a, ast.Name) else None for a in call.args]
        first = {}
        same = tuple(first.setdefault(n, k) if n is not None else k for k, n in enumerate(names))
        if same == tuple(range(len(names))) \
                or not artifacts.primal(anno.get(call, anno.TARGET)).writes:
            continue
        merged = artifacts.merged_callee(anno.get(call, anno.TARGET), same)
        if merged is None:
            continue
        binding = naming.unused(merged.__name__, lambda b: b in normalized.callees
                                and normalized.callees[b] is not merged)
        normalized.callees[binding] = merged
        call.func = ast.Name(id=binding, ctx=ast.Load())
        call.args = [a for k, a in enumerate(call.args) if same[k] == k]
        anno.set(call, anno.TARGET, merged)
    return state


def render_primal(state: PrimalState) -> PrimalState:
    """The function as source text, each line with the user's line it came from.

    (:func:`nbautodiff.emit.render`)"""
    note = " (in-place operators store)" if state.in_place else ""
    state.rendered = emit.render([state.tree],
                                 header=f"# primal of {state.fs.name}{note}, normalised by "
                                        "nbautodiff\nimport math\nimport numpy as np")
    return state


def store_in_place(state: PrimalState) -> PrimalState:
    """Make ``A op= ...`` store into the array.

    Each rebinding that ends ``A op= ...`` (``A = t`` annotated ``IN_PLACE``) written
    ``A = in_place(A, t)``: an array is updated in place as NumPy does, so that aliases, views
    and the caller see the update (a number is rebound). On a copy of the tree."""
    state.in_place = True
    tree = state.tree = copy_tree(state.normalized.tree)
    for statement, _ in analysis_mod.walk_statements(tree.body):
        if isinstance(statement, ast.Assign) and anno.get(statement, anno.IN_PLACE, False) \
                and isinstance(statement.targets[0], ast.Name):
            name = statement.targets[0].id
            statement.value = ast.Call(
                func=ast.Attribute(value=ast.Name(id=naming.ARRAY_MODULE, ctx=ast.Load()),
                                   attr="in_place", ctx=ast.Load()),
                args=[ast.Name(id=name, ctx=ast.Load()), statement.value], keywords=[])
            ast.fix_missing_locations(ast.copy_location(statement.value, statement))
    return state


# ---- a variant: a primal to the source of its derivative --------------------------------------

@dataclass(eq=False)
class VariantState:
    """The record the passes of a reverse or forward variant hand on: the request, then what
    each pass adds."""
    # the request
    mode: str                          # "reverse" or "forward"
    prim: Primal
    argtypes: tuple
    flags: list                        # per argument: active (reverse) or dual (forward)
    result_flag: bool                  # the result takes a seed (reverse) or has tangents
    artifacts: Artifacts
    fastmath: bool = False             # BLAS products and vector math (see fastmath_rewrite)
    writeback: bool = False            # reverse: the caller's arrays get the final contents
    keep_value: bool = True            # reverse: the primal result is computed and returned
    checkpoint: object = None          # reverse: a function-level checkpoint Schedule
    width: int = 1                     # forward: tangents per dual argument
    # what the passes add
    params: list = field(default_factory=list)
    types: dict = field(default_factory=dict)       # variable -> numba type
    result_type: object = None
    tree: ast.FunctionDef | None = None            # the copy of the normalised tree worked on
    differentiated: set = field(default_factory=set)   # the active (dual) parameters
    vector_math: bool = False                      # the tree calls kernels/vecmath
    analysis: object = None                        # analysis.activity.Analysis
    namespace: dict = field(default_factory=dict)  # bindings of the generated module
    name: str = ""                                 # the generated function's name
    callees: list = field(default_factory=list)    # (binding, primal's binding, request)
    data: dict = field(default_factory=dict)       # what the artifact keeps beside its source
    built: cache.Built | None = None

    @property
    def fs(self) -> FunctionSource:
        return self.prim.fs

    @property
    def forward(self) -> bool:
        return self.mode == "forward"

    def callee_writes(self, call: ast.Call) -> set[int]:
        """Positions of the arguments the function called by ``call`` writes."""
        return self.artifacts.primal(anno.get(call, anno.TARGET)).writes

    def callee_returns(self, call: ast.Call) -> dict | None:
        """{position: view kinds} of the arguments the result of the function called by
        ``call`` may be or view; None when unknown (a declared rule's function: any of them)."""
        return getattr(self.artifacts.primal(anno.get(call, anno.TARGET)), "returns", None)


def refuse_reverse_over_reverse(state: VariantState) -> VariantState:
    """Refuse reverse mode of a generated derivative (forward over reverse is the way)."""
    fs = state.fs
    if fs.generated and naming.is_derivative_name(fs.name):
        raise AutodiffError(f"reverse mode of the generated derivative {fs.name} is not "
                            "supported: differentiate it in forward mode (nad.hessian, "
                            "nad.jvp(nad.grad(f), ...), nad.jacfwd)", construct="reverse over reverse")
    return state


def infer_types(state: VariantState) -> VariantState:
    """Type every variable for the argument types.

    numba's inference, asked once (:mod:`nbautodiff.analysis.typeinfer`), its errors located in
    the user's code."""
    state.params, state.types, state.result_type = typed(state.prim, state.argtypes)
    return state


def differentiable_arguments(state: VariantState) -> VariantState:
    """Differentiate only floats and float arrays.

    In reverse mode an active argument of another type is a TypeError, in forward mode such an
    argument carries no tangent."""
    if state.forward:
        state.flags = [flag and typeinfer.is_differentiable(typ)
                       for flag, typ in zip(state.flags, state.argtypes)]
        return state
    for name, flag, typ in zip(state.params, state.flags, state.argtypes):
        if flag and not typeinfer.is_differentiable(typ):
            raise TypeError(f"argument '{name}' of {state.fs.name}() has type {typ}, which "
                            "cannot be differentiated (use a float or a float32/float64 array)")
    return state


def fence_arrays(state: VariantState) -> VariantState:
    """Refuse the array constructs the transforms cannot follow, now that types are known.

    (:mod:`nbautodiff.analysis.arrayfence`) Works on a copy of the normalised tree from here on;
    the result is differentiated only where it holds floats."""
    normalized = state.prim.normalized
    state.tree = copy_tree(normalized.tree)
    arrayfence.check(normalized, state.types, in_place_shared=state.forward,
                     callee_returns=state.callee_returns, callee_writes=state.callee_writes,
                     tree=state.tree)
    state.types = dict(state.types)
    aliasing.copy_overlapping_stores(state.tree, state.types, state.callee_returns)
    state.result_flag = state.result_flag and tuples.has_differentiable(state.result_type)
    state.differentiated = {p for p, flag in zip(state.params, state.flags) if flag}
    return state


def split_tuples(state: VariantState) -> VariantState:
    """Split each tuple variable into one variable per element.

    (:mod:`nbautodiff.analysis.tuples`)"""
    tuples.split(state.tree, state.types, state.fs)
    return state


def fastmath_rewrite(state: VariantState) -> VariantState:
    """With ``fastmath``: BLAS for products of rows, vector math functions.

    Products of rows computed by BLAS (:mod:`nbautodiff.transforms.raising`) and math functions
    by :mod:`nbautodiff.kernels.vecmath` (:mod:`nbautodiff.transforms.vector_calls`), before the tree is
    differentiated."""
    if state.fastmath:
        state.types = dict(state.types)
        raising.raise_products(state.tree, state.types)
        state.vector_math = vector_calls.substitute(state.tree, state.types) > 0
    return state


def analyse_activity(state: VariantState) -> VariantState:
    """Find the active values, and what the reverse sweep needs and how it gets it back.

    (:mod:`nbautodiff.analysis.activity`)"""
    state.analysis = analysis_mod.analyse(state.tree, state.types, state.differentiated,
                                          state.result_flag, state.callee_writes,
                                          **({"in_place_stores": True} if state.forward else {}))
    return state


def refuse_opaque_calls(state: VariantState) -> VariantState:
    """Refuse a library call without a derivative rule whose value is not constant.

    With its line (:func:`nbautodiff.analysis.activity.opaque_call_refusal`)."""
    found = analysis_mod.opaque_call_refusal(state.tree, state.analysis)
    if found is not None:
        statement, reason = found
        raise state.fs.error(f"{reason}", statement, construct=ast.unparse(statement.value.func),
                             kind=UnsupportedConstructError)
    return state


def name_variant(state: VariantState) -> VariantState:
    """Name the generated function after its signature (``f__rev_ac_r``, ``f__fwd_dc_r``).

    (:mod:`nbautodiff.naming`)"""
    state.namespace = dict(state.prim.namespace)
    if state.forward:
        code = "".join("d" if flag else "c" for flag in state.flags) + \
            ("_r" if state.result_flag else "") + \
            (f"_w{state.width}" if state.width > 1 else "") + ("_fm" if state.fastmath else "")
        state.name = naming.forward_name(state.fs.name, code)
    else:
        code = signature_code(state.argtypes, state.flags, state.result_flag, state.keep_value)
        state.name = naming.reverse_name(state.fs.name, code + ("_ckpt" if state.checkpoint
                                                                else "")
                                         + ("_fm" if state.fastmath else ""))
    return state


def differentiate_reverse(state: VariantState) -> VariantState:
    """Write the reverse-mode function, calling its callees' reverse variants.

    (:mod:`nbautodiff.transforms.reverse.transform`), with its docstring and what loading it
    needs (calling convention, callees)."""
    fs, types_, an = state.fs, state.types, state.analysis
    fastmath = state.fastmath

    def callee_variant(call: ast.Call, seeded: bool) -> reverse_mode.CalleeVariant:
        arg_types = tuple(atom_type(arg, types_) for arg in call.args)
        flags = [isinstance(arg, ast.Name) and an.is_active(arg.id) and
                 typeinfer.is_differentiable(t) for arg, t in zip(call.args, arg_types)]
        callee = state.artifacts.reverse_variant(anno.get(call, anno.TARGET), arg_types, flags,
                                                 seeded, writeback=False, keep_value=False,
                                                 fastmath=fastmath)
        binding = _bind(state.namespace, callee.name, callee.dispatcher, state.name)
        state.callees.append((binding, _callee_binding(state.prim, call),
                              ("reverse", arg_types, flags, seeded, fastmath)))
        seeds = tuples.seeded_leaves(callee.result_type) \
            if tuples.is_tuple(callee.result_type) else None
        return reverse_mode.CalleeVariant(binding, callee.shadows, callee.adjoint_positions,
                                          seeds)

    tree = reverse_mode.transform(state.tree, an, fs, active_params=state.differentiated,
                                  result_active=state.result_flag, writeback=state.writeback,
                                  keep_value=state.keep_value, name=state.name,
                                  callee_variant=callee_variant,
                                  callee_writes=state.callee_writes,
                                  checkpoint=state.checkpoint)
    anno.set(tree, anno.DOC, f"Reverse mode of {fs.name}: returns (result, adjoints of active "
             f"scalar arguments); active arguments: "
             f"{', '.join(sorted(state.differentiated)) or 'none'}.")
    state.tree = tree
    active, argtypes = state.flags, state.argtypes
    state.data = {
        "callees": state.callees,
        "shadows": [flag and typeinfer.is_array(t) for flag, t in zip(active, argtypes)],
        "adjoint_positions": [i for i, (flag, t) in enumerate(zip(active, argtypes))
                              if flag and not typeinfer.is_array(t)],
        "result_type": state.result_type, "checkpointed": anno.get(tree, anno.CHECKPOINTED),
        "vector_math": state.vector_math}
    return state


def differentiate_forward(state: VariantState) -> VariantState:
    """Write the forward-mode function, calling its callees' forward variants.

    (:mod:`nbautodiff.transforms.forward`), with its docstring and what loading it needs."""
    fs, width, fastmath = state.fs, state.width, state.fastmath

    def callee_variant(call: ast.Call, flags: list[bool], dual_result: bool):
        arg_types = tuple(atom_type(arg, state.types) for arg in call.args)
        callee = state.artifacts.forward_variant(anno.get(call, anno.TARGET), arg_types, flags,
                                                 dual_result, width, fastmath)
        binding = _bind(state.namespace, callee.name, callee.dispatcher, state.name)
        state.callees.append((binding, _callee_binding(state.prim, call),
                              ("forward", arg_types, flags, dual_result, width, fastmath)))
        return forward_mode.CalleeForward(binding, callee.duals, callee.result_dual)

    tree = forward_mode.transform(state.tree, state.analysis, fs,
                                  dual_params=state.differentiated,
                                  result_dual=state.result_flag, width=width, name=state.name,
                                  callee_variant=callee_variant)
    duals = ", ".join(p for p in state.params if p in state.differentiated) or "none"
    anno.set(tree, anno.DOC, f"Forward mode of {fs.name} ({width} direction{'s' * (width > 1)}): "
             f"returns {'(result, tangents...)' if state.result_flag else 'the result'}; dual "
             f"arguments: {duals}.")
    state.tree = tree
    state.data = {"callees": state.callees, "duals": state.flags,
                  "result_dual": state.result_flag, "result_type": state.result_type,
                  "vector_math": state.vector_math}
    return state


def render_variant(state: VariantState) -> VariantState:
    """The generated function as source text, with what loading it needs.

    A :class:`nbautodiff.cache.Built`: the text and its ``data``: the ``callees`` (binding, the
    callee's binding in the primal, the request of its variant), the calling convention, the
    user's line of each line."""
    rendered = emit.render([state.tree], header=f"# {state.mode} mode of {state.fs.name}, "
                                                "generated by nbautodiff\n"
                                                "import math\nimport numpy as np",
                           user_text=None if state.fs.generated else state.fs.line_text)
    state.built = cache.Built(state.name, rendered.text,
                              dict(state.data, name=state.name, user_lines=rendered.user_lines))
    return state


# ---- the pipelines ----------------------------------------------------------------------------

PRIMAL = Pipeline("primal", (
    Pass("lift", lift),
    Pass("fence", fence_source),
    Pass("normalize", normalize_source),
    Pass("merge repeated arguments", merge_repeated_arguments),
    Pass("render", render_primal),
))

IN_PLACE_PRIMAL = Pipeline("in-place primal (from a primal's normalised tree)", (
    Pass("store in place", store_in_place),
    Pass("render", render_primal),
))

_VARIANT = (
    Pass("types", infer_types),
    Pass("differentiable arguments", differentiable_arguments),
    Pass("array fence", fence_arrays),
    Pass("tuples", split_tuples),
    Pass("fastmath", fastmath_rewrite),
    Pass("activity", analyse_activity),
    Pass("opaque calls", refuse_opaque_calls),
    Pass("name", name_variant),
)

REVERSE = Pipeline("reverse variant (from a primal)", (
    Pass("no reverse over reverse", refuse_reverse_over_reverse),
    *_VARIANT,
    Pass("reverse mode", differentiate_reverse),
    Pass("render", render_variant),
))

FORWARD = Pipeline("forward variant (from a primal)", (
    *_VARIANT,
    Pass("forward mode", differentiate_forward),
    Pass("render", render_variant),
))

PIPELINES = (PRIMAL, IN_PLACE_PRIMAL, REVERSE, FORWARD)


# ---- helpers of the passes (and of the other builders of artifacts) ----------------------------

def types_of(prim: Primal, argtypes: tuple) -> tuple[dict, object]:
    """Variable types of ``prim`` for ``argtypes``, numba errors turned into located ones.

    A float ``range`` bound is a TypeError, as in Python (numba would truncate it)."""
    try:
        found, result_type = typeinfer.infer(prim.py_func, argtypes)
    except typeinfer.TypingError as exc:
        raise _located(prim, exc) from None
    _check_range_bounds(prim, found)
    return found, result_type


def typed(prim: Primal, argtypes: tuple) -> tuple[list[str], dict, object]:
    """(parameter names, variable types with the parameters' as given, result type)."""
    params = parameters(prim.normalized.tree)
    found, result_type = types_of(prim, argtypes)
    found.update(zip(params, argtypes))
    return params, found, result_type


def _check_range_bounds(prim: Primal, found: dict) -> None:
    bounds_by_line = {loop.lineno: loop.iter for loop, _ in
                      analysis_mod.walk_statements(prim.fs.tree.body)
                      if isinstance(loop, ast.For) and isinstance(loop.iter, ast.Call)}
    for loop, _ in analysis_mod.walk_statements(prim.normalized.tree.body):
        if not (isinstance(loop, ast.For) and isinstance(loop.iter, ast.Call)):
            continue
        for bound in loop.iter.args:
            if isinstance(bound, ast.Name) and isinstance(found.get(bound.id), nbtypes.Float):
                original = bounds_by_line.get(loop.lineno, loop.iter)
                culprits = [n.id for n in ast.walk(original) if isinstance(n, ast.Name)
                            and isinstance(found.get(n.id), nbtypes.Float)
                            and n.id in prim.fs.parameters]
                which = f"argument '{culprits[0]}' is a float" if culprits else "it has a float"
                raise TypeError(f"{prim.fs.name}(): range() bounds must be integers, but "
                                f"in '{ast.unparse(original)}' (line {loop.lineno}) {which}; "
                                "pass an int (or convert with int(...))")


def _located(prim: Primal, exc: Exception) -> AutodiffError:
    generated = prim.path.rsplit("/", 1)[-1]
    lines = [prim.rendered.user_line(n) for path, n in numba_locations(exc)
             if path.endswith(generated)]
    line = lines[-1] if lines else None
    return prim.fs.error(f"numba cannot compile this code: {numba_reason(exc)}",
                         types.SimpleNamespace(lineno=line) if line else None,
                         construct="numba typing")


def signature_code(argtypes: tuple, active: list[bool], result_active: bool,
                   keep_value: bool = True) -> str:
    """The signature part of a reverse variant's name: ``ac_r`` (arguments active/constant,
    result active), ``_adjonly`` without the primal result."""
    code = "".join("a" if flag else "c" for flag in active)
    return code + ("_r" if result_active else "") + ("" if keep_value else "_adjonly")


def copy_tree(tree: ast.FunctionDef) -> ast.FunctionDef:
    """A deep copy that keeps the annotations normalisation put on calls."""
    return copy.deepcopy(tree)


def atom_type(node: ast.expr, found: dict):
    """The numba type of an atom (a name, a constant, or a tuple display of atoms)."""
    if isinstance(node, ast.Name):
        return found[node.id]
    if isinstance(node, ast.Tuple):
        return nbtypes.BaseTuple.from_types([atom_type(e, found) for e in node.elts])
    return numba.typeof(node.value)


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


def describe() -> str:
    """The pipelines, one pass a line (what ``python -m nbautodiff.pipeline`` prints)."""
    return "\n\n".join(str(pipeline) for pipeline in PIPELINES)
