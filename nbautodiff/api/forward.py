"""The public forward-mode API: Enzyme-style ``forward`` and JAX-style ``jvp``/``jacfwd``.

``forward(fun, *activities, ret="Dual", width=1)`` follows Rust's ``#[autodiff_forward]``: each
``Dual`` (or ``DualOnly``) argument is followed by ``width`` tangents (floats for a float, arrays
of its shape for an array). The derived function returns ``(result, tangent)`` for
``ret="Dual"`` (``(result, (tangent_1, ..., tangent_width))`` when ``width > 1``), the tangent(s)
alone for ``"DualOnly"`` and the result alone for ``"Const"``. Arrays the function writes are
written in place, and so are their tangents. With ``width > 1`` one pass computes ``width``
directional derivatives (vector mode): the primal is evaluated once.
"""
from __future__ import annotations

import numbers

import numpy as np

from nbautodiff.errors import AutodiffError
from nbautodiff.pipeline import program
from .activities import Const, Dual, DualOnly, Dualv
from .derivative import (Derivative, check_value, checked_return, is_float_array, refuse_overlapping,
                         resolved_argnums, typeof_value)

FORWARD_ARGUMENT = (Const, Dual, DualOnly, Dualv)
_RETURNS = {"Dual": (True, True), "DualOnly": (True, False), "Const": (False, True)}


class ForwardFunction(Derivative):
    """``forward(fun, *activities, ret=..., width=...)``; see the module docstring."""

    kind = "forward"

    def __init__(self, fun, activities, ret="Dual", width=1, fastmath=False):
        super().__init__(fun, fastmath=fastmath)
        self.activities = self._checked_activities(activities, FORWARD_ARGUMENT, "forward")
        self.ret = checked_return(ret, _RETURNS, "forward")
        if not isinstance(width, numbers.Integral) or isinstance(width, bool) or width < 1:
            raise AutodiffError(f"width must be a positive int, got {width!r}")
        self.width = int(width)
        self.result_dual, self.returns_primal = _RETURNS[self.ret]

    def __call__(self, *args):
        names, fname, width = self.parameters, self._func.__name__, self.width
        duals = [act is not Const for act in self.activities]
        counts = [0 if act is Const else 1 if act is Dualv else width for act in self.activities]
        expected = len(names) + sum(counts)
        if len(args) != expected:
            raise TypeError(f"{self.__name__}() takes {expected} arguments (each Dual argument "
                            f"followed by {width} tangent{'s' * (width > 1)}, each Dualv one by "
                            f"one tangent of {width} directions), got {len(args)}")
        call, position = [], 0
        for act, count, name in zip(self.activities, counts, names):
            value = check_value(args[position], name, fname)
            call.append(value)
            position += 1
            tangents = args[position:position + count]
            position += count
            if act is Dualv:
                tangents = _directions(tangents[0], value, width, name, fname)
            call += [_checked_tangent(t, value, name, fname) for t in tangents]
        return self._run(call, duals)

    def _run(self, call: list, duals: list[bool]):
        primals = _primals_of(call, duals, self.width)
        variant = self._variant_for(primals, duals)
        out = self._invoke(variant.dispatcher,
                           _without_unused_tangents(call, duals, variant.duals, self.width))
        if not variant.result_dual:
            tangents = tuple(_zero_tangent(out) for _ in range(self.width)) \
                if self.result_dual else ()
            value = out
        else:
            value, tangents = out[0], tuple(out[1:])
        if not self.result_dual:
            return value
        tangent = tangents[0] if self.width == 1 else tangents
        return (value, tangent) if self.returns_primal else tangent

    def _variant_for(self, primals, duals) -> program.ForwardVariant:
        argtypes = tuple(typeof_value(v) for v in primals)
        variant = program.forward_variant(self._func, argtypes, duals, self.result_dual,
                                          self.width, fastmath=self.fastmath)
        self._variant = variant
        return variant

    def _guess_variant(self):
        duals = [act is not Const for act in self.activities]
        return program.forward_variant(self._func, self._guessed_types(), duals,
                                       self.result_dual, self.width, fastmath=self.fastmath)


def _directions(tangent, value, width: int, name: str, fname: str) -> list:
    """The ``width`` tangents held by one ``Dualv`` tangent (views: writes reach it)."""
    shape = np.shape(value)
    size = int(np.prod(shape))
    if not is_float_array(tangent) or tangent.size != width * size or not \
            (tangent.shape in ((width,) + shape, (width * size,))):
        got = tangent.shape if isinstance(tangent, np.ndarray) else type(tangent).__name__
        raise ValueError(f"Dualv tangent of argument '{name}' of {fname}() must be a float "
                         f"array of shape {(width,) + shape} or ({width * size},), got {got}")
    if not tangent.flags.c_contiguous:
        raise ValueError(f"Dualv tangent of argument '{name}' of {fname}() must be C-contiguous "
                         "(its directions are views into it)")
    lanes = tangent.reshape((width,) + shape)
    return [lanes[k] if isinstance(value, np.ndarray) else float(lanes[k]) for k in range(width)]


def _checked_tangent(tangent, value, name: str, fname: str):
    """``tangent`` as passed to compiled code, or an error naming the argument."""
    if isinstance(value, np.ndarray):
        if not is_float_array(tangent):
            raise TypeError(f"tangent of argument '{name}' of {fname}() must be a float array, "
                            f"got {type(tangent).__name__}")
        if tangent.shape != value.shape:
            raise ValueError(f"tangent of argument '{name}' of {fname}() must have shape "
                             f"{value.shape}, got {tangent.shape}")
        return tangent
    if not isinstance(tangent, numbers.Real) or isinstance(tangent, bool):
        raise TypeError(f"tangent of argument '{name}' of {fname}() must be a float, got "
                        f"{type(tangent).__name__}")
    return float(tangent)


def _primals_of(call: list, duals: list[bool], width: int) -> list:
    primals, position = [], 0
    for dual in duals:
        primals.append(call[position])
        position += 1 + (width if dual else 0)
    return primals


def _without_unused_tangents(call: list, duals: list[bool], used: list[bool], width: int) -> list:
    """The call's arguments, dropping the tangents of arguments the variant takes as constant
    (ints and int arrays declared Dual)."""
    out, position = [], 0
    for dual, keep in zip(duals, used):
        out.append(call[position])
        position += 1
        if dual:
            if keep:
                out += call[position:position + width]
            position += width
    return out


def forward(fun, *activities, ret="Dual", width=1, fastmath=False) -> ForwardFunction:
    """Forward mode with Enzyme/Rust activities; see :class:`ForwardFunction`. ``fastmath``:
    as for :func:`.grad` (products recognised in loop nests computed by BLAS)."""
    return ForwardFunction(fun, activities, ret, width, fastmath)


def _differentiable(value) -> bool:
    return is_float_array(value) or (isinstance(value, numbers.Real)
                                      and not isinstance(value, (bool, numbers.Integral)))


def _forward_pass(fun, primals: list, lanes: list[dict], fastmath: bool = False,
                  finals: dict | None = None) -> tuple:
    """``(fun(*primals), [tangent of the output along each lane])``: one forward pass of width
    ``len(lanes)``; a lane maps argument positions to tangents (other arguments are constant).
    ``fun`` is a plain function or a derivative from :mod:`nbautodiff.api.reverse` (``grad``...): then the pass
    is the forward mode of its generated code (forward over reverse)."""
    if hasattr(fun, "_lowered"):
        return _forward_over(fun, primals, lanes, finals)
    width = len(lanes)
    activities = [Dual if k in lanes[0] else Const for k in range(len(primals))]
    derived = ForwardFunction(fun, activities, "Dual", width, fastmath)
    written = program.primal(derived._func).writes        # copied: the inputs stay as they are
    refuse_overlapping(derived._func, primals)            # (until the entry point's end)
    call = []
    for k, value in enumerate(primals):
        call.append(_copied_if(value, k in written))
        if finals is not None and call[-1] is not value:
            finals[k] = call[-1]                 # holds the final contents after the pass
        if k in lanes[0]:
            call += [_copied_if(lane[k], k in written) for lane in lanes]
    value, tangents = derived(*call)
    return value, list(tangents) if width > 1 else [tangents]


def _forward_over(derived, primals: list, lanes: list[dict], finals: dict | None = None) -> tuple:
    """:func:`_forward_pass` of a derivative: the forward variant of its generated code, whose
    output buffers (shadows) get zero tangents in and carry the output's tangents out."""
    primals = derived._arguments(primals)
    low = derived._lowered(primals, derived._activities(primals))
    width = len(lanes)
    duals = [k in low.outputs or (origin is not None and origin in lanes[0])
             for k, origin in enumerate(low.origins)]
    argtypes = tuple(typeof_value(v) for v in low.arguments)
    variant = program.forward_variant(low.dispatcher.py_func, argtypes, duals, True, width)
    written = program.primal(low.dispatcher.py_func).writes
    call, lane_arguments = [], [list(low.arguments) for _ in range(width)]
    for k, (value, origin) in enumerate(zip(low.arguments, low.origins)):
        call.append(value)
        if variant.duals[k]:
            for j, lane in enumerate(lanes):
                tangent = np.zeros_like(value) if origin is None else \
                    _copied_if(np.asarray(lane[origin], dtype=value.dtype), k in written) \
                    if isinstance(value, np.ndarray) else float(lane[origin])
                lane_arguments[j][k] = tangent
                call.append(tangent)
        elif duals[k]:
            for j in range(width):
                lane_arguments[j][k] = _zero_tangent(value)
    out = variant.dispatcher(*call)
    if finals is not None:                       # the generated code wrote back into its copies
        for argument, origin in zip(low.arguments, low.origins):
            if origin is not None and isinstance(argument, np.ndarray) \
                    and argument is not primals[origin]:
                finals[origin] = argument
    value = out[0] if variant.result_dual else out
    tangents = list(out[1:]) if variant.result_dual else [_zero_tangent(out)] * width
    return (low.assemble(value, low.arguments),
            [low.assemble(t, args) for t, args in zip(tangents, lane_arguments)])


def _copied_if(value, condition: bool):
    return value.copy() if condition and isinstance(value, np.ndarray) else value


def _zero_tangent(value):
    """A zero tangent with the structure of ``value``: tuples kept, arrays as zero arrays,
    numbers as 0.0, None as None."""
    if isinstance(value, tuple):
        return tuple(_zero_tangent(v) for v in value)
    if isinstance(value, np.ndarray):
        return np.zeros_like(value)
    return None if value is None else 0.0


def jvp(fun, primals, tangents, fastmath=False):
    """``(fun(*primals), J @ tangents)``: one forward pass. ``tangents`` has one entry per
    primal (None for an argument that is not differentiated, e.g. an int); the inputs are not
    modified. ``fun`` may be a derivative: ``jvp(grad(f), (x,), (v,))`` is
    ``(grad(f)(x), H v)``, the Hessian-vector product by forward over reverse. ``fastmath``:
    as for :func:`.grad` (for a derivative ``fun``, give it to the derivative instead)."""
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise TypeError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    lane = {}
    for k, (p, t) in enumerate(zip(primals, tangents)):
        if t is not None and _differentiable(p):
            lane[k] = np.asarray(t, dtype=p.dtype) if isinstance(p, np.ndarray) else float(t)
    finals = {}
    value, (tangent,) = _forward_pass(fun, list(primals), [lane], fastmath, finals)
    _copy_finals(primals, finals)
    return value, tangent


def _copy_finals(args, finals: dict) -> None:
    """Leave the caller's arrays as the function leaves them: a pass ran on copies of the
    arrays it writes, ``finals`` (position -> copy) holding their final contents."""
    for k, final in finals.items():
        np.copyto(args[k], final)


def jacfwd(fun, argnums=0, width=8):
    """The Jacobian of ``fun`` by forward mode: ``jacfwd(fun, argnums)(*args)``.

    Vector mode: each pass pushes ``width`` basis directions at once (the last pass is padded
    with zero directions, so one variant is compiled). For an output of shape ``S`` and an
    argument of shape ``A`` the Jacobian has shape ``S + A``; a tuple ``argnums`` gives a tuple,
    a tuple output a tuple (one entry per output). ``fun`` may be a derivative:
    ``jacfwd(grad(f))`` is the Hessian (forward over reverse).
    """
    def jacobian(*args):
        wrt = resolved_argnums(argnums, len(args), f"{len(args)} arguments")
        for k in wrt:
            if not _differentiable(args[k]):
                raise TypeError(f"jacfwd cannot differentiate with respect to argument {k} of "
                                f"type {type(args[k]).__name__}: pass a float or a float array")
        sizes = [int(np.size(args[k])) for k in wrt]
        offsets = [sum(sizes[:n]) for n in range(len(wrt))]
        total = sum(sizes)
        lanes_per_pass = max(1, min(width, total))
        columns, finals = [], {}
        for start in range(0, total, lanes_per_pass):
            lanes = [{k: _basis(args[k], start + lane - offset) for k, offset in zip(wrt, offsets)}
                     for lane in range(lanes_per_pass)]
            _, tangents = _forward_pass(fun, list(args), lanes, finals=finals)
            columns += tangents
        columns = columns[:total]
        _copy_finals(args, finals)                  # each pass started from the caller's arrays
        blocks = _stacked(columns, [np.shape(args[k]) for k in wrt], offsets, sizes)
        if not isinstance(argnums, (tuple, list)):
            blocks = _map_leaves(lambda per_argument: per_argument[0], blocks)
        return blocks

    jacobian.__name__ = f"{getattr(fun, '__name__', 'fun')}_jacfwd"
    return jacobian


def _stacked(columns: list, shapes: list, offsets: list, sizes: list):
    """Output-structured Jacobian blocks from per-direction output tangents: for each leaf of
    the output, a tuple with one block of shape ``leaf.shape + argument shape`` per argument."""
    first = columns[0]
    if isinstance(first, tuple):
        return tuple(_stacked([c[n] for c in columns], shapes, offsets, sizes)
                     for n in range(len(first)))
    leaves = [np.asarray(c, dtype=np.float64) for c in columns]
    out_shape = leaves[0].shape
    return tuple(np.stack(leaves[offset:offset + size], axis=-1).reshape(out_shape + shape)
                 for shape, offset, size in zip(shapes, offsets, sizes))


def _map_leaves(function, blocks):
    if isinstance(blocks, tuple) and blocks and isinstance(blocks[0], tuple):
        return tuple(_map_leaves(function, b) for b in blocks)
    return function(blocks)


class GradOfDerivative:
    """``grad(d, argnums)`` of a derivative ``d`` (``grad(grad(f))``): forward mode over the
    generated code of ``d``, one vector-mode pass per ``width`` input elements; ``d`` must have a
    scalar output at the arguments given."""

    def __init__(self, derived, argnums=0, with_value=False):
        self.primal, self.argnums, self.with_value = derived, argnums, with_value
        self.kind = "value_and_grad" if with_value else "grad"
        self.__name__ = f"{getattr(derived, '__name__', 'derivative')}_{self.kind}"

    def __call__(self, *args):
        value = self.primal(*[a.copy() if isinstance(a, np.ndarray) else a for a in args])
        if isinstance(value, tuple) or np.ndim(value) != 0:
            raise AutodiffError(f"grad of {self.primal.__name__} needs a scalar output, got "
                                f"{'a tuple' if isinstance(value, tuple) else np.shape(value)}; "
                                "use jacfwd (or hessian) for a gradient that is an array")
        gradient = jacfwd(self.primal, self.argnums)(*args)
        gradient = tuple(map(_float_if_scalar, gradient)) if isinstance(gradient, tuple) \
            else _float_if_scalar(gradient)
        return (value, gradient) if self.with_value else gradient

    def _lowered(self, primals, activities):
        raise AutodiffError("derivatives of order three and more are not supported yet")


def _float_if_scalar(block: np.ndarray):
    return block if block.ndim else float(block)


def _basis(value, index: int):
    """The tangent of ``value`` that is 1 at flat ``index`` (0 everywhere when out of range)."""
    if isinstance(value, np.ndarray):
        tangent = np.zeros_like(value)
        if 0 <= index < value.size:
            tangent.reshape(-1)[index] = 1.0
        return tangent
    return 1.0 if index == 0 else 0.0
