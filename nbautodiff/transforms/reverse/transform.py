"""The reverse-mode transform: a normalised function to one that returns its adjoints.

:func:`transform` builds ``f__rev_<code>(args and shadows..., seed)``, which runs the forward
sweep (the primal, pushing onto the tape the values the analysis says must be restored) and
then the reverse sweep (adjoint statements in reverse order, loops run backwards, branches
taken as they were), and returns ``(result, adjoints of active scalar arguments...)``; without
``keep_value`` the result is ``None`` and nothing computes it (see :mod:`nbautodiff.transforms.deadcode`).

Conventions of the generated code: ``_nad_b_x`` is the adjoint of scalar ``x``,
``_nad_d_A`` the shadow of array ``A``, ``_nad_g`` the adjoint entering the statement being
reversed. Arrays passed to the function that it writes are copied on entry, so a caller's array
keeps the contents its own reverse sweep relies on; with ``writeback`` the final contents are
copied back after the forward sweep, so callers see the primal's effects (Enzyme semantics).
"""
from __future__ import annotations

import ast
import copy
from dataclasses import dataclass

from nbautodiff import annotations as anno, naming
from nbautodiff.analysis import typeinfer
from nbautodiff.analysis.activity import (Analysis, array_index_names, assigned_names, atom_name,
                                          own_read_nodes, rule_of, target_names, walk_statements)
from nbautodiff.analysis.tuples import flat_names
from nbautodiff.codegen import expr, index_src, parse, src
from nbautodiff.transforms.copies import propagate_copies, remove_dead_stores
from nbautodiff.transforms.deadcode import remove_dead_assignments
from . import checkpointing as checkpoint
from .arrays import ArrayAdjoints
from .loop_order import accumulator_updates, any_order_loops, fused_loops, loop_assigned_names
from .loops import LoopReversal
from .state import ReverseState

INITIAL_TAPE_LENGTH = 64


def room_on_tape(tape: str, top: str, extra: str) -> str:
    """Source that gives ``tape`` room for ``extra`` more values above ``top``. The check is
    written out, not a call of an inlined helper: numba would run its passes over the helper's
    body again at every push."""
    return (f"if {top} + {extra} > {tape}.shape[0]:\n"
            f"    {tape} = {naming.TAPE_MODULE}.grown({tape}, {top}, {extra})")


@dataclass
class CalleeVariant:
    """How to call a callee's reverse variant from generated code."""
    binding: str                       # name bound in the generated module
    shadows: list[bool]                # per argument: followed by a shadow
    adjoint_positions: list[int]       # argument positions whose adjoints are returned
    seeds: list[bool] | None = None    # tuple result: per element, whether it takes a seed


class ReverseTransform(ArrayAdjoints, LoopReversal):
    """Writes the reverse-mode function of one normalised function (see the module docstring);
    what its parts share is :attr:`state` (:class:`.state.ReverseState`)."""

    def __init__(self, tree: ast.FunctionDef, analysis: Analysis, fs, *, active_params: set,
                 result_active: bool, writeback: bool, keep_value: bool, name: str,
                 callee_variant, callee_writes, checkpoint=None):
        self.state = ReverseState(tree, analysis, fs, active_params, result_active, writeback,
                                  keep_value, name, callee_variant, callee_writes, checkpoint)

    # -- helpers ---------------------------------------------------------------------------
    def active_scalar(self, node: ast.expr | None) -> str | None:
        name = atom_name(node) if node is not None else None
        if name and self.state.a.is_active(name) and not self.state.a.is_array(name):
            return name
        return None

    def tape(self, typ) -> tuple[str, str]:
        kind = typeinfer.element_kind(typ)
        self.state.tapes_used.add(kind)
        return (naming.FLOAT_TAPE, naming.FLOAT_TOP) if kind == "float" else \
            (naming.INT_TAPE, naming.INT_TOP)

    def push(self, name: str, checked: bool) -> list[ast.stmt]:
        tape, top = self.tape(self.state.type_of(name))
        value = typeinfer.to_tape_source(name, self.state.type_of(name))
        room = parse(room_on_tape(tape, top, "1")) if checked else []
        return room + parse(f"{tape}[{top}] = {value}\n{top} += 1")

    def pop(self, name: str) -> list[ast.stmt]:
        typ = self.state.type_of(name)
        tape, top = self.tape(typ)
        return parse(f"{top} -= 1\n{name} = {typeinfer.from_tape_source(f'{tape}[{top}]', typ)}")

    def snapshot_arrays(self, call: ast.Call) -> list[str]:
        """Arrays passed to an active callee whose contents may change once it has run."""
        names = []
        changed_by_call = self.state.callee_writes(call)
        for position, arg in enumerate(call.args):
            name = atom_name(arg)
            if name and self.state.a.is_array(name) and name not in names and (
                    position in changed_by_call
                    or self.state.a.written_after(anno.get(call, anno.STATEMENT), name)):
                names.append(name)
        return names

    # -- the function ----------------------------------------------------------------------
    def build(self) -> ast.FunctionDef:
        a = self.state.a
        written_params = [p for p in self.state.params if a.is_array(p) and a.rep(p) in a.written]
        args = []
        for p in self.state.params:
            args.append(naming.WORK_COPY + p if p in written_params else p)
            if a.is_array(p) and p in self.state.active_params:
                args.append(naming.shadow(p))
        if self.state.result_active:
            args += [seed for seed in self.result_seeds() if seed]
        self.state.rebound = self.rebound_arrays()
        self.state.single_use = self.single_use_temporaries()
        self.state.unallocated = self.shadows_made_by_first_contribution()
        self.state.updates = accumulator_updates(self.state.tree, a)
        self.state.any_order = any_order_loops(self.state.tree, a, self.state.updates)
        self.state.fused = fused_loops(self.state.tree, a, self.state.any_order, self.state.updates)
        self.state.checkpointed = checkpoint.checkpointed_loops(self, self.state.checkpoint)
        self.state.taped_after = self.values_taped_after()
        self.state.taped_after_names = {name for names in self.state.taped_after.values()
                                        for name in names}
        forward = self.forward(self.state.tree.body, depth=0, reserved=False)
        adjoints = sorted({n for n in a.types if not a.is_array(n) and a.is_active(n)})
        self.state.zero = set(adjoints)
        backward = self.backward(self.state.tree.body)
        rebound_params = [p for p in written_params if a.assignments.get(p)]
        prologue = [f"{p} = {naming.WORK_COPY}{p}.copy()" for p in written_params]
        # a parameter rebound later (``x = x.copy()``) is written back from its first array
        prologue += [f"{naming.WORK_COPY}{p}_work = {p}" for p in rebound_params
                     if self.state.writeback]
        prologue += [f"{naming.adjoint(n)} = 0.0" for n in adjoints]
        prologue += [f"{naming.shadow(p)} = {naming.ARRAY_MODULE}.zeros_like({p})"
                     for p in self.state.params if a.is_array(p) and a.is_active(p)
                     and p not in self.state.active_params and p not in self.state.rebound]
        prologue += self.reference_prologue()
        for name in sorted(a.restored - set(self.state.params)):
            prologue.append(f"{name} = {typeinfer.zero_literal(self.state.type_of(name))}")
        prologue.append(f"{naming.RESULT} = 0.0")
        prologue += checkpoint.prologue(self)
        if "float" in self.state.tapes_used:
            prologue.append(f"{naming.FLOAT_TAPE} = np.empty({INITIAL_TAPE_LENGTH}, np.float64)")
            prologue.append(f"{naming.FLOAT_TOP} = 0")
        if "int" in self.state.tapes_used:
            prologue.append(f"{naming.INT_TAPE} = np.empty({INITIAL_TAPE_LENGTH}, np.int64)")
            prologue.append(f"{naming.INT_TOP} = 0")
        middle = []
        if self.state.writeback:
            middle = [f"{naming.TAPE_MODULE}.copy_into({naming.WORK_COPY}{p}, "
                      f"{naming.WORK_COPY + p + '_work' if p in rebound_params else p})"
                      for p in written_params]
        returned = [naming.RESULT if self.state.keep_value else "None"]
        returned += [naming.adjoint(p) if self.active_scalar(ast.Name(id=p)) else "0.0"
                     for p in self.state.params
                     if p in self.state.active_params and not a.is_array(p)]
        returned.append(checkpoint.memory_source(self))
        epilogue = [f"return ({', '.join(returned)},)"]
        framing = [parse("\n".join(prologue)), parse("\n".join(middle) or "pass"),
                   parse("\n".join(epilogue))]
        for statement in (s for part in framing for s in part):
            ast.copy_location(statement, self.state.tree)
        body = framing[0] + forward + framing[1] + backward + framing[2]
        function = ast.FunctionDef(
            name=self.state.name,
            args=ast.arguments(posonlyargs=[], args=[ast.arg(arg=x) for x in args],
                               kwonlyargs=[], kw_defaults=[], defaults=[]),
            body=body, decorator_list=[], returns=None, type_params=[])
        ast.copy_location(function, self.state.tree)
        return ast.fix_missing_locations(remove_dead_assignments(
            remove_dead_stores(propagate_copies(function))))

    def values_taped_after(self) -> dict[int, list[str]]:
        """Restored scalars pushed after their assignment rather than before it: id(loop body)
        -> names, in the order of their assignments.

        A scalar assigned once, by a statement directly in the body of a ``for`` loop, and read
        only by statements after that one in the same body, holds a value of its own in each
        iteration. Pushing the value the statement gives it (instead of the one it overwrites)
        and popping it where the reversal of the iteration starts restores every value the
        reverse sweep reads, and keeps the forward sweep from storing the previous iteration's
        value: that first-order recurrence stops LLVM from vectorising the loop (a loop of
        ``math.tanh``, say). The pop comes first only if the value is the last thing the
        iteration pushes, so nothing after the statement may push anything else; loops
        reversed in their original order, and checkpointed functions, keep the general scheme."""
        if self.state.checkpointed:
            return {}
        a = self.state.a
        readers: dict[str, list[int]] = {}
        for statement, _ in walk_statements(self.state.tree.body):
            for name in own_read_nodes(statement):
                readers.setdefault(name, []).append(id(statement))
        found: dict[int, list[str]] = {}
        for loop, _ in walk_statements(self.state.tree.body):
            if not isinstance(loop, ast.For) or id(loop) in self.state.fused \
                    or id(loop) in self.state.any_order:
                continue
            later: set[int] = set()
            names: list[str] = []
            for s in reversed(loop.body):
                name = s.targets[0].id if isinstance(s, ast.Assign) \
                    and isinstance(s.targets[0], ast.Name) else None
                if name in a.restored and name not in self.state.params and not a.is_array(name) \
                        and len(a.assignments.get(name, [])) == 1 \
                        and not self.pushes_besides(s, name) \
                        and all(reader in later for reader in readers.get(name, [])):
                    names.append(name)
                elif self.pushes_besides(s, None):
                    break
                later |= {id(t) for t, _ in walk_statements([s])}
            if names:
                found[id(loop.body)] = names[::-1]
        return found

    def pushes_besides(self, s: ast.stmt, name: str | None) -> bool:
        """Whether the forward sweep of ``s`` may push on a tape anything but ``name``."""
        if isinstance(s, (ast.For, ast.While, ast.If)) or self.saves_arrays(s):
            return True
        return any(n in self.state.a.restored for n in assigned_names(s) if n != name)

    # -- forward sweep ---------------------------------------------------------------------
    def reserves_at_entry(self, loop: ast.For) -> bool:
        """Whether the pushes of ``loop`` can be reserved once, at its entry, and made unchecked.

        Only if every push an iteration makes is one that ``pushes_per_iteration`` counts: the
        loops nested in it push nothing (no restored value or loop variable, no ``while``
        counter) and nothing in it saves an array (a call's snapshots, an array operation's
        operands), since such a push would take room reserved for the counted ones."""
        for inner, site in walk_statements(loop.body):
            if isinstance(inner, ast.While) or self.saves_arrays(inner):
                return False
            if site.loop_depth > 0 and self.pushes_in_own_iteration(inner):
                return False
        return True

    def saves_arrays(self, s: ast.stmt) -> bool:
        """Whether the forward sweep of ``s`` may push arrays on the tape: a call's snapshots
        (any call of a user function counts), an array operation's operands or result."""
        if isinstance(getattr(s, "value", None), ast.Call) \
                and anno.get(s.value, anno.KIND) == "user":
            return True
        return isinstance(s, ast.Assign) and any(self.array_rule_snapshots(s))

    def pushes_in_own_iteration(self, s: ast.stmt) -> bool:
        """Whether ``s`` itself pushes on the tape (a restored target or loop variable)."""
        return any(name in self.state.a.restored for name in assigned_names(s))

    def pushes_per_iteration(self, body: list) -> dict[str, int]:
        """Unchecked pushes one iteration of ``body`` makes outside its nested loops (max over branches)."""
        counts = {"float": 0, "int": 0}
        for statement in body:
            if isinstance(statement, ast.Assign):
                for name in assigned_names(statement):
                    if name in self.state.a.restored:
                        counts[typeinfer.element_kind(self.state.type_of(name))] += 1
            elif isinstance(statement, ast.If):
                left = self.pushes_per_iteration(statement.body)
                right = self.pushes_per_iteration(statement.orelse)
                for kind in counts:
                    counts[kind] += max(left[kind], right[kind])
            elif isinstance(statement, ast.For) and statement.target.id in self.state.a.restored:
                counts[typeinfer.element_kind(self.state.type_of(statement.target.id))] += 1
        return counts

    def reservations(self, loop: ast.For, trips: str) -> list[ast.stmt]:
        """Room on the tapes for the unchecked pushes of ``trips`` iterations of leaf ``loop``."""
        out = []
        for kind, count in self.pushes_per_iteration(loop.body).items():
            if count:
                tape, top = (naming.FLOAT_TAPE, naming.FLOAT_TOP) if kind == "float" \
                    else (naming.INT_TAPE, naming.INT_TOP)
                self.state.tapes_used.add(kind)
                out += parse(room_on_tape(tape, top, f"{trips} * {count}"))
        return out

    def forward(self, body: list, depth: int, reserved: bool) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for statement in body:
            out.extend(self.forward_statement(statement, depth, reserved))
        return out or [ast.Pass()]

    def forward_statement(self, s: ast.stmt, depth: int, reserved: bool) -> list[ast.stmt]:
        a = self.state.a
        checked = not reserved
        if isinstance(s, ast.Assign):
            out = []
            names = assigned_names(s)
            for name in names:
                if name in a.restored and name not in self.state.taped_after_names:
                    out += self.push(name, checked)
            out += self.snapshots(s.value)
            for name in names:
                if name in self.state.rebound:
                    out += self.save_references(name)
            operands, result = self.array_rule_snapshots(s)
            out += self.push_arrays(operands)
            out.append(s)
            for name in names:
                if name in self.state.taped_after_names:
                    out += self.push(name, checked)
            out += self.push_arrays(result)
            for name in names:
                if a.is_array(name) and a.is_active(name) and name not in self.state.unallocated:
                    out += self.new_shadow(s, name)
            return out
        if isinstance(s, ast.Expr):
            return self.snapshots(s.value) + [s]
        if isinstance(s, ast.If):
            return [ast.copy_location(ast.If(test=s.test, body=self.forward(s.body, depth, reserved),
                                             orelse=self.forward(s.orelse, depth, reserved)
                                             if s.orelse else []), s)]
        if isinstance(s, ast.For):
            if id(s) in self.state.fused and self.has_reverse_work(s):
                return []                              # runs inside its reversal
            out = self.push(s.target.id, True) if s.target.id in a.restored else []
            if id(s) in self.state.checkpointed:
                return out + self.state.checkpointed[id(s)].forward()
            leaf = self.reserves_at_entry(s)
            if leaf:
                lo, hi, step = (src(x) for x in s.iter.args)
                out += self.reservations(s, f"{naming.TAPE_MODULE}.trip_count({lo}, {hi}, {step})")
            loop = ast.For(target=s.target, iter=s.iter,
                           body=self.forward(s.body, depth + 1, leaf), orelse=[])
            return out + [ast.copy_location(loop, s)]
        if isinstance(s, ast.While):
            if not self.has_reverse_work(s):
                return [s]
            counter = self.counter_name(s)
            body = parse(f"{counter} += 1") + self.forward(s.body, depth + 1, False)
            out = parse(f"{counter} = 0") + [ast.copy_location(
                ast.While(test=s.test, body=body, orelse=[]), s)]
            if depth > 0:
                self.state.pushed_counters.add(counter)
                self.state.a.types.setdefault(counter, typeinfer.nbtypes.int64)
                out += self.push(counter, True)
            return out
        if isinstance(s, ast.Return):
            if s.value is not None:
                self.state.result_node = s.value
                return parse(f"{naming.RESULT} = {src(s.value)}")
            return []
        return [s]

    def counter_name(self, s: ast.While) -> str:
        if not anno.has(s, anno.COUNTER):
            anno.set(s, anno.COUNTER, self.state.fresh(naming.COUNTER))
        return anno.get(s, anno.COUNTER)

    def snapshots(self, value: ast.expr) -> list[ast.stmt]:
        if not (isinstance(value, ast.Call) and anno.get(value, anno.KIND) == "user"):
            return []
        if not self.call_needs_reverse(value):
            return []
        return self.push_arrays(self.snapshot_arrays(value))

    def call_needs_reverse(self, call: ast.Call) -> bool:
        names = [atom_name(x) for x in call.args] + anno.get(call, anno.ASSIGNED_TO, [])
        return any(self.state.a.is_active(n) for n in names if n)

    def rebound_arrays(self) -> set[str]:
        """Array variables bound to several arrays in turn whose identity the reverse pass needs."""
        a = self.state.a
        rebound = set()
        for name, assigned in a.assignments.items():
            if not a.is_array(name) or not (a.is_active(name) or name in a.needed):
                continue
            count = len(assigned) + (name in self.state.params)
            if count > 1 or any(a.sites[id(s)].loop_depth for s in assigned):
                rebound.add(name)
        return rebound

    def references(self, name: str) -> list[tuple[str, str]]:
        """(variable, stack) pairs holding the successive arrays bound to ``name`` and its shadow."""
        pairs = [(name, f"{naming.REFERENCES}{name}")]
        if name.startswith(naming.PRODUCT) and self.state.a.is_active(name):
            pairs = []      # a product of fastmath (raising.py): the reverse sweep reads its
                            # shadow only (its loads' and its own adjoints do not read it)
        if self.state.a.is_active(name):
            pairs.append((naming.shadow(name), f"{naming.REFERENCES}{naming.shadow(name)}"))
        return pairs

    def save_references(self, name: str) -> list[ast.stmt]:
        return parse("\n".join(f"{stack}.append({var})" for var, stack in self.references(name)))

    def load_references(self, name: str) -> list[ast.stmt]:
        return parse("\n".join(f"{var} = {stack}.pop()" for var, stack in self.references(name)))

    def reference_prologue(self) -> list[str]:
        lines = []
        for name in sorted(self.state.rebound):
            typ = self.state.type_of(name)
            empty = f"np.empty({(0,) * typ.ndim}, np.{typ.dtype})"
            if name not in self.state.params:
                lines.append(f"{name} = {empty}")
            params = self.state.params
            if self.state.a.is_active(name) \
                    and not (name in params and name in self.state.active_params):
                zeros = f"{naming.ARRAY_MODULE}.zeros_like({name})"
                lines.append(f"{naming.shadow(name)} = {zeros if name in params else empty}")
            for var, stack in self.references(name):
                lines += [f"{stack} = [{var}]", f"{stack}.pop()"]
        return lines

    def new_shadow(self, s: ast.Assign, name: str) -> list[ast.stmt]:
        value = s.value
        if not isinstance(s.targets[0], ast.Name):       # an element of an unpacked tuple
            return parse(f"{naming.shadow(name)} = {naming.ARRAY_MODULE}.zeros_like({name})")
        if isinstance(value, ast.Name):
            return parse(f"{naming.shadow(name)} = {naming.shadow(value.id)}")
        if isinstance(value, ast.Subscript) and not self.gathers(value):   # a view: the same
            return parse(f"{naming.shadow(name)} = {naming.shadow(value.value.id)}"
                         f"[{index_src(value.slice)}]")
        view = anno.get(s, anno.VIEW, None)               # a view made by a call (aliasing)
        if view == "alias":
            return parse(f"{naming.shadow(name)} = {naming.shadow(value.args[0].id)}")
        if view == "call":
            call = copy.deepcopy(value)
            call.args[0] = ast.Name(id=naming.shadow(value.args[0].id), ctx=ast.Load())
            return parse(f"{naming.shadow(name)} = {src(call)}")
        return parse(f"{naming.shadow(name)} = {naming.ARRAY_MODULE}.zeros_like({name})")

    def has_reverse_work(self, s: ast.stmt) -> bool:
        for inner, _ in walk_statements(s.body + getattr(s, "orelse", [])):
            if self.state.a.statement_active(inner):
                return True
            if isinstance(inner, ast.Assign) and any(
                    name in self.state.a.restored or name in self.state.rebound
                    for name in assigned_names(inner)):
                return True
            if isinstance(inner, ast.For) and inner.target.id in self.state.a.restored:
                return True
        return False

    # -- adjoint variables -----------------------------------------------------------------
    def single_use_temporaries(self) -> set[str]:
        """Scalars assigned once and read once, in the same block: their adjoint has one
        contribution, made just before it is consumed, so it is assigned rather than summed and
        never carried from one iteration to the next."""
        a = self.state.a
        reads: dict[str, list] = {}
        for statement, site in walk_statements(self.state.tree.body):
            for node in own_read_nodes(statement):
                reads.setdefault(node, []).append(site.block)
        single = set()
        for name, assigned in a.assignments.items():
            if len(assigned) != 1 or name in self.state.params or a.is_array(name):
                continue
            blocks = reads.get(name, [])
            if len(blocks) == 1 and blocks[0] is a.sites[id(assigned[0])].block:
                single.add(name)
        return single

    def accumulate(self, name: str, contribution: str) -> list[ast.stmt]:
        """Add ``contribution`` to the adjoint of ``name`` (assign it where that adjoint is
        known to be zero)."""
        operator = "=" if name in self.state.single_use or name in self.state.zero else "+="
        self.state.zero.discard(name)
        return parse(f"{naming.adjoint(name)} {operator} {contribution}")

    def take_adjoint(self, name: str, into: str = naming.GRAD_TMP) -> list[ast.stmt]:
        """``into`` (``_nad_g``) = the adjoint of ``name``, which its (re)definition then resets."""
        if name in self.state.single_use:
            return parse(f"{into} = {naming.adjoint(name)}")
        self.state.zero.add(name)
        return parse(f"{into} = {naming.adjoint(name)}\n{naming.adjoint(name)} = 0.0")

    # -- reverse sweep ---------------------------------------------------------------------
    def backward(self, body: list) -> list[ast.stmt]:
        out = [statement for name in reversed(self.state.taped_after.get(id(body), []))
               for statement in self.pop(name)]
        out += [copy.deepcopy(s) for s in self.state.a.recompute.get(id(body), [])]
        for statement in reversed(body):
            made = self.backward_statement(statement)
            compound = isinstance(statement, (ast.If, ast.For, ast.While))
            for node in made:            # the adjoint code of a line keeps that line's number
                for inner in ([node] if compound else ast.walk(node)):
                    if isinstance(inner, ast.stmt) and not isinstance(inner, (ast.If, ast.For,
                                                                              ast.While)):
                        ast.copy_location(inner, statement)
            out.extend(made)
        return out

    def backward_statement(self, s: ast.stmt) -> list[ast.stmt]:
        a = self.state.a
        if isinstance(s, ast.Assign):
            operands, result = self.array_rule_snapshots(s)
            out = self.pop_arrays(operands + result)
            out += self.adjoint_of_assign(s) if a.statement_active(s) else []
            out = self.reverse_call_snapshots(s.value) + out if out else \
                self.reverse_call_snapshots(s.value)
            names = assigned_names(s)
            for name in reversed(names):
                if name in a.restored and name not in self.state.taped_after_names:
                    out += self.pop(name)
            for name in reversed(names):
                if name in self.state.rebound:
                    out += self.load_references(name)
            return out
        if isinstance(s, ast.Expr):
            if isinstance(s.value, ast.Call) and anno.get(s.value, anno.KIND) == "user" \
                    and self.call_needs_reverse(s.value):
                return self.reverse_call_snapshots(s.value) + self.reverse_call(s.value, None)
            return []
        if isinstance(s, ast.If):
            if not self.has_reverse_work(s):
                return []
            before = set(self.state.zero)
            body = self.backward(s.body) or [ast.Pass()]
            after_body, self.state.zero = self.state.zero, before
            orelse = self.backward(s.orelse) if s.orelse else []
            self.state.zero &= after_body
            return [ast.copy_location(ast.If(test=s.test, body=body or [ast.Pass()],
                                             orelse=orelse), s)]
        if isinstance(s, ast.For):
            out = []
            if not self.has_reverse_work(s):
                pass
            elif id(s) in self.state.fused:
                out += self.reverse_in_order(s, fused=True)
                if self.state.result_node is not None and \
                        set(flat_names(self.state.result_node)) & loop_assigned_names(s):
                    out += parse(f"{naming.RESULT} = {src(self.state.result_node)}")
            elif id(s) in self.state.any_order:
                out += self.reverse_in_order(s)
            elif id(s) in self.state.checkpointed:
                out += self.state.checkpointed[id(s)].backward()
            else:
                lo, hi, step = (src(x) for x in s.iter.args)
                trips, r = self.state.fresh("_nad_trips"), self.state.fresh(naming.REVERSE_INDEX)
                out += parse(f"{trips} = {naming.TAPE_MODULE}.trip_count({lo}, {hi}, {step})")
                body = parse(f"{s.target.id} = {lo} + {r} * {step}") + self.loop_body_backward(s)
                loop = ast.For(target=ast.Name(id=r, ctx=ast.Store()),
                               iter=expr(f"range({trips} - 1, -1, -1)"), body=body, orelse=[])
                out.append(ast.copy_location(loop, s))
            if s.target.id in a.restored:
                out += self.pop(s.target.id)
            return out
        if isinstance(s, ast.While):
            if not self.has_reverse_work(s):
                return []
            counter = self.counter_name(s)
            out = self.pop(counter) if counter in self.state.pushed_counters else []
            r = self.state.fresh(naming.REVERSE_INDEX)
            loop = ast.For(target=ast.Name(id=r, ctx=ast.Store()), iter=expr(f"range({counter})"),
                           body=self.loop_body_backward(s), orelse=[])
            return out + [ast.copy_location(loop, s)]
        if isinstance(s, ast.Return):
            return self.seed_result(s)
        return []

    def result_seeds(self) -> list[str | None]:
        """The seed of each element of the result (one element unless it is a tuple, whose
        elements :mod:`nbautodiff.analysis.tuples` has made a display of names), None for one that takes none."""
        last = self.state.tree.body[-1]
        if not (isinstance(last, ast.Return) and isinstance(last.value, ast.Tuple)):
            return [naming.SEED]
        seeded = [typeinfer.is_differentiable(self.state.type_of(n))
                  for n in flat_names(last.value)]
        return [naming.seed(k) if flag else None for k, flag in enumerate(seeded)]

    def seed_result(self, s: ast.Return) -> list[ast.stmt]:
        if not self.state.result_active or s.value is None:
            return []
        out = []
        for name, seed in zip(flat_names(s.value), self.result_seeds()):
            if seed is None or not self.state.a.is_active(name):
                continue
            if self.state.a.is_array(name):
                out += parse(f"{naming.TAPE_MODULE}.add_into({naming.shadow(name)}, {seed})")
            else:
                out += self.accumulate(name, seed)
        return out

    def reverse_call_snapshots(self, value: ast.expr) -> list[ast.stmt]:
        if not (isinstance(value, ast.Call) and anno.get(value, anno.KIND) == "user"
                and self.call_needs_reverse(value)):
            return []
        return self.pop_arrays(self.snapshot_arrays(value))

    def gathers(self, subscript: ast.Subscript) -> list[str]:
        """The integer or boolean arrays in the index of ``A[index]`` (a gather, not a view)."""
        if not self.state.a.is_array(subscript.value.id):
            return []
        return array_index_names(subscript.slice, self.state.a.types)

    def selected_positions(self, s: ast.Assign, subscript: ast.Subscript) -> str:
        """Source of the flat positions that ``A[index]`` (a gather or store) selects in the
        shadow of ``A``; the index arrays must hold then what they held at ``s``."""
        for name in self.gathers(subscript):
            if self.state.a.written_after(s, name):
                raise self.state.fs.error(f"indexing with the array '{name}', which is written "
                                          "after it is used as an index", s,
                                          construct="index array written later")
        shadow = naming.shadow(subscript.value.id)
        return f"{naming.ARRAY_MODULE}.positions({shadow})[{index_src(subscript.slice)}]"

    def adjoint_of_assign(self, s: ast.Assign) -> list[ast.stmt]:
        target, value = s.targets[0], s.value
        g = naming.GRAD_TMP
        if isinstance(target, ast.Subscript) and self.gathers(target):
            # y[index] = v with an integer or boolean array in the index: the adjoints of the
            # elements stored (the last store wins where positions repeat) flow to v, then zero
            selected = self.selected_positions(s, target)
            stored = f"{naming.ARRAY_MODULE}.stored_adjoint({naming.shadow(target.value.id)}, " \
                     f"{selected})"
            name = atom_name(value)
            out = []
            if name and self.state.a.is_active(name) and self.state.a.is_array(name):
                out += parse(f"{naming.shadow(name)} += "
                             f"{naming.ARRAY_MODULE}.unbroadcast({stored}, {name})")
            elif self.active_scalar(value):
                out += self.accumulate(name, f"np.sum({stored})")
            return out + parse(f"{naming.ARRAY_MODULE}.zero_at("
                               f"{naming.shadow(target.value.id)}, {selected})")
        if isinstance(value, ast.Subscript) and isinstance(target, ast.Name) \
                and self.state.a.is_array(target.id) and self.gathers(value):
            # t = A[index], a gather: its adjoint adds into the selected elements, repeated
            # ones accumulated
            base = value.value.id
            if not (self.state.a.is_active(base) and self.state.a.is_active(target.id)):
                return []
            return parse(f"{naming.ARRAY_MODULE}.scatter_add({naming.shadow(base)}, "
                         f"{self.selected_positions(s, value)}, {naming.shadow(target.id)})")
        if isinstance(target, ast.Subscript) and self.stores_sub_array(target):
            array, index = target.value.id, index_src(target.slice)
            region = f"{naming.shadow(array)}[{index}]"
            name = atom_name(value)
            out = []
            if name and self.state.a.is_active(name) and self.state.a.is_array(name) \
                    and self.state.a.rep(name) == self.state.a.rep(array):
                # the value may overlap the region written (``y[1:] = y[:-1]``): take the
                # region's adjoint before clearing it, then pass it on
                taken = self.state.fresh("_nad_region")
                return parse(f"{taken} = {region}.copy()\n{region} = 0.0\n"
                             f"{naming.shadow(name)} += "
                             f"{naming.ARRAY_MODULE}.unbroadcast({taken}, {name})")
            if name and self.state.a.is_active(name) and self.state.a.is_array(name):
                out += parse(f"{naming.shadow(name)} += "
                             f"{naming.ARRAY_MODULE}.unbroadcast({region}, {name})")
            elif self.active_scalar(value):
                out += self.accumulate(name, f"np.sum({region})")
            return out + parse(f"{region} = 0.0")
        if isinstance(target, ast.Subscript):
            array, index = target.value.id, index_src(target.slice)
            out = parse(f"{g} = {naming.shadow(array)}[{index}]\n"
                        f"{naming.shadow(array)}[{index}] = 0.0")
            source = self.active_scalar(value)
            if source:
                out += self.accumulate(source, g)
            return out
        if isinstance(target, ast.Tuple):
            return self.adjoint_of_unpacked_call(target, value)
        t = target.id
        if isinstance(value, ast.Call) and anno.get(value, anno.KIND) == "user" \
                and not self.state.a.is_array(t):
            if not self.state.a.is_active(t):
                return self.reverse_call(value, None)
            return self.take_adjoint(t) + \
                self.reverse_call(value, g)
        if self.state.a.is_array(t):
            contiguous = isinstance(value, ast.Call) and anno.get(value, anno.KIND) == "helper" \
                and anno.get(value, anno.TARGET).spelling == "np.ascontiguousarray" \
                and not self.state.fs.generated and not anno.get(s, anno.VIEW, None)
            if contiguous or isinstance(value, ast.Call) and anno.get(value, anno.KIND) == "copy":
                # a copy, or np.ascontiguousarray not followed as a view: nothing writes either
                # (.aliasing), so a copy, whatever it is
                origin = value.args[0].id if contiguous else value.func.value.id
                if not self.state.a.is_active(origin):       # a constant copied into active state
                    return []
                return parse(f"{naming.TAPE_MODULE}.add_into({naming.shadow(origin)}, "
                             f"{naming.shadow(t)})")
            if isinstance(value, ast.Call) and anno.get(value, anno.KIND) == "user":
                shadow = naming.shadow(t) if self.state.a.is_active(t) else None
                return self.reverse_call(value, shadow)
            if anno.get(s, anno.VIEW, None):
                return []                              # a view: its shadow is the operand's
            if rule_of(value)[0] is not None:
                return self.rule_adjoints(value, t, naming.shadow(t), None)
            return []                                  # alias or constructor: nothing flows
        role = self.state.updates.get(id(s))
        if role and role[0] == "store":                     # v = w after w = v ± t
            return self.accumulate(value.id, naming.adjoint(t))
        out = self.take_adjoint(t)
        if isinstance(value, ast.Name):
            if self.active_scalar(value):
                out += self.accumulate(value.id, g)
            return out
        if isinstance(value, ast.Subscript):
            base = value.value.id
            if self.state.a.is_array(base) and self.state.a.is_active(base):
                out += parse(f"{naming.shadow(base)}[{index_src(value.slice)}] += {g}")
            return out
        return out + self.rule_adjoints(value, t, g, role)

    def adjoint_of_unpacked_call(self, target: ast.Tuple, call: ast.expr) -> list[ast.stmt]:
        """The reverse call of ``(e0, (e1, e2)) = f(...)``: one seed per element of the result
        that takes one (the adjoint of a scalar, the shadow of an array, zero where the element
        is not active)."""
        if not (isinstance(call, ast.Call) and anno.get(call, anno.KIND) == "user"):
            return []                          # a tuple from elsewhere: a constant
        names = target_names(target)
        if not any(self.state.a.is_active(name) for name in names):
            return self.reverse_call(call, None)
        takes_seed = self.state.callee_variant(call, True).seeds
        if takes_seed is None or len(takes_seed) != len(names):
            raise self.state.fs.error(f"the tuple returned by '{src(call.func)}' does not have the "
                                "elements of the tuple it is assigned to",
                                anno.get(call, anno.STATEMENT),
                                construct="tuple")
        out, seeds = [], []
        for k, (name, seeded) in enumerate(zip(names, takes_seed)):
            if not seeded:
                continue
            if self.state.a.is_array(name):
                seeds.append(naming.shadow(name) if self.state.a.is_active(name) else
                             f"{naming.ARRAY_MODULE}.zeros_like({name})")
            elif self.state.a.is_active(name):
                seeds.append(f"{naming.GRAD_TMP}{k}")
                out += self.take_adjoint(name, into=seeds[-1])
            else:
                seeds.append("0.0")
        return out + self.reverse_call(call, seeds)

    def reverse_call(self, call: ast.Call, seed: str | list[str] | None) -> list[ast.stmt]:
        """The call of ``call``'s reverse variant, seeded with ``seed`` (a list: the seeds of
        the elements of a tuple result), adding the adjoints it returns."""
        variant = self.state.callee_variant(call, seed is not None)
        args = []
        for arg, has_shadow in zip(call.args, variant.shadows):
            args.append(src(arg))
            if has_shadow:
                args.append(naming.shadow(arg.id))
        if seed is not None:
            args += seed if isinstance(seed, list) else [seed]
        result = self.state.fresh(naming.CALL_RESULT)
        memory = f"{result}[{len(variant.adjoint_positions) + 1}]"
        out = parse(f"{result} = {variant.binding}({', '.join(args)})\n{naming.CALLEE_BYTES} = "
                    f"max({naming.CALLEE_BYTES}, {memory}[0] + {memory}[1])")
        self.state.callee_bytes_used = True
        for k, position in enumerate(variant.adjoint_positions):
            name = atom_name(call.args[position])
            out += self.accumulate(name, f"{result}[{k + 1}]")
        return out


def transform(tree: ast.FunctionDef, analysis: Analysis, fs, **options) -> ast.FunctionDef:
    """The reverse-mode function of normalised ``tree``; see the module docstring."""
    for statement, _ in walk_statements(tree.body):
        call = getattr(statement, "value", None)
        if isinstance(call, ast.Call):
            anno.set(call, anno.STATEMENT, statement)
        if isinstance(statement, ast.Assign) and isinstance(call, ast.Call):
            anno.set(call, anno.ASSIGNED_TO, assigned_names(statement))
    transform = ReverseTransform(tree, analysis, fs, **options)
    built = transform.build()
    anno.set(built, anno.CHECKPOINTED, checkpoint.describe(transform.state.checkpointed))
    return built
