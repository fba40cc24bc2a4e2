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
from nbautodiff.frontend.checkpoint_markers import parse_option
from nbautodiff.pipeline import program
from . import remat
from .activities import Const, Dual, DualOnly, Dualv
from .derivative import (Derivative, GeneratedDerivative, Lowered, check_value, checked_return,
                         is_float_array, refuse_derivative, refuse_overlapping, resolved_argnums,
                         typeof_value)

FORWARD_ARGUMENT = (Const, Dual, DualOnly, Dualv)
_RETURNS = {"Dual": (True, True), "DualOnly": (True, False), "Const": (False, True)}


class ForwardFunction(GeneratedDerivative):
    """``forward(fun, *activities, ret=..., width=...)``; see the module docstring.
    ``checkpoint`` is accepted for symmetry with reverse mode: forward mode keeps no tape."""

    kind = "forward"

    def __init__(self, fun, activities, ret="Dual", width=1, fastmath=False, checkpoint=None):
        super().__init__(fun, checkpoint=checkpoint, fastmath=fastmath)
        self.activities = self._checked_activities(activities, FORWARD_ARGUMENT, "forward")
        self.ret = checked_return(ret, _RETURNS, "forward")
        if not isinstance(width, numbers.Integral) or isinstance(width, bool) or width < 1:
            raise AutodiffError(f"width must be a positive int, got {width!r}")
        self.width = int(width)
        self.result_dual, self.returns_primal = _RETURNS[self.ret]

    @property
    def parameters(self) -> list[str]:
        """What it is called with: each argument followed by its tangent(s)."""
        names = []
        for act, name in zip(self.activities, self.primal_parameters):
            names.append(name)
            if act is Dualv:
                names.append(f"t_{name}")
            elif act is not Const:
                names += [f"t{k if self.width > 1 else ''}_{name}" for k in range(self.width)]
        return names

    def _parsed(self, args) -> list:
        names, fname, width = self.primal_parameters, self._func.__name__, self.width
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
        return call

    def __call__(self, *args):
        call = self._parsed(args)
        return self._run(call, [act is not Const for act in self.activities])

    def _run(self, call: list, duals: list[bool]):
        primals = _primals_of(call, duals, self.width)
        variant = self._variant_for(primals, duals)
        out = self.run(variant.dispatcher,
                       _without_unused_tangents(call, duals, variant.duals, self.width))
        return self._returned(out, variant)

    def _returned(self, out, variant):
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

    def lower(self, args) -> Lowered:
        """This derivative at ``args`` (values and tangents, as it is called) as one call of
        its forward variant."""
        self.refuse_composition("a transform")
        call = self._parsed(args)
        duals = [act is not Const for act in self.activities]
        primals = _primals_of(call, duals, self.width)
        variant = self._variant_for(primals, duals)
        arguments = _without_unused_tangents(call, duals, variant.duals, self.width)
        origins, position = [], 0
        counts = [0 if act is Const else 1 if act is Dualv else self.width
                  for act in self.activities]
        for dual, used, count in zip(duals, variant.duals, counts):
            origins.append(position)
            position += 1
            if dual and used:
                origins += list(range(position, position + self.width))
            position += count
        returned = self._returned
        return Lowered(variant.dispatcher, arguments, origins, [],
                       lambda out, _: returned(out, variant), primals,
                       frozenset(program.primal(self._func).writes), variant)

    def lower_refusal(self) -> str | None:
        if any(act is Dualv for act in self.activities) and self.width > 1:
            return "a Dualv tangent holds several directions, which a transform cannot follow"
        return None

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


def forward(fun, *activities, ret="Dual", width=1, fastmath=False,
            checkpoint=None) -> ForwardFunction:
    """Forward mode with Enzyme/Rust activities; see :class:`ForwardFunction`. ``fastmath``:
    as for :func:`.grad` (products recognised in loop nests computed by BLAS); ``checkpoint``:
    accepted, nothing to checkpoint (forward mode keeps no tape)."""
    refuse_derivative(fun, "forward", "use nad.jvp or nad.jacfwd, which take a derivative "
                      "(forward mode over its generated code)")
    return ForwardFunction(fun, activities, ret, width, fastmath, checkpoint)


def _differentiable(value) -> bool:
    return is_float_array(value) or (isinstance(value, numbers.Real)
                                      and not isinstance(value, (bool, numbers.Integral)))


def with_inner_options(derived: Derivative, checkpoint, fastmath: bool) -> Derivative:
    """``derived`` with the options given to a transform of it: ``checkpoint`` for its
    reverse sweep (an AutodiffError where it has another one), ``fastmath`` if asked."""
    schedule = parse_option(checkpoint)
    if schedule is None and not fastmath:
        return derived
    if schedule is not None and derived.checkpoint not in (None, schedule):
        raise AutodiffError(f"checkpoint={checkpoint!r} conflicts with the checkpoint option "
                            f"of {derived.__name__} ({derived.checkpoint.describe()}): give it "
                            "to one of them", construct="conflicting checkpoint options",
                            function=derived.function_name)
    return derived.with_options(
        checkpoint=schedule if schedule is not None else derived.checkpoint,
        fastmath=derived.fastmath or bool(fastmath))


def _forward_pass(fun, primals: list, lanes: list[dict], fastmath: bool = False,
                  finals: dict | None = None, checkpoint=None, owner=None,
                  run=None) -> tuple:
    """``(fun(*primals), [tangent of the output along each lane])``: one forward pass of width
    ``len(lanes)``; a lane maps argument positions to tangents (other arguments are constant).
    ``fun`` is a plain function or a derivative (``grad``...): then the pass is the forward mode
    of its generated code (forward over reverse). ``owner`` (a :class:`JacobianFunction`)
    records the pass's generated source; ``run`` runs compiled code (an offloaded owner's)."""
    if isinstance(fun, Derivative) and not fun.source_level:
        return _forward_over(with_inner_options(fun, checkpoint, fastmath), primals, lanes,
                             finals, fastmath, owner, run)
    width = len(lanes)
    activities = [Dual if k in lanes[0] else Const for k in range(len(primals))]
    derived = ForwardFunction(fun, activities, "Dual", width, fastmath, checkpoint)
    if run is not None:
        derived = derived.offloaded(run)
    written = program.primal(derived.target).writes        # copied: the inputs stay as they are
    refuse_overlapping(derived.target, primals)            # (until the entry point's end)
    call = []
    for k, value in enumerate(primals):
        call.append(_copied_if(value, k in written))
        if finals is not None and call[-1] is not value:
            finals[k] = call[-1]                 # holds the final contents after the pass
        if k in lanes[0]:
            call += [_copied_if(lane[k], k in written) for lane in lanes]
    value, tangents = derived(*call)
    if owner is not None:
        owner.latest = derived
    return value, list(tangents) if width > 1 else [tangents]


def _forward_over(derived: Derivative, primals: list, lanes: list[dict],
                  finals: dict | None = None, fastmath: bool = False, owner=None,
                  run=None) -> tuple:
    """:func:`_forward_pass` of a derivative: the forward variant of its generated code
    (:meth:`Derivative.lower`), whose output buffers (shadows) get zero tangents in and carry
    the output's tangents out."""
    low = derived.lower(primals)
    width = len(lanes)
    duals = [k in low.outputs or (origin is not None and origin in lanes[0])
             for k, origin in enumerate(low.origins)]
    argtypes = tuple(typeof_value(v) for v in low.arguments)
    variant = program.forward_variant(low.dispatcher.py_func, argtypes, duals, True, width,
                                      fastmath=fastmath)
    if owner is not None:
        owner.latest = variant
    written = program.primal(low.dispatcher.py_func).writes
    call, lane_arguments = [], [list(low.arguments) for _ in range(width)]
    for k, (value, origin) in enumerate(zip(low.arguments, low.origins)):
        call.append(value)
        if variant.duals[k]:
            for j, lane in enumerate(lanes):
                tangent = np.zeros_like(value) if origin is None or origin not in lane else \
                    _copied_if(np.asarray(lane[origin], dtype=value.dtype), k in written) \
                    if isinstance(value, np.ndarray) else float(lane[origin])
                lane_arguments[j][k] = tangent
                call.append(tangent)
        elif duals[k]:
            for j in range(width):
                lane_arguments[j][k] = _zero_tangent(value)
    out = variant.dispatcher(*call) if run is None else run(variant.dispatcher, call)
    if finals is not None:                       # the generated code wrote back into its copies
        for argument, origin in zip(low.arguments, low.origins):
            if origin is not None and isinstance(argument, np.ndarray) \
                    and argument is not low.primals[origin]:
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


def jvp(fun, primals, tangents, has_aux=False, checkpoint=None, fastmath=False):
    """``(fun(*primals), J @ tangents)``: one forward pass. ``tangents`` has one entry per
    primal (None for an argument that is not differentiated, e.g. an int); the inputs are not
    modified. ``fun`` may be a derivative: ``jvp(grad(f), (x,), (v,))`` is
    ``(grad(f)(x), H v)``, the Hessian-vector product by forward over reverse. ``has_aux``:
    ``fun`` returns ``(out, aux)``; the result is ``(out, tangent, aux)``. ``fastmath``: as for
    :func:`.grad`; ``checkpoint``: for a derivative ``fun``, that of its reverse sweep (for a
    function, nothing: forward mode keeps no tape)."""
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise TypeError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    fun, checkpoint = remat.resolve(fun, checkpoint)
    lane = {}
    for k, (p, t) in enumerate(zip(primals, tangents)):
        if t is not None and _differentiable(p):
            lane[k] = np.asarray(t, dtype=p.dtype) if isinstance(p, np.ndarray) else float(t)
    finals = {}
    value, (tangent,) = _forward_pass(fun, list(primals), [lane], fastmath, finals, checkpoint)
    _copy_finals(primals, finals)
    if has_aux:
        _check_aux_pair(value, "jvp", fun)
        return value[0], tangent[0], value[1]
    return value, tangent


def _check_aux_pair(value, transform: str, fun) -> None:
    if not (isinstance(value, tuple) and len(value) == 2):
        raise AutodiffError(f"{transform} with has_aux=True requires "
                            f"{getattr(fun, '__name__', 'the function')}() to return a pair "
                            f"(output, aux), got {type(value).__name__}", construct="has_aux")


def _copy_finals(args, finals: dict) -> None:
    """Leave the caller's arrays as the function leaves them: a pass ran on copies of the
    arrays it writes, ``finals`` (position -> copy) holding their final contents."""
    for k, final in finals.items():
        np.copyto(args[k], final)


class JacobianFunction(Derivative):
    """What ``jacfwd``, ``jacrev`` and ``hessian`` return: ``compute(self, *args)`` called with
    the arguments; ``.source`` is the generated code of its latest pass (or pullback)."""

    def __init__(self, fun, kind: str, compute, checkpoint=None, fastmath=False,
                 source_of=None):
        self.kind = kind
        super().__init__(fun, checkpoint=checkpoint, fastmath=fastmath)
        self._compute = compute
        self._source_of = source_of
        self.latest = None

    def __call__(self, *args):
        return self._compute(self, *args)

    @property
    def source(self) -> str:
        if self.latest is not None:
            return self.latest.source
        if self._source_of is not None:
            return self._source_of.source
        raise AutodiffError(f"{self.__name__} is generated for the types of its arguments: "
                            "call it once, then read .source")


def jacfwd(fun, argnums=0, width=8, has_aux=False, checkpoint=None,
           fastmath=False) -> JacobianFunction:
    """The Jacobian of ``fun`` by forward mode: ``jacfwd(fun, argnums)(*args)``.

    Vector mode: each pass pushes ``width`` basis directions at once (the last pass is padded
    with zero directions, so one variant is compiled). For an output of shape ``S`` and an
    argument of shape ``A`` the Jacobian has shape ``S + A``; a tuple ``argnums`` gives a tuple,
    a tuple output a tuple (one entry per output). ``fun`` may be a derivative:
    ``jacfwd(grad(f))`` is the Hessian (forward over reverse). ``has_aux``: ``fun`` returns
    ``(out, aux)``; the result is ``(jacobian, aux)``. ``fastmath``: as for :func:`.grad`;
    ``checkpoint``: for a derivative ``fun``, that of its reverse sweep (for a function,
    nothing: forward mode keeps no tape).
    """
    inner, checkpoint = remat.resolve(fun, checkpoint)
    if isinstance(inner, Derivative) and not inner.source_level:
        inner.refuse_composition("jacfwd")

    def jacobian(owner, *args):
        value, blocks = _jacobian(inner, args, argnums, width, checkpoint, fastmath, owner,
                                  aux=has_aux)
        if has_aux:
            _check_aux_pair(value, "jacfwd", inner)
            return blocks[0], value[1]
        return blocks

    return JacobianFunction(fun, "jacfwd", jacobian, checkpoint=checkpoint, fastmath=fastmath)


def _jacobian(fun, args, argnums, width: int, checkpoint, fastmath: bool, owner=None,
              aux: bool = False, run=None) -> tuple:
    """``(fun(*args), Jacobian blocks)`` by vector-mode forward passes (see :func:`jacfwd`)."""
    wrt = resolved_argnums(argnums, len(args), f"{len(args)} arguments")
    for k in wrt:
        if not _differentiable(args[k]):
            raise TypeError(f"jacfwd cannot differentiate with respect to argument {k} of "
                            f"type {type(args[k]).__name__}: pass a float or a float array")
    sizes = [int(np.size(args[k])) for k in wrt]
    offsets = [sum(sizes[:n]) for n in range(len(wrt))]
    total = sum(sizes)
    lanes_per_pass = max(1, min(width, total))
    columns, finals, value = [], {}, None
    for start in range(0, total, lanes_per_pass):
        lanes = [{k: _basis(args[k], start + lane - offset) for k, offset in zip(wrt, offsets)}
                 for lane in range(lanes_per_pass)]
        value, tangents = _forward_pass(fun, list(args), lanes, fastmath, finals, checkpoint,
                                        owner, run)
        columns += tangents
    columns = columns[:total]
    _copy_finals(args, finals)                  # each pass started from the caller's arrays
    if aux:
        columns = [c[0] if isinstance(c, tuple) else c for c in columns]
    blocks = _stacked(columns, [np.shape(args[k]) for k in wrt], offsets, sizes)
    if not isinstance(argnums, (tuple, list)):
        blocks = _map_leaves(lambda per_argument: per_argument[0], blocks)
    if aux:
        blocks = (blocks,)
    return value, blocks


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


class GradOfDerivative(Derivative):
    """``grad(d, argnums)`` of a derivative ``d`` (``grad(grad(f))``): forward mode over the
    generated code of ``d`` (:meth:`Derivative.lower`), one vector-mode pass per ``width``
    input elements; ``d`` must have a scalar output at the arguments given (with
    ``jacobian=True``, any output: the Jacobian, as ``jacfwd``, which ``hessian`` of a
    derivative uses). Its options apply to the whole: ``fastmath`` to the forward code and to
    ``d``, ``checkpoint`` to the reverse sweep inside ``d`` (see :func:`with_inner_options`).
    It lowers in turn (one pass of all directions), so ``grad(grad(grad(f)))`` and
    ``hessian(grad(f))`` are forward over forward over reverse."""

    offloadable = True

    def __init__(self, derived: Derivative, argnums=0, with_value=False, checkpoint=None,
                 fastmath=False, has_aux=False, jacobian=False):
        self.kind = "jacfwd" if jacobian else "value_and_grad" if with_value else "grad"
        if has_aux:
            raise AutodiffError(f"has_aux applies to a function returning (output, aux); "
                                f"{derived.__name__} is a derivative", construct="has_aux",
                                function=derived.function_name)
        derived.refuse_composition(self.kind)
        inner = with_inner_options(derived, checkpoint, fastmath)
        super().__init__(inner, checkpoint=inner.checkpoint, fastmath=fastmath,
                         name_of=derived)
        self.argnums, self.with_value, self.scalar = argnums, with_value, not jacobian
        self.latest = None

    @property
    def parameters(self) -> list[str]:
        return self.primal.parameters

    @property
    def source(self) -> str:
        if self.latest is None:
            raise AutodiffError(f"{self.__name__} is generated for the types of its "
                                "arguments: call it once, then read .source")
        return self.latest.source

    def _refuse_output(self, value) -> None:
        if self.scalar and (isinstance(value, tuple) or np.ndim(value) != 0):
            raise AutodiffError(f"grad of {self.primal.__name__} needs a scalar output, got "
                                f"{'a tuple' if isinstance(value, tuple) else np.shape(value)}; "
                                "use jacfwd (or hessian) for a gradient that is an array",
                                construct="non-scalar output", function=self.function_name)

    def __call__(self, *args):
        value, gradient = _jacobian(self.primal, args, self.argnums, 8, None, self.fastmath,
                                    self, run=self.runner)
        self._refuse_output(value)
        if self.scalar:
            gradient = tuple(map(_float_if_scalar, gradient)) \
                if isinstance(gradient, tuple) else _float_if_scalar(gradient)
        return (value, gradient) if self.with_value else gradient

    def lower_refusal(self) -> str | None:
        return None

    def lower(self, args) -> Lowered:
        """This derivative at ``args`` as ONE forward pass over ``self.primal``'s lowered
        code, with a direction per element of the arguments differentiated."""
        low = self.primal.lower(args)
        primals = low.primals
        wrt = resolved_argnums(self.argnums, len(primals), f"{len(primals)} arguments")
        for k in wrt:
            if not _differentiable(primals[k]):
                raise TypeError(f"{self.kind} cannot differentiate with respect to argument {k} "
                                f"of type {type(primals[k]).__name__}: pass a float or a float "
                                "array")
        sizes = [int(np.size(primals[k])) for k in wrt]
        offsets = [sum(sizes[:n]) for n in range(len(wrt))]
        width = max(1, sum(sizes))
        lanes = [{k: _basis(primals[k], j - offset) for k, offset in zip(wrt, offsets)}
                 for j in range(width)]
        duals = [k in low.outputs or (origin is not None and origin in lanes[0])
                 for k, origin in enumerate(low.origins)]
        argtypes = tuple(typeof_value(v) for v in low.arguments)
        variant = program.forward_variant(low.dispatcher.py_func, argtypes, duals, True, width,
                                          fastmath=self.fastmath)
        self.latest = variant
        call, origins, outputs, at, tangent_at = [], [], [], [], {}
        for k, (value, origin) in enumerate(zip(low.arguments, low.origins)):
            at.append(len(call))
            if k in low.outputs:
                outputs.append(len(call))
            call.append(value)
            origins.append(origin)
            if variant.duals[k]:
                tangent_at[k] = []
                for lane in lanes:
                    tangent_at[k].append(len(call))
                    if k in low.outputs:
                        outputs.append(len(call))
                    call.append(np.zeros_like(value) if origin is None or origin not in lane
                                else np.asarray(lane[origin], dtype=value.dtype).copy()
                                if isinstance(value, np.ndarray) else float(lane[origin]))
                    origins.append(None)
        inner_assemble, argnums, with_value = low.assemble, self.argnums, self.with_value
        shapes, scalar, refuse = [np.shape(primals[k]) for k in wrt], self.scalar, \
            self._refuse_output

        def assemble(out, arguments):
            base = [arguments[p] for p in at]
            value = inner_assemble(out[0] if variant.result_dual else out, base)
            refuse(value)
            columns = []
            for j in range(width):
                lane_arguments = [arguments[tangent_at[k][j]] if k in tangent_at
                                  else _zero_tangent(v) for k, v in enumerate(base)]
                tangent = out[1 + j] if variant.result_dual else _zero_tangent(out)
                columns.append(np.asarray(inner_assemble(tangent, lane_arguments),
                                          dtype=np.float64))
            stacked = np.stack(columns, axis=-1)
            blocks = tuple(stacked[..., o:o + n].reshape(np.shape(value) + shape)
                           for o, n, shape in zip(offsets, sizes, shapes))
            if scalar:
                blocks = tuple(map(_float_if_scalar, blocks))
            gradient = blocks if isinstance(argnums, (tuple, list)) else blocks[0]
            return (value, gradient) if with_value else gradient

        return Lowered(variant.dispatcher, call, origins, outputs, assemble, primals,
                       low.writes, variant)


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
