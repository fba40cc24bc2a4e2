"""The forward sweep kept: a reverse variant split in its two sweeps, run once forward and
backward as often as asked (JAX's residuals, Enzyme's split mode).

A reverse variant (:func:`nbautodiff.pipeline.program.reverse_variant`) is one function: a
prologue, the forward sweep (the primal, pushing onto the tape), then the reverse sweep, which
starts where the seed is first read. :func:`split` cuts its generated code there, at the top
level, into

* ``<variant>__fwd(primal arguments)``: the prologue and forward sweep, returning its residuals:
  every local the reverse sweep reads before writing (the tape and its top, the primal values
  and arrays it restores from, the result, the zeroed adjoints and shadows of locals);
* ``<variant>__bwd(the variant's arguments, residuals)``: the reverse sweep, returning what the
  variant returns.

Nothing in the forward part reads a seed or a shadow argument (that is where the cut is), so
the residuals are the same for every seed: :class:`KeptForward` runs ``__fwd`` once and
``__bwd`` once per seed. A reverse sweep changes some of its residual arrays (it pops values
back into arrays, accumulates into the shadows of locals, and a checkpointed sweep writes its
tape again): :class:`KeptForward` keeps a copy of each array that ``__bwd`` may write (any use
but reading elements, shapes, or the read operand of a runtime helper) and puts it back before
every sweep after the first. Scalars are passed by value. The cut is made on the generated text
(after the pipeline has run), so the generated code of every other artifact is unchanged.

:meth:`KeptForward.reverse_lanes` runs N seeds in one compiled call, with the shadows and seeds
stacked along a first axis; it is what ``reverse(..., width=N)`` and ``jacrev`` (``width``
cotangents per call) run. That call is ``<variant>__vec``, ONE reverse sweep carrying N
adjoint lanes (Enzyme's batched reverse): ``__bwd`` rewritten so that its primal work runs once
and its adjoint statements once per lane (:mod:`nbautodiff.transforms.reverse.vector`; the
adjoint residuals get one copy per lane, the others are put back once before it). Where the
sweep cannot be rewritten (``vector_refused`` says why), it is ``<variant>__lanes``: a loop over
the seeds, each a reverse sweep from the residuals (put back between them).

Where a variant cannot be split (a residual numba cannot give back to Python unchanged, such as
a list, or a result the forward part does not compute) :class:`KeptForward` keeps copies of the
arguments instead and runs the whole variant for each seed (``residuals_kept`` is False).

:data:`SWEEPS` counts the forward and reverse sweeps run here, a vector sweep as one (the
instrumentation behind ``benchmarks/jacrev_sweeps.py``).
"""
from __future__ import annotations

import ast
import collections
import threading
from dataclasses import dataclass

import numpy as np

from nbautodiff import cache, naming
from nbautodiff.analysis import typeinfer
from nbautodiff.codegen import parameters
from nbautodiff.errors import AutodiffError, NotSplittable, NotVectorizable, numba_reason
from nbautodiff.transforms.reverse import vector

#: forward and reverse sweeps run since the process started (or since :func:`reset_sweeps`)
SWEEPS: collections.Counter = collections.Counter()

#: False: N seeds always run as a loop of N sweeps (``benchmarks/jacrev_sweeps.py`` times both)
VECTOR_SWEEPS = True

_lock = threading.RLock()
_splits: dict = {}


def reset_sweeps() -> None:
    SWEEPS.clear()


@dataclass(eq=False)
class SplitVariant:
    """A reverse variant cut in its two sweeps (see the module docstring)."""
    forward: object               # compiled: (primal arguments) -> residuals
    reverse: object               # compiled: (variant arguments, extra residuals) -> its return
    residuals: list               # names of the residuals, in the order __fwd returns them
    arguments: list               # names of the variant's arguments
    primal_positions: list        # positions among them of the primal arguments
    in_arguments: dict            # residual index -> position among the arguments it replaces
    extra: list                   # residual indices passed after the arguments
    written: list                 # per residual: whether __bwd may write it (an array)
    source: str                   # the text of both functions
    name: str
    kinds: list = None            # per argument: "primal", "shadow" or "seed"
    key: object = None            # the cache key of its artifact
    namespace: dict = None        # the module both were loaded in
    lanes: dict = None            # snapshot paths -> the compiled loop over seeds (see below)
    vectors: dict = None          # argument types -> its VectorSweep, or why there is none


def split(variant) -> SplitVariant | None:
    """``variant`` cut in its two sweeps, or None where it cannot be (memoised per variant)."""
    with _lock:
        if variant in _splits:
            return _splits[variant]
        try:
            made = _split(variant)
        except (AutodiffError, SyntaxError, ValueError, KeyError):
            made = None
        _splits[variant] = made
        return made


def refuse_split(variant) -> None:
    """Remember that ``variant``'s residuals cannot come back to Python unchanged."""
    with _lock:
        _splits[variant] = None


def _split(variant) -> SplitVariant | None:
    module = ast.parse(variant.source)
    function = next((node for node in module.body if isinstance(node, ast.FunctionDef)
                     and node.name == variant.name), None)
    if function is None:
        return None
    arguments = parameters(function)
    kinds = _argument_kinds(arguments, variant.shadows)
    if kinds is None:
        return None
    seed_or_shadow = {a for a, kind in zip(arguments, kinds) if kind != "primal"}
    body = list(function.body)
    cut = next((k for k, s in enumerate(body) if _loads(s, recursive=True) & seed_or_shadow),
               None)
    if cut is None:
        return None
    forward, backward = body[:cut], body[cut:]
    if any(isinstance(n, ast.Return) for s in forward for n in ast.walk(s)):
        return None
    assigned = {n.id for s in forward for n in ast.walk(s)
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    stacks = _empty_stacks(forward)
    if stacks is None:
        return None
    backward = [statement for name in sorted(stacks) for statement in stacks[name]] + backward
    live = _live_before(backward, set())
    residuals = sorted(live & assigned)
    if naming.RESULT in residuals and naming.RESULT in {
            n.id for s in backward for n in ast.walk(s)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}:
        return None
    position = {a: k for k, a in enumerate(arguments)}
    in_arguments = {k: position[r] for k, r in enumerate(residuals) if r in position}
    extra = [k for k, r in enumerate(residuals) if r not in position]
    written = [_may_write(backward, r) for r in residuals]
    primal_arguments = [a for a, kind in zip(arguments, kinds) if kind == "primal"]
    fwd_name, bwd_name = f"{variant.name}__fwd", f"{variant.name}__bwd"
    returned = ast.Tuple(elts=[ast.Name(id=r, ctx=ast.Load()) for r in residuals],
                         ctx=ast.Load())
    fwd = ast.FunctionDef(name=fwd_name, args=_arguments(primal_arguments),
                          body=forward + [ast.Return(value=returned)], decorator_list=[],
                          returns=None, type_params=[])
    bwd = ast.FunctionDef(name=bwd_name,
                          args=_arguments(arguments + [residuals[k] for k in extra]),
                          body=backward, decorator_list=[], returns=None, type_params=[])
    text = (f"# the forward and reverse sweeps of {variant.name}, kept apart by nbautodiff\n"
            "import math\nimport numpy as np\n\n"
            + ast.unparse(ast.fix_missing_locations(ast.Module(body=[fwd, bwd],
                                                                type_ignores=[]))) + "\n")
    loaded_from = variant.dispatcher.py_func.__globals__
    owner = cache.key_of(variant.dispatcher)
    key = cache.key("split reverse", owner if owner is not None else
                    cache.private_key("split reverse"), text)
    entry = cache.artifact(key, lambda: cache.Built(f"{variant.name}__split", text))
    namespace = entry.load({k: v for k, v in loaded_from.items()
                            if not (k.startswith("__") and k.endswith("__"))})
    return SplitVariant(entry.njit(namespace[fwd_name]), entry.njit(namespace[bwd_name]),
                        residuals, arguments,
                        [k for k, kind in enumerate(kinds) if kind == "primal"], in_arguments,
                        extra, written, text, variant.name, kinds, key, namespace, {}, {})


def _empty_stacks(forward: list) -> dict | None:
    """The lists the forward part makes (the reverse sweep's stacks of the arrays a name held,
    typed by ``L = [x]`` then ``L.pop()``): name -> those two statements, to run again at the
    start of the reverse part (the list is empty where the cut is, and numba gives lists back
    to Python as copies). None where a list is used otherwise (pushed onto before the cut)."""
    made = {}
    for s in forward:
        if isinstance(s, ast.Assign) and isinstance(s.value, ast.List) \
                and len(s.targets) == 1 and isinstance(s.targets[0], ast.Name):
            made[s.targets[0].id] = [s]
    for name, statements in made.items():
        for s in forward:
            if s is statements[0]:
                continue
            if name in {n.id for n in ast.walk(s) if isinstance(n, ast.Name)}:
                pop = isinstance(s, ast.Expr) and isinstance(s.value, ast.Call) \
                    and ast.unparse(s.value) == f"{name}.pop()" and len(statements) == 1 \
                    and len(statements[0].value.elts) == 1
                if not pop:
                    return None
                statements.append(s)
        if len(statements) != 2:
            return None
    return made


def _argument_kinds(arguments: list, shadows: list) -> list | None:
    """"primal", "shadow" or "seed" per argument of a variant, from its per-parameter shadow
    flags (the seeds come last)."""
    kinds, position = [], 0
    for has_shadow in shadows:
        if position >= len(arguments):
            return None
        kinds.append("primal")
        position += 1
        if has_shadow:
            kinds.append("shadow")
            position += 1
    kinds += ["seed"] * (len(arguments) - position)
    return kinds if len(kinds) == len(arguments) else None


def _arguments(names: list) -> ast.arguments:
    return ast.arguments(posonlyargs=[], args=[ast.arg(arg=n) for n in names], kwonlyargs=[],
                         kw_defaults=[], defaults=[])


# -- names read and live ---------------------------------------------------------------------------

def _loads(s: ast.AST, recursive: bool = False) -> set:
    """Names ``s`` reads: in its own expressions (a compound statement's header), or anywhere
    in it with ``recursive``."""
    if recursive or not isinstance(s, (ast.If, ast.For, ast.While)):
        nodes = ast.walk(s)
    elif isinstance(s, ast.For):
        nodes = ast.walk(s.iter)
    else:
        nodes = ast.walk(s.test)
    found = {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    if isinstance(s, ast.AugAssign) and isinstance(s.target, ast.Name):
        found.add(s.target.id)
    return found


def _stores(s: ast.stmt) -> set:
    """Names a simple statement (or a ``for`` header) binds."""
    targets = [s.target] if isinstance(s, (ast.For, ast.AugAssign, ast.AnnAssign)) else \
        getattr(s, "targets", [])
    return {n.id for t in targets for n in ast.walk(t)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def _live_before(body: list, live_after: set) -> set:
    live = set(live_after)
    for s in reversed(body):
        live = _live_before_statement(s, live)
    return live


def _live_before_statement(s: ast.stmt, live: set) -> set:
    if isinstance(s, ast.If):
        return _loads(s) | _live_before(s.body, live) | _live_before(s.orelse, live)
    if isinstance(s, (ast.For, ast.While)):
        header = _loads(s)
        jumps = any(isinstance(n, (ast.Break, ast.Continue)) for n in ast.walk(s))
        at_head = set(live)
        while True:                 # live at the loop head: after the loop, or in the body
            inner = _live_before(s.body, at_head | header) | _live_before(s.orelse, live)
            new = live | inner - (_stores(s) if isinstance(s, ast.For) else set())
            if jumps:               # a jump skips the rest of the body: keep all it reads
                new |= {n for t in s.body for n in _loads(t, recursive=True)}
            if new == at_head:
                return header | at_head
            at_head = new
    if isinstance(s, ast.Return):
        return _loads(s)
    return (live - _stores(s)) | _loads(s)


#: runtime helpers that only read some of their arguments (position -> read-only)
_READ_ONLY_ARGUMENTS = {
    f"{naming.TAPE_MODULE}.pop_array": {0, 1},
    f"{naming.TAPE_MODULE}.add_into": {1},
    f"{naming.TAPE_MODULE}.copy_into": {1},
    f"{naming.TAPE_MODULE}.trip_count": {0, 1, 2},
    f"{naming.CHECKPOINT_MODULE}.load_array": {0, 1},
    "len": {0},
    "range": {0, 1, 2},
}
_READ_ATTRIBUTES = {"shape", "size", "ndim", "nbytes", "dtype", "itemsize"}


def _may_write(body: list, name: str) -> bool:
    """Whether the statements ``body`` may change the contents of array ``name`` (any use but
    reading its elements or shape, or passing it where a runtime helper only reads)."""
    parents = {}
    for s in body:
        for node in ast.walk(s):
            for child in ast.iter_child_nodes(node):
                parents[child] = node
    for node in parents:
        if not (isinstance(node, ast.Name) and node.id == name):
            continue
        parent = parents[node]
        if isinstance(node.ctx, ast.Store):
            if isinstance(parent, ast.AugAssign):
                return True                 # ``a += b`` adds into the array a holds
            continue                        # rebinding the name leaves the array as it is
        if isinstance(parent, ast.Subscript) and parent.value is node \
                and isinstance(parent.ctx, ast.Load):
            continue
        if isinstance(parent, ast.Attribute) and parent.attr in _READ_ATTRIBUTES:
            continue
        if isinstance(parent, ast.Call) and node in parent.args:
            read_only = _READ_ONLY_ARGUMENTS.get(ast.unparse(parent.func), set())
            if parent.args.index(node) in read_only:
                continue
        if isinstance(parent, (ast.Compare, ast.BinOp, ast.UnaryOp, ast.BoolOp)):
            continue                        # an operand: read (elementwise ops make new arrays)
        return True
    return False


# -- running it ------------------------------------------------------------------------------------

def _returns_keepable(forward, arguments: list) -> bool:
    """Whether every residual ``forward`` returns for ``arguments`` comes back from numba as
    itself (an array, a number, None, a tuple of those; a list would come back as a copy, so
    the reverse sweeps would not share it), compiling it for their types (False if numba
    cannot)."""
    import numba
    from numba.core import errors as numba_errors
    argtypes = tuple(numba.typeof(a) for a in arguments)
    try:
        forward.compile(argtypes)
    except numba_errors.NumbaError:
        return False
    returned = forward.overloads[argtypes].signature.return_type
    return _keepable_type(returned)


def _keepable_type(typ) -> bool:
    from numba import types as nbtypes
    if isinstance(typ, nbtypes.BaseTuple):
        return all(_keepable_type(t) for t in typ.types)
    return isinstance(typ, (nbtypes.Array, nbtypes.Number, nbtypes.Boolean, nbtypes.NoneType,
                            nbtypes.Omitted))


class KeptForward:
    """The forward sweep of reverse ``variant`` run once at ``arguments`` (the variant's primal
    arguments, copies of those it writes: they end as the function leaves them); then
    :meth:`reverse` runs the reverse sweep for given shadows and seeds, as often as asked."""

    def __init__(self, variant, arguments: list):
        self.variant = variant
        self.arguments = list(arguments)
        self.split = split(variant)
        if self.split is not None and not _returns_keepable(self.split.forward, self.arguments):
            refuse_split(variant)
            self.split = None
        if self.split is None:
            raise NotSplittable()
        self.residuals = tuple(self.split.forward(*self.arguments))
        SWEEPS["forward"] += 1
        self._snapshots = None
        self.vector_refused = None

    @property
    def residuals_kept(self) -> bool:
        return self.split is not None

    @property
    def has_value(self) -> bool:
        return self.split is not None and naming.RESULT in self.split.residuals

    @property
    def value(self):
        """The function's result, as the forward sweep left it (arrays copied)."""
        value = self.residuals[self.split.residuals.index(naming.RESULT)]
        return _copied(value)

    def reverse(self, shadows: list, seeds: list):
        """The variant's return for ``shadows`` (per primal argument, an array or None) and
        ``seeds`` (its seed arguments); shadows accumulate the adjoints of arrays."""
        split = self.split
        if self._snapshots is None:              # as the forward sweep left them
            self.reverse_prepare()
        else:                                    # put back what the last sweep changed
            self._restore()
        call = _variant_call(self.arguments, shadows, seeds, split.arguments,
                             self.variant.shadows)
        for index, position in split.in_arguments.items():
            call[position] = self.residuals[index]
        call += [self.residuals[k] for k in split.extra]
        out = split.reverse(*call)
        SWEEPS["reverse"] += 1
        return out

    def reverse_lanes(self, shadows: list, seeds: list) -> list:
        """:meth:`reverse` for N seeds (``shadows[k]``, ``seeds[k]``: those of seed k) in ONE
        compiled call: one reverse sweep carrying N adjoint lanes (:func:`_vector_sweep`), or
        where the sweep cannot be rewritten (``vector_refused`` says why) a loop over the seeds,
        each a reverse sweep from the residuals, put back between them
        (:func:`_lanes_function`). Returns the N returns of the variant."""
        count = len(seeds)
        if count == 1:
            return [self.reverse(shadows[0], seeds[0])]
        first = self._snapshots is None
        if first:
            self.reverse_prepare()
        call, stacked_shadows = self._stacked_call(shadows, seeds)
        vector = self._vector(shadows, seeds, call)
        if vector is not None:
            outs = self._vector_call(vector, call, first, count)
        else:
            outs = self._lanes_call(call, first, count)
        for stacked, lanes in stacked_shadows:
            for k, lane in enumerate(lanes):
                np.copyto(lane, stacked[k])
        return outs

    def _stacked_call(self, shadows: list, seeds: list) -> tuple[list, list]:
        """The arguments of the sweep with each shadow and seed stacked over the N seeds, and
        the residuals in place (without the copies the loop of sweeps restores from); with the
        stacked shadows and the caller's lanes of each."""
        split = self.split
        primal = iter(range(len(self.arguments)))
        stacked_shadows, call = [], []
        seed_index = 0
        position_of_primal = [k for k, kind in enumerate(split.kinds) if kind == "primal"]
        for position, kind in enumerate(split.kinds):
            if kind == "primal":
                call.append(self.arguments[next(primal)])
            elif kind == "shadow":
                parameter = position_of_primal.index(position - 1)
                lanes = [lane[parameter] for lane in shadows]
                stacked = np.stack(lanes)
                stacked_shadows.append((stacked, lanes))
                call.append(stacked)
            else:
                call.append(np.stack([np.asarray(lane[seed_index]) for lane in seeds]))
                seed_index += 1
        for index, position in split.in_arguments.items():
            call[position] = self.residuals[index]
        call += [self.residuals[k] for k in split.extra]
        return call, stacked_shadows

    def _vector(self, shadows: list, seeds: list, call: list):
        """The vector sweep for this call's types, or None (``vector_refused`` says why)."""
        if not VECTOR_SWEEPS:
            self.vector_refused = "vector sweeps are turned off (residuals.VECTOR_SWEEPS)"
            return None
        single = _variant_call(self.arguments, shadows[0], seeds[0], None, self.variant.shadows)
        for index, position in self.split.in_arguments.items():
            single[position] = self.residuals[index]
        single += [self.residuals[k] for k in self.split.extra]
        found = _vector_sweep(self.split, single)
        if isinstance(found, str):
            self.vector_refused = found
            return None
        shared = _shared_lane_residual(self.split, found, call)
        if shared is not None:
            self.vector_refused = f"the adjoint {shared} shares memory with another argument"
            return None
        self.vector_refused = None
        return found

    def _vector_call(self, vector, call: list, first: bool, count: int) -> list:
        if not first:
            self._restore()
        call = list(call)
        for position in vector.lane_positions:
            call[position] = _lanes_of(call[position], count)
        out = vector.function(*call, count)
        SWEEPS["reverse"] += 1
        return [tuple(_lane(value, k) if lanes else value
                      for value, lanes in zip(out, vector.returned)) for k in range(count)]

    def _lanes_call(self, call: list, first: bool, count: int) -> list:
        function = _lanes_function(self.split, self._paths, len(self.variant.adjoint_positions))
        call = call + [copy for kept in self._snapshots for copy in kept]
        adjoints = [np.zeros(count) for _ in self.variant.adjoint_positions]
        memory = np.zeros(2, np.int64)
        value = function(*call, *adjoints, memory, not first, count)   # the last sweep's
        SWEEPS["reverse"] += count
        return [(value, *[float(a[k]) for a in adjoints], (int(memory[0]), int(memory[1])))
                for k in range(count)]

    def _restore(self) -> None:
        for (index, path), (copy,) in zip(self._paths, self._snapshots):
            np.copyto(_at(self.residuals[index], path), copy)

    def reverse_prepare(self) -> None:
        """Keep copies of the residual arrays a reverse sweep may write, as they are now."""
        self._paths = [(index, path) for index, (value, written)
                       in enumerate(zip(self.residuals, self.split.written)) if written
                       for path, array in _array_paths(value) if array.flags.writeable]
        self._snapshots = [[_at(self.residuals[index], path).copy()]
                           for index, path in self._paths]


def _array_paths(value, path: tuple = ()) -> list:
    if isinstance(value, tuple):
        return [found for k, v in enumerate(value) for found in _array_paths(v, path + (k,))]
    return [(path, value)] if isinstance(value, np.ndarray) else []


def _at(value, path: tuple):
    for k in path:
        value = value[k]
    return value


def _lanes_function(split: SplitVariant, paths: list, adjoints: int):
    """``<variant>__lanes(arguments with each shadow and seed stacked over N seeds, extra
    residuals, copies of the residual arrays a sweep may write, one array per scalar adjoint,
    memory, restore, N)``: for each seed k, the written residual arrays put back (from the
    second seed on, or from the first when ``restore``), then ``__bwd`` with shadow and seed
    k, its scalar adjoints stored at k; one compiled call for N reverse sweeps."""
    key = tuple(paths)
    made = split.lanes.get(key)
    if made is not None:
        return made
    parameters, call = [], []
    for position, kind in enumerate(split.kinds):
        name = f"_nad_p{position}"
        parameters.append(name)
        replaced = position in split.in_arguments.values()
        call.append(name if kind == "primal" or replaced else f"{name}[_nad_k]")
    residual_name = {index: f"_nad_p{position}" for index, position
                     in split.in_arguments.items()}
    for j, index in enumerate(split.extra):
        parameters.append(f"_nad_r{j}")
        call.append(f"_nad_r{j}")
        residual_name[index] = f"_nad_r{j}"
    restores = []
    for j, (index, path) in enumerate(paths):
        parameters.append(f"_nad_s{j}")
        target = residual_name[index] + "".join(f"[{k}]" for k in path)
        restores.append(f"{naming.TAPE_MODULE}.copy_into({target}, _nad_s{j})")
    parameters += [f"_nad_a{j}" for j in range(adjoints)] + ["_nad_m", "_nad_restore",
                                                           "_nad_lanes"]
    name = f"{split.name}__lanes"
    body = ["for _nad_k in range(_nad_lanes):"]
    if restores:
        body.append("    if _nad_k > 0 or _nad_restore:")
        body += [f"        {line}" for line in restores]
    body.append(f"    _nad_out = {split.name}__bwd({', '.join(call)})")
    body += [f"    _nad_a{j}[_nad_k] = _nad_out[{j + 1}]" for j in range(adjoints)]
    body += [f"    _nad_m[0] = _nad_out[{adjoints + 1}][0]",
             f"    _nad_m[1] = _nad_out[{adjoints + 1}][1]",
             "    _nad_value = _nad_out[0]",
             "return _nad_value"]
    text = (f"# the reverse sweep of {split.name} for N seeds, generated by nbautodiff\n\n\n"
            f"def {name}({', '.join(parameters)}):\n"
            + "\n".join(f"    {line}" for line in body) + "\n")
    entry = cache.artifact(cache.key("reverse lanes", split.key, text),
                           lambda: cache.Built(name, text))
    namespace = {k: v for k, v in split.namespace.items()
                 if not (k.startswith("__") and k.endswith("__"))}
    namespace[f"{split.name}__bwd"] = split.reverse
    made = split.lanes[key] = entry.njit(entry.load(namespace)[name])
    return made


@dataclass(eq=False)
class VectorSweep:
    """The reverse sweep of a split variant for N seeds at once (reverse vector mode,
    :mod:`nbautodiff.transforms.reverse.vector`): called like ``__bwd`` with each shadow and
    seed stacked over the lanes, the residuals at ``lane_positions`` given one copy per lane
    (:func:`_lanes_of`), and the lane count last."""
    function: object              # compiled
    lane_positions: list          # positions in the call of the adjoint residuals
    returned: list                # per element of the return: one value per lane?
    source: str


def _vector_sweep(split: SplitVariant, single: list):
    """The :class:`VectorSweep` of ``split`` for the types of ``single`` (the arguments of one
    sweep), or why there is none (memoised per types)."""
    import numba
    argtypes = tuple(numba.typeof(v) for v in single)
    with _lock:
        if argtypes not in split.vectors:
            try:
                split.vectors[argtypes] = _made_vector_sweep(split, argtypes)
            except NotVectorizable as refusal:
                split.vectors[argtypes] = refusal.reason
        return split.vectors[argtypes]


def _made_vector_sweep(split: SplitVariant, argtypes: tuple) -> VectorSweep:
    from numba.core import errors as numba_errors
    bwd_name = f"{split.name}__bwd"
    module = ast.parse(split.source)
    function = next(node for node in module.body
                    if isinstance(node, ast.FunctionDef) and node.name == bwd_name)
    try:
        types, _ = typeinfer.infer(split.reverse.py_func, argtypes)
    except numba_errors.NumbaError as error:
        raise NotVectorizable(f"numba could not type the reverse sweep: "
                              f"{numba_reason(error)}") from None
    names = parameters(function)
    lane_parameters = {a for a, kind in zip(split.arguments, split.kinds) if kind != "primal"}
    residual_names = set(split.residuals)
    adjoint = (naming.ADJOINT, naming.SHADOW)
    primal_names = {a for a, kind in zip(split.arguments, split.kinds) if kind == "primal"} \
        | {r for r in residual_names if not r.startswith(adjoint)}
    name = f"{split.name}__vec"
    made, returned, lanes = vector.vector_sweep(function, name, lane_parameters, primal_names,
                                                types)
    for index in split.in_arguments:
        if split.residuals[index] in lanes:
            raise NotVectorizable(f"the adjoint {split.residuals[index]} is also an "
                                         "argument")
    lane_positions = [k for k, p in enumerate(names)
                      if p in lanes and p in residual_names and k >= len(split.arguments)]
    text = (f"# the reverse sweep of {split.name} for N seeds at once, generated by "
            "nbautodiff\nimport math\nimport numpy as np\n\n"
            + ast.unparse(made) + "\n")
    entry = cache.artifact(cache.key("reverse vector", split.key, text),
                           lambda: cache.Built(name, text))
    namespace = {k: v for k, v in split.namespace.items()
                 if not (k.startswith("__") and k.endswith("__"))}
    return VectorSweep(entry.njit(entry.load(namespace)[name]), lane_positions, returned, text)


def _shared_lane_residual(split: SplitVariant, vector_sweep: VectorSweep,
                          call: list) -> str | None:
    """The name of an adjoint residual array that shares memory with another argument of the
    sweep (its lanes would be copies, no longer views of it), or None."""
    arrays = [(k, v) for k, v in enumerate(call) if isinstance(v, np.ndarray)]
    for position in vector_sweep.lane_positions:
        value = call[position]
        if not isinstance(value, np.ndarray):
            continue
        if any(k != position and np.may_share_memory(value, other) for k, other in arrays):
            return split.residuals[split.extra[position - len(split.arguments)]]
    return None


def _lanes_of(value, count: int):
    """``count`` copies of residual ``value`` stacked along a first axis (a scalar: an array)."""
    if isinstance(value, np.ndarray):
        return np.stack([value] * count)
    return np.full(count, value)


def _lane(value, k: int):
    """Lane ``k`` of a value the vector sweep returns one of per lane (a number as a Python
    number)."""
    item = value[k]
    return item.item() if np.ndim(item) == 0 else item


class Rerun:
    """The fallback of :class:`KeptForward`: copies of the arguments kept, the whole variant
    run for each seed (a forward sweep each time). With ``first_in_place`` the first run takes
    ``arguments`` themselves (the variant writes their final contents back, as one call does),
    the others copies of them as they were."""

    residuals_kept = False
    has_value = False
    split = None
    vector_refused = "the forward sweep is not kept (the variant cannot be split)"

    def __init__(self, variant, arguments: list, run=None, first_in_place: bool = False):
        self.variant = variant
        self.run = run or (lambda dispatcher, args: dispatcher(*args))
        self.arguments = list(arguments) if first_in_place else None
        self.saved = [v.copy() if isinstance(v, np.ndarray) else v for v in arguments]

    def reverse(self, shadows: list, seeds: list):
        if self.arguments is not None:
            inputs, self.arguments = self.arguments, None
        else:
            inputs = [v.copy() if isinstance(v, np.ndarray) else v for v in self.saved]
        call = _variant_call(inputs, shadows, seeds, None, self.variant.shadows)
        out = self.run(self.variant.dispatcher, call)
        SWEEPS["forward"] += 1
        SWEEPS["reverse"] += 1
        return out

    def reverse_lanes(self, shadows: list, seeds: list) -> list:
        return [self.reverse(s, z) for s, z in zip(shadows, seeds)]


def keep_forward(variant, arguments: list, run=None, first_in_place: bool = False):
    """A :class:`KeptForward` of ``variant`` at ``arguments``, or a :class:`Rerun` where the
    variant cannot be split or its compiled calls go through ``run`` (an offloaded derivative):
    the arguments are then left as they are until the first reverse sweep."""
    if run is None:
        try:
            return KeptForward(variant, arguments)
        except NotSplittable:
            pass
    return Rerun(variant, arguments, run, first_in_place)


def _variant_call(primals: list, shadows: list, seeds: list, names, flags: list) -> list:
    call = []
    for value, shadow, has in zip(primals, shadows, flags):
        call.append(value)
        if has:
            call.append(shadow)
    return call + list(seeds)


def _copied(value):
    if isinstance(value, tuple):
        return tuple(_copied(v) for v in value)
    return value.copy() if isinstance(value, np.ndarray) else value
