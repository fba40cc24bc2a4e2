"""Which loops the reverse sweep may run in their original order, and how to accumulate there.

A reversed loop normally runs its iterations backwards, because each iteration may pop values
the next one pushed and may pass adjoints to the iteration before it. When a loop's reversal
does neither, its iterations only *add* into adjoints that no other iteration reads, so any
order gives the same sums (up to floating-point reassociation). Running such a loop forwards
lets the compiler vectorise it like the primal, and lets the transform add into local
accumulators (:func:`accumulation_groups`) instead of storing into the same shadow element
several times per iteration.

:func:`any_order_loops` decides it, conservatively, on the normalised function. A loop
qualifies when, in the loop and every statement nested in it:

* nothing is popped from the tape (no restored variable or loop counter, no ``while``, no call
  of a user function, no array variable bound to a new array);
* every active scalar that the loop assigns is either local to one iteration (of the loop or of
  a loop nested in it: assigned at the top of that loop's body before any read, and read nowhere
  else) or an accumulator (``s = s + t`` / ``s = s - t`` and read by nothing else in the loop),
  whose adjoint the reversal leaves unchanged;
* an active array is either only read (its shadow is only added into) or only stored, and every
  store indexes it with the loop variable at the same position (iterations store to distinct
  elements, so each takes its own adjoint back).
"""
from __future__ import annotations

import ast

from nbautodiff import annotations as anno
from nbautodiff.analysis.activity import (Analysis, assigned_names, atom_name, names_in,
                                          own_reads, walk_statements)


def any_order_loops(tree: ast.FunctionDef, a: Analysis, updates: dict) -> set[int]:
    """ids of the ``for`` loops whose reversal may run in any order; see the module docstring.
    ``updates`` is :func:`accumulator_updates` of the function."""
    return {id(s) for s, _ in walk_statements(tree.body)
            if isinstance(s, ast.For) and _Check(tree, a, s, updates).holds()}


def fused_loops(tree: ast.FunctionDef, a: Analysis, any_order: set[int],
                updates: dict) -> set[int]:
    """ids of top-level loops whose forward sweep can run inside their reversal, one iteration
    then its adjoint, instead of as a separate pass over the data.

    Such a loop is in ``any_order`` with every loop nested in it; each of its bodies is straight
    code ending in at most one nested loop; it stores into no array and its variable is not
    taped; nothing after it reads what it assigns (except the final ``return``) or changes what
    it reads. Then the reversal, which comes after every later statement's, finds the adjoints
    of its accumulators already final (they come from the ``return`` only), and running the
    primal work of an iteration just before its adjoint gives every value the adjoint reads.

    Fusion only pays where the innermost reversed loop is itself a reduction (it adds into an
    adjoint that does not change with its iterations), so that it does not vectorise anyway;
    otherwise a vectorised adjoint loop beside the primal's beats one fused scalar loop.
    ``updates`` is :func:`accumulator_updates` of the function.
    """
    fused = set()
    body = tree.body
    for position, loop in enumerate(body):
        if not (isinstance(loop, ast.For) and _nested_chain_in(loop, any_order)
                and _reduces_in_reverse(_innermost(loop), a, updates)):
            continue
        members = [m for m, _ in walk_statements(loop.body)]
        if loop.target.id in a.restored or any(
                isinstance(m, ast.Assign) and isinstance(m.targets[0], ast.Subscript)
                for m in members):
            continue
        assigned = loop_assigned_names(loop)
        read = set().union(own_reads(loop), *(own_reads(m) for m in members))
        later = [m for m, _ in walk_statements(body[position + 1:])]
        final = body[-1] if isinstance(body[-1], ast.Return) else None
        if any(m is not final and own_reads(m) & assigned for m in later):
            continue
        if any(set(assigned_names(m)) & (assigned | read) for m in later):
            continue
        if any(a.is_array(name) and a.written_after(loop, name) for name in read):
            continue
        fused.add(id(loop))
    return fused


def _innermost(loop: ast.For) -> ast.For:
    while isinstance(loop.body[-1], ast.For):
        loop = loop.body[-1]
    return loop


def _reduces_in_reverse(loop: ast.For, a: Analysis, updates: dict) -> bool:
    """Whether the reversal of ``loop`` adds into an adjoint that stays the same across its
    iterations: that of an active scalar assigned outside it (not an accumulator), or a shadow
    element whose index does not depend on the loop."""
    assigned = loop_assigned_names(loop)
    for s, _ in walk_statements(loop.body):
        if not (isinstance(s, ast.Assign) and a.statement_active(s)):
            continue
        value = s.value
        if isinstance(value, ast.Subscript) and a.is_array(value.value.id) \
                and not names_in(value.slice) & assigned:
            return True
        if id(s) in updates:
            continue
        if any(a.is_active(name) and not a.is_array(name) and name not in assigned
               for name in own_reads(s)):
            return True
    return False


def _nested_chain_in(loop: ast.For, any_order: set[int]) -> bool:
    """Whether ``loop`` and its nested loops are all in ``any_order`` and each body holds at
    most one loop, as its last statement."""
    while True:
        if id(loop) not in any_order:
            return False
        inner = [m for m, _ in walk_statements(loop.body) if isinstance(m, (ast.For, ast.While))]
        if not inner:
            return True
        if not isinstance(loop.body[-1], ast.For) or inner[0] is not loop.body[-1]:
            return False
        loop = loop.body[-1]


def iteration_local_scalars(tree: ast.FunctionDef, a: Analysis, loop: ast.stmt,
                            updates: dict) -> set[str]:
    """Active scalars assigned in ``loop`` that are local to one of its iterations: their
    adjoints are zero whenever the reversal of an iteration starts or ends."""
    check = _Check(tree, a, loop, updates)
    return {s.targets[0].id for s, _ in check.members
            if isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Name)
            and a.is_active(s.targets[0].id) and not a.is_array(s.targets[0].id)
            and check.iteration_local(s.targets[0].id)}


def accumulator_updates(tree: ast.FunctionDef, a: Analysis) -> dict[int, tuple[str, str]]:
    """The pairs ``w = v + t`` (or ``t + v``, ``v - t``) then ``v = w`` of active scalars ``v``,
    with ``w`` read by nothing else: what normalisation makes of ``v += t`` and ``v -= t``.

    Maps id(statement) to ``("update", v)`` for the first and ``("store", v)`` for the second.
    Their reversal leaves the adjoint of ``v`` as it was (it passes it to ``t``), so the transform
    emits it without taking and resetting that adjoint, and a loop that only accumulates into
    ``v`` carries no adjoint from one iteration to the next.
    """
    readers: dict[str, int] = {}
    for s, _ in walk_statements(tree.body):
        for name in own_reads(s):
            readers[name] = readers.get(name, 0) + 1
    roles = {}
    for s, site in walk_statements(tree.body):
        if not (isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Name)
                and isinstance(s.value, ast.Name)):
            continue
        v, w = s.targets[0].id, s.value.id
        defs = a.assignments.get(w, [])
        if not a.is_active(v) or a.is_array(v) or len(defs) != 1 or readers.get(w) != 1:
            continue
        position = site.block.index(s)
        update = defs[0]
        if position == 0 or site.block[position - 1] is not update:
            continue
        value = update.value
        if isinstance(value, ast.BinOp) and (
                (isinstance(value.op, ast.Add)
                 and (atom_name(value.left) == v) != (atom_name(value.right) == v))
                or (isinstance(value.op, ast.Sub) and atom_name(value.left) == v
                    and atom_name(value.right) != v)):
            roles[id(update)] = ("update", v)
            roles[id(s)] = ("store", v)
    return roles


def loop_assigned_names(loop: ast.For) -> set[str]:
    """Names assigned anywhere in ``loop``, its own variable included."""
    return {loop.target.id} | {name for s, _ in walk_statements(loop.body)
                               for name in assigned_names(s)}


class _Check:
    def __init__(self, tree: ast.FunctionDef, a: Analysis, loop: ast.stmt, updates: dict):
        self.tree, self.a, self.loop, self.updates = tree, a, loop, updates
        self.members = list(walk_statements(loop.body))

    def holds(self) -> bool:
        return self.nothing_popped() and self.scalars_commute() and self.arrays_commute()

    def nothing_popped(self) -> bool:
        a = self.a
        inner_loops = [s for s, _ in self.members if isinstance(s, ast.For)]
        loop_targets = {self.loop.target.id} | {s.target.id for s in inner_loops}
        if len(loop_targets) != len(inner_loops) + 1:
            return False
        for s, _ in self.members:
            if isinstance(s, (ast.While, ast.Return)):
                return False
            if isinstance(s, ast.For) and s.target.id in a.restored:
                return False
            call = getattr(s, "value", None)
            if isinstance(call, ast.Call) and anno.get(call, anno.KIND) == "user":
                return False
            for name in assigned_names(s) if isinstance(s, ast.Assign) else []:
                if name in a.restored or a.is_array(name) or name in loop_targets:
                    return False
        return True

    # -- scalars -----------------------------------------------------------------------------
    def scalars_commute(self) -> bool:
        a = self.a
        assigned = {name for s, _ in self.members if isinstance(s, ast.Assign)
                    for name in assigned_names(s)}
        for name in assigned:
            if not a.is_active(name) or a.is_array(name):
                continue
            if not (self.iteration_local(name) or self.accumulator(name)):
                return False
        return True

    def iteration_local(self, name: str) -> bool:
        """Assigned at the top of some loop's body (this loop or one inside it) before any read,
        and neither read nor assigned outside that loop."""
        touching = self.a.statements_touching(self.tree, name)
        loops = [self.loop] + [s for s, _ in self.members if isinstance(s, (ast.For, ast.While))]
        for loop in loops:
            inside = self.a.loop_members[id(loop)]
            if not all(id(s) in inside for s in touching):
                continue
            first = [s for s in loop.body if isinstance(s, ast.Assign)
                     and isinstance(s.targets[0], ast.Name) and s.targets[0].id == name]
            readers = [s for s in touching if name in own_reads(s)]
            if first and all(self.a.order[id(r)] > self.a.order[id(first[0])] for r in readers):
                return True
        return False

    def accumulator(self, name: str) -> bool:
        """Every assignment of ``name`` in the loop stores an update ``name = name ± t`` (see
        :func:`accumulator_updates`), and nothing else in the loop reads it."""
        roles = self.updates
        for s, _ in self.members:
            assigns = isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Name) \
                and s.targets[0].id == name
            if assigns and roles.get(id(s)) != ("store", name):
                return False
            if name in own_reads(s) and roles.get(id(s)) != ("update", name):
                return False
        return True

    # -- arrays ------------------------------------------------------------------------------
    def arrays_commute(self) -> bool:
        a = self.a
        stored: dict[str, set] = {}
        read: set[str] = set()
        for s, _ in self.members:
            if not (isinstance(s, ast.Assign) and a.statement_active(s)):
                continue
            target, value = s.targets[0], s.value
            if isinstance(target, ast.Subscript):
                stored.setdefault(a.rep(target.value.id), set()).add(
                    self.loop_variable_position(target.slice))
            elif isinstance(value, ast.Subscript) and a.is_array(value.value.id) \
                    and a.is_active(value.value.id):
                read.add(a.rep(value.value.id))
            else:                                       # whole arrays read by array operations
                read |= {a.rep(n) for n in names_in(value) if a.is_array(n) and a.is_active(n)}
        for cls, positions in stored.items():
            if cls in read or len(positions) != 1 or None in positions:
                return False
        return not stored or self.loop_variable_never_negative()

    def loop_variable_never_negative(self) -> bool:
        """Whether the loop variable stays >= 0, so that no two iterations index the same
        element (``A[-1]`` is ``A[n - 1]``)."""
        start, stop, step = (x.value if isinstance(x, ast.Constant) else None
                             for x in self.loop.iter.args)
        if not isinstance(step, int):
            return False
        return (step > 0 and isinstance(start, int) and start >= 0) or \
            (step < 0 and isinstance(stop, int) and stop >= -1)

    def loop_variable_position(self, index: ast.expr) -> int | None:
        """Position of this loop's variable in a store's index, or None if it is not there."""
        elements = index.elts if isinstance(index, ast.Tuple) else [index]
        for position, element in enumerate(elements):
            if atom_name(element) == self.loop.target.id:
                return position
        return None


def accumulation_groups(body: list[ast.stmt], loop_assigned: set[str]):
    """The shadow accumulations ``d_A[index] += value`` at the top level of a reversed loop body.

    Returns ``(invariant, repeated)``: keys ``(array, index source)`` of the accumulations whose
    index does not change in the loop (summed in a local across the whole loop), and of those
    made more than once per iteration at the same index (summed in a local per iteration).
    Only valid in a loop of :func:`any_order_loops`, where shadows added into are never read.
    """
    counts: dict[tuple[str, str], int] = {}
    invariant = set()
    for s in body:
        key = accumulation_key(s)
        if key is None:
            continue
        counts[key] = counts.get(key, 0) + 1
        if not names_in(s.target.slice) & loop_assigned:
            invariant.add(key)
    repeated = {key for key, count in counts.items() if count > 1} - invariant
    return invariant, repeated


def accumulation_key(s: ast.stmt) -> tuple[str, str] | None:
    if isinstance(s, ast.AugAssign) and isinstance(s.op, ast.Add) \
            and isinstance(s.target, ast.Subscript) and isinstance(s.target.value, ast.Name):
        return s.target.value.id, ast.unparse(s.target.slice)
    return None


def stencil_offsets(loop: ast.For, body: list[ast.stmt], a: Analysis) -> dict:
    """The shadow accumulations of a reversed loop body (step 1) that form stencils.

    Accumulations into one shadow whose index elements do not change in the loop except one,
    ``i + c`` for a loop variable ``i`` and integer constants ``c``, form a stencil when there
    are two or more offsets ``c``. Returns ``{(shadow, index element sources, position of the
    varying element): [(position in body, c), ...]}``, one entry per offset.
    """
    step = loop.iter.args[2]
    if not (isinstance(step, ast.Constant) and step.value == 1):
        return {}
    assigned = loop_assigned_names(loop)
    groups: dict[tuple, list] = {}
    for position, s in enumerate(body):
        key = accumulation_key(s)
        if key is None:
            continue
        elements = s.target.slice.elts if isinstance(s.target.slice, ast.Tuple) \
            else [s.target.slice]
        varying = [k for k, e in enumerate(elements) if names_in(e) & assigned]
        if len(varying) != 1:
            continue
        offset = _offset_of(elements[varying[0]], loop.target.id, a)
        sources = [ast.unparse(e) for e in elements]
        sources[varying[0]] = None
        groups.setdefault((key[0], tuple(sources), varying[0]), []).append((position, offset))
    return {key: accumulations for key, accumulations in groups.items()
            if len({offset for _, offset in accumulations}) == len(accumulations) > 1
            and all(offset is not None for _, offset in accumulations)}


def _offset_of(element: ast.expr, variable: str, a: Analysis) -> int | None:
    """``c`` when ``element`` is the loop variable plus the integer constant ``c``."""
    name = atom_name(element)
    if name == variable:
        return 0
    defs = a.assignments.get(name, []) if name else []
    if len(defs) != 1 or not isinstance(defs[0].value, ast.BinOp):
        return None
    value = defs[0].value
    left, right = value.left, value.right
    if isinstance(value.op, ast.Add):
        if atom_name(left) == variable and isinstance(right, ast.Constant):
            return _int(right.value)
        if atom_name(right) == variable and isinstance(left, ast.Constant):
            return _int(left.value)
    if isinstance(value.op, ast.Sub) and atom_name(left) == variable \
            and isinstance(right, ast.Constant) and _int(right.value) is not None:
        return -right.value
    return None


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
