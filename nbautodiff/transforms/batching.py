"""The batching transform: one compiled function that calls a compiled function once per slice.

:func:`batched_variant` generates ``f__batch_<code>`` as Python source (a real file, via
:mod:`nbautodiff.cache`) and compiles it with ``numba.njit``: a loop over the batch (``numba.prange`` when
parallel) whose body calls the compiled callee on the slices of the batched arguments and stores
each result in the batch's result arrays. For a callee without loops the batch loop is the only,
hence innermost, loop once LLVM has inlined the callee, so it vectorises where the arithmetic
allows. The callee is compiled with ``inline='always'`` (numba inlines it into the loop body
before LLVM sees it), which keeps that true for callees too large for LLVM's own inliner (and
unrolls Rosenbrock of 8 elements: 3.7x faster than LLVM's inlining alone, see
``benchmarks/batching.py``). With ``parallel=True`` the plain callee is called: the prange body
becomes a function of its own anyway, and numba's parfor array analysis fails on some inlined
generated reverse code.

A result that holds arrays needs their shape before the result can be allocated: the first
slice is then evaluated before the loop (a batch of such a function has at least one slice).
Variants are cached per callee, argument types, axes and parallelism.

For compiled callers and the differentiating transforms (``grad`` of code calling a batched
function): :func:`stand_in` is a Python function that numba compiles, through an ``overload``,
as the batched variant for the types of each call, and :func:`differentiable_function` the
same code calling the user's own function per slice, which the transforms differentiate.
"""
from __future__ import annotations

import ast
import copy
import threading
from dataclasses import dataclass

import numba
import numpy as np
from numba import types as nbtypes
from numba.extending import overload

from nbautodiff import annotations as anno, cache, emit, memo, naming
from nbautodiff.analysis import typeinfer
from nbautodiff.codegen import parameters
from nbautodiff.errors import BatchError, NotLaneable
from . import lanes, vector_calls

_lock = threading.RLock()
_variants = memo.memo("batched variants")       # (callee, request...) -> BatchedVariant
_inlined = memo.memo("inlined callees")         # (callee,) -> its inline='always' dispatcher
_MODULES = ("math", "np", "numba")          # names the generated module binds


LAYOUTS = ("auto", "inner", "outer")


@dataclass(eq=False)
class BatchedVariant:
    """A batched function compiled for one signature."""
    name: str
    source: str
    path: str
    dispatcher: object
    result_type: object          # the type of one call's result (of one slice)
    first_outside: bool          # slice 0 is evaluated before the loop (array results)
    out_axes: tuple              # per leaf of the result (depth-first), its batch axis
    layout: str = "outer"        # "inner" (lanes, see .lanes) or "outer" (a call per slice)
    layout_note: str = ""        # why "auto" kept the outer layout


def slice_type(typ, axis: int | None, contiguous: bool = False):
    """The numba type of ``x[..., i]`` (``i`` at ``axis``) for ``x`` of type ``typ``
    (``contiguous``: of a C-contiguous copy of it)."""
    if axis is None:
        return typ
    if typ.ndim == 1:
        return typ.dtype
    layout = "C" if contiguous or axis == 0 and typ.layout == "C" else "A"
    return nbtypes.Array(typ.dtype, typ.ndim - 1, layout, readonly=not typ.mutable)


def leaves(typ) -> list:
    """The non-tuple types in ``typ``, depth first (``[typ]`` for one that is not a tuple)."""
    if isinstance(typ, nbtypes.BaseTuple):
        return [leaf for element in typ.types for leaf in leaves(element)]
    return [typ]


def batched_variant(callee, argtypes: tuple, in_axes: tuple, out_axes, parallel: bool,
                    label: str, checks: bool = False, layout: str = "outer", primal=None,
                    vector_math: bool = False, staged: tuple = (),
                    contiguous: tuple = ()) -> BatchedVariant:
    """The batched variant of ``callee`` (a numba dispatcher with a ``py_func``) for batched
    argument types ``argtypes``; ``in_axes[k]`` is the batch axis of argument k (an int within
    its rank, or None: passed whole). ``out_axes``: an int for every result leaf or a tuple with
    one entry per element of a tuple result. ``label`` names the function in errors. With
    ``checks`` the code raises a ValueError for batch sizes that differ, or a batch of size 0
    where the result has arrays (for compiled callers; a Python caller checks first).

    ``layout``: "outer" calls ``callee`` once per slice; "inner" runs the statements of
    ``primal`` (the :class:`nbautodiff.pipeline.program.Primal` of ``callee``) with the batch loop innermost (see
    :mod:`nbautodiff.transforms.lanes`; ``vector_math`` replaces math functions in its lane loops by
    :mod:`nbautodiff.kernels.vecmath`), a BatchError naming the construct where it cannot; "auto" is
    "inner" where it can, else "outer" with the reason in ``layout_note``. ``staged``: positions
    of batched arrays the inner layout reads from a lane-major copy of each block (small slices
    batched along another axis than the last, which the function does not write).
    ``contiguous``: positions of batched arrays whose slices are passed as C-contiguous copies
    (arrays the function does not write, whose slices' layout numba cannot compile it for,
    see :func:`nbautodiff.api.batch.BatchedFunction._primal_variant`); the outer layout only."""
    if layout not in LAYOUTS:
        raise BatchError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if layout == "inner" and primal is None:
        raise BatchError(f"layout='inner' batches plain functions; {label} is a derivative: "
                         "use layout='outer' or 'auto'", construct="inner batch layout")
    inner = layout != "outer" and primal is not None
    key = (callee, tuple(argtypes), tuple(in_axes), out_axes, parallel, checks,
           layout if primal is not None else "outer", vector_math if inner else False,
           tuple(staged) if inner else (), tuple(contiguous))
    with _lock:
        if not cache.memoized(_variants, key):
            _variants[key] = _chosen(callee, tuple(argtypes), tuple(in_axes), out_axes, parallel,
                                     label, checks, layout, primal, vector_math, tuple(staged),
                                     tuple(contiguous))
        return _variants[key]


def _chosen(callee, argtypes, in_axes, out_axes, parallel, label, checks, layout, primal,
            vector_math, staged, contiguous=()) -> BatchedVariant:
    note = ""
    if contiguous and primal is not None and layout != "outer":       # ("inner": refused)
        note = ("outer layout: numba compiles the function for C-contiguous slices only, which "
                "the outer layout passes as copies")
    elif layout != "outer" and primal is not None:
        try:
            return _build_inner(primal, argtypes, in_axes, out_axes, parallel, label, checks,
                                vector_math, staged)
        except NotLaneable as why:
            if layout == "inner":
                raise BatchError(f"{label} cannot be batched with layout='inner': {why.reason}",
                                 construct="inner batch layout", lineno=why.lineno,
                                 filename=primal.fs.filename, function=primal.fs.name) from None
            note = f"outer layout: {why}"
    elif layout == "auto":
        note = "outer layout: a derivative's generated code is batched a call per slice"
    variant = _build(callee, argtypes, in_axes, out_axes, parallel, label, checks, contiguous)
    variant.layout_note = note
    return variant


def _inline_always(callee):
    """A dispatcher of ``callee``'s Python function that numba inlines into its callers."""
    if (callee,) not in _inlined:
        _inlined[(callee,)] = numba.njit(callee.py_func, inline="always")
    return _inlined[(callee,)]


def _build(callee, argtypes, in_axes, out_axes, parallel, label, checks,
           contiguous=()) -> BatchedVariant:
    key = cache.key("batch", callee, argtypes, in_axes, out_axes, parallel, checks,
                    *((("contiguous",) + tuple(contiguous),) if contiguous else ()))
    entry = cache.artifact(key, lambda: _built(callee, argtypes, in_axes, out_axes, parallel,
                                               label, checks, contiguous))
    data = entry.data
    namespace = {"np": np, "numba": numba,
                 naming.BATCH_CALLEE: callee if parallel else _inline_always(callee)}
    dispatcher = entry.njit(entry.load(namespace)[data["name"]], parallel=parallel)
    return BatchedVariant(data["name"], entry.text, entry.source_path, dispatcher,
                          data["result_type"], data["first_outside"], data["axes"])


def _built(callee, argtypes, in_axes, out_axes, parallel, label, checks,
           contiguous=()) -> cache.Built:
    """The source of a batched variant, and what loading it needs."""
    name, text, result_type, axes = _generated(callee, argtypes, in_axes, out_axes, parallel,
                                               label, checks, contiguous)
    first_outside = any(typeinfer.is_array(leaf) for leaf in leaves(result_type))
    return cache.Built(name, text, {"name": name, "result_type": result_type,
                                    "first_outside": first_outside, "axes": axes})


def _build_inner(prim, argtypes, in_axes, out_axes, parallel, label, checks,
                 vector_math, staged) -> BatchedVariant:
    """The inner layout of ``prim`` for ``argtypes`` compiled (eagerly: a function numba
    cannot compile in this layout is reported as :class:`nbautodiff.errors.NotLaneable`)."""
    key = cache.key("batch-inner", prim.key, argtypes, in_axes, out_axes, parallel, checks,
                    vector_math, staged, lanes.BLOCK, origin=prim.fs.func)
    entry = cache.artifact(key, lambda: _inner_built(prim, argtypes, in_axes, out_axes,
                                                     parallel, label, checks, vector_math,
                                                     staged))
    data = entry.data
    namespace = {name: value for name, value in prim.namespace.items()
                 if not (name.startswith("__") and name.endswith("__"))}
    namespace.update({"np": np, "numba": numba})
    if vector_math:
        namespace[naming.VECTOR_MATH] = vector_calls.module()
    dispatcher = entry.njit(entry.load(namespace)[data["name"]], parallel=parallel)
    try:
        dispatcher.compile(tuple(argtypes))
    except numba.core.errors.NumbaError as error:
        first = next((line for line in str(error).splitlines() if line.strip()), str(error))
        raise NotLaneable(f"numba cannot compile it: {first}") from None
    return BatchedVariant(data["name"], entry.text, entry.source_path, dispatcher,
                          data["result_type"], False, data["axes"], layout="inner")


def _inner_built(prim, argtypes, in_axes, out_axes, parallel, label, checks,
                 vector_math, staged) -> cache.Built:
    """The source of the inner layout (see :mod:`nbautodiff.transforms.lanes`): blocks of lanes, ``prange`` over
    blocks when ``parallel``."""
    element_types = tuple(slice_type(t, a) for t, a in zip(argtypes, in_axes))
    types, result_type = typeinfer.infer(prim.py_func, element_types)
    result_type = nbtypes.unliteral(result_type)
    if any(typeinfer.is_array(leaf) for leaf in leaves(result_type)):
        raise NotLaneable("it returns an array (the inner layout batches scalar results)")
    axes = _leaf_out_axes(result_type, out_axes, label)
    tree = prim.normalized.tree
    params = parameters(tree)
    if parameter_names(params) != params:
        raise NotLaneable("a parameter is named like a module the generated code uses")
    batched = {p: (-1 if t.ndim == 1 else a) for p, t, a in zip(params, argtypes, in_axes)
               if a is not None}
    ranks = {p: t.ndim for p, t, a in zip(params, argtypes, in_axes) if a is not None}
    shared = [params[k] for k in sorted(prim.writes)
              if in_axes[k] is None and typeinfer.is_array(argtypes[k])]
    leaf_types = [t for t in leaves(result_type) if t != nbtypes.none]
    outs = [f"{naming.BATCH_OUT}{k}" for k in range(len(leaf_types))]
    body, lane_types, copied = lanes.lane_body(
        copy.deepcopy(tree), types, batched, ranks, shared, vector_math,
        _leaf_paths(result_type), outs, frozenset(params[k] for k in staged))
    staged = [k for k in staged if params[k] in copied]
    name = naming.batch_name(prim.fs.name, _signature_code(in_axes, axes, parallel) + "_in"
                             + "".join(f"_s{k}" for k in staged)
                             + ("_vm" if vector_math else "") + ("_chk" if checks else ""))
    n, block = naming.BATCH_SIZE, lanes.BLOCK
    prologue = _prologue(params, in_axes, label if checks else None)
    for out, typ in zip(outs, leaf_types):
        prologue.append(f"{out} = np.empty({n}, {_dtype_source(typ)})")
    allocations = [f"{naming.lane_array(v)} = np.empty({block}, {_dtype_source(t)})"
                   for v, t in lane_types.items()]
    copies = []
    for k in staged:
        allocation, fill = lanes.staging(params[k], in_axes[k], argtypes[k].ndim,
                                         _dtype_source(argtypes[k].dtype))
        allocations.append(allocation)
        copies += fill
    loop = "numba.prange" if parallel else "range"
    head = (prologue + ([] if parallel else allocations)
            + [f"for {naming.BATCH_BLOCK} in {loop}(({n} + {block - 1}) // {block}):"])
    per_block = [f"{naming.BATCH_START} = {naming.BATCH_BLOCK} * {block}",
                 f"{naming.BATCH_LANES} = min({block}, {n} - {naming.BATCH_START})"] + \
        (allocations if parallel else []) + copies
    function = ast.parse(f"def {name}({', '.join(params)}):\n" + "".join(
        f"    {line}\n" for line in head) + "".join(f"        {line}\n" for line in per_block)
        + f"    return {_rebuilt(result_type, iter(outs))}\n").body[0]
    block_loop = function.body[-2]           # (then the return)
    block_loop.body.extend(body)
    anno.set(function, anno.DOC, f"Batched {prim.fs.name} (inner layout: lanes of {block} slices): "
             f"in_axes {tuple(in_axes)}, results along out_axes {axes}.")
    rendered = emit.render([ast.fix_missing_locations(function)],
                           header=f"# batched {prim.fs.name} (inner layout), generated by "
                                  "nbautodiff\nimport math\nimport numba\nimport numpy as np")
    return cache.Built(name, rendered.text, {"name": name, "result_type": result_type,
                                             "axes": axes})


def _dtype_source(typ) -> str:
    typ = nbtypes.unliteral(typ)
    return "np.bool_" if typ == nbtypes.boolean else f"np.{typ}"


def differentiable_function(target, callee, argtypes: tuple, in_axes: tuple, out_axes,
                            label: str):
    """The batched code of :func:`batched_variant` as a plain Python function for the
    differentiating transforms: each slice calls ``target``, the function the user batched (or
    its wrapper of :mod:`nbautodiff.frontend.declarations`), whose source and declared rules the transforms then follow,
    and the batch loop is a ``range``: its reverse sweep adds every slice's adjoint into the
    adjoints of the arguments that are not batched, which would race across threads."""
    key = (callee, "differentiable", target, tuple(argtypes), tuple(in_axes), out_axes)
    with _lock:
        if key not in _variants:
            name, text, _, _ = _generated(callee, tuple(argtypes), tuple(in_axes), out_axes,
                                          False, label, checks=True)
            namespace = {"np": np, "numba": numba, naming.BATCH_CALLEE: target}
            _variants[key] = emit.load(emit.Rendered(text), name, namespace)[1][name]
        return _variants[key]


def _generated(callee, argtypes, in_axes, out_axes, parallel, label, checks,
               contiguous=()) -> tuple:
    """(name, source, result type of one slice, out axis per result leaf) of the batched code;
    the slices of the arguments at positions ``contiguous`` are C-contiguous copies."""
    element_types = tuple(slice_type(t, a, k in contiguous)
                          for k, (t, a) in enumerate(zip(argtypes, in_axes)))
    _, result_type = typeinfer.infer(callee.py_func, element_types)
    result_type = nbtypes.unliteral(result_type)
    axes = _leaf_out_axes(result_type, out_axes, label)
    params = parameter_names(parameters(callee.py_func)[:len(argtypes)])
    name = naming.batch_name(callee.py_func.__name__, _signature_code(in_axes, axes, parallel)
                             + "".join(f"_c{k}" for k in contiguous)
                             + ("_chk" if checks else ""))
    lines = _body(params, in_axes, result_type, axes, parallel, label if checks else None,
                  contiguous)
    doc = (f"Batched {callee.py_func.__name__}: one call per slice along in_axes "
           f"{tuple(in_axes)}, results stacked along out_axes {axes}.")
    text = (f"# batched {callee.py_func.__name__}, generated by nbautodiff\n"
            "import math\nimport numba\nimport numpy as np\n\n\n"
            f"def {name}({', '.join(params)}):\n    {doc!r}\n"
            + "".join(f"    {line}\n" for line in lines))
    return name, text, result_type, axes


def parameter_names(names) -> list[str]:
    """The parameters of batched code for the function parameters ``names`` (those that
    would hide a module the generated code uses get a suffix)."""
    return [p if p not in _MODULES else f"{p}_arg" for p in names]


def stand_in(name: str, params: list[str], batched, implementation, parallel: bool):
    """A Python function ``name(params)`` standing for the batched function ``batched``, as
    a callee of compiled code: called from Python it calls ``batched``; numba compiles a call
    to it as the Python function that ``implementation(argtypes)`` returns for the argument
    types of the call (numba's ``overload``, whose typing function must have the same
    parameters, hence generated too)."""
    joined = ", ".join(parameter_names(params))
    text = (f"# stand-in of {name}, generated by nbautodiff\n\n\n"
            f"def {name}({joined}):\n    return {naming.BATCH_CALLEE}({joined})\n\n\n"
            f"def {name}_typed({joined}):\n    return {naming.BATCH_TYPED}(({joined},))\n")
    namespace = {naming.BATCH_CALLEE: batched, naming.BATCH_TYPED: implementation}
    _, namespace = emit.load(emit.Rendered(text), name, namespace)
    overload(namespace[name], jit_options={"parallel": parallel})(namespace[f"{name}_typed"])
    typeinfer.refresh()
    return namespace[name]


def resolved_in_axes(argtypes: tuple, in_axes: tuple, names: list[str], label: str) -> tuple:
    """``in_axes`` made non-negative for arguments of types ``argtypes``; a BatchError naming
    the argument that is batched but not an array, or whose rank the axis exceeds."""
    resolved = []
    for typ, axis, name in zip(argtypes, in_axes, names):
        if axis is None:
            resolved.append(None)
            continue
        if not typeinfer.is_array(typ):
            raise BatchError(f"argument '{name}' of {label} is batched (in_axes {axis}) but is "
                             f"a {typ}: pass a 1-D array of its values, or None in in_axes to "
                             "pass it whole")
        if not -typ.ndim <= axis < typ.ndim:
            raise BatchError(f"in_axes {axis} is out of range for argument '{name}' of {label}, "
                             f"which has {typ.ndim} dimension{'s' * (typ.ndim != 1)}")
        resolved.append(axis % typ.ndim)
    return tuple(resolved)


def _signature_code(in_axes, axes, parallel) -> str:
    code = "".join("n" if a is None else str(a) for a in in_axes)
    return f"{code}_o{''.join(map(str, axes))}" + ("_par" if parallel else "")


def _leaf_out_axes(result_type, out_axes, label: str) -> tuple:
    """One batch axis per leaf of ``result_type``, checked against the leaf's rank."""
    if isinstance(out_axes, tuple):
        if not isinstance(result_type, nbtypes.BaseTuple) or \
                len(out_axes) != len(result_type.types):
            count = len(result_type.types) if isinstance(result_type, nbtypes.BaseTuple) else 1
            raise BatchError(f"out_axes {out_axes} has {len(out_axes)} entries but {label} "
                             f"returns {count} value{'s' * (count != 1)} ({result_type})")
        per_element = [_leaf_out_axes(t, a, f"{label} (result element {k})")
                       for k, (t, a) in enumerate(zip(result_type.types, out_axes))]
        return tuple(a for axes in per_element for a in axes)
    resolved = []
    for k, leaf in enumerate(leaves(result_type)):
        if leaf == nbtypes.none:
            continue
        rank = leaf.ndim + 1 if typeinfer.is_array(leaf) else 1
        if not -rank <= out_axes < rank:
            where = f" (result element {k})" if isinstance(result_type, nbtypes.BaseTuple) else ""
            raise BatchError(f"out_axes {out_axes} is out of range for the result of {label}"
                             f"{where}: batched, it has {rank} dimension{'s' * (rank != 1)}")
        resolved.append(out_axes % rank)
    return tuple(resolved)


def _index(name: str, axis: int, index: str) -> str:
    """Source of ``name``'s slice ``index`` along ``axis``: ``A[i]``, ``A[:, i]``..."""
    return f"{name}[{':, ' * axis}{index}]"


def _body(params, in_axes, result_type, axes, parallel, label, contiguous=()) -> list[str]:
    """The lines of the batched function, with the batch checks when ``label`` (the function
    as their messages name it) is given; the slices of the arguments at positions
    ``contiguous`` are passed as C-contiguous copies (``np.ascontiguousarray``)."""
    n, i, first = naming.BATCH_SIZE, naming.BATCH_INDEX, naming.BATCH_FIRST
    lines = _prologue(params, in_axes, label)

    def call(index: str) -> str:
        args = [p if a is None else _index(p, a, index) for p, a in zip(params, in_axes)]
        args = [f"np.ascontiguousarray({arg})" if k in contiguous else arg
                for k, arg in enumerate(args)]
        return f"{naming.BATCH_CALLEE}({', '.join(args)})"

    leaf_types = [t for t in leaves(result_type) if t != nbtypes.none]
    outs = [f"{naming.BATCH_OUT}{k}" for k in range(len(leaf_types))]
    first_outside = any(typeinfer.is_array(t) for t in leaf_types)
    paths = _leaf_paths(result_type)
    start = "0"
    if first_outside and label:
        lines += _raise_if(f"{n} == 0", f"batch of {label}: a function returning an array "
                           "needs a batch of at least one slice")
    if first_outside:
        lines.append(f"{first} = {call('0')}")
        start = "1"
    for out, typ, axis, path in zip(outs, leaf_types, axes, paths):
        dtype = _dtype_source(typ.dtype if typeinfer.is_array(typ) else typ)
        if typeinfer.is_array(typ):
            shape = [f"{first}{path}.shape[{d}]" for d in range(typ.ndim)]
            shape.insert(axis, n)
            lines.append(f"{out} = np.empty(({', '.join(shape)},), {dtype})")
            lines.append(f"{_index(out, axis, '0')} = {first}{path}")
        else:
            lines.append(f"{out} = np.empty({n}, {dtype})")
            if first_outside:
                lines.append(f"{out}[0] = {first}{path}")
    loop = "numba.prange" if parallel else "range"
    bounds = n if start == "0" else f"{start}, {n}"
    lines.append(f"for {i} in {loop}({bounds}):")
    if not leaf_types:
        lines.append(f"    {call(i)}")
        lines.append("return None")
        return lines
    result = naming.CALL_RESULT
    if isinstance(result_type, nbtypes.BaseTuple):
        lines.append(f"    {result} = {call(i)}")
        for out, axis, path in zip(outs, axes, paths):
            lines.append(f"    {_index(out, axis, i)} = {result}{path}")
    else:
        lines.append(f"    {_index(outs[0], axes[0], i)} = {call(i)}")
    lines.append(f"return {_rebuilt(result_type, iter(outs))}")
    return lines


def _prologue(params, in_axes, label) -> list[str]:
    """The lines reading the batch size, and checking it when ``label`` is given."""
    n = naming.BATCH_SIZE
    batched = [(p, a) for p, a in zip(params, in_axes) if a is not None]
    lines = [f"{n} = {batched[0][0]}.shape[{batched[0][1]}]"]
    for param, axis in batched[1:] if label else ():
        lines += _raise_if(f"{param}.shape[{axis}] != {n}", f"batch of {label}: argument "
                           f"'{param}' does not have the batch size of '{batched[0][0]}'")
    return lines


def _raise_if(condition: str, message: str) -> list[str]:
    return [f"if {condition}:", f"    raise ValueError({message!r})"]


def _leaf_paths(typ, path: str = "") -> list[str]:
    """Source suffixes (``[0][1]``) reaching each non-None leaf of ``typ``."""
    if isinstance(typ, nbtypes.BaseTuple):
        return [p for k, t in enumerate(typ.types) for p in _leaf_paths(t, f"{path}[{k}]")]
    return [] if typ == nbtypes.none else [path]


def _rebuilt(typ, outs) -> str:
    """Source of the batched result: ``typ``'s structure with each leaf's output array."""
    if isinstance(typ, nbtypes.BaseTuple):
        parts = [_rebuilt(t, outs) for t in typ.types]
        return f"({', '.join(parts)}{',' if len(parts) == 1 else ''})"
    return "None" if typ == nbtypes.none else next(outs)
