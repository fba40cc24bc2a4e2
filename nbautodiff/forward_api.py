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

from . import program
from .activities import Const, Dual, DualOnly, as_activity
from .api import _check_value, _Derived, _is_float_array, _resolved_argnums, _typeof
from .errors import AutodiffError

FORWARD_ARGUMENT = (Const, Dual, DualOnly)
_RETURNS = {"Dual": (True, True), "DualOnly": (True, False), "Const": (False, True)}


class ForwardFunction(_Derived):
    """``forward(fun, *activities, ret=..., width=...)``; see the module docstring."""

    kind = "forward"

    def __init__(self, fun, activities, ret="Dual", width=1):
        super().__init__(fun)
        names, fname = self.parameters, self._func.__name__
        if len(activities) != len(names):
            raise AutodiffError(f"{fname}() has {len(names)} parameters ({', '.join(names)}) "
                                f"but {len(activities)} activities were given")
        self.activities = [as_activity(a) for a in activities]
        for act, name in zip(self.activities, names):
            if act not in FORWARD_ARGUMENT:
                raise AutodiffError(f"activity {act} of '{name}' is not a forward-mode activity "
                                    f"(use one of {', '.join(a.name for a in FORWARD_ARGUMENT)})")
        ret_name = ret.name if hasattr(ret, "name") else str(ret)
        if ret_name not in _RETURNS:
            raise AutodiffError(f"ret={ret_name!r} is not a forward-mode return activity "
                                f"(use one of {', '.join(_RETURNS)})")
        if not isinstance(width, numbers.Integral) or isinstance(width, bool) or width < 1:
            raise AutodiffError(f"width must be a positive int, got {width!r}")
        self.ret, self.width = ret_name, int(width)
        self.result_dual, self.returns_primal = _RETURNS[ret_name]

    def __call__(self, *args):
        names, fname, width = self.parameters, self._func.__name__, self.width
        duals = [act is not Const for act in self.activities]
        expected = len(names) + width * sum(duals)
        if len(args) != expected:
            raise TypeError(f"{self.__name__}() takes {expected} arguments (each Dual argument "
                            f"followed by {width} tangent{'s' * (width > 1)}), got {len(args)}")
        call, position = [], 0
        for dual, name in zip(duals, names):
            value = _check_value(args[position], name, fname)
            call.append(value)
            position += 1
            if dual:
                tangents = args[position:position + width]
                position += width
                call += [_checked_tangent(t, value, name, fname) for t in tangents]
        return self._run(call, duals)

    def _run(self, call: list, duals: list[bool]):
        primals = _primals_of(call, duals, self.width)
        variant = self._variant_for(primals, duals)
        out = variant.dispatcher(*_without_unused_tangents(call, duals, variant.duals, self.width))
        if not variant.result_dual:
            tangents = tuple(_zero_like(out) for _ in range(self.width)) \
                if self.result_dual else ()
            value = out
        else:
            value, tangents = out[0], tuple(out[1:])
        if not self.result_dual:
            return value
        tangent = tangents[0] if self.width == 1 else tangents
        return (value, tangent) if self.returns_primal else tangent

    def _variant_for(self, primals, duals) -> program.ForwardVariant:
        argtypes = tuple(_typeof(v) for v in primals)
        variant = program.forward_variant(self._func, argtypes, duals, self.result_dual,
                                          self.width)
        self._variant = variant
        return variant

    def _guess_variant(self):
        duals = [act is not Const for act in self.activities]
        return program.forward_variant(self._func, self._guessed_types(), duals,
                                       self.result_dual, self.width)


def _checked_tangent(tangent, value, name: str, fname: str):
    """``tangent`` as passed to compiled code, or an error naming the argument."""
    if isinstance(value, np.ndarray):
        if not _is_float_array(tangent):
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


def _zero_like(value):
    return np.zeros_like(value) if isinstance(value, np.ndarray) else 0.0


def forward(fun, *activities, ret="Dual", width=1) -> ForwardFunction:
    """Forward mode with Enzyme/Rust activities; see :class:`ForwardFunction`."""
    return ForwardFunction(fun, activities, ret, width)


def _differentiable(value) -> bool:
    return _is_float_array(value) or (isinstance(value, numbers.Real)
                                      and not isinstance(value, (bool, numbers.Integral)))


def jvp(fun, primals, tangents):
    """``(fun(*primals), J @ tangents)``: one forward pass. ``tangents`` has one entry per
    primal (None for an argument that is not differentiated, e.g. an int); the inputs are not
    modified."""
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise TypeError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    activities = [Dual if t is not None and _differentiable(p) else Const
                  for p, t in zip(primals, tangents)]
    derived = ForwardFunction(fun, activities)
    args = []
    for p, t, act in zip(primals, tangents, activities):
        args.append(p.copy() if isinstance(p, np.ndarray) else p)
        if act is Dual:
            args.append(np.array(t, dtype=p.dtype, copy=True) if isinstance(p, np.ndarray)
                        else float(t))
    return derived(*args)


def jacfwd(fun, argnums=0, width=8):
    """The Jacobian of ``fun`` by forward mode: ``jacfwd(fun, argnums)(*args)``.

    Vector mode: each pass pushes ``width`` basis directions at once (the last pass is padded
    with zero directions, so one variant is compiled). For an output of shape ``S`` and an
    argument of shape ``A`` the Jacobian has shape ``S + A``; a tuple ``argnums`` gives a tuple.
    """
    def jacobian(*args):
        wrt = _resolved_argnums(argnums, len(args), f"{len(args)} arguments")
        for k in wrt:
            if not _differentiable(args[k]):
                raise TypeError(f"jacfwd cannot differentiate with respect to argument {k} of "
                                f"type {type(args[k]).__name__}: pass a float or a float array")
        sizes = [int(np.size(args[k])) for k in wrt]
        total = sum(sizes)
        lanes = max(1, min(width, total))
        derived = ForwardFunction(fun, [Dual if k in wrt else Const for k in range(len(args))],
                                  ret="Dual", width=lanes)
        columns = []
        for start in range(0, total, lanes):
            call = []
            for k, value in enumerate(args):
                call.append(value.copy() if isinstance(value, np.ndarray) else value)
                if k in wrt:
                    offset = sum(sizes[:wrt.index(k)])
                    call += [_basis(value, start + lane - offset) for lane in range(lanes)]
            _, tangents = derived(*call)
            tangents = tangents if lanes > 1 else (tangents,)
            columns += [np.asarray(t, dtype=np.float64) for t in tangents]
        columns = columns[:total]
        out_shape = columns[0].shape
        blocks, offset = [], 0
        for k, size in zip(wrt, sizes):
            block = np.stack(columns[offset:offset + size], axis=-1) if size else \
                np.empty(out_shape + (0,))
            blocks.append(block.reshape(out_shape + np.shape(args[k])))
            offset += size
        return tuple(blocks) if isinstance(argnums, (tuple, list)) else blocks[0]

    jacobian.__name__ = f"{getattr(fun, '__name__', 'fun')}_jacfwd"
    return jacobian


def _basis(value, index: int):
    """The tangent of ``value`` that is 1 at flat ``index`` (0 everywhere when out of range)."""
    if isinstance(value, np.ndarray):
        tangent = np.zeros_like(value)
        if 0 <= index < value.size:
            tangent.reshape(-1)[index] = 1.0
        return tangent
    return 1.0 if index == 0 else 0.0
