"""The public API: JAX-style ``grad``/``value_and_grad``/``vjp`` over Enzyme-style ``reverse``.

Derived functions compile lazily, once per argument types (like ``numba.njit``), and carry
``.primal`` (the user's function), ``.source`` (the generated code of the latest compiled
signature, or of a signature guessed from the source before the first call) and ``.memory``
(the tape and checkpoint bytes of the last call, :class:`nbautodiff.transforms.reverse.checkpointing.MemoryReport`; its total is
``.tape_bytes``). ``checkpoint=`` checkpoints the function's outermost loops that need a tape
(see :mod:`nbautodiff.transforms.reverse.checkpointing` and :func:`nbautodiff.frontend.checkpoint_markers.parse_option`).
Each is a :class:`~nbautodiff.api.derivative.Derivative`.

A :class:`Session` runs the forward sweep once and then the reverse sweep alone, per cotangent,
from the residuals kept (:mod:`.residuals`): ``vjp``'s pullback and ``jacrev``
(:mod:`.pullback`), ``grad(..., has_aux=True)`` and ``reverse(..., width=N)`` are built on it. ``hessian`` and ``grad`` of a derivative are forward
mode over its generated code (:mod:`.forward`).
"""
from __future__ import annotations

import ast
import numbers

import numpy as np
from numba import types as nbtypes

from nbautodiff.analysis import tuples, typeinfer
from nbautodiff.errors import AutodiffError, TapeMemoryError
from nbautodiff.frontend.source import specializes
from nbautodiff.pipeline import program
from nbautodiff.transforms.reverse.checkpointing import MemoryReport
from . import residuals
from .activities import Active, Const, Duplicated, DuplicatedOnly, REVERSE_ARGUMENT, has_shadow
from .derivative import (Derivative, GeneratedDerivative, Lowered, check_value, checked_return,
                         copy_back, is_float_array, refuse_derivative,
                         refuse_overlapping, resolved_argnums, typeof_value)
from .forward import GradOfDerivative, JacobianFunction, jacfwd

_RETURNS = {"Active": (True, True), "ActiveOnly": (True, False), "Const": (False, True),
            "DuplicatedOnly": (False, False)}


class ReverseFunction(GeneratedDerivative):
    """``reverse(fun, *activities, ret=..., width=1)``: Rust ``#[autodiff_reverse]`` calling convention.

    Call with each argument followed by its shadow where its activity is ``Duplicated`` or
    ``DuplicatedOnly``, and a seed last when ``ret`` is ``Active``/``ActiveOnly``. Returns the
    primal result (unless ``ret`` ends in ``Only``) then the adjoints of ``Active`` arguments;
    a single item is returned bare. Adjoints of arrays are added into their shadows. For a
    function returning a tuple the seed is a tuple too, nested like the result: a float or an
    array per differentiable element, None (or 0) for an int.

    ``width=N`` (vector mode, Enzyme's batched reverse): each Duplicated argument is followed by
    N shadows and the call ends with N seeds; the forward sweep runs once, then ONE reverse
    sweep from the residuals it kept carries the N adjoints, its primal work done once
    (:mod:`nbautodiff.transforms.reverse.vector`); where that sweep cannot be rewritten,
    ``.vector_refused`` says why after a call, and the reverse sweep runs once per seed
    (:mod:`.residuals`). Each Active argument's adjoint is a tuple of N.
    """

    vector_refused: str | None = None       # why the last width > 1 call ran N reverse sweeps

    kind = "reverse"
    scalar_output_for: str | None = None     # set by grad: a tuple or array result is refused
    requires_seed = True                    # vjp: a result without a derivative is allowed

    def __init__(self, fun, activities, ret="Active", checkpoint=None, fastmath=False, width=1):
        super().__init__(fun, checkpoint, fastmath)
        self.activities = self._checked_activities(activities, REVERSE_ARGUMENT, "reverse")
        self.ret = checked_return(ret, _RETURNS, "reverse")
        self.seeded, self.returns_primal = _RETURNS[self.ret]
        self.width = checked_width(width)

    def __call__(self, *args):
        primals, shadows, seeds = self._parsed(args)
        if self.width == 1:
            return self._run(primals, [s[0] if s else None for s in shadows],
                             seeds[0] if seeds else None)
        return self._run_lanes(primals, shadows, seeds)

    def _parsed(self, args) -> tuple[list, list, list]:
        """(primal values, per argument its shadows or None, the seeds) of a call."""
        names, fname, width = self.primal_parameters, self._func.__name__, self.width
        expected = len(names) + width * (sum(has_shadow(a) for a in self.activities)
                                         + self.seeded)
        if len(args) != expected:
            each = "its shadow" if width == 1 else f"its {width} shadows"
            seeds = "" if not self.seeded else ", then the seed" if width == 1 else \
                f", then {width} seeds"
            raise TypeError(f"{self.__name__}() takes {expected} arguments (each Duplicated "
                            f"argument followed by {each}{seeds}), got {len(args)}")
        primals, shadows, position = [], [], 0
        for act, name in zip(self.activities, names):
            value = check_value(args[position], name, fname)
            position += 1
            if act is Active and isinstance(value, np.ndarray):
                raise TypeError(f"argument '{name}' of {fname}() is an array: use Duplicated, "
                                "not Active")
            if act in (Duplicated, DuplicatedOnly):
                if not is_float_array(value):
                    raise TypeError(f"argument '{name}' of {fname}() is {type(value).__name__}"
                                    f"{'' if not isinstance(value, np.ndarray) else ' of ' + str(value.dtype)}: "
                                    "Duplicated needs a float32/float64 array")
                lane_shadows = []
                for _ in range(width):
                    shadow = args[position]
                    position += 1
                    if not is_float_array(shadow):
                        got = str(shadow.dtype) if isinstance(shadow, np.ndarray) else \
                            type(shadow).__name__
                        raise TypeError(f"shadow of argument '{name}' of {fname}() must be a "
                                        f"float array, got {got}")
                    if shadow.shape != value.shape:
                        raise ValueError(f"shadow of argument '{name}' of {fname}() must have "
                                         f"shape {value.shape}, got {shadow.shape}")
                    lane_shadows.append(shadow)
                shadows.append(lane_shadows)
            else:
                shadows.append(None)
            primals.append(value)
        seeds = list(args[position:]) if self.seeded else []
        refuse_overlapping(self._func, primals)
        return primals, shadows, seeds

    @property
    def parameters(self) -> list[str]:
        """What it is called with: each argument, its shadow(s), then the seed(s)."""
        lanes = [""] if self.width == 1 else [str(k) for k in range(self.width)]
        names = []
        for act, name in zip(self.activities, self.primal_parameters):
            names.append(name)
            if has_shadow(act):
                names += [f"d{lane}_{name}" for lane in lanes]
        return names + ([f"seed{lane}" for lane in lanes] if self.seeded else [])

    def _flags(self) -> list[bool]:
        return [a is not Const for a in self.activities]

    def _variant_for(self, primals) -> program.Variant:
        argtypes = tuple(typeof_value(v) for v in primals)
        variant = program.reverse_variant(self._func, argtypes, self._flags(), self.seeded,
                                          writeback=True, keep_value=self.returns_primal,
                                          checkpoint=self.checkpoint, fastmath=self.fastmath)
        result = variant.result_type
        if self.scalar_output_for and (tuples.is_tuple(result) or typeinfer.is_array(result)):
            what = "a tuple" if tuples.is_tuple(result) else "an array"
            raise AutodiffError(f"{self.scalar_output_for} requires a scalar output, but "
                                f"{self._func.__name__}() returns {what} ({result}): use "
                                "nad.vjp or nad.jacrev", construct="non-scalar output",
                                function=self._func.__name__)
        if self.scalar_output_for and self.seeded and not tuples.has_differentiable(result):
            returns = [n for n in ast.walk(self._fs.tree) if isinstance(n, ast.Return)]
            raise AutodiffError(f"{self.scalar_output_for} requires a float output, but "
                                f"{self._func.__name__}() returns {result}: an int or bool "
                                "result has no derivative (no cotangent: nad.jacrev gives None "
                                "for it, nad.vjp zero adjoints)", construct=f"{result} output",
                                lineno=returns[-1].lineno if returns else None,
                                filename=self._fs.filename, function=self._func.__name__)
        if self.requires_seed and self.seeded and not tuples.has_differentiable(result):
            raise TypeError(f"{self._func.__name__}() returns {variant.result_type}; ret=Active "
                            "needs a float (or float array) result: use ret='Const'")
        self._variant = variant
        return variant

    def _call_arguments(self, primals, shadows, seed, variant) -> list:
        call = []
        for value, shadow, has in zip(primals, shadows, variant.shadows):
            call.append(value)
            if has:
                call.append(shadow)
        if self.seeded:
            call += seed_call(seed, variant.result_type, self._func.__name__)
        return call

    def _run(self, primals, shadows, seed):
        variant = self._variant_for(primals)
        call = self._call_arguments(primals, shadows, seed, variant)
        try:
            out = self.run(variant.dispatcher, call)
        except TapeMemoryError as error:
            raise TapeMemoryError(error.message, construct=error.construct,
                                  function=self._func.__name__) from None
        self.memory = MemoryReport(*out[-1], tuple(variant.checkpointed))
        return self._returned(out, variant)

    def _returned(self, out, variant):
        items = list(out[1:-1])
        if self.returns_primal and variant.result_type != nbtypes.none:
            items.insert(0, out[0])
        if not items:
            return None
        return items[0] if len(items) == 1 else tuple(items)

    def _run_lanes(self, primals, shadows, seeds):
        """Vector mode: one forward sweep, then a reverse sweep per seed from its residuals."""
        variant = self._variant_for(primals)
        lanes = range(self.width)
        lane_seeds = [seed_call(seeds[lane], variant.result_type, self._func.__name__)
                      if self.seeded else [] for lane in lanes]
        try:
            kept = residuals.keep_forward(variant, primals, self.runner, first_in_place=True)
            outs = kept.reverse_lanes([[s[lane] if s else None for s in shadows]
                                       for lane in lanes], lane_seeds)
        except TapeMemoryError as error:
            raise TapeMemoryError(error.message, construct=error.construct,
                                  function=self._func.__name__) from None
        self.memory = MemoryReport(*outs[0][-1], tuple(variant.checkpointed))
        self.vector_refused = kept.vector_refused
        items = [tuple(out[k] for out in outs) for k in range(1, len(outs[0]) - 1)]
        if self.returns_primal and variant.result_type != nbtypes.none:
            items.insert(0, outs[0][0])
        if not items:
            return None
        return items[0] if len(items) == 1 else tuple(items)

    def lower_refusal(self) -> str | None:
        return None if self.width == 1 else \
            ("with width > 1 it runs the forward sweep, then one reverse sweep carrying the N "
             "seeds: two compiled calls, not one call of a variant")

    def lower(self, args) -> Lowered:
        """This derivative at ``args`` (values, shadows and seed, as it is called) as one call
        of its reverse variant: the shadows are outputs (adjoints are added into them)."""
        self.refuse_composition("a transform")
        primals, shadows, seeds = self._parsed(args)
        shadows = [s[0] if s else None for s in shadows]
        seed = seeds[0] if seeds else None
        variant = self._variant_for(primals)
        call = self._call_arguments(primals, shadows, seed, variant)
        origins, outputs, position, value_at = [], [], 0, []
        for act, has in zip(self.activities, variant.shadows):
            origins.append(position)
            value_at.append(position)
            position += 1
            if has_shadow(act):
                if has:
                    outputs.append(len(origins))
                    origins.append(position)
                position += 1
        seed_count = len(call) - len(origins)
        origins += [position] * seed_count if seed_count == 1 and not isinstance(seed, tuple) \
            else [None] * seed_count
        converted = list(args)
        for at, value in zip(value_at, primals):
            converted[at] = value
        returned = self._returned
        return Lowered(variant.dispatcher, call, origins, outputs,
                       lambda out, arguments: returned(out, variant), converted,
                       frozenset(value_at[i] for i in program.primal(self._func).writes),
                       variant)

    def _activity_signature(self) -> tuple[list[bool], bool, bool]:
        return self._flags(), self.seeded, self.returns_primal


def checked_width(width) -> int:
    if not isinstance(width, numbers.Integral) or isinstance(width, bool) or width < 1:
        raise AutodiffError(f"width must be a positive int, got {width!r}")
    return int(width)


def reverse(fun, *activities, ret="Active", checkpoint=None, fastmath=False,
            width=1) -> ReverseFunction:
    """Reverse mode with Enzyme/Rust activities; see :class:`ReverseFunction`. ``checkpoint``:
    checkpoint the outermost loops that need a tape (True or 'sqrt', a segment length K,
    'binomial' or ('binomial', S); see :func:`nbautodiff.frontend.checkpoint_markers.parse_option`).
    ``fastmath``: as for :func:`grad`. ``width``: N seeds per call (vector mode)."""
    refuse_derivative(fun, "reverse", "reverse mode over a derivative is not supported; "
                      "differentiate a derivative in forward mode (nad.jvp, nad.jacfwd, "
                      "nad.hessian, nad.grad of it)")
    return ReverseFunction(fun, activities, ret, checkpoint, fastmath, width)


class GradFunction(GeneratedDerivative):
    """``grad(fun, argnums)`` (and ``value_and_grad``): the gradient of a scalar-valued ``fun``.
    With ``has_aux`` ``fun`` returns ``(value, aux)``: the result is ``(gradient, aux)``
    (``((value, aux), gradient)`` for ``value_and_grad``), aux as ``fun`` returned it."""

    def __init__(self, fun, argnums=0, with_value=False, checkpoint=None, fastmath=False,
                 has_aux=False):
        self.kind = "value_and_grad" if with_value else "grad"
        super().__init__(fun, checkpoint, fastmath)
        self.tuple_result = isinstance(argnums, (tuple, list))
        count = len(self.primal_parameters)
        self.argnums = resolved_argnums(argnums, count,
                                         f"{self._func.__name__}() with {count} parameters")
        self.with_value = with_value
        self.has_aux = bool(has_aux)

    def __call__(self, *args):
        if self.has_aux:
            return self._call_with_aux(args)
        low = self.lower(args)
        try:
            out = self.run(low.dispatcher, low.arguments)
        except TapeMemoryError as error:
            raise TapeMemoryError(error.message, construct=error.construct,
                                  function=self._func.__name__) from None
        self.memory = MemoryReport(*out[-1], tuple(low.variant.checkpointed))
        copy_back(low.primals, low)
        return low.assemble(out, low.arguments)

    def _activities(self, primals: list) -> list:
        """Per argument: Duplicated (a float array), Active (a float) or Const (not in argnums)."""
        names, fname = self.primal_parameters, self._func.__name__
        activities = []
        for i, value in enumerate(primals):
            if i not in self.argnums:
                activities.append(Const)
            elif is_float_array(value):
                activities.append(Duplicated)
            elif isinstance(value, (float, np.floating)):
                activities.append(Active)
            else:
                raise TypeError(f"cannot differentiate {fname}() with respect to argument "
                                f"'{names[i]}' of type {type(value).__name__}"
                                f"{' ' + str(value.dtype) if isinstance(value, np.ndarray) else ''}"
                                ": pass a float or a float array")
        return activities

    def lower_refusal(self) -> str | None:
        return "with has_aux it returns a pair, not one compiled call's result" \
            if self.has_aux else None

    def lower(self, args) -> Lowered:
        """This gradient at ``args`` as one call of its generated reverse variant."""
        self.refuse_composition("a transform")
        primals = self.checked_arguments(args)
        activities = self._activities(primals)
        derived = ReverseFunction(self._func, activities,
                                  "Active" if self.with_value else "ActiveOnly", self.checkpoint,
                                  self.fastmath)
        derived.scalar_output_for = self.kind
        variant = derived._variant_for(primals)
        self._variant = variant
        prim = program.primal(self._func)
        arguments, origins, shadow_at = [], [], {}
        for i, (value, activity) in enumerate(zip(primals, activities)):
            arguments.append(value.copy() if i in prim.writes and isinstance(value, np.ndarray)
                             else value)
            origins.append(i)
            if activity is Duplicated:
                shadow_at[i] = len(arguments)
                arguments.append(np.zeros_like(value))
                origins.append(None)
        arguments.append(1.0)
        origins.append(None)
        argnums, with_value, tuple_result = self.argnums, self.with_value, self.tuple_result

        def assemble(out, args):
            scalars = iter(out[1:-1])
            grads = {i: (args[shadow_at[i]] if i in shadow_at else next(scalars))
                     for i in sorted(argnums)}
            gradient = tuple(grads[i] for i in argnums) if tuple_result else grads[argnums[0]]
            return (out[0], gradient) if with_value else gradient

        return Lowered(variant.dispatcher, arguments, origins, sorted(shadow_at.values()),
                       assemble, primals, frozenset(prim.writes), variant)

    def _call_with_aux(self, args):
        primals = self.checked_arguments(args)
        activities = self._activities(primals)
        derived = ReverseFunction(self._func, activities, "Active", self.checkpoint,
                                  self.fastmath)
        if self.runner is not None:
            derived = derived.offloaded(self.runner)
        session = Session(derived, primals, activities, has_aux=self.kind)
        self._variant = session.variant
        value, aux = session.value
        if not isinstance(value, (float, np.floating)):
            raise AutodiffError(f"{self.kind} with has_aux requires {self._func.__name__}() to "
                                f"return (a float, aux), got a {type(value).__name__} first",
                                construct="non-scalar output", function=self._func.__name__)
        adjoints = session.pullback(1.0)
        self.memory = session.memory
        grads = {i: adjoints[i] for i in self.argnums}
        gradient = tuple(grads[i] for i in self.argnums) if self.tuple_result \
            else grads[self.argnums[0]]
        return ((value, aux), gradient) if self.with_value else (gradient, aux)

    def _activity_signature(self) -> tuple[list[bool], bool, bool]:
        return [i in self.argnums for i in range(len(self.primal_parameters))], True, \
            self.with_value or self.has_aux


class Session:
    """A reverse variant's forward sweep run once at some arguments (the caller's arrays left
    as the function leaves them), and its pullback: a reverse sweep per cotangent."""

    def __init__(self, derived: ReverseFunction, primals: list, activities: list,
                 has_aux: str | None = None):
        derived.requires_seed = False
        self.derived, self.activities, self.has_aux = derived, activities, has_aux
        fname = derived.function_name
        self.variant = variant = derived._variant_for(primals)
        result = variant.result_type
        if has_aux and not (tuples.is_tuple(result) and len(result.types) == 2):
            raise AutodiffError(f"{has_aux} with has_aux=True requires {fname}() to return a "
                                f"pair (output, aux), but it returns {result}",
                                construct="has_aux", function=fname)
        self.seeded_type = result.types[0] if has_aux else result
        prim = program.primal(derived.target)
        work = [v.copy() if i in prim.writes and isinstance(v, np.ndarray) else v
                for i, v in enumerate(primals)]
        self.memory = None
        self.kept = None
        if not tuples.has_differentiable(self.seeded_type):
            value = prim.dispatcher(*work)       # no derivative: zero adjoints, no sweep
        else:
            try:
                self.kept = residuals.keep_forward(variant, work, derived.runner)
            except TapeMemoryError as error:
                raise TapeMemoryError(error.message, construct=error.construct,
                                      function=fname) from None
            if not self.kept.residuals_kept:    # nothing ran yet: the primal on the copies
                value = prim.dispatcher(*work)
            elif self.kept.has_value and not specializes(derived.target):
                value = self.kept.value
            else:       # the reverse part computes it (a fused loop), or a batch, whose own
                value = prim.dispatcher(*[v.copy() if isinstance(v, np.ndarray) else v
                                          for v in primals])   # call checks for races
        for i in prim.writes:                    # the caller's arrays, as the function leaves them
            if isinstance(primals[i], np.ndarray) and work[i] is not primals[i]:
                np.copyto(primals[i], work[i])
        self.full_value = value
        self.value = value
        self.output = value[0] if has_aux else value
        self.primals = primals

    def pullback(self, cotangent):
        """One adjoint per primal for ``cotangent`` (checked against the output)."""
        return self.pullbacks([cotangent])[0]

    def pullbacks(self, cotangents: list) -> list:
        """:meth:`pullback` of each of ``cotangents``: their reverse sweeps in one compiled
        call (:meth:`.residuals.KeptForward.reverse_lanes`)."""
        cotangents = [cotangent_like(self.output, c) for c in cotangents]
        if self.kept is None:                    # only ints: no cotangent, zero adjoints
            return [tuple(np.zeros_like(v) if a is Duplicated else 0.0 if a is Active else None
                          for v, a in zip(self.primals, self.activities)) for _ in cotangents]
        fname = self.derived.function_name
        seeds = [seed_call((c, zero_cotangent(self.full_value[1])) if self.has_aux else c,
                           self.variant.result_type, fname) for c in cotangents]
        shadows = [[np.zeros_like(v) if a is Duplicated else None
                    for v, a in zip(self.primals, self.activities)] for _ in cotangents]
        try:
            if len(cotangents) == 1:
                outs = [self.kept.reverse(shadows[0], seeds[0])]
            else:
                outs = self.kept.reverse_lanes(shadows, seeds)
        except TapeMemoryError as error:
            raise TapeMemoryError(error.message, construct=error.construct,
                                  function=fname) from None
        self.memory = MemoryReport(*outs[-1][-1], tuple(self.variant.checkpointed))
        found = []
        for out, lane in zip(outs, shadows):
            scalars = iter(out[1:-1])
            found.append(tuple(lane[i] if a is Duplicated else next(scalars) if a is Active
                               else None for i, a in enumerate(self.activities)))
        return found

    @property
    def residuals_kept(self) -> bool:
        return self.kept is None or self.kept.residuals_kept

    @property
    def vector_refused(self) -> str | None:
        """Why N cotangents ran as N reverse sweeps, not one sweep carrying N adjoint lanes
        (None where the vector sweep ran, or none was asked for yet)."""
        return None if self.kept is None else self.kept.vector_refused

    @property
    def source(self) -> str:
        split = None if self.kept is None else self.kept.split
        return split.source if split is not None else self.variant.source


def seed_call(seed, typ, fname: str) -> list:
    """The seed arguments of a reverse variant whose result has type ``typ``: for a tuple see
    :func:`seed_arguments`; otherwise the seed itself (an array, or as a float)."""
    if tuples.is_tuple(typ):
        return seed_arguments(seed, typ, fname)
    return [seed if isinstance(seed, np.ndarray) else float(seed)]


def seed_arguments(seed, typ, fname: str, where: str = "the seed") -> list:
    """The seed arguments of a reverse variant whose result has tuple type ``typ``: one per
    differentiable element (see :func:`nbautodiff.analysis.tuples.seeded_leaves`), taken from ``seed``, nested
    like the result, where the elements that are not differentiable take None or 0."""
    if tuples.is_tuple(typ):
        count = len(typ.types)
        if not isinstance(seed, (tuple, list)) or len(seed) != count:
            got = f"{len(seed)} entries" if isinstance(seed, (tuple, list)) else \
                type(seed).__name__
            raise TypeError(f"{where} of {fname}() must be a tuple of {count} entries, one per "
                            f"element of its result ({typ}), got {got}")
        return [argument for k, (part, element) in enumerate(zip(seed, typ.types))
                for argument in seed_arguments(part, element, fname, f"{where}[{k}]")]
    typ = nbtypes.unliteral(typ)
    if not typeinfer.is_differentiable(typ):
        if seed is not None and not (np.ndim(seed) == 0 and seed == 0):
            raise TypeError(f"{where} of {fname}() belongs to an element of type {typ}, which "
                            "has no derivative: pass None (or 0)")
        return []
    if typeinfer.is_array(typ):
        value = np.asarray(seed) if seed is not None else None
        if value is None or value.ndim != typ.ndim or value.dtype.kind not in "fiu":
            raise TypeError(f"{where} of {fname}() must be an array of {typ.ndim} dimensions, "
                            f"like the element of its result, got {type(seed).__name__}")
        return [value if value.dtype.kind == "f" else value.astype(np.float64)]
    if not isinstance(seed, numbers.Real) or isinstance(seed, bool):
        raise TypeError(f"{where} of {fname}() must be a number, got {type(seed).__name__}")
    return [float(seed)]


def grad(fun, argnums=0, checkpoint=None, fastmath=False, has_aux=False) -> Derivative:
    """Gradient of scalar-valued ``fun`` w.r.t. ``args[argnums]`` (a tuple for tuple ``argnums``).

    ``checkpoint``: checkpoint the outermost loops that need a tape, so that T iterations of an
    N-element state take O(N sqrt(T)) memory instead of O(N T): True or 'sqrt' (segments of
    sqrt(T) iterations), an int K (segments of K), 'binomial' (revolve) or ('binomial', S) for
    S snapshots. ``.memory`` reports the bytes of the last call. A function marked with
    ``nad.checkpoint`` (``nad.remat``) is differentiated with ``checkpoint=True``.

    ``fastmath=True`` allows the derivative to reassociate floating-point sums: reduction loops
    that are dot products or matrix-vector/matrix-matrix products (``z += W[i, j] * h[j]``) are
    computed by BLAS, in both sweeps (see :mod:`nbautodiff.transforms.raising`). Results change in the last bits
    (the value, and the gradient, of a differently ordered sum); off by default.

    ``has_aux``: ``fun`` returns ``(value, aux)``; the result is ``(gradient, aux)`` (JAX).

    ``fun`` may itself be a derivative (``grad(grad(f))``): then forward mode over its
    generated code (see :class:`nbautodiff.api.forward.GradOfDerivative`; its options apply to
    the whole: ``fastmath`` to both, ``checkpoint`` to the reverse sweep inside)."""
    if isinstance(fun, Derivative) and not fun.source_level:
        return GradOfDerivative(fun, argnums, checkpoint=checkpoint, fastmath=fastmath,
                                has_aux=has_aux)
    return GradFunction(fun, argnums, checkpoint=checkpoint, fastmath=fastmath, has_aux=has_aux)


def value_and_grad(fun, argnums=0, checkpoint=None, fastmath=False,
                   has_aux=False) -> Derivative:
    """Like :func:`grad`, returning ``(fun(*args), gradient)`` (with ``has_aux``,
    ``((value, aux), gradient)``)."""
    if isinstance(fun, Derivative) and not fun.source_level:
        return GradOfDerivative(fun, argnums, with_value=True, checkpoint=checkpoint,
                                fastmath=fastmath, has_aux=has_aux)
    return GradFunction(fun, argnums, with_value=True, checkpoint=checkpoint, fastmath=fastmath,
                        has_aux=has_aux)


def cotangent_like(out, cotangent, where: str = "cotangent"):
    """``cotangent`` checked against the output ``out`` and converted: a float64 array of its
    shape for an array, a float for a float, for a tuple a tuple of those (None where an
    element has no derivative)."""
    if isinstance(out, tuple):
        if not isinstance(cotangent, (tuple, list)) or len(cotangent) != len(out):
            raise ValueError(f"{where} must be a tuple of {len(out)} entries, one per output, "
                             f"got {type(cotangent).__name__}"
                             + (f" of {len(cotangent)}" if isinstance(cotangent, (tuple, list))
                                else ""))
        return tuple(cotangent_like(o, c, f"{where}[{k}]")
                     for k, (o, c) in enumerate(zip(out, cotangent)))
    if not differentiable_output(out):
        if cotangent is not None and not (np.ndim(cotangent) == 0 and cotangent == 0):
            raise ValueError(f"{where} belongs to an output of type "
                             f"{getattr(out, 'dtype', type(out).__name__)}, which has no "
                             "derivative: pass None (or 0)")
        return None
    if isinstance(out, np.ndarray):
        cotangent = np.asarray(cotangent, dtype=np.float64)
        if cotangent.shape != out.shape:
            raise ValueError(f"{where} of shape {cotangent.shape} does not match the "
                             f"output's shape {out.shape}")
        return cotangent
    return float(cotangent)


def any_differentiable(out) -> bool:
    """Whether output ``out`` (a tuple nested to any depth) has a float or float array."""
    if isinstance(out, tuple):
        return any(any_differentiable(o) for o in out)
    return differentiable_output(out)


def differentiable_output(value) -> bool:
    return is_float_array(value) or (isinstance(value, (float, np.floating))
                                      and not isinstance(value, bool))


def zero_cotangent(out):
    if isinstance(out, tuple):
        return tuple(zero_cotangent(o) for o in out)
    if not differentiable_output(out):
        return None
    return np.zeros(out.shape) if isinstance(out, np.ndarray) else 0.0


def hessian(fun, argnums=0, checkpoint=None, fastmath=False) -> JacobianFunction:
    """The Hessian of scalar ``fun``: ``jacfwd(grad(fun, argnums), argnums)``, forward mode
    over the generated reverse code. For an argument of shape ``A`` it has shape ``A + A``; a
    tuple ``argnums`` gives nested tuples ``H[i][j]`` (as JAX). ``checkpoint``, ``fastmath``:
    those of the gradient (see :func:`grad`; forward mode over a checkpointed loop is refused,
    naming the loop). ``fun`` may be a derivative: ``hessian(grad(f))`` is third order, forward
    over forward over reverse (for an array argument of shape ``A``, of shape ``A + A + A``)."""
    if isinstance(fun, Derivative) and not fun.source_level:     # its Jacobian, lowered
        gradient = GradOfDerivative(fun, argnums, checkpoint=checkpoint, fastmath=fastmath,
                                    jacobian=True)
    else:
        gradient = grad(fun, argnums, checkpoint=checkpoint, fastmath=fastmath)
    inner = jacfwd(gradient, argnums)
    return JacobianFunction(fun, "hessian", lambda owner, *args: inner(*args),
                            checkpoint=gradient.checkpoint, fastmath=fastmath,
                            source_of=gradient)
