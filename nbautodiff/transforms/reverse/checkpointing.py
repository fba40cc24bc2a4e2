"""Checkpointed loops: a reverse pass through T iterations in O(sqrt(T)) (or less) memory.

A loop's reversal normally tapes what every iteration overwrites: O(N * T) values for T time
steps of an N-point state. A *checkpointed* loop tapes nothing in its forward sweep: it stores
the loop-carried state (see :func:`loop_state`) into slots at a few iterations; its reverse sweep
restores a slot, runs the following iterations again with the tape on and reverses them, one
segment at a time from the last. The schedule (which iterations get a slot, how segments are
re-run) is computed at run time by :mod:`nbautodiff.kernels.checkpoint`; this module generates
the code that follows it, from the transform's own forward and reverse code of the loop body,
so every other optimisation of the body (transposed stencils, local accumulation, recomputed
values) applies unchanged inside a checkpointed loop.

Which loops are checkpointed:

* the loops marked in the source, ``for t in nad.checkpointed(range(T)):`` (a marker that
  returns its argument, so the function still runs as plain Python and under ``numba.njit``).
  A call rather than a ``# nad: checkpoint`` comment: it is part of the syntax tree (comments
  are not, and formatters move them), so normalisation carries it to the loop it marks
  (annotation ``CHECKPOINT``) and errors point at it; it is resolved like any name (``nad.``,
  ``from nbautodiff import checkpointed``); and it takes arguments (``every=``,
  ``snapshots=``);
* with ``checkpoint=...`` on ``grad``/``value_and_grad``/``reverse`` (``%%autodiff
  --checkpoint``), every outermost ``for`` loop of the function that needs a tape.

A loop whose reversal needs no tape is left alone (there is nothing to save). A marker that
cannot apply is refused with an :class:`AutodiffError` at its line: on a loop nested in another
loop, on a loop left early by ``break``/``return`` (its trip count is not known at entry), on a
loop that binds an array variable to a new array (allocated or copied) in one iteration and uses
it in the next (checkpoints hold the contents and bindings of the loop's arrays; swapping them,
``u, unew = unew, u``, is supported).
"""
from __future__ import annotations

import ast
from typing import NamedTuple

import numba

from nbautodiff import annotations as anno, naming
from nbautodiff.analysis import typeinfer
from nbautodiff.analysis.activity import assigned_names, atom_name, own_reads, walk_statements
from nbautodiff.codegen import expr, parse
from nbautodiff.kernels import checkpoint as runtime, memory

from nbautodiff.frontend.checkpoint_markers import CONSTRUCT, Schedule

# ``rt`` below is the ReverseTransform writing the function: this module reads what the transform
# knows from its shared state ``rt.state`` (a .state.ReverseState) and asks it for the code of the
# loop body (``rt.forward``, ``rt.loop_body_backward``, ``rt.reservations``).


# -- which loops, and their state ----------------------------------------------------------------

def checkpointed_loops(rt, option: Schedule | None) -> dict:
    """``{id(loop): CheckpointedLoop}`` for the reverse transform ``rt``: the marked loops and,
    with ``option``, the outermost ``for`` loops, each when its reversal needs a tape."""
    loops = {}
    for loop, site in walk_statements(rt.state.tree.body):
        if not isinstance(loop, ast.For) or site.loop_depth:
            continue
        schedule = anno.get(loop, anno.CHECKPOINT, None) or option
        if schedule is None or not rt.has_reverse_work(loop) or not needs_tape(rt, loop):
            continue
        loops[id(loop)] = CheckpointedLoop(rt, loop, schedule)
    return loops


def needs_tape(rt, loop: ast.For) -> bool:
    """Whether the forward sweep of ``loop``'s iterations pushes anything onto the tape."""
    a = rt.state.a
    for s, _ in walk_statements(loop.body):
        if any(name in a.restored or (name in rt.state.rebound and isinstance(s, ast.Assign))
               for name in assigned_names(s)):
            return True
        if isinstance(s, ast.While) and rt.has_reverse_work(s):
            return True
        call = getattr(s, "value", None)
        if isinstance(call, ast.Call) and anno.get(call, anno.KIND) == "user" \
                and rt.call_needs_reverse(call) and rt.snapshot_arrays(call):
            return True
        if isinstance(s, ast.Assign) and any(rt.array_rule_snapshots(s)):
            return True
    return False


class LoopState(NamedTuple):
    """What a checkpoint of a loop holds: the contents of arrays (by a name bound to them during
    the loop), the bindings of the array variables the loop rebinds (``bound``: the arrays it
    swaps), and scalars."""
    arrays: list
    bound: list
    scalars: list


def loop_state(rt, loop: ast.For) -> LoopState:
    """The state a re-run of some of ``loop``'s iterations needs, as it was when they first ran.

    Arrays: those the loop writes, and those it reads that are written after it, except the
    ones it binds afresh in every iteration before using them; those it rebinds from one
    iteration to the next (swaps) have their bindings saved too. Scalars: those the loop
    assigns that are live at the start of an iteration or restored from the tape (the reverse
    sweep of the code before the loop reads their values at loop entry), and those it reads
    that are assigned after it. Refuses (located) a loop that carries an array variable bound
    to a new array (allocated, copied) from one iteration to the next, or that uses an array
    variable which code after the loop binds to another array untracked.
    """
    a = rt.state.a
    members = [s for s, _ in walk_statements(loop.body)]
    member_ids = {id(s) for s in members}
    end = max([a.order[id(s)] for s in members] + [a.order[id(loop)]])
    live = _carried(loop)
    assigned = {name for s in members for name in assigned_names(s)} - {loop.target.id}
    bound = sorted(name for name in assigned & live if a.is_array(name))
    fresh = _fresh_arrays(a, members)
    for s in members:
        for target in assigned_names(s) if isinstance(s, ast.Assign) else []:
            if not (target in bound and target in fresh):
                continue
            raise rt.state.fs.error(
                f"array variable '{target}' is bound to a new array in an iteration of a "
                "checkpointed loop and used in the next: checkpoints hold the loop's arrays, "
                "not new ones (allocate it before the loop and write into it, e.g. "
                f"'{target}[i] = ...'; swapping arrays, 'u, unew = unew, u', is fine)", s,
                construct=CONSTRUCT)
    later = [(s, site) for s, site in walk_statements(rt.state.tree.body)
             if a.order[id(s)] > end and id(s) not in member_ids]
    assigned_later = {name for s, _ in later for name in assigned_names(s)}
    written_later = {cls for s, cls in a.stores if a.order[id(s)] > end}
    written_inside = {cls for s, cls in a.stores if id(s) in member_ids}
    read = set(own_reads(loop)).union(*(own_reads(s) for s in members))
    arrays = []
    for name in sorted(read | {n for s in members for n in _written_arrays(rt, s)}):
        if not a.is_array(name) or name not in a.types or (name in assigned
                                                           and name not in bound):
            continue
        if name in assigned_later and name not in rt.state.rebound:
            raise rt.state.fs.error(
                f"array variable '{name}', used in a checkpointed loop, is bound to another "
                "array after it: the loop's reverse sweep could not find its contents again "
                "(use another name after the loop)", loop, construct=CONSTRUCT)
        if a.rep(name) in written_inside | written_later:
            arrays.append(name)
    scalars = sorted(name for name in (assigned & (live | a.restored)) | (read & assigned_later
                                                                           - assigned)
                     if name in a.types and not a.is_array(name)
                     and _is_scalar(a.types[name]))
    return LoopState(arrays, bound, scalars)


def _fresh_arrays(a, members: list) -> set[str]:
    """Array names bound in ``members`` to a new array (not an alias of a name), or to an alias
    of such a name."""
    aliases, fresh = [], set()
    for s in members:
        if isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Name) \
                and a.is_array(s.targets[0].id):
            if isinstance(s.value, ast.Name):
                aliases.append((s.targets[0].id, s.value.id))
            else:
                fresh.add(s.targets[0].id)
        elif isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Tuple):
            fresh |= {name for name in assigned_names(s) if a.is_array(name)}
    changed = True
    while changed:
        changed = False
        for target, source in aliases:
            if source in fresh and target not in fresh:
                fresh.add(target)
                changed = True
    return fresh


def _is_scalar(typ) -> bool:
    return isinstance(typ, (numba.types.Float, numba.types.Integer, numba.types.Boolean))


def _written_arrays(rt, s: ast.stmt) -> list[str]:
    """Array names ``s`` writes itself: a store's array, arrays a callee writes."""
    if isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Subscript):
        return [s.targets[0].value.id]
    call = getattr(s, "value", None)
    if isinstance(call, ast.Call) and anno.get(call, anno.KIND) == "user":
        return [atom_name(call.args[p]) for p in rt.state.callee_writes(call)
                if atom_name(call.args[p])]
    return []


def _carried(loop: ast.For) -> set[str]:
    """Names live at the start of an iteration of ``loop`` (read before any assignment in the
    iteration), for the iterations that follow it."""
    live: set[str] = set()
    while True:
        new = _live_before(loop.body, live) - {loop.target.id}
        if new == live:
            return live
        live = new


def _live_before(body: list, live_after: set) -> set:
    live = set(live_after)
    for s in reversed(body):
        live = _live_before_statement(s, live)
    return live


def _live_before_statement(s: ast.stmt, live: set) -> set:
    if isinstance(s, ast.If):
        return own_reads(s) | _live_before(s.body, live) | _live_before(s.orelse, live)
    if isinstance(s, (ast.For, ast.While)):
        header = own_reads(s)
        at_head = set(live)
        while True:                            # live at the loop head: after it, or in the body
            body = _live_before(s.body, at_head | (header if isinstance(s, ast.While) else set()))
            new = live | body - set(assigned_names(s) if isinstance(s, ast.For) else ())
            if new == at_head:
                return header | at_head
            at_head = new
    return (live - set(assigned_names(s))) | own_reads(s)


# -- generated code ------------------------------------------------------------------------------

_TAPE_NAMES = {naming.FLOAT_TAPE, naming.FLOAT_TOP, naming.INT_TAPE, naming.INT_TOP}


class CheckpointedLoop:
    """The forward and reverse code of one checkpointed loop (see the module docstring), built
    from the reverse transform ``rt``'s code for the loop body."""

    def __init__(self, rt, loop: ast.For, schedule: Schedule):
        self.rt, self.loop, self.schedule = rt, loop, schedule
        self.held = loop_state(rt, loop)            # what each checkpoint holds
        self.base = rt.state.fresh(naming.CHECKPOINT)
        self.buffers = {name: f"{self.base}_s_{name}" for name in      # s_, bind_: never a
                        self.held.arrays + self.held.scalars}         # control name (plan,
        self.bindings = {name: f"{self.base}_bind_{name}" for name in  # k, a...)
                         self.bound_names()}

    def name(self, part: str) -> str:
        return f"{self.base}_{part}"

    def bound_names(self) -> list[str]:
        """The rebound array variables and the shadows bound with them."""
        names = []
        for name in self.held.bound:
            names.append(name)
            if self.rt.state.a.is_active(name):
                names.append(naming.shadow(name))
        return names

    @property
    def line(self) -> int:
        return self.loop.lineno

    # -- forward sweep --------------------------------------------------------------------------
    def forward(self) -> list[ast.stmt]:
        """Plan, buffers, then the forward rows of the plan (slots and untaped iterations)."""
        rt, loop = self.rt, self.loop
        lo, hi, step = (ast.unparse(x) for x in loop.iter.args)
        plan, forward, slots = self.name("plan"), self.name("forward"), self.name("slots")
        lines = [f"{name} = {typeinfer.zero_literal(rt.state.type_of(name))}"
                 for name in self.held.scalars if not self.defined_before(name)]
        lines.append(f"{plan}, {forward}, {slots} = {naming.CHECKPOINT_MODULE}.plan("
                     f"{naming.TAPE_MODULE}.trip_count({lo}, {hi}, {step}), "
                     f"{self.schedule.kind}, {self.schedule.parameter})")
        sizes = []
        for name in self.held.arrays + self.held.scalars:
            kind = typeinfer.element_kind(rt.state.type_of(name))
            per_slot = f" * {name}.size" if name in self.held.arrays else ""
            lines.append(f"{self.buffers[name]} = {naming.CHECKPOINT_MODULE}.{kind}_buffer("
                         f"{slots}{per_slot})")
            sizes.append(f"{self.buffers[name]}.nbytes")
        if sizes:
            lines.append(f"{naming.CHECKPOINT_BYTES} += {' + '.join(sizes)}")
        lines += [f"{binding} = [{name} for _ in range({slots})]"
                  for name, binding in self.bindings.items()]
        rows = ast.For(target=_store(self.name("k")), iter=expr(f"range({forward})"),
                       body=self.dispatch(reverse=False), orelse=[])
        return parse("\n".join(lines)) + [ast.copy_location(rows, loop)]

    def defined_before(self, name: str) -> bool:
        """Whether a value of ``name`` reaches the loop: a parameter, a variable the prologue
        sets, or one assigned earlier in the function."""
        a = self.rt.state.a
        return name in self.rt.state.params or name in a.restored or any(
            a.order[id(s)] < a.order[id(self.loop)] for s in a.assignments.get(name, []))

    # -- reverse sweep --------------------------------------------------------------------------
    def backward(self) -> list[ast.stmt]:
        """The reverse rows of the plan: restores, re-runs, taped segments and their adjoints;
        then the rebound arrays and their shadows are bound as at loop entry (as the plain
        reversal, which pops their bindings, leaves them)."""
        rows = ast.For(target=_store(self.name("k")),
                       iter=expr(f"range({self.name('forward')}, {self.name('plan')}.shape[0])"),
                       body=self.dispatch(reverse=True), orelse=[])
        out = [ast.copy_location(rows, self.loop)]
        if self.bindings:
            entry = "\n".join(f"    {name} = {binding}[0]"
                               for name, binding in self.bindings.items())
            out += parse(f"if {self.name('plan')}.shape[0] > 0:\n{entry}")
        return out

    def dispatch(self, reverse: bool) -> list[ast.stmt]:
        """One row of the plan: ``if action == SAVE: ... elif ...``."""
        plan, k = self.name("plan"), self.name("k")
        start, stop, slot = self.name("a"), self.name("b"), self.name("slot")
        head = parse(f"{start} = {plan}[{k}, 1]\n{stop} = {plan}[{k}, 2]\n"
                     f"{slot} = {plan}[{k}, 3]")
        branches = [(runtime.SAVE, self.save(slot))]
        if not reverse or self.schedule.kind == runtime.BINOMIAL:   # segments are not advanced
            branches.append((runtime.ADVANCE, self.advance()))       # in the reverse sweep
        if reverse:
            branches += [(runtime.RESTORE, self.restore(slot)), (runtime.REVERSE, self.reverse())]
        chain = branches[-1][1]
        for action, body in reversed(branches[:-1]):
            chain = [ast.If(test=expr(f"{plan}[{k}, 0] == {action}"), body=body, orelse=chain)]
        return head + chain

    def save(self, slot: str) -> list[ast.stmt]:
        lines = [f"{binding}[{slot}] = {name}" for name, binding in self.bindings.items()]
        lines += [f"{self.buffers[name]} = {naming.CHECKPOINT_MODULE}.save_array("
                 f"{self.buffers[name]}, {slot}, {name})" for name in self.held.arrays]
        lines += [f"{self.buffers[name]}[{slot}] = "
                  f"{typeinfer.to_tape_source(name, self.rt.state.type_of(name))}"
                  for name in self.held.scalars]
        return parse("\n".join(lines) or "pass")

    def restore(self, slot: str) -> list[ast.stmt]:
        lines = [f"{name} = {binding}[{slot}]" for name, binding in self.bindings.items()]
        lines += [f"{naming.CHECKPOINT_MODULE}.load_array({self.buffers[name]}, {slot}, {name})"
                 for name in self.held.arrays]
        type_of = self.rt.state.type_of
        lines += [f"{name} = "
                  f"{typeinfer.from_tape_source(f'{self.buffers[name]}[{slot}]', type_of(name))}"
                  for name in self.held.scalars]
        return parse("\n".join(lines) or "pass")

    def iterations(self, body: list[ast.stmt], backwards: bool = False) -> ast.For:
        """``for r in range(a, b)`` (or from ``b - 1`` down to ``a``), setting the loop variable."""
        lo, _, step = (ast.unparse(x) for x in self.loop.iter.args)
        r, start, stop = self.name("r"), self.name("a"), self.name("b")
        bounds = f"{stop} - 1, {start} - 1, -1" if backwards else f"{start}, {stop}"
        head = parse(f"{self.loop.target.id} = {lo} + {r} * {step}")
        return ast.copy_location(ast.For(target=_store(r), iter=expr(f"range({bounds})"),
                                         body=head + body, orelse=[]), self.loop)

    def taped_body(self) -> tuple[list[ast.stmt], bool]:
        leaf = self.rt.reserves_at_entry(self.loop)
        return self.rt.forward(self.loop.body, depth=1, reserved=leaf), leaf

    def advance(self) -> list[ast.stmt]:
        body, _ = self.taped_body()
        return [self.iterations(_untaped(body))]

    def reverse(self) -> list[ast.stmt]:
        body, leaf = self.taped_body()
        out = self.rt.reservations(self.loop, f"{self.name('b')} - {self.name('a')}") \
            if leaf else []
        out.append(self.iterations(body))
        out.append(self.iterations(self.rt.loop_body_backward(self.loop), backwards=True))
        return out


def _untaped(body: list[ast.stmt]) -> list[ast.stmt]:
    """``body`` without its tape operations and the saving of array bindings (what the forward
    sweep of a checkpointed loop runs: the primal, with the shadows that follow bindings)."""
    out = []
    for s in body:
        if isinstance(s, ast.Expr) and isinstance(s.value, ast.Call) \
                and isinstance(s.value.func, ast.Attribute) and s.value.func.attr == "append" \
                and isinstance(s.value.func.value, ast.Name) \
                and s.value.func.value.id.startswith(naming.REFERENCES):
            continue
        target = s.targets[0] if isinstance(s, ast.Assign) else \
            s.target if isinstance(s, ast.AugAssign) else None
        if isinstance(target, ast.Subscript):
            target = target.value
        if isinstance(target, ast.Name) and target.id in _TAPE_NAMES:
            continue
        for field in ("body", "orelse"):
            inner = getattr(s, field, None)
            if inner:
                setattr(s, field, _untaped(inner))
        out.append(s)
    return out or [ast.Pass()]


def memory_source(rt) -> str:
    """Source of ``(tape bytes, checkpoint bytes)`` at the end of the generated function: the
    tapes' capacity (their peak: they only grow) plus the largest of a callee's calls."""
    tape = [f"{tape}.nbytes" for tape, kind in ((naming.FLOAT_TAPE, "float"),
                                                (naming.INT_TAPE, "int"))
            if kind in rt.state.tapes_used]
    if rt.state.callee_bytes_used:
        tape.append(naming.CALLEE_BYTES)
    checkpoints = naming.CHECKPOINT_BYTES if rt.state.checkpointed else "0"
    return f"({' + '.join(tape) or '0'}, {checkpoints})"


def prologue(rt) -> list[str]:
    """Lines the generated function starts with for its memory report."""
    lines = [f"{naming.CHECKPOINT_BYTES} = 0"] if rt.state.checkpointed else []
    if rt.state.callee_bytes_used:
        lines.append(f"{naming.CALLEE_BYTES} = 0")
    return lines


def _store(name: str) -> ast.Name:
    return ast.Name(id=name, ctx=ast.Store())


def describe(loops: dict) -> list[tuple[int, str]]:
    """``(line, schedule)`` of each checkpointed loop, for reports."""
    return sorted((c.line, c.schedule.describe()) for c in loops.values())



# -- the memory report of a call -----------------------------------------------------------------

class MemoryReport(NamedTuple):
    """Memory of the last call of a derived function: the peak size of its tapes (callees'
    included) and the bytes of its checkpoint buffers; ``checkpointed`` lists ``(line,
    schedule)`` of the loops that were checkpointed."""
    tape_bytes: int
    checkpoint_bytes: int
    checkpointed: tuple = ()

    @property
    def total_bytes(self) -> int:
        return self.tape_bytes + self.checkpoint_bytes

    def __str__(self) -> str:
        loops = "; ".join(f"loop at line {line}: {schedule}"
                          for line, schedule in self.checkpointed) or "no loop checkpointed"
        return (f"tape {memory.human(self.tape_bytes)} + checkpoints "
                f"{memory.human(self.checkpoint_bytes)} = {memory.human(self.total_bytes)} "
                f"({loops})")
