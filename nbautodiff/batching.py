"""The batching transform: one compiled function that calls a compiled function once per slice.

:func:`batched_variant` generates ``f__batch_<code>`` as Python source (a real file, via
:mod:`.cache`) and compiles it with ``numba.njit``: a loop over the batch (``numba.prange`` when
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
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numba
from numba import types as nbtypes

from . import cache, naming, typeinfer
from .errors import AutodiffError

_lock = threading.RLock()
_variants: dict = {}
_inlined: dict = {}
_MODULES = ("math", "np", "numba")          # names the generated module binds


class BatchError(AutodiffError, ValueError):
    """Bad batch axes or batch sizes; the message names the argument (or result element)."""


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


def slice_type(typ, axis: int | None):
    """The numba type of ``x[..., i]`` (``i`` at ``axis``) for ``x`` of type ``typ``."""
    if axis is None:
        return typ
    if typ.ndim == 1:
        return typ.dtype
    layout = "C" if axis == 0 and typ.layout == "C" else "A"
    return nbtypes.Array(typ.dtype, typ.ndim - 1, layout, readonly=not typ.mutable)


def leaves(typ) -> list:
    """The non-tuple types in ``typ``, depth first (``[typ]`` for one that is not a tuple)."""
    if isinstance(typ, nbtypes.BaseTuple):
        return [leaf for element in typ.types for leaf in leaves(element)]
    return [typ]


def batched_variant(callee, argtypes: tuple, in_axes: tuple, out_axes, parallel: bool,
                    label: str) -> BatchedVariant:
    """The batched variant of ``callee`` (a numba dispatcher with a ``py_func``) for batched
    argument types ``argtypes``; ``in_axes[k]`` is the batch axis of argument k (an int within
    its rank, or None: passed whole). ``out_axes``: an int for every result leaf or a tuple with
    one entry per element of a tuple result. ``label`` names the function in errors."""
    key = (callee, tuple(argtypes), tuple(in_axes), out_axes, parallel)
    with _lock:
        if not cache.memoized(_variants, key):
            _variants[key] = _build(callee, tuple(argtypes), tuple(in_axes), out_axes, parallel,
                                    label)
        return _variants[key]


def _inline_always(callee):
    """A dispatcher of ``callee``'s Python function that numba inlines into its callers."""
    if callee not in _inlined:
        _inlined[callee] = numba.njit(callee.py_func, inline="always")
    return _inlined[callee]


def _build(callee, argtypes, in_axes, out_axes, parallel, label) -> BatchedVariant:
    key = cache.key("batch", callee, argtypes, in_axes, out_axes, parallel)
    entry = cache.artifact(key, lambda: _generate(callee, argtypes, in_axes, out_axes, parallel,
                                                  label))
    data = entry.data
    namespace = {"np": __import__("numpy"), "numba": numba,
                 naming.BATCH_CALLEE: callee if parallel else _inline_always(callee)}
    dispatcher = entry.njit(entry.load(namespace)[data["name"]], parallel=parallel)
    return BatchedVariant(data["name"], entry.text, entry.source_path, dispatcher,
                          data["result_type"], data["first_outside"], data["axes"])


def _generate(callee, argtypes, in_axes, out_axes, parallel, label) -> cache.Built:
    """The source of a batched variant, and what loading it needs."""
    element_types = tuple(slice_type(t, a) for t, a in zip(argtypes, in_axes))
    _, result_type = typeinfer.infer(callee.py_func, element_types)
    result_type = nbtypes.unliteral(result_type)
    axes = _leaf_out_axes(result_type, out_axes, label)
    params = [p if p not in _MODULES else f"{p}_arg"
              for p in callee.py_func.__code__.co_varnames[:len(argtypes)]]
    name = naming.batch_name(callee.py_func.__name__, _signature_code(in_axes, axes, parallel))
    lines = _body(params, in_axes, result_type, axes, parallel)
    doc = (f"Batched {callee.py_func.__name__}: one call per slice along in_axes "
           f"{tuple(in_axes)}, results stacked along out_axes {axes}.")
    text = (f"# batched {callee.py_func.__name__}, generated by nbautodiff\n"
            "import math\nimport numba\nimport numpy as np\n\n\n"
            f"def {name}({', '.join(params)}):\n    {doc!r}\n"
            + "".join(f"    {line}\n" for line in lines))
    first_outside = any(typeinfer.is_array(leaf) for leaf in leaves(result_type))
    return cache.Built(name, text, {"name": name, "result_type": result_type,
                                    "first_outside": first_outside, "axes": axes})


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


def _body(params, in_axes, result_type, axes, parallel) -> list[str]:
    n, i, first = naming.BATCH_SIZE, naming.BATCH_INDEX, naming.BATCH_FIRST
    size_of = next((p, a) for p, a in zip(params, in_axes) if a is not None)
    lines = [f"{n} = {size_of[0]}.shape[{size_of[1]}]"]

    def call(index: str) -> str:
        args = [p if a is None else _index(p, a, index) for p, a in zip(params, in_axes)]
        return f"{naming.BATCH_CALLEE}({', '.join(args)})"

    leaf_types = [t for t in leaves(result_type) if t != nbtypes.none]
    outs = [f"{naming.BATCH_OUT}{k}" for k in range(len(leaf_types))]
    first_outside = any(typeinfer.is_array(t) for t in leaf_types)
    paths = _leaf_paths(result_type)
    start = "0"
    if first_outside:
        lines.append(f"{first} = {call('0')}")
        start = "1"
    for out, typ, axis, path in zip(outs, leaf_types, axes, paths):
        dtype = f"np.{typ.dtype if typeinfer.is_array(typ) else typ}"
        if typ == nbtypes.boolean:
            dtype = "np.bool_"
        if typeinfer.is_array(typ):
            shape = f"{first}{path}.shape"
            lines.append(f"{out} = np.empty({shape}[:{axis}] + ({n},) + {shape}[{axis}:], "
                         f"{dtype})")
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
