"""``batch(fun, in_axes=0, out_axes=0, parallel=False)``: vmap semantics, one compiled call.

``in_axes`` is an int (every argument batched along that axis), None (passed whole) or a tuple
with one entry per argument. A batched scalar argument is a 1-D array of its values; an array
batched along axis ``k`` is sliced as ``A[:, ..., i]`` (``i`` at position ``k``). ``out_axes``
(an int, or a tuple with one entry per element of a tuple result) is where the batch axis goes
in each result. The batched function computes exactly what a Python loop of single compiled
calls computes (the same compiled callee runs on each slice). ``parallel=True`` spreads the
batch over cores (``numba.prange``); it is refused when the function writes an argument that is
not batched (the slices would race on it).

``fun`` may be a derivative from :mod:`nbautodiff.api.reverse` (``batch(grad(f))``: per-example gradients): the
batch then runs its generated reverse code once per slice, each with a shadow of its own.

A batched function (of a plain function) is differentiable: called by differentiated code or
given to ``grad``/``vjp``/``jvp``... itself, it is a callee whose code depends on its argument
types (:func:`nbautodiff.frontend.source.specializes`): :meth:`BatchedFunction.nad_primal` is its primal for
compiled callers, :meth:`BatchedFunction.nad_specialize` the batched code the transforms
differentiate for given argument types (see :func:`nbautodiff.transforms.batching.differentiable_function`).
"""
from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass, field

import numpy as np
from numba.extending import typeof_impl

from nbautodiff import cache, memo
from nbautodiff.analysis import typeinfer
from nbautodiff.errors import AutodiffError, BatchError
from nbautodiff.frontend import declarations as custom
from nbautodiff.frontend.source import function_source
from nbautodiff.pipeline import program
from nbautodiff.transforms import batching, lanes
from .derivative import Derivative, check_value, typeof_value


def _checked_axes(axes, what: str, allow_none: bool, nested: bool = False):
    """``axes`` validated (an int, None where allowed, or a tuple/list of those) as given;
    with ``nested`` an entry may itself be a tuple of entries (the axes of the elements of an
    argument that is a tuple of arrays, as JAX's ``in_axes``)."""
    def valid(a):
        return (a is None and allow_none) or (isinstance(a, numbers.Integral)
                                               and not isinstance(a, bool))

    def entry(a):
        if isinstance(a, (tuple, list)) and nested:
            return tuple(entry(x) for x in a)
        return (None if a is None else int(a)) if valid(a) else _BAD

    if isinstance(axes, (tuple, list)):
        checked = tuple(entry(a) for a in axes)
        if not any(_has_bad(a) for a in checked):
            return checked
    elif valid(axes):
        return None if axes is None else int(axes)
    allowed = "an int, None" if allow_none else "an int"
    nesting = " (nested for arguments that are tuples)" if nested else ""
    raise BatchError(f"{what} must be {allowed} or a tuple of those{nesting}, got {axes!r}")


_BAD = object()


def _has_bad(entry) -> bool:
    return entry is _BAD or (isinstance(entry, tuple) and any(_has_bad(e) for e in entry))


def _all_none(entry) -> bool:
    return entry is None or (isinstance(entry, tuple) and all(_all_none(e) for e in entry))


@dataclass(eq=False)
class CalleePrimal:
    """A batched function as the primal of a callee (as :mod:`nbautodiff.pipeline.program` uses callee primals)."""
    dispatcher: object          # its stand-in: compiled callers call the batched code for their types
    py_func: object
    writes: set                 # positions of the array arguments it writes
    key: object = field(default_factory=lambda: cache.private_key("batched callee"))
    # its stand-in is made in this process (a numba overload): code calling it is not shared


class BatchedFunction(Derivative):
    """``batch(fun, in_axes, out_axes, parallel)``; see the module docstring. A
    :class:`~nbautodiff.api.derivative.Derivative`: carries ``.primal``, ``.source`` (the
    generated code of the latest call's signature), ``.variant`` (that code compiled:
    ``.variant.dispatcher``, a plain numba function) and ``.py_func`` (a stand-in with
    ``fun``'s parameters, which calls it; numba-compiled code calls it as the batched code for
    the types of the call)."""

    kind = "batch"
    offloadable = True

    def __init__(self, fun, in_axes=0, out_axes=0, parallel=False, layout="auto",
                 vector_math=False):
        self.in_axes = _checked_axes(in_axes, "in_axes", allow_none=True, nested=True)
        self.out_axes = _checked_axes(out_axes, "out_axes", allow_none=False)
        self.parallel = bool(parallel)
        if layout not in batching.LAYOUTS:
            raise BatchError(f"layout must be one of {', '.join(map(repr, batching.LAYOUTS))}, "
                             f"got {layout!r}")
        self.layout = layout
        # the outer layout calls the primal whose in-place operators store into the array, as
        # NumPy's do (program.in_place_dispatcher); offload, which translates the callee's
        # source for the GPU, keeps the plain primal
        self.in_place_primal = True
        self.vector_math = bool(vector_math)
        self._derivative = isinstance(fun, Derivative) and not fun.source_level
        if self._derivative:
            fun.refuse_composition("batch")
            self._fname, self._parameters = fun.function_name, fun.parameters
        else:
            target = custom.program_target(fun)
            self._fname = target.__name__
            self._parameters = function_source(target).parameters
        super().__init__(fun, name_of=fun if self._derivative else self._fname)
        if isinstance(self.in_axes, tuple) and len(self.in_axes) != len(self._parameters):
            raise BatchError(f"in_axes has {len(self.in_axes)} entries but {self._fname}() has "
                             f"{len(self._parameters)} parameters "
                             f"({', '.join(self._parameters)})")
        if _all_none(self.in_axes):
            raise BatchError(f"in_axes batches no argument of {self._fname}(): give at least "
                             "one argument a batch axis")
        self.variant: batching.BatchedVariant | None = None
        self._flat: dict = {}          # structure of tuple arguments -> batch of a flat wrapper

    def __repr__(self) -> str:
        return f"<nbautodiff batch of {getattr(self.primal, '__qualname__', self._fname)}>"

    @property
    def function_name(self) -> str:
        return self._fname

    @property
    def parameters(self) -> list[str]:
        return self._parameters

    @property
    def source_level(self) -> bool:
        """A batch of a plain function is read by the transforms as a callee (its batched code
        for the argument types); a batch of a derivative is not differentiable."""
        return not self._derivative

    def lower_refusal(self) -> str | None:
        if self._derivative:
            return (f"the batch of a derivative of {self._fname}() cannot be differentiated or "
                    "called from compiled code; batch the function, then differentiate")
        return ("a batch of a function is differentiated as a callee (grad, jvp... of it read "
                "its batched code), not lowered")

    def _prepare_offload(self) -> None:
        """On a GPU: one thread per slice (the outer layout), from the plain primal, whose
        source is what the GPU code is made of."""
        self.layout, self.vector_math = "outer", False
        self.in_place_primal = False

    @property
    def source(self) -> str:
        if self.variant is None:
            raise AutodiffError(f"the batched {self._fname} is generated for the types of its "
                                "arguments: call it once, then read .source")
        return self.variant.source

    def __call__(self, *args):
        names, fname = self._parameters, self._fname
        if len(args) != len(names):
            raise TypeError(f"{fname}() takes {len(names)} arguments ({', '.join(names)}), got "
                            f"{len(args)}")
        if any(isinstance(a, tuple) for a in args) or any(isinstance(a, tuple)
                                                           for a in self._axes()):
            return self._call_flat(args)
        values = [check_value(v, n, fname) for v, n in zip(args, names)]
        axes, size = _resolved_in_axes(values, self._axes(), names, fname)
        if self._derivative:
            return self._call_derivative(values, axes, size)
        variant = self._primal_variant(tuple(typeof_value(v) for v in values), axes,
                                       staged=_small_slices(values, axes))
        _refuse_empty(variant, size, fname)
        return self.run(variant.dispatcher, values)

    def _call_flat(self, args):
        """Arguments that are tuples of arrays (JAX's pytrees, one level of them or more):
        the batch of a wrapper taking their elements one by one and calling the function with
        the tuples rebuilt, each element with its own axis."""
        if self._derivative:
            raise BatchError(f"the derivatives of {self._fname}() take no tuple arguments")
        leaves, axes, structure = [], [], []
        for value, axis, name in zip(args, self._axes(), self._parameters):
            structure.append(_flatten(value, axis, name, self._fname, leaves, axes))
        key = tuple(structure)
        flat = self._flat.get(key)
        if flat is None:
            wrapper = _flat_wrapper(self.primal, self._fname, self._parameters, key)
            flat = BatchedFunction(wrapper, tuple(axes), self.out_axes, self.parallel,
                                   self.layout, self.vector_math)
            if self.runner is not None:
                flat = flat.offloaded(self.runner)
            self._flat[key] = flat
        result = flat(*leaves)
        self.variant = flat.variant
        return result

    def _axes(self) -> tuple:
        """``in_axes`` with one entry per parameter."""
        return self.in_axes if isinstance(self.in_axes, tuple) else \
            (self.in_axes,) * len(self._parameters)

    def _primal_variant(self, argtypes: tuple, axes: tuple, checks: bool = False,
                        staged: tuple = ()) -> batching.BatchedVariant:
        """The batch of the function itself; ``staged``: positions of batched arrays whose
        slices are small enough for the inner layout to copy them lane-major (those the
        function does not write)."""
        prim = program.primal(self.primal)
        if self.parallel:
            _refuse_shared_writes(prim.writes, argtypes, axes, self._parameters, self._fname,
                                  "parallel=True would make the slices race on it "
                                  "(or use parallel=False)")
        staged = tuple(k for k in staged if k not in prim.writes)
        contiguous = _contiguous_slices(prim, argtypes, axes, self.layout)
        callee = program.in_place_dispatcher(prim) if self.in_place_primal else prim.dispatcher
        return self._variant(callee, argtypes, axes, self.out_axes, checks, prim, staged,
                             contiguous)

    def _variant(self, callee, argtypes, axes, out_axes, checks: bool = False,
                 primal=None, staged: tuple = (), contiguous: tuple = ()) -> batching.BatchedVariant:
        """The compiled batch of ``callee``; in the inner layout where this function's
        ``layout`` asks for it and ``primal`` (the :class:`nbautodiff.pipeline.program.Primal` of ``callee``, for
        plain functions only) is given."""
        self.variant = batching.batched_variant(
            callee, argtypes, axes, out_axes, self.parallel, f"{self._fname}()", checks,
            layout=self.layout, primal=primal, vector_math=self.vector_math, staged=staged,
            contiguous=contiguous)
        return self.variant

    # -- as a callee of differentiated code (see source.specializes) -----------------------
    @functools.cached_property
    def py_func(self):
        return batching.stand_in(self.__name__, self._parameters, self, self._typed,
                                 self.parallel)

    def _typed(self, argtypes: tuple):
        """The Python function numba compiles for a call of :attr:`py_func` with ``argtypes``."""
        self._refuse_derivative()
        axes = batching.resolved_in_axes(argtypes, self._axes(), self._parameters,
                                         f"{self._fname}()")
        return self._primal_variant(argtypes, axes, checks=True).dispatcher.py_func

    def nad_primal(self) -> CalleePrimal:
        """This batched function as a callee primal (compiled callers call :attr:`py_func`)."""
        self._refuse_derivative()
        return CalleePrimal(self.py_func, self.py_func, program.primal(self.primal).writes)

    def nad_specialize(self, argtypes: tuple):
        """The batched code for ``argtypes`` as a plain Python function to differentiate."""
        self._refuse_derivative()
        label = f"{self._fname}()"
        axes = batching.resolved_in_axes(argtypes, self._axes(), self._parameters, label)
        return batching.differentiable_function(custom.program_target(self.primal),
                                                program.primal(self.primal).dispatcher,
                                                argtypes, axes, self.out_axes, label)

    def _refuse_derivative(self) -> None:
        if self._derivative:
            raise AutodiffError(self.lower_refusal(), construct="batch of a derivative",
                                function=self._fname)

    def _call_derivative(self, values, axes, size):
        """The derivative lowered at slice 0 to its generated code, then that code batched:
        arguments along their axes, a fresh (zero) shadow per slice, the seed shared."""
        fname = self._fname
        if size == 0:
            raise BatchError(f"cannot batch the derivative of {fname}() over a batch of size 0")
        firsts = [v if a is None else _slice(v, a, 0) for v, a in zip(values, axes)]
        low = self.primal.lower(firsts)
        primals = low.primals
        _refuse_shared_writes(low.writes, tuple(typeof_value(v) for v in values), axes,
                              self._parameters, fname,
                              "each slice's derivative needs the argument as it was passed")
        arguments, low_axes = [], []
        for k, (value, origin) in enumerate(zip(low.arguments, low.origins)):
            if origin is not None:
                whole = values[origin]
                copied = isinstance(value, np.ndarray) and value is not primals[origin]
                arguments.append(whole.copy() if copied and axes[origin] is not None else
                                 value if axes[origin] is None else whole)
                low_axes.append(axes[origin])
            elif k in low.outputs:
                arguments.append(np.zeros((size,) + value.shape, value.dtype))
                low_axes.append(0)
            else:
                arguments.append(value)
                low_axes.append(None)
        variant = self._variant(low.dispatcher, tuple(typeof_value(v) for v in arguments),
                                tuple(low_axes), 0)
        out = self.run(variant.dispatcher, arguments)
        for argument, origin in zip(arguments, low.origins):   # as the function leaves them
            if origin is not None and isinstance(argument, np.ndarray) \
                    and argument is not values[origin] and axes[origin] is not None:
                np.copyto(values[origin], argument)
        return _moved(low.assemble(out, arguments), self.out_axes)


def _contiguous_slices(prim, argtypes: tuple, axes: tuple, layout: str) -> tuple:
    """Positions of the batched arrays whose slices the batch passes as C-contiguous copies:
    none when the compiled primal runs on the slices as they are; else those the function does
    not write and whose slices are not C-contiguous for numba (``A[:, i]``; numba compiles
    ``reshape`` and other calls for contiguous arrays only), when the primal runs on such
    copies. Raises the located error of the slices as they are otherwise (numba cannot type the
    function, or :func:`nbautodiff.pipeline.program.check_compiled_primal` refuses it), and
    where copies are needed but ``layout`` is "inner" (which reads the batch in place)."""
    key = (prim, tuple(argtypes), tuple(axes))
    if key not in _slice_copies:
        _slice_copies[key] = _slice_copies_for(prim, argtypes, axes)
    copies, refusal = _slice_copies[key]
    if copies is None:
        raise refusal
    if copies and layout == "inner":
        raise BatchError(f"{prim.fs.name}() cannot be batched with layout='inner', whose "
                         f"slices are not contiguous: {refusal.message}",
                         construct="inner batch layout", lineno=refusal.lineno,
                         filename=refusal.filename, function=refusal.function)
    return copies


_slice_copies = memo.memo("slice copies")   # (primal, argument types, axes) -> (positions, refusal)


def _slice_copies_for(prim, argtypes: tuple, axes: tuple) -> tuple:
    slices = tuple(batching.slice_type(t, a) for t, a in zip(argtypes, axes))
    try:
        program.check_compiled_primal(prim, slices)
        return (), None
    except AutodiffError as error:
        refusal = error
    copies = tuple(k for k, (s, a) in enumerate(zip(slices, axes))
                   if a is not None and typeinfer.is_array(s) and s.layout != "C"
                   and k not in prim.writes)
    if not copies:
        return None, refusal
    try:
        program.check_compiled_primal(prim, tuple(batching.slice_type(t, a, k in copies)
                                                  for k, (t, a) in enumerate(zip(argtypes, axes))))
    except AutodiffError:
        return None, refusal
    return copies, refusal


def _flatten(value, axis, name: str, fname: str, leaves: list, axes: list):
    """Append the leaves of argument ``value`` (a tuple of arrays, nested, or an array or
    number) and their axes; return its structure (None for a leaf, else a tuple of those)."""
    if isinstance(value, tuple):
        if isinstance(axis, tuple) and len(axis) != len(value):
            raise BatchError(f"in_axes entry {axis} of argument '{name}' of {fname}() has "
                             f"{len(axis)} entries but the argument is a tuple of {len(value)}")
        parts = axis if isinstance(axis, tuple) else (axis,) * len(value)
        return tuple(_flatten(v, a, f"{name}[{k}]", fname, leaves, axes)
                     for k, (v, a) in enumerate(zip(value, parts)))
    if isinstance(axis, tuple):
        raise BatchError(f"in_axes entry {axis} of argument '{name}' of {fname}() is a tuple "
                         f"but the argument is a {type(value).__name__}, not a tuple")
    leaves.append(value)
    axes.append(axis)
    return None


def _flat_wrapper(fun, fname: str, parameters: list, structure: tuple):
    """``def <fname>_flat(<leaves>): return <fname>(<the tuples rebuilt>)``, generated into
    the artifact cache (so the transforms read its source) with ``fun`` bound to ``fname``."""
    taken = set(parameters) | {fname}
    names = []

    def fresh(base: str) -> str:
        candidate, k = base, 1
        while candidate in taken:
            candidate, k = f"{base}_{k}", k + 1
        taken.add(candidate)
        names.append(candidate)
        return candidate

    def rebuilt(name: str, shape) -> str:
        if shape is None:
            return fresh(name)
        parts = [rebuilt(f"{name}_{k}", s) for k, s in enumerate(shape)]
        return f"({', '.join(parts)}{',' if len(parts) == 1 else ''})"

    call = [rebuilt(p, s) if s is not None else p for p, s in zip(parameters, structure)]
    leaves = []
    position = iter(names)
    for p, s in zip(parameters, structure):
        if s is None:
            leaves.append(p)
        else:
            leaves += [next(position) for _ in range(_count(s))]
    wrapper_name = f"{fname}_flat"
    text = (f"# {fname} with its tuple arguments flattened, generated by nbautodiff (vmap)\n\n\n"
            f"def {wrapper_name}({', '.join(leaves)}):\n"
            f"    return {fname}({', '.join(call)})\n")
    try:
        key = cache.key("vmap flat wrapper", fun, text)
    except Exception:                             # noqa: BLE001 - an object cache cannot hash
        key = cache.private_key("vmap flat wrapper")
    entry = cache.artifact(key, lambda: cache.Built(wrapper_name, text))
    return entry.load({fname: fun})[wrapper_name]


def _count(structure) -> int:
    return 1 if structure is None else sum(_count(s) for s in structure)


def _resolved_in_axes(values, axes, names, fname) -> tuple[tuple, int]:
    """(non-negative axes, batch size); a BatchError naming the argument that does not fit."""
    resolved = batching.resolved_in_axes(tuple(typeof_value(v) for v in values), axes, names,
                                         f"{fname}()")
    size, sized_by = None, None
    for value, axis, name in zip(values, resolved, names):
        if axis is None:
            continue
        if size is None:
            size, sized_by = value.shape[axis], name
        elif value.shape[axis] != size:
            raise BatchError(f"argument '{name}' of {fname}() has batch size {value.shape[axis]} "
                             f"(axis {axis}), but '{sized_by}' has batch size {size}")
    return resolved, size


def _small_slices(values, axes) -> tuple:
    """Positions of the batched arrays whose slices have at most ``lanes.STAGE_LIMIT``
    elements and whose batch axis is not the last (where lanes are contiguous already)."""
    return tuple(k for k, (value, axis) in enumerate(zip(values, axes))
                 if axis is not None and value.ndim >= 2 and axis != value.ndim - 1
                 and value.shape[axis] > 0
                 and value.size // value.shape[axis] <= lanes.STAGE_LIMIT)


def _refuse_shared_writes(writes, argtypes, axes, names, fname, why: str) -> None:
    """A BatchError naming the first array argument ``fname`` writes that all slices share."""
    for position in sorted(writes):
        if axes[position] is None and typeinfer.is_array(argtypes[position]):
            raise BatchError(f"{fname}() writes argument '{names[position]}', which is not "
                             f"batched (in_axes None), and {why}: batch it")


def _refuse_empty(variant: batching.BatchedVariant, size: int, fname: str) -> None:
    if size == 0 and variant.first_outside:
        raise BatchError(f"{fname}() returns an array, whose shape is known only after a call: "
                         "a batch of size 0 has none")


def _slice(value: np.ndarray, axis: int, index: int):
    element = value[(slice(None),) * axis + (index,)]
    return element.item() if value.ndim == 1 else element


def _moved(result, out_axes):
    """``result`` (batch axis 0 in every array) with the batch axis moved to ``out_axes``."""
    if isinstance(result, tuple):
        per_element = out_axes if isinstance(out_axes, tuple) else (out_axes,) * len(result)
        if len(per_element) != len(result):
            raise BatchError(f"out_axes {out_axes} has {len(per_element)} entries but the "
                             f"result has {len(result)}")
        return tuple(_moved(r, a) for r, a in zip(result, per_element))
    if isinstance(out_axes, tuple):
        raise BatchError(f"out_axes {out_axes} is a tuple but the result is not")
    if not -result.ndim <= out_axes < result.ndim:
        raise BatchError(f"out_axes {out_axes} is out of range for a batched result of "
                         f"{result.ndim} dimension{'s' * (result.ndim != 1)}")
    return result if out_axes % result.ndim == 0 else np.moveaxis(result, 0, out_axes)


@typeof_impl.register(BatchedFunction)
def _typeof_batched(batched, context):
    """In numba-compiled code a batched function is its stand-in (its code for the types)."""
    return typeinfer.function_type(batched.py_func)


def batch(fun, in_axes=0, out_axes=0, parallel=False, layout="auto",
          vector_math=False) -> BatchedFunction:
    """One compiled function evaluating ``fun`` on every slice; see :class:`BatchedFunction`."""
    return BatchedFunction(fun, in_axes, out_axes, parallel, layout, vector_math)


def vmap(fun, in_axes=0, out_axes=0, *, axis_name=None, axis_size=None,
         **options) -> BatchedFunction:
    """JAX's name for :func:`batch`: ``in_axes`` an int, None, or a tuple with one entry per
    argument, where an argument that is a tuple of arrays takes one entry (for all of them) or
    a tuple of entries (one per element, nested alike); ``out_axes`` an int, or a tuple with
    one per element of a tuple result.
    ``axis_name`` (collectives) and ``axis_size`` (no batched argument) are not supported;
    ``options`` are :func:`batch`'s (``parallel``, ``layout``, ``vector_math``)."""
    for name, value in (("axis_name", axis_name), ("axis_size", axis_size)):
        if value is not None:
            raise BatchError(f"vmap: {name}= is not supported (there are no collective "
                             "operations, and at least one argument must be batched)")
    return BatchedFunction(fun, in_axes, out_axes, **options)
